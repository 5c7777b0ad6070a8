#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "staple_fetch.h"
#include "testlib.h"

static void make_pki(void);

int checks_failed;
static int cases_passed, cases_failed;
apr_pool_t *pool;

void run_case(const char *name, void (*fn)(void))
{
    int before = checks_failed;

    fn();
    if (checks_failed == before) {
        cases_passed++;
        printf("ok - %s\n", name);
    } else {
        cases_failed++;
        printf("not ok - %s\n", name);
    }
}

void test_init(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    staple_fetch_global_init();
    make_pki();
}

int test_done(const char *what)
{
    printf("%s: %d passed, %d failed\n", what, cases_passed, cases_failed);
    apr_pool_destroy(pool);
    apr_terminate();
    return cases_failed ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* An in-memory PKI                                                    */

ident_t root, inter, leaf, leaf2, responder, responder_noeku, other_root, other_responder,
    other_plain, other_inter, other_inter_responder, stranger, selfsigned;
staple_cert_t *leaf_sc;
static long serial_counter = 1000;

static EVP_PKEY *new_key(void)
{
    return EVP_EC_gen("P-256");
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        fprintf(stderr, "bad extension %d=%s\n", nid, value);
        abort();
    }
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

ident_t issue(const char *cn, const ident_t *issuer, int ca, const char *eku,
              const char *aia, int must_staple)
{
    ident_t id;
    X509_NAME *name = X509_NAME_new();
    X509 *signer_cert;

    id.key = new_key();
    id.cert = X509_new();
    X509_set_version(id.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(id.cert), serial_counter++);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                               -1, 0);
    X509_set_subject_name(id.cert, name);
    X509_set_issuer_name(id.cert, issuer ? X509_get_subject_name(issuer->cert) : name);
    X509_gmtime_adj(X509_getm_notBefore(id.cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(id.cert), 86400L * 30);
    X509_set_pubkey(id.cert, id.key);
    signer_cert = issuer ? issuer->cert : id.cert;
    add_ext(id.cert, signer_cert, NID_basic_constraints,
            ca ? "critical,CA:TRUE" : "CA:FALSE");
    add_ext(id.cert, signer_cert, NID_subject_key_identifier, "hash");
    if (issuer) {
        add_ext(id.cert, signer_cert, NID_authority_key_identifier, "keyid");
    }
    if (ca) {
        add_ext(id.cert, signer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (eku) {
        add_ext(id.cert, signer_cert, NID_ext_key_usage, eku);
    }
    if (aia) {
        add_ext(id.cert, signer_cert, NID_info_access, aia);
    }
    if (must_staple) {
        add_ext(id.cert, signer_cert, NID_tlsfeature, "status_request");
    }
    X509_sign(id.cert, issuer ? issuer->key : id.key, EVP_sha256());
    X509_NAME_free(name);
    return id;
}

char *to_pem(X509 *a, X509 *b)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *s;
    long len;

    PEM_write_bio_X509(bio, a);
    if (b) {
        PEM_write_bio_X509(bio, b);
    }
    len = BIO_get_mem_data(bio, &data);
    s = apr_pstrmemdup(pool, data, (apr_size_t)len);
    BIO_free(bio);
    return s;
}

static void make_pki(void)
{
    char err[256];

    root = issue("Test Root", NULL, 1, NULL, NULL, 0);
    inter = issue("Test Inter", &root, 1, NULL, NULL, 0);
    leaf = issue("leaf.test", &inter, 0, "serverAuth", "OCSP;URI:http://127.0.0.1:1/ocsp",
                 1);
    leaf2 =
        issue("leaf2.test", &inter, 0, "serverAuth", "OCSP;URI:http://127.0.0.1:1/", 0);
    responder = issue("Responder", &inter, 0, "critical,OCSPSigning", NULL, 0);
    responder_noeku = issue("Responder no EKU", &inter, 0, "serverAuth", NULL, 0);
    other_root = issue("Other Root", NULL, 1, NULL, NULL, 0);
    other_responder =
        issue("Other Responder", &other_root, 0, "critical,OCSPSigning", NULL, 0);
    other_plain = issue("Other Plain", &other_root, 0, "serverAuth", NULL, 0);
    other_inter = issue("Other Inter", &other_root, 1, NULL, NULL, 0);
    other_inter_responder =
        issue("Other Inter Responder", &other_inter, 0, "critical,OCSPSigning", NULL, 0);
    stranger = issue("Stranger", NULL, 0, "critical,OCSPSigning", NULL, 0);
    selfsigned = issue("selfsigned.test", NULL, 0, NULL, NULL, 0);
    if (staple_cert_load(&leaf_sc, pool, to_pem(leaf.cert, inter.cert), NULL, err,
                         sizeof(err)) != APR_SUCCESS) {
        fprintf(stderr, "cannot load the test leaf: %s\n", err);
        abort();
    }
}

/* ------------------------------------------------------------------ */
/* Making OCSP responses                                               */

resp_spec_t good_spec(void)
{
    resp_spec_t s = {&responder,
                     1,
                     NULL,
                     NULL,
                     V_OCSP_CERTSTATUS_GOOD,
                     -60,
                     3600,
                     OCSP_RESPONSE_STATUS_SUCCESSFUL,
                     NULL,
                     0,
                     OCSP_REVOKED_STATUS_KEYCOMPROMISE,
                     0,
                     0};
    s.subject = leaf.cert;
    s.subject_issuer = inter.cert;
    return s;
}

unsigned char *make_resp(const resp_spec_t *s, apr_size_t *len)
{
    OCSP_RESPONSE *resp;
    unsigned char *der = NULL, *out;
    int n;

    if (s->resp_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        resp = OCSP_response_create(s->resp_status, NULL);
    } else {
        OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
        OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), s->subject, s->subject_issuer);
        time_t base = (time_t)apr_time_sec(s->base ? s->base : apr_time_now());
        ASN1_TIME *thisupd = ASN1_TIME_adj(NULL, base, 0, s->this_offset);
        ASN1_TIME *nextupd = s->next_offset == NO_NEXT_UPDATE
                                 ? NULL
                                 : ASN1_TIME_adj(NULL, base, 0, s->next_offset);
        ASN1_TIME *revtime = ASN1_TIME_adj(NULL, base, 0, -86400);
        STACK_OF(X509) *certs = sk_X509_new_null();

        if (s->extra) {
            sk_X509_push(certs, s->extra);
        }

        OCSP_basic_add1_status(bs, id, s->status, s->reason,
                               s->status == V_OCSP_CERTSTATUS_REVOKED ? revtime : NULL,
                               thisupd, nextupd);
        OCSP_basic_sign(bs, s->signer->cert, s->signer->key, EVP_sha256(), certs,
                        s->include_signer ? 0 : OCSP_NOCERTS);
        if (s->set_produced) {
            /* OCSP_basic_sign stamps the time of signing: set producedAt
             * and sign the response data again */
            ASN1_GENERALIZEDTIME *produced =
                (ASN1_GENERALIZEDTIME *)OCSP_resp_get0_produced_at(bs);
            const X509_ALGOR *alg = OCSP_resp_get0_tbs_sigalg(bs);
            ASN1_GENERALIZEDTIME_adj(produced, base, 0, s->produced_offset);
            ASN1_item_sign(ASN1_ITEM_rptr(OCSP_RESPDATA), (X509_ALGOR *)alg, NULL,
                           (ASN1_BIT_STRING *)OCSP_resp_get0_signature(bs),
                           (void *)OCSP_resp_get0_respdata(bs), s->signer->key,
                           EVP_sha256());
        }
        resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
        OCSP_BASICRESP_free(bs);
        OCSP_CERTID_free(id);
        ASN1_TIME_free(thisupd);
        ASN1_TIME_free(nextupd);
        ASN1_TIME_free(revtime);
        sk_X509_free(certs);
    }
    n = i2d_OCSP_RESPONSE(resp, &der);
    OCSP_RESPONSE_free(resp);
    out = apr_pmemdup(pool, der, (apr_size_t)n);
    OPENSSL_free(der);
    *len = (apr_size_t)n;
    return out;
}
