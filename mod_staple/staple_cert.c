/*
 * Certificates to staple and their issuers: parsed once from the PEM mod_ssl
 * primes with, with everything OCSP needs derived from them.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "staple_cert.h"

/* TLS Feature extension value for status_request (RFC 7633). */
#define STAPLE_TLSFEATURE_STATUS_REQUEST 5

static apr_status_t cert_cleanup(void *data)
{
    staple_cert_t *c = data;

    OCSP_CERTID_free(c->certid);
    OCSP_CERTID_free(c->certid256);
    OPENSSL_free(c->req_der);
    return APR_SUCCESS;
}

static apr_status_t issuer_cleanup(void *data)
{
    staple_issuer_t *is = data;

    X509_STORE_free(is->store);
    sk_X509_pop_free(is->signers, X509_free);
    sk_X509_pop_free(is->vouched, X509_free);
    CRYPTO_THREAD_lock_free(is->lock);
    X509_free(is->x509);
    return APR_SUCCESS;
}

struct staple_issuers_t {
    apr_pool_t *pool;
    apr_hash_t *by_digest;   /* SHA-1 of the issuer's DER -> staple_issuer_t */
    STACK_OF(X509) *trusted; /* StapleTrustedCertificate, or NULL */
};

static apr_status_t trusted_cleanup(void *data)
{
    sk_X509_pop_free(data, X509_free);
    return APR_SUCCESS;
}

staple_issuers_t *staple_issuers_make(apr_pool_t *p, STACK_OF(X509) *trusted)
{
    staple_issuers_t *set = apr_pcalloc(p, sizeof(*set));
    int i;

    set->pool = p;
    set->by_digest = apr_hash_make(p);
    if (trusted && sk_X509_num(trusted) > 0 && (set->trusted = sk_X509_new_null())) {
        apr_pool_cleanup_register(p, set->trusted, trusted_cleanup,
                                  apr_pool_cleanup_null);
        for (i = 0; i < sk_X509_num(trusted); i++) {
            X509 *t = sk_X509_value(trusted, i);
            if (X509_up_ref(t) && !sk_X509_push(set->trusted, t)) {
                X509_free(t);
            }
        }
    }
    return set;
}

int staple_issuers_count(const staple_issuers_t *set)
{
    return (int)apr_hash_count(set->by_digest);
}

/*
 * An issuer record taking over x509. The issuer is the only trust anchor,
 * even when it is an intermediate CA: a response verifies when the issuer
 * signed it, or a responder the issuer delegated to. StapleTrustedCertificate
 * is not an anchor here (see verify_trusted).
 */
static staple_issuer_t *issuer_make(apr_pool_t *p, X509 *x509,
                                    const STACK_OF(X509) *trusted)
{
    staple_issuer_t *is = apr_pcalloc(p, sizeof(*is));

    is->x509 = x509;
    is->trusted = trusted;
    apr_pool_cleanup_register(p, is, issuer_cleanup, apr_pool_cleanup_null);
    is->store = X509_STORE_new();
    is->signers = sk_X509_new_null();
    is->vouched = sk_X509_new_null();
    is->lock = CRYPTO_THREAD_lock_new();
    if (is->store == NULL || is->signers == NULL || is->vouched == NULL ||
        is->lock == NULL || !X509_STORE_add_cert(is->store, x509) || !X509_up_ref(x509)) {
        return NULL;
    }
    if (!sk_X509_push(is->signers, x509)) {
        X509_free(x509);
        return NULL;
    }
    X509_STORE_set_flags(is->store, X509_V_FLAG_PARTIAL_CHAIN);
    return is;
}

/* The next certificate block of a PEM text, decoded to DER (OPENSSL_free it);
 * other blocks (keys, parameters) are skipped. NULL at the end. */
static unsigned char *pem_next_cert(BIO *bio, long *len)
{
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;

    while (PEM_read_bio(bio, &name, &header, &data, len) == 1) {
        int cert = !strcmp(name, PEM_STRING_X509) || !strcmp(name, PEM_STRING_X509_OLD);
        OPENSSL_free(name);
        OPENSSL_free(header);
        if (cert && *len > 0) {
            return data;
        }
        OPENSSL_free(data);
        data = NULL;
    }
    ERR_clear_error();
    return NULL;
}

int staple_pem_first_id(const char *pem, apr_size_t len, unsigned char id[STAPLE_ID_LEN])
{
    BIO *bio;
    unsigned char *der;
    long der_len = 0;

    if (len > INT_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        return 0;
    }
    der = pem_next_cert(bio, &der_len);
    BIO_free(bio);
    if (der == NULL) {
        return 0;
    }
    SHA1(der, (size_t)der_len, id);
    OPENSSL_free(der);
    return 1;
}

/*
 * The issuer of x among the certificates left in bio: the first that issued
 * it. With a set, each distinct certificate is parsed once and kept.
 */
static const staple_issuer_t *find_issuer(BIO *bio, X509 *x, staple_issuers_t *set,
                                          apr_pool_t *p, int *oom)
{
    unsigned char *der, md[SHA_DIGEST_LENGTH];
    long len;

    while ((der = pem_next_cert(bio, &len)) != NULL) {
        const unsigned char *q = der;
        staple_issuer_t *is = NULL;
        X509 *cand;

        if (set) {
            SHA1(der, (size_t)len, md);
            is = apr_hash_get(set->by_digest, md, sizeof(md));
        }
        if (is) {
            OPENSSL_free(der);
            if (X509_check_issued(is->x509, x) == X509_V_OK) {
                return is;
            }
            continue;
        }
        cand = d2i_X509(NULL, &q, len);
        OPENSSL_free(der);
        if (cand == NULL || X509_check_issued(cand, x) != X509_V_OK) {
            X509_free(cand);
            continue;
        }
        is = issuer_make(set ? set->pool : p, cand, set ? set->trusted : NULL);
        if (is == NULL) {
            *oom = 1;
            return NULL;
        }
        if (set) {
            apr_hash_set(set->by_digest, apr_pmemdup(set->pool, md, sizeof(md)),
                         sizeof(md), is);
        }
        return is;
    }
    return NULL;
}

static const char *name_oneline(apr_pool_t *p, const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    const char *s = "(unknown)";
    char *data;
    long len;

    if (bio == NULL) {
        return s;
    }
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        len = BIO_get_mem_data(bio, &data);
        s = apr_pstrmemdup(p, data, (apr_size_t)len);
    }
    BIO_free(bio);
    return s;
}

static const char *serial_hex(apr_pool_t *p, const X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    const char *s = "?";
    char *hex;

    if (bn && (hex = BN_bn2hex(bn)) != NULL) {
        s = apr_pstrdup(p, hex);
        OPENSSL_free(hex);
    }
    BN_free(bn);
    return s;
}

/* Every OCSP URI of the AIA extension, in order (const char *). */
static apr_array_header_t *ocsp_urls(apr_pool_t *p, X509 *x)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(x);
    apr_array_header_t *out = apr_array_make(p, 2, sizeof(const char *));
    int i;

    for (i = 0; urls && i < sk_OPENSSL_STRING_num(urls); i++) {
        APR_ARRAY_PUSH(out, const char *) =
            apr_pstrdup(p, sk_OPENSSL_STRING_value(urls, i));
    }
    X509_email_free(urls);
    return out;
}

static int has_must_staple(X509 *x)
{
    int idx = X509_get_ext_by_NID(x, NID_tlsfeature, -1);
    X509_EXTENSION *ext;
    ASN1_SEQUENCE_ANY *features = NULL;
    const unsigned char *der;
    const ASN1_OCTET_STRING *os;
    int i, found = 0;

    if (idx < 0 || (ext = X509_get_ext(x, idx)) == NULL) {
        return 0;
    }
    os = X509_EXTENSION_get_data(ext);
    der = ASN1_STRING_get0_data(os);
    /* TLSFeature ::= SEQUENCE OF INTEGER */
    features = d2i_ASN1_SEQUENCE_ANY(NULL, &der, ASN1_STRING_length(os));
    if (features == NULL) {
        return 0;
    }
    for (i = 0; i < sk_ASN1_TYPE_num(features); i++) {
        ASN1_TYPE *t = sk_ASN1_TYPE_value(features, i);
        if (t->type == V_ASN1_INTEGER &&
            ASN1_INTEGER_get(t->value.integer) == STAPLE_TLSFEATURE_STATUS_REQUEST) {
            found = 1;
        }
    }
    sk_ASN1_TYPE_pop_free(features, ASN1_TYPE_free);
    return found;
}

static apr_status_t make_request(staple_cert_t *c)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_CERTID_dup(c->certid);
    int len;

    if (req == NULL || id == NULL || OCSP_request_add0_id(req, id) == NULL) {
        OCSP_CERTID_free(id);
        OCSP_REQUEST_free(req);
        return APR_ENOMEM;
    }
    c->req_der = NULL;
    len = i2d_OCSP_REQUEST(req, &c->req_der);
    OCSP_REQUEST_free(req);
    if (len <= 0) {
        return APR_ENOMEM;
    }
    c->req_len = (apr_size_t)len;
    return APR_SUCCESS;
}

apr_status_t staple_cert_load(staple_cert_t **pcert, apr_pool_t *p, const char *pem,
                              staple_issuers_t *issuers, char *err, apr_size_t errlen)
{
    staple_cert_t *c = apr_pcalloc(p, sizeof(*c));
    BIO *bio = BIO_new_mem_buf(pem, -1);
    const unsigned char *q;
    unsigned char *der = NULL;
    long der_len = 0;
    X509 *x = NULL;
    apr_status_t rv = APR_SUCCESS;
    int oom = 0;

    *pcert = NULL;
    apr_pool_cleanup_register(p, c, cert_cleanup, apr_pool_cleanup_null);
    if (bio == NULL || (der = pem_next_cert(bio, &der_len)) == NULL ||
        (q = der, x = d2i_X509(NULL, &q, der_len)) == NULL) {
        BIO_free(bio);
        OPENSSL_free(der);
        ERR_clear_error();
        apr_cpystrn(err, "no PEM certificate found", errlen);
        return APR_EINVAL;
    }
    /* the id mod_ssl primes the certificate with: the SHA-1 of its DER */
    SHA1(der, (size_t)der_len, c->id);
    OPENSSL_free(der);
    c->id_hex = staple_hex(p, c->id, STAPLE_ID_LEN);
    c->subject = name_oneline(p, X509_get_subject_name(x));
    c->serial = serial_hex(p, x);
    c->ocsp_urls = ocsp_urls(p, x);
    c->ocsp_url =
        c->ocsp_urls->nelts ? APR_ARRAY_IDX(c->ocsp_urls, 0, const char *) : NULL;
    c->must_staple = has_must_staple(x);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* names, key identifiers and signature; key usage does not matter here */
    c->self_signed = (X509_self_signed(x, 1) == 1);
#else
    c->self_signed = (X509_check_issued(x, x) == X509_V_OK);
#endif
    staple_asn1_to_time(X509_get0_notAfter(x), &c->not_after);
    ERR_clear_error();

    c->issuer = find_issuer(bio, x, issuers, p, &oom);
    BIO_free(bio);
    ERR_clear_error();
    if (c->issuer == NULL && !oom) {
        apr_cpystrn(err,
                    c->self_signed ? "certificate is self-signed"
                                   : "issuer certificate not found in the chain",
                    errlen);
        *pcert = c;
        rv = APR_NOTFOUND;
    } else if (oom ||
               (c->certid = OCSP_cert_to_id(EVP_sha1(), x, c->issuer->x509)) == NULL ||
               (c->certid256 = OCSP_cert_to_id(EVP_sha256(), x, c->issuer->x509)) ==
                   NULL ||
               make_request(c) != APR_SUCCESS) {
        apr_cpystrn(err, "out of memory preparing the OCSP request", errlen);
        rv = APR_ENOMEM;
    } else {
        *pcert = c;
    }
    X509_free(x);
    return rv;
}

static apr_status_t free_x509_stack(void *data)
{
    sk_X509_pop_free(data, X509_free);
    return APR_SUCCESS;
}

apr_status_t staple_load_pem_file(STACK_OF(X509) **pcerts, const char *path,
                                  apr_pool_t *p, char *err, apr_size_t errlen)
{
    BIO *bio = BIO_new_file(path, "r");
    STACK_OF(X509) *certs;
    X509 *x;

    *pcerts = NULL;
    if (bio == NULL) {
        apr_snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        ERR_clear_error();
        return APR_ENOENT;
    }
    certs = sk_X509_new_null();
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        sk_X509_push(certs, x);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        apr_snprintf(err, errlen, "no PEM certificate in %s", path);
        return APR_EINVAL;
    }
    apr_pool_cleanup_register(p, certs, free_x509_stack, apr_pool_cleanup_null);
    *pcerts = certs;
    return APR_SUCCESS;
}
