/*
 * The registry: certificates, the handshake path, events and snapshots.
 * The fetch rounds are in staple_reg_refresh.c.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_date.h>
#include <apr_strings.h>
#include <openssl/rand.h>

#include "staple_entry.h"
#include "staple_reg_int.h"

/* Without a local copy, a process looks in the cache at most this often per
 * certificate, unless the refresher announced a new response. */
#define STAPLE_MISS_RECHECK apr_time_from_sec(1)

static const char *const event_names[STAPLE_EVENT_COUNT] = {
    "renewed", "errored", "revoked", "missing", "expiring",
};

const char *staple_event_name(staple_event_e ev)
{
    return (ev >= 0 && ev < STAPLE_EVENT_COUNT) ? event_names[ev] : "invalid";
}

const char *staple_outcome_name(int outcome)
{
    switch (outcome) {
    case STAPLE_OUTCOME_FETCH_ERROR:
        return "fetch-error";
    case STAPLE_OUTCOME_OLDER:
        return "older";
    case STAPLE_OUTCOME_UNREVOKED:
        return "unrevoked";
    default:
        return staple_check_name((staple_check_e)outcome);
    }
}

apr_time_t staple_reg_usable_until(const staple_reg_t *reg,
                                   const staple_resp_info_t *info)
{
    apr_interval_time_t max_age = reg->opts.check.max_age;

    if (max_age >= 0 && info->this_update + max_age < info->next_update) {
        return info->this_update + max_age;
    }
    return info->next_update;
}

void staple_reg_held(const staple_slot_t *sl, staple_resp_info_t *held)
{
    memset(held, 0, sizeof(*held));
    held->produced_at = sl->produced_at;
    held->this_update = sl->this_update;
    held->next_update = sl->next_update;
    held->cert_status = sl->cert_status;
    held->reason = sl->reason;
}

const char *staple_reg_resp_times(apr_pool_t *p, const staple_resp_info_t *info)
{
    return apr_psprintf(p, "producedAt %s, thisUpdate %s",
                        staple_fmt_time(p, info->produced_at),
                        staple_fmt_time(p, info->this_update));
}

const staple_hist_bucket_t staple_hist_buckets[STAPLE_HIST_BUCKETS] = {
    {10, "0.01"}, {50, "0.05"},  {100, "0.1"}, {250, "0.25"}, {500, "0.5"},
    {1000, "1"},  {2500, "2.5"}, {5000, "5"},  {10000, "10"}, {-1, "+Inf"},
};

apr_time_t staple_reg_now(const staple_reg_t *reg)
{
    return reg->opts.clock ? reg->opts.clock() : apr_time_now();
}

double staple_reg_jitter(const staple_reg_t *reg)
{
    apr_uint32_t v = 0;

    if (reg->opts.random) {
        return reg->opts.random();
    }
    if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1) {
        return 0.5;
    }
    return (double)v / 4294967296.0;
}

void staple_reg_log(const staple_reg_t *reg, int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (reg->opts.log == NULL || level > reg->opts.log_level) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    reg->opts.log(reg->opts.log_baton, level, buf);
}

staple_reg_t *staple_reg_make(apr_pool_t *p, const staple_reg_opts_t *opts)
{
    staple_reg_t *reg = apr_pcalloc(p, sizeof(*reg));

    reg->pool = p;
    reg->opts = *opts;
    if (reg->opts.sleep == NULL) {
        reg->opts.sleep = apr_sleep;
    }
    reg->proxy_shown = staple_url_shown(p, opts->fetch.proxy);
    reg->by_id = apr_hash_make(p);
    reg->primed = apr_hash_make(p);
    reg->items = apr_array_make(p, 16, sizeof(staple_item_t *));
    reg->responders = apr_array_make(p, 4, sizeof(staple_responder_t *));
    reg->responder_by_url = apr_hash_make(p);
    reg->by_certid = apr_hash_make(p);
    return reg;
}

void staple_reg_note_primed(staple_reg_t *reg, const unsigned char *id)
{
    apr_hash_set(reg->primed, apr_pmemdup(reg->pool, id, STAPLE_ID_LEN), STAPLE_ID_LEN,
                 reg);
}

int staple_reg_was_primed(const staple_reg_t *reg, const unsigned char *id)
{
    return apr_hash_get(reg->primed, id, STAPLE_ID_LEN) != NULL;
}

int staple_reg_add(staple_reg_t *reg, const unsigned char *id, const char *pem,
                   const char *vhost, const apr_array_header_t *force_urls)
{
    const apr_array_header_t *urls;
    int k;
    apr_pool_t *p = reg->pool;
    staple_item_t *it = apr_hash_get(reg->by_id, id, STAPLE_ID_LEN);
    apr_status_t rv;
    char err[256];

    if (it) {
        APR_ARRAY_PUSH(it->vhosts, const char *) = apr_pstrdup(p, vhost);
        return it->claimed;
    }
    it = apr_pcalloc(p, sizeof(*it));
    it->vhosts = apr_array_make(p, 2, sizeof(const char *));
    APR_ARRAY_PUSH(it->vhosts, const char *) = apr_pstrdup(p, vhost);
    apr_hash_set(reg->by_id, apr_pmemdup(p, id, STAPLE_ID_LEN), STAPLE_ID_LEN, it);

    if (reg->issuers == NULL) {
        reg->issuers = staple_issuers_make(p, reg->opts.trusted);
    }
    rv = staple_cert_load(&it->cert, p, pem, reg->issuers, err, sizeof(err));
    if (rv == APR_NOTFOUND && it->cert && it->cert->self_signed) {
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "certificate %s (serial %s) is self-signed: there is no "
                       "responder to ask, not stapling it",
                       it->cert->subject, it->cert->serial);
        return 0;
    }
    if (rv != APR_SUCCESS) {
        staple_reg_log(reg, STAPLE_LOG_WARNING,
                       "certificate %s of server %s cannot be stapled: %s; put the "
                       "issuer certificate after it in SSLCertificateFile",
                       it->cert ? it->cert->subject : "(unreadable)", vhost, err);
        return 0;
    }
    urls = force_urls && force_urls->nelts ? force_urls : it->cert->ocsp_urls;
    if (urls->nelts == 0) {
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "certificate %s (serial %s) has no OCSP responder URL and no "
                       "StapleForceURL is set: not stapling it",
                       it->cert->subject, it->cert->serial);
        return 0;
    }
    it->urls = apr_array_make(p, urls->nelts, sizeof(staple_responder_t *));
    for (k = 0; k < urls->nelts; k++) {
        APR_ARRAY_PUSH(it->urls, staple_responder_t *) =
            staple_reg_responder(reg, APR_ARRAY_IDX(urls, k, const char *));
    }
    it->claimed = 1;
    it->index = reg->items->nelts;
    APR_ARRAY_PUSH(reg->items, staple_item_t *) = it;
    staple_reg_index_certids(reg, it);
    staple_reg_log(
        reg, STAPLE_LOG_DEBUG, "claimed certificate %s (serial %s%s), responder %s%s",
        it->cert->subject, it->cert->serial, it->cert->must_staple ? ", Must-Staple" : "",
        STAPLE_URL(it, 0)->url_shown,
        it->urls->nelts > 1 ? apr_psprintf(p, " and %d more", it->urls->nelts - 1) : "");
    return 1;
}

void staple_reg_set_store(staple_reg_t *reg, const char *dir)
{
    reg->opts.store = dir;
}

int staple_reg_count(const staple_reg_t *reg)
{
    return reg->items->nelts;
}

/* Where the responder slots begin in the shared memory. */
static apr_size_t rslots_offset(const staple_reg_t *reg)
{
    return APR_ALIGN_DEFAULT(APR_ALIGN_DEFAULT(sizeof(staple_stats_t)) +
                             sizeof(staple_slot_t) * (apr_size_t)reg->items->nelts);
}

apr_size_t staple_reg_shm_size(const staple_reg_t *reg)
{
    return rslots_offset(reg) +
           sizeof(staple_rslot_t) * (apr_size_t)reg->responders->nelts;
}

void staple_reg_attach(staple_reg_t *reg, void *shm, int fresh,
                       const staple_cache_ops_t *shared, const staple_cache_ops_t *local)
{
    int i;

    reg->stats = shm;
    reg->slots =
        (staple_slot_t *)((char *)shm + APR_ALIGN_DEFAULT(sizeof(staple_stats_t)));
    reg->rslots = (staple_rslot_t *)((char *)shm + rslots_offset(reg));
    if (fresh) {
        memset(shm, 0, staple_reg_shm_size(reg));
        for (i = 0; i < reg->items->nelts; i++) {
            reg->slots[i].cert_status = -1;
            reg->slots[i].reason = -1;
        }
    }
    reg->shared = *shared;
    reg->local = local ? *local : *shared;
    reg->node_local = local != NULL;
}

/* The process copies go with the process's pool, before their locks. */
static apr_status_t copies_cleanup(void *data)
{
    staple_reg_t *reg = data;
    int i;

    for (i = 0; i < reg->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);
        free(it->der);
        it->der = NULL;
        it->der_len = 0;
        it->lock = NULL;
    }
    staple_reg_resolve_end(reg);
    return APR_SUCCESS;
}

apr_status_t staple_reg_child_init(staple_reg_t *reg, apr_pool_t *pchild)
{
    apr_status_t rv;
    int i;

    for (i = 0; i < reg->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);
        if ((rv = apr_thread_rwlock_create(&it->lock, pchild)) != APR_SUCCESS) {
            return rv;
        }
    }
    apr_pool_cleanup_register(pchild, reg, copies_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Handshakes                                                          */

/* At most one warning per certificate and process in this interval about
 * what the local cache holds; the others go to debug. */
#define STAPLE_WARN_INTERVAL apr_time_from_sec(600)

static void warn_entry(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                       const char *fmt, const char *a, const char *b)
{
    int level = STAPLE_LOG_DEBUG;

    if (it->warned_at == 0 || now - it->warned_at >= STAPLE_WARN_INTERVAL) {
        it->warned_at = now;
        level = STAPLE_LOG_WARNING;
    }
    staple_reg_log(reg, level, fmt, it->cert->subject, a, b);
}

/* Refresh this process's copy from the local cache: an entry that passes
 * the checks and is not older than the response the server holds. Called
 * with it->lock held for writing. */
static void local_refresh(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                          apr_uint32_t gen, apr_pool_t *p)
{
    unsigned char *der;
    apr_size_t der_len;
    apr_time_t fetched_at;
    staple_resp_info_t info, held;
    staple_fresh_e fresh;
    char why[256];
    apr_status_t rv;

    it->checked_at = now;
    it->gen_seen = gen;
    rv = staple_reg_cache_load(reg, &reg->local, it, now, &der, &der_len, &fetched_at,
                               &info, why, sizeof(why), p);
    if (rv == APR_SUCCESS) {
        staple_reg_held(&reg->slots[it->index], &held);
        fresh = staple_resp_compare(&held, &info);
        if (fresh == STAPLE_FRESH_OLDER || fresh == STAPLE_FRESH_UNREVOKED) {
            warn_entry(reg, it, now,
                       "cached OCSP response for %s refused: %s than the one held (%s)",
                       fresh == STAPLE_FRESH_OLDER ? "older" : "good, and so older",
                       reg->local.name);
            free(der);
        } else {
            free(it->der);
            it->der = der;
            it->der_len = der_len;
            it->next_update = staple_reg_usable_until(reg, &info);
            it->copy_info = info;
        }
    } else if (rv == APR_EINVAL) {
        warn_entry(reg, it, now, "cached OCSP response for %s rejected: %s%s", why, "");
    }
    /* the local cache may have lost the entry the server holds now (evicted,
     * or refused above): a copy older than that is not stapled either */
    staple_reg_held(&reg->slots[it->index], &held);
    if (it->der && staple_resp_compare(&it->copy_info, &held) == STAPLE_FRESH_NEWER) {
        free(it->der);
        it->der = NULL;
        it->der_len = 0;
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

int staple_reg_copy(staple_reg_t *reg, staple_item_t *it, staple_copy_fn *copy,
                    void *baton, apr_time_t *this_update, apr_time_t *next_update,
                    apr_pool_t *p)
{
    staple_slot_t *slot = &reg->slots[it->index];
    apr_time_t now = staple_reg_now(reg);
    apr_uint32_t gen = apr_atomic_read32(&slot->gen);
    int ok = 0;

    /* Handshakes share the copy under a read lock: one preempted while
     * copying holds up no other, as it would under a mutex. */
    if (it->lock == NULL || apr_thread_rwlock_rdlock(it->lock) != APR_SUCCESS) {
        copy(NULL, 0, baton);
        return 0;
    }
    if (copy_outdated(it, now, gen)) {
        apr_thread_rwlock_unlock(it->lock);
        if (apr_thread_rwlock_wrlock(it->lock) != APR_SUCCESS) {
            copy(NULL, 0, baton);
            return 0;
        }
        gen = apr_atomic_read32(&slot->gen);
        if (copy_outdated(it, now, gen)) { /* nobody refreshed it meanwhile */
            local_refresh(reg, it, now, gen, p);
        }
    }
    if (it->der && now < it->next_update) {
        copy(it->der, it->der_len, baton);
        if (this_update) {
            *this_update = it->copy_info.this_update;
            *next_update = it->copy_info.next_update;
        }
        ok = 1;
    } else {
        /* We answer for this certificate: no staple rather than letting
         * anyone fetch in the handshake. */
        copy(NULL, 0, baton);
    }
    apr_thread_rwlock_unlock(it->lock);
    return ok;
}

/* A claimed certificate of this id, or NULL. */
static staple_item_t *claimed(const staple_reg_t *reg, const unsigned char *id,
                              apr_size_t id_len)
{
    staple_item_t *it = id_len == STAPLE_ID_LEN
                            ? apr_hash_get(reg->by_id, id, (apr_ssize_t)id_len)
                            : NULL;

    return it && it->claimed ? it : NULL;
}

staple_resp_e staple_reg_get_resp(staple_reg_t *reg, const unsigned char *id,
                                  apr_size_t id_len, staple_copy_fn *copy, void *baton,
                                  apr_pool_t *p)
{
    staple_item_t *it = claimed(reg, id, id_len);
    int stapled;

    if (it == NULL || it->lock == NULL) {
        return STAPLE_RESP_NOT_OURS;
    }
    stapled = staple_reg_copy(reg, it, copy, baton, NULL, NULL, p);
    apr_atomic_inc64(stapled ? &reg->slots[it->index].stapled
                             : &reg->slots[it->index].unstapled);
    if (!stapled) {
        /* the refresher reports the cause, and a Must-Staple certificate
         * at error level; a line per handshake would flood the log */
        staple_reg_log(reg, STAPLE_LOG_DEBUG, "no valid OCSP response to staple for %s",
                       it->cert->subject);
    }
    return stapled ? STAPLE_RESP_STAPLED : STAPLE_RESP_NONE;
}

staple_resp_e staple_reg_response(staple_reg_t *reg, const unsigned char *id,
                                  staple_copy_fn *copy, void *baton, apr_pool_t *p)
{
    staple_item_t *it = claimed(reg, id, STAPLE_ID_LEN);

    if (it == NULL || it->lock == NULL) {
        return STAPLE_RESP_NOT_OURS;
    }
    return staple_reg_copy(reg, it, copy, baton, NULL, NULL, p) ? STAPLE_RESP_STAPLED
                                                                : STAPLE_RESP_NONE;
}

/* An operator's ask for one certificate: 1 when it is scheduled, 0 when an
 * ask came less than STAPLE_REFRESH_MIN_INTERVAL ago (or a clock moved back
 * less than that), in this process or another. */
static int ask_refresh(staple_slot_t *sl, apr_time_t now)
{
    apr_uint64_t last = apr_atomic_read64(&sl->refresh_asked_at);
    apr_interval_time_t ago = now - (apr_time_t)last;

    if (last && ago < STAPLE_REFRESH_MIN_INTERVAL && -ago < STAPLE_REFRESH_MIN_INTERVAL) {
        return 0;
    }
    /* two asks at once: only one is scheduled */
    if (apr_atomic_cas64(&sl->refresh_asked_at, (apr_uint64_t)now, last) != last) {
        return 0;
    }
    apr_atomic_set32(&sl->refresh_asked, 1);
    return 1;
}

int staple_reg_request_refresh(staple_reg_t *reg, const unsigned char *id,
                               staple_refresh_e *outcome)
{
    apr_time_t now = staple_reg_now(reg);
    staple_item_t *it;
    int i, n = 0;

    for (i = 0; i < reg->items->nelts; i++) {
        staple_refresh_e o = STAPLE_REFRESH_NOT_ASKED;
        it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);
        if (id == NULL || !memcmp(it->cert->id, id, STAPLE_ID_LEN)) {
            o = ask_refresh(&reg->slots[i], now) ? STAPLE_REFRESH_SCHEDULED
                                                 : STAPLE_REFRESH_TOO_RECENT;
            n++;
        }
        if (outcome) {
            outcome[i] = o;
        }
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

static const char *event_detail(const staple_slot_t *sl, staple_event_e ev,
                                apr_time_t now, apr_pool_t *p)
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

apr_array_header_t *staple_reg_take_events(staple_reg_t *reg, apr_pool_t *p)
{
    apr_array_header_t *out = apr_array_make(p, 4, sizeof(staple_event_t));
    apr_time_t now = staple_reg_now(reg);
    int i, ev;

    for (i = 0; i < reg->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);
        staple_slot_t *sl = &reg->slots[i];
        apr_uint32_t pending = sl->events_pending;

        sl->events_pending = 0;
        for (ev = 0; ev < STAPLE_EVENT_COUNT; ev++) {
            staple_event_t *e;
            if (!(pending & (1u << ev))) {
                continue;
            }
            if (sl->event_at[ev] && now - sl->event_at[ev] < STAPLE_EVENT_INTERVAL) {
                staple_reg_log(reg, STAPLE_LOG_DEBUG,
                               "StapleEventCmd %s for %s: rate-limited",
                               staple_event_name(ev), it->cert->subject);
                continue;
            }
            sl->event_at[ev] = now;
            e = apr_array_push(out);
            e->event = (staple_event_e)ev;
            e->id_hex = it->cert->id_hex;
            e->subject = it->cert->subject;
            e->detail = event_detail(sl, ev, now, p);
        }
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */

static void snap_cert(const staple_reg_t *reg, const staple_item_t *it,
                      const staple_slot_t *sl, apr_time_t now, staple_cert_snap_t *c,
                      apr_pool_t *p)
{
    apr_array_header_t *urls = apr_array_make(p, it->urls->nelts, sizeof(const char *));
    int k;

    for (k = 0; k < it->urls->nelts; k++) {
        APR_ARRAY_PUSH(urls, const char *) = STAPLE_URL(it, k)->url_shown;
    }
    c->urls = urls;
    c->id_hex = it->cert->id_hex;
    c->subject = it->cert->subject;
    c->serial = it->cert->serial;
    c->vhosts = it->vhosts;
    c->url = staple_reg_url_in_use(reg, it)->url_shown;
    c->must_staple = it->cert->must_staple;
    c->cert_status = sl->cert_status;
    c->this_update = sl->this_update;
    c->next_update = sl->next_update;
    c->produced_at = sl->produced_at;
    c->fetched_at = sl->fetched_at;
    c->valid = sl->valid_until > now;
    c->time_left = c->valid ? sl->valid_until - now : 0;
    c->last_fetch_at = sl->last_attempt;
    c->last_fetch_duration = sl->last_duration;
    c->last_error_at = sl->last_error_at;
    c->failures = sl->failures;
    c->next_refresh = sl->due;
    c->stapled = sl->stapled;
    c->unstapled = sl->unstapled;
    if (!c->valid) {
        c->state = sl->valid_until ? "expired" : "none";
    } else if (sl->cert_status == V_OCSP_CERTSTATUS_REVOKED) {
        c->state = "revoked";
    } else if (sl->failures > 0) {
        c->state = "failing";
    } else {
        c->state = "good";
    }
}

staple_snapshot_t *staple_reg_snapshot(staple_reg_t *reg, apr_pool_t *p)
{
    staple_snapshot_t *snap = apr_pcalloc(p, sizeof(*snap));
    apr_uint64_t cum = 0;
    int i;

    snap->now = staple_reg_now(reg);
    snap->cache_name = reg->shared.name;
    snap->node_local = reg->node_local;
    snap->count = reg->items->nelts;
    snap->certs = apr_pcalloc(p, sizeof(*snap->certs) * (apr_size_t)(snap->count + 1));
    for (i = 0; i < snap->count; i++) {
        staple_cert_snap_t *c = &snap->certs[i];
        const staple_slot_t *sl = &reg->slots[i];
        snap_cert(reg, APR_ARRAY_IDX(reg->items, i, staple_item_t *), sl, snap->now, c,
                  p);
        if (sl->last_error_at) {
            c->last_error = apr_pstrdup(p, sl->last_error);
        }
        snap->valid += c->valid;
        snap->stapled += c->stapled;
        snap->unstapled += c->unstapled;
    }
    for (i = 0; i < STAPLE_OUTCOME_COUNT; i++) {
        snap->outcomes[i] = reg->stats->outcomes[i];
        snap->fetches += snap->outcomes[i];
        if (i != STAPLE_CHECK_OK) {
            snap->failed += snap->outcomes[i];
        }
    }
    for (i = 0; i < STAPLE_HIST_BUCKETS; i++) {
        cum += reg->stats->duration_hist[i];
        snap->hist[i] = cum;
    }
    snap->duration_sum_us = reg->stats->duration_sum_us;
    for (i = 0; i < STAPLE_RELAY_COUNT; i++) {
        snap->relay[i] = reg->stats->relay[i];
    }
    staple_reg_snap_responders(reg, snap, p);
    return snap;
}
