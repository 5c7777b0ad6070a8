/*
 * The registry as an OCSP relay: requests matched by CertID against the
 * certificates stapled here, answered with the responses held, as the CA
 * signed them. Nothing is fetched on a request's behalf.
 */
#include <string.h>

#include <apr_atomic.h>
#include <apr_base64.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>

#include "staple_reg_int.h"

/* Larger requests are not OCSP requests for one certificate. */
#define STAPLE_RELAY_MAX_REQUEST 16384

static const char *const relay_names[STAPLE_RELAY_COUNT] = {
    "successful",
    "unauthorized",
    "malformed",
};

const char *staple_relay_name(staple_relay_e outcome)
{
    return (outcome >= 0 && outcome < STAPLE_RELAY_COUNT) ? relay_names[outcome]
                                                          : "invalid";
}

const unsigned char *staple_relay_error_der(staple_relay_e outcome, apr_size_t *len)
{
    /* OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } (RFC 6960) */
    static const unsigned char unauthorized[] = {0x30, 0x03, 0x0a, 0x01, 0x06};
    static const unsigned char malformed[] = {0x30, 0x03, 0x0a, 0x01, 0x01};

    *len = sizeof(unauthorized);
    return outcome == STAPLE_RELAY_MALFORMED ? malformed : unauthorized;
}

/* A CertID as bytes: its hash algorithm, issuer name and key hashes, and the
 * serial number. NULL when it has none of them. */
static const unsigned char *certid_key(const OCSP_CERTID *id, apr_size_t *klen,
                                       apr_pool_t *p)
{
    ASN1_OCTET_STRING *name = NULL, *key = NULL;
    ASN1_OBJECT *md = NULL;
    ASN1_INTEGER *serial = NULL;
    unsigned char *out, *o;
    int nid, nl, kl, sl;

    if (!OCSP_id_get0_info(&name, &md, &key, &serial, (OCSP_CERTID *)id) || !name ||
        !md || !key || !serial) {
        return NULL;
    }
    nid = OBJ_obj2nid(md);
    nl = ASN1_STRING_length(name);
    kl = ASN1_STRING_length(key);
    sl = ASN1_STRING_length(serial);
    if (nl < 0 || kl < 0 || sl < 0 || nl > 64 || kl > 64 || sl > 64) {
        return NULL;
    }
    *klen = sizeof(nid) + 3 + (apr_size_t)(nl + kl + sl);
    o = out = apr_palloc(p, *klen);
    memcpy(o, &nid, sizeof(nid));
    o += sizeof(nid);
    *o++ = (unsigned char)nl;
    memcpy(o, ASN1_STRING_get0_data(name), (apr_size_t)nl);
    o += nl;
    *o++ = (unsigned char)kl;
    memcpy(o, ASN1_STRING_get0_data(key), (apr_size_t)kl);
    o += kl;
    *o++ = (unsigned char)(ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER);
    memcpy(o, ASN1_STRING_get0_data(serial), (apr_size_t)sl);
    return out;
}

/* A GET's path longer than this holds no OCSP request for one certificate
 * (RFC 5019: GET only for requests under 255 bytes of base64): refused
 * before any decoding, with room to spare for the location and escapes. */
#define STAPLE_RELAY_MAX_GET_PATH 2048

/* The base64 may hold slashes of its own: at most this many candidates (a
 * slash's rest of the path that could be base64 of a request) are decoded,
 * the last ones of the path first. */
#define STAPLE_RELAY_GET_TRIES 8

/* The DER of text (tlen characters, then a NUL), base64 of one OCSP
 * request and nothing else, or NULL. */
static unsigned char *request_b64(apr_pool_t *p, const char *text, apr_size_t tlen,
                                  apr_size_t *len)
{
    const unsigned char *q;
    unsigned char *der;
    OCSP_REQUEST *req;
    int n;

    if (tlen == 0 || tlen % 4 != 0 ||
        strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                     "vwxyz0123456789+/=") != tlen) {
        return NULL;
    }
    der = apr_palloc(p, (apr_size_t)apr_base64_decode_len(text));
    n = apr_base64_decode((char *)der, text);
    q = der;
    if (n <= 0 || (req = d2i_OCSP_REQUEST(NULL, &q, n)) == NULL) {
        ERR_clear_error();
        return NULL;
    }
    OCSP_REQUEST_free(req);
    if (q != der + n) {
        return NULL;
    }
    *len = (apr_size_t)n;
    return der;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int staple_relay_get_request(apr_pool_t *p, const char *path, unsigned char **der,
                             apr_size_t *len)
{
    apr_size_t plen = strlen(path), o = 0, i, nstarts = 0, *starts;
    char *text;
    int tries = 0;

    if (plen > STAPLE_RELAY_MAX_GET_PATH) {
        return 0;
    }
    starts = apr_palloc(p, sizeof(*starts) * (plen + 1));
    /* the path %-decoded once, noting where the rest after each of its
     * slashes begins: the request follows one of them (a '/' of the base64
     * itself is one of them too when sent as it is, not as %2F) */
    text = apr_palloc(p, plen + 1);
    for (i = 0; i < plen; i++) {
        int hi, lo;
        if (path[i] == '%' && (hi = hex_digit(path[i + 1])) >= 0 &&
            (lo = hex_digit(path[i + 2])) >= 0) {
            text[o++] = (char)(hi << 4 | lo);
            i += 2;
            continue;
        }
        text[o++] = path[i];
        if (path[i] == '/') {
            starts[nstarts++] = o;
        }
    }
    text[o] = '\0';
    /* linear: at most STAPLE_RELAY_GET_TRIES candidates are decoded, only
     * those that can be base64 of a DER SEQUENCE (its tag 0x30 is an 'M'),
     * whole groups of four characters */
    while (nstarts > 0 && tries < STAPLE_RELAY_GET_TRIES) {
        apr_size_t s = starts[--nstarts];
        if (o - s == 0 || (o - s) % 4 != 0 || text[s] != 'M') {
            continue;
        }
        tries++;
        if ((*der = request_b64(p, text + s, o - s, len)) != NULL) {
            return 1;
        }
    }
    return 0;
}

void staple_reg_index_certids(staple_reg_t *reg, staple_item_t *it)
{
    const OCSP_CERTID *ids[] = {it->cert->certid, it->cert->certid256};
    unsigned i;

    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        apr_size_t klen;
        const unsigned char *key = ids[i] ? certid_key(ids[i], &klen, reg->pool) : NULL;
        if (key) {
            apr_hash_set(reg->by_certid, key, (apr_ssize_t)klen, it);
        }
    }
}

staple_relay_e staple_reg_relay(staple_reg_t *reg, const unsigned char *req,
                                apr_size_t len, staple_copy_fn *copy, void *baton,
                                apr_time_t *this_update, apr_time_t *next_update,
                                apr_pool_t *p)
{
    const unsigned char *q = req;
    OCSP_REQUEST *r = NULL;
    staple_relay_e outcome = STAPLE_RELAY_MALFORMED;

    if (len > 0 && len <= STAPLE_RELAY_MAX_REQUEST) {
        r = d2i_OCSP_REQUEST(NULL, &q, (long)len);
    }
    /* RFC 5019: one certificate a request; a nonce or other extensions are
     * ignored (the response is the CA's, made in advance) */
    if (r && q == req + len && OCSP_request_onereq_count(r) == 1) {
        OCSP_CERTID *id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(r, 0));
        apr_size_t klen = 0;
        const unsigned char *key = id ? certid_key(id, &klen, p) : NULL;
        staple_item_t *it =
            key ? apr_hash_get(reg->by_certid, key, (apr_ssize_t)klen) : NULL;

        outcome = it && staple_reg_copy(reg, it, copy, baton, this_update, next_update, p)
                      ? STAPLE_RELAY_SUCCESSFUL
                      : STAPLE_RELAY_UNAUTHORIZED;
    }
    OCSP_REQUEST_free(r);
    ERR_clear_error();
    apr_atomic_inc64(&reg->stats->relay[outcome]);
    return outcome;
}
