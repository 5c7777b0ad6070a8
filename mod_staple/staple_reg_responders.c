/*
 * The registry's responders: one record per responder URL, shared by the
 * certificates that name it, with what the fetches learnt about it (its
 * failures, whether it refuses GET, its clock, its addresses), kept in
 * shared memory for the status page.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <apr_atomic.h>
#include <apr_network_io.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "staple_reg_int.h"

/* A clock farther off than this from a responder's is reported (or half of
 * StapleResponseTimeSkew, whichever is smaller, but at least the second of
 * resolution of an HTTP Date), at most once an hour per responder. */
#define STAPLE_CLOCK_WARN_MAX      apr_time_from_sec(60)
#define STAPLE_CLOCK_WARN_MIN      apr_time_from_sec(2)
#define STAPLE_CLOCK_WARN_INTERVAL apr_time_from_sec(3600)

/* A responder's host is resolved again for the status page at most this
 * often. */
#define STAPLE_RESOLVE_INTERVAL apr_time_from_sec(600)

staple_responder_t *staple_reg_responder(staple_reg_t *reg, const char *url)
{
    staple_responder_t *r = apr_hash_get(reg->responder_by_url, url, APR_HASH_KEY_STRING);
    apr_uri_t uri;

    if (r) {
        return r;
    }
    r = apr_pcalloc(reg->pool, sizeof(*r));
    r->url = apr_pstrdup(reg->pool, url);
    r->url_shown = staple_url_shown(reg->pool, r->url);
    if (apr_uri_parse(reg->pool, r->url, &uri) == APR_SUCCESS && uri.hostname) {
        r->host = uri.hostname;
        r->port = uri.port ? uri.port
                           : apr_uri_port_of_scheme(uri.scheme ? uri.scheme : "http");
    } else {
        r->host = "";
    }
    r->index = reg->responders->nelts;
    APR_ARRAY_PUSH(reg->responders, staple_responder_t *) = r;
    apr_hash_set(reg->responder_by_url, r->url, APR_HASH_KEY_STRING, r);
    return r;
}

apr_uint32_t staple_reg_url_in_use_index(const staple_reg_t *reg, const staple_item_t *it)
{
    apr_uint32_t k = reg->slots ? reg->slots[it->index].url_pref : 0;

    return k < (apr_uint32_t)it->urls->nelts ? k : 0;
}

const staple_responder_t *staple_reg_url_in_use(const staple_reg_t *reg,
                                                const staple_item_t *it)
{
    return STAPLE_URL(it, (int)staple_reg_url_in_use_index(reg, it));
}

int staple_reg_use_post(const staple_reg_t *reg, const staple_responder_t *r)
{
    return reg->opts.request_method == STAPLE_METHOD_POST ||
           (reg->opts.request_method == STAPLE_METHOD_AUTO &&
            reg->rslots[r->index].post_only);
}

int staple_reg_get_refused(staple_reg_t *reg, const staple_responder_t *r,
                           const staple_fetch_t *f)
{
    staple_rslot_t *rs = &reg->rslots[r->index];

    if (reg->opts.request_method != STAPLE_METHOD_AUTO || f->post || rs->post_only ||
        !f->method || strcmp(f->method, "GET") ||
        (f->http_status != 400 && f->http_status != 404 && f->http_status != 405)) {
        return 0;
    }
    rs->post_only = 1;
    staple_reg_log(reg, STAPLE_LOG_INFO,
                   "OCSP responder %s answers GET with HTTP status %ld: asking it with "
                   "POST from now on",
                   r->url_shown, f->http_status);
    return 1;
}

void staple_reg_responder_failed(staple_reg_t *reg, const staple_responder_t *r,
                                 apr_time_t now, const char *why)
{
    staple_rslot_t *rs = &reg->rslots[r->index];

    rs->failures++;
    rs->consecutive++;
    rs->last_used_at = now;
    rs->last_error_at = now;
    apr_cpystrn(rs->last_error, why, sizeof(rs->last_error));
}

/*
 * The clock, from any HTTP answer: its Date header says the responder's
 * time (to the second); the producedAt of a verified response (info), when
 * later than the local time, says the local clock is behind (an earlier one
 * may be a response made in advance and says nothing). A clock far off
 * makes responses fail as not yet valid: the warning says why.
 */
void staple_reg_check_clock(staple_reg_t *reg, const staple_responder_t *r,
                            const staple_fetch_t *f, const staple_resp_info_t *info,
                            apr_time_t now)
{
    staple_rslot_t *rs = &reg->rslots[r->index];
    apr_interval_time_t offset, limit = reg->opts.check.time_skew / 2, off;
    int known = 0;

    if (f->http_date > 0) {
        offset = now - f->http_date;
        known = 1;
    }
    if (info && info->produced_at > now && (!known || now - info->produced_at < offset)) {
        offset = now - info->produced_at;
        known = 1;
    }
    if (!known) {
        return;
    }
    rs->clock_offset = offset;
    rs->clock_known = 1;
    if (limit > STAPLE_CLOCK_WARN_MAX) {
        limit = STAPLE_CLOCK_WARN_MAX;
    }
    if (limit < STAPLE_CLOCK_WARN_MIN) {
        limit = STAPLE_CLOCK_WARN_MIN;
    }
    off = offset < 0 ? -offset : offset;
    if (off <= limit ||
        (rs->clock_warned_at && now - rs->clock_warned_at < STAPLE_CLOCK_WARN_INTERVAL)) {
        return;
    }
    rs->clock_warned_at = now;
    staple_reg_log(reg, STAPLE_LOG_WARNING,
                   "the system clock is %" APR_TIME_T_FMT " s %s of responder %s: check "
                   "NTP (responses are judged by this clock; beyond "
                   "StapleResponseTimeSkew they are refused)",
                   apr_time_sec(off), offset < 0 ? "behind" : "ahead", r->url_shown);
}

void staple_reg_responder_ok(staple_reg_t *reg, const staple_responder_t *r,
                             apr_time_t now)
{
    staple_rslot_t *rs = &reg->rslots[r->index];

    rs->successes++;
    rs->consecutive = 0;
    rs->last_used_at = now;
    rs->last_ok_at = now;
}

/*
 * The host names are resolved by a thread of their own, into memory of its
 * own: a resolver that hangs must not hold up the refresher's renewals.
 * The refresher copies what it found into shared memory at a later round.
 */
typedef struct {
    int index; /* of the responder */
    char host[256];
    char addresses[STAPLE_ADDR_LEN];
} resolve_entry_t;

/* A job's state: the thread sets DONE, unless its owner went (GONE): then
 * the thread frees it. */
#define RESOLVE_RUNNING 0
#define RESOLVE_DONE    1
#define RESOLVE_GONE    2

struct staple_resolve_t {
    apr_uint32_t state;
    int n;
    resolve_entry_t e[];
};

/* Whether a comma-separated list holds this very address. */
static int list_has(const char *list, const char *ip)
{
    apr_size_t l = strlen(ip);
    const char *s;

    for (s = list; (s = strstr(s, ip)) != NULL; s += l) {
        if ((s == list || s[-1] == ',') && (s[l] == ',' || s[l] == '\0')) {
            return 1;
        }
    }
    return 0;
}

static void *resolve_thread(void *data)
{
    staple_resolve_t *job = data;
    int i;

    for (i = 0; i < job->n; i++) {
        resolve_entry_t *e = &job->e[i];
        struct addrinfo hints, *res = NULL, *ai;
        apr_size_t used = 0;

        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(e->host, NULL, &hints, &res) != 0) {
            continue;
        }
        for (ai = res; ai; ai = ai->ai_next) {
            char ip[INET6_ADDRSTRLEN];
            const void *a =
                ai->ai_family == AF_INET
                    ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                : ai->ai_family == AF_INET6
                    ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                    : NULL;
            apr_size_t l;

            if (a == NULL || inet_ntop(ai->ai_family, a, ip, sizeof(ip)) == NULL ||
                list_has(e->addresses, ip)) {
                continue;
            }
            l = strlen(ip);
            if (used + l + 2 > sizeof(e->addresses)) {
                break;
            }
            if (used) {
                e->addresses[used++] = ',';
            }
            memcpy(e->addresses + used, ip, l + 1);
            used += l;
        }
        freeaddrinfo(res);
    }
    if (apr_atomic_cas32(&job->state, RESOLVE_DONE, RESOLVE_RUNNING) == RESOLVE_GONE) {
        free(job);
    }
    return NULL;
}

void staple_reg_resolve_end(staple_reg_t *reg)
{
    staple_resolve_t *job = reg->resolving;

    reg->resolving = NULL;
    if (job &&
        apr_atomic_cas32(&job->state, RESOLVE_GONE, RESOLVE_RUNNING) == RESOLVE_DONE) {
        free(job);
    }
}

/* Copy what the resolver thread found, once it is done. */
static void resolve_collect(staple_reg_t *reg, apr_time_t now)
{
    staple_resolve_t *job = reg->resolving;
    int i;

    if (job == NULL || apr_atomic_read32(&job->state) != RESOLVE_DONE) {
        return;
    }
    for (i = 0; i < job->n; i++) {
        staple_rslot_t *rs = &reg->rslots[job->e[i].index];
        apr_cpystrn(rs->addresses, job->e[i].addresses, sizeof(rs->addresses));
        rs->resolved_at = now;
    }
    free(job);
    reg->resolving = NULL;
}

void staple_reg_resolve_responders(staple_reg_t *reg, apr_time_t deadline)
{
    apr_time_t now = staple_reg_now(reg);
    staple_resolve_t *job;
    pthread_attr_t attr;
    pthread_t t;
    int i, n = 0, started;

    resolve_collect(reg, now);
    if (reg->resolving) {
        return; /* still at it */
    }
    job = calloc(1, sizeof(*job) +
                        sizeof(resolve_entry_t) * (apr_size_t)reg->responders->nelts);
    if (job == NULL) {
        return;
    }
    for (i = 0; i < reg->responders->nelts; i++) {
        staple_responder_t *r = APR_ARRAY_IDX(reg->responders, i, staple_responder_t *);
        staple_rslot_t *rs = &reg->rslots[i];

        if (rs->last_used_at == 0 || !*r->host ||
            strlen(r->host) >= sizeof(job->e[n].host) ||
            (rs->resolved_at && now - rs->resolved_at < STAPLE_RESOLVE_INTERVAL)) {
            continue;
        }
        job->e[n].index = i;
        memcpy(job->e[n].host, r->host, strlen(r->host) + 1);
        n++;
    }
    job->n = n;
    started = n > 0 && pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&t, &attr, resolve_thread, job) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        free(job);
        return;
    }
    reg->resolving = job;
    /* a startup round waits for it until its deadline: the startup child
     * ends with the round */
    if (deadline > now) {
        apr_time_t until = apr_time_now() + (deadline - now);
        while (apr_atomic_read32(&job->state) != RESOLVE_DONE && apr_time_now() < until) {
            apr_sleep(apr_time_from_msec(5));
        }
        resolve_collect(reg, now);
    }
}

void staple_reg_snap_responders(staple_reg_t *reg, staple_snapshot_t *snap, apr_pool_t *p)
{
    int i;

    snap->responder_count = reg->responders->nelts;
    snap->responders = apr_pcalloc(p, sizeof(*snap->responders) *
                                          (apr_size_t)(snap->responder_count + 1));
    for (i = 0; i < snap->responder_count; i++) {
        const staple_responder_t *r =
            APR_ARRAY_IDX(reg->responders, i, staple_responder_t *);
        const staple_rslot_t *rs = &reg->rslots[i];
        staple_responder_snap_t *o = &snap->responders[i];

        o->url = r->url_shown;
        o->host = r->host;
        o->port = r->port;
        o->addresses = apr_pstrdup(p, rs->addresses);
        o->via_proxy = reg->opts.fetch.proxy != NULL;
        o->successes = rs->successes;
        o->failures = rs->failures;
        o->consecutive = rs->consecutive;
        o->method = staple_reg_use_post(reg, r) ? "POST" : "GET";
        o->last_used_at = rs->last_used_at;
        o->last_ok_at = rs->last_ok_at;
        o->last_error_at = rs->last_error_at;
        o->last_error = rs->last_error_at ? apr_pstrdup(p, rs->last_error) : NULL;
        o->clock.known = rs->clock_known;
        o->clock.offset = rs->clock_offset;
    }
}
