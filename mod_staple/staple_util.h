/*
 * Small helpers shared by the core: time conversion and encodings.
 * Needs only APR and OpenSSL.
 */
#ifndef STAPLE_UTIL_H
#define STAPLE_UTIL_H

#include <apr_pools.h>
#include <apr_time.h>
#include <openssl/asn1.h>

/** Largest OCSP response accepted from a responder, a cache or a file. */
#define STAPLE_MAX_RESPONSE_LEN (64 * 1024)

/** Length in bytes of a certificate id (SHA-1 of the DER certificate). */
#define STAPLE_ID_LEN 20

/**
 * Convert an ASN.1 time to an APR time.
 * @param t the ASN.1 time (UTCTime or GeneralizedTime)
 * @param out receives the time
 * @return 1 on success, 0 if the time cannot be converted
 */
int staple_asn1_to_time(const ASN1_TIME *t, apr_time_t *out);

/**
 * Lower-case hex of a byte string.
 * @param p pool for the result
 */
const char *staple_hex(apr_pool_t *p, const unsigned char *data, apr_size_t len);

/**
 * Format a duration in seconds for log lines: "2h 5m", "40s", "-3s".
 */
const char *staple_fmt_duration(apr_pool_t *p, apr_interval_time_t t);

/**
 * Format a time as ISO 8601 in UTC ("2026-12-01T10:20:55Z"); NULL for 0 or
 * less (no time).
 */
const char *staple_fmt_time(apr_pool_t *p, apr_time_t t);

/**
 * A URL as it may be shown in logs, status pages and event arguments: with
 * the password of its user information left out ("http://user@host/").
 * @return url itself when it holds no password or does not parse
 */
const char *staple_url_shown(apr_pool_t *p, const char *url);

#endif /* STAPLE_UTIL_H */
