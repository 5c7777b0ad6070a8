/*
 * When to refresh a response, and when to retry after a failure.
 * Pure functions: the caller passes the time and the randomness.
 */
#ifndef STAPLE_TIMING_H
#define STAPLE_TIMING_H

#include <apr_time.h>

/** Fetch a certificate's response no sooner than this after a success (or
 * half its validity, if shorter), unless its validity ends sooner... */
#define STAPLE_MIN_REFRESH_INTERVAL apr_time_from_sec(60)

/** ... and never sooner than this. */
#define STAPLE_MIN_REFRESH_GAP apr_time_from_sec(5)

/** Timing policy, from the directives. */
typedef struct {
    int renew_pct;                        /**< 0..100, or -1 when renew_window is used */
    apr_interval_time_t renew_window;     /**< remaining validity that triggers renewal */
    apr_interval_time_t standard_timeout; /**< refresh at least this often */
    apr_interval_time_t retry_delay;      /**< first retry after a failure */
    apr_interval_time_t retry_max;        /**< longest retry interval */
} staple_timing_t;

/**
 * When a response fetched at fetched_at, valid from this_update to
 * next_update, is due for renewal: when less than the renew window of its
 * validity remains or standard_timeout after fetching, whichever comes
 * first, moved earlier by up to 5 % (at most 5 minutes) of the interval by
 * jitter; never later than a margin before nextUpdate (a tenth of the
 * validity, 5 s to 60 s), and no sooner than STAPLE_MIN_REFRESH_INTERVAL (or
 * half the validity) after fetching unless that margin comes first (then
 * no sooner than STAPLE_MIN_REFRESH_GAP).
 * @param jitter a random number in [0, 1)
 */
apr_time_t staple_refresh_due(const staple_timing_t *t, apr_time_t fetched_at,
                              apr_time_t this_update, apr_time_t next_update,
                              double jitter);

/**
 * When to retry after the given number of consecutive failures (>= 1):
 * retry_delay doubled per further failure, capped at retry_max, shortened
 * by up to 20 % of jitter but never below retry_delay.
 * @param jitter a random number in [0, 1)
 */
apr_time_t staple_retry_due(const staple_timing_t *t, apr_time_t now, int failures,
                            double jitter);

#endif /* STAPLE_TIMING_H */
