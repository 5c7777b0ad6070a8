/*
 * The registry as an OCSP relay: requests matched by CertID against the
 * certificates stapled here, answered with the responses held, as the CA
 * signed them. Nothing is fetched on a request's behalf.
 */
#include <string.h>

#include <apr_atomic.h>
#include <apr_base64.h>
#include <apr_escape.h>
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

/* The DER of text, base64 of one OCSP request and nothing else, or NULL. */
static unsigned char *request_b64(apr_pool_t *p, const char *text, apr_size_t *len)
{
    const unsigned char *q;
    unsigned char *der;
    OCSP_REQUEST *req;
    int n;

    if (*text == '\0' ||
        text[strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                          "vwxyz0123456789+/=")] != '\0' ||
        strlen(text) > STAPLE_RELAY_MAX_REQUEST * 2) {
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

int staple_relay_get_request(apr_pool_t *p, const char *path, unsigned char **der,
                             apr_size_t *len)
{
    const char *slash;

    /* the request is the rest of the path after one of its slashes (the
     * base64 may hold slashes of its own, sent as they are or as %2F) */
    for (slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
        const char *text = apr_punescape_url(p, slash + 1, NULL, NULL, 0);
        if (text && (*der = request_b64(p, text, len)) != NULL) {
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
