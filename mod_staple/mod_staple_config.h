/*
 * Directives of mod_staple and the server configuration they fill.
 */
#ifndef MOD_STAPLE_CONFIG_H
#define MOD_STAPLE_CONFIG_H

#include <httpd.h>
#include <http_config.h>
#include <ap_socache.h>

#include <openssl/x509.h>

#include "staple_timing.h"

#define STAPLE_UNSET (-1)

/** Per-server configuration. Server-wide values live in the main server's. */
typedef struct {
    /* per virtual host */
    int engine;            /**< StapleEngine, STAPLE_UNSET until set */
    const char *force_url; /**< StapleForceURL */

    /* server-wide (GLOBAL_ONLY) */
    const ap_socache_provider_t *cache_provider; /**< StapleCache provider */
    ap_socache_instance_t *cache_instance;       /**< created at parse time */
    const char *cache_spec;                      /**< as written, for logs */
    const char *proxy;                           /**< StapleProxy URL, or NULL */
    apr_array_header_t *event_cmd; /**< StapleEventCmd argv (const char *), or NULL */
    const char *store;             /**< StapleStore as written, or NULL when unset */
    STACK_OF(X509) *trusted;       /**< StapleTrustedCertificate, or NULL */
    apr_interval_time_t startup_timeout;
    apr_interval_time_t responder_timeout;
    apr_interval_time_t time_skew;
    apr_interval_time_t max_age; /**< -1: no limit */
    apr_interval_time_t standard_timeout;
    apr_interval_time_t retry_delay;
    apr_interval_time_t error_timeout;
    int renew_pct; /**< -1 when renew_window is used */
    apr_interval_time_t renew_window;
} staple_srv_conf_t;

extern const command_rec staple_cmds[];

void *staple_create_srv_conf(apr_pool_t *p, server_rec *s);
void *staple_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);

/** The configuration of a (virtual) server. */
staple_srv_conf_t *staple_srv_conf(server_rec *s);

/**
 * Fill unset server-wide values of the main server's configuration with
 * their defaults; called once in post_config.
 */
void staple_conf_apply_defaults(staple_srv_conf_t *gc);

/** The timing policy of the server-wide configuration. */
void staple_conf_timing(const staple_srv_conf_t *gc, staple_timing_t *t);

#define STAPLE_DEFAULT_STORE      "staple"
#define STAPLE_STORE_NONE         "none"
#define STAPLE_DEFAULT_CACHE_NAME "shmcb"
#define STAPLE_DEFAULT_CACHE_ARGS "staple(1048576)"

#endif /* MOD_STAPLE_CONFIG_H */
