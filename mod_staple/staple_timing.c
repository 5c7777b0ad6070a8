#include "staple_timing.h"

/* Upper bound of the jitter that spreads renewals of many certificates. */
#define STAPLE_MAX_JITTER apr_time_from_sec(300)

/* A refresh is due this long before nextUpdate at the latest: a tenth of
 * the validity, within these bounds. */
#define STAPLE_MIN_MARGIN apr_time_from_sec(5)
#define STAPLE_MAX_MARGIN apr_time_from_sec(60)

/* How long before nextUpdate a refresh is due at the latest. */
static apr_interval_time_t margin(apr_interval_time_t validity)
{
    apr_interval_time_t m = validity / 10;

    if (m < STAPLE_MIN_MARGIN) {
        m = STAPLE_MIN_MARGIN;
    }
    return m > STAPLE_MAX_MARGIN ? STAPLE_MAX_MARGIN : m;
}

apr_time_t staple_refresh_due(const staple_timing_t *t, apr_time_t fetched_at,
                              apr_time_t this_update, apr_time_t next_update,
                              double jitter)
{
    apr_interval_time_t validity = next_update - this_update;
    apr_interval_time_t window, spread;
    apr_time_t due, latest, floor;

    if (validity < 0) {
        validity = 0;
    }
    /* the minute between fetches, or half the validity if that is shorter */
    floor = fetched_at + (validity / 2 < STAPLE_MIN_REFRESH_INTERVAL
                              ? validity / 2
                              : STAPLE_MIN_REFRESH_INTERVAL);
    window = (t->renew_pct >= 0) ? validity / 100 * t->renew_pct : t->renew_window;
    due = next_update - window;
    if (t->standard_timeout > 0 && fetched_at + t->standard_timeout < due) {
        due = fetched_at + t->standard_timeout;
    }
    if (due > fetched_at) {
        spread = (due - fetched_at) / 20;
        if (spread > STAPLE_MAX_JITTER) {
            spread = STAPLE_MAX_JITTER;
        }
        due -= (apr_interval_time_t)(jitter * (double)spread);
    }
    /* neither the window nor the floor may let the response lapse: a
     * response valid for a minute is renewed within that minute */
    latest = next_update - margin(validity);
    if (due > latest) {
        due = latest;
    }
    if (floor > latest) {
        floor = latest;
    }
    if (floor < fetched_at + STAPLE_MIN_REFRESH_GAP) {
        floor = fetched_at + STAPLE_MIN_REFRESH_GAP;
    }
    return due < floor ? floor : due;
}

apr_time_t staple_retry_due(const staple_timing_t *t, apr_time_t now, int failures,
                            double jitter)
{
    apr_interval_time_t delay = t->retry_delay, min = t->retry_delay;
    int i;

    if (min > t->retry_max) {
        min = t->retry_max;
    }
    for (i = 1; i < failures && delay < t->retry_max; i++) {
        delay *= 2;
    }
    if (delay > t->retry_max) {
        delay = t->retry_max;
    }
    delay -= (apr_interval_time_t)(jitter * 0.2 * (double)delay);
    if (delay < min) {
        delay = min;
    }
    return now + delay;
}
