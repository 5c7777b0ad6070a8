/*
 * Shared between the httpd glue files of mod_staple.
 */
#ifndef MOD_STAPLE_PRIVATE_H
#define MOD_STAPLE_PRIVATE_H

#include <httpd.h>
#include <http_log.h>

extern module AP_MODULE_DECLARE_DATA staple_module;

APLOG_USE_MODULE(staple);

#define STAPLE_VERSION "0.1.0"

#include <apr_hash.h>
#include <apr_shm.h>
#include <apr_thread_rwlock.h>
#include <apr_global_mutex.h>
#include <ap_socache.h>
#include <mod_watchdog.h>

#include "staple_ocsp.h"
#include "staple_timing.h"
#include "mod_staple_config.h"

#define STAPLE_ERROR_LEN 240

/* Events for StapleEventCmd. */
typedef enum {
    STAPLE_EVENT_RENEWED = 0,
    STAPLE_EVENT_ERRORED,
    STAPLE_EVENT_REVOKED,
    STAPLE_EVENT_MISSING,
    STAPLE_EVENT_EXPIRING,
    STAPLE_EVENT_COUNT
} staple_event_e;

/* Fetch outcomes: the check results, then failures before any response. */
#define STAPLE_OUTCOME_FETCH_ERROR STAPLE_CHECK_COUNT
#define STAPLE_OUTCOME_COUNT       (STAPLE_CHECK_COUNT + 1)

/* Fetch duration histogram: upper bounds in milliseconds, then +Inf. */
#define STAPLE_HIST_BUCKETS 10

/* A refresher round takes in certificates that fall due for this long. */
#define STAPLE_ROUND_MAX apr_time_from_sec(30)
extern const apr_interval_time_t staple_hist_bounds_ms[STAPLE_HIST_BUCKETS - 1];

/* Shared memory, one slot per claimed certificate: counters, and the
 * refresher's state, which passes from the startup fetch to the refresher
 * and from one refresher process to the next. Fetch state is written by
 * one process at a time (the startup child, then the watchdog singleton). */
typedef struct {
    apr_uint32_t gen;                  /* bumped after a new response is in the cache */
    apr_uint64_t stapled;              /* handshakes that got a staple */
    apr_uint64_t unstapled;            /* handshakes that asked and got none */
    apr_uint32_t failures;             /* consecutive failed fetches */
    apr_time_t due;                    /* next fetch; 0: look at once */
    apr_time_t valid_until;            /* nextUpdate of the good response held; 0: none */
    apr_time_t fetched_at;             /* when the response in the caches was fetched */
    apr_time_t this_update;            /* of the good response held */
    int cert_status;                   /* V_OCSP_CERTSTATUS_* of it; -1: none yet */
    apr_time_t last_attempt;           /* start of the last fetch */
    apr_interval_time_t last_duration; /* the responder's response time */
    apr_time_t last_error_at;          /* 0: no error yet */
    char last_error[STAPLE_ERROR_LEN]; /* the reason of the last failure */
    apr_uint32_t events_pending;       /* bit per staple_event_e */
    apr_time_t event_at[STAPLE_EVENT_COUNT]; /* last run, for rate limiting */
} staple_slot_t;

typedef struct {
    staple_cert_t *cert;
    const char *url;          /* responder URL in use */
    const unsigned char *key; /* socache key: the certificate's SHA-1 */
    unsigned int key_len;
    apr_array_header_t *vhosts; /* const char *: servers using it */
    int claimed;
    int index; /* slot index when claimed */

    /* this process's copy of the response, guarded by lock */
    apr_thread_rwlock_t *lock;
    unsigned char *der; /* malloc'ed */
    apr_size_t der_len;
    apr_time_t next_update;
    apr_uint32_t gen_seen;
    apr_time_t checked_at;

    int in_flight; /* being fetched by this process (the refresher) */

} staple_item_t;

/* One socache instance with its provider and, when the provider needs one,
 * its global mutex. */
typedef struct {
    const char *name; /* for log lines */
    server_rec *s;
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *inst;
    apr_global_mutex_t *mutex;
} staple_cache_t;

/* Server-wide counters, in shared memory before the slots. */
typedef struct {
    apr_uint32_t outcomes[STAPLE_OUTCOME_COUNT];     /* fetches by outcome */
    apr_uint32_t duration_hist[STAPLE_HIST_BUCKETS]; /* fetches by duration */
    apr_uint64_t duration_sum_us;                    /* of all fetches */
} staple_stats_t;

typedef struct {
    apr_pool_t *pool;
    server_rec *s;
    apr_hash_t *by_id;
    apr_hash_t *primed;        /* every id mod_ssl primed, claimed or not */
    staple_issuers_t *issuers; /* the issuers of the primed certificates */
    apr_array_header_t *items; /* staple_item_t *, claimed ones only */
    staple_srv_conf_t *gc;
    staple_check_params_t check;
    staple_timing_t timing;
    staple_cache_t shared; /* StapleCache: may be shared by a cluster */
    staple_cache_t node;   /* node-local shmcb when StapleCache is remote */
    staple_cache_t *local; /* what handshakes read: &shared or &node */
    const char *node_id;   /* identifies this server in fetch leases */
    apr_shm_t *shm;
    staple_stats_t *stats;
    staple_slot_t *slots;
    const char *store; /* StapleStore directory, NULL: none */
    ap_watchdog_t *watchdog;
    apr_array_header_t *event_procs; /* running StapleEventCmd, refresher only */
    int active;
} staple_reg_t;

extern staple_reg_t *staple_reg;

/** Name of an event, as passed to StapleEventCmd. */
const char *staple_event_name(staple_event_e ev);

/** Name of a fetch outcome, for the status page and metrics. */
const char *staple_outcome_name(int outcome);

/** The staple-status handler and the mod_status section (mod_staple_status.c). */
void staple_status_register_hooks(apr_pool_t *p);

#endif /* MOD_STAPLE_PRIVATE_H */
