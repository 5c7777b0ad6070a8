/*
 * gen_seeds PKI_DIR OCSP_OUT ENTRY_OUT: write the seed responses of the
 * fuzz targets fuzz_ocsp_check and fuzz_entry_decode. Run by t/fuzz/mkseeds,
 * which makes the PKI in PKI_DIR (NAME.pem, NAME.key) with the openssl
 * command line; not part of the fuzz targets.
 *
 * Every response is for the fixed certificate leaf.pem issued by root.pem
 * (what t/fuzz/fuzz_pki.h embeds) unless its name says otherwise, so that
 * together they drive staple_ocsp_check() to each of its outcomes: the good
 * ones carry a nextUpdate 20 years ahead and keep verifying for that long.
 * Every response (within the size limit) is also written to ENTRY_OUT as a
 * shared cache record, resp_NAME.bin, next to records with broken headers.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>

#include "staple_entry.h"
#include "staple_util.h"

#define DAY      86400L
#define NONE     (-1L << 40) /* no nextUpdate */
#define YEARS(n) ((long)(n)*365 * DAY)

static const char *pki_dir, *ocsp_out, *entry_out;
static time_t now;
static X509 *root, *leaf, *other, *evil, *evilleaf, *responder, *noeku;
static EVP_PKEY *root_key, *evil_key, *responder_key, *noeku_key;

static void die(const char *what)
{
    fprintf(stderr, "gen_seeds: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static FILE *open_in(const char *name)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", pki_dir, name);
    if ((f = fopen(path, "r")) == NULL) {
        die(path);
    }
    return f;
}

static X509 *load_cert(const char *name)
{
    char file[256];
    FILE *f;
    X509 *x;

    snprintf(file, sizeof(file), "%s.pem", name);
    f = open_in(file);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        die(file);
    }
    return x;
}

static EVP_PKEY *load_key(const char *name)
{
    char file[256];
    FILE *f;
    EVP_PKEY *k;

    snprintf(file, sizeof(file), "%s.key", name);
    f = open_in(file);
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL) {
        die(file);
    }
    return k;
}

static void write_file(const char *dir, const char *name, const unsigned char *data,
                       size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(data, 1, len, f) != len ||
        fclose(f) != 0) {
        die(path);
    }
}

/* DER of a response, in a buffer to free() */
static unsigned char *der_of(OCSP_RESPONSE *resp, size_t *len)
{
    unsigned char *der = NULL, *copy;
    int n = i2d_OCSP_RESPONSE(resp, &der);

    if (n <= 0 || (copy = malloc((size_t)n + 1)) == NULL) {
        die("i2d_OCSP_RESPONSE");
    }
    memcpy(copy, der, (size_t)n);
    OPENSSL_free(der);
    *len = (size_t)n;
    return copy;
}

static void write_resp(const char *name, OCSP_RESPONSE *resp)
{
    size_t len;
    unsigned char *der = der_of(resp, &len);

    write_file(ocsp_out, name, der, len);
    free(der);
}

/* One SingleResponse. */
typedef struct {
    X509 *cert, *issuer; /* CertID of cert as issued by issuer */
    const EVP_MD *id_md; /* CertID hash (SHA-1 unless set) */
    int status;          /* V_OCSP_CERTSTATUS_* */
    int reason;          /* OCSP_REVOKED_STATUS_*, or -1 for none */
} single_t;

/* How the BasicOCSPResponse is made. */
typedef struct {
    long this_off, next_off; /* seconds from now; next_off NONE: no nextUpdate */
    X509 *signer;
    EVP_PKEY *key;
    const EVP_MD *md;
    unsigned long flags; /* OCSP_NOCERTS, OCSP_RESPID_KEY */
    int nonce;
} sign_t;

static ASN1_GENERALIZEDTIME *gtime(long off)
{
    ASN1_GENERALIZEDTIME *t =
        ASN1_GENERALIZEDTIME_adj(NULL, now, (int)(off / DAY), off % DAY);
    if (t == NULL) {
        die("ASN1_GENERALIZEDTIME_adj");
    }
    return t;
}

static OCSP_RESPONSE *make_resp(const single_t *singles, int n, const sign_t *s)
{
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_RESPONSE *resp;
    ASN1_GENERALIZEDTIME *thisupd = gtime(s->this_off);
    ASN1_GENERALIZEDTIME *nextupd = s->next_off == NONE ? NULL : gtime(s->next_off);
    ASN1_GENERALIZEDTIME *revtime = gtime(-30 * DAY);
    int i;

    if (bs == NULL) {
        die("OCSP_BASICRESP_new");
    }
    for (i = 0; i < n; i++) {
        const single_t *sg = &singles[i];
        OCSP_CERTID *id = OCSP_cert_to_id(sg->id_md ? sg->id_md : EVP_sha1(), sg->cert,
                                          sg->issuer ? sg->issuer : root);
        if (id == NULL || OCSP_basic_add1_status(
                              bs, id, sg->status, sg->reason,
                              sg->status == V_OCSP_CERTSTATUS_REVOKED ? revtime : NULL,
                              thisupd, nextupd) == NULL) {
            die("OCSP_basic_add1_status");
        }
        OCSP_CERTID_free(id);
    }
    if (s->nonce && !OCSP_basic_add1_nonce(bs, NULL, 16)) {
        die("OCSP_basic_add1_nonce");
    }
    if (!OCSP_basic_sign(bs, s->signer, s->key, s->md ? s->md : EVP_sha256(), NULL,
                         s->flags)) {
        die("OCSP_basic_sign");
    }
    resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    if (resp == NULL) {
        die("OCSP_response_create");
    }
    OCSP_BASICRESP_free(bs);
    ASN1_GENERALIZEDTIME_free(thisupd);
    ASN1_GENERALIZEDTIME_free(nextupd);
    ASN1_GENERALIZEDTIME_free(revtime);
    return resp;
}

/* A good response for leaf whose thisUpdate or nextUpdate (next) is set to
 * a raw string, possibly not a valid time, after OpenSSL checked it. */
static void raw_time(const char *name, int next, const char *value, const sign_t *s)
{
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), leaf, root);
    ASN1_GENERALIZEDTIME *thisupd = gtime(s->this_off), *nextupd = gtime(s->next_off);
    ASN1_GENERALIZEDTIME *t[2] = {NULL, NULL};
    OCSP_RESPONSE *resp;

    if (bs == NULL || id == NULL ||
        OCSP_basic_add1_status(bs, id, V_OCSP_CERTSTATUS_GOOD, -1, NULL, thisupd,
                               nextupd) == NULL ||
        OCSP_single_get0_status(OCSP_resp_get0(bs, 0), NULL, NULL, &t[0], &t[1]) < 0 ||
        !ASN1_STRING_set(t[next], value, -1) ||
        !OCSP_basic_sign(bs, s->signer, s->key, EVP_sha256(), NULL, s->flags) ||
        (resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)) == NULL) {
        die("raw_time");
    }
    write_resp(name, resp);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_GENERALIZEDTIME_free(thisupd);
    ASN1_GENERALIZEDTIME_free(nextupd);
}

/* A response with one SingleResponse for leaf. */
static void single(const char *name, int status, int reason, const sign_t *s)
{
    single_t sg = {leaf, root, NULL, status, reason};
    OCSP_RESPONSE *resp = make_resp(&sg, 1, s);

    write_resp(name, resp);
    OCSP_RESPONSE_free(resp);
}

static void status_only(const char *name, int status)
{
    OCSP_RESPONSE *resp = OCSP_response_create(status, NULL);

    if (resp == NULL) {
        die("OCSP_response_create");
    }
    write_resp(name, resp);
    OCSP_RESPONSE_free(resp);
}

/* A cache record around a response: as the shared cache stores it, or with
 * the header altered (hdr_len: bytes of the header to keep; len_delta added
 * to the DER length field; version and magic overrides). */
typedef struct {
    int version;   /* 0: as encoded */
    int bad_magic; /* flip the magic */
    long len_delta;
    int reserved; /* nonzero: set the reserved bytes */
    size_t keep;  /* 0: everything; else only this many bytes */
    apr_time_t fetched_at;
} entry_mod_t;

static void entry(const char *name, OCSP_RESPONSE *resp, const entry_mod_t *m)
{
    size_t der_len = 0, len;
    unsigned char *der = resp ? der_of(resp, &der_len) : calloc(1, 1);
    unsigned char *buf = malloc(STAPLE_ENTRY_HEADER_LEN + der_len + 1);
    unsigned long field;

    if (der == NULL || buf == NULL) {
        die("out of memory");
    }
    len = staple_entry_encode(buf, der, der_len, m->fetched_at);
    if (m->version) {
        buf[4] = (unsigned char)m->version;
    }
    if (m->bad_magic) {
        buf[0] ^= 0x20; /* "sTPL" */
    }
    if (m->reserved) {
        buf[5] = 0x01;
        buf[6] = 0x02;
        buf[7] = 0x03;
    }
    if (m->len_delta) {
        field = (unsigned long)((long)der_len + m->len_delta) & 0xffffffffUL;
        buf[16] = (unsigned char)(field >> 24);
        buf[17] = (unsigned char)(field >> 16);
        buf[18] = (unsigned char)(field >> 8);
        buf[19] = (unsigned char)field;
    }
    if (m->keep && m->keep < len) {
        len = m->keep;
    }
    write_file(entry_out, name, buf, len);
    free(buf);
    free(der);
}

/* Every response of OCSP_OUT within the size limit, as the shared cache
 * stores it: ENTRY_OUT/resp_NAME.bin. */
static void wrap_all(apr_time_t fetched_at)
{
    DIR *dir = opendir(ocsp_out);
    struct dirent *de;
    char path[4096], name[300];
    unsigned char *der = malloc(STAPLE_MAX_RESPONSE_LEN + 1);
    unsigned char *buf = malloc(STAPLE_ENTRY_HEADER_LEN + STAPLE_MAX_RESPONSE_LEN);
    size_t len, dot;
    FILE *f;

    if (dir == NULL || der == NULL || buf == NULL) {
        die("wrap_all");
    }
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", ocsp_out, de->d_name);
        if ((f = fopen(path, "rb")) == NULL) {
            die(path);
        }
        len = fread(der, 1, STAPLE_MAX_RESPONSE_LEN + 1, f);
        fclose(f);
        if (len == 0 || len > STAPLE_MAX_RESPONSE_LEN) {
            continue;
        }
        dot = strcspn(de->d_name, ".");
        snprintf(name, sizeof(name), "resp_%.*s.bin", (int)dot, de->d_name);
        write_file(entry_out, name, buf, staple_entry_encode(buf, der, len, fetched_at));
    }
    closedir(dir);
    free(der);
    free(buf);
}

int main(int argc, char **argv)
{
    const apr_time_t fetched = (apr_time_t)time(NULL) * APR_USEC_PER_SEC;
    const sign_t by_root = {-3600, YEARS(20), NULL, NULL, NULL, OCSP_NOCERTS, 0};
    sign_t s;
    single_t multi[3];
    OCSP_RESPONSE *good;
    unsigned char *der;
    size_t len;

    if (argc != 4) {
        fprintf(stderr, "usage: gen_seeds PKI_DIR OCSP_OUT ENTRY_OUT\n");
        return 2;
    }
    pki_dir = argv[1];
    ocsp_out = argv[2];
    entry_out = argv[3];
    now = time(NULL);

    root = load_cert("root");
    root_key = load_key("root");
    leaf = load_cert("leaf");
    other = load_cert("other");
    evil = load_cert("evil");
    evil_key = load_key("evil");
    evilleaf = load_cert("evilleaf");
    responder = load_cert("responder");
    responder_key = load_key("responder");
    noeku = load_cert("noeku");
    noeku_key = load_key("noeku");

#define SIGNED_BY(base, who, whokey) (s = (base), s.signer = (who), s.key = (whokey), &s)

    /* --- accepted (STAPLE_CHECK_OK) --- */
    /* signed by the issuer itself, no certificates, responder by name */
    single("good_ca_nocerts.der", V_OCSP_CERTSTATUS_GOOD, -1,
           SIGNED_BY(by_root, root, root_key));
    /* signed by the issuer, its certificate included, responder by key, SHA-384 */
    s = by_root;
    s.signer = root;
    s.key = root_key;
    s.flags = OCSP_RESPID_KEY;
    s.md = EVP_sha384();
    single("good_ca_certs_bykey.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    /* a delegated responder (OCSPSigning, issued by the issuer) with its cert */
    s = by_root;
    s.signer = responder;
    s.key = responder_key;
    s.flags = 0;
    s.nonce = 1;
    single("good_delegated.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    /* revoked is stapled too */
    single("revoked_keycompromise.der", V_OCSP_CERTSTATUS_REVOKED,
           OCSP_REVOKED_STATUS_KEYCOMPROMISE, SIGNED_BY(by_root, root, root_key));
    single("revoked_noreason.der", V_OCSP_CERTSTATUS_REVOKED, -1,
           SIGNED_BY(by_root, root, root_key));
    /* several SingleResponses, ours in the middle */
    multi[0] = (single_t){other, root, NULL, V_OCSP_CERTSTATUS_REVOKED,
                          OCSP_REVOKED_STATUS_SUPERSEDED};
    multi[1] = (single_t){leaf, root, NULL, V_OCSP_CERTSTATUS_GOOD, -1};
    multi[2] = (single_t){leaf, root, EVP_sha256(), V_OCSP_CERTSTATUS_GOOD, -1};
    good = make_resp(multi, 3, SIGNED_BY(by_root, root, root_key));
    write_resp("multi_good.der", good);
    OCSP_RESPONSE_free(good);
    /* thisUpdate 5 years ago: accepted with no maximum age (too-old with one) */
    s = by_root;
    s.signer = root;
    s.key = root_key;
    s.this_off = -YEARS(5);
    single("old_good.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    /* thisUpdate a minute ahead: within the 5 minute skew */
    s.this_off = 60;
    single("skew_good.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);

    /* extreme but valid times: nextUpdate at the end of year 9999,
     * thisUpdate in year 1 */
    s = by_root;
    s.signer = root;
    s.key = root_key;
    raw_time("next_update_9999.der", 1, "99991231235959Z", &s);
    raw_time("this_update_year_1.der", 0, "00010101000000Z", &s);

    /* --- refused after a verified signature --- */
    /* times that are not times (month 13; not digits) */
    raw_time("bad_this_update.der", 0, "20261301000000Z", &s);
    raw_time("bad_next_update.der", 1, "2046O101000000Z", &s);
    single("unknown.der", V_OCSP_CERTSTATUS_UNKNOWN, -1,
           SIGNED_BY(by_root, root, root_key));
    s = by_root;
    s.signer = root;
    s.key = root_key;
    s.next_off = NONE;
    single("no_next_update.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    s.this_off = -2 * DAY;
    s.next_off = -DAY;
    single("expired.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    s.this_off = DAY;
    s.next_off = YEARS(20);
    single("not_yet_valid.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    /* wrong certificate: another serial; our certificate with a SHA-256
     * CertID; our serial under another issuer with the same name (which
     * OCSP_basic_verify already refuses: the signer did not issue it) */
    multi[0] = (single_t){other, root, NULL, V_OCSP_CERTSTATUS_GOOD, -1};
    good = make_resp(multi, 1, SIGNED_BY(by_root, root, root_key));
    write_resp("wrong_cert_other_serial.der", good);
    OCSP_RESPONSE_free(good);
    multi[0] = (single_t){evilleaf, evil, NULL, V_OCSP_CERTSTATUS_GOOD, -1};
    good = make_resp(multi, 1, SIGNED_BY(by_root, root, root_key));
    write_resp("other_issuer_id.der", good);
    OCSP_RESPONSE_free(good);
    multi[0] = (single_t){leaf, root, EVP_sha256(), V_OCSP_CERTSTATUS_GOOD, -1};
    good = make_resp(multi, 1, SIGNED_BY(by_root, root, root_key));
    write_resp("wrong_cert_sha256_id.der", good);
    OCSP_RESPONSE_free(good);

    /* --- refused on the signature --- */
    /* a key that has the issuer's name but is not the issuer's */
    single("bad_signature_same_name.der", V_OCSP_CERTSTATUS_GOOD, -1,
           SIGNED_BY(by_root, evil, evil_key));
    s = by_root;
    s.signer = evil;
    s.key = evil_key;
    s.flags = 0;
    single("bad_signature_with_cert.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    /* a responder issued by the issuer but without OCSPSigning */
    s.signer = noeku;
    s.key = noeku_key;
    single("responder_no_eku.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);
    /* the delegated responder without its certificate: no signer to find */
    s.signer = responder;
    s.key = responder_key;
    s.flags = OCSP_NOCERTS;
    single("delegated_nocerts.der", V_OCSP_CERTSTATUS_GOOD, -1, &s);

    /* --- not successful, or not a usable response --- */
    status_only("status_malformed_request.der", OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    status_only("status_internal_error.der", OCSP_RESPONSE_STATUS_INTERNALERROR);
    status_only("status_try_later.der", OCSP_RESPONSE_STATUS_TRYLATER);
    status_only("status_sig_required.der", OCSP_RESPONSE_STATUS_SIGREQUIRED);
    status_only("status_unauthorized.der", OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    status_only("successful_without_body.der", OCSP_RESPONSE_STATUS_SUCCESSFUL);
    good = make_resp((single_t[]){{leaf, root, NULL, V_OCSP_CERTSTATUS_GOOD, -1}}, 1,
                     SIGNED_BY(by_root, root, root_key));
    der = der_of(good, &len);
    der[len] = 0x00;
    write_file(ocsp_out, "trailing_byte.der", der, len + 1);
    write_file(ocsp_out, "truncated.der", der, len / 2);
    free(der);
    /* one byte over STAPLE_MAX_RESPONSE_LEN: refused on its size alone */
    if ((der = calloc(1, STAPLE_MAX_RESPONSE_LEN + 1)) == NULL) {
        die("out of memory");
    }
    memcpy(der, "\x30\x83\x01\x00\x00", 5);
    write_file(ocsp_out, "too_large.der", der, STAPLE_MAX_RESPONSE_LEN + 1);
    free(der);
    OCSP_RESPONSE_free(good);

    /* --- shared cache records --- */
    good = make_resp((single_t[]){{leaf, root, NULL, V_OCSP_CERTSTATUS_GOOD, -1}}, 1,
                     SIGNED_BY(by_root, root, root_key));

    entry("good.bin", good, &(entry_mod_t){.fetched_at = fetched});
    entry("good_fetched_zero.bin", good, &(entry_mod_t){.fetched_at = 0});
    entry("good_fetched_negative.bin", good, &(entry_mod_t){.fetched_at = -1});
    entry("good_reserved_set.bin", good,
          &(entry_mod_t){.reserved = 1, .fetched_at = fetched});
    entry("bad_magic.bin", good, &(entry_mod_t){.bad_magic = 1, .fetched_at = fetched});
    entry("bad_version.bin", good, &(entry_mod_t){.version = 2, .fetched_at = fetched});
    entry("length_too_long.bin", good,
          &(entry_mod_t){.len_delta = 1, .fetched_at = fetched});
    entry("length_too_short.bin", good,
          &(entry_mod_t){.len_delta = -1, .fetched_at = fetched});
    entry("length_over_limit.bin", good,
          &(entry_mod_t){.len_delta = 0x10000, .fetched_at = fetched});
    entry("truncated_der.bin", good, &(entry_mod_t){.keep = 100, .fetched_at = fetched});
    entry("header_only.bin", NULL, &(entry_mod_t){.fetched_at = fetched});
    entry("short_header.bin", good, &(entry_mod_t){.keep = 12, .fetched_at = fetched});

    wrap_all(fetched);

    OCSP_RESPONSE_free(good);
    X509_free(root);
    X509_free(leaf);
    X509_free(other);
    X509_free(evil);
    X509_free(evilleaf);
    X509_free(responder);
    X509_free(noeku);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(evil_key);
    EVP_PKEY_free(responder_key);
    EVP_PKEY_free(noeku_key);
    return 0;
}
