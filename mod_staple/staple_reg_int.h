/*
 * Inside the registry: shared by staple_reg.c (certificates, handshakes,
 * events, snapshots) and staple_reg_refresh.c (fetch rounds). Nothing
 * outside the registry includes this.
 */
#ifndef STAPLE_REG_INT_H
#define STAPLE_REG_INT_H

#include <apr_hash.h>
#include <apr_thread_rwlock.h>

#include "staple_reg.h"

#define STAPLE_ERROR_LEN 240

/*
 * Shared memory: made by httpd's parent before the children exist, so every
 * process of the server sees the same bytes.
 *
 *   +----------------+--------+-----+----------+---------+-----+-----------+
 *   | staple_stats_t | slot 0 | ... | slot n-1 | rslot 0 | ... | rslot m-1 |
 *   +----------------+--------+-----+----------+---------+-----+-----------+
 *   ^ shm             ^ shm + APR_ALIGN_DEFAULT(sizeof(staple_stats_t))
 *                                               ^ APR_ALIGN_DEFAULT after the slots
 *
 * One staple_slot_t per claimed certificate, in the order of reg->items,
 * then one staple_rslot_t per responder URL, in the order of
 * reg->responders. Who writes and who reads each field:
 *
 *   F  the process fetching: first the startup child, then the refresher
 *      (a watchdog singleton, in one child at a time). Only one of them runs
 *      at a time, so F's fields are written with plain stores.
 *   H  handshakes, in every process: atomic increments only.
 *   S  the status page, in any process: plain reads; a value may be one
 *      refresh old, never torn beyond one field.
 */
typedef struct {
    apr_uint32_t outcomes[STAPLE_OUTCOME_COUNT];     /* F atomic; S */
    apr_uint32_t duration_hist[STAPLE_HIST_BUCKETS]; /* F atomic; S */
    apr_uint64_t duration_sum_us;                    /* F; S */
    apr_uint64_t relay[STAPLE_RELAY_COUNT];          /* R atomic: relay answers; S */
} staple_stats_t;

#define STAPLE_ADDR_LEN 200

/* A responder URL's state (R: the status handler, any process). */
typedef struct {
    apr_uint64_t successes, failures;  /* F: fetches by outcome; S */
    apr_uint32_t consecutive;          /* F: failures since the last success; S */
    apr_uint32_t post_only;            /* F: it refused a GET, POST from now on; F; S */
    apr_time_t last_used_at;           /* F: the last fetch from it; S */
    apr_time_t last_ok_at;             /* F; S */
    apr_time_t last_error_at;          /* F; S */
    char last_error[STAPLE_ERROR_LEN]; /* F; S */
    apr_uint32_t clock_known;          /* F: clock_offset was measured; S */
    apr_interval_time_t clock_offset;  /* F: local clock minus the responder's; S */
    apr_time_t clock_warned_at;        /* F: the last warning about it */
    apr_time_t resolved_at;            /* F: when addresses was resolved */
    char addresses[STAPLE_ADDR_LEN];   /* F: its host's addresses, comma-separated; S */
} staple_rslot_t;

typedef struct staple_resolve_t staple_resolve_t;

/* A responder URL, shared by the certificates that name it. */
typedef struct {
    const char *url;
    const char *url_shown; /* without a password, for people */
    const char *host;
    unsigned int port;
    int index; /* into reg->responders and the responder slots */
} staple_responder_t;

typedef struct {
    apr_uint32_t gen;                  /* F atomic, after a new response is in the
                                          local cache; H compares with its copy's */
    apr_uint64_t stapled;              /* H atomic; S */
    apr_uint64_t unstapled;            /* H atomic; S */
    apr_uint32_t failures;             /* F: consecutive failed fetches; S */
    apr_time_t due;                    /* F: next fetch, 0: look at once; S */
    apr_time_t valid_until;            /* F: until when the held response may be stapled:
                                          nextUpdate, or thisUpdate + StapleResponseMaxAge
                                          if sooner; 0: none held; S */
    apr_time_t next_update;            /* F: nextUpdate of the held response; S */
    apr_time_t fetched_at;             /* F: when the held response was fetched; S */
    apr_time_t this_update;            /* F: of the held response; H reads with
                                          produced_at to refuse older cache entries; S */
    apr_time_t produced_at;            /* F: producedAt of the held response; H; S */
    int cert_status;                   /* F: V_OCSP_CERTSTATUS_* of it, -1: none; H; S */
    int reason;                        /* F: its revocation reason, -1: none; H */
    apr_time_t last_attempt;           /* F: start of the last fetch; S */
    apr_interval_time_t last_duration; /* F: the responder's response time; S */
    apr_time_t last_error_at;          /* F: 0 until a fetch failed; S */
    char last_error[STAPLE_ERROR_LEN]; /* F: why the last fetch failed; S */
    apr_uint32_t url_pref;             /* F: its URL (index) that answered last; S */
    apr_uint32_t refresh_asked;        /* R: fetch now, whatever the schedule; F */
    apr_uint64_t refresh_asked_at;     /* R atomic: when an operator last asked */
    apr_time_t store_mtime;            /* F: the StapleStore file as last seen */
    apr_uint32_t events_pending;       /* F: a bit per staple_event_e */
    apr_time_t event_at[STAPLE_EVENT_COUNT]; /* F: last run, for rate limiting */
} staple_slot_t;

/* A certificate, in the pool of the configuration. The process copy is
 * this process's own and guarded by lock. */
typedef struct {
    staple_cert_t *cert;
    apr_array_header_t *urls;   /* staple_responder_t *: its responders, in order */
    apr_array_header_t *vhosts; /* const char *: servers using it */
    int claimed;
    int index; /* into reg->items and the slots, when claimed */

    apr_thread_rwlock_t *lock;
    unsigned char *der; /* malloc'ed: the process copy */
    apr_size_t der_len;
    apr_time_t next_update;       /* until when the copy may be stapled */
    staple_resp_info_t copy_info; /* what the copy says */
    apr_uint32_t gen_seen;
    apr_time_t checked_at;
    apr_time_t warned_at; /* last warning about a cache entry, rate limit */

    int in_flight;               /* being fetched by this process */
    int try_k;                   /* the URL (index into urls) being tried */
    int tried;                   /* URLs tried in this fetch */
    int window_warned;           /* StapleRenewWindow is longer than its validity: said */
    apr_time_t lease_wait_since; /* another server's lease held off its fetch */
    int lease_lost;              /* claims lost to another server's in a row */
    apr_time_t claimed_at;       /* its lease put, not yet read back */
} staple_item_t;

struct staple_reg_t {
    apr_pool_t *pool;
    staple_reg_opts_t opts;
    const char *proxy_shown;   /* StapleProxy without its password, or NULL */
    apr_hash_t *by_id;         /* id -> staple_item_t, claimed or not */
    apr_hash_t *primed;        /* every id mod_ssl primed */
    staple_issuers_t *issuers; /* of the claimed certificates */
    apr_array_header_t *items; /* staple_item_t *, claimed ones only */
    staple_cache_ops_t shared; /* StapleCache */
    staple_cache_ops_t local;  /* what handshakes read */
    int node_local;            /* local is not shared */
    /* A StapleCache that answers more slowly than this is left alone for
     * the rest of the round (shared_off): at startup it must not keep the
     * first responses from the handshakes, later it must not hold up the
     * renewals of the other certificates. */
    apr_interval_time_t shared_budget; /* 0: no limit */
    int shared_off;
    int startup_round;                  /* the round has a deadline */
    apr_time_t next_store_scan;         /* of this process (the refresher) */
    apr_array_header_t *responders;     /* staple_responder_t * */
    struct staple_resolve_t *resolving; /* the resolver thread's, or NULL */
    apr_hash_t *responder_by_url;
    apr_hash_t *by_certid; /* CertID (staple_reg_relay.c's key) -> staple_item_t */
    staple_stats_t *stats;
    staple_slot_t *slots;
    staple_rslot_t *rslots;
};

/* The process copy of a certificate's response to copy, with its times;
 * 1 when a valid one was there (NULL went to copy otherwise). */
int staple_reg_copy(staple_reg_t *reg, staple_item_t *it, staple_copy_fn *copy,
                    void *baton, apr_time_t *this_update, apr_time_t *next_update,
                    apr_pool_t *p);

/* The responder of a URL, made on first use (staple_reg_responders.c). */
staple_responder_t *staple_reg_responder(staple_reg_t *reg, const char *url);

/* Ask this responder with POST (StapleRequestMethod, or it refused GET). */
int staple_reg_use_post(const staple_reg_t *reg, const staple_responder_t *r);

/* 1 when a GET fetch was refused (HTTP 400, 404, 405) by a responder that
 * is now asked with POST (StapleRequestMethod auto): try again at once. */
int staple_reg_get_refused(staple_reg_t *reg, const staple_responder_t *r,
                           const staple_fetch_t *f);

/* What a fetch from a responder came to. */
void staple_reg_responder_failed(staple_reg_t *reg, const staple_responder_t *r,
                                 apr_time_t now, const char *why);
void staple_reg_responder_ok(staple_reg_t *reg, const staple_responder_t *r,
                             apr_time_t now);

/* The local clock against the responder's, from an HTTP answer (info: of
 * a verified response, or NULL); a warning when far off. */
void staple_reg_check_clock(staple_reg_t *reg, const staple_responder_t *r,
                            const staple_fetch_t *f, const staple_resp_info_t *info,
                            apr_time_t now);

/* Resolve the hosts of the responders in use, for the status page, in a
 * thread of their own; a round with a deadline waits for it until then.
 * What was resolved reaches shared memory at this call or a later one. */
void staple_reg_resolve_responders(staple_reg_t *reg, apr_time_t deadline);

/* The process goes: what the resolver thread does is not wanted any more. */
void staple_reg_resolve_end(staple_reg_t *reg);

/* The responders of a snapshot. */
void staple_reg_snap_responders(staple_reg_t *reg, staple_snapshot_t *snap,
                                apr_pool_t *p);

/* Index a claimed certificate by its CertIDs, for the relay. */
void staple_reg_index_certids(staple_reg_t *reg, staple_item_t *it);

/* The responder of a certificate's URL k, and the one it is using. */
#define STAPLE_URL(it, k) APR_ARRAY_IDX((it)->urls, (k), staple_responder_t *)
const staple_responder_t *staple_reg_url_in_use(const staple_reg_t *reg,
                                                const staple_item_t *it);
apr_uint32_t staple_reg_url_in_use_index(const staple_reg_t *reg,
                                         const staple_item_t *it);

/* The registry's time and jitter. */
apr_time_t staple_reg_now(const staple_reg_t *reg);
double staple_reg_jitter(const staple_reg_t *reg);

/* Until when a response that passed the checks may be stapled. */
apr_time_t staple_reg_usable_until(const staple_reg_t *reg,
                                   const staple_resp_info_t *info);

/* The response a slot holds, as staple_resp_compare wants it. */
void staple_reg_held(const staple_slot_t *sl, staple_resp_info_t *held);

/* A log line, formatted only when its level is written. */
void staple_reg_log(const staple_reg_t *reg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A cache's get and put, for every cache access of the registry: StapleCache
 * is skipped while shared_off, and timed against shared_budget. */
apr_status_t staple_reg_cache_get(staple_reg_t *reg, const staple_cache_ops_t *c,
                                  const unsigned char *key, unsigned int key_len,
                                  unsigned char *buf, unsigned int *len, apr_pool_t *p);
apr_status_t staple_reg_cache_put(staple_reg_t *reg, const staple_cache_ops_t *c,
                                  const unsigned char *key, unsigned int key_len,
                                  apr_time_t expiry, const unsigned char *data,
                                  unsigned int len, apr_pool_t *p);

/* Put an entry into the shared cache only (StapleCache). */
apr_status_t staple_reg_share(staple_reg_t *reg, staple_item_t *it,
                              const unsigned char *der, apr_size_t der_len,
                              apr_time_t fetched_at, const staple_resp_info_t *info,
                              apr_pool_t *p);

/*
 * Make a verified response the one every process of this server staples:
 * into the local cache, the shared one (to_shared), the slot, and announce
 * it to the processes. Returns the status of the StapleCache write.
 */
apr_status_t staple_reg_publish(staple_reg_t *reg, staple_item_t *it,
                                const unsigned char *der, apr_size_t der_len,
                                apr_time_t fetched_at, const staple_resp_info_t *info,
                                int to_shared, apr_pool_t *p);

/*
 * Read the certificate's entry from a cache and verify it: what comes from
 * a shared cache may have been written by anyone. APR_SUCCESS with a
 * malloc'ed DER, APR_NOTFOUND when there is none, APR_EINVAL when it was
 * rejected (why says why).
 */
apr_status_t staple_reg_cache_load(staple_reg_t *reg, const staple_cache_ops_t *c,
                                   staple_item_t *it, apr_time_t now,
                                   unsigned char **pder, apr_size_t *pder_len,
                                   apr_time_t *fetched_at, staple_resp_info_t *info,
                                   char *why, apr_size_t whylen, apr_pool_t *p);

/* A verified response with the time it was fetched. */
typedef struct {
    unsigned char *der;
    apr_size_t len;
    apr_time_t fetched_at;
    staple_resp_info_t info;
} staple_resp_t;

/* "producedAt ..., thisUpdate ..." of a response, for log lines. */
const char *staple_reg_resp_times(apr_pool_t *p, const staple_resp_info_t *info);

/* Remember the time of the certificate's StapleStore file (a regular one),
 * so that the store scan passes it over. */
void staple_reg_store_seen(staple_reg_t *reg, staple_item_t *it, apr_pool_t *p);

/* The certificate's file in StapleStore: keep a response there, or read
 * and verify it (removing one expired or rejected when remove_bad). */
void staple_reg_store_save(staple_reg_t *reg, staple_item_t *it, const unsigned char *der,
                           apr_size_t len, apr_pool_t *p);
int staple_reg_store_read(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                          staple_resp_t *r, int remove_bad, apr_pool_t *p);

/* Before fetching, what StapleCache (and at the first look, StapleStore)
 * holds: 1 when the certificate needs no fetch now (staple_reg_cache.c). */
int staple_reg_adopt(staple_reg_t *reg, staple_item_t *it, apr_time_t now, apr_pool_t *p);

/* Put a response into StapleCache unless it holds the same or a newer one;
 * 1 when it held a newer one, which is then the one held (and stored). */
int staple_reg_share_unless_newer(staple_reg_t *reg, staple_item_t *it,
                                  const staple_resp_t *r, apr_time_t now, apr_pool_t *p);

/* The cluster's fetch lease, taken when take. */
typedef enum {
    STAPLE_LEASE_HELD,   /* another server holds it: wait for its response */
    STAPLE_LEASE_FREE,   /* fetch (nobody to coordinate with, or not taken) */
    STAPLE_LEASE_CLAIMED /* put: confirm it after STAPLE_LEASE_CONFIRM */
} staple_lease_e;
staple_lease_e staple_reg_take_lease(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                                     int take, apr_pool_t *p);

/* Two servers that found no lease at once both put theirs, and the last
 * one put stands: read back this long after the put, only its holder
 * fetches. */
#define STAPLE_LEASE_CONFIRM apr_time_from_msec(250)

/* 1 when the lease claimed is still this server's (or unreadable): fetch;
 * 0 when another server's replaced it. */
int staple_reg_confirm_lease(staple_reg_t *reg, staple_item_t *it, apr_time_t now,
                             apr_pool_t *p);

/* Whether StapleCache answers within budget, asked from a thread. */
int staple_reg_probe_shared(staple_reg_t *reg, apr_interval_time_t budget, apr_pool_t *p);

/* How long a round lets StapleCache take to answer. */
#define STAPLE_SHARED_BUDGET_MAX apr_time_from_sec(1)

#endif /* STAPLE_REG_INT_H */
