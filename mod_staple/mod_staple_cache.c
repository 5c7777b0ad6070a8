/*
 * StapleCache and the node-local copy as the registry's cache operations:
 * an APR socache provider instance each, with a global mutex when the
 * provider is not safe across processes (AP_SOCACHE_FLAG_NOTMPSAFE).
 */
#include <apr_strings.h>

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <ap_provider.h>
#include <ap_socache.h>
#include <util_mutex.h>

#include "mod_staple_private.h"

/* Room in an shmcb for n responses: they are typically 0.5 to 3 KiB, and
 * shmcb spreads entries over up to 256 subcaches by the first byte of the
 * key, which some fill faster than others. */
#define STAPLE_SHMCB_PER_CERT 8192
#define STAPLE_SHMCB_MIN      1048576

static apr_size_t shmcb_size_for(int n)
{
    apr_size_t size = (apr_size_t)n * STAPLE_SHMCB_PER_CERT;

    return size > STAPLE_SHMCB_MIN ? size : STAPLE_SHMCB_MIN;
}

/* mod_socache_shmcb's size when its argument names none. */
#define STAPLE_SHMCB_DEFAULT_SIZE 512000

/*
 * An shmcb that StapleCache names explicitly, too small for the
 * certificates, silently evicts responses: processes that start later
 * (a recycled child) staple nothing for them. Say which size to set.
 */
static void check_shmcb_size(server_rec *s, const char *spec, int n)
{
    const char *args = ap_strchr_c(spec, ':');
    const char *open = args ? strrchr(args, '(') : NULL;
    apr_size_t size = STAPLE_SHMCB_DEFAULT_SIZE;
    apr_size_t want = shmcb_size_for(n);
    int path_len;

    args = args ? args + 1 : "";
    if (open) {
        size = (apr_size_t)apr_atoi64(open + 1);
    }
    path_len = open ? (int)(open - args) : (int)strlen(args);
    /* half the room this module gives by default still holds them all */
    if (size >= want / 2) {
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                 "StapleCache %s: %" APR_SIZE_T_FMT " bytes are too few for the %d "
                 "certificates stapled: shmcb evicts responses when full, and processes "
                 "started later staple nothing for them; give it %" APR_SIZE_T_FMT
                 " bytes (StapleCache shmcb:%.*s(%" APR_SIZE_T_FMT ")), or leave "
                 "StapleCache unset to have it sized for the certificates",
                 spec, size, n, want, path_len ? path_len : 6, path_len ? args : "staple",
                 want);
}

typedef struct {
    const char *name; /* for log lines */
    server_rec *s;
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *inst;
    apr_global_mutex_t *mutex;
    int memcache; /* the provider is mod_socache_memcache's */
    staple_cache_ops_t ops;
} socache_t;

/* memcached's longest relative expiry (30 days), less a minute of margin */
#define STAPLE_MEMCACHE_MAX_EXPIRY apr_time_from_sec(30 * 86400 - 60)

struct staple_caches_t {
    socache_t shared; /* StapleCache: may be shared by a cluster */
    socache_t node;   /* node-local shmcb when StapleCache is not one */
    int node_local;
};

static apr_status_t cache_lock(socache_t *c)
{
    apr_status_t rv;

    if (c->mutex && (rv = apr_global_mutex_lock(c->mutex)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, c->s, "cannot lock the mutex of %s",
                     c->name);
        return rv;
    }
    return APR_SUCCESS;
}

static apr_status_t cache_unlock(socache_t *c, apr_status_t rv)
{
    apr_status_t urv;

    if (c->mutex && (urv = apr_global_mutex_unlock(c->mutex)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, urv, c->s, "cannot unlock the mutex of %s",
                     c->name);
        return rv == APR_SUCCESS ? urv : rv;
    }
    return rv;
}

static apr_status_t cache_get(void *baton, const unsigned char *key, unsigned int key_len,
                              unsigned char *buf, unsigned int *len, apr_pool_t *p)
{
    socache_t *c = baton;
    apr_pool_t *sub;
    apr_status_t rv;

    if ((rv = cache_lock(c)) != APR_SUCCESS) {
        return rv;
    }
    /* mod_socache_redis reads a whole value into the pool before it sees
     * that it does not fit buf: whatever size someone wrote there is given
     * back at once, not with the refresher's round */
    if ((rv = apr_pool_create(&sub, p)) == APR_SUCCESS) {
        rv = c->provider->retrieve(c->inst, c->s, key, key_len, buf, len, sub);
        apr_pool_destroy(sub);
    }
    return cache_unlock(c, rv);
}

static apr_status_t cache_put(void *baton, const unsigned char *key, unsigned int key_len,
                              apr_time_t expiry, const unsigned char *data,
                              unsigned int len, apr_pool_t *p)
{
    socache_t *c = baton;
    apr_status_t rv;

    /* memcached reads an expiry of more than 30 days as an absolute time,
     * long past: the entry would be gone at once */
    if (c->memcache && expiry > apr_time_now() + STAPLE_MEMCACHE_MAX_EXPIRY) {
        expiry = apr_time_now() + STAPLE_MEMCACHE_MAX_EXPIRY;
    }
    if ((rv = cache_lock(c)) != APR_SUCCESS) {
        return rv;
    }
    rv = c->provider->store(c->inst, c->s, key, key_len, expiry, (unsigned char *)data,
                            len, p);
    return cache_unlock(c, rv);
}

static apr_status_t cache_cleanup(void *data)
{
    socache_t *c = data;

    if (c->inst) {
        c->provider->destroy(c->inst, c->s);
        c->inst = NULL;
    }
    return APR_SUCCESS;
}

/* Create the mutex when the provider needs one and initialise the cache. */
static apr_status_t cache_init(socache_t *c, server_rec *s, const char *mutex_id,
                               apr_pool_t *pconf)
{
    struct ap_socache_hints hints = {0};
    apr_status_t rv;

    c->s = s;
    c->memcache = !strcmp(c->provider->name, "memcache");
    c->ops.name = c->name;
    c->ops.get = cache_get;
    c->ops.put = cache_put;
    c->ops.baton = c;
    if (c->provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) {
        rv = ap_global_mutex_create(&c->mutex, NULL, STAPLE_MUTEX_TYPE, mutex_id, s,
                                    pconf, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "cannot create the mutex of %s",
                         c->name);
            return rv;
        }
    }
    hints.avg_id_len = STAPLE_ID_LEN;
    hints.avg_obj_size = 1024;
    hints.expiry_interval = 30;
    rv = c->provider->init(c->inst, "mod_staple", &hints, s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "cannot initialise %s", c->name);
        return rv;
    }
    apr_pool_cleanup_register(pconf, c, cache_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

apr_status_t staple_caches_make(staple_caches_t **pc, server_rec *s,
                                staple_mod_conf_t *mc, int ncerts, apr_pool_t *pconf)
{
    staple_caches_t *c = apr_pcalloc(pconf, sizeof(*c));
    const ap_socache_provider_t *shmcb =
        ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, STAPLE_DEFAULT_CACHE_NAME,
                           AP_SOCACHE_PROVIDER_VERSION);
    const char *err;
    apr_status_t rv;

    *pc = c;
    if (mc->cache_provider == NULL) {
        if (shmcb == NULL) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                         "StapleCache is not set and its default, shmcb, is not loaded: "
                         "LoadModule socache_shmcb_module modules/mod_socache_shmcb.so "
                         "or set StapleCache to a loaded provider");
            return APR_EGENERAL;
        }
        const char *args =
            apr_psprintf(pconf, "staple(%" APR_SIZE_T_FMT ")", shmcb_size_for(ncerts));
        mc->cache_provider = shmcb;
        err = shmcb->create(&mc->cache_instance, args, pconf, pconf);
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                         "cannot create the default StapleCache: %s", err);
            return APR_EGENERAL;
        }
        mc->cache_spec = apr_pstrcat(pconf, STAPLE_DEFAULT_CACHE_NAME ":", args, NULL);
    } else if (mc->cache_provider == shmcb) {
        check_shmcb_size(s, mc->cache_spec, ncerts);
    }
    c->shared.name = apr_pstrcat(pconf, "StapleCache ", mc->cache_spec, NULL);
    c->shared.provider = mc->cache_provider;
    c->shared.inst = mc->cache_instance;
    if ((rv = cache_init(&c->shared, s, "shared", pconf)) != APR_SUCCESS) {
        return rv;
    }
    if (c->shared.provider == shmcb) {
        return APR_SUCCESS;
    }
    /* StapleCache may be on the network (memcache, redis) or on disk (dbm):
     * handshakes read a node-local shared memory copy instead, which the
     * background fetches keep up to date. */
    if (shmcb == NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "mod_socache_shmcb is not loaded: handshakes will read %s directly "
                     "and may wait on it; load mod_socache_shmcb to avoid that",
                     c->shared.name);
        return APR_SUCCESS;
    }
    c->node.name = "node-local shmcb cache";
    c->node.provider = shmcb;
    err = shmcb->create(
        &c->node.inst,
        apr_psprintf(pconf, "staple-node(%" APR_SIZE_T_FMT ")", shmcb_size_for(ncerts)),
        pconf, pconf);
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     "cannot create the node-local shmcb cache: %s", err);
        return APR_EGENERAL;
    }
    if ((rv = cache_init(&c->node, s, "node", pconf)) != APR_SUCCESS) {
        return rv;
    }
    c->node_local = 1;
    return APR_SUCCESS;
}

const staple_cache_ops_t *staple_caches_shared(const staple_caches_t *c)
{
    return &c->shared.ops;
}

const staple_cache_ops_t *staple_caches_local(const staple_caches_t *c)
{
    return c->node_local ? &c->node.ops : NULL;
}

static apr_status_t mutex_child_init(socache_t *c, apr_pool_t *p)
{
    apr_status_t rv;

    if (c->mutex == NULL) {
        return APR_SUCCESS;
    }
    rv = apr_global_mutex_child_init(&c->mutex, apr_global_mutex_lockfile(c->mutex), p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, c->s, "cannot attach to the mutex of %s",
                     c->name);
    }
    return rv;
}

apr_status_t staple_caches_child_init(staple_caches_t *c, apr_pool_t *p)
{
    apr_status_t rv = mutex_child_init(&c->shared, p);

    if (rv == APR_SUCCESS && c->node_local) {
        rv = mutex_child_init(&c->node, p);
    }
    return rv;
}
