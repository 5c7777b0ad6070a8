/*
 * What the C unit tests share: the check macro and case runner, an
 * in-memory PKI (root, intermediate, leaves, responders) and OCSP
 * responses made to order, so that each rule is hit exactly.
 */
#ifndef STAPLE_TESTLIB_H
#define STAPLE_TESTLIB_H

#include <stdio.h>

#include <apr_pools.h>
#include <apr_time.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "staple_ocsp.h"

extern int checks_failed;
extern apr_pool_t *pool;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "  FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            checks_failed++;                                                             \
        }                                                                                \
    } while (0)

/** Run a case and print "ok - name" or "not ok - name". */
void run_case(const char *name, void (*fn)(void));

/** apr_initialize, the pool and the PKI; then the summary and exit code. */
void test_init(void);
int test_done(const char *what);

typedef struct {
    X509 *cert;
    EVP_PKEY *key;
} ident_t;

/* Test Root -> Test Inter -> leaf.test (Must-Staple), leaf2.test, Responder
 * (OCSPSigning), Responder no EKU (serverAuth); Other Root -> Other
 * Responder (OCSPSigning), Other Plain (serverAuth), Other Inter (a CA) ->
 * Other Inter Responder (OCSPSigning); Stranger (self-signed OCSPSigning);
 * selfsigned.test. */
extern ident_t root, inter, leaf, leaf2, responder, responder_noeku, other_root,
    other_responder, other_plain, other_inter, other_inter_responder, stranger,
    selfsigned;
extern staple_cert_t *leaf_sc; /* leaf.test with its chain, loaded */

/** Issue a certificate; issuer NULL makes it self-signed. */
ident_t issue(const char *cn, const ident_t *issuer, int ca, const char *eku,
              const char *aia, int must_staple);

/** PEM of a (and b), from the pool. */
char *to_pem(X509 *a, X509 *b);

#define NO_NEXT_UPDATE 0x7fffffffL

typedef struct {
    const ident_t *signer;
    int include_signer; /* put the signer's certificate into the response */
    X509 *subject;      /* certificate the SingleResponse is about */
    X509 *subject_issuer;
    int status;           /* V_OCSP_CERTSTATUS_* */
    long this_offset;     /* seconds from the base time */
    long next_offset;     /* seconds from the base time, or NO_NEXT_UPDATE */
    int resp_status;      /* OCSP_RESPONSE_STATUS_* */
    X509 *extra;          /* another certificate to put into the response */
    apr_time_t base;      /* the time offsets count from; 0: now */
    int reason;           /* revocation reason, OCSP_REVOKED_STATUS_* */
    long produced_offset; /* producedAt from the base time, with set_produced */
    int set_produced;     /* 0: producedAt is the time of signing */
} resp_spec_t;

/** A good response for leaf.test by Responder, valid from -60 s to +3600 s. */
resp_spec_t good_spec(void);

/** The DER response, from the pool. */
unsigned char *make_resp(const resp_spec_t *s, apr_size_t *len);

#endif /* STAPLE_TESTLIB_H */
