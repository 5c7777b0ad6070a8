/*
 * OCSP for one certificate: what to ask, and whether an answer may be stapled.
 * Needs only APR and OpenSSL; unit-tested without httpd.
 */
#ifndef STAPLE_OCSP_H
#define STAPLE_OCSP_H

#include <apr_pools.h>
#include <apr_time.h>
#include <openssl/crypto.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "staple_util.h"

/**
 * An issuing CA as OCSP verification needs it. Certificates of the same
 * issuer share one (see staple_issuers_t).
 */
typedef struct staple_issuer_t {
    X509 *x509;                    /**< the issuer certificate */
    X509_STORE *store;             /**< the issuer as sole trust anchor */
    const STACK_OF(X509) *trusted; /**< StapleTrustedCertificate, or NULL */
    STACK_OF(X509) *signers;       /**< the issuer, for responses without certs */
    /* Signers that passed the whole verification for this issuer (the
     * issuer itself, or a responder it delegated to) and the time window
     * in which all of them and the issuer are valid: their next responses
     * need the signature check only, not the chain again. */
    CRYPTO_RWLOCK *lock;
    STACK_OF(X509) *vouched;
    apr_time_t vouched_from, vouched_until;
} staple_issuer_t;

/**
 * The issuers met while loading certificates, each parsed once: with
 * thousands of certificates of one CA, one X509 and one X509_STORE serve
 * them all. Not thread-safe while loading; read-only afterwards.
 */
typedef struct staple_issuers_t staple_issuers_t;

/**
 * A set of issuers whose verification also trusts these responder
 * certificates exactly, and OCSPSigning certificates issued directly by
 * the CA certificates among them (StapleTrustedCertificate): for
 * responders outside the issuer's hierarchy.
 * @param p pool of the set; its cleanup frees the OpenSSL objects
 * @param trusted the certificates (referenced, not copied), or NULL
 */
staple_issuers_t *staple_issuers_make(apr_pool_t *p, STACK_OF(X509) *trusted);

/** How many distinct issuers the set holds. */
int staple_issuers_count(const staple_issuers_t *set);

/**
 * A certificate to staple, with its issuer and everything derived from them.
 * Created by staple_cert_load(), read-only afterwards, safe to share between
 * threads. The certificate itself is not kept: only what OCSP needs.
 */
typedef struct staple_cert_t {
    const staple_issuer_t *issuer;   /**< NULL when self-signed or not found */
    OCSP_CERTID *certid;             /**< SHA-1 CertID, as sent in requests */
    unsigned char id[STAPLE_ID_LEN]; /**< SHA-1 of the certificate's DER */
    const char *id_hex;              /**< id in hex, for file names and logs */
    const char *subject;             /**< one-line subject for log lines */
    const char *serial;              /**< serial number in hex */
    const char *ocsp_url;            /**< first OCSP URI of the AIA extension, or NULL */
    int must_staple;                 /**< TLS Feature extension asks for status_request */
    int self_signed;                 /**< issued by itself: nobody to ask */
    apr_time_t not_after;            /**< end of the certificate's validity */
    unsigned char *req_der;          /**< the DER OCSPRequest for this certificate */
    apr_size_t req_len;
} staple_cert_t;

/**
 * Parse a certificate followed by its chain (PEM, as mod_ssl hands it to the
 * prime hook) and derive what stapling needs.
 * @param pcert receives the certificate record
 * @param p pool for the record; its cleanup frees the OpenSSL objects
 * @param pem the certificate first, then the issuer (and possibly more)
 * @param issuers where the issuer is looked up and kept, shared with other
 *        certificates; NULL: a private issuer, freed with p
 * @param err buffer for a reason on failure
 * @return APR_SUCCESS, APR_EINVAL for unparseable PEM, APR_NOTFOUND when the
 *         issuer is missing from the chain (a self-signed certificate loads
 *         with self_signed set and no issuer)
 */
apr_status_t staple_cert_load(staple_cert_t **pcert, apr_pool_t *p, const char *pem,
                              staple_issuers_t *issuers, char *err, apr_size_t errlen);

/**
 * The SHA-1 of the first certificate of a PEM text (the id mod_ssl primes
 * it with), without parsing it: cheap enough to look thousands up.
 * @return 1 and the digest in id, or 0 when the text holds no certificate
 */
int staple_pem_first_id(const char *pem, apr_size_t len, unsigned char id[STAPLE_ID_LEN]);

/**
 * Read every certificate of a PEM file.
 * @param ptrusted receives the certificates; freed by a cleanup of p
 * @return APR_SUCCESS, or an error with a reason in err
 */
apr_status_t staple_load_pem_file(STACK_OF(X509) **pcerts, const char *path,
                                  apr_pool_t *p, char *err, apr_size_t errlen);

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
 * reason certificateHold.
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
