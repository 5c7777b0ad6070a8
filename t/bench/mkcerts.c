/*
 * t/bench/mkcerts.c -- many leaf certificates, fast, for the scale benchmark.
 *
 *   mkcerts ISSUER.pem ISSUER.key LEAF.key COUNT OCSP_URL OUTDIR INDEX
 *
 * Writes OUTDIR/hN.pem (N = 1..COUNT: the leaf for hN.localhost, then the
 * issuer, as SSLCertificateFile wants it), all with the public key of
 * LEAF.key (one key for every leaf: key generation would dominate), signed by
 * ISSUER with an AIA OCSP URL and subjectAltName DNS:hN.localhost, and
 * appends one "V" line per certificate to INDEX (the `openssl ca` database
 * that `openssl ocsp -index` reads).
 *
 * Build: cc -O2 -o mkcerts mkcerts.c $(pkg-config --cflags --libs openssl)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static void die(const char *what)
{
    fprintf(stderr, "mkcerts: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL || !X509_add_ext(cert, ext, -1)) {
        die("cannot add an extension");
    }
    X509_EXTENSION_free(ext);
}

int main(int argc, char **argv)
{
    FILE *f, *index;
    X509 *issuer;
    EVP_PKEY *issuer_key, *leaf_key;
    long count, i;
    char path[4096], name[64], value[4200], expiry[32];
    unsigned char serial[8];
    char serial_hex[17];
    const ASN1_TIME *na;
    struct tm tm;

    if (argc != 8) {
        fprintf(stderr, "usage: mkcerts ISSUER.pem ISSUER.key LEAF.key COUNT OCSP_URL "
                        "OUTDIR INDEX\n");
        return 2;
    }
    count = atol(argv[4]);
    if (count < 1 || count > 1000000) {
        die("COUNT: 1 to 1000000");
    }
    if ((f = fopen(argv[1], "r")) == NULL ||
        (issuer = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) {
        die("cannot read the issuer certificate");
    }
    fclose(f);
    if ((f = fopen(argv[2], "r")) == NULL ||
        (issuer_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
        die("cannot read the issuer key");
    }
    fclose(f);
    if ((f = fopen(argv[3], "r")) == NULL ||
        (leaf_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
        die("cannot read the leaf key");
    }
    fclose(f);
    if ((index = fopen(argv[7], "a")) == NULL) {
        die("cannot append to the index");
    }

    for (i = 1; i <= count; i++) {
        X509 *x = X509_new();
        X509_NAME *subj = X509_NAME_new();
        BIGNUM *bn;
        int j;

        snprintf(name, sizeof(name), "h%ld.localhost", i);
        X509_set_version(x, 2);
        if (RAND_bytes(serial, sizeof(serial)) != 1) {
            die("RAND_bytes");
        }
        serial[0] &= 0x7f;
        serial[0] |= 0x10; /* positive, 16 hex digits */
        for (j = 0; j < 8; j++) {
            snprintf(serial_hex + 2 * j, 3, "%02X", serial[j]);
        }
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
        BN_free(bn);
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)name,
                                   -1, -1, 0);
        X509_set_subject_name(x, subj);
        X509_set_issuer_name(x, X509_get_subject_name(issuer));
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
        X509_set_pubkey(x, leaf_key);
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
        add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
        snprintf(value, sizeof(value), "DNS:%s", name);
        add_ext(x, issuer, NID_subject_alt_name, value);
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
        snprintf(value, sizeof(value), "OCSP;URI:%s", argv[5]);
        add_ext(x, issuer, NID_info_access, value);
        if (!X509_sign(x, issuer_key, EVP_sha256())) {
            die("cannot sign");
        }
        snprintf(path, sizeof(path), "%s/h%ld.pem", argv[6], i);
        if ((f = fopen(path, "w")) == NULL) {
            die("cannot write a certificate");
        }
        PEM_write_X509(f, x);
        PEM_write_X509(f, issuer);
        fclose(f);

        na = X509_get0_notAfter(x);
        if (!ASN1_TIME_to_tm(na, &tm)) {
            die("ASN1_TIME_to_tm");
        }
        strftime(expiry, sizeof(expiry), "%y%m%d%H%M%SZ", &tm);
        fprintf(index, "V\t%s\t\t%s\tunknown\t/CN=%s\n", expiry, serial_hex, name);
        X509_NAME_free(subj);
        X509_free(x);
    }
    fclose(index);
    X509_free(issuer);
    EVP_PKEY_free(issuer_key);
    EVP_PKEY_free(leaf_key);
    return 0;
}
