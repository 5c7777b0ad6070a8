/*
 * SetHandler staple-responder: this server answers OCSP requests itself,
 * from the verified responses it staples, as the CA signed them: the OCSP
 * relay of a fleet where only one host (or cluster) may reach the CA.
 * RFC 6960 over HTTP in the RFC 5019 profile: GET <location>/<url-encoded
 * base64 request> and POST with the DER request; caching headers from the
 * response's own times. Nothing is fetched on a request's behalf.
 */
#include <apr_date.h>
#include <apr_sha1.h>
#include <apr_strings.h>

#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

#include "mod_staple_private.h"

#define STAPLE_RELAY_HANDLER "staple-responder"

/* A POSTed request larger than this is no OCSP request for one certificate. */
#define STAPLE_RELAY_MAX_BODY 16384

/* The request body, at most max bytes; NULL when larger or unreadable. */
static unsigned char *read_body(request_rec *r, apr_size_t max, apr_size_t *len)
{
    unsigned char *buf = apr_palloc(r->pool, max);
    apr_size_t got = 0;
    long n;

    if (ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK) != OK ||
        !ap_should_client_block(r)) {
        return NULL;
    }
    while ((n = ap_get_client_block(r, (char *)buf + got, max - got)) > 0) {
        got += (apr_size_t)n;
        if (got == max) {
            char extra;
            if (ap_get_client_block(r, &extra, 1) > 0) {
                return NULL;
            }
            break;
        }
    }
    if (n < 0) {
        return NULL;
    }
    *len = got;
    return buf;
}

/* RFC 5019 section 6: clients and caches may keep the answer until
 * nextUpdate, and revalidate it then. */
static void caching_headers(request_rec *r, const staple_der_t *d, apr_time_t this_update,
                            apr_time_t next_update)
{
    unsigned char md[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t sha;
    char *date = apr_palloc(r->pool, APR_RFC822_DATE_LEN);
    apr_time_t now = apr_time_now();

    apr_sha1_init(&sha);
    apr_sha1_update_binary(&sha, d->der, (unsigned int)d->len);
    apr_sha1_final(md, &sha);
    apr_table_setn(
        r->headers_out, "ETag",
        apr_pstrcat(r->pool, "\"", staple_hex(r->pool, md, sizeof(md)), "\"", NULL));
    ap_update_mtime(r, this_update);
    ap_set_last_modified(r);
    apr_rfc822_date(date, next_update);
    apr_table_setn(r->headers_out, "Expires", date);
    apr_table_setn(r->headers_out, "Cache-Control",
                   apr_psprintf(r->pool,
                                "max-age=%" APR_TIME_T_FMT
                                ", public, no-transform, must-revalidate",
                                next_update > now ? apr_time_sec(next_update - now) : 0));
}

/* AllowEncodedSlashes Off makes httpd answer 404 to a GET whose base64
 * holds a '/' (sent as %2F) before this handler runs: say so, once. */
static void check_encoded_slashes(request_rec *r)
{
    static int said;
    core_dir_config *d = ap_get_core_module_config(r->per_dir_config);

    if (!said && d && !d->allow_encoded_slashes) {
        said = 1;
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "staple-responder: AllowEncodedSlashes is Off for %s, so httpd "
                      "answers 404 to OCSP GET requests whose base64 holds a '/' (most "
                      "of them): set AllowEncodedSlashes NoDecode for this server",
                      r->uri);
    }
}

static int staple_relay_handler(request_rec *r)
{
    staple_reg_t *reg;
    staple_der_t d = {r->pool, NULL, 0};
    apr_time_t this_update = 0, next_update = 0;
    unsigned char *req = NULL;
    apr_size_t req_len = 0;
    staple_relay_e outcome = STAPLE_RELAY_MALFORMED;

    if (strcmp(r->handler, STAPLE_RELAY_HANDLER)) {
        return DECLINED;
    }
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
    if (r->method_number == M_GET) {
        const char *path =
            apr_pstrndup(r->pool, r->unparsed_uri, strcspn(r->unparsed_uri, "?#"));
        check_encoded_slashes(r);
        if (!staple_relay_get_request(r->pool, path, &req, &req_len)) {
            req = NULL;
        }
    } else if (r->method_number == M_POST) {
        req = read_body(r, STAPLE_RELAY_MAX_BODY, &req_len);
    } else {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    reg = staple_active_reg();
    if (reg) {
        outcome = staple_reg_relay(reg, req, req ? req_len : 0, staple_der_copy, &d,
                                   &this_update, &next_update, r->pool);
    } else if (req) {
        outcome = STAPLE_RELAY_UNAUTHORIZED; /* nothing is stapled here */
    }
    ap_set_content_type(r, "application/ocsp-response");
    if (outcome == STAPLE_RELAY_SUCCESSFUL && d.der) {
        int rc;
        caching_headers(r, &d, this_update, next_update);
        if ((rc = ap_meets_conditions(r)) != OK) {
            return rc; /* 304 for a cache that holds this response */
        }
    } else {
        d.der = (unsigned char *)staple_relay_error_der(outcome, &d.len);
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "staple-responder: %s",
                      staple_relay_name(outcome));
    }
    ap_set_content_length(r, (apr_off_t)d.len);
    if (!r->header_only) {
        ap_rwrite(d.der, (int)d.len, r);
    }
    return OK;
}

void staple_relay_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(staple_relay_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
