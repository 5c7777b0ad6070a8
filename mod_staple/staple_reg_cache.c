/*
 * The registry's caches: entries read and verified, responses published
 * to the local cache and shared through StapleCache, what another server
 * of a cluster fetched adopted, and the lease that has one server fetch
 * for all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include "staple_entry.h"
#include "staple_store.h"
#include "staple_reg_int.h"

/* How long a lease outlives the holder's fetch. */
#define STAPLE_LEASE_GRACE apr_time_from_sec(5)

/* A lease lost to another server's at the same time this many times in a
 * row is not confirmed again: someone keeps overwriting it. */
#define STAPLE_LEASE_LOST_MAX 3

/* The clocks of a cluster's servers may differ by this much: a lease that
 * runs longer than a fetch and this is not believed. */
#define STAPLE_LEASE_SLACK apr_time_from_sec(60)

/* ------------------------------------------------------------------ */
/* Caches                                                              */

apr_status_t staple_reg_cache_load(staple_reg_t *reg, const staple_cache_ops_t *c,
                                   staple_item_t *it, apr_time_t now,
                                   unsigned char **pder, apr_size_t *pder_len,
                                   apr_time_t *fetched_at, staple_resp_info_t *info,
                                   char *why, apr_size_t whylen, apr_pool_t *p)
{
    unsigned int len = STAPLE_ENTRY_HEADER_LEN + STAPLE_MAX_RESPONSE_LEN;
    unsigned char *buf = malloc(len);
    const unsigned char *der;
    const char *reason;
    apr_size_t der_len;
    staple_check_e rc;

    *pder = NULL;
    if (buf == NULL) {
        return APR_ENOMEM;
    }
    if (staple_reg_cache_get(reg, c, it->cert->id, STAPLE_ID_LEN, buf, &len, p) !=
        APR_SUCCESS) {
        free(buf);
        return APR_NOTFOUND;
    }
    if (staple_entry_decode(buf, len, &der, &der_len, fetched_at, &reason) !=
        APR_SUCCESS) {
        apr_cpystrn(why, reason, whylen);
        free(buf);
        return APR_EINVAL;
    }
    rc = staple_ocsp_check(it->cert, der, der_len, now, &reg->opts.check, info, why,
                           whylen);
    if (rc != STAPLE_CHECK_OK) {
        free(buf);
        return APR_EINVAL;
    }
    memmove(buf, der, der_len);
    *pder = buf;
    *pder_len = der_len;
    if (*fetched_at > now ||
        *fetched_at < info->this_update - reg->opts.check.time_skew) {
        *fetched_at = now; /* the header is not signed: keep it plausible */
    }
    return APR_SUCCESS;
}

/* Whether a call to StapleCache that began at start took too long. */
static void shared_timed(staple_reg_t *reg, const staple_cache_ops_t *c, apr_time_t start)
{
    apr_interval_time_t took;

    if (c != &reg->shared || reg->shared_budget <= 0) {
        return;
    }
    took = apr_time_now() - start;
    if (took > reg->shared_budget && !reg->shared_off) {
        reg->shared_off = 1;
        staple_reg_log(reg, STAPLE_LOG_WARNING,
                       "%s took %" APR_TIME_T_FMT " ms to answer: the %s goes on "
                       "without it, and the next round asks it again",
                       c->name, apr_time_as_msec(took),
                       reg->startup_round ? "startup fetch" : "refresher's round");
    }
}

apr_status_t staple_reg_cache_get(staple_reg_t *reg, const staple_cache_ops_t *c,
                                  const unsigned char *key, unsigned int key_len,
                                  unsigned char *buf, unsigned int *len, apr_pool_t *p)
{
    apr_time_t start = apr_time_now();
    apr_status_t rv;

    if (c == &reg->shared && reg->shared_off) {
        return APR_NOTFOUND;
    }
    rv = c->get(c->baton, key, key_len, buf, len, p);
    shared_timed(reg, c, start);
    return rv;
}

apr_status_t staple_reg_cache_put(staple_reg_t *reg, const staple_cache_ops_t *c,
                                  const unsigned char *key, unsigned int key_len,
                                  apr_time_t expiry, const unsigned char *data,
                                  unsigned int len, apr_pool_t *p)
{
    apr_time_t start = apr_time_now();
    apr_status_t rv;

    if (c == &reg->shared && reg->shared_off) {
        return APR_SUCCESS; /* the next fetch of a later round puts it there */
    }
    rv = c->put(c->baton, key, key_len, expiry, data, len, p);
    shared_timed(reg, c, start);
    return rv;
}

static apr_status_t cache_put(staple_reg_t *reg, const staple_cache_ops_t *c,
                              staple_item_t *it, const unsigned char *der,
                              apr_size_t der_len, apr_time_t fetched_at,
                              apr_time_t expiry, apr_pool_t *p)
{
    unsigned char *buf = apr_palloc(p, STAPLE_ENTRY_HEADER_LEN + der_len);
    apr_size_t len = staple_entry_encode(buf, der, der_len, fetched_at);

    /* The key is the certificate's SHA-1 itself: shmcb picks a subcache by
     * the first byte of the key, so a common prefix would crowd every
     * response into one subcache. (memcache and redis hex-encode keys.) */
    return staple_reg_cache_put(reg, c, it->cert->id, STAPLE_ID_LEN, expiry, buf,
                                (unsigned int)len, p);
}

apr_status_t staple_reg_share(staple_reg_t *reg, staple_item_t *it,
                              const unsigned char *der, apr_size_t der_len,
                              apr_time_t fetched_at, const staple_resp_info_t *info,
                              apr_pool_t *p)
{
    apr_status_t rv = cache_put(reg, &reg->shared, it, der, der_len, fetched_at,
                                staple_reg_usable_until(reg, info), p);

    if (rv != APR_SUCCESS) {
        staple_reg_log(reg, STAPLE_LOG_ERR, "cannot store the OCSP response for %s in %s",
                       it->cert->subject, reg->shared.name);
    }
    return rv;
}

apr_status_t staple_reg_publish(staple_reg_t *reg, staple_item_t *it,
                                const unsigned char *der, apr_size_t der_len,
                                apr_time_t fetched_at, const staple_resp_info_t *info,
                                int to_shared, apr_pool_t *p)
{
    staple_slot_t *sl = &reg->slots[it->index];
    apr_time_t until = staple_reg_usable_until(reg, info);
    apr_status_t rv = APR_SUCCESS;

    /* The copy handshakes read comes first: a shared cache on the network
     * may be slow or hang, and must not hold up stapling on this server. */
    if (reg->node_local) {
        apr_status_t lrv =
            cache_put(reg, &reg->local, it, der, der_len, fetched_at, until, p);
        if (lrv != APR_SUCCESS) {
            staple_reg_log(reg, STAPLE_LOG_ERR,
                           "cannot store the OCSP response for %s in the %s",
                           it->cert->subject, reg->local.name);
        }
    } else if (to_shared) {
        rv = staple_reg_share(reg, it, der, der_len, fetched_at, info, p);
        to_shared = 0;
    }
    sl->fetched_at = fetched_at;
    sl->this_update = info->this_update;
    sl->produced_at = info->produced_at;
    sl->next_update = info->next_update;
    sl->valid_until = until;
    sl->cert_status = info->cert_status;
    sl->reason = info->reason;
    /* announce the new response to every process */
    apr_atomic_inc32(&sl->gen);
    if (to_shared) {
        rv = staple_reg_share(reg, it, der, der_len, fetched_at, info, p);
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* The shared cache                                                    */

/*
 * Before fetching, look at the shared cache: another process, a previous
 * run or another server of a cluster may hold a newer response, by its
 * signed times, than the one this server staples. At startup the copy in
 * StapleStore comes first; it goes into StapleCache only when StapleCache
 * holds nothing newer. Returns 1 when the certificate needs no fetch now.
 */
int staple_reg_adopt(staple_reg_t *reg, staple_item_t *it, apr_time_t now, apr_pool_t *p)
{
    staple_slot_t *sl = &reg->slots[it->index];
    staple_resp_info_t held;
    staple_fresh_e fresh = STAPLE_FRESH_SAME;
    staple_resp_t st, sh;
    apr_time_t due;
    char why[256];
    apr_status_t rv;
    int stored = 0, adopted = 0, share;

    /* nothing held yet on this server: the store on disk comes first, it
     * does not depend on a cache on the network answering */
    if (sl->this_update == 0 && staple_reg_store_read(reg, it, now, &st, 1, p)) {
        staple_reg_store_seen(reg, it, p);
        stored = 1;
        if (reg->node_local) {
            staple_reg_publish(reg, it, st.der, st.len, st.fetched_at, &st.info, 0, p);
        }
    }
    rv = staple_reg_cache_load(reg, &reg->shared, it, now, &sh.der, &sh.len,
                               &sh.fetched_at, &sh.info, why, sizeof(why), p);
    if (rv == APR_SUCCESS) {
        if (stored) {
            held = st.info;
        } else {
            staple_reg_held(sl, &held);
        }
        fresh = staple_resp_compare(&held, &sh.info);
        if (fresh == STAPLE_FRESH_NEWER) {
            /* another server of the cluster fetched it: it also ends this
             * server's failures, whatever its own route to the responder */
            staple_reg_publish(reg, it, sh.der, sh.len, sh.fetched_at, &sh.info, 0, p);
            adopted = 1;
            sl->failures = 0;
            /* this server's own copy on disk, for restarts while the
             * shared cache is away */
            staple_reg_store_save(reg, it, sh.der, sh.len, p);
            staple_reg_log(reg, STAPLE_LOG_DEBUG,
                           "OCSP for %s: adopted the response fetched %s ago from %s",
                           it->cert->subject, staple_fmt_duration(p, now - sh.fetched_at),
                           reg->shared.name);
        } else if (fresh != STAPLE_FRESH_SAME) {
            staple_reg_log(reg, STAPLE_LOG_INFO,
                           "OCSP for %s: %s holds an %s response (%s) than this "
                           "server's (%s): kept this server's",
                           it->cert->subject, reg->shared.name,
                           fresh == STAPLE_FRESH_OLDER ? "older" : "unrevoked, so older",
                           staple_reg_resp_times(p, &sh.info),
                           staple_reg_resp_times(p, &held));
        }
        free(sh.der);
    } else if (rv == APR_EINVAL) {
        /* corrupt, or not for this certificate: fetch now, which also
         * replaces it for every server sharing the cache */
        staple_reg_log(reg, STAPLE_LOG_WARNING,
                       "OCSP response for %s in %s rejected, fetching a new one: %s",
                       it->cert->subject, reg->shared.name, why);
    }
    /* unless StapleCache had a newer one, the copy on disk is what this
     * server staples, and StapleCache gets it unless it holds the same */
    share = stored && !adopted && !(rv == APR_SUCCESS && fresh == STAPLE_FRESH_SAME);
    if (stored && !adopted && !reg->node_local) {
        staple_reg_publish(reg, it, st.der, st.len, st.fetched_at, &st.info, share, p);
    } else if (share) {
        staple_reg_share(reg, it, st.der, st.len, st.fetched_at, &st.info, p);
    }
    if (rv == APR_EINVAL || sl->valid_until <= now) {
        return 0;
    }
    due = staple_refresh_due(&reg->opts.timing, sl->fetched_at, sl->this_update,
                             sl->valid_until, staple_reg_jitter(reg));
    if (due <= now) {
        return 0;
    }
    sl->due = due;
    it->lease_wait_since = 0; /* what a lease holder fetched is here */
    it->lease_lost = 0;
    return 1;
}

/* Put a response into StapleCache unless it holds the same or a newer one;
 * a newer one (another server fetched it meanwhile) is adopted. */
int staple_reg_share_unless_newer(staple_reg_t *reg, staple_item_t *it,
                                  const staple_resp_t *r, apr_time_t now, apr_pool_t *p)
{
    staple_resp_t sh;
    staple_fresh_e f;
    char why[256];

    if (staple_reg_cache_load(reg, &reg->shared, it, now, &sh.der, &sh.len,
                              &sh.fetched_at, &sh.info, why, sizeof(why),
                              p) != APR_SUCCESS) {
        staple_reg_share(reg, it, r->der, r->len, r->fetched_at, &r->info, p);
        return 0;
    }
    f = staple_resp_compare(&r->info, &sh.info);
    if (f == STAPLE_FRESH_NEWER) {
        staple_reg_publish(reg, it, sh.der, sh.len, sh.fetched_at, &sh.info, 0, p);
        staple_reg_store_save(reg, it, sh.der, sh.len, p);
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "OCSP for %s: %s holds a newer %s response (%s) than this "
                       "server's (%s), from another server: stapled that one",
                       it->cert->subject, reg->shared.name,
                       staple_cert_status_name(sh.info.cert_status),
                       staple_reg_resp_times(p, &sh.info),
                       staple_reg_resp_times(p, &r->info));
    } else if (f != STAPLE_FRESH_SAME) {
        staple_reg_share(reg, it, r->der, r->len, r->fetched_at, &r->info, p);
    }
    free(sh.der);
    return f == STAPLE_FRESH_NEWER;
}

/* The lease an entry in StapleCache stands for: "<expiry> <node id>".
 * Returns 0 when it is not one. */
static int lease_parse(const char *v, apr_time_t *expiry, const char **holder)
{
    char *end;
    apr_int64_t t;

    errno = 0;
    t = apr_strtoi64(v, &end, 10);
    if (errno || end == v || *end != ' ' || t <= 0) {
        return 0;
    }
    *expiry = (apr_time_t)t;
    *holder = end + 1;
    return 1;
}

/* The key of a certificate's lease in StapleCache. */
static const char *lease_key(const staple_item_t *it, apr_pool_t *p)
{
    return apr_pstrcat(p, "staple-lease:", it->cert->id_hex, NULL);
}

/* How long a lease runs: the holder's fetch and a grace. */
static apr_interval_time_t lease_term(const staple_reg_t *reg)
{
    return reg->opts.fetch.timeout + STAPLE_LEASE_GRACE;
}

/* This server's name in leases. */
static const char *lease_me(const staple_reg_t *reg)
{
    return reg->opts.node_id ? reg->opts.node_id : "";
}

typedef enum {
    LEASE_NONE,   /* none, run out, this server's, or the cache does not answer */
    LEASE_BOGUS,  /* not a lease, or one that runs implausibly long */
    LEASE_OTHERS, /* another server's, to be waited for */
} lease_seen_e;

/* Whose lease StapleCache holds for a certificate (another server's
 * holder set). */
static lease_seen_e lease_look(staple_reg_t *reg, const staple_item_t *it, apr_time_t now,
                               const char **holder, apr_pool_t *p)
{
    const char *key = lease_key(it, p);
    unsigned char buf[512];
    unsigned int len = sizeof(buf) - 1;
    apr_time_t expiry;

    if (staple_reg_cache_get(reg, &reg->shared, (const unsigned char *)key,
                             (unsigned int)strlen(key), buf, &len, p) != APR_SUCCESS) {
        return LEASE_NONE;
    }
    buf[len] = '\0';
    if (!lease_parse(apr_pstrdup(p, (const char *)buf), &expiry, holder) ||
        expiry > now + lease_term(reg) + STAPLE_LEASE_SLACK) {
        return LEASE_BOGUS;
    }
    return (expiry > now && strcmp(*holder, lease_me(reg))) ? LEASE_OTHERS : LEASE_NONE;
}

/*
 * In a cluster, one server fetches for all: before fetching, take a short
 * lease in StapleCache (when take). Anyone who can write to StapleCache
 * can write a lease: one that does not say until when, or says longer than
 * any fetch takes, is ignored, and a holder that has published nothing
 * after two leases' time is not waited for any longer.
 */
staple_lease_e staple_reg_take_lease(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                                     int take, apr_pool_t *p)
{
    const char *key = lease_key(it, p);
    apr_interval_time_t term = lease_term(reg);
    const char *holder, *v;
    int overriding = 0;

    if (!reg->node_local) {
        return STAPLE_LEASE_FREE; /* a cache of this server alone: nobody to share with */
    }
    if (reg->shared_off) {
        return STAPLE_LEASE_FREE; /* StapleCache too slow for the startup fetch */
    }
    switch (lease_look(reg, it, now, &holder, p)) {
    case LEASE_BOGUS:
        staple_reg_log(reg, STAPLE_LOG_DEBUG,
                       "OCSP for %s: ignored a lease in %s that is not one of "
                       "mod_staple's or runs implausibly long",
                       it->cert->subject, reg->shared.name);
        break;
    case LEASE_OTHERS:
        if (it->lease_wait_since == 0) {
            it->lease_wait_since = now;
        }
        if (now - it->lease_wait_since <= 2 * term) {
            return STAPLE_LEASE_HELD;
        }
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "OCSP for %s: %s has held the fetch lease for %s without "
                       "a new response in %s: fetching",
                       it->cert->subject, holder,
                       staple_fmt_duration(p, now - it->lease_wait_since),
                       reg->shared.name);
        overriding = 1;
        break;
    case LEASE_NONE:
        break;
    }
    it->lease_wait_since = 0;
    if (!take) {
        return STAPLE_LEASE_FREE;
    }
    v = apr_psprintf(p, "%" APR_INT64_T_FMT " %s", (apr_int64_t)(now + term),
                     lease_me(reg));
    if (staple_reg_cache_put(reg, &reg->shared, (const unsigned char *)key,
                             (unsigned int)strlen(key), now + term,
                             (const unsigned char *)v, (unsigned int)strlen(v),
                             p) != APR_SUCCESS) {
        return STAPLE_LEASE_FREE; /* nothing to coordinate through */
    }
    /* the socache API has no atomic add: another server may have found no
     * lease either and put its own. Not confirmed: a holder that never lets
     * go, or a server that keeps overwriting this one's lease. */
    if (overriding) {
        return STAPLE_LEASE_FREE;
    }
    if (it->lease_lost >= STAPLE_LEASE_LOST_MAX) {
        it->lease_lost = 0; /* read back again the next time */
        return STAPLE_LEASE_FREE;
    }
    return STAPLE_LEASE_CLAIMED;
}

int staple_reg_confirm_lease(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                             apr_pool_t *p)
{
    const char *holder;

    /* given way to only for a lease take_lease would wait for */
    if (lease_look(reg, it, now, &holder, p) != LEASE_OTHERS) {
        it->lease_lost = 0;
        return 1; /* ours, or nothing to defer to */
    }
    staple_reg_log(reg, STAPLE_LOG_DEBUG,
                   "OCSP for %s: %s took the fetch lease at the same time: "
                   "waiting for its response",
                   it->cert->subject, holder);
    it->lease_lost++;
    it->lease_wait_since = now;
    return 0;
}

typedef struct {
    staple_reg_t *reg;
    apr_uint32_t done;
} probe_t;

static void *APR_THREAD_FUNC probe_thread(apr_thread_t *t, void *data)
{
    probe_t *pr = data;
    unsigned char buf[64];
    unsigned int len = sizeof(buf);
    apr_pool_t *p;

    (void)t;
    if (apr_pool_create_unmanaged_ex(&p, NULL, NULL) == APR_SUCCESS) {
        pr->reg->shared.get(pr->reg->shared.baton, (const unsigned char *)"staple-probe",
                            12, buf, &len, p);
        apr_pool_destroy(p);
    }
    apr_atomic_set32(&pr->done, 1);
    return NULL;
}

/*
 * Before a round with a deadline, one look at StapleCache on the network,
 * from a thread of its own: a cache that hangs (a paused redis waits for
 * its RedisTimeout) must not hold the first responses back. Returns 0 when
 * it did not answer within the budget; the thread is then left to finish
 * or to end with the process (the startup child exits after its round).
 */
int staple_reg_probe_shared(staple_reg_t *reg, apr_interval_time_t budget, apr_pool_t *p)
{
    probe_t *pr = calloc(1, sizeof(*pr));
    apr_time_t until = apr_time_now() + budget;
    apr_thread_t *t;
    apr_status_t trv;

    if (pr == NULL) {
        return 1;
    }
    pr->reg = reg;
    if (apr_thread_create(&t, NULL, probe_thread, pr, p) != APR_SUCCESS) {
        free(pr);
        return 1; /* no thread: the round is bounded by its deadline still */
    }
    while (!apr_atomic_read32(&pr->done) && apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(5));
    }
    if (!apr_atomic_read32(&pr->done)) {
        staple_reg_log(reg, STAPLE_LOG_WARNING,
                       "%s did not answer within %" APR_TIME_T_FMT " ms: the startup "
                       "fetch goes on without it, and the refresher uses it later",
                       reg->shared.name, apr_time_as_msec(budget));
        return 0;
    }
    apr_thread_join(&trv, t);
    free(pr);
    return 1;
}
