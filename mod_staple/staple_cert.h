/*
 * Certificates to staple and their issuers, parsed from PEM. Needs only APR
 * and OpenSSL; unit-tested without httpd.
 */
#ifndef STAPLE_CERT_H
#define STAPLE_CERT_H

#include <apr_pools.h>
#include <apr_tables.h>
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
    OCSP_CERTID *certid256;          /**< the SHA-256 CertID, as some clients ask */
    unsigned char id[STAPLE_ID_LEN]; /**< SHA-1 of the certificate's DER */
    const char *id_hex;              /**< id in hex, for file names and logs */
    const char *subject;             /**< one-line subject for log lines */
    const char *serial;              /**< serial number in hex */
    const char *ocsp_url;            /**< first OCSP URI of the AIA extension, or NULL */
    apr_array_header_t *ocsp_urls;   /**< every OCSP URI of it, in order */
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

#endif /* STAPLE_CERT_H */
