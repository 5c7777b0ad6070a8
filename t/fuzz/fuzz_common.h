/*
 * Shared by the libFuzzer targets of t/fuzz (one translation unit each, so
 * everything here is static): APR set up once, the fixed certificate of
 * fuzz_pki.h, and a checked call of staple_ocsp_check().
 *
 * With STAPLE_FUZZ_VERBOSE set in the environment, each input's outcome is
 * printed to stderr: scripts/fuzz runs the seeds that way first, to make sure
 * the good ones still verify (so that the fuzzer starts deep in the checks).
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_time.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>

#include "staple_ocsp.h"
#include "fuzz_pki.h"

#ifndef FUZZ_CHECK_REASON
#define FUZZ_CHECK_REASON 1
#endif

/* Abort (a finding for libFuzzer) when an invariant of the core breaks. */
#define FUZZ_ASSERT(cond)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                              \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/*
 * Feedback from the outcome. Only mod_staple's files are instrumented, not
 * OpenSSL, so libFuzzer cannot tell an input that fails deep in OpenSSL's
 * parser or verifier from one that fails at its first byte. These extra
 * counters (read by libFuzzer like its coverage counters) give it the
 * outcome and the reason text without its numbers, e.g. "signature ...:
 * signer certificate not found": inputs reaching a new reason are kept.
 */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t fuzz_outcomes[4096];

static void fuzz_feature(unsigned kind, const char *text)
{
    uint32_t h = 2166136261u ^ kind; /* FNV-1a, digits skipped */

    for (; text && *text; text++) {
        if (*text < '0' || *text > '9') {
            h = (h ^ (unsigned char)*text) * 16777619u;
        }
    }
    fuzz_outcomes[h % sizeof(fuzz_outcomes)]++;
}

/* Structural feedback on a DER response, parsed here a second time: where
 * OpenSSL's decoder gave up (library and reason of its error), or the shape
 * of what it decoded (status, number of SingleResponses and certificates,
 * extensions). */
static void fuzz_response_features(const unsigned char *der, size_t len)
{
    const unsigned char *ptr = der;
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *basic;
    unsigned long e;
    unsigned shape;

    ERR_clear_error();
    resp = len > 0 && len <= STAPLE_MAX_RESPONSE_LEN
               ? d2i_OCSP_RESPONSE(NULL, &ptr, (long)len)
               : NULL;
    if (resp == NULL) {
        e = ERR_peek_last_error();
        fuzz_feature(
            0x300u + (unsigned)ERR_GET_LIB(e) * 64u + (unsigned)ERR_GET_REASON(e), "");
        ERR_clear_error();
        return;
    }
    shape = (unsigned)OCSP_response_status(resp) & 7u;
    if ((basic = OCSP_response_get1_basic(resp)) != NULL) {
        int n = OCSP_resp_count(basic);
        const STACK_OF(X509) *certs = OCSP_resp_get0_certs(basic);
        int ncerts = certs ? sk_X509_num(certs) : 0;
        shape |= 8u | (unsigned)(n > 3 ? 3 : n) << 4 |
                 (unsigned)(ncerts > 3 ? 3 : ncerts) << 6;
        shape |= (OCSP_BASICRESP_get_ext_count(basic) > 0) << 8;
        OCSP_BASICRESP_free(basic);
    }
    shape |= (ptr != der + len) << 9;
    fuzz_feature(0x1000u + shape, "");
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
}

static apr_pool_t *fuzz_pool;
static const staple_cert_t *fuzz_cert;
static staple_cert_t fuzz_cert_copy;
static staple_issuer_t fuzz_issuer_copy;
static int fuzz_verbose;

static void fuzz_init_apr(void)
{
    if (apr_initialize() != APR_SUCCESS ||
        apr_pool_create(&fuzz_pool, NULL) != APR_SUCCESS) {
        fprintf(stderr, "fuzz: cannot initialise APR\n");
        abort();
    }
    /* OpenSSL's one-time allocations happen here, not inside the first input. */
    OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CRYPTO_STRINGS | OPENSSL_INIT_ADD_ALL_CIPHERS |
                            OPENSSL_INIT_ADD_ALL_DIGESTS,
                        NULL);
    fuzz_verbose = getenv("STAPLE_FUZZ_VERBOSE") != NULL;
}

/* Load the fixed certificate and issuer once; they live as long as the process. */
static void fuzz_init_cert(void)
{
    staple_cert_t *cert;
    char err[256];
    apr_status_t rv =
        staple_cert_load(&cert, fuzz_pool, fuzz_chain_pem, NULL, err, sizeof(err));

    if (rv != APR_SUCCESS || cert == NULL || cert->certid == NULL) {
        fprintf(stderr, "fuzz: cannot load the fixed certificate of fuzz_pki.h: %s\n",
                err);
        abort();
    }
    /* A copy in static storage: APR may keep pools in mmap()ed memory, which
     * LeakSanitizer does not scan for pointers to the OpenSSL objects. */
    fuzz_issuer_copy = *cert->issuer;
    fuzz_cert_copy = *cert;
    fuzz_cert_copy.issuer = &fuzz_issuer_copy;
    fuzz_cert = &fuzz_cert_copy;
}

/*
 * Check a DER response against the fixed certificate, with mod_staple's
 * defaults (5 minutes of skew, no maximum age), and the invariants its
 * callers rely on. Returns the outcome.
 */
static staple_check_e fuzz_check(const unsigned char *der, size_t len)
{
    const staple_check_params_t params = {apr_time_from_sec(300), -1};
    staple_check_params_t strict;
    staple_resp_info_t info, info2;
    char why[256], why2[256];
    apr_time_t now = apr_time_now();
    staple_check_e rc, rc2;

    fuzz_response_features(der, len);
    memset(why, 0x55, sizeof(why));
    rc = staple_ocsp_check(fuzz_cert, der, len, now, &params, &info, why, sizeof(why));

    FUZZ_ASSERT(rc >= STAPLE_CHECK_OK && rc < STAPLE_CHECK_COUNT);
    /* Checked again, the same outcome: a signer that passed once is then
     * checked by signature alone, which must refuse all the same. */
    rc2 =
        staple_ocsp_check(fuzz_cert, der, len, now, &params, &info2, why2, sizeof(why2));
    FUZZ_ASSERT(rc2 == rc);
    FUZZ_ASSERT(memchr(why, '\0', sizeof(why)) != NULL);
    FUZZ_ASSERT(strcmp(staple_check_name(rc), "invalid") != 0);
    fuzz_feature((unsigned)rc, why);
    if (fuzz_verbose) {
        fprintf(stderr, "fuzz: check: %s%s%s\n", staple_check_name(rc),
                why[0] ? ": " : "", why);
    }
    if (rc != STAPLE_CHECK_OK) {
        FUZZ_ASSERT(why[0] != '\0');
        return rc;
    }

    if (fuzz_verbose) {
        fprintf(stderr, "fuzz: status %s, reason %d\n",
                staple_cert_status_name(info.cert_status), info.reason);
    }
    /* What the module staples must be a good or revoked status, valid now. */
    FUZZ_ASSERT(why[0] == '\0');
    FUZZ_ASSERT(info.resp_status == OCSP_RESPONSE_STATUS_SUCCESSFUL);
    FUZZ_ASSERT(info.cert_status == V_OCSP_CERTSTATUS_GOOD ||
                info.cert_status == V_OCSP_CERTSTATUS_REVOKED);
    FUZZ_ASSERT(info.this_update <= now + params.time_skew);
    FUZZ_ASSERT(info.next_update > now);
    if (info.cert_status == V_OCSP_CERTSTATUS_GOOD) {
        FUZZ_ASSERT(info.revoked_at == 0);
#if FUZZ_CHECK_REASON
        /* staple_ocsp.h: "revocation reason, or -1" (the finding of
         * README.md, fixed since) */
        FUZZ_ASSERT(info.reason == -1);
#endif
    }
    FUZZ_ASSERT(staple_cert_status_name(info.cert_status) != NULL);

    /* The same response, later or with a maximum age, fails on time alone. */
    rc2 = staple_ocsp_check(fuzz_cert, der, len, info.next_update, &params, &info2, why2,
                            sizeof(why2));
    FUZZ_ASSERT(rc2 == STAPLE_CHECK_EXPIRED);
    strict = params;
    strict.max_age = 0;
    rc2 =
        staple_ocsp_check(fuzz_cert, der, len, now, &strict, &info2, why2, sizeof(why2));
    FUZZ_ASSERT(rc2 == STAPLE_CHECK_TOO_OLD ||
                (rc2 == STAPLE_CHECK_OK && info2.this_update >= now));
    FUZZ_ASSERT(info2.this_update == info.this_update &&
                info2.next_update == info.next_update);
    return rc;
}

#endif /* FUZZ_COMMON_H */
