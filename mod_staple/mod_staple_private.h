/*
 * What the httpd glue files of mod_staple share: the module, its log tag,
 * and the entry points each file offers the others.
 */
#ifndef MOD_STAPLE_PRIVATE_H
#define MOD_STAPLE_PRIVATE_H

#include <httpd.h>
#include <http_log.h>

#include "staple_reg.h"
#include "mod_staple_config.h"

extern module AP_MODULE_DECLARE_DATA staple_module;

APLOG_USE_MODULE(staple);

/* STAPLE_VERSION comes from configure.ac (AC_INIT) through the build. */
#ifndef STAPLE_VERSION
#error "STAPLE_VERSION is not defined: build with the project's Makefile"
#endif

/** The registry of the configuration running, or NULL when nothing is stapled. */
staple_reg_t *staple_active_reg(void);

/* --- mod_staple_cache.c: StapleCache and the node-local copy --------- */

/** The mutex type of the caches (Mutex staple-cache ...). */
#define STAPLE_MUTEX_TYPE "staple-cache"

typedef struct staple_caches_t staple_caches_t;

/**
 * Create and initialise StapleCache (default: shmcb sized for ncerts) and,
 * when it is not shared memory, a node-local shmcb for handshakes; with
 * their mutexes when the providers need one. Errors are logged.
 */
apr_status_t staple_caches_make(staple_caches_t **pc, server_rec *s,
                                staple_mod_conf_t *mc, int ncerts, apr_pool_t *pconf);

/** StapleCache as the registry reaches it. */
const staple_cache_ops_t *staple_caches_shared(const staple_caches_t *c);

/** The node-local copy, or NULL when handshakes read StapleCache. */
const staple_cache_ops_t *staple_caches_local(const staple_caches_t *c);

/** Re-attach the mutexes in a new process. Errors are logged. */
apr_status_t staple_caches_child_init(staple_caches_t *c, apr_pool_t *p);

/* --- mod_staple_refresher.c: the startup fetch and the refresher ----- */

/**
 * Make StapleStore a directory private to the server's User; on failure log
 * why and return NULL (responses are then kept in memory only).
 */
const char *staple_store_setup(server_rec *s, const char *dir);

/** For httpd -t: say what startup will do with StapleStore. */
void staple_store_test(server_rec *s, const char *dir);

/** The first responses, fetched in a child running as User, bounded. */
void staple_startup_fetch(staple_reg_t *reg, staple_caches_t *caches, server_rec *s,
                          apr_interval_time_t timeout, apr_pool_t *ptemp);

/** 1 in the startup child once it was asked to stop. */
int staple_startup_stopping(void);

/** Register the refresher with mod_watchdog. Errors are logged. */
apr_status_t staple_refresher_start(staple_reg_t *reg, server_rec *s,
                                    const staple_mod_conf_t *mc, apr_pool_t *pconf);

/* --- mod_staple_event.c: StapleEventCmd ------------------------------- */

typedef struct staple_events_t staple_events_t;

/**
 * A runner of StapleEventCmd (argv of const char *, or NULL: none), living
 * in pool; a program running longer than timeout is killed.
 */
staple_events_t *staple_events_make(apr_pool_t *pool, server_rec *s,
                                    const apr_array_header_t *argv,
                                    apr_interval_time_t timeout);

/**
 * Queue the program for each event (staple_event_t), start what the limit
 * of programs at once allows, and collect those that ended. Returns how
 * many run or wait.
 */
int staple_events_run(staple_events_t *ev, const apr_array_header_t *events);

/* --- mod_staple_control.c: refresh and DER on the status handler -------- */

/** A response copied out of the registry, into pool. */
typedef struct {
    apr_pool_t *pool;
    unsigned char *der; /* NULL: none */
    apr_size_t len;
} staple_der_t;

/** A staple_copy_fn that fills a staple_der_t. */
void staple_der_copy(const unsigned char *der, apr_size_t len, void *baton);

/** A certificate id from its 40 hex digits; 0 when it is not one. */
int staple_id_from_hex(const char *hex, unsigned char id[STAPLE_ID_LEN]);

/**
 * ?refresh (POST) and ?der=<id> on the status handler; DECLINED for any
 * other request (reg NULL: nothing is stapled).
 */
int staple_control(request_rec *r, staple_reg_t *reg);

/* --- mod_staple_relay.c: SetHandler staple-responder ----------------------- */

/** The relay handler. */
void staple_relay_register_hooks(apr_pool_t *p);

/* --- mod_staple_status.c: the status handler --------------------------- */

/** The staple-status handler and the mod_status section. */
void staple_status_register_hooks(apr_pool_t *p);

#endif /* MOD_STAPLE_PRIVATE_H */
