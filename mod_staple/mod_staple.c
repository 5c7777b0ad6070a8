/*
 * mod_staple: OCSP stapling for mod_ssl through httpd's ssl_ocsp hooks.
 *
 * mod_ssl primes every certificate at post_config; we claim those with a
 * responder, fetch their responses before any handshake needs them (at
 * startup in an unprivileged child, then from a watchdog singleton), keep
 * verified responses in an socache shared by all processes, and answer each
 * handshake from a per-process copy without ever touching the network.
 */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_allocator.h>
#include <apr_atomic.h>
#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_hash.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_date.h>
#include <apr_thread_proc.h>
#include <apr_thread_rwlock.h>

#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_main.h>
#include <http_ssl.h>
#include <ap_mpm.h>
#include <ap_socache.h>
#include <mod_watchdog.h>
#include <mpm_common.h>
#include <unixd.h>
#include <util_mutex.h>

#include "staple_entry.h"
#include "staple_fetch.h"
#include "staple_ocsp.h"
#include "staple_store.h"
#include "staple_timing.h"
#include "mod_staple_config.h"
#include "mod_staple_private.h"

#define STAPLE_MUTEX_TYPE   "staple-cache"
#define STAPLE_WATCHDOG     "_staple_"
#define STAPLE_USER_AGENT   "mod_staple/" STAPLE_VERSION
#define STAPLE_MAX_PARALLEL 16

/* Room in the node-local cache: responses are typically 0.5 to 3 KiB. */
#define STAPLE_NODE_CACHE_SIZE(n)                                                        \
    ((apr_size_t)(n)*8192 > 1048576 ? (apr_size_t)(n)*8192 : 1048576)

/* Without a local copy, a process looks in the shared cache at most this
 * often per certificate, unless the refresher announced a new response. */
#define STAPLE_MISS_RECHECK apr_time_from_sec(1)

/* The registry of the configuration being run; reset when pconf is. */
staple_reg_t *staple_reg;

static APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) * wd_get_instance;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) * wd_register_callback;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_set_callback_interval) * wd_set_interval;

static apr_status_t reg_cleanup(void *data)
{
    if (staple_reg == data) {
        staple_reg = NULL;
    }
    return APR_SUCCESS;
}

static staple_reg_t *reg_get(apr_pool_t *pconf)
{
    if (staple_reg == NULL || staple_reg->pool != pconf) {
        staple_reg = apr_pcalloc(pconf, sizeof(*staple_reg));
        staple_reg->pool = pconf;
        staple_reg->by_id = apr_hash_make(pconf);
        staple_reg->primed = apr_hash_make(pconf);
        staple_reg->items = apr_array_make(pconf, 16, sizeof(staple_item_t *));
        apr_pool_cleanup_register(pconf, staple_reg, reg_cleanup, apr_pool_cleanup_null);
    }
    return staple_reg;
}

static double jitter(void)
{
    apr_uint32_t v;

    ap_random_insecure_bytes(&v, sizeof(v));
    return (double)v / 4294967296.0;
}

static const char *vhost_name(apr_pool_t *p, server_rec *s)
{
    unsigned port = s->port ? s->port : (s->addrs ? s->addrs->host_port : 0);

    return apr_psprintf(p, "%s:%u", s->server_hostname ? s->server_hostname : "*", port);
}

/* ------------------------------------------------------------------ */
/* Claiming certificates                                               */

static int staple_prime(server_rec *s, apr_pool_t *p, const char *id, apr_size_t id_len,
                        const char *pem)
{
    staple_srv_conf_t *sc = staple_srv_conf(s);
    staple_reg_t *r;
    staple_item_t *it;
    apr_status_t rv;
    char err[256];

    if (id_len != STAPLE_ID_LEN) {
        return DECLINED;
    }
    r = reg_get(p);
    apr_hash_set(r->primed, apr_pmemdup(p, id, id_len), (apr_ssize_t)id_len, r);
    if (sc->engine == 0) {
        return DECLINED;
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        /* httpd's first configuration pass at startup is thrown away and
         * serves no handshake: claim without the cost of reading the
         * certificate (thousands of them add up), decide in the real pass */
        return OK;
    }
    it = apr_hash_get(r->by_id, id, (apr_ssize_t)id_len);
    if (it) {
        APR_ARRAY_PUSH(it->vhosts, const char *) = vhost_name(p, s);
        return it->claimed ? OK : DECLINED;
    }
    it = apr_pcalloc(p, sizeof(*it));
    it->vhosts = apr_array_make(p, 2, sizeof(const char *));
    APR_ARRAY_PUSH(it->vhosts, const char *) = vhost_name(p, s);
    apr_hash_set(r->by_id, apr_pmemdup(p, id, id_len), (apr_ssize_t)id_len, it);

    if (r->issuers == NULL) {
        /* StapleTrustedCertificate is server-wide: the same for every host */
        r->issuers = staple_issuers_make(p, sc->trusted);
    }
    rv = staple_cert_load(&it->cert, p, pem, r->issuers, err, sizeof(err));
    if (rv == APR_NOTFOUND && it->cert && it->cert->self_signed) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "certificate %s (serial %s) is self-signed: there is no "
                     "responder to ask, not stapling it",
                     it->cert->subject, it->cert->serial);
        return DECLINED;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "certificate %s of server %s cannot be stapled: %s; put the "
                     "issuer certificate after it in SSLCertificateFile",
                     it->cert ? it->cert->subject : "(unreadable)", vhost_name(p, s),
                     err);
        return DECLINED;
    }
    it->url = sc->force_url ? sc->force_url : it->cert->ocsp_url;
    if (it->url == NULL) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "certificate %s (serial %s) has no OCSP responder URL and no "
                     "StapleForceURL is set: not stapling it",
                     it->cert->subject, it->cert->serial);
        return DECLINED;
    }
    /* The key is the certificate's SHA-1 itself: shmcb picks a subcache by
     * the first byte of the key, so a common prefix would crowd every
     * response into one subcache. (memcache and redis hex-encode keys.) */
    it->key = apr_pmemdup(p, it->cert->id, STAPLE_ID_LEN);
    it->key_len = STAPLE_ID_LEN;
    it->claimed = 1;
    it->index = r->items->nelts;
    APR_ARRAY_PUSH(r->items, staple_item_t *) = it;
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 "claimed certificate %s (serial %s%s), responder %s", it->cert->subject,
                 it->cert->serial, it->cert->must_staple ? ", Must-Staple" : "", it->url);
    return OK;
}

/*
 * mod_ssl primes only certificates whose issuer it found, so a self-signed
 * certificate or one without its chain never reaches the prime hook. Look
 * at every SSLCertificateFile of the configuration and say why those were
 * left out, once each.
 */
static void report_unprimed_file(staple_reg_t *r, server_rec *s, const char *file,
                                 apr_hash_t *seen, apr_pool_t *p)
{
    const char *path = ap_server_root_relative(p, file);
    apr_file_t *fd;
    apr_finfo_t fi;
    apr_size_t len;
    char *pem, err[256];
    unsigned char id[STAPLE_ID_LEN];
    staple_cert_t *cert;
    apr_status_t rv;

    if (path == NULL || apr_hash_get(seen, path, APR_HASH_KEY_STRING)) {
        return;
    }
    apr_hash_set(seen, path, APR_HASH_KEY_STRING, path);
    if (apr_file_open(&fd, path, APR_FOPEN_READ, 0, p) != APR_SUCCESS) {
        return; /* not a file (a PKCS#11 URI, say): mod_ssl reports its own errors */
    }
    if (apr_file_info_get(&fi, APR_FINFO_SIZE, fd) != APR_SUCCESS || fi.size <= 0 ||
        fi.size > 16 * 1024 * 1024) {
        apr_file_close(fd);
        return;
    }
    len = (apr_size_t)fi.size;
    pem = apr_palloc(p, len + 1);
    rv = apr_file_read_full(fd, pem, len, &len);
    apr_file_close(fd);
    if (rv != APR_SUCCESS) {
        return;
    }
    pem[len] = '\0';
    /* the common case, a primed certificate, without parsing it */
    if (!staple_pem_first_id(pem, len, id) ||
        apr_hash_get(r->primed, id, STAPLE_ID_LEN)) {
        return;
    }
    staple_cert_load(&cert, p, pem, NULL, err, sizeof(err));
    if (cert == NULL || apr_hash_get(r->primed, cert->id, STAPLE_ID_LEN) ||
        apr_hash_get(seen, cert->id_hex, APR_HASH_KEY_STRING)) {
        return; /* primed (claimed or declined with a reason), or said already */
    }
    apr_hash_set(seen, cert->id_hex, APR_HASH_KEY_STRING, path);
    if (cert->self_signed) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "certificate %s (serial %s) in %s is self-signed: there is no "
                     "responder to ask, not stapling it",
                     cert->subject, cert->serial, path);
    } else {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            "certificate %s (serial %s) in %s cannot be stapled: mod_ssl did not "
            "find its issuer; put the issuer certificate after it in "
            "SSLCertificateFile (or in SSLCertificateChainFile)",
            cert->subject, cert->serial, path);
    }
}

static void report_unprimed(staple_reg_t *r, server_rec *s, ap_directive_t *d,
                            apr_hash_t *seen, apr_pool_t *p)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "SSLCertificateFile") && d->args) {
            const char *args = d->args;
            const char *file = ap_getword_conf(p, &args);
            if (*file) {
                report_unprimed_file(r, s, file, seen, p);
            }
        }
        if (d->first_child) {
            report_unprimed(r, s, d->first_child, seen, p);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The shared cache                                                    */

static void cache_lock(staple_cache_t *c)
{
    if (c->mutex) {
        apr_global_mutex_lock(c->mutex);
    }
}

static void cache_unlock(staple_cache_t *c)
{
    if (c->mutex) {
        apr_global_mutex_unlock(c->mutex);
    }
}

static apr_status_t cache_child_init(staple_cache_t *c, apr_pool_t *p)
{
    if (c->mutex == NULL) {
        return APR_SUCCESS;
    }
    return apr_global_mutex_child_init(&c->mutex, apr_global_mutex_lockfile(c->mutex), p);
}

static apr_status_t cache_store(staple_reg_t *r, staple_cache_t *c,
                                const unsigned char *key, unsigned int key_len,
                                apr_time_t expiry, const unsigned char *data,
                                apr_size_t len, apr_pool_t *p)
{
    apr_status_t rv;

    cache_lock(c);
    rv = c->provider->store(c->inst, r->s, key, key_len, expiry, (unsigned char *)data,
                            (unsigned int)len, p);
    cache_unlock(c);
    return rv;
}

static apr_status_t cache_put(staple_reg_t *r, staple_cache_t *c, staple_item_t *it,
                              const unsigned char *der, apr_size_t der_len,
                              apr_time_t fetched_at, apr_time_t expiry, apr_pool_t *p)
{
    unsigned char *buf = apr_palloc(p, STAPLE_ENTRY_HEADER_LEN + der_len);
    apr_size_t len = staple_entry_encode(buf, der, der_len, fetched_at);

    return cache_store(r, c, it->key, it->key_len, expiry, buf, len, p);
}

/*
 * Make a verified response the one every process of this server staples:
 * into StapleCache (shared with the cluster) and the node-local cache, then
 * announce it. Returns the status of the StapleCache write.
 */
static apr_status_t publish(staple_reg_t *r, staple_item_t *it, const unsigned char *der,
                            apr_size_t der_len, apr_time_t fetched_at,
                            const staple_resp_info_t *info, int to_shared, apr_pool_t *p)
{
    staple_slot_t *sl = &r->slots[it->index];
    apr_time_t expiry = info->next_update;
    apr_status_t rv = APR_SUCCESS;

    /* The copy handshakes read comes first: a shared cache on the network
     * may be slow or hang, and must not hold up stapling on this server. */
    if (r->local != &r->shared) {
        apr_status_t lrv =
            cache_put(r, r->local, it, der, der_len, fetched_at, expiry, p);
        if (lrv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, lrv, r->s,
                         "cannot store the OCSP response for %s in the %s",
                         it->cert->subject, r->local->name);
        }
    } else if (to_shared) {
        rv = cache_put(r, &r->shared, it, der, der_len, fetched_at, expiry, p);
        to_shared = 0;
    }
    sl->fetched_at = fetched_at;
    sl->this_update = info->this_update;
    sl->valid_until = info->next_update;
    sl->cert_status = info->cert_status;
    /* announce the new response to every process */
    apr_atomic_inc32(&sl->gen);
    if (to_shared) {
        rv = cache_put(r, &r->shared, it, der, der_len, fetched_at, expiry, p);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, r->s,
                     "cannot store the OCSP response for %s in %s", it->cert->subject,
                     r->shared.name);
    }
    return rv;
}

/*
 * Read the certificate's entry from a cache and verify it: what comes from
 * a shared cache may have been written by anyone.
 * Returns APR_SUCCESS with a malloc'ed DER, APR_NOTFOUND when there is no
 * entry, APR_EINVAL when the entry was rejected (why says why).
 */
static apr_status_t cache_load(staple_reg_t *r, staple_cache_t *c, staple_item_t *it,
                               apr_time_t now, unsigned char **pder, apr_size_t *pder_len,
                               apr_time_t *fetched_at, staple_resp_info_t *info,
                               char *why, apr_size_t whylen, apr_pool_t *p)
{
    unsigned int len = STAPLE_ENTRY_HEADER_LEN + STAPLE_MAX_RESPONSE_LEN;
    unsigned char *buf = malloc(len);
    const unsigned char *der;
    const char *reason;
    apr_size_t der_len;
    apr_status_t rv;
    staple_check_e rc;

    *pder = NULL;
    if (buf == NULL) {
        return APR_ENOMEM;
    }
    cache_lock(c);
    rv = c->provider->retrieve(c->inst, r->s, (const unsigned char *)it->key, it->key_len,
                               buf, &len, p);
    cache_unlock(c);
    if (rv != APR_SUCCESS) {
        free(buf);
        return APR_NOTFOUND;
    }
    if (staple_entry_decode(buf, len, &der, &der_len, fetched_at, &reason) !=
        APR_SUCCESS) {
        apr_cpystrn(why, reason, whylen);
        free(buf);
        return APR_EINVAL;
    }
    rc = staple_ocsp_check(it->cert, der, der_len, now, &r->check, info, why, whylen);
    if (rc != STAPLE_CHECK_OK) {
        free(buf);
        return APR_EINVAL;
    }
    memmove(buf, der, der_len);
    *pder = buf;
    *pder_len = der_len;
    if (*fetched_at > now || *fetched_at < info->this_update - r->check.time_skew) {
        *fetched_at = now; /* the header is not signed: keep it plausible */
    }
    return APR_SUCCESS;
}

/*
 * In a cluster, one server fetches for all: before fetching, take a short
 * lease in StapleCache. Returns 0 when another server holds it.
 */
static int take_lease(staple_reg_t *r, staple_item_t *it, apr_time_t now, apr_pool_t *p)
{
    const char *key = apr_pstrcat(p, "staple-lease:", it->cert->id_hex, NULL);
    unsigned char holder[256];
    unsigned int len = sizeof(holder) - 1;
    staple_cache_t *c = &r->shared;
    apr_status_t rv;

    if (r->local == &r->shared) {
        return 1; /* a cache of this server alone: nobody to share with */
    }
    cache_lock(c);
    rv = c->provider->retrieve(c->inst, r->s, (const unsigned char *)key,
                               (unsigned int)strlen(key), holder, &len, p);
    cache_unlock(c);
    if (rv == APR_SUCCESS) {
        holder[len] = '\0';
        if (strcmp((const char *)holder, r->node_id)) {
            return 0;
        }
    }
    cache_store(r, c, (const unsigned char *)key, (unsigned int)strlen(key),
                now + r->gc->responder_timeout + apr_time_from_sec(5),
                (const unsigned char *)r->node_id, strlen(r->node_id), p);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Handshakes                                                          */

/* Refresh this process's copy from the shared cache. Called with it->lock
 * held for writing. */
static void local_refresh(staple_reg_t *r, staple_item_t *it, server_rec *s,
                          apr_time_t now, apr_uint32_t gen, apr_pool_t *p)
{
    unsigned char *der;
    apr_size_t der_len;
    apr_time_t fetched_at;
    staple_resp_info_t info;
    char why[256];
    apr_status_t rv;

    it->checked_at = now;
    it->gen_seen = gen;
    rv = cache_load(r, r->local, it, now, &der, &der_len, &fetched_at, &info, why,
                    sizeof(why), p);
    if (rv == APR_SUCCESS) {
        free(it->der);
        it->der = der;
        it->der_len = der_len;
        it->next_update = info.next_update;
    } else if (rv == APR_EINVAL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "cached OCSP response for %s rejected: %s", it->cert->subject, why);
    }
    if (it->der && now >= it->next_update) {
        free(it->der);
        it->der = NULL;
        it->der_len = 0;
    }
}

/* Whether this process's copy must be read again from the cache: the
 * refresher announced a new response, or there is none valid and the last
 * look is a while ago. Called with it->lock held. */
static int copy_outdated(const staple_item_t *it, apr_time_t now, apr_uint32_t gen)
{
    return gen != it->gen_seen || ((it->der == NULL || now >= it->next_update) &&
                                   now - it->checked_at >= STAPLE_MISS_RECHECK);
}

static int staple_get_resp(server_rec *s, conn_rec *c, const char *id, apr_size_t id_len,
                           ap_ssl_ocsp_copy_resp *cb, void *userdata)
{
    staple_reg_t *r = staple_reg;
    staple_item_t *it;
    staple_slot_t *slot;
    apr_time_t now;
    apr_uint32_t gen;
    int stapled = 0;

    if (r == NULL || !r->active || id_len != STAPLE_ID_LEN ||
        (it = apr_hash_get(r->by_id, id, (apr_ssize_t)id_len)) == NULL || !it->claimed) {
        return DECLINED;
    }
    slot = &r->slots[it->index];
    now = apr_time_now();
    gen = apr_atomic_read32(&slot->gen);

    /* Handshakes share the copy under a read lock: one preempted while
     * copying holds up no other, as it would under a mutex. */
    apr_thread_rwlock_rdlock(it->lock);
    if (copy_outdated(it, now, gen)) {
        apr_thread_rwlock_unlock(it->lock);
        apr_thread_rwlock_wrlock(it->lock);
        gen = apr_atomic_read32(&slot->gen);
        if (copy_outdated(it, now, gen)) { /* nobody refreshed it meanwhile */
            local_refresh(r, it, s, now, gen, c->pool);
        }
    }
    if (it->der && now < it->next_update) {
        cb(it->der, it->der_len, userdata);
        stapled = 1;
    } else {
        /* We answer for this certificate: no staple rather than letting
         * anyone fetch in the handshake. */
        cb(NULL, 0, userdata);
    }
    apr_thread_rwlock_unlock(it->lock);

    apr_atomic_inc64(stapled ? &slot->stapled : &slot->unstapled);
    if (!stapled) {
        /* the refresher reports the cause, and a Must-Staple certificate
         * at error level; a line per handshake would flood the log */
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, c,
                      "no valid OCSP response to staple for %s", it->cert->subject);
    }
    return OK;
}

/* ------------------------------------------------------------------ */
/* Fetching                                                            */

typedef struct {
    staple_reg_t *r;
    apr_pool_t *pool;
    void *more;          /* the due_ctx_t of a refresher round, or NULL */
    int deferred;        /* fetches the deadline came before */
    apr_time_t deadline; /* of the whole round, or 0 */
} round_t;

static void store_save(staple_reg_t *r, staple_item_t *it, const unsigned char *der,
                       apr_size_t len, apr_pool_t *p);

static void count_outcome(staple_reg_t *r, int outcome, apr_interval_time_t duration)
{
    apr_interval_time_t ms = apr_time_as_msec(duration);
    int b = 0;

    apr_atomic_inc32(&r->stats->outcomes[outcome]);
    while (b < STAPLE_HIST_BUCKETS - 1 && ms > staple_hist_bounds_ms[b]) {
        b++;
    }
    apr_atomic_inc32(&r->stats->duration_hist[b]);
    /* one writer at a time: the startup child, then the refresher */
    r->stats->duration_sum_us += (apr_uint64_t)duration;
}

static void record_failure(staple_reg_t *r, staple_item_t *it, apr_time_t now,
                           const char *what, apr_pool_t *p)
{
    staple_slot_t *sl = &r->slots[it->index];
    const char *left;

    sl->failures++;
    sl->due = staple_retry_due(&r->timing, now, (int)sl->failures, jitter());
    apr_cpystrn(sl->last_error, what, sizeof(sl->last_error));
    sl->last_error_at = now;
    sl->events_pending |= 1u << STAPLE_EVENT_ERRORED;
    left = (sl->valid_until > now)
               ? apr_psprintf(p, "the cached response stays in use for %s",
                              staple_fmt_duration(p, sl->valid_until - now))
               : "no valid response to staple";
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s,
                 "OCSP for %s (serial %s) from %s: %s; %s; retry in %s (failure %d)",
                 it->cert->subject, it->cert->serial, it->url, what, left,
                 staple_fmt_duration(p, sl->due - now), (int)sl->failures);
    if (sl->valid_until > now &&
        (sl->valid_until - now) * 10 < sl->valid_until - sl->this_update) {
        /* in the last 10 % of its life and the renewal failed */
        sl->events_pending |= 1u << STAPLE_EVENT_EXPIRING;
    }
    if (it->cert->must_staple && sl->valid_until <= now) {
        sl->events_pending |= 1u << STAPLE_EVENT_MISSING;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, r->s,
                     "Must-Staple certificate %s (serial %s) has no valid OCSP response: "
                     "clients will refuse its handshakes",
                     it->cert->subject, it->cert->serial);
    }
}

static void on_fetched(staple_fetch_t *f, void *ctx)
{
    round_t *rd = ctx;
    staple_reg_t *r = rd->r;
    staple_item_t *it = f->baton;
    apr_pool_t *p = rd->pool;
    apr_time_t now = apr_time_now();
    staple_slot_t *sl = &r->slots[it->index];
    staple_resp_info_t info;
    staple_check_e rc;
    char why[256];

    it->in_flight = 0;
    if (!f->started || (f->status == APR_TIMEUP && rd->deadline &&
                        now + apr_time_from_msec(50) >= rd->deadline)) {
        /* never asked, or cut short by the round's deadline (startup):
         * left to the refresher, not a responder failure */
        rd->deferred++;
        return;
    }
    sl->last_attempt = now - f->duration;
    sl->last_duration = f->duration;
    if (f->status != APR_SUCCESS) {
        count_outcome(r, STAPLE_OUTCOME_FETCH_ERROR, f->duration);
        record_failure(r, it, now,
                       apr_psprintf(p, "fetch failed after %.1f ms (%s%s%s): %s",
                                    (double)f->duration / 1000.0,
                                    f->method ? f->method : "-",
                                    r->gc->proxy ? " via StapleProxy " : "",
                                    r->gc->proxy ? r->gc->proxy : "", f->error),
                       p);
        return;
    }
    rc = staple_ocsp_check(it->cert, f->body, f->body_len, now, &r->check, &info, why,
                           sizeof(why));
    count_outcome(r, (int)rc, f->duration);
    if (rc != STAPLE_CHECK_OK) {
        record_failure(
            r, it, now,
            apr_psprintf(p, "response rejected (%s): %s", staple_check_name(rc), why), p);
        return;
    }
    publish(r, it, f->body, f->body_len, now, &info, 1, p);
    store_save(r, it, f->body, f->body_len, p);
    sl->failures = 0;
    sl->events_pending |=
        1u << (info.cert_status == V_OCSP_CERTSTATUS_REVOKED ? STAPLE_EVENT_REVOKED
                                                             : STAPLE_EVENT_RENEWED);
    sl->due =
        staple_refresh_due(&r->timing, now, info.this_update, info.next_update, jitter());
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, r->s,
                 "OCSP for %s (serial %s) from %s: %s in %.1f ms (%s), "
                 "valid for %s, next refresh in %s",
                 it->cert->subject, it->cert->serial, it->url,
                 staple_cert_status_name(info.cert_status), (double)f->duration / 1000.0,
                 f->method, staple_fmt_duration(p, info.next_update - now),
                 staple_fmt_duration(p, sl->due - now));
    if (info.cert_status == V_OCSP_CERTSTATUS_REVOKED) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, r->s,
                     "certificate %s (serial %s) is REVOKED according to its OCSP "
                     "responder: replace it; the revoked status is stapled",
                     it->cert->subject, it->cert->serial);
    }
}

/* ------------------------------------------------------------------ */
/* The store on disk                                                   */

/* Make the directory, private to the server's User. Runs as root. */
static apr_status_t prepare_store(staple_reg_t *r, apr_pool_t *p)
{
    struct stat st;
    apr_status_t rv;

    rv = apr_dir_make_recursive(
        r->store, APR_FPROT_UREAD | APR_FPROT_UWRITE | APR_FPROT_UEXECUTE, p);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
        goto fail;
    }
    if (lstat(r->store, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        rv = APR_ENOTDIR;
        goto fail;
    }
    if (geteuid() == 0 &&
        chown(r->store, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        goto fail;
    }
    if (chmod(r->store, 0700) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        goto fail;
    }
    return APR_SUCCESS;

fail:
    ap_log_error(APLOG_MARK, APLOG_WARNING, rv, r->s,
                 "StapleStore %s cannot be used as a private directory of User %s: "
                 "responses are kept in memory only and will be fetched again after a "
                 "restart; fix its permissions or set StapleStore to another directory",
                 r->store, ap_unixd_config.user_name);
    r->store = NULL;
    return rv;
}

static void store_save(staple_reg_t *r, staple_item_t *it, const unsigned char *der,
                       apr_size_t len, apr_pool_t *p)
{
    char err[512];

    if (r->store && staple_store_save(r->store, it->cert->id_hex, der, len, p, err,
                                      sizeof(err)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s,
                     "StapleStore: cannot keep the response for %s: %s; stapling goes on "
                     "from memory",
                     it->cert->subject, err);
    }
}

/*
 * Put a stored response into the shared cache when it passes every check.
 * Expired and rejected files are removed. Never runs as root.
 */
static int load_from_store(staple_reg_t *r, staple_item_t *it, apr_time_t now,
                           apr_pool_t *p)
{
    const char *path;
    unsigned char *der;
    apr_size_t len;
    apr_time_t mtime;
    staple_resp_info_t info;
    staple_check_e rc;
    apr_status_t rv;
    char why[256];

    if (r->store == NULL) {
        return 0;
    }
    rv = staple_store_load(r->store, it->cert->id_hex, &der, &len, &mtime, p);
    if (rv == APR_ENOENT) {
        return 0;
    }
    path = staple_store_path(r->store, it->cert->id_hex, p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, r->s,
                     "StapleStore: cannot read %s for %s, ignoring it", path,
                     it->cert->subject);
        if (rv == APR_ENOSPC) {
            staple_store_remove(r->store, it->cert->id_hex, p);
        }
        return 0;
    }
    rc = staple_ocsp_check(it->cert, der, len, now, &r->check, &info, why, sizeof(why));
    if (rc != STAPLE_CHECK_OK) {
        ap_log_error(APLOG_MARK, rc == STAPLE_CHECK_EXPIRED ? APLOG_INFO : APLOG_WARNING,
                     0, r->s, "StapleStore: %s for %s rejected (%s): %s; removed", path,
                     it->cert->subject, staple_check_name(rc), why);
        staple_store_remove(r->store, it->cert->id_hex, p);
        return 0;
    }
    if (mtime > now || mtime < info.this_update - r->check.time_skew) {
        mtime = info.this_update;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, r->s,
                 "OCSP for %s (serial %s): %s response loaded from %s, valid for %s",
                 it->cert->subject, it->cert->serial,
                 staple_cert_status_name(info.cert_status), path,
                 staple_fmt_duration(p, info.next_update - now));
    publish(r, it, der, len, mtime, &info, 1, p);
    return 1;
}

/*
 * Before fetching, look at the shared cache: another process, a previous
 * run or another server of a cluster may hold a response that is not due
 * yet. Returns 1 when the certificate needs no fetch now.
 */
static int adopt_cached(staple_reg_t *r, staple_item_t *it, apr_time_t now, apr_pool_t *p)
{
    unsigned char *der = NULL;
    apr_size_t der_len;
    apr_time_t fetched_at, due;
    staple_slot_t *sl = &r->slots[it->index];
    staple_resp_info_t info;
    char why[256];
    apr_status_t rv;

    if (sl->valid_until == 0 &&
        /* nothing known yet on this server: the store on disk comes first,
         * it does not depend on a cache on the network answering */
        load_from_store(r, it, now, p) && r->local == &r->shared) {
        /* StapleCache is this server's alone and now holds the response
         * just verified: reading it back would verify it twice */
        rv = APR_NOTFOUND;
    } else {
        rv = cache_load(r, &r->shared, it, now, &der, &der_len, &fetched_at, &info, why,
                        sizeof(why), p);
    }
    if (rv == APR_EINVAL) {
        /* corrupt, or not for this certificate: fetch now, which also
         * replaces it for every server sharing the cache */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s,
                     "OCSP response for %s in %s rejected, fetching a new one: %s",
                     it->cert->subject, r->shared.name, why);
        return 0;
    }
    if (rv == APR_SUCCESS && fetched_at > sl->fetched_at) {
        /* newer than what this server staples: another server of the
         * cluster fetched it */
        publish(r, it, der, der_len, fetched_at, &info, 0, p);
        /* this server's own copy on disk, for restarts while the shared
         * cache is away */
        store_save(r, it, der, der_len, p);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, r->s,
                     "OCSP for %s: adopted the response fetched %s ago from %s",
                     it->cert->subject, staple_fmt_duration(p, now - fetched_at),
                     r->shared.name);
    }
    free(der);
    if (sl->valid_until <= now) {
        return 0;
    }
    due = staple_refresh_due(&r->timing, sl->fetched_at, sl->this_update, sl->valid_until,
                             jitter());
    if (due <= now) {
        return 0;
    }
    sl->due = due;
    return 1;
}

typedef struct {
    staple_reg_t *r;
    apr_array_header_t *waiting; /* items whose lease another server holds */
    apr_time_t add_until;        /* no new fetches joins the run after this */
    apr_pool_t *pool;
} due_ctx_t;

/* Queue every certificate that is due and not being fetched already. */
static void collect_due(due_ctx_t *dc, apr_array_header_t *fetches, apr_time_t now)
{
    staple_reg_t *r = dc->r;
    apr_pool_t *p = dc->pool;
    int i;

    for (i = 0; i < r->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(r->items, i, staple_item_t *);
        staple_slot_t *sl = &r->slots[it->index];
        staple_fetch_t *f;

        if (it->in_flight || sl->due > now ||
            (sl->failures == 0 && adopt_cached(r, it, now, p))) {
            continue;
        }
        if (!take_lease(r, it, now, p)) {
            /* another server is fetching it: adopt its result */
            sl->due = now + apr_time_from_sec(2);
            APR_ARRAY_PUSH(dc->waiting, staple_item_t *) = it;
            continue;
        }
        f = apr_pcalloc(p, sizeof(*f));
        f->url = it->url;
        f->req = it->cert->req_der;
        f->req_len = it->cert->req_len;
        f->baton = it;
        it->in_flight = 1;
        APR_ARRAY_PUSH(fetches, staple_fetch_t *) = f;
    }
}

/* While the refresher's transfers run, certificates that fall due join them
 * at once: a slow responder must not delay the others. */
static void more_due(apr_array_header_t *fetches, void *ctx)
{
    due_ctx_t *dc = ((round_t *)ctx)->more;
    apr_time_t now = apr_time_now();
    int state;

    if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS &&
        state == AP_MPMQ_STOPPING) {
        return; /* let the running transfers end and the process go */
    }
    if (now < dc->add_until) {
        collect_due(dc, fetches, now);
    }
}

/*
 * Fetch every certificate that is due, none past the deadline (0: each
 * fetch is bounded by StapleResponderTimeout only). With keep_adding, those
 * falling due during the run join it.
 */
static void fetch_due(staple_reg_t *r, apr_time_t now, apr_time_t deadline,
                      int keep_adding, apr_pool_t *p)
{
    apr_array_header_t *fetches =
        apr_array_make(p, r->items->nelts, sizeof(staple_fetch_t *));
    apr_array_header_t *waiting = apr_array_make(p, 4, sizeof(staple_item_t *));
    staple_fetch_opts_t opts = {0};
    round_t rd = {r, p, NULL, 0, deadline};
    due_ctx_t dc = {r, waiting, now + STAPLE_ROUND_MAX, p};
    int i;

    collect_due(&dc, fetches, now);
    if (fetches->nelts == 0 && waiting->nelts == 0) {
        return;
    }
    opts.timeout = r->gc->responder_timeout;
    opts.max_parallel = STAPLE_MAX_PARALLEL;
    opts.user_agent = STAPLE_USER_AGENT;
    opts.proxy = r->gc->proxy;
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, r->s, "fetching %d OCSP response(s)",
                 fetches->nelts);
    rd.more = keep_adding ? &dc : NULL;
    staple_fetch_run(fetches, &opts, deadline, on_fetched, keep_adding ? more_due : NULL,
                     &rd, p);
    if (rd.deferred > 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, r->s,
                     "%d OCSP fetch(es) did not finish before StapleStartupTimeout: the "
                     "background refresher does them",
                     rd.deferred);
    }
    /* until the deadline, look for what the lease holders fetched */
    while (waiting->nelts > 0 && apr_time_now() + apr_time_from_msec(200) < deadline) {
        apr_sleep(apr_time_from_msec(200));
        for (i = 0; i < waiting->nelts; i++) {
            staple_item_t *it = APR_ARRAY_IDX(waiting, i, staple_item_t *);
            if (adopt_cached(r, it, apr_time_now(), p)) {
                APR_ARRAY_IDX(waiting, i, staple_item_t *) =
                    APR_ARRAY_IDX(waiting, waiting->nelts - 1, staple_item_t *);
                waiting->nelts--;
                i--;
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Startup: first responses before the first handshake                 */

static int become_server_user(server_rec *s)
{
    if (geteuid() != 0) {
        return 0;
    }
    if (setgid(ap_unixd_config.group_id) != 0 ||
        initgroups(ap_unixd_config.user_name, ap_unixd_config.group_id) != 0 ||
        setuid(ap_unixd_config.user_id) != 0 || (setuid(0) == 0 && geteuid() == 0)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     "cannot switch to User %s for the startup OCSP fetch; responses "
                     "will come from the background refresher",
                     ap_unixd_config.user_name);
        return -1;
    }
    return 0;
}

/*
 * The parent runs as root: responder data is fetched and parsed in a child
 * that has become the server's User, and which writes verified responses
 * to the shared cache. The parent only waits for it, bounded by
 * StapleStartupTimeout.
 */
static void startup_fetch(staple_reg_t *r, apr_pool_t *ptemp)
{
    apr_time_t start = apr_time_now();
    apr_time_t deadline = start + r->gc->startup_timeout;
    apr_time_t limit = deadline + apr_time_from_sec(1);
    int status = 0, done = 0;
    pid_t pid;

    pid = fork();
    if (pid < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, r->s,
                     "cannot fork for the startup OCSP fetch");
        return;
    }
    if (pid == 0) {
        apr_pool_t *p;
        apr_pool_create(&p, ptemp);
        if (become_server_user(r->s) != 0) {
            _exit(1);
        }
        if (cache_child_init(&r->shared, p) != APR_SUCCESS ||
            (r->local != &r->shared && cache_child_init(r->local, p) != APR_SUCCESS)) {
            _exit(1);
        }
        fetch_due(r, apr_time_now(), deadline, 0, p);
        _exit(0);
    }
    while (!done) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR)) {
            done = 1;
        } else if (apr_time_now() > limit) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s,
                         "startup OCSP fetch did not finish within StapleStartupTimeout; "
                         "going on without it");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            done = 1;
        } else {
            apr_sleep(apr_time_from_msec(10));
        }
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, r->s,
                 "startup OCSP fetch took %" APR_TIME_T_FMT " ms",
                 apr_time_as_msec(apr_time_now() - start));
}

/* ------------------------------------------------------------------ */
/* StapleEventCmd                                                      */

/* At most one run per certificate and event in this interval. */
#define STAPLE_EVENT_INTERVAL apr_time_from_sec(600)
/* A program still running after this long is killed. */
#define STAPLE_EVENT_TIMEOUT apr_time_from_sec(60)

typedef struct {
    apr_pool_t *pool;
    apr_proc_t proc;
    apr_time_t started;
    const char *what;
} event_proc_t;

static const char *const event_names[STAPLE_EVENT_COUNT] = {
    "renewed", "errored", "revoked", "missing", "expiring",
};

const char *staple_event_name(staple_event_e ev)
{
    return (ev >= 0 && ev < STAPLE_EVENT_COUNT) ? event_names[ev] : "invalid";
}

const apr_interval_time_t staple_hist_bounds_ms[STAPLE_HIST_BUCKETS - 1] = {
    10, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
};

const char *staple_outcome_name(int outcome)
{
    return outcome == STAPLE_OUTCOME_FETCH_ERROR
               ? "fetch-error"
               : staple_check_name((staple_check_e)outcome);
}

static const char *event_detail(staple_slot_t *sl, staple_event_e ev, apr_time_t now,
                                apr_pool_t *p)
{
    char date[APR_RFC822_DATE_LEN];

    apr_rfc822_date(date, sl->valid_until);
    switch (ev) {
    case STAPLE_EVENT_RENEWED:
        return apr_psprintf(p, "good until %s", date);
    case STAPLE_EVENT_REVOKED:
        return apr_psprintf(p, "revoked; response valid until %s", date);
    case STAPLE_EVENT_EXPIRING:
        return apr_psprintf(p, "response valid for %s only; last fetch failed: %s",
                            staple_fmt_duration(p, sl->valid_until - now),
                            sl->last_error);
    case STAPLE_EVENT_MISSING:
        return apr_psprintf(p, "Must-Staple certificate without a valid response: %s",
                            sl->last_error);
    default:
        return apr_pstrdup(p, sl->last_error);
    }
}

static void reap_events(staple_reg_t *r, apr_time_t now)
{
    int i;

    for (i = 0; i < r->event_procs->nelts; i++) {
        event_proc_t *ep = APR_ARRAY_IDX(r->event_procs, i, event_proc_t *);
        apr_exit_why_e why;
        int code;

        if (apr_proc_wait(&ep->proc, &code, &why, APR_NOWAIT) != APR_CHILD_DONE) {
            if (now - ep->started < STAPLE_EVENT_TIMEOUT) {
                continue;
            }
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s,
                         "StapleEventCmd %s still runs after %s: killed", ep->what,
                         staple_fmt_duration(ep->pool, now - ep->started));
            apr_proc_kill(&ep->proc, SIGKILL);
            apr_proc_wait(&ep->proc, &code, &why, APR_WAIT);
        } else {
            ap_log_error(APLOG_MARK,
                         (why == APR_PROC_EXIT && code == 0) ? APLOG_INFO : APLOG_WARNING,
                         0, r->s, "StapleEventCmd %s %s %d", ep->what,
                         why == APR_PROC_EXIT ? "exited with status" : "died of signal",
                         code);
        }
        apr_pool_destroy(ep->pool);
        /* move the last one here */
        APR_ARRAY_IDX(r->event_procs, i, event_proc_t *) =
            APR_ARRAY_IDX(r->event_procs, r->event_procs->nelts - 1, event_proc_t *);
        r->event_procs->nelts--;
        i--;
    }
}

static void run_event(staple_reg_t *r, staple_item_t *it, staple_event_e ev,
                      const char *detail)
{
    apr_array_header_t *cmd = r->gc->event_cmd;
    event_proc_t *ep;
    apr_procattr_t *attr;
    const char **argv;
    apr_pool_t *p;
    apr_status_t rv;
    int i;

    apr_pool_create(&p, r->pool);
    apr_pool_tag(p, "staple_event");
    ep = apr_pcalloc(p, sizeof(*ep));
    ep->pool = p;
    ep->started = apr_time_now();
    ep->what = apr_psprintf(p, "%s for %s", staple_event_name(ev), it->cert->subject);
    argv = apr_pcalloc(p, sizeof(char *) * (apr_size_t)(cmd->nelts + 5));
    for (i = 0; i < cmd->nelts; i++) {
        argv[i] = APR_ARRAY_IDX(cmd, i, const char *);
    }
    argv[i++] = staple_event_name(ev);
    argv[i++] = it->cert->id_hex;
    argv[i++] = it->cert->subject;
    argv[i++] = detail;
    argv[i] = NULL;
    if ((rv = apr_procattr_create(&attr, p)) != APR_SUCCESS ||
        (rv = apr_procattr_cmdtype_set(attr, APR_PROGRAM)) != APR_SUCCESS ||
        (rv = apr_procattr_error_check_set(attr, 1)) != APR_SUCCESS ||
        (rv = apr_proc_create(&ep->proc, argv[0], argv, NULL, attr, p)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, r->s,
                     "StapleEventCmd %s: cannot run %s", ep->what, argv[0]);
        apr_pool_destroy(p);
        return;
    }
    APR_ARRAY_PUSH(r->event_procs, event_proc_t *) = ep;
}

/* Run what the fetches of this round left pending; never from a handshake. */
static void run_events(staple_reg_t *r, apr_time_t now, apr_pool_t *p)
{
    int i, ev;

    if (r->event_procs == NULL) {
        r->event_procs = apr_array_make(r->pool, 4, sizeof(event_proc_t *));
    }
    reap_events(r, now);
    for (i = 0; i < r->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(r->items, i, staple_item_t *);
        staple_slot_t *sl = &r->slots[i];
        apr_uint32_t pending = sl->events_pending;

        sl->events_pending = 0;
        for (ev = 0; r->gc->event_cmd && ev < STAPLE_EVENT_COUNT; ev++) {
            if (!(pending & (1u << ev))) {
                continue;
            }
            if (sl->event_at[ev] && now - sl->event_at[ev] < STAPLE_EVENT_INTERVAL) {
                ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, r->s,
                             "StapleEventCmd %s for %s: rate-limited",
                             staple_event_name(ev), it->cert->subject);
                continue;
            }
            sl->event_at[ev] = now;
            run_event(r, it, (staple_event_e)ev, event_detail(sl, ev, now, p));
        }
    }
}

/* ------------------------------------------------------------------ */
/* The refresher: a watchdog singleton                                 */

static apr_status_t refresher(int state, void *data, apr_pool_t *wpool)
{
    staple_reg_t *r = data;
    apr_time_t now = apr_time_now(), next;
    apr_allocator_t *alloc;
    apr_pool_t *p;
    int i;

    switch (state) {
    case AP_WATCHDOG_STATE_STARTING:
        /* the schedule in shared memory carries over from the startup
         * fetch or from the process that ran the refresher before */
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, r->s,
                     "OCSP refresher started in process %ld", (long)getpid());
        break;

    case AP_WATCHDOG_STATE_RUNNING:
        /* a round's own allocator, freed with it: the first round after
         * a cold start with thousands of certificates is much larger than
         * the next ones, and its memory should not stay with the process */
        if (apr_allocator_create(&alloc) != APR_SUCCESS) {
            return APR_SUCCESS;
        }
        apr_pool_create_ex(&p, wpool, NULL, alloc);
        apr_allocator_owner_set(alloc, p);
        apr_pool_tag(p, "staple_refresher");
        fetch_due(r, now, 0, 1, p);
        run_events(r, apr_time_now(), p);
        apr_pool_destroy(p);

        now = apr_time_now();
        next = now + apr_time_from_sec(3600);
        for (i = 0; i < r->items->nelts; i++) {
            if (r->slots[i].due < next) {
                next = r->slots[i].due;
            }
        }
        if (r->event_procs->nelts > 0 && next > now + apr_time_from_sec(1)) {
            next = now + apr_time_from_sec(1); /* to collect the exit status */
        }
        /* sleep until the earliest due time, no polling in between */
        wd_set_interval(r->watchdog,
                        next > now + apr_time_from_msec(200) ? next - now
                                                             : apr_time_from_msec(200),
                        r, refresher);
        break;

    case AP_WATCHDOG_STATE_STOPPING:
        break;
    }
    /* anything else would stop the watchdog calling us */
    return APR_SUCCESS;
}

static apr_status_t start_refresher(staple_reg_t *r, apr_pool_t *pconf)
{
    apr_status_t rv;

    wd_get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    wd_register_callback = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    wd_set_interval = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_set_callback_interval);
    if (!wd_get_instance || !wd_register_callback || !wd_set_interval) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, r->s,
                     "mod_watchdog is not loaded: mod_staple needs it to renew OCSP "
                     "responses (LoadModule watchdog_module modules/mod_watchdog.so)");
        return APR_EGENERAL;
    }
    rv = wd_get_instance(&r->watchdog, STAPLE_WATCHDOG, 0, 1, pconf);
    if (rv == APR_SUCCESS) {
        rv = wd_register_callback(r->watchdog, apr_time_from_sec(1), r, refresher);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, r->s,
                     "cannot set up the OCSP refresher watchdog");
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Server lifecycle                                                    */

static int staple_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    ap_mutex_register(pconf, STAPLE_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    return OK;
}

static apr_status_t cache_cleanup(void *data)
{
    staple_cache_t *c = data;

    if (c->inst) {
        c->provider->destroy(c->inst, c->s);
        c->inst = NULL;
    }
    return APR_SUCCESS;
}

/* Create the mutex when the provider needs one and initialise the cache. */
static apr_status_t cache_init(staple_reg_t *r, staple_cache_t *c, const char *mutex_id,
                               apr_pool_t *pconf)
{
    struct ap_socache_hints hints = {0};
    apr_status_t rv;

    c->s = r->s;
    if (c->provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) {
        rv = ap_global_mutex_create(&c->mutex, NULL, STAPLE_MUTEX_TYPE, mutex_id, r->s,
                                    pconf, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, r->s,
                         "cannot create the mutex of %s", c->name);
            return rv;
        }
    }
    hints.avg_id_len = STAPLE_ID_LEN;
    hints.avg_obj_size = 1024;
    hints.expiry_interval = 30;
    rv = c->provider->init(c->inst, "mod_staple", &hints, r->s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, r->s, "cannot initialise %s", c->name);
        return rv;
    }
    apr_pool_cleanup_register(pconf, c, cache_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

static apr_status_t setup_cache(staple_reg_t *r, apr_pool_t *pconf)
{
    staple_srv_conf_t *gc = r->gc;
    const ap_socache_provider_t *shmcb =
        ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, STAPLE_DEFAULT_CACHE_NAME,
                           AP_SOCACHE_PROVIDER_VERSION);
    const char *err;
    char host[APRMAXHOSTLEN + 1];
    apr_status_t rv;

    if (gc->cache_provider == NULL) {
        if (shmcb == NULL) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, r->s,
                         "StapleCache is not set and its default, shmcb, is not loaded: "
                         "LoadModule socache_shmcb_module modules/mod_socache_shmcb.so "
                         "or set StapleCache to a loaded provider");
            return APR_EGENERAL;
        }
        gc->cache_provider = shmcb;
        err = shmcb->create(&gc->cache_instance, STAPLE_DEFAULT_CACHE_ARGS, pconf, pconf);
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, r->s,
                         "cannot create the default StapleCache: %s", err);
            return APR_EGENERAL;
        }
        gc->cache_spec = STAPLE_DEFAULT_CACHE_NAME ":" STAPLE_DEFAULT_CACHE_ARGS;
    }
    r->shared.name = apr_pstrcat(pconf, "StapleCache ", gc->cache_spec, NULL);
    r->shared.provider = gc->cache_provider;
    r->shared.inst = gc->cache_instance;
    if ((rv = cache_init(r, &r->shared, "shared", pconf)) != APR_SUCCESS) {
        return rv;
    }
    r->local = &r->shared;
    if (apr_gethostname(host, sizeof(host), pconf) != APR_SUCCESS) {
        apr_cpystrn(host, "localhost", sizeof(host));
    }
    r->node_id = apr_pstrcat(pconf, host, ":", ap_server_root, NULL);
    if (r->shared.provider == shmcb) {
        return APR_SUCCESS;
    }
    /* StapleCache may be on the network (memcache, redis) or on disk (dbm):
     * handshakes read a node-local shared memory copy instead, which the
     * background fetches keep up to date. */
    if (shmcb == NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s,
                     "mod_socache_shmcb is not loaded: handshakes will read %s directly "
                     "and may wait on it; load mod_socache_shmcb to avoid that",
                     r->shared.name);
        return APR_SUCCESS;
    }
    r->node.name = "node-local shmcb cache";
    r->node.provider = shmcb;
    err = shmcb->create(&r->node.inst,
                        apr_psprintf(pconf, "staple-node(%" APR_SIZE_T_FMT ")",
                                     STAPLE_NODE_CACHE_SIZE(r->items->nelts)),
                        pconf, pconf);
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, r->s,
                     "cannot create the node-local shmcb cache: %s", err);
        return APR_EGENERAL;
    }
    if ((rv = cache_init(r, &r->node, "node", pconf)) != APR_SUCCESS) {
        return rv;
    }
    r->local = &r->node;
    return APR_SUCCESS;
}

static int staple_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                              server_rec *s)
{
    staple_reg_t *r = staple_reg;
    apr_size_t shm_size;
    apr_status_t rv;
    int i;

    (void)plog;
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    r = reg_get(pconf);
    report_unprimed(r, s, ap_conftree, apr_hash_make(ptemp), ptemp);
    if (r->items->nelts == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "no certificates to staple");
        return OK;
    }
    r->s = s;
    r->gc = staple_srv_conf(s);
    staple_conf_apply_defaults(r->gc);
    staple_conf_timing(r->gc, &r->timing);
    r->check.time_skew = r->gc->time_skew;
    r->check.max_age = r->gc->max_age;

    if (staple_fetch_global_init() != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "cannot initialise libcurl");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (setup_cache(r, pconf) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* the counters first, then one slot per certificate */
    shm_size = APR_ALIGN_DEFAULT(sizeof(staple_stats_t)) +
               sizeof(staple_slot_t) * (apr_size_t)r->items->nelts;
    rv = apr_shm_create(&r->shm, shm_size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "cannot create %" APR_SIZE_T_FMT " bytes of shared memory for "
                     "mod_staple's counters",
                     shm_size);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    r->stats = apr_shm_baseaddr_get(r->shm);
    memset(r->stats, 0, shm_size);
    r->slots =
        (staple_slot_t *)((char *)r->stats + APR_ALIGN_DEFAULT(sizeof(staple_stats_t)));
    for (i = 0; i < r->items->nelts; i++) {
        r->slots[i].cert_status = -1;
    }

    if (r->gc->store == NULL) {
        r->store = ap_runtime_dir_relative(pconf, STAPLE_DEFAULT_STORE);
    } else if (strcmp(r->gc->store, STAPLE_STORE_NONE)) {
        r->store = ap_runtime_dir_relative(pconf, r->gc->store);
    }
    if (r->store) {
        prepare_store(r, ptemp);
    }
    if (r->gc->startup_timeout > 0) {
        startup_fetch(r, ptemp);
    }
    if (start_refresher(r, pconf) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    for (i = 0; APLOGdebug(s) && i < r->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(r->items, i, staple_item_t *);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "stapling %s for %s",
                     it->cert->subject, apr_array_pstrcat(ptemp, it->vhosts, ','));
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "mod_staple %s: stapling %d certificate(s), %s%s", STAPLE_VERSION,
                 r->items->nelts, r->shared.name,
                 r->local != &r->shared ? " (handshakes read a node-local copy)" : "");
    r->active = 1;
    return OK;
}

static void staple_child_init(apr_pool_t *pchild, server_rec *s)
{
    staple_reg_t *r = staple_reg;
    apr_status_t rv;
    int i;

    if (r == NULL || !r->active) {
        return;
    }
    rv = cache_child_init(&r->shared, pchild);
    if (rv == APR_SUCCESS && r->local != &r->shared) {
        rv = cache_child_init(r->local, pchild);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot attach to the StapleCache mutex: no stapling in this "
                     "process");
        r->active = 0;
        return;
    }
    for (i = 0; i < r->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(r->items, i, staple_item_t *);
        apr_thread_rwlock_create(&it->lock, pchild);
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
    ap_hook_ssl_ocsp_prime_hook(staple_prime, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_ocsp_get_resp_hook(staple_get_resp, NULL, NULL, APR_HOOK_MIDDLE);
    staple_status_register_hooks(p);
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
