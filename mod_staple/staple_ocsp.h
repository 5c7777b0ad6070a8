/*
 * OCSP for one certificate: whether an answer may be stapled, which of two is
 * newer, and how to ask for one (staple_cert.h: the certificates).
 * Needs only APR and OpenSSL; unit-tested without httpd.
 */
#ifndef STAPLE_OCSP_H
#define STAPLE_OCSP_H

#include <apr_pools.h>
#include <apr_time.h>
#include <openssl/crypto.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "staple_cert.h"
#include "staple_util.h"

/** Outcome of checking a response. One counter per value in the statistics. */
typedef enum {
    STAPLE_CHECK_OK = 0,
    STAPLE_CHECK_TOO_LARGE,      /**< over STAPLE_MAX_RESPONSE_LEN */
    STAPLE_CHECK_MALFORMED,      /**< not a DER OCSPResponse / BasicOCSPResponse */
    STAPLE_CHECK_NOT_SUCCESSFUL, /**< responseStatus is not successful */
    STAPLE_CHECK_SIGNATURE,      /**< signature or signer authorization failed */
    STAPLE_CHECK_WRONG_CERT,     /**< no SingleResponse for this certificate */
    STAPLE_CHECK_UNKNOWN,        /**< certStatus unknown */
    STAPLE_CHECK_NOT_YET_VALID,  /**< thisUpdate in the future beyond the skew */
    STAPLE_CHECK_NO_NEXT_UPDATE, /**< no nextUpdate: no end to its validity */
    STAPLE_CHECK_EXPIRED,        /**< nextUpdate has passed */
    STAPLE_CHECK_TOO_OLD,        /**< thisUpdate older than the maximum age */
    STAPLE_CHECK_COUNT
} staple_check_e;

/** Short stable name of a check outcome ("ok", "signature", ...). */
const char *staple_check_name(staple_check_e rc);

/** Limits applied by staple_ocsp_check(). */
typedef struct {
    apr_interval_time_t time_skew; /**< tolerated clock difference on thisUpdate */
    apr_interval_time_t max_age;   /**< refuse if thisUpdate older; < 0: no limit */
} staple_check_params_t;

/** What a response that passed says. */
typedef struct {
    int resp_status; /**< OCSP responseStatus, also set on failure */
    int cert_status; /**< V_OCSP_CERTSTATUS_GOOD or _REVOKED */
    int reason;      /**< revocation reason, or -1 */
    apr_time_t this_update;
    apr_time_t next_update;
    apr_time_t produced_at;
    apr_time_t revoked_at; /**< 0 unless revoked */
} staple_resp_info_t;

/**
 * Decide whether a DER OCSP response may be stapled for this certificate,
 * applying every rule: size, successful status, verified signature by the
 * issuer or a delegated OCSPSigning responder it issued (or a trusted
 * anchor), a SingleResponse for this very certificate, good or revoked,
 * thisUpdate not in the future beyond the skew, nextUpdate present and not
 * passed, not older than max_age.
 * @param now the time to check against
 * @param info receives the response's data (partly filled on failure)
 * @param why receives a human readable reason on failure
 * @return STAPLE_CHECK_OK or the first rule that failed
 */
staple_check_e staple_ocsp_check(const staple_cert_t *cert, const unsigned char *der,
                                 apr_size_t len, apr_time_t now,
                                 const staple_check_params_t *params,
                                 staple_resp_info_t *info, char *why, apr_size_t whylen);

/** How a valid response compares with the one held for the same certificate. */
typedef enum {
    STAPLE_FRESH_NEWER = 0, /**< newer by its signed times: it replaces the held one */
    STAPLE_FRESH_SAME,      /**< the same producedAt and thisUpdate */
    STAPLE_FRESH_OLDER,     /**< older: never replaces the held one */
    STAPLE_FRESH_UNREVOKED  /**< good after revoked: never, but after certificateHold */
} staple_fresh_e;

/**
 * Freshness only moves forward: compare by the signed times, producedAt
 * first, then thisUpdate. A good response never replaces a revoked one
 * (a CA does not un-revoke), except a newer one after a revocation with
 * reason certificateHold. Of two with the same times, a revoked one is
 * the newer.
 * @param held the response held; one with no produced_at and no
 *        this_update stands for none, which anything replaces
 * @param cand the response that passed staple_ocsp_check
 */
staple_fresh_e staple_resp_compare(const staple_resp_info_t *held,
                                   const staple_resp_info_t *cand);

/** Name of a comparison ("newer", "same", "older", "unrevoked"). */
const char *staple_fresh_name(staple_fresh_e f);

/**
 * The URL to fetch a response with GET (RFC 5019): base URL, a slash, and
 * the URL-encoded base64 request. NULL when the base64 request exceeds 255
 * bytes, in which case the request must be POSTed to the base URL.
 */
const char *staple_ocsp_get_url(apr_pool_t *p, const char *base, const unsigned char *req,
                                apr_size_t req_len);

/** Name of a certificate status ("good", "revoked", "unknown"). */
const char *staple_cert_status_name(int cert_status);

#endif /* STAPLE_OCSP_H */
