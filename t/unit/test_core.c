/*
 * Unit tests of mod_staple's core, without httpd: every stapling rule (accept
 * and reject), refresh timing, GET encoding, cache entries and the HTTP
 * fetcher against a small local server. The PKI and the OCSP responses are
 * made in memory with OpenSSL, so each rule is hit exactly.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "staple_entry.h"
#include "staple_store.h"
#include "staple_fetch.h"
#include "staple_ocsp.h"
#include "staple_timing.h"
#include "staple_util.h"
#include "testlib.h"

static staple_check_params_t params = {apr_time_from_sec(300), -1};

static staple_check_e check_spec(const resp_spec_t *s, staple_resp_info_t *info)
{
    apr_size_t len;
    unsigned char *der = make_resp(s, &len);
    char why[256];
    staple_check_e rc = staple_ocsp_check(leaf_sc, der, len, apr_time_now(), &params,
                                          info, why, sizeof(why));

    if (rc != STAPLE_CHECK_OK && why[0] == '\0') {
        fprintf(stderr, "  check %s gave no reason\n", staple_check_name(rc));
        checks_failed++;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Tests: certificates                                                 */

static void test_cert_load(void)
{
    unsigned char md[20];
    unsigned int mdlen;
    staple_cert_t *c;
    char err[256];

    CHECK(leaf_sc->issuer != NULL);
    CHECK(leaf_sc->must_staple == 1);
    CHECK(leaf_sc->self_signed == 0);
    CHECK(leaf_sc->ocsp_url && !strcmp(leaf_sc->ocsp_url, "http://127.0.0.1:1/ocsp"));
    CHECK(!strcmp(leaf_sc->subject, "CN=leaf.test"));
    X509_digest(leaf.cert, EVP_sha1(), md, &mdlen);
    CHECK(mdlen == 20 && !memcmp(md, leaf_sc->id, 20));
    CHECK(strlen(leaf_sc->id_hex) == 40);
    CHECK(leaf_sc->req_der != NULL && leaf_sc->req_len > 0);

    CHECK(staple_cert_load(&c, pool, to_pem(leaf2.cert, inter.cert), NULL, err,
                           sizeof(err)) == APR_SUCCESS);
    CHECK(c && c->must_staple == 0);

    /* issuer missing from the chain */
    CHECK(staple_cert_load(&c, pool, to_pem(leaf.cert, NULL), NULL, err, sizeof(err)) ==
          APR_NOTFOUND);
    CHECK(c && !c->self_signed);
    /* wrong certificate after the leaf */
    CHECK(staple_cert_load(&c, pool, to_pem(leaf.cert, other_root.cert), NULL, err,
                           sizeof(err)) == APR_NOTFOUND);
    /* self-signed */
    CHECK(staple_cert_load(&c, pool, to_pem(selfsigned.cert, NULL), NULL, err,
                           sizeof(err)) == APR_NOTFOUND);
    CHECK(c && c->self_signed && c->ocsp_url == NULL);
    /* garbage */
    CHECK(staple_cert_load(&c, pool, "not a certificate", NULL, err, sizeof(err)) ==
          APR_EINVAL);
}

/* Certificates of one CA share one parsed issuer; the id is found cheaply. */
static void test_issuer_set(void)
{
    staple_issuers_t *set = staple_issuers_make(pool, NULL);
    staple_cert_t *a, *b, *d;
    unsigned char id[20];
    char err[256], *pem;
    resp_spec_t s = good_spec();
    staple_resp_info_t info;
    apr_size_t len;
    unsigned char *der;
    char why[256];

    CHECK(staple_cert_load(&a, pool, to_pem(leaf.cert, inter.cert), set, err,
                           sizeof(err)) == APR_SUCCESS);
    CHECK(staple_cert_load(&b, pool, to_pem(leaf2.cert, inter.cert), set, err,
                           sizeof(err)) == APR_SUCCESS);
    CHECK(a->issuer != NULL && a->issuer == b->issuer);
    CHECK(staple_issuers_count(set) == 1);
    /* an interned certificate that did not issue this one is passed over */
    CHECK(staple_cert_load(&d, pool, to_pem(inter.cert, root.cert), set, err,
                           sizeof(err)) == APR_SUCCESS);
    CHECK(staple_issuers_count(set) == 2 && d->issuer != a->issuer);
    CHECK(staple_cert_load(&d, pool, to_pem(leaf.cert, root.cert), set, err,
                           sizeof(err)) == APR_NOTFOUND);
    CHECK(staple_issuers_count(set) == 2);
    /* verification through the shared issuer */
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(a, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_OK);

    pem = to_pem(leaf.cert, inter.cert);
    CHECK(staple_pem_first_id(pem, strlen(pem), id) == 1 && !memcmp(id, a->id, 20));
    /* blocks before the certificate are skipped */
    pem = apr_pstrcat(pool,
                      "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n"
                      "-----END EC PARAMETERS-----\n",
                      pem, NULL);
    CHECK(staple_pem_first_id(pem, strlen(pem), id) == 1 && !memcmp(id, a->id, 20));
    CHECK(staple_pem_first_id("no pem here", 11, id) == 0);
}

/* ------------------------------------------------------------------ */
/* Tests: what may be stapled                                          */

static void test_accept_delegated_good(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;
    apr_time_t now = apr_time_now();

    CHECK(check_spec(&s, &info) == STAPLE_CHECK_OK);
    CHECK(info.cert_status == V_OCSP_CERTSTATUS_GOOD);
    CHECK(info.reason == -1); /* only a revoked status has a reason */
    CHECK(info.next_update > now + apr_time_from_sec(3500));
    CHECK(info.this_update < now);
}

static void test_accept_issuer_signed_without_certs(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.signer = &inter;
    s.include_signer = 0;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_OK);
}

static void test_accept_revoked(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.status = V_OCSP_CERTSTATUS_REVOKED;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_OK);
    CHECK(info.cert_status == V_OCSP_CERTSTATUS_REVOKED);
    CHECK(info.revoked_at > 0);
}

static void test_reject_unknown(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.status = V_OCSP_CERTSTATUS_UNKNOWN;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_UNKNOWN);
}

static void test_reject_not_successful(void)
{
    static const int statuses[] = {
        OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, OCSP_RESPONSE_STATUS_INTERNALERROR,
        OCSP_RESPONSE_STATUS_TRYLATER, OCSP_RESPONSE_STATUS_SIGREQUIRED,
        OCSP_RESPONSE_STATUS_UNAUTHORIZED};
    staple_resp_info_t info;
    unsigned i;

    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        resp_spec_t s = good_spec();
        s.resp_status = statuses[i];
        CHECK(check_spec(&s, &info) == STAPLE_CHECK_NOT_SUCCESSFUL);
        CHECK(info.resp_status == statuses[i]);
    }
}

static void test_reject_unrelated_signer(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.signer = &stranger;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_SIGNATURE);
}

static void test_reject_responder_without_ocspsigning(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.signer = &responder_noeku;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_SIGNATURE);
}

static void test_reject_responder_of_other_ca(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.signer = &other_responder;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_SIGNATURE);
}

static void test_trusted_certificate(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;
    staple_cert_t *c;
    STACK_OF(X509) *trusted = sk_X509_new_null();
    char err[256];
    apr_size_t len;
    unsigned char *der;
    char why[256];

    /* a responder of another CA is accepted once that CA is trusted */
    sk_X509_push(trusted, other_root.cert);
    CHECK(staple_cert_load(&c, pool, to_pem(leaf.cert, inter.cert),
                           staple_issuers_make(pool, trusted), err,
                           sizeof(err)) == APR_SUCCESS);
    s.signer = &other_responder;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_OK);
    /* ... and not by the certificates that do not trust it */
    CHECK(staple_ocsp_check(leaf_sc, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_SIGNATURE);
    /* trusting another CA does not make an unrelated key acceptable */
    s.signer = &stranger;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_SIGNATURE);
    /* a listed CA admits only OCSPSigning certificates it issued itself:
     * not a plain certificate of it, nor a responder of its sub-CA */
    s.signer = &other_plain;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_SIGNATURE);
    s.signer = &other_inter_responder;
    s.extra = other_inter.cert;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_SIGNATURE);
    s.extra = NULL;
    /* a trusted responder certificate itself */
    s.signer = &stranger;
    der = make_resp(&s, &len);
    sk_X509_zero(trusted);
    sk_X509_push(trusted, stranger.cert);
    CHECK(staple_cert_load(&c, pool, to_pem(leaf.cert, inter.cert),
                           staple_issuers_make(pool, trusted), err,
                           sizeof(err)) == APR_SUCCESS);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_OK);
    /* exactly that certificate: not what it would issue, nor its name */
    s.signer = &other_responder;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_SIGNATURE);
    /* a listed plain certificate signing for itself is listed exactly too */
    sk_X509_zero(trusted);
    sk_X509_push(trusted, other_plain.cert);
    CHECK(staple_cert_load(&c, pool, to_pem(leaf.cert, inter.cert),
                           staple_issuers_make(pool, trusted), err,
                           sizeof(err)) == APR_SUCCESS);
    s.signer = &other_plain;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, apr_time_now(), &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_OK);
    sk_X509_free(trusted);
}

static void test_reject_issuer_signer_missing(void)
{
    /* signed by the delegated responder but its certificate left out:
     * nothing to verify the signature with */
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.include_signer = 0;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_SIGNATURE);
}

/* After a signer passed the whole verification once, its next responses
 * are checked by signature only: still every forgery is refused. */
static void test_vouched_signers(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;
    staple_cert_t *c;
    unsigned char *der;
    apr_size_t len;
    char err[256], why[256];
    apr_time_t now = apr_time_now();

    CHECK(staple_cert_load(&c, pool, to_pem(leaf.cert, inter.cert), NULL, err,
                           sizeof(err)) == APR_SUCCESS);
    CHECK(sk_X509_num(c->issuer->vouched) == 0);
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_OK);
    CHECK(sk_X509_num(c->issuer->vouched) == 1);
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_OK);
    CHECK(sk_X509_num(c->issuer->vouched) == 1);
    /* the delegated responder left out: clients could not verify it */
    s.include_signer = 0;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_SIGNATURE);
    /* signed by the issuer itself, no certificates: vouched too */
    s.signer = &inter;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_OK);
    CHECK(sk_X509_num(c->issuer->vouched) == 2);
    /* a changed signature of a vouched signer (its last byte ends the
     * response when no certificates follow) */
    der[len - 1] ^= 0x01;
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_SIGNATURE);
    /* changed signed data */
    der[len - 1] ^= 0x01;
    der[len / 3] ^= 0x01;
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) !=
          STAPLE_CHECK_OK);
    /* responders the issuer did not make fit for OCSP stay refused */
    s = good_spec();
    s.signer = &responder_noeku;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_SIGNATURE);
    s.signer = &other_responder;
    der = make_resp(&s, &len);
    CHECK(staple_ocsp_check(c, der, len, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_SIGNATURE);
    CHECK(sk_X509_num(c->issuer->vouched) == 2);

    /* a certificate bearing the issuer's name, riding along in a response
     * the issuer signed, is not what gets vouched for ... */
    {
        ident_t fake = issue("Test Inter", NULL, 1, "critical,OCSPSigning", NULL, 0);
        staple_cert_t *c2;
        CHECK(staple_cert_load(&c2, pool, to_pem(leaf.cert, inter.cert), NULL, err,
                               sizeof(err)) == APR_SUCCESS);
        s = good_spec();
        s.signer = &inter;
        s.include_signer = 0;
        s.extra = fake.cert;
        der = make_resp(&s, &len);
        CHECK(staple_ocsp_check(c2, der, len, now, &params, &info, why, sizeof(why)) ==
              STAPLE_CHECK_OK);
        CHECK(sk_X509_num(c2->issuer->vouched) == 1 &&
              !X509_cmp(sk_X509_value(c2->issuer->vouched, 0), inter.cert));
        /* ... and a response it signed is refused */
        s.signer = &fake;
        s.include_signer = 1;
        s.extra = NULL;
        der = make_resp(&s, &len);
        CHECK(staple_ocsp_check(c2, der, len, now, &params, &info, why, sizeof(why)) ==
              STAPLE_CHECK_SIGNATURE);
        CHECK(sk_X509_num(c2->issuer->vouched) == 1);
        X509_free(fake.cert);
        EVP_PKEY_free(fake.key);
    }
}

static void test_reject_other_certificate(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;

    s.subject = leaf2.cert;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_WRONG_CERT);
}

static void test_time_rules(void)
{
    resp_spec_t s;
    staple_resp_info_t info;

    s = good_spec();
    s.this_offset = 600; /* beyond the 300 s skew */
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_NOT_YET_VALID);

    s = good_spec();
    s.this_offset = 120; /* within the skew */
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_OK);

    s = good_spec();
    s.next_offset = NO_NEXT_UPDATE;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_NO_NEXT_UPDATE);

    s = good_spec();
    s.this_offset = -7200;
    s.next_offset = -10; /* passed: never stapled, whatever the skew */
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_EXPIRED);

    s = good_spec();
    s.this_offset = -7200;
    params.max_age = apr_time_from_sec(3600);
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_TOO_OLD);
    s.this_offset = -1800;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_OK);
    params.max_age = -1;
    s.this_offset = -7200;
    CHECK(check_spec(&s, &info) == STAPLE_CHECK_OK);
}

static void test_reject_bad_encoding(void)
{
    resp_spec_t s = good_spec();
    staple_resp_info_t info;
    apr_size_t len;
    unsigned char *der = make_resp(&s, &len);
    unsigned char *longer = apr_pcalloc(pool, len + 1);
    unsigned char *big = apr_pcalloc(pool, STAPLE_MAX_RESPONSE_LEN + 1);
    char why[256];
    apr_time_t now = apr_time_now();

    CHECK(staple_ocsp_check(leaf_sc, (const unsigned char *)"garbage", 7, now, &params,
                            &info, why, sizeof(why)) == STAPLE_CHECK_MALFORMED);
    CHECK(staple_ocsp_check(leaf_sc, der, len - 1, now, &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_MALFORMED);
    memcpy(longer, der, len);
    CHECK(staple_ocsp_check(leaf_sc, longer, len + 1, now, &params, &info, why,
                            sizeof(why)) == STAPLE_CHECK_MALFORMED);
    CHECK(staple_ocsp_check(leaf_sc, der, 0, now, &params, &info, why, sizeof(why)) ==
          STAPLE_CHECK_MALFORMED);
    CHECK(staple_ocsp_check(leaf_sc, big, STAPLE_MAX_RESPONSE_LEN + 1, now, &params,
                            &info, why, sizeof(why)) == STAPLE_CHECK_TOO_LARGE);
    /* a flipped bit in the signed data */
    der[len / 2] ^= 0x01;
    CHECK(staple_ocsp_check(leaf_sc, der, len, now, &params, &info, why, sizeof(why)) !=
          STAPLE_CHECK_OK);
}

static void test_check_names(void)
{
    int i;

    for (i = 0; i < STAPLE_CHECK_COUNT; i++) {
        CHECK(strcmp(staple_check_name((staple_check_e)i), "invalid") != 0);
    }
    CHECK(!strcmp(staple_check_name(STAPLE_CHECK_COUNT), "invalid"));
}

/* ------------------------------------------------------------------ */
/* Tests: timing                                                       */

static void test_refresh_due(void)
{
    staple_timing_t t = {50, -1, apr_time_from_sec(3600), apr_time_from_sec(30),
                         apr_time_from_sec(600)};
    apr_time_t now = apr_time_from_sec(1000000);
    apr_time_t due;

    /* 2 h validity, 50 %: due 1 h before nextUpdate; std timeout 1 h too */
    t.standard_timeout = apr_time_from_sec(86400);
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(7200), 0.0);
    CHECK(due == now + apr_time_from_sec(3600));
    /* jitter moves it earlier, by at most 5 % of the interval */
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(7200), 0.999);
    CHECK(due < now + apr_time_from_sec(3600));
    CHECK(due >= now + apr_time_from_sec(3600 - 180));
    /* jitter is capped at 5 minutes */
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(7 * 86400), 0.999);
    CHECK(due >= now + apr_time_from_sec(86400 - 300));
    /* standard timeout comes first */
    t.standard_timeout = apr_time_from_sec(3600);
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(7 * 86400), 0.0);
    CHECK(due == now + apr_time_from_sec(3600));
    /* absolute window */
    t.renew_pct = -1;
    t.renew_window = apr_time_from_sec(600);
    t.standard_timeout = apr_time_from_sec(86400);
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(3600), 0.0);
    CHECK(due == now + apr_time_from_sec(3000));
    /* never sooner than one minute after a fetch, while that leaves time */
    due = staple_refresh_due(&t, now, now - apr_time_from_sec(7000),
                             now + apr_time_from_sec(200), 0.5);
    CHECK(due == now + STAPLE_MIN_REFRESH_INTERVAL);
    /* but the minute never moves a refresh past nextUpdate: a response with
     * 30 s left is renewed in 5 s */
    due = staple_refresh_due(&t, now, now - apr_time_from_sec(1000),
                             now + apr_time_from_sec(30), 0.5);
    CHECK(due == now + STAPLE_MIN_REFRESH_GAP);
    CHECK(due < now + apr_time_from_sec(30));
    /* a response valid for a minute, fetched as it was made: renewed in time,
     * whatever the window (50 %, 20 %, or 0 s) and the jitter; a tenth of the
     * validity (5 s to 60 s) is left at least */
    t.renew_pct = 50;
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(60), 0.999);
    CHECK(due == now + apr_time_from_sec(30));
    t.renew_pct = 20;
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(60), 0.0);
    CHECK(due == now + apr_time_from_sec(48));
    t.renew_pct = -1;
    t.renew_window = 0;
    due = staple_refresh_due(&t, now, now, now + apr_time_from_sec(60), 0.0);
    CHECK(due == now + apr_time_from_sec(54));
    /* seconds left: no sooner than STAPLE_MIN_REFRESH_GAP, not a busy loop */
    due = staple_refresh_due(&t, now, now - apr_time_from_sec(60),
                             now + apr_time_from_sec(2), 0.0);
    CHECK(due == now + STAPLE_MIN_REFRESH_GAP);
}

static void test_retry_due(void)
{
    staple_timing_t t = {50, -1, apr_time_from_sec(3600), apr_time_from_sec(30),
                         apr_time_from_sec(600)};
    apr_time_t now = apr_time_from_sec(1000000);
    apr_interval_time_t prev = 0;
    int f;

    CHECK(staple_retry_due(&t, now, 1, 0.0) == now + apr_time_from_sec(30));
    CHECK(staple_retry_due(&t, now, 2, 0.0) == now + apr_time_from_sec(60));
    CHECK(staple_retry_due(&t, now, 3, 0.0) == now + apr_time_from_sec(120));
    CHECK(staple_retry_due(&t, now, 10, 0.0) == now + apr_time_from_sec(600));
    CHECK(staple_retry_due(&t, now, 1000, 0.0) == now + apr_time_from_sec(600));
    for (f = 1; f < 12; f++) {
        apr_interval_time_t d = staple_retry_due(&t, now, f, 0.999) - now;
        CHECK(d >= apr_time_from_sec(30) && d <= apr_time_from_sec(600));
        CHECK(d >= prev * 8 / 10);
        prev = d;
    }
}

/* ------------------------------------------------------------------ */
/* Tests: GET encoding, cache entries                                  */

static void test_get_url(void)
{
    const char *url = staple_ocsp_get_url(pool, "http://ocsp.test/x", leaf_sc->req_der,
                                          leaf_sc->req_len);
    const char *url2 = staple_ocsp_get_url(pool, "http://ocsp.test/x/", leaf_sc->req_der,
                                           leaf_sc->req_len);
    unsigned char big[200];

    CHECK(url != NULL && !strncmp(url, "http://ocsp.test/x/", 19));
    CHECK(url2 != NULL && !strcmp(url, url2));
    /* base64 '+', '/' and '=' are escaped, nothing else is needed */
    CHECK(url && strspn(url + 19, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789%") == strlen(url + 19));
    /* 192 bytes are 256 base64 characters: POST */
    memset(big, 0x41, sizeof(big));
    CHECK(staple_ocsp_get_url(pool, "http://o/", big, 192) == NULL);
    /* 191 bytes are exactly 255 characters once the padding is counted */
    CHECK(staple_ocsp_get_url(pool, "http://o/", big, 189) != NULL);
}

static void test_entry_codec(void)
{
    unsigned char der[100], buf[200];
    const unsigned char *out;
    apr_size_t len, out_len;
    apr_time_t fetched;
    const char *reason;

    memset(der, 7, sizeof(der));
    len = staple_entry_encode(buf, der, sizeof(der), apr_time_from_sec(12345));
    CHECK(len == STAPLE_ENTRY_HEADER_LEN + sizeof(der));
    CHECK(staple_entry_decode(buf, len, &out, &out_len, &fetched, &reason) ==
          APR_SUCCESS);
    CHECK(out_len == sizeof(der) && !memcmp(out, der, sizeof(der)));
    CHECK(fetched == apr_time_from_sec(12345));
    CHECK(staple_entry_decode(buf, len - 1, &out, &out_len, &fetched, &reason) ==
          APR_EINVAL);
    CHECK(staple_entry_decode(buf, 5, &out, &out_len, &fetched, &reason) == APR_EINVAL);
    buf[4] = 99;
    CHECK(staple_entry_decode(buf, len, &out, &out_len, &fetched, &reason) == APR_EINVAL);
    buf[4] = 1;
    buf[0] = 'X';
    CHECK(staple_entry_decode(buf, len, &out, &out_len, &fetched, &reason) == APR_EINVAL);
}

/* SIGALRM in a case that must not block: a failure, not a hang */
static void blocked(int sig)
{
    static const char msg[] = "  FAILED: blocked on a non-regular file in the store\n";

    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        /* exiting all the same */
    }
    _exit(1);
}

static void test_store(void)
{
    const char *tmpdir = getenv("TMPDIR");
    char *dir = apr_pstrcat(pool, tmpdir && *tmpdir ? tmpdir : "/tmp",
                            "/staple-unit-XXXXXX", NULL);
    unsigned char der[300], *back;
    apr_size_t len;
    apr_time_t mtime;
    struct stat st;
    char err[256];
    const char *path, *tmp;
    FILE *f;

    CHECK(mkdtemp(dir) != NULL);
    memset(der, 0x30, sizeof(der));
    CHECK(staple_store_load(dir, "abc", &back, &len, &mtime, pool) == APR_ENOENT);
    CHECK(staple_store_save(dir, "abc", der, sizeof(der), pool, err, sizeof(err)) ==
          APR_SUCCESS);
    path = staple_store_path(dir, "abc", pool);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(staple_store_load(dir, "abc", &back, &len, &mtime, pool) == APR_SUCCESS);
    CHECK(len == sizeof(der) && !memcmp(back, der, len));
    CHECK(mtime > apr_time_now() - apr_time_from_sec(60));
    /* overwritten in place, no temporary file left */
    der[0] = 0x31;
    CHECK(staple_store_save(dir, "abc", der, 10, pool, err, sizeof(err)) == APR_SUCCESS);
    CHECK(staple_store_load(dir, "abc", &back, &len, &mtime, pool) == APR_SUCCESS);
    CHECK(len == 10 && back[0] == 0x31);
    /* a file too large for any response is refused unread */
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        static char big[STAPLE_MAX_RESPONSE_LEN + 1];
        fwrite(big, 1, sizeof(big), f);
        fclose(f);
    }
    CHECK(staple_store_load(dir, "abc", &back, &len, &mtime, pool) == APR_ENOSPC);
    CHECK(staple_store_remove(dir, "abc", pool) == APR_SUCCESS);
    CHECK(staple_store_remove(dir, "abc", pool) == APR_SUCCESS);
    /* a FIFO under a response's name is refused at once, its open must not
     * block (the alarm turns a hang into a failure) */
    signal(SIGALRM, blocked);
    alarm(10);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(staple_store_load(dir, "abc", &back, &len, &mtime, pool) == APR_EINVAL);
    CHECK(staple_store_mtime(dir, "abc", &mtime, pool) == APR_EINVAL);
    CHECK(staple_store_remove(dir, "abc", pool) == APR_SUCCESS);
    /* and one under the temporary file's name is replaced, not written to */
    tmp = apr_psprintf(pool, "%s/.abc.%ld.tmp", dir, (long)getpid());
    CHECK(mkfifo(tmp, 0600) == 0);
    CHECK(staple_store_save(dir, "abc", der, 10, pool, err, sizeof(err)) == APR_SUCCESS);
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 10);
    CHECK(lstat(tmp, &st) != 0 && errno == ENOENT);
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    unlink(tmp);
    CHECK(staple_store_remove(dir, "abc", pool) == APR_SUCCESS);
    /* an unwritable place is an error with a reason, not a crash */
    CHECK(staple_store_save("/nonexistent/dir", "abc", der, 10, pool, err, sizeof(err)) !=
          APR_SUCCESS);
    CHECK(strstr(err, "/nonexistent/dir") != NULL);
    CHECK(rmdir(dir) == 0);
}

/*
 * mkdirat as staple_store_prepare calls it, with a race made to order: when
 * swap_dir is set and made, swap_with is renamed over it at once, the way
 * another process could between that mkdirat and the openat after it.
 */
static const char *swap_dir, *swap_with;

int mkdirat(int fd, const char *name, mode_t mode)
{
    int rc = (int)syscall(SYS_mkdirat, fd, name, mode);
    const char *base = swap_dir ? strrchr(swap_dir, '/') : NULL;

    if (rc == 0 && base && !strcmp(name, base + 1)) {
        if (rmdir(swap_dir) != 0 || rename(swap_with, swap_dir) != 0) {
            fprintf(stderr, "  cannot swap %s for %s: %s\n", swap_with, swap_dir,
                    strerror(errno));
            checks_failed++;
        }
        swap_dir = NULL;
    }
    return rc;
}

/* StapleStore's directory: refused, and nothing made under it, when the
 * parent path is made unsafe by changing it to owner:mode */
static void check_unsafe_parent(const char *top, const char *parent, uid_t owner,
                                mode_t mode, const char *what, const char *fix)
{
    const uid_t uid = 65534;
    const gid_t gid = 65534;
    const char *p = apr_pstrcat(pool, top, "/", parent, NULL);
    const char *dir = apr_pstrcat(pool, p, "/deeper/store", NULL);
    char err[1024];
    struct stat st;

    CHECK(mkdir(p, 0700) == 0 && chown(p, owner, 0) == 0 && chmod(p, mode) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 1, err, sizeof(err)) == APR_EACCES);
    CHECK(strstr(err, what) != NULL && strstr(err, fix) != NULL);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_EACCES);
    if (!strstr(err, what) || !strstr(err, fix)) {
        fprintf(stderr, "  %s: %s\n", parent, err);
        checks_failed++;
    }
    CHECK(strstr(err, apr_pstrcat(pool, "StapleStore ", dir, ": its parent directory ", p,
                                  " ", NULL)) != NULL);
    CHECK(lstat(apr_pstrcat(pool, p, "/deeper", NULL), &st) != 0 && errno == ENOENT);
    CHECK(rmdir(p) == 0);
}

/* Temporary files a killed process left in the store are swept, and
 * nothing else. */
static void test_store_sweep(void)
{
    const char *tmpdir = getenv("TMPDIR");
    char *dir = apr_pstrcat(pool, tmpdir && *tmpdir ? tmpdir : "/tmp",
                            "/staple-unit-sweep-XXXXXX", NULL);
    const char *names[] = {".abc.123.tmp", ".abc.124.tmp", "abc.der", ".fifo.1.tmp",
                           "x.tmp"};
    struct timespec old[2] = {{0, 0}, {0, 0}};
    struct stat st;
    int i;

    CHECK(mkdtemp(dir) != NULL);
    old[0].tv_sec = old[1].tv_sec = time(NULL) - 3600;
    for (i = 0; i < 5; i++) {
        const char *path = apr_pstrcat(pool, dir, "/", names[i], NULL);
        if (i == 3) {
            CHECK(mkfifo(path, 0600) == 0);
        } else {
            FILE *f = fopen(path, "w");
            CHECK(f != NULL && fclose(f) == 0);
        }
        if (i != 1) { /* .abc.124.tmp: just written */
            CHECK(utimensat(AT_FDCWD, path, old, AT_SYMLINK_NOFOLLOW) == 0);
        }
    }
    CHECK(staple_store_sweep(dir, apr_time_now() - apr_time_from_sec(600)) == 1);
    for (i = 0; i < 5; i++) {
        int there = lstat(apr_pstrcat(pool, dir, "/", names[i], NULL), &st) == 0;
        CHECK(there == (i != 0));
        if (there) {
            CHECK(unlink(apr_pstrcat(pool, dir, "/", names[i], NULL)) == 0);
        }
    }
    CHECK(staple_store_sweep(apr_pstrcat(pool, dir, "/missing", NULL), apr_time_now()) ==
          0);
    CHECK(rmdir(dir) == 0);
}

/* StapleStore's directory as root makes it: on opened directories only. */
static void test_store_prepare(void)
{
    const char *tmpdir = getenv("TMPDIR");
    char *top = apr_pstrcat(pool, tmpdir && *tmpdir ? tmpdir : "/tmp",
                            "/staple-unit-dir-XXXXXX", NULL);
    const uid_t uid = 65534, other = 1; /* nobody, daemon */
    const gid_t gid = 65534;
    char err[1024], *dir, *d;
    struct stat st;

    if (geteuid() != 0) {
        printf("# store directory: not root, the ownership cases are skipped\n");
        return;
    }
    CHECK(mkdtemp(top) != NULL && chmod(top, 0755) == 0);

    /* missing parents: created 0755, the store 0700 of the user */
    dir = apr_pstrcat(pool, top, "/a/b/store", NULL);
    CHECK(staple_store_prepare(dir, uid, gid, 1, err, sizeof(err)) == APR_SUCCESS);
    CHECK(strstr(err, "does not exist yet") != NULL);
    CHECK(stat(apr_pstrcat(pool, top, "/a", NULL), &st) != 0); /* checked only */
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_SUCCESS);
    CHECK(stat(apr_pstrcat(pool, top, "/a/b", NULL), &st) == 0 &&
          (st.st_mode & 07777) == 0755 && st.st_uid == 0);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700 && st.st_uid == uid &&
          st.st_gid == gid);
    /* again: nothing to change, nothing to say */
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_SUCCESS);
    CHECK(staple_store_prepare(dir, uid, gid, 1, err, sizeof(err)) == APR_SUCCESS &&
          err[0] == '\0');

    /* another user's directory is not taken over */
    CHECK(chown(dir, other, other) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) != APR_SUCCESS);
    CHECK(strstr(err, "not taken over") && strstr(err, dir));
    CHECK(stat(dir, &st) == 0 && st.st_uid == other);
    CHECK(staple_store_prepare(dir, uid, gid, 1, err, sizeof(err)) != APR_SUCCESS);

    /* root's and not empty: not taken over either; empty: it is */
    CHECK(chown(dir, 0, 0) == 0 && mkdir(apr_pstrcat(pool, dir, "/x", NULL), 0700) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) != APR_SUCCESS);
    CHECK(strstr(err, "not empty") != NULL);
    CHECK(rmdir(apr_pstrcat(pool, dir, "/x", NULL)) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_SUCCESS);
    CHECK(stat(dir, &st) == 0 && st.st_uid == uid);

    /* root's, empty, but everyone may write to it (/tmp, /dev/shm): not
     * taken over, in a check nor at startup */
    CHECK(chown(dir, 0, 0) == 0 && chmod(dir, 01777) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 1, err, sizeof(err)) == APR_EACCES);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_EACCES);
    CHECK(strstr(err, "others can write to it (mode 1777)") != NULL);
    CHECK(stat(dir, &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) == 01777);
    CHECK(chmod(dir, 0770) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_EACCES);
    CHECK(chmod(dir, 0700) == 0);
    CHECK(staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) == APR_SUCCESS);
    CHECK(stat(dir, &st) == 0 && st.st_uid == uid);

    /* a symbolic link as the store is refused, its target untouched */
    CHECK(symlink(dir, apr_pstrcat(pool, top, "/link", NULL)) == 0);
    CHECK(chown(dir, 0, 0) == 0);
    CHECK(staple_store_prepare(apr_pstrcat(pool, top, "/link", NULL), uid, gid, 0, err,
                               sizeof(err)) != APR_SUCCESS);
    CHECK(strstr(err, "symbolic link") != NULL);
    CHECK(stat(dir, &st) == 0 && st.st_uid == 0);

    /* in the parents, root's symbolic links are followed, others' not */
    CHECK(symlink(apr_pstrcat(pool, top, "/a", NULL),
                  apr_pstrcat(pool, top, "/ra", NULL)) == 0);
    CHECK(staple_store_prepare(apr_pstrcat(pool, top, "/ra/b/store", NULL), uid, gid, 0,
                               err, sizeof(err)) == APR_SUCCESS);
    CHECK(stat(dir, &st) == 0 && st.st_uid == uid);
    CHECK(symlink(apr_pstrcat(pool, top, "/a", NULL),
                  apr_pstrcat(pool, top, "/ua", NULL)) == 0);
    CHECK(lchown(apr_pstrcat(pool, top, "/ua", NULL), other, other) == 0);
    CHECK(chown(dir, 0, 0) == 0);
    CHECK(staple_store_prepare(apr_pstrcat(pool, top, "/ua/b/store", NULL), uid, gid, 0,
                               err, sizeof(err)) != APR_SUCCESS);
    CHECK(strstr(err, "symbolic link not owned by root") != NULL);
    CHECK(stat(dir, &st) == 0 && st.st_uid == 0);
    /* a relative path is refused */
    CHECK(staple_store_prepare("relative/store", uid, gid, 0, err, sizeof(err)) !=
          APR_SUCCESS);

    /* parents that others could change: refused, naming the parent and the
     * fix, before anything is made under them */
    check_unsafe_parent(top, "others", other, 0755, "belongs to ",
                        apr_pstrcat(pool, "chown root ", top, "/others,", NULL));
    check_unsafe_parent(top, "everyone", 0, 0777, "writable by every user (mode 0777",
                        apr_pstrcat(pool, "chmod go-w ", top, "/everyone,", NULL));
    check_unsafe_parent(top, "group", 0, 0770, "writable by its group (mode 0770",
                        apr_pstrcat(pool, "chmod go-w ", top, "/group,", NULL));
    check_unsafe_parent(top, "setgid", 0, 02775, "writable by its group (mode 2775",
                        apr_pstrcat(pool, "chmod go-w ", top, "/setgid,", NULL));
    /* sticky like /tmp, or the user's own: accepted */
    d = apr_pstrcat(pool, top, "/sticky/store", NULL);
    CHECK(mkdir(apr_pstrcat(pool, top, "/sticky", NULL), 0700) == 0 &&
          chmod(apr_pstrcat(pool, top, "/sticky", NULL), 01777) == 0);
    CHECK(staple_store_prepare(d, uid, gid, 0, err, sizeof(err)) == APR_SUCCESS);
    CHECK(stat(d, &st) == 0 && st.st_uid == uid && rmdir(d) == 0);
    d = apr_pstrcat(pool, top, "/users/store", NULL);
    CHECK(mkdir(apr_pstrcat(pool, top, "/users", NULL), 0755) == 0 &&
          chown(apr_pstrcat(pool, top, "/users", NULL), uid, gid) == 0);
    CHECK(staple_store_prepare(d, uid, gid, 0, err, sizeof(err)) == APR_SUCCESS);
    CHECK(stat(d, &st) == 0 && st.st_uid == uid && rmdir(d) == 0);

    /* a directory of root's with something in it, swapped in for the store
     * just made: still not taken over */
    d = apr_pstrcat(pool, top, "/users/store", NULL);
    swap_with = apr_pstrcat(pool, top, "/users/roots", NULL);
    CHECK(mkdir(swap_with, 0755) == 0 &&
          mkdir(apr_pstrcat(pool, swap_with, "/x", NULL), 0700) == 0);
    swap_dir = d;
    CHECK(staple_store_prepare(d, uid, gid, 0, err, sizeof(err)) == APR_EACCES);
    CHECK(swap_dir == NULL); /* swapped indeed */
    swap_dir = NULL;
    CHECK(strstr(err, "not empty") != NULL);
    CHECK(stat(d, &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) == 0755);
    CHECK(rmdir(apr_pstrcat(pool, d, "/x", NULL)) == 0 && rmdir(d) == 0 &&
          rmdir(apr_pstrcat(pool, top, "/users", NULL)) == 0 &&
          rmdir(apr_pstrcat(pool, top, "/sticky", NULL)) == 0);

    unlink(apr_pstrcat(pool, top, "/ua", NULL));
    unlink(apr_pstrcat(pool, top, "/ra", NULL));
    unlink(apr_pstrcat(pool, top, "/link", NULL));
    CHECK(rmdir(dir) == 0 && rmdir(apr_pstrcat(pool, top, "/a/b", NULL)) == 0 &&
          rmdir(apr_pstrcat(pool, top, "/a", NULL)) == 0 && rmdir(top) == 0);
}

/* What staple_url_shown makes of url is shown and, unless show is NULL
 * (url as it is), holds no "secret". */
static void check_shown(const char *url, const char *show)
{
    const char *got = staple_url_shown(pool, url);

    if (got == NULL || strcmp(got, show ? show : url) != 0 ||
        (show && strstr(got, "secret"))) {
        fprintf(stderr, "  FAILED: %s shown as %s, not %s\n", url, got ? got : "NULL",
                show ? show : url);
        checks_failed++;
    }
}

/* A URL's password is never shown, however apr_uri reads it */
static void test_url_shown(void)
{
    CHECK(staple_url_shown(pool, NULL) == NULL);
    check_shown("http://u:secret@h:1/x", "http://u@h:1/x");
    check_shown("https://u:secret@h/", "https://u@h/");
    check_shown("socks5h://u:secret@h", "socks5h://u@h");
    /* no scheme: apr_uri takes "u" for one, and finds no password */
    check_shown("u:secret@h:3128", "u@h:3128");
    check_shown("u:secret@h:3128/x", "u@h:3128/x");
    check_shown(":secret@h:3128", "@h:3128");
    /* an '@' in the password: all of it up to the last '@' goes */
    check_shown("http://u:sec@ret@h/", "http://u@h/");
    check_shown("u:sec@ret@h:3128", "u@h:3128");
    /* a port apr_uri refuses */
    check_shown("http://u:secret@h:port/", "http://u@h:port/");
    /* what curl takes and apr_uri reads otherwise: one slash, three, a '/'
     * in the password, a blank first, a scheme that is none */
    check_shown("http:/u:secret@h", "http:/u@h");
    check_shown("http:///u:secret@h", "http:///u@h");
    check_shown("http://u:sec/ret@h/", "http://u@h/");
    check_shown("u:sec/ret@h:3128", "u@h:3128");
    check_shown(" http://u:secret@h/", " http://u@h/");
    check_shown("my_scheme://u:secret@h/", "my_scheme@h/");
    /* an '@' in a path may hide part of it, never show a password */
    check_shown("http://h/a:secret@c", "http://h/a@c");
    /* nothing to hide: shown as they are, the user too */
    check_shown("h:3128", NULL);
    check_shown("http://h/", NULL);
    check_shown("http://u@h/", NULL);
    check_shown("u@h:3128", NULL);
    check_shown("http://h/a@b?c:d", NULL);
    check_shown("http://[::1]:3128/", NULL);
    check_shown("", NULL);
}

/* ------------------------------------------------------------------ */
/* Tests: the fetcher against a local server                           */

/* Serves one scripted answer per connection, in order, then exits. Each
 * request line is written to the pipe so the test can see the method. */
static pid_t serve(int lfd, int report_fd, const char *const *answers, int n)
{
    pid_t pid = fork();
    int i;

    if (pid != 0) {
        return pid;
    }
    alarm(20);
    for (i = 0; i < n; i++) {
        char req[4096];
        ssize_t got;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            _exit(1);
        }
        got = read(fd, req, sizeof(req) - 1);
        if (got > 0) {
            char *eol;
            req[got] = '\0';
            eol = strstr(req, "\r\n");
            if (eol) {
                *eol = '\0';
            }
            if (write(report_fd, req, strlen(req)) < 0 || write(report_fd, "\n", 1) < 0) {
                _exit(1);
            }
        }
        if (!strcmp(answers[i], "HANG")) {
            continue; /* never answered, kept open until the server exits */
        } else if (!strcmp(answers[i], "BIG")) {
            static char body[STAPLE_MAX_RESPONSE_LEN + 100];
            char head[128];
            int hl = snprintf(head, sizeof(head),
                              "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n",
                              (int)sizeof(body));
            memset(body, 'x', sizeof(body));
            if (write(fd, head, (size_t)hl) < 0 || write(fd, body, sizeof(body)) < 0) {
                /* the client may hang up early: that is the point */
            }
        } else if (write(fd, answers[i], strlen(answers[i])) < 0) {
            _exit(1);
        }
        close(fd);
    }
    sleep(5); /* keep hanging connections open; the test kills us */
    _exit(0);
}

static void test_fetch(void)
{
    static const char *const answers[] = {
        "HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\n"
        "Content-Length: 5\r\n\r\nhello",
        "HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        "BIG",
        "HANG",
        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    };
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), pfd[2], status;
    staple_fetch_opts_t opts = {apr_time_from_msec(1500), 1, NULL, "test"};
    staple_fetch_t f[5];
    apr_array_header_t *arr = apr_array_make(pool, 5, sizeof(staple_fetch_t *));
    unsigned char big_req[300];
    char url[64], seen[2048];
    ssize_t got;
    pid_t pid;
    int i;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(lfd, 8) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &salen) == 0);
    CHECK(pipe(pfd) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ocsp", ntohs(sa.sin_port));
    pid = serve(lfd, pfd[1], answers, 5);
    close(pfd[1]);

    memset(f, 0, sizeof(f));
    memset(big_req, 1, sizeof(big_req));
    for (i = 0; i < 5; i++) {
        f[i].url = url;
        f[i].req = leaf_sc->req_der;
        f[i].req_len = leaf_sc->req_len;
        APR_ARRAY_PUSH(arr, staple_fetch_t *) = &f[i];
    }
    f[4].req = big_req; /* too long for GET */
    f[4].req_len = sizeof(big_req);
    CHECK(staple_fetch_run(arr, &opts, 0, NULL, NULL, NULL, pool) == APR_SUCCESS);

    CHECK(f[0].status == APR_SUCCESS && f[0].body_len == 5 &&
          !memcmp(f[0].body, "hello", 5));
    CHECK(!strcmp(f[0].method, "GET"));
    CHECK(f[1].status != APR_SUCCESS && f[1].http_status == 500);
    CHECK(strstr(f[1].error, "500") != NULL);
    CHECK(f[2].status == APR_ENOSPC && f[2].body == NULL);
    CHECK(f[3].status == APR_TIMEUP);
    CHECK(f[3].duration >= apr_time_from_msec(1400) &&
          f[3].duration < apr_time_from_msec(3000));
    CHECK(f[4].status == APR_SUCCESS && !strcmp(f[4].method, "POST"));

    got = read(pfd[0], seen, sizeof(seen) - 1);
    seen[got > 0 ? got : 0] = '\0';
    CHECK(strstr(seen, "GET /ocsp/") != NULL);
    CHECK(strstr(seen, "POST /ocsp HTTP") != NULL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(pfd[0]);
    close(lfd);
}

static void test_fetch_unreachable(void)
{
    staple_fetch_opts_t opts = {apr_time_from_sec(2), 4, NULL, NULL};
    staple_fetch_t f;
    apr_array_header_t *arr = apr_array_make(pool, 1, sizeof(staple_fetch_t *));

    memset(&f, 0, sizeof(f));
    /* port 1 on loopback: connection refused at once */
    f.url = "http://127.0.0.1:1/";
    f.req = leaf_sc->req_der;
    f.req_len = leaf_sc->req_len;
    APR_ARRAY_PUSH(arr, staple_fetch_t *) = &f;
    CHECK(staple_fetch_run(arr, &opts, 0, NULL, NULL, NULL, pool) == APR_SUCCESS);
    CHECK(f.status != APR_SUCCESS && f.error[0] != '\0');
    /* a deadline already passed fails without any connection */
    CHECK(staple_fetch_run(arr, &opts, apr_time_now() - 1, NULL, NULL, NULL, pool) ==
          APR_SUCCESS);
    CHECK(f.status == APR_TIMEUP);
}

int main(void)
{
    test_init();

    run_case("certificate loading", test_cert_load);
    run_case("issuers shared between certificates", test_issuer_set);
    run_case("accept: delegated responder, good", test_accept_delegated_good);
    run_case("accept: signed by the issuer, no certs",
             test_accept_issuer_signed_without_certs);
    run_case("accept: revoked", test_accept_revoked);
    run_case("reject: status unknown", test_reject_unknown);
    run_case("reject: response status not successful", test_reject_not_successful);
    run_case("reject: signed by an unrelated key", test_reject_unrelated_signer);
    run_case("reject: responder without OCSPSigning",
             test_reject_responder_without_ocspsigning);
    run_case("reject: responder of another CA", test_reject_responder_of_other_ca);
    run_case("StapleTrustedCertificate anchors", test_trusted_certificate);
    run_case("reject: signer certificate missing", test_reject_issuer_signer_missing);
    run_case("reject: about another certificate", test_reject_other_certificate);
    run_case("vouched signers: signature only, forgeries refused", test_vouched_signers);
    run_case("time rules: skew, nextUpdate, max age", test_time_rules);
    run_case("reject: malformed, truncated, oversized", test_reject_bad_encoding);
    run_case("check names", test_check_names);
    run_case("refresh due time", test_refresh_due);
    run_case("retry backoff", test_retry_due);
    run_case("GET encoding", test_get_url);
    run_case("cache entry codec", test_entry_codec);
    run_case("store: atomic files, 0600, limits", test_store);
    run_case("store: temporary files left over are swept", test_store_sweep);
    run_case("store: the directory made safely as root", test_store_prepare);
    run_case("URLs shown without their password", test_url_shown);
    run_case("fetch: GET, POST, HTTP error, oversize, timeout", test_fetch);
    run_case("fetch: unreachable, deadline", test_fetch_unreachable);

    return test_done("unit");
}
