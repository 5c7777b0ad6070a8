/*
 * The registry's fetch rounds: what is due, the store on disk, the shared
 * cache and its lease, fetching, and what a result changes.
 */
#include <errno.h>
#include <string.h>
#include <stdlib.h>

#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include "staple_store.h"
#include "staple_reg_int.h"

/* A refresher round takes in certificates that fall due for this long. */
#define STAPLE_ROUND_MAX apr_time_from_sec(30)

/* The refresher looks again at least this often. */
#define STAPLE_IDLE_MAX apr_time_from_sec(3600)

/* A lease claimed this close to a round's deadline is not read back. */
#define STAPLE_CONFIRM_MARGIN apr_time_from_msec(500)

/* How long a server waits for the lease holder's response before its own
 * next look. */
#define STAPLE_LEASE_WAIT apr_time_from_sec(2)

typedef struct {
    staple_reg_t *reg;
    apr_pool_t *pool;
    apr_array_header_t *waiting; /* items whose lease another server holds */
    apr_array_header_t *claimed; /* items whose lease was put, to confirm */
    apr_array_header_t *retry;   /* staple_fetch_t *: the next URL, or POST */
    apr_time_t add_until;        /* no new fetch joins the round after this */
    int keep_adding;
    int deferred;        /* fetches the deadline came before */
    apr_time_t deadline; /* of the whole round, or 0 */
} round_t;

static void count_outcome(staple_reg_t *reg, int outcome, apr_interval_time_t duration)
{
    apr_interval_time_t ms = apr_time_as_msec(duration);
    int b = 0;

    apr_atomic_inc32(&reg->stats->outcomes[outcome]);
    while (b < STAPLE_HIST_BUCKETS - 1 && ms > staple_hist_buckets[b].ms) {
        b++;
    }
    apr_atomic_inc32(&reg->stats->duration_hist[b]);
    /* one writer at a time: the startup child, then the refresher */
    reg->stats->duration_sum_us += (apr_uint64_t)duration;
}

static void record_failure(staple_reg_t *reg, staple_item_t *it,
                           const staple_responder_t *r, apr_time_t now, const char *what,
                           apr_pool_t *p)
{
    staple_slot_t *sl = &reg->slots[it->index];
    const char *left;

    sl->failures++;
    sl->due = staple_retry_due(&reg->opts.timing, now, (int)sl->failures,
                               staple_reg_jitter(reg));
    apr_cpystrn(sl->last_error, what, sizeof(sl->last_error));
    sl->last_error_at = now;
    sl->events_pending |= 1u << STAPLE_EVENT_ERRORED;
    left = (sl->valid_until > now)
               ? apr_psprintf(p, "the cached response stays in use for %s",
                              staple_fmt_duration(p, sl->valid_until - now))
               : "no valid response to staple";
    staple_reg_log(reg, STAPLE_LOG_WARNING,
                   "OCSP for %s (serial %s) from %s: %s; %s; retry in %s (failure %d)",
                   it->cert->subject, it->cert->serial, r->url_shown, what, left,
                   staple_fmt_duration(p, sl->due - now), (int)sl->failures);
    if (sl->valid_until > now &&
        (sl->valid_until - now) * 10 < sl->valid_until - sl->this_update) {
        /* in the last 10 % of its life and the renewal failed */
        sl->events_pending |= 1u << STAPLE_EVENT_EXPIRING;
    }
    if (it->cert->must_staple && sl->valid_until <= now) {
        sl->events_pending |= 1u << STAPLE_EVENT_MISSING;
        staple_reg_log(reg, STAPLE_LOG_ERR,
                       "Must-Staple certificate %s (serial %s) has no valid OCSP "
                       "response: clients will refuse its handshakes",
                       it->cert->subject, it->cert->serial);
    }
}

/* ------------------------------------------------------------------ */
/* The store on disk                                                   */

void staple_reg_store_save(staple_reg_t *reg, staple_item_t *it, const unsigned char *der,
                           apr_size_t len, apr_pool_t *p)
{
    char err[512];

    if (reg->opts.store == NULL) {
        return;
    }
    if (staple_store_save(reg->opts.store, it->cert->id_hex, der, len, p, err,
                          sizeof(err)) != APR_SUCCESS) {
        staple_reg_log(reg, STAPLE_LOG_WARNING,
                       "StapleStore: cannot keep the response for %s: %s; stapling "
                       "goes on from memory",
                       it->cert->subject, err);
        return;
    }
    /* this server's own file: the store scan passes it over */
    staple_reg_store_seen(reg, it, p);
}

void staple_reg_store_seen(staple_reg_t *reg, staple_item_t *it, apr_pool_t *p)
{
    apr_time_t mtime;

    if (staple_store_mtime(reg->opts.store, it->cert->id_hex, &mtime, p) == APR_SUCCESS) {
        reg->slots[it->index].store_mtime = mtime;
    }
}

/* Why staple_store_load could not read a file. */
static const char *store_error(apr_status_t rv, apr_pool_t *p)
{
    char err[120];

    if (rv == APR_EINVAL) {
        return "not a regular file";
    }
    if (rv == APR_FROM_OS_ERROR(ELOOP)) {
        return "a symbolic link, not followed";
    }
    if (rv == APR_ENOSPC) {
        return apr_psprintf(p, "larger than %d bytes, which no OCSP response is",
                            STAPLE_MAX_RESPONSE_LEN);
    }
    return apr_pstrdup(p, apr_strerror(rv, err, sizeof(err)));
}

static void store_unreadable(staple_reg_t *reg, staple_item_t *it, apr_status_t rv,
                             int removed, apr_pool_t *p)
{
    staple_reg_log(reg, STAPLE_LOG_WARNING, "StapleStore: cannot read %s for %s (%s): %s",
                   staple_store_path(reg->opts.store, it->cert->id_hex, p),
                   it->cert->subject, store_error(rv, p),
                   removed ? "removed" : "ignoring it");
}

/* Read and verify the certificate's file in StapleStore. Expired and
 * rejected files are removed. */
int staple_reg_store_read(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                          staple_resp_t *r, int remove_bad, apr_pool_t *p)
{
    const char *path, *dir = reg->opts.store;
    staple_check_e rc;
    apr_status_t rv;
    char why[256];
    int remove;

    if (dir == NULL) {
        return 0;
    }
    rv = staple_store_load(dir, it->cert->id_hex, &r->der, &r->len, &r->fetched_at, p);
    if (rv == APR_ENOENT) {
        return 0;
    }
    path = staple_store_path(dir, it->cert->id_hex, p);
    if (rv != APR_SUCCESS) {
        int drop = rv == APR_ENOSPC && remove_bad;

        store_unreadable(reg, it, rv, drop, p);
        if (drop) {
            staple_store_remove(dir, it->cert->id_hex, p);
        }
        return 0;
    }
    rc = staple_ocsp_check(it->cert, r->der, r->len, now, &reg->opts.check, &r->info, why,
                           sizeof(why));
    /* one not yet valid may be by a clock that is behind: it stays */
    remove = remove_bad && rc != STAPLE_CHECK_NOT_YET_VALID;
    if (rc != STAPLE_CHECK_OK) {
        staple_reg_log(
            reg, rc == STAPLE_CHECK_EXPIRED ? STAPLE_LOG_INFO : STAPLE_LOG_WARNING,
            "StapleStore: %s for %s rejected (%s): %s%s", path, it->cert->subject,
            staple_check_name(rc), why, remove ? "; removed" : "");
        if (remove) {
            staple_store_remove(dir, it->cert->id_hex, p);
        }
        return 0;
    }
    /* the file's time is not signed: keep it plausible */
    if (r->fetched_at > now ||
        r->fetched_at < r->info.this_update - reg->opts.check.time_skew) {
        r->fetched_at = r->info.this_update;
    }
    staple_reg_log(reg, STAPLE_LOG_INFO,
                   "OCSP for %s (serial %s): %s response loaded from %s, valid for %s",
                   it->cert->subject, it->cert->serial,
                   staple_cert_status_name(r->info.cert_status), path,
                   staple_fmt_duration(p, r->info.next_update - now));
    return 1;
}

/* ------------------------------------------------------------------ */
/* Fetching                                                            */

/* A fetch of certificate it from its URL k. */
static staple_fetch_t *make_fetch(round_t *rd, staple_item_t *it, int k, int post)
{
    staple_fetch_t *f = apr_pcalloc(rd->pool, sizeof(*f));
    const staple_responder_t *r = STAPLE_URL(it, k);

    f->url = r->url;
    f->post = post || staple_reg_use_post(rd->reg, r);
    f->req = it->cert->req_der;
    f->req_len = it->cert->req_len;
    f->baton = it;
    it->try_k = k;
    it->in_flight = 1;
    return f;
}

/*
 * A fetch from one URL failed: the certificate's next URL, if it has one
 * not tried in this fetch, is asked at once; otherwise the failure counts.
 */
static void fetch_failed(round_t *rd, staple_item_t *it, const staple_responder_t *r,
                         apr_time_t now, const char *what)
{
    staple_reg_t *reg = rd->reg;
    int n = it->urls->nelts;

    staple_reg_responder_failed(reg, r, now, what);
    if (it->tried < n) {
        int k = (it->try_k + 1) % n;
        it->tried++;
        staple_reg_log(reg, STAPLE_LOG_INFO, "OCSP for %s from %s: %s; trying %s",
                       it->cert->subject, r->url_shown, what,
                       STAPLE_URL(it, k)->url_shown);
        APR_ARRAY_PUSH(rd->retry, staple_fetch_t *) = make_fetch(rd, it, k, 0);
        return;
    }
    it->in_flight = 0;
    record_failure(reg, it, r, now,
                   n > 1 ? apr_psprintf(rd->pool, "%s (and %d other responder(s) failed)",
                                        what, n - 1)
                         : what,
                   rd->pool);
}

static void on_fetched(staple_fetch_t *f, void *ctx)
{
    round_t *rd = ctx;
    staple_reg_t *reg = rd->reg;
    staple_item_t *it = f->baton;
    const staple_responder_t *r = STAPLE_URL(it, it->try_k);
    apr_pool_t *p = rd->pool;
    apr_time_t now = staple_reg_now(reg);
    staple_slot_t *sl = &reg->slots[it->index];
    const char *proxy = reg->proxy_shown;
    staple_resp_info_t info, held;
    staple_fresh_e fresh;
    staple_check_e rc;
    char why[256];
    int adopted = 0;

    if (!f->started || (f->status == APR_TIMEUP && rd->deadline &&
                        now + apr_time_from_msec(50) >= rd->deadline)) {
        /* never asked, or cut short by the round's deadline (startup):
         * left to the refresher, not a responder failure */
        it->in_flight = 0;
        rd->deferred++;
        return;
    }
    sl->last_attempt = now - f->duration;
    sl->last_duration = f->duration;
    if (staple_reg_get_refused(reg, r, f)) {
        /* the same responder again, with POST, at once */
        APR_ARRAY_PUSH(rd->retry, staple_fetch_t *) = make_fetch(rd, it, it->try_k, 1);
        return;
    }
    if (f->status != APR_SUCCESS) {
        if (f->http_status) {
            staple_reg_check_clock(reg, r, f, NULL, now);
        }
        count_outcome(reg, STAPLE_OUTCOME_FETCH_ERROR, f->duration);
        fetch_failed(
            rd, it, r, now,
            apr_psprintf(p, "fetch failed after %.1f ms (%s%s%s): %s",
                         (double)f->duration / 1000.0, f->method ? f->method : "-",
                         proxy ? " via StapleProxy " : "", proxy ? proxy : "", f->error));
        return;
    }
    rc = staple_ocsp_check(it->cert, f->body, f->body_len, now, &reg->opts.check, &info,
                           why, sizeof(why));
    staple_reg_check_clock(reg, r, f, rc == STAPLE_CHECK_OK ? &info : NULL, now);
    if (rc != STAPLE_CHECK_OK) {
        count_outcome(reg, (int)rc, f->duration);
        fetch_failed(
            rd, it, r, now,
            apr_psprintf(p, "response rejected (%s): %s", staple_check_name(rc), why));
        return;
    }
    /* a valid response, but perhaps an older one replayed: freshness only
     * moves forward */
    staple_reg_held(sl, &held);
    fresh = staple_resp_compare(&held, &info);
    if (fresh == STAPLE_FRESH_OLDER || fresh == STAPLE_FRESH_UNREVOKED) {
        int outcome =
            fresh == STAPLE_FRESH_OLDER ? STAPLE_OUTCOME_OLDER : STAPLE_OUTCOME_UNREVOKED;
        count_outcome(reg, outcome, f->duration);
        fetch_failed(rd, it, r, now,
                     apr_psprintf(p,
                                  fresh == STAPLE_FRESH_OLDER
                                      ? "response refused (%s): %s, %s, is older than "
                                        "the response held (%s, %s)"
                                      : "response refused (%s): %s, %s, after the "
                                        "response held (%s, %s): a revocation is never "
                                        "undone",
                                  staple_outcome_name(outcome),
                                  staple_cert_status_name(info.cert_status),
                                  staple_reg_resp_times(p, &info),
                                  staple_cert_status_name(held.cert_status),
                                  staple_reg_resp_times(p, &held)));
        return;
    }
    it->in_flight = 0;
    count_outcome(reg, STAPLE_CHECK_OK, f->duration);
    staple_reg_responder_ok(reg, r, now);
    sl->url_pref = (apr_uint32_t)it->try_k; /* asked first next time */
    /* In a cluster another server may have put a newer response into
     * StapleCache while this one fetched: it stays there, and is adopted. */
    staple_reg_publish(reg, it, f->body, f->body_len, now, &info, !reg->node_local, p);
    if (reg->node_local) {
        staple_resp_t got = {f->body, f->body_len, now, info};
        adopted = staple_reg_share_unless_newer(reg, it, &got, now, p);
    }
    if (!adopted) {
        staple_reg_store_save(reg, it, f->body, f->body_len, p);
    }
    sl->failures = 0;
    staple_reg_held(sl, &held); /* this fetch's response, or the newer one */
    sl->events_pending |=
        1u << (held.cert_status == V_OCSP_CERTSTATUS_REVOKED ? STAPLE_EVENT_REVOKED
                                                             : STAPLE_EVENT_RENEWED);
    sl->due = staple_refresh_due(&reg->opts.timing, now, held.this_update,
                                 sl->valid_until, staple_reg_jitter(reg));
    if (reg->opts.timing.renew_pct < 0 &&
        reg->opts.timing.renew_window >= sl->valid_until - held.this_update &&
        !it->window_warned) {
        it->window_warned = 1;
        staple_reg_log(reg, STAPLE_LOG_WARNING,
                       "OCSP for %s: its responses are valid for %s, no longer than "
                       "StapleRenewWindow (%s): each is renewed at every chance; set "
                       "StapleRenewWindow to less, or to a percentage such as 50%%",
                       it->cert->subject,
                       staple_fmt_duration(p, sl->valid_until - held.this_update),
                       staple_fmt_duration(p, reg->opts.timing.renew_window));
    }
    staple_reg_log(reg, STAPLE_LOG_INFO,
                   "OCSP for %s (serial %s) from %s: %s in %.1f ms (%s), "
                   "valid for %s, next refresh in %s",
                   it->cert->subject, it->cert->serial, r->url_shown,
                   staple_cert_status_name(info.cert_status),
                   (double)f->duration / 1000.0, f->method,
                   staple_fmt_duration(p, sl->valid_until - now),
                   staple_fmt_duration(p, sl->due - now));
    if (held.cert_status == V_OCSP_CERTSTATUS_REVOKED) {
        staple_reg_log(reg, STAPLE_LOG_ERR,
                       "certificate %s (serial %s) is REVOKED according to its OCSP "
                       "responder: replace it; the revoked status is stapled",
                       it->cert->subject, it->cert->serial);
    }
}

/* Whether the process is going: no more certificates are taken up. */
static int stopping(const staple_reg_t *reg)
{
    return reg->opts.stopping && reg->opts.stopping();
}

/* Another server is fetching it: adopt its result. */
static void wait_for_holder(round_t *rd, staple_item_t *it, apr_time_t now)
{
    rd->reg->slots[it->index].due = now + STAPLE_LEASE_WAIT;
    APR_ARRAY_PUSH(rd->waiting, staple_item_t *) = it;
}

static void add_fetch(round_t *rd, apr_array_header_t *fetches, staple_item_t *it)
{
    /* the URL that answered last first */
    it->tried = 1;
    APR_ARRAY_PUSH(fetches, staple_fetch_t *) =
        make_fetch(rd, it, (int)staple_reg_url_in_use_index(rd->reg, it), 0);
}

/* The leases put, read back STAPLE_LEASE_CONFIRM after: of two servers that
 * put theirs at the same time, only the one whose lease stands fetches.
 * Before a round's first transfers (pause), this waits once for all;
 * while transfers run, it takes only the claims old enough, and never
 * sleeps. Close to a deadline, a claim is fetched without the read-back. */
static void confirm_claims(round_t *rd, apr_array_header_t *fetches, int pause)
{
    staple_reg_t *reg = rd->reg;
    apr_time_t now = staple_reg_now(reg);
    int i, n = 0, hurry;

    if (rd->claimed->nelts == 0) {
        return;
    }
    hurry = rd->deadline &&
            now + STAPLE_LEASE_CONFIRM + STAPLE_CONFIRM_MARGIN >= rd->deadline;
    if (pause && !hurry) {
        reg->opts.sleep(STAPLE_LEASE_CONFIRM);
        now = staple_reg_now(reg);
    }
    for (i = 0; i < rd->claimed->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(rd->claimed, i, staple_item_t *);

        if (!pause && !hurry && now < it->claimed_at + STAPLE_LEASE_CONFIRM) {
            APR_ARRAY_IDX(rd->claimed, n++, staple_item_t *) = it; /* later */
            continue;
        }
        it->claimed_at = 0;
        if (hurry || staple_reg_confirm_lease(reg, it, now, rd->pool)) {
            add_fetch(rd, fetches, it);
        } else {
            wait_for_holder(rd, it, now);
        }
    }
    rd->claimed->nelts = n;
}

/* Claims still unconfirmed when a round's transfers end: the next round
 * takes them up again (they are due). */
static void drop_claims(round_t *rd)
{
    int i;

    for (i = 0; i < rd->claimed->nelts; i++) {
        APR_ARRAY_IDX(rd->claimed, i, staple_item_t *)->claimed_at = 0;
    }
    rd->claimed->nelts = 0;
}

/* Queue every certificate that is due and not being fetched already. */
static void collect_due(round_t *rd, apr_array_header_t *fetches, apr_time_t now)
{
    staple_reg_t *reg = rd->reg;
    apr_pool_t *p = rd->pool;
    int i;

    for (i = 0; i < reg->items->nelts && !stopping(reg); i++) {
        staple_item_t *it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);
        staple_slot_t *sl = &reg->slots[it->index];
        int asked;

        if (it->in_flight || it->claimed_at ||
            (sl->due > now && !apr_atomic_read32(&sl->refresh_asked))) {
            continue;
        }
        /* an operator's refresh fetches whatever the shared cache holds;
         * otherwise the shared cache first, also while this server's own
         * fetches fail: the cluster's fresh responses are as good */
        asked = apr_atomic_xchg32(&sl->refresh_asked, 0);
        if (!asked && staple_reg_adopt(reg, it, now, p)) {
            continue;
        }
        /* a failing server does not take the lease, which would keep the
         * healthy ones from fetching, but waits for a holder's response */
        switch (staple_reg_take_lease(reg, it, now, sl->failures == 0, p)) {
        case STAPLE_LEASE_HELD:
            wait_for_holder(rd, it, now);
            break;
        case STAPLE_LEASE_CLAIMED:
            it->claimed_at = now;
            APR_ARRAY_PUSH(rd->claimed, staple_item_t *) = it;
            break;
        case STAPLE_LEASE_FREE:
            add_fetch(rd, fetches, it);
            break;
        }
    }
}

/* While the refresher's transfers run, certificates that fall due join them
 * at once: a slow responder must not delay the others. */
static void more_due(apr_array_header_t *fetches, void *ctx)
{
    round_t *rd = ctx;
    apr_time_t now = staple_reg_now(rd->reg);
    int i;

    /* the next URL of a certificate whose fetch failed, at once */
    for (i = 0; i < rd->retry->nelts; i++) {
        APR_ARRAY_PUSH(fetches, staple_fetch_t *) =
            APR_ARRAY_IDX(rd->retry, i, staple_fetch_t *);
    }
    rd->retry->nelts = 0;
    if (stopping(rd->reg)) {
        return; /* let the running transfers end and the process go */
    }
    if (rd->keep_adding && now < rd->add_until) {
        collect_due(rd, fetches, now);
    }
    confirm_claims(rd, fetches, 0);
}

/* After a run: a fetch libcurl could not run (or a next URL it never got
 * to) is a failure, and its certificate is not left in flight. */
static void settle(round_t *rd, apr_status_t rv)
{
    staple_reg_t *reg = rd->reg;
    apr_time_t now = staple_reg_now(reg);
    char err[120];
    int i;

    for (i = 0; i < reg->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);

        if (it->in_flight) {
            it->in_flight = 0;
            record_failure(reg, it, STAPLE_URL(it, it->try_k), now,
                           rv != APR_SUCCESS
                               ? apr_pstrcat(rd->pool, "libcurl could not run it: ",
                                             apr_strerror(rv, err, sizeof(err)), NULL)
                               : "libcurl did not run it",
                           rd->pool);
        }
    }
}

/* Until the deadline, look for what the lease holders fetched. */
static void wait_for_leases(round_t *rd)
{
    apr_array_header_t *waiting = rd->waiting;
    int i;

    while (waiting->nelts > 0 && !stopping(rd->reg) &&
           staple_reg_now(rd->reg) + apr_time_from_msec(200) < rd->deadline) {
        apr_sleep(apr_time_from_msec(200));
        for (i = 0; i < waiting->nelts; i++) {
            staple_item_t *it = APR_ARRAY_IDX(waiting, i, staple_item_t *);
            if (staple_reg_adopt(rd->reg, it, staple_reg_now(rd->reg), rd->pool)) {
                APR_ARRAY_IDX(waiting, i, staple_item_t *) =
                    APR_ARRAY_IDX(waiting, waiting->nelts - 1, staple_item_t *);
                waiting->nelts--;
                i--;
            }
        }
    }
}

/* Temporary files in StapleStore older than this are left over. */
#define STAPLE_STORE_TMP_AGE apr_time_from_sec(600)

/* A response put into StapleStore by another process is seen within this
 * (offline delivery). */
#define STAPLE_STORE_SCAN apr_time_from_sec(50)

/* Write the response held back into StapleStore over an older file, or
 * remove the file when the local cache no longer has it: a restart must
 * not begin with the older one. */
static void store_restore(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                          apr_pool_t *p)
{
    staple_resp_info_t info;
    staple_resp_t held;
    char why[256];

    if (staple_reg_cache_load(reg, &reg->local, it, now, &held.der, &held.len,
                              &held.fetched_at, &held.info, why, sizeof(why),
                              p) == APR_SUCCESS) {
        staple_reg_held(&reg->slots[it->index], &info);
        if (staple_resp_compare(&info, &held.info) == STAPLE_FRESH_SAME) {
            staple_reg_store_save(reg, it, held.der, held.len, p);
            free(held.der);
            return;
        }
        free(held.der);
    }
    /* the local cache lost it: the older file goes, the next fetch writes
     * a new one */
    staple_store_remove(reg->opts.store, it->cert->id_hex, p);
}

/*
 * Responses dropped into StapleStore by another process (copied from a
 * host that reaches the CA): a file whose time changed since this server
 * wrote or saw it is read, verified, and stapled when newer than the one
 * held. Files that do not pass are reported, and left alone.
 */
static void scan_store(staple_reg_t *reg, apr_time_t now, apr_pool_t *p)
{
    int i;
    int swept;

    /* what a process killed in the middle of a save left behind */
    swept = staple_store_sweep(reg->opts.store, apr_time_now() - STAPLE_STORE_TMP_AGE);
    if (swept > 0) {
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "StapleStore %s: removed %d temporary file(s) left by a process "
                       "that ended while saving",
                       reg->opts.store, swept);
    }

    for (i = 0; i < reg->items->nelts; i++) {
        staple_item_t *it = APR_ARRAY_IDX(reg->items, i, staple_item_t *);
        staple_slot_t *sl = &reg->slots[i];
        staple_resp_info_t held;
        apr_time_t mtime;
        staple_resp_t st;
        apr_status_t rv;

        if (it->in_flight) {
            continue;
        }
        rv = staple_store_mtime(reg->opts.store, it->cert->id_hex, &mtime, p);
        if ((rv != APR_SUCCESS && rv != APR_EINVAL) || mtime == sl->store_mtime) {
            continue;
        }
        sl->store_mtime = mtime;
        if (rv == APR_EINVAL) {
            /* not a regular file, not opened: said when it appears or
             * changes, at most once a scan */
            store_unreadable(reg, it, rv, 0, p);
            continue;
        }
        if (sl->this_update == 0) {
            /* nothing held: the look at the store and the shared cache of
             * a start decides, at once rather than at the next retry */
            staple_reg_adopt(reg, it, now, p);
            continue;
        }
        if (!staple_reg_store_read(reg, it, now, &st, 0, p)) {
            continue;
        }
        staple_reg_held(sl, &held);
        if (staple_resp_compare(&held, &st.info) != STAPLE_FRESH_NEWER) {
            staple_reg_log(reg, STAPLE_LOG_INFO,
                           "OCSP for %s: the response put into StapleStore (%s) is not "
                           "newer than the one held (%s): kept the one held, which "
                           "replaces the file",
                           it->cert->subject, staple_reg_resp_times(p, &st.info),
                           staple_reg_resp_times(p, &held));
            store_restore(reg, it, now, p);
            continue;
        }
        staple_reg_publish(reg, it, st.der, st.len, now, &st.info, !reg->node_local, p);
        if (reg->node_local) {
            staple_reg_share_unless_newer(reg, it, &st, now, p);
        }
        sl->failures = 0;
        sl->due = staple_refresh_due(&reg->opts.timing, now, st.info.this_update,
                                     sl->valid_until, staple_reg_jitter(reg));
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "OCSP for %s (serial %s): a newer %s response was put into "
                       "StapleStore (%s): stapled, valid for %s",
                       it->cert->subject, it->cert->serial,
                       staple_cert_status_name(st.info.cert_status),
                       staple_reg_resp_times(p, &st.info),
                       staple_fmt_duration(p, sl->valid_until - now));
    }
}

static apr_time_t next_due(const staple_reg_t *reg)
{
    apr_time_t next = staple_reg_now(reg) + STAPLE_IDLE_MAX;

    if (reg->opts.store && reg->next_store_scan < next) {
        next = reg->next_store_scan;
    }
    int i;

    for (i = 0; i < reg->items->nelts; i++) {
        if (reg->slots[i].due < next) {
            next = reg->slots[i].due;
        }
    }
    return next;
}

apr_time_t staple_reg_refresh(staple_reg_t *reg, apr_time_t deadline, int keep_adding,
                              apr_pool_t *p)
{
    apr_time_t now = staple_reg_now(reg);
    apr_array_header_t *fetches =
        apr_array_make(p, reg->items->nelts, sizeof(staple_fetch_t *));
    staple_fetch_run_fn *run =
        reg->opts.fetch_run ? reg->opts.fetch_run : staple_fetch_run;
    round_t rd = {0};
    apr_status_t rv;

    rd.reg = reg;
    rd.pool = p;
    rd.keep_adding = keep_adding;
    rd.waiting = apr_array_make(p, 4, sizeof(staple_item_t *));
    rd.claimed = apr_array_make(p, 4, sizeof(staple_item_t *));
    rd.retry = apr_array_make(p, 4, sizeof(staple_fetch_t *));
    rd.add_until = now + STAPLE_ROUND_MAX;
    rd.deadline = deadline;
    reg->shared_off = 0;
    reg->shared_budget = reg->node_local ? STAPLE_SHARED_BUDGET_MAX : 0;
    reg->startup_round = deadline != 0;
    if (deadline && reg->node_local) {
        if (reg->shared_budget > (deadline - now) / 4) {
            reg->shared_budget = (deadline - now) / 4;
        }
        reg->shared_off = !staple_reg_probe_shared(reg, reg->shared_budget, p);
    }
    if (reg->opts.store && !deadline && now >= reg->next_store_scan) {
        reg->next_store_scan = now + STAPLE_STORE_SCAN;
        scan_store(reg, now, p);
    }
    collect_due(&rd, fetches, now);
    confirm_claims(&rd, fetches, 1);
    if (fetches->nelts == 0 && rd.waiting->nelts == 0) {
        staple_reg_resolve_responders(reg, 0);
        return next_due(reg);
    }
    staple_reg_log(reg, STAPLE_LOG_DEBUG, "fetching %d OCSP response(s)", fetches->nelts);
    rv = run(fetches, &reg->opts.fetch, deadline, on_fetched, more_due, &rd, p);
    drop_claims(&rd);
    settle(&rd, rv);
    if (rd.deferred > 0) {
        staple_reg_log(reg, STAPLE_LOG_INFO,
                       "%d OCSP fetch(es) did not finish before StapleStartupTimeout: "
                       "the background refresher does them",
                       rd.deferred);
    }
    staple_reg_resolve_responders(reg, deadline);
    wait_for_leases(&rd);
    return next_due(reg);
}
