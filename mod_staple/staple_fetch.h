/*
 * Fetching OCSP responses over HTTP with libcurl, many at once.
 * Needs only APR and libcurl.
 */
#ifndef STAPLE_FETCH_H
#define STAPLE_FETCH_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

/** One request to a responder and, after staple_fetch_run(), its outcome. */
typedef struct staple_fetch_t {
    /* set by the caller */
    const char *url;          /**< responder base URL (http or https) */
    const unsigned char *req; /**< DER OCSPRequest */
    apr_size_t req_len;
    int post;    /**< 1: POST even when the request fits a GET */
    void *baton; /**< caller's data, untouched */

    /* set by staple_fetch_run() */
    apr_status_t status; /**< APR_SUCCESS: HTTP 200 and a body within limits */
    int started;         /**< 0 when the deadline came before it could start */
    const char *method;  /**< "GET" or "POST" */
    long http_status;    /**< 0 when no HTTP answer came */
    unsigned char *body; /**< response body: valid until the done callback
                              returns; without one, from the run's pool */
    apr_size_t body_len;
    apr_interval_time_t duration; /**< from start to last byte (or failure) */
    apr_time_t http_date;         /**< the answer's Date header; 0: none */
    char addr[48];                /**< the address connected to, or "" */
    char error[256];              /**< reason when status is not APR_SUCCESS */
} staple_fetch_t;

/** Settings of a fetch run. */
typedef struct {
    apr_interval_time_t timeout; /**< per fetch, DNS to last byte */
    int max_parallel;            /**< transfers at once */
    const char *proxy;           /**< HTTP proxy URL, or NULL for none */
    const char *user_agent;
} staple_fetch_opts_t;

/** Called as each fetch completes, from the thread running staple_fetch_run(). */
typedef void staple_fetch_done_fn(staple_fetch_t *f, void *ctx);

/**
 * Called between transfers, about every 100 ms while any runs: may push
 * more staple_fetch_t * onto fetches, which then run in the same loop.
 */
typedef void staple_fetch_more_fn(apr_array_header_t *fetches, void *ctx);

/**
 * Run all fetches, at most max_parallel at a time, none past the deadline.
 * GET is used when the encoded request fits RFC 5019's 255 bytes (unless a
 * fetch asks for POST), POST otherwise. Bodies over STAPLE_MAX_RESPONSE_LEN are cut off
 * and failed.
 * @param fetches array of staple_fetch_t *
 * @param deadline no transfer runs past this time (0: only the timeout)
 * @param done optional, called for each fetch as it completes
 * @param more optional, adds fetches that fell due while others run; the run
 *        ends when nothing runs and it added nothing
 * @param p pool for bodies and URLs
 * @return APR_SUCCESS when every fetch ran (check each one's status),
 *         another code when libcurl could not be set up
 */
typedef apr_status_t staple_fetch_run_fn(apr_array_header_t *fetches,
                                         const staple_fetch_opts_t *opts,
                                         apr_time_t deadline, staple_fetch_done_fn *done,
                                         staple_fetch_more_fn *more, void *ctx,
                                         apr_pool_t *p);
staple_fetch_run_fn staple_fetch_run;

/** Initialise libcurl once per process, before any thread starts. */
apr_status_t staple_fetch_global_init(void);

#endif /* STAPLE_FETCH_H */
