/*
 * mod_staple: OCSP stapling for mod_ssl through httpd's ssl_ocsp hooks.
 *
 * mod_ssl primes every certificate at post_config; the registry
 * (staple_reg.h) claims those with a responder. Responses are fetched before
 * any handshake needs them (mod_staple_refresher.c), kept in an socache
 * shared by all processes (mod_staple_cache.c), and each handshake is
 * answered from a per-process copy without ever touching the network.
 * This file is the module record, its hooks, and the registry's life cycle.
 */
#include <apr_shm.h>
#include <apr_strings.h>

#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_main.h>
#include <http_ssl.h>
#include <ap_mpm.h>
#include <util_mutex.h>

#include "mod_staple_private.h"

#define STAPLE_USER_AGENT   "mod_staple/" STAPLE_VERSION
#define STAPLE_MAX_PARALLEL 16

/* The registry of the configuration being run; reset with its pool. */
static staple_reg_t *current;
static apr_pool_t *current_pool;
static staple_caches_t *current_caches;
static int active; /* post_config set it up: handshakes may be answered */

staple_reg_t *staple_active_reg(void)
{
    return active ? current : NULL;
}

static apr_status_t reg_cleanup(void *data)
{
    (void)data;
    current = NULL;
    current_pool = NULL;
    current_caches = NULL;
    active = 0;
    return APR_SUCCESS;
}

static void log_line(void *baton, int level, const char *msg)
{
    ap_log_error(APLOG_MARK, level, 0, baton, "%s", msg);
}

static double jitter(void)
{
    apr_uint32_t v;

    ap_random_insecure_bytes(&v, sizeof(v));
    return (double)v / 4294967296.0;
}

static int stopping(void)
{
    int state;

    return staple_startup_stopping() ||
           (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS &&
            state == AP_MPMQ_STOPPING);
}

/* The registry of this configuration, made at the first certificate. */
static staple_reg_t *reg_get(apr_pool_t *pconf)
{
    server_rec *s = ap_server_conf;
    staple_mod_conf_t *mc = staple_srv_conf(s)->mc;
    staple_reg_opts_t opts = {0};
    char host[APRMAXHOSTLEN + 1];

    if (current && current_pool == pconf) {
        return current;
    }
    staple_conf_reg_opts(mc, &opts);
    opts.fetch.max_parallel = STAPLE_MAX_PARALLEL;
    opts.fetch.user_agent = STAPLE_USER_AGENT;
    opts.store = staple_conf_store(mc, pconf);
    if (apr_gethostname(host, sizeof(host), pconf) != APR_SUCCESS) {
        apr_cpystrn(host, "localhost", sizeof(host));
    }
    opts.node_id = apr_pstrcat(pconf, host, ":", ap_server_root, NULL);
    opts.random = jitter;
    opts.stopping = stopping;
    opts.log = log_line;
    opts.log_baton = s;
    opts.log_level = ap_get_server_module_loglevel(s, APLOG_MODULE_INDEX);
    current = staple_reg_make(pconf, &opts);
    current_pool = pconf;
    active = 0;
    apr_pool_cleanup_register(pconf, current, reg_cleanup, apr_pool_cleanup_null);
    return current;
}

static const char *vhost_name(apr_pool_t *p, server_rec *s)
{
    unsigned port = s->port ? s->port : (s->addrs ? s->addrs->host_port : 0);

    return apr_psprintf(p, "%s:%u", s->server_hostname ? s->server_hostname : "*", port);
}

/* ------------------------------------------------------------------ */
/* The ssl_ocsp hooks                                                  */

static int staple_prime(server_rec *s, apr_pool_t *p, const char *id, apr_size_t id_len,
                        const char *pem)
{
    staple_srv_conf_t *sc = staple_srv_conf(s);
    staple_reg_t *reg;

    if (id_len != STAPLE_ID_LEN) {
        return DECLINED;
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        /* httpd's first configuration pass at startup is thrown away and
         * serves no handshake: claim without the cost of reading the
         * certificate (thousands of them add up), decide in the real pass */
        return staple_conf_engine(sc) ? OK : DECLINED;
    }
    reg = reg_get(p);
    staple_reg_note_primed(reg, (const unsigned char *)id);
    if (!staple_conf_engine(sc)) {
        return DECLINED;
    }
    return staple_reg_add(reg, (const unsigned char *)id, pem, vhost_name(p, s),
                          sc->force_urls)
               ? OK
               : DECLINED;
}

static int staple_get_resp(server_rec *s, conn_rec *c, const char *id, apr_size_t id_len,
                           ap_ssl_ocsp_copy_resp *cb, void *userdata)
{
    (void)s;
    if (!active) {
        return DECLINED;
    }
    return staple_reg_get_resp(current, (const unsigned char *)id, id_len, cb, userdata,
                               c->pool) == STAPLE_RESP_NOT_OURS
               ? DECLINED
               : OK;
}

/* ------------------------------------------------------------------ */
/* Server lifecycle                                                    */

static int staple_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    apr_status_t rv;

    (void)plog;
    (void)ptemp;
    rv = ap_mutex_register(pconf, STAPLE_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    if (rv != APR_SUCCESS) {
        ap_log_perror(APLOG_MARK, APLOG_CRIT, rv, plog,
                      "mod_staple: cannot register the %s mutex type", STAPLE_MUTEX_TYPE);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* The counters and per-certificate slots, in memory every process shares. */
static apr_status_t attach_shm(staple_reg_t *reg, staple_caches_t *caches, server_rec *s,
                               apr_pool_t *pconf)
{
    apr_size_t size = staple_reg_shm_size(reg);
    apr_shm_t *shm;
    apr_status_t rv;

    rv = apr_shm_create(&shm, size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "cannot create %" APR_SIZE_T_FMT " bytes of shared memory for "
                     "mod_staple's counters",
                     size);
        return rv;
    }
    staple_reg_attach(reg, apr_shm_baseaddr_get(shm), 1, staple_caches_shared(caches),
                      staple_caches_local(caches));
    return APR_SUCCESS;
}

static void log_stapled(staple_reg_t *reg, server_rec *s, apr_pool_t *ptemp)
{
    staple_snapshot_t *snap = staple_reg_snapshot(reg, ptemp);
    int i;

    for (i = 0; APLOGdebug(s) && i < snap->count; i++) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "stapling %s for %s",
                     snap->certs[i].subject,
                     apr_array_pstrcat(ptemp, snap->certs[i].vhosts, ','));
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "mod_staple %s: stapling %d certificate(s), %s%s", STAPLE_VERSION,
                 snap->count, snap->cache_name,
                 snap->node_local ? " (handshakes read a node-local copy)" : "");
}

static int staple_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                              server_rec *s)
{
    staple_mod_conf_t *mc = staple_srv_conf(s)->mc;
    staple_caches_t *caches;
    staple_reg_t *reg;
    const char *store;

    (void)plog;
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    reg = reg_get(pconf);
    staple_conf_report_unprimed(reg, s, ptemp);
    if (staple_reg_count(reg) == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "no certificates to staple");
        return OK;
    }
    if (staple_fetch_global_init() != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "cannot initialise libcurl");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (staple_caches_make(&caches, s, mc, staple_reg_count(reg), pconf) != APR_SUCCESS ||
        attach_shm(reg, caches, s, pconf) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    store = staple_conf_store(mc, ptemp);
    staple_reg_set_store(reg, store ? staple_store_setup(s, store) : NULL);
    if (staple_conf_startup_timeout(mc) > 0) {
        staple_startup_fetch(reg, caches, s, staple_conf_startup_timeout(mc), ptemp);
    }
    if (staple_refresher_start(reg, s, mc, pconf) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    log_stapled(reg, s, ptemp);
    current_caches = caches;
    active = 1;
    return OK;
}

/* httpd -t: what can be checked without starting */
static void staple_test_config(apr_pool_t *pconf, server_rec *s)
{
    const char *store = staple_conf_store(staple_srv_conf(s)->mc, pconf);

    if (store) {
        staple_store_test(s, store);
    }
}

static void staple_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    if (!active) {
        return;
    }
    rv = staple_caches_child_init(current_caches, pchild);
    if (rv == APR_SUCCESS &&
        (rv = staple_reg_child_init(current, pchild)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create the locks of the OCSP responses' process copies");
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "no stapling in this process");
        active = 0;
    }
}

static void staple_register_hooks(apr_pool_t *p)
{
    static const char *const after_ssl[] = {"mod_ssl.c", NULL};

    ap_hook_pre_config(staple_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* after mod_ssl, which primes the certificates in its post_config, and
     * before mod_watchdog (APR_HOOK_LAST), which starts the watchdogs */
    ap_hook_post_config(staple_post_config, after_ssl, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(staple_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_test_config(staple_test_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_ocsp_prime_hook(staple_prime, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_ocsp_get_resp_hook(staple_get_resp, NULL, NULL, APR_HOOK_MIDDLE);
    staple_status_register_hooks(p);
    staple_relay_register_hooks(p);
}

module AP_MODULE_DECLARE_DATA staple_module = {
    STANDARD20_MODULE_STUFF,
    NULL,                   /* per-directory config creator */
    NULL,                   /* dir config merger */
    staple_create_srv_conf, /* server config creator */
    staple_merge_srv_conf,  /* server config merger */
    staple_cmds,            /* command table */
    staple_register_hooks,  /* register hooks */
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    AP_MODULE_FLAG_NONE
#endif
};
