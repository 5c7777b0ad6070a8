/*
 * libFuzzer target: the input is the PEM mod_ssl hands to the prime hook (a
 * certificate, then its chain), read by staple_cert_load(). The input is
 * copied with a terminating NUL, as staple_cert_load() takes a C string.
 * When a certificate with its issuer loads, its OCSP request is built too;
 * the result is checked for the invariants its callers rely on.
 *
 * Seeds: t/fuzz/corpus/cert_load (t/fuzz/mkseeds); dictionary:
 * t/fuzz/cert_load.dict.
 */
#include "fuzz_common.h"

#include <openssl/ocsp.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init_apr();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    staple_cert_t *cert = NULL;
    char *pem = malloc(size + 1);
    char err[256];
    apr_status_t rv;

    FUZZ_ASSERT(pem != NULL);
    memcpy(pem, data, size);
    pem[size] = '\0';
    FUZZ_ASSERT(apr_pool_create(&p, fuzz_pool) == APR_SUCCESS);

    memset(err, 0x55, sizeof(err));
    rv = staple_cert_load(&cert, p, pem, NULL, err, sizeof(err));
    if (fuzz_verbose) {
        fprintf(stderr, "fuzz: cert_load: %d %s\n", rv, rv == APR_SUCCESS ? "ok" : err);
    }
    fuzz_feature((unsigned)rv, rv == APR_SUCCESS ? "" : err);
    if (rv == APR_SUCCESS || rv == APR_NOTFOUND) {
        /* A certificate was read: everything derived from it is there. */
        FUZZ_ASSERT(cert != NULL);
        FUZZ_ASSERT(cert->id_hex != NULL && strlen(cert->id_hex) == 2 * STAPLE_ID_LEN);
        FUZZ_ASSERT(cert->subject != NULL && cert->serial != NULL);
        FUZZ_ASSERT(cert->must_staple == 0 || cert->must_staple == 1);
        FUZZ_ASSERT(cert->self_signed == 0 || cert->self_signed == 1);
        fuzz_feature(0x100u | (unsigned)(cert->must_staple << 2 | cert->self_signed << 1 |
                                         (cert->ocsp_url != NULL)),
                     "");
    }
    if (rv == APR_SUCCESS || rv == APR_NOTFOUND) {
        /* the cheap id of the report of unprimed certificates agrees */
        unsigned char id[STAPLE_ID_LEN];
        FUZZ_ASSERT(staple_pem_first_id(pem, strlen(pem), id) == 1 &&
                    !memcmp(id, cert->id, STAPLE_ID_LEN));
    }
    {
        /* through a shared issuer set, twice (the second finds the issuer
         * interned): the same outcome as with a private issuer */
        staple_issuers_t *set = staple_issuers_make(p, NULL);
        staple_cert_t *c1 = NULL, *c2 = NULL;
        char err2[256];
        FUZZ_ASSERT(staple_cert_load(&c1, p, pem, set, err2, sizeof(err2)) == rv);
        FUZZ_ASSERT(staple_cert_load(&c2, p, pem, set, err2, sizeof(err2)) == rv);
        FUZZ_ASSERT(staple_issuers_count(set) == (rv == APR_SUCCESS));
        if (rv == APR_SUCCESS) {
            FUZZ_ASSERT(c1->issuer == c2->issuer && c1->req_len == cert->req_len &&
                        !memcmp(c1->req_der, cert->req_der, cert->req_len) &&
                        !memcmp(c2->id, cert->id, STAPLE_ID_LEN));
        }
    }
    if (rv == APR_SUCCESS) {
        const unsigned char *q;
        OCSP_REQUEST *req;

        FUZZ_ASSERT(cert->issuer != NULL && cert->certid != NULL &&
                    cert->issuer->store != NULL && cert->issuer->x509 != NULL);
        FUZZ_ASSERT(cert->req_der != NULL && cert->req_len > 0);
        /* the request built for the responder parses back */
        q = cert->req_der;
        req = d2i_OCSP_REQUEST(NULL, &q, (long)cert->req_len);
        FUZZ_ASSERT(req != NULL && q == cert->req_der + cert->req_len);
        FUZZ_ASSERT(OCSP_request_onereq_count(req) == 1);
        OCSP_REQUEST_free(req);
        if (cert->ocsp_url) {
            FUZZ_ASSERT(staple_ocsp_get_url(p, cert->ocsp_url, cert->req_der,
                                            cert->req_len) != NULL ||
                        cert->req_len > 180);
        }
    } else {
        FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        if (rv != APR_NOTFOUND) {
            FUZZ_ASSERT(cert == NULL);
        } else {
            FUZZ_ASSERT(cert->issuer == NULL && cert->certid == NULL);
        }
    }
    apr_pool_destroy(p);
    free(pem);
    return 0;
}
