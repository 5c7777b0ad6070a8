/*
 * Directives of mod_staple and the configuration they fill: the server-wide
 * settings (one per configuration) apart from the per-server ones. Values
 * stay "unset" until a directive sets them; defaults are applied where they
 * are read (staple_conf_reg_opts and the accessors below).
 */
#ifndef MOD_STAPLE_CONFIG_H
#define MOD_STAPLE_CONFIG_H

#include <httpd.h>
#include <http_config.h>
#include <ap_socache.h>

#include <openssl/x509.h>

#include "staple_reg.h"

#define STAPLE_UNSET (-1)

/** Server-wide settings: directives allowed outside <VirtualHost> only. */
typedef struct {
    const ap_socache_provider_t *cache_provider; /**< StapleCache, NULL: default */
    ap_socache_instance_t *cache_instance;       /**< created at parse time */
    const char *cache_spec;                      /**< as written, for logs */
    const char *proxy;                           /**< StapleProxy URL, or NULL */
    apr_array_header_t *event_cmd;     /**< StapleEventCmd argv (const char *), or NULL */
    const char *store;                 /**< StapleStore as written, or NULL when unset */
    STACK_OF(X509) *trusted;           /**< StapleTrustedCertificate, or NULL */
    apr_interval_time_t event_timeout; /**< StapleEventTimeout */
    int request_method;                /**< StapleRequestMethod, STAPLE_METHOD_* */
    apr_interval_time_t startup_timeout;
    apr_interval_time_t responder_timeout;
    apr_interval_time_t time_skew;
    apr_interval_time_t max_age; /**< -1: no limit */
    apr_interval_time_t standard_timeout;
    apr_interval_time_t retry_delay;
    apr_interval_time_t error_timeout;
    int renew_pct; /**< -1 when renew_window is used */
    apr_interval_time_t renew_window;
} staple_mod_conf_t;

/** Per-server settings, merged from the main server into virtual hosts. */
typedef struct {
    int engine;                     /**< StapleEngine, STAPLE_UNSET until set */
    apr_array_header_t *force_urls; /**< StapleForceURL (const char *), or NULL */
    staple_mod_conf_t *mc;          /**< the server-wide settings, shared */
} staple_srv_conf_t;

extern const command_rec staple_cmds[];

void *staple_create_srv_conf(apr_pool_t *p, server_rec *s);
void *staple_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);

/** The configuration of a (virtual) server. */
staple_srv_conf_t *staple_srv_conf(server_rec *s);

/** StapleEngine of a server: on unless set off. */
int staple_conf_engine(const staple_srv_conf_t *sc);

/** StapleEventTimeout. */
apr_interval_time_t staple_conf_event_timeout(const staple_mod_conf_t *mc);

/** StapleStartupTimeout. */
apr_interval_time_t staple_conf_startup_timeout(const staple_mod_conf_t *mc);

/**
 * StapleStore as a directory, relative ones under DefaultRuntimeDir, or NULL
 * for none.
 */
const char *staple_conf_store(const staple_mod_conf_t *mc, apr_pool_t *p);

/** The registry's options from the server-wide settings, defaults applied. */
void staple_conf_reg_opts(const staple_mod_conf_t *mc, staple_reg_opts_t *opts);

/**
 * Say why certificates of SSLCertificateFile lines that mod_ssl never primed
 * are not stapled: self-signed, or issuer missing. Once per certificate.
 */
void staple_conf_report_unprimed(const staple_reg_t *reg, server_rec *s,
                                 apr_pool_t *ptemp);

#define STAPLE_STORE_NONE         "none"
#define STAPLE_DEFAULT_CACHE_NAME "shmcb"

#endif /* MOD_STAPLE_CONFIG_H */
