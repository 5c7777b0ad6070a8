/*
 * Whether a response may be stapled, and which of two is newer.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>

#include <apr_base64.h>
#include <apr_escape.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "staple_ocsp.h"

/* RFC 5019 section 5: GET only while the base64 request stays this short. */
#define STAPLE_GET_MAX_B64 255

static const char *const check_names[STAPLE_CHECK_COUNT] = {
    "ok",         "too-large",      "malformed",     "not-successful", "signature",
    "wrong-cert", "unknown-status", "not-yet-valid", "no-next-update", "expired",
    "too-old",
};

const char *staple_check_name(staple_check_e rc)
{
    return (rc >= 0 && rc < STAPLE_CHECK_COUNT) ? check_names[rc] : "invalid";
}

const char *staple_cert_status_name(int cert_status)
{
    switch (cert_status) {
    case V_OCSP_CERTSTATUS_GOOD:
        return "good";
    case V_OCSP_CERTSTATUS_REVOKED:
        return "revoked";
    default:
        return "unknown";
    }
}

static staple_check_e fail(staple_check_e rc, char *why, apr_size_t whylen,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static staple_check_e fail(staple_check_e rc, char *why, apr_size_t whylen,
                           const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    ERR_clear_error();
    return rc;
}

/* The OpenSSL errors queued by a failed check, oldest first, with the
 * detail some of them carry (such as "Verify error:..."). */
static const char *openssl_error(char *buf, apr_size_t len)
{
    apr_size_t used = 0;
    unsigned long e;
    const char *data;
    int flags;

    buf[0] = '\0';
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0 &&
           used + 1 < len) {
#else
    while ((e = ERR_get_error_line_data(NULL, NULL, &data, &flags)) != 0 &&
           used + 1 < len) {
#endif
        const char *reason = ERR_reason_error_string(e);
        apr_snprintf(buf + used, len - used, "%s%s%s%s%s", used ? ", " : "",
                     reason ? reason : "unknown error",
                     (flags & ERR_TXT_STRING) && data && *data ? " (" : "",
                     (flags & ERR_TXT_STRING) && data ? data : "",
                     (flags & ERR_TXT_STRING) && data && *data ? ")" : "");
        used = strlen(buf);
    }
    return used ? buf : "no detail";
}

/* At most this many signers vouched for per issuer. */
#define STAPLE_VOUCHED_MAX 4

static apr_time_t cert_time(const ASN1_TIME *t)
{
    apr_time_t at = 0;

    staple_asn1_to_time(t, &at);
    return at;
}

/*
 * Remember a signer that passed the whole verification: the issuer itself,
 * or a responder it signed (one chaining to a StapleTrustedCertificate
 * anchor is verified in full each time). One per subject: a renewed
 * responder certificate replaces the old one.
 */
static void vouch(staple_issuer_t *is, X509 *signer)
{
    apr_time_t from, until;
    int i;

    /* names and key identifiers, then the signature itself: a signer that
     * only a StapleTrustedCertificate anchor vouches for is not cached */
    if (signer != is->x509 && X509_cmp(signer, is->x509) != 0 &&
        (X509_check_issued(is->x509, signer) != X509_V_OK ||
         X509_verify(signer, X509_get0_pubkey(is->x509)) != 1)) {
        ERR_clear_error();
        return;
    }
    from = cert_time(X509_get0_notBefore(signer));
    until = cert_time(X509_get0_notAfter(signer));
    if (!CRYPTO_THREAD_write_lock(is->lock)) {
        return;
    }
    for (i = sk_X509_num(is->vouched) - 1; i >= 0; i--) {
        X509 *v = sk_X509_value(is->vouched, i);
        if (!X509_cmp(v, signer)) {
            goto out; /* another thread was first */
        }
        if (!X509_NAME_cmp(X509_get_subject_name(v), X509_get_subject_name(signer))) {
            X509_free(sk_X509_delete(is->vouched, i));
        }
    }
    if (sk_X509_num(is->vouched) == 0) {
        /* the issuer bounds every chain */
        is->vouched_from = cert_time(X509_get0_notBefore(is->x509));
        is->vouched_until = cert_time(X509_get0_notAfter(is->x509));
    }
    if (sk_X509_num(is->vouched) < STAPLE_VOUCHED_MAX && X509_up_ref(signer)) {
        if (!sk_X509_push(is->vouched, signer)) {
            X509_free(signer);
            goto out;
        }
        if (from > is->vouched_from) {
            is->vouched_from = from;
        }
        if (until < is->vouched_until) {
            is->vouched_until = until;
        }
    }
out:
    CRYPTO_THREAD_unlock(is->lock);
}

/* 1 when every SingleResponse is about a certificate of this one's issuer,
 * as OCSP_basic_verify's own issuer checks demand of the whole response. */
static int one_issuer(OCSP_BASICRESP *basic, const OCSP_CERTID *certid)
{
    int i, n = OCSP_resp_count(basic);

    for (i = 0; i < n; i++) {
        const OCSP_CERTID *id = OCSP_SINGLERESP_get0_id(OCSP_resp_get0(basic, i));
        if (id == NULL || OCSP_id_issuer_cmp(id, certid) != 0) {
            return 0;
        }
    }
    return n > 0;
}

/* 1 when x carries id-kp-OCSPSigning and is valid now. */
static int ocsp_signer_now(X509 *x)
{
    return (X509_get_extension_flags(x) & EXFLAG_XKUSAGE) &&
           (X509_get_extended_key_usage(x) & XKU_OCSP_SIGN) &&
           X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
           X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
}

/*
 * StapleTrustedCertificate trusts exactly what it lists, as openssl ocsp
 * -VAfile and mod_ssl's SSLOCSPResponderCertificateFile do: a response
 * signed by a listed certificate's key, found among the listed ones only;
 * or signed by a certificate that a listed CA certificate itself issued
 * and that carries id-kp-OCSPSigning. Any other certificate under a listed
 * CA (a plain serverAuth certificate, or one of a sub-CA) signs nothing.
 */
static int verify_trusted(const STACK_OF(X509) *trusted, OCSP_BASICRESP *basic,
                          X509_STORE *store)
{
    STACK_OF(X509) *one = NULL;
    X509 *signer = NULL;
    int ok = 0, i;

    /* the signer is looked up in the list alone (NOINTERN) and then needs
     * no chain (TRUSTOTHER): the signature is checked with its key */
    if (OCSP_basic_verify(basic, (STACK_OF(X509) *)trusted, store,
                          OCSP_TRUSTOTHER | OCSP_NOINTERN) > 0) {
        return 1;
    }
    if (OCSP_resp_get0_signer(basic, &signer, NULL) != 1 || !ocsp_signer_now(signer)) {
        goto out;
    }
    for (i = 0; !ok && i < sk_X509_num(trusted); i++) {
        X509 *ca = sk_X509_value(trusted, i);
        if (X509_check_ca(ca) > 0 && X509_check_issued(ca, signer) == X509_V_OK &&
            X509_verify(signer, X509_get0_pubkey(ca)) == 1 &&
            (one || (one = sk_X509_new_null()) != NULL) && sk_X509_push(one, signer)) {
            ok =
                OCSP_basic_verify(basic, one, store, OCSP_TRUSTOTHER | OCSP_NOINTERN) > 0;
            sk_X509_zero(one);
        }
    }
out:
    sk_X509_free(one);
    return ok;
}

/*
 * OCSP_basic_verify, with the chain checks of a signer verified before for
 * this issuer skipped while every certificate involved is valid: only the
 * response's signature is checked then, with the vouched certificate's key.
 * What clients would refuse is refused as before: the signer must come
 * with the response (or be the issuer), as clients need it to verify the
 * staple, and every status in it must be about this issuer's certificates.
 */
static int verify_response(const staple_cert_t *cert, OCSP_BASICRESP *basic)
{
    staple_issuer_t *is = (staple_issuer_t *)cert->issuer; /* vouched changes */
    apr_time_t now = apr_time_now();
    X509 *signer = NULL;
    int ok = 0, expired = 0, i;

    /* the issuer first, then the certificates the response carries: the
     * order OCSP_basic_verify looks in below, so that what is vouched for
     * is the certificate that passed (a certificate in the response that
     * merely bears the issuer's name is never taken for it) */
    if (OCSP_resp_get0_signer(basic, &signer, is->signers) != 1) {
        signer = NULL;
    }
    if (signer && one_issuer(basic, cert->certid) && CRYPTO_THREAD_read_lock(is->lock)) {
        if (sk_X509_num(is->vouched) > 0 &&
            (now < is->vouched_from || now >= is->vouched_until)) {
            expired = 1;
        }
        for (i = 0; !expired && i < sk_X509_num(is->vouched); i++) {
            X509 *v = sk_X509_value(is->vouched, i);
            if (!X509_cmp(v, signer)) {
                /* signature only (TRUSTOTHER), with this vouched copy alone
                 * (NOINTERN: not with one the response carries) */
                STACK_OF(X509) *one = sk_X509_new_null();
                if (one && sk_X509_push(one, v)) {
                    ok = OCSP_basic_verify(basic, one, is->store,
                                           OCSP_TRUSTOTHER | OCSP_NOINTERN) > 0;
                }
                sk_X509_free(one);
                break;
            }
        }
        CRYPTO_THREAD_unlock(is->lock);
    }
    if (ok) {
        return 1;
    }
    ERR_clear_error();
    if (expired && CRYPTO_THREAD_write_lock(is->lock)) {
        /* outside the window: vouch again for what still verifies */
        while (sk_X509_num(is->vouched) > 0) {
            X509_free(sk_X509_pop(is->vouched));
        }
        CRYPTO_THREAD_unlock(is->lock);
    }
    if (OCSP_basic_verify(basic, is->signers, is->store, OCSP_NOEXPLICIT) <= 0) {
        return is->trusted && verify_trusted(is->trusted, basic, is->store);
    }
    if (signer) {
        vouch(is, signer);
    }
    return 1;
}

staple_check_e staple_ocsp_check(const staple_cert_t *cert, const unsigned char *der,
                                 apr_size_t len, apr_time_t now,
                                 const staple_check_params_t *params,
                                 staple_resp_info_t *info, char *why, apr_size_t whylen)
{
    const unsigned char *ptr = der;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *basic = NULL;
    ASN1_GENERALIZEDTIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
    staple_check_e rc = STAPLE_CHECK_OK;
    char ebuf[256];
    int status, reason = -1; /* OCSP_resp_find_status sets it for revoked only */

    memset(info, 0, sizeof(*info));
    info->resp_status = -1;
    info->cert_status = -1;
    info->reason = -1;
    why[0] = '\0';

    if (len > STAPLE_MAX_RESPONSE_LEN) {
        return fail(STAPLE_CHECK_TOO_LARGE, why, whylen,
                    "response of %" APR_SIZE_T_FMT " bytes exceeds the %d byte limit",
                    len, STAPLE_MAX_RESPONSE_LEN);
    }
    if (cert->certid == NULL) {
        return fail(STAPLE_CHECK_WRONG_CERT, why, whylen, "certificate has no issuer");
    }
    if (len == 0 || len > LONG_MAX ||
        (resp = d2i_OCSP_RESPONSE(NULL, &ptr, (long)len)) == NULL || ptr != der + len) {
        rc = fail(STAPLE_CHECK_MALFORMED, why, whylen,
                  "not a DER OCSP response (%" APR_SIZE_T_FMT " bytes)", len);
        goto out;
    }
    info->resp_status = OCSP_response_status(resp);
    if (info->resp_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        rc = fail(STAPLE_CHECK_NOT_SUCCESSFUL, why, whylen, "response status is %s (%d)",
                  OCSP_response_status_str(info->resp_status), info->resp_status);
        goto out;
    }
    if ((basic = OCSP_response_get1_basic(resp)) == NULL) {
        rc = fail(STAPLE_CHECK_MALFORMED, why, whylen, "no basic OCSP response inside");
        goto out;
    }
    /* The issuer is offered as a possible signer (responses signed by the CA
     * itself often carry no certificates); delegated responders must chain to
     * the issuer and carry id-kp-OCSPSigning, which OCSP_basic_verify checks. */
    if (!verify_response(cert, basic)) {
        rc = fail(STAPLE_CHECK_SIGNATURE, why, whylen,
                  "signature not verified against the issuer: %s",
                  openssl_error(ebuf, sizeof(ebuf)));
        goto out;
    }
    {
        const ASN1_GENERALIZEDTIME *produced = OCSP_resp_get0_produced_at(basic);
        staple_asn1_to_time(produced, &info->produced_at);
    }
    if (!OCSP_resp_find_status(basic, cert->certid, &status, &reason, &revtime, &thisupd,
                               &nextupd)) {
        rc = fail(STAPLE_CHECK_WRONG_CERT, why, whylen,
                  "no status for serial %s in the response", cert->serial);
        goto out;
    }
    info->cert_status = status;
    info->reason = reason;
    if (revtime) {
        staple_asn1_to_time(revtime, &info->revoked_at);
    }
    if (!thisupd || !staple_asn1_to_time(thisupd, &info->this_update)) {
        rc = fail(STAPLE_CHECK_MALFORMED, why, whylen, "thisUpdate unreadable");
        goto out;
    }
    if (nextupd && !staple_asn1_to_time(nextupd, &info->next_update)) {
        rc = fail(STAPLE_CHECK_MALFORMED, why, whylen, "nextUpdate unreadable");
        goto out;
    }
    if (status != V_OCSP_CERTSTATUS_GOOD && status != V_OCSP_CERTSTATUS_REVOKED) {
        rc = fail(STAPLE_CHECK_UNKNOWN, why, whylen, "certificate status is unknown");
        goto out;
    }
    /* a producedAt in the future would hold off every later response
     * (freshness only moves forward): refused like such a thisUpdate */
    if (info->this_update > now + params->time_skew ||
        info->produced_at > now + params->time_skew) {
        int tu = info->this_update > now + params->time_skew;
        rc = fail(STAPLE_CHECK_NOT_YET_VALID, why, whylen,
                  "%s is %" APR_TIME_T_FMT "s in the future, beyond the allowed skew of "
                  "%" APR_TIME_T_FMT "s",
                  tu ? "thisUpdate" : "producedAt",
                  apr_time_sec((tu ? info->this_update : info->produced_at) - now),
                  apr_time_sec(params->time_skew));
        goto out;
    }
    if (nextupd == NULL) {
        rc = fail(STAPLE_CHECK_NO_NEXT_UPDATE, why, whylen,
                  "response has no nextUpdate, so no end of validity");
        goto out;
    }
    if (now >= info->next_update) {
        rc = fail(STAPLE_CHECK_EXPIRED, why, whylen,
                  "nextUpdate passed %" APR_TIME_T_FMT "s ago",
                  apr_time_sec(now - info->next_update));
        goto out;
    }
    if (params->max_age >= 0 && now - info->this_update > params->max_age) {
        rc = fail(STAPLE_CHECK_TOO_OLD, why, whylen,
                  "thisUpdate is %" APR_TIME_T_FMT "s old, more than the maximum age of "
                  "%" APR_TIME_T_FMT "s",
                  apr_time_sec(now - info->this_update), apr_time_sec(params->max_age));
        goto out;
    }

out:
    OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return rc;
}

staple_fresh_e staple_resp_compare(const staple_resp_info_t *held,
                                   const staple_resp_info_t *cand)
{
    int newer;

    if (held->produced_at == 0 && held->this_update == 0) {
        return STAPLE_FRESH_NEWER;
    }
    if (cand->produced_at != held->produced_at) {
        newer = cand->produced_at > held->produced_at;
    } else if (cand->this_update != held->this_update) {
        newer = cand->this_update > held->this_update;
    } else {
        newer = -1; /* the same times */
    }
    if (held->cert_status == V_OCSP_CERTSTATUS_REVOKED &&
        cand->cert_status != V_OCSP_CERTSTATUS_REVOKED &&
        !(newer == 1 && held->reason == OCSP_REVOKED_STATUS_CERTIFICATEHOLD)) {
        return STAPLE_FRESH_UNREVOKED;
    }
    if (newer == -1 && cand->cert_status == V_OCSP_CERTSTATUS_REVOKED &&
        held->cert_status != V_OCSP_CERTSTATUS_REVOKED) {
        return STAPLE_FRESH_NEWER; /* the same times: the revocation wins */
    }
    return newer == 1   ? STAPLE_FRESH_NEWER
           : newer == 0 ? STAPLE_FRESH_OLDER
                        : STAPLE_FRESH_SAME;
}

const char *staple_fresh_name(staple_fresh_e f)
{
    static const char *const names[] = {"newer", "same", "older", "unrevoked"};

    return (f >= 0 && f <= STAPLE_FRESH_UNREVOKED) ? names[f] : "invalid";
}

const char *staple_ocsp_get_url(apr_pool_t *p, const char *base, const unsigned char *req,
                                apr_size_t req_len)
{
    char *b64;
    apr_size_t blen = (apr_size_t)apr_base64_encode_len((int)req_len);
    apr_size_t baselen = strlen(base);

    b64 = apr_palloc(p, blen);
    blen = (apr_size_t)apr_base64_encode(b64, (const char *)req, (int)req_len);
    /* apr_base64_encode counts the terminating NUL */
    if (blen > 0 && b64[blen - 1] == '\0') {
        blen--;
    }
    if (blen > STAPLE_GET_MAX_B64) {
        return NULL;
    }
    return apr_pstrcat(p, base, (baselen && base[baselen - 1] == '/') ? "" : "/",
                       apr_pescape_urlencoded(p, b64), NULL);
}
