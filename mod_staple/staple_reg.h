/*
 * The registry: every certificate mod_staple staples, and every decision
 * about its OCSP response — what a handshake gets, when to fetch, what
 * replaces what, when to adopt what another server put into the shared
 * cache, who holds the fetch lease, which events are due.
 *
 * Needs only APR, OpenSSL and libcurl. The caller (httpd's glue, or a unit
 * test) hands it caches as small function tables, a clock, a source of
 * randomness and a log function; the registry never sees httpd.
 *
 * Life cycle:
 *   staple_reg_make          once per configuration (pconf)
 *   staple_reg_add           per certificate mod_ssl primes
 *   staple_reg_shm_size      bytes of shared memory the slots need
 *   staple_reg_attach        the shared memory, and the caches
 *   staple_reg_refresh       in the startup child and in the refresher
 *   staple_reg_child_init    in every process that answers handshakes
 *   staple_reg_get_resp      per handshake
 *   staple_reg_take_events   after each refresh round
 *   staple_reg_snapshot      for the status page
 */
#ifndef STAPLE_REG_H
#define STAPLE_REG_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include <openssl/x509.h>

#include "staple_fetch.h"
#include "staple_ocsp.h"
#include "staple_timing.h"

typedef struct staple_reg_t staple_reg_t;

/** Log levels, as syslog and httpd number them. */
#define STAPLE_LOG_CRIT    2
#define STAPLE_LOG_ERR     3
#define STAPLE_LOG_WARNING 4
#define STAPLE_LOG_INFO    6
#define STAPLE_LOG_DEBUG   7

/** Writes one line to the server's log. */
typedef void staple_log_fn(void *baton, int level, const char *msg);

/**
 * A cache of responses, reached through two calls. A get fills buf (of
 * *len bytes) and sets *len; anything but APR_SUCCESS is a miss. Keys are
 * bytes, not strings.
 */
typedef struct {
    const char *name; /**< for log lines, e.g. "StapleCache shmcb:..." */
    apr_status_t (*get)(void *baton, const unsigned char *key, unsigned int key_len,
                        unsigned char *buf, unsigned int *len, apr_pool_t *p);
    apr_status_t (*put)(void *baton, const unsigned char *key, unsigned int key_len,
                        apr_time_t expiry, const unsigned char *data, unsigned int len,
                        apr_pool_t *p);
    void *baton;
} staple_cache_ops_t;

/** StapleRequestMethod: GET when the request fits (RFC 5019), and POST
 * tried at once when a responder refuses GET (auto); GET when it fits and
 * never POST in its place (get); always POST (post). */
#define STAPLE_METHOD_AUTO 0
#define STAPLE_METHOD_GET  1
#define STAPLE_METHOD_POST 2

/** Relay answers (SetHandler staple-responder), counted. */
typedef enum {
    STAPLE_RELAY_SUCCESSFUL = 0, /**< the response held, as the CA signed it */
    STAPLE_RELAY_UNAUTHORIZED,   /**< no valid response held for that certificate */
    STAPLE_RELAY_MALFORMED,      /**< not one OCSP request for one certificate */
    STAPLE_RELAY_COUNT
} staple_relay_e;

/** A pause of the refresher's thread. */
typedef void staple_sleep_fn(apr_interval_time_t t);

/** What the registry is told once, at make. */
typedef struct {
    staple_check_params_t check;    /**< StapleResponseTimeSkew, StapleResponseMaxAge */
    staple_timing_t timing;         /**< renewal and retry policy */
    staple_fetch_opts_t fetch;      /**< timeout, parallelism, proxy, user agent */
    STACK_OF(X509) *trusted;        /**< StapleTrustedCertificate, or NULL */
    const char *store;              /**< StapleStore directory, or NULL: none */
    const char *node_id;            /**< names this server in cluster leases */
    apr_time_t (*clock)(void);      /**< the time; NULL: apr_time_now */
    staple_sleep_fn *sleep;         /**< a pause; NULL: apr_sleep */
    double (*random)(void);         /**< jitter in [0, 1); NULL: OpenSSL's RAND */
    staple_fetch_run_fn *fetch_run; /**< NULL: staple_fetch_run */
    int request_method;             /**< STAPLE_METHOD_* (StapleRequestMethod) */
    int (*stopping)(void);          /**< 1 when the process is shutting down */
    staple_log_fn *log;             /**< NULL: no log */
    void *log_baton;
    int log_level; /**< the most verbose level that is written */
} staple_reg_opts_t;

/**
 * A registry with no certificates yet. Its memory and the OpenSSL objects
 * it makes live in p.
 */
staple_reg_t *staple_reg_make(apr_pool_t *p, const staple_reg_opts_t *opts);

/** Remember an id that mod_ssl primed, whether or not it is claimed. */
void staple_reg_note_primed(staple_reg_t *reg, const unsigned char *id);

/** 1 when mod_ssl primed this id (claimed or not). */
int staple_reg_was_primed(const staple_reg_t *reg, const unsigned char *id);

/**
 * Claim a certificate for stapling, or say why not (logged: self-signed at
 * info, no responder URL at info, no issuer at warning).
 * @param id the SHA-1 of the certificate (STAPLE_ID_LEN bytes)
 * @param pem the certificate followed by its chain
 * @param vhost the server using it, for the status page
 * @param force_urls StapleForceURL of that server (const char *, tried in
 *        order), or NULL: every OCSP URI of the certificate's AIA
 * @return 1 when the registry staples it (also for one seen before), else 0
 */
int staple_reg_add(staple_reg_t *reg, const unsigned char *id, const char *pem,
                   const char *vhost, const apr_array_header_t *force_urls);

/**
 * Keep verified responses in this directory (NULL: nowhere), instead of the
 * StapleStore given at make; before staple_reg_attach.
 */
void staple_reg_set_store(staple_reg_t *reg, const char *dir);

/** Number of certificates the registry staples. */
int staple_reg_count(const staple_reg_t *reg);

/** Bytes of shared memory staple_reg_attach needs. */
apr_size_t staple_reg_shm_size(const staple_reg_t *reg);

/**
 * Use this shared memory for counters and per-certificate state, and these
 * caches: shared is StapleCache (may be shared by a cluster), local the copy
 * handshakes read (NULL: handshakes read shared).
 * @param fresh 1 to initialise the memory (once, in the parent)
 */
void staple_reg_attach(staple_reg_t *reg, void *shm, int fresh,
                       const staple_cache_ops_t *shared, const staple_cache_ops_t *local);

/** Per-process setup (the locks of the process copies). */
apr_status_t staple_reg_child_init(staple_reg_t *reg, apr_pool_t *pchild);

/** Hands a response to the TLS library: NULL, 0 for none. */
typedef void staple_copy_fn(const unsigned char *der, apr_size_t len, void *baton);

/** What staple_reg_get_resp did. */
typedef enum {
    STAPLE_RESP_NOT_OURS = 0, /**< not a certificate of this registry */
    STAPLE_RESP_STAPLED,      /**< a valid response went to copy */
    STAPLE_RESP_NONE          /**< ours, but no valid response: NULL went to copy */
} staple_resp_e;

/**
 * Answer a handshake: never waits on the network or the refresher. Reads
 * the process's copy, and the local cache when the copy is outdated.
 * @param p a pool for the call (the connection's)
 */
staple_resp_e staple_reg_get_resp(staple_reg_t *reg, const unsigned char *id,
                                  apr_size_t id_len, staple_copy_fn *copy, void *baton,
                                  apr_pool_t *p);

/**
 * The response held for a certificate, as a handshake would get it but not
 * counted as one (the status page's ?der).
 */
staple_resp_e staple_reg_response(staple_reg_t *reg, const unsigned char *id,
                                  staple_copy_fn *copy, void *baton, apr_pool_t *p);

/** An operator's refresh of a certificate asked for less than this ago (in
 * any process of the server) is not scheduled again. */
#define STAPLE_REFRESH_MIN_INTERVAL apr_time_from_sec(5)

/** What staple_reg_request_refresh did with a certificate. */
typedef enum {
    STAPLE_REFRESH_NOT_ASKED = 0, /**< not the certificate asked for */
    STAPLE_REFRESH_SCHEDULED,     /**< the refresher fetches it now */
    STAPLE_REFRESH_TOO_RECENT     /**< asked for less than the interval ago: not again */
} staple_refresh_e;

/**
 * Have the refresher fetch now: one certificate (id), or all (NULL),
 * whatever the schedule and what the shared cache holds; but not one whose
 * refresh was asked for less than STAPLE_REFRESH_MIN_INTERVAL ago.
 * @param outcome NULL, or staple_reg_count() elements, in the order of the
 *        snapshot's certificates: what became of each
 * @return how many certificates were asked for, scheduled or too recent
 *         (0: the id is not stapled)
 */
int staple_reg_request_refresh(staple_reg_t *reg, const unsigned char *id,
                               staple_refresh_e *outcome);

/**
 * Answer an OCSP request as a relay (RFC 5019 profile): exactly one
 * certificate, matched by its SHA-1 or SHA-256 CertID against the
 * certificates stapled here, answered with the response held as the CA
 * signed it (through copy) when it is valid. Never fetches; the outcome is
 * counted for the status page.
 * @param this_update, next_update of the response given, for HTTP caching
 * @return STAPLE_RELAY_SUCCESSFUL (copy got the response), _UNAUTHORIZED or
 *         _MALFORMED (copy got nothing: answer with staple_relay_error_der)
 */
staple_relay_e staple_reg_relay(staple_reg_t *reg, const unsigned char *req,
                                apr_size_t len, staple_copy_fn *copy, void *baton,
                                apr_time_t *this_update, apr_time_t *next_update,
                                apr_pool_t *p);

/**
 * The OCSP request of a GET (RFC 5019: the URL-encoded base64 of the DER
 * request after the responder's URL): the path of the request URI as it
 * was sent, before any decoding. Linear in the path: one longer than 2048
 * characters is refused as it is; otherwise it is %-decoded once, and at
 * most 8 candidates are decoded as base64, the rests after its slashes
 * (the last first) that can be one: a multiple of 4 long, starting with
 * the 'M' of a DER SEQUENCE.
 * @return 1 and the DER, or 0 when no part of the path is one
 */
int staple_relay_get_request(apr_pool_t *p, const char *path, unsigned char **der,
                             apr_size_t *len);

/** The DER OCSPResponse carrying only the status of an unsuccessful relay
 * outcome (unauthorized, malformedRequest). */
const unsigned char *staple_relay_error_der(staple_relay_e outcome, apr_size_t *len);

/**
 * Fetch what is due: look at the store and the shared cache first, take the
 * cluster lease, fetch, verify, publish, record failures.
 * @param deadline no fetch runs past it (0: StapleResponderTimeout only);
 *        until it, wait for what other servers holding the lease fetch
 * @param keep_adding let certificates falling due during the round join it
 * @return when the next certificate is due (at most an hour away)
 */
apr_time_t staple_reg_refresh(staple_reg_t *reg, apr_time_t deadline, int keep_adding,
                              apr_pool_t *p);

/** Events for StapleEventCmd. */
typedef enum {
    STAPLE_EVENT_RENEWED = 0,
    STAPLE_EVENT_ERRORED,
    STAPLE_EVENT_REVOKED,
    STAPLE_EVENT_MISSING,
    STAPLE_EVENT_EXPIRING,
    STAPLE_EVENT_COUNT
} staple_event_e;

/** Name of an event, as passed to StapleEventCmd. */
const char *staple_event_name(staple_event_e ev);

/** An event that is due. */
typedef struct {
    staple_event_e event;
    const char *id_hex;
    const char *subject;
    const char *detail; /**< one line, for the program's last argument */
} staple_event_t;

/** At most one event per certificate and kind in this interval. */
#define STAPLE_EVENT_INTERVAL apr_time_from_sec(600)

/**
 * The events the last rounds left pending, at most one per certificate and
 * kind per STAPLE_EVENT_INTERVAL (the others are dropped, logged at debug).
 * @return staple_event_t elements, from p
 */
apr_array_header_t *staple_reg_take_events(staple_reg_t *reg, apr_pool_t *p);

/** Fetch outcomes: the check results, failures before any response, and
 * valid responses refused because they are older than the one held. */
#define STAPLE_OUTCOME_FETCH_ERROR STAPLE_CHECK_COUNT
#define STAPLE_OUTCOME_OLDER       (STAPLE_CHECK_COUNT + 1)
#define STAPLE_OUTCOME_UNREVOKED   (STAPLE_CHECK_COUNT + 2)
#define STAPLE_OUTCOME_COUNT       (STAPLE_CHECK_COUNT + 3)

/** Name of a relay outcome ("successful", "unauthorized", "malformed"). */
const char *staple_relay_name(staple_relay_e outcome);

/** Name of a fetch outcome, for the status page and metrics. */
const char *staple_outcome_name(int outcome);

/** Fetch duration histogram: upper bounds, the last one +Inf. */
#define STAPLE_HIST_BUCKETS 10

typedef struct {
    apr_interval_time_t ms; /**< upper bound in milliseconds; -1: +Inf */
    const char *le;         /**< the bound in seconds, as Prometheus writes it */
} staple_hist_bucket_t;

extern const staple_hist_bucket_t staple_hist_buckets[STAPLE_HIST_BUCKETS];

/** One certificate as the status page shows it. */
typedef struct {
    const char *id_hex;
    const char *subject;
    const char *serial;
    const apr_array_header_t *vhosts; /**< const char * */
    const char *url;                  /**< responder in use */
    const apr_array_header_t *urls;   /**< const char *: all its responders */
    int must_staple;
    const char *state; /**< good, revoked, failing, expired, none */
    int valid;         /**< a response that may be stapled is held */
    int cert_status;   /**< V_OCSP_CERTSTATUS_*, -1: no response yet */
    apr_time_t this_update, next_update, produced_at, fetched_at;
    apr_interval_time_t time_left; /**< until nextUpdate, when valid */
    apr_time_t last_fetch_at;      /**< 0: none */
    apr_interval_time_t last_fetch_duration;
    const char *last_error; /**< NULL: none yet */
    apr_time_t last_error_at;
    unsigned int failures; /**< consecutive */
    apr_time_t next_refresh;
    apr_uint64_t stapled, unstapled; /**< handshakes */
} staple_cert_snap_t;

/** A clock compared with a responder's. */
typedef struct {
    int known;                  /**< measured at a fetch */
    apr_interval_time_t offset; /**< the local clock minus the responder's */
} staple_clock_t;

/** A responder URL as the status page shows it. */
typedef struct {
    const char *url; /**< without a password */
    const char *host;
    unsigned int port;
    const char *addresses; /**< its host's addresses at the last fetch, "a,b" */
    int via_proxy;         /**< asked through StapleProxy */
    apr_uint64_t successes, failures;
    unsigned int consecutive; /**< failures since the last success */
    const char *method;       /**< "GET" (when the request fits) or "POST" */
    apr_time_t last_used_at, last_ok_at, last_error_at;
    const char *last_error; /**< NULL: none yet */
    staple_clock_t clock;
} staple_responder_snap_t;

/** Everything the status page shows, read at one time. */
typedef struct {
    apr_time_t now;
    const char *cache_name; /**< StapleCache */
    int node_local;         /**< handshakes read a node-local copy */
    int count;              /**< certificates */
    int valid;              /**< of them with a valid response */
    staple_cert_snap_t *certs;
    apr_uint64_t stapled, unstapled; /**< all handshakes */
    apr_uint64_t fetches, failed;
    apr_uint64_t outcomes[STAPLE_OUTCOME_COUNT];
    apr_uint64_t hist[STAPLE_HIST_BUCKETS]; /**< cumulative, as Prometheus wants */
    apr_uint64_t duration_sum_us;
    int responder_count;
    staple_responder_snap_t *responders;
    apr_uint64_t relay[STAPLE_RELAY_COUNT]; /**< relay answers by outcome */
} staple_snapshot_t;

/** The status of every certificate and the counters, from p. */
staple_snapshot_t *staple_reg_snapshot(staple_reg_t *reg, apr_pool_t *p);

#endif /* STAPLE_REG_H */
