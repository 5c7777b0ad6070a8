/*
 * Operator control on the status handler:
 *
 *   POST <status-url>?refresh          every certificate is fetched now
 *   POST <status-url>?refresh=<id-hex> that one
 *   GET  <status-url>?der=<id-hex>     the response held, as DER
 *
 * The refresher (another process) does the fetching; the answer (202) says
 * what was scheduled. A POST from another site (Origin, Sec-Fetch-Site) is
 * refused, so that a page an operator visits cannot make the server fetch.
 * Who may use it is what the operator's Require gives the handler.
 */
#include <apr_lib.h>
#include <apr_strings.h>

#include <httpd.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

#include "mod_staple_private.h"

/* The value of key in the query string ("" when it has none), or NULL. */
static const char *arg_of(const char *args, const char *key, apr_pool_t *p)
{
    apr_size_t klen = strlen(key);
    const char *a = args;

    while (a && *a) {
        const char *end = ap_strchr_c(a, '&');
        apr_size_t len = end ? (apr_size_t)(end - a) : strlen(a);
        if (len >= klen && !strncmp(a, key, klen) && (len == klen || a[klen] == '=')) {
            return len == klen ? "" : apr_pstrmemdup(p, a + klen + 1, len - klen - 1);
        }
        a = end ? end + 1 : NULL;
    }
    return NULL;
}

void staple_der_copy(const unsigned char *der, apr_size_t len, void *baton)
{
    staple_der_t *d = baton;

    d->der = der ? apr_pmemdup(d->pool, der, len) : NULL;
    d->len = der ? len : 0;
}

int staple_id_from_hex(const char *hex, unsigned char id[STAPLE_ID_LEN])
{
    int i;

    if (hex == NULL || strlen(hex) != 2 * STAPLE_ID_LEN) {
        return 0;
    }
    for (i = 0; i < STAPLE_ID_LEN; i++) {
        char b[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
        if (!apr_isxdigit(b[0]) || !apr_isxdigit(b[1])) {
            return 0;
        }
        id[i] = (unsigned char)strtol(b, NULL, 16);
    }
    return 1;
}

/* A POST another site's page made a browser send. */
static const char *cross_site(request_rec *r)
{
    const char *site = apr_table_get(r->headers_in, "Sec-Fetch-Site");
    const char *origin = apr_table_get(r->headers_in, "Origin");
    const char *host = apr_table_get(r->headers_in, "Host");

    if (site && strcasecmp(site, "same-origin") && strcasecmp(site, "none")) {
        return apr_psprintf(r->pool, "Sec-Fetch-Site: %s", site);
    }
    if (origin) {
        const char *self =
            apr_pstrcat(r->pool, ap_http_scheme(r), "://", host ? host : "", NULL);
        if (host == NULL || strcasecmp(origin, self)) {
            return apr_psprintf(r->pool, "Origin: %s", origin);
        }
    }
    return NULL;
}

static int refresh(request_rec *r, staple_reg_t *reg, const char *which)
{
    unsigned char id[STAPLE_ID_LEN];
    const char *why;
    staple_snapshot_t *snap;
    int i, n;

    r->allowed = AP_METHOD_BIT << M_POST;
    if (r->method_number != M_POST) {
        apr_table_setn(r->err_headers_out, "Allow", "POST");
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if ((why = cross_site(r)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "staple-status: refresh refused, the request comes from another "
                      "site (%s)",
                      why);
        return HTTP_FORBIDDEN;
    }
    if (*which && !staple_id_from_hex(which, id)) {
        return HTTP_BAD_REQUEST;
    }
    ap_discard_request_body(r);
    if ((n = staple_reg_request_refresh(reg, *which ? id : NULL)) == 0) {
        return HTTP_NOT_FOUND;
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "staple-status: refresh of %d certificate(s) asked by %s", n,
                  r->useragent_ip);
    r->status = HTTP_ACCEPTED;
    ap_set_content_type(r, "text/plain; charset=ISO-8859-1");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rprintf(r, "refresh scheduled for %d certificate(s):\n", n);
    snap = staple_reg_snapshot(reg, r->pool);
    for (i = 0; i < snap->count; i++) {
        if (!*which || !strcasecmp(which, snap->certs[i].id_hex)) {
            ap_rprintf(r, "%s %s\n", snap->certs[i].id_hex, snap->certs[i].subject);
        }
    }
    return OK;
}

static int der(request_rec *r, staple_reg_t *reg, const char *which)
{
    unsigned char id[STAPLE_ID_LEN];
    staple_der_t d = {r->pool, NULL, 0};

    r->allowed = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!staple_id_from_hex(which, id)) {
        return HTTP_BAD_REQUEST;
    }
    if (staple_reg_response(reg, id, staple_der_copy, &d, r->pool) !=
        STAPLE_RESP_STAPLED) {
        return HTTP_NOT_FOUND;
    }
    ap_set_content_type(r, "application/ocsp-response");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)d.len);
    if (!r->header_only) {
        ap_rwrite(d.der, (int)d.len, r);
    }
    return OK;
}

int staple_control(request_rec *r, staple_reg_t *reg)
{
    const char *v;

    if ((v = arg_of(r->args, "refresh", r->pool)) != NULL) {
        return reg ? refresh(r, reg, v) : HTTP_NOT_FOUND;
    }
    if ((v = arg_of(r->args, "der", r->pool)) != NULL) {
        return reg ? der(r, reg, v) : HTTP_NOT_FOUND;
    }
    return DECLINED;
}
