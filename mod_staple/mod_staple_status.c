/*
 * SetHandler staple-status: what mod_staple knows, from shared memory, so
 * that every process shows the same figures. HTML by default, ?json, ?auto
 * (key: value lines like mod_status) and ?prometheus (text exposition).
 * A summary is added to mod_status's server-status page.
 */
#include <apr_strings.h>

#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_status.h>

#include "mod_staple_private.h"

#define STAPLE_STATUS_HANDLER "staple-status"

typedef enum { FMT_HTML, FMT_JSON, FMT_AUTO, FMT_PROM } status_fmt_e;

/* What one certificate's row says, computed once per request. */
typedef struct {
    staple_item_t *it;
    staple_slot_t *sl;
    const char *state;    /* good, revoked, failing, expired, none */
    int valid;            /* a response that may be stapled is held */
    apr_time_t time_left; /* until nextUpdate, when valid */
} row_t;

static row_t *make_rows(staple_reg_t *r, apr_time_t now, apr_pool_t *p)
{
    row_t *rows = apr_pcalloc(p, sizeof(row_t) * (apr_size_t)(r->items->nelts + 1));
    int i;

    for (i = 0; i < r->items->nelts; i++) {
        row_t *row = &rows[i];
        row->it = APR_ARRAY_IDX(r->items, i, staple_item_t *);
        row->sl = &r->slots[i];
        row->valid = row->sl->valid_until > now;
        row->time_left = row->valid ? row->sl->valid_until - now : 0;
        if (!row->valid) {
            row->state = row->sl->valid_until ? "expired" : "none";
        } else if (row->sl->cert_status == V_OCSP_CERTSTATUS_REVOKED) {
            row->state = "revoked";
        } else if (row->sl->failures > 0) {
            row->state = "failing";
        } else {
            row->state = "good";
        }
    }
    return rows;
}

static const char *json_str(apr_pool_t *p, const char *s)
{
    apr_size_t len = 2;
    const char *c;
    char *out, *o;

    if (s == NULL) {
        return "null";
    }
    for (c = s; *c; c++) {
        len += (*c == '"' || *c == '\\') ? 2 : ((unsigned char)*c < 0x20 ? 6 : 1);
    }
    o = out = apr_palloc(p, len + 1);
    *o++ = '"';
    for (c = s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = *c;
        } else if ((unsigned char)*c < 0x20) {
            apr_snprintf(o, 7, "\\u%04x", (unsigned char)*c);
            o += 6;
        } else {
            *o++ = *c;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* Prometheus label values escape backslash, double quote and newline. */
static const char *prom_str(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) * 2 + 1), *o = out;

    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            *o++ = '\\';
            *o++ = *s;
        } else if (*s == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

static const char *iso_time(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    if (t <= 0) {
        return NULL;
    }
    apr_time_exp_gmt(&tm, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char *vhost_list(apr_pool_t *p, staple_item_t *it, char sep)
{
    return apr_array_pstrcat(p, it->vhosts, sep);
}

static void totals(staple_reg_t *r, apr_uint64_t *stapled, apr_uint64_t *unstapled,
                   apr_uint64_t *fetches, apr_uint64_t *failed)
{
    int i;

    *stapled = *unstapled = *fetches = *failed = 0;
    for (i = 0; i < r->items->nelts; i++) {
        *stapled += r->slots[i].stapled;
        *unstapled += r->slots[i].unstapled;
    }
    for (i = 0; i < STAPLE_OUTCOME_COUNT; i++) {
        *fetches += r->stats->outcomes[i];
        if (i != STAPLE_CHECK_OK) {
            *failed += r->stats->outcomes[i];
        }
    }
}

static void emit_json(request_rec *r, staple_reg_t *reg, row_t *rows, apr_time_t now)
{
    apr_pool_t *p = r->pool;
    apr_uint64_t cum = 0;
    int i;

    ap_rprintf(r, "{\"version\":%s,\"now\":%s,\"certificates\":[",
               json_str(p, STAPLE_VERSION), json_str(p, iso_time(p, now)));
    for (i = 0; i < reg->items->nelts; i++) {
        row_t *row = &rows[i];
        staple_slot_t *sl = row->sl;
        staple_cert_t *c = row->it->cert;
        int j;

        ap_rprintf(r, "%s{\"id\":%s,\"subject\":%s,\"serial\":%s,\"vhosts\":[",
                   i ? "," : "", json_str(p, c->id_hex), json_str(p, c->subject),
                   json_str(p, c->serial));
        for (j = 0; j < row->it->vhosts->nelts; j++) {
            ap_rprintf(r, "%s%s", j ? "," : "",
                       json_str(p, APR_ARRAY_IDX(row->it->vhosts, j, const char *)));
        }
        ap_rprintf(r,
                   "],\"responder\":%s,\"must_staple\":%s,\"state\":%s,\"valid\":%s,"
                   "\"cert_status\":%s,\"this_update\":%s,\"next_update\":%s,"
                   "\"seconds_left\":%" APR_TIME_T_FMT ",\"fetched_at\":%s,"
                   "\"last_fetch_at\":%s,\"last_fetch_ms\":%.1f,\"last_error\":%s,"
                   "\"last_error_at\":%s,\"consecutive_failures\":%u,\"next_refresh\":%s,"
                   "\"handshakes_stapled\":%" APR_UINT64_T_FMT
                   ",\"handshakes_unstapled\":%" APR_UINT64_T_FMT "}",
                   json_str(p, row->it->url), c->must_staple ? "true" : "false",
                   json_str(p, row->state), row->valid ? "true" : "false",
                   sl->cert_status < 0
                       ? "null"
                       : json_str(p, staple_cert_status_name(sl->cert_status)),
                   json_str(p, iso_time(p, sl->this_update)),
                   json_str(p, iso_time(p, sl->valid_until)),
                   apr_time_sec(row->time_left), json_str(p, iso_time(p, sl->fetched_at)),
                   json_str(p, iso_time(p, sl->last_attempt)),
                   (double)sl->last_duration / 1000.0,
                   sl->last_error_at ? json_str(p, sl->last_error) : "null",
                   json_str(p, iso_time(p, sl->last_error_at)), sl->failures,
                   json_str(p, iso_time(p, sl->due)), sl->stapled, sl->unstapled);
    }
    ap_rputs("],\"fetches\":{", r);
    for (i = 0; i < STAPLE_OUTCOME_COUNT; i++) {
        ap_rprintf(r, "%s%s:%u", i ? "," : "", json_str(p, staple_outcome_name(i)),
                   reg->stats->outcomes[i]);
    }
    ap_rputs("},\"fetch_duration_ms\":{\"buckets\":{", r);
    for (i = 0; i < STAPLE_HIST_BUCKETS; i++) {
        cum += reg->stats->duration_hist[i];
        if (i < STAPLE_HIST_BUCKETS - 1) {
            ap_rprintf(r, "%s\"%" APR_TIME_T_FMT "\":%" APR_UINT64_T_FMT, i ? "," : "",
                       staple_hist_bounds_ms[i], cum);
        } else {
            ap_rprintf(r, ",\"+Inf\":%" APR_UINT64_T_FMT, cum);
        }
    }
    ap_rprintf(r, "},\"count\":%" APR_UINT64_T_FMT ",\"sum\":%.1f}}\n", cum,
               (double)reg->stats->duration_sum_us / 1000.0);
}

static void emit_auto(request_rec *r, staple_reg_t *reg, row_t *rows)
{
    apr_uint64_t stapled, unstapled, fetches, failed;
    int i, valid = 0;

    totals(reg, &stapled, &unstapled, &fetches, &failed);
    for (i = 0; i < reg->items->nelts; i++) {
        valid += rows[i].valid;
    }
    ap_rprintf(r,
               "StapleCertificates: %d\nStapleValid: %d\nStapleHandshakesStapled: "
               "%" APR_UINT64_T_FMT "\nStapleHandshakesUnstapled: %" APR_UINT64_T_FMT
               "\nStapleFetches: %" APR_UINT64_T_FMT "\nStapleFetchesFailed: "
               "%" APR_UINT64_T_FMT "\n",
               reg->items->nelts, valid, stapled, unstapled, fetches, failed);
    for (i = 0; i < reg->items->nelts; i++) {
        row_t *row = &rows[i];
        ap_rprintf(r,
                   "Cert%dId: %s\nCert%dSubject: %s\nCert%dState: %s\nCert%dSecondsLeft: "
                   "%" APR_TIME_T_FMT
                   "\nCert%dFailures: %u\nCert%dStapled: %" APR_UINT64_T_FMT "\n"
                   "Cert%dUnstapled: %" APR_UINT64_T_FMT "\n",
                   i, row->it->cert->id_hex, i, row->it->cert->subject, i, row->state, i,
                   apr_time_sec(row->time_left), i, row->sl->failures, i,
                   row->sl->stapled, i, row->sl->unstapled);
    }
}

/* The histogram's bounds in seconds, as Prometheus clients write them. */
static const char *const bucket_labels[STAPLE_HIST_BUCKETS - 1] = {
    "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};

static void emit_prometheus(request_rec *r, staple_reg_t *reg, row_t *rows)
{
    apr_pool_t *p = r->pool;
    apr_uint64_t cum = 0;
    int i;

#define LABELS          "id=\"%s\",subject=\"%s\""
#define LABEL_ARGS(row) (row)->it->cert->id_hex, prom_str(p, (row)->it->cert->subject)
    ap_rputs("# HELP staple_handshakes_total TLS handshakes that asked for a staple.\n"
             "# TYPE staple_handshakes_total counter\n",
             r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(r,
                   "staple_handshakes_total{" LABELS
                   ",stapled=\"true\"} %" APR_UINT64_T_FMT "\n",
                   LABEL_ARGS(&rows[i]), rows[i].sl->stapled);
        ap_rprintf(r,
                   "staple_handshakes_total{" LABELS
                   ",stapled=\"false\"} %" APR_UINT64_T_FMT "\n",
                   LABEL_ARGS(&rows[i]), rows[i].sl->unstapled);
    }
    ap_rputs(
        "# HELP staple_response_valid 1 when a response that may be stapled is held.\n"
        "# TYPE staple_response_valid gauge\n",
        r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(r, "staple_response_valid{" LABELS ",state=\"%s\"} %d\n",
                   LABEL_ARGS(&rows[i]), rows[i].state, rows[i].valid);
    }
    ap_rputs("# HELP staple_response_revoked 1 when the held response says revoked.\n"
             "# TYPE staple_response_revoked gauge\n",
             r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(r, "staple_response_revoked{" LABELS "} %d\n", LABEL_ARGS(&rows[i]),
                   rows[i].valid && rows[i].sl->cert_status == V_OCSP_CERTSTATUS_REVOKED);
    }
    ap_rputs("# HELP staple_response_next_update_seconds nextUpdate of the held response "
             "(Unix time).\n# TYPE staple_response_next_update_seconds gauge\n",
             r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(
            r, "staple_response_next_update_seconds{" LABELS "} %" APR_TIME_T_FMT "\n",
            LABEL_ARGS(&rows[i]), apr_time_sec(rows[i].sl->valid_until));
    }
    ap_rputs("# HELP staple_response_this_update_seconds thisUpdate of the held response "
             "(Unix time).\n# TYPE staple_response_this_update_seconds gauge\n",
             r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(
            r, "staple_response_this_update_seconds{" LABELS "} %" APR_TIME_T_FMT "\n",
            LABEL_ARGS(&rows[i]), apr_time_sec(rows[i].sl->this_update));
    }
    ap_rputs(
        "# HELP staple_next_refresh_seconds When the next fetch is due (Unix time).\n"
        "# TYPE staple_next_refresh_seconds gauge\n",
        r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(r, "staple_next_refresh_seconds{" LABELS "} %" APR_TIME_T_FMT "\n",
                   LABEL_ARGS(&rows[i]), apr_time_sec(rows[i].sl->due));
    }
    ap_rputs("# HELP staple_fetch_failures_consecutive Failed fetches since the last "
             "success.\n# TYPE staple_fetch_failures_consecutive gauge\n",
             r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(r, "staple_fetch_failures_consecutive{" LABELS "} %u\n",
                   LABEL_ARGS(&rows[i]), rows[i].sl->failures);
    }
    ap_rputs("# HELP staple_last_fetch_duration_seconds The responder's last response "
             "time.\n# TYPE staple_last_fetch_duration_seconds gauge\n",
             r);
    for (i = 0; i < reg->items->nelts; i++) {
        ap_rprintf(r, "staple_last_fetch_duration_seconds{" LABELS "} %.6f\n",
                   LABEL_ARGS(&rows[i]), (double)rows[i].sl->last_duration / 1e6);
    }
    ap_rputs("# HELP staple_fetches_total Fetches by outcome.\n"
             "# TYPE staple_fetches_total counter\n",
             r);
    for (i = 0; i < STAPLE_OUTCOME_COUNT; i++) {
        ap_rprintf(r, "staple_fetches_total{outcome=\"%s\"} %u\n", staple_outcome_name(i),
                   reg->stats->outcomes[i]);
    }
    ap_rputs(
        "# HELP staple_fetch_duration_seconds Duration of fetches, name lookup to last "
        "byte.\n# TYPE staple_fetch_duration_seconds histogram\n",
        r);
    for (i = 0; i < STAPLE_HIST_BUCKETS; i++) {
        cum += reg->stats->duration_hist[i];
        if (i < STAPLE_HIST_BUCKETS - 1) {
            ap_rprintf(
                r,
                "staple_fetch_duration_seconds_bucket{le=\"%s\"} %" APR_UINT64_T_FMT "\n",
                bucket_labels[i], cum);
        } else {
            ap_rprintf(
                r,
                "staple_fetch_duration_seconds_bucket{le=\"+Inf\"} %" APR_UINT64_T_FMT
                "\n",
                cum);
        }
    }
    ap_rprintf(r,
               "staple_fetch_duration_seconds_sum %.6f\n"
               "staple_fetch_duration_seconds_count %" APR_UINT64_T_FMT "\n",
               (double)reg->stats->duration_sum_us / 1e6, cum);
#undef LABELS
#undef LABEL_ARGS
}

static const char *esc(apr_pool_t *p, const char *s)
{
    return s ? ap_escape_html2(p, s, 0) : "";
}

static const char *ago(apr_pool_t *p, apr_time_t t, apr_time_t now)
{
    if (t <= 0) {
        return "&ndash;";
    }
    return t > now ? apr_pstrcat(p, "in ", staple_fmt_duration(p, t - now), NULL)
                   : apr_pstrcat(p, staple_fmt_duration(p, now - t), " ago", NULL);
}

static void emit_html(request_rec *r, staple_reg_t *reg, row_t *rows, apr_time_t now)
{
    apr_pool_t *p = r->pool;
    apr_uint64_t stapled, unstapled, fetches, failed;
    int i;

    totals(reg, &stapled, &unstapled, &fetches, &failed);
    ap_rputs(DOCTYPE_HTML_4_0T
             "<html><head><title>OCSP stapling</title>\n"
             "<style>\n"
             "body{font-family:sans-serif;margin:1.5em;color:#222}\n"
             "table{border-collapse:collapse;font-size:90%}\n"
             "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;"
             "vertical-align:top}\n"
             "th{background:#eee}\n"
             ".good{background:#d8f5d0}.failing{background:#fff2c4}\n"
             ".revoked,.expired{background:#f9c9c4}"
             ".none{background:#e6e6e6}\n"
             ".state{font-weight:bold;text-transform:uppercase}\n"
             "small{color:#666}\n"
             "</style></head><body>\n",
             r);
    ap_rprintf(r,
               "<h1>OCSP stapling</h1>\n<p>mod_staple %s &middot; %d certificate(s) "
               "&middot; handshakes stapled %" APR_UINT64_T_FMT ", unstapled "
               "%" APR_UINT64_T_FMT " &middot; fetches %" APR_UINT64_T_FMT
               ", failed %" APR_UINT64_T_FMT " &middot; %s</p>\n",
               STAPLE_VERSION, reg->items->nelts, stapled, unstapled, fetches, failed,
               esc(p, reg->shared.name));
    ap_rputs(
        "<table>\n<tr><th>State</th><th>Certificate</th><th>Time left</th>"
        "<th>Response</th><th>Fetch</th><th>Last error</th><th>Handshakes</th></tr>\n",
        r);
    for (i = 0; i < reg->items->nelts; i++) {
        row_t *row = &rows[i];
        staple_slot_t *sl = row->sl;
        staple_cert_t *c = row->it->cert;

        ap_rprintf(r,
                   "<tr class=\"%s\"><td class=\"state\">%s</td>"
                   "<td>%s%s<br><small>serial %s<br>id %s<br>%s</small></td>"
                   "<td>%s</td>",
                   row->state, row->state, esc(p, c->subject),
                   c->must_staple ? " <b>(Must-Staple)</b>" : "", esc(p, c->serial),
                   c->id_hex, esc(p, vhost_list(p, row->it, ' ')),
                   row->valid ? staple_fmt_duration(p, row->time_left) : "&ndash;");
        ap_rprintf(r,
                   "<td>%s<br><small>this update %s<br>next update %s<br>fetched "
                   "%s</small></td>",
                   sl->cert_status < 0 ? "&ndash;"
                                       : staple_cert_status_name(sl->cert_status),
                   esc(p, iso_time(p, sl->this_update)),
                   esc(p, iso_time(p, sl->valid_until)), ago(p, sl->fetched_at, now));
        ap_rprintf(r,
                   "<td>%s<br><small>last %s, %.1f ms<br>next %s<br>%u failure(s) in a "
                   "row</small></td>",
                   esc(p, row->it->url), ago(p, sl->last_attempt, now),
                   (double)sl->last_duration / 1000.0, ago(p, sl->due, now),
                   sl->failures);
        ap_rprintf(r,
                   "<td>%s<br><small>%s</small></td><td>%" APR_UINT64_T_FMT
                   " stapled<br>%" APR_UINT64_T_FMT " without</td></tr>\n",
                   sl->last_error_at ? esc(p, sl->last_error) : "&ndash;",
                   ago(p, sl->last_error_at, now), sl->stapled, sl->unstapled);
    }
    ap_rputs("</table>\n<p><small>Also as <a href=\"?json\">JSON</a>, "
             "<a href=\"?auto\">key: value</a>, <a href=\"?prometheus\">Prometheus</a>."
             "</small></p>\n</body></html>\n",
             r);
}

static int staple_status_handler(request_rec *r)
{
    staple_reg_t *reg = staple_reg;
    status_fmt_e fmt = FMT_HTML;
    apr_time_t now = apr_time_now();
    row_t *rows;

    if (strcmp(r->handler, STAPLE_STATUS_HANDLER)) {
        return DECLINED;
    }
    r->allowed = (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (r->args) {
        if (!strcmp(r->args, "json")) {
            fmt = FMT_JSON;
        } else if (!strcmp(r->args, "auto")) {
            fmt = FMT_AUTO;
        } else if (!strcmp(r->args, "prometheus")) {
            fmt = FMT_PROM;
        }
    }
    ap_set_content_type(r, fmt == FMT_JSON   ? "application/json"
                           : fmt == FMT_AUTO ? "text/plain; charset=ISO-8859-1"
                           : fmt == FMT_PROM ? "text/plain; version=0.0.4"
                                             : "text/html; charset=ISO-8859-1");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (reg == NULL || !reg->active) {
        /* nothing claimed: an empty but well-formed answer */
        if (fmt == FMT_JSON) {
            ap_rprintf(r, "{\"version\":\"%s\",\"certificates\":[]}\n", STAPLE_VERSION);
        } else if (fmt == FMT_AUTO) {
            ap_rputs("StapleCertificates: 0\n", r);
        } else if (fmt == FMT_HTML) {
            ap_rputs(
                "<html><body><p>mod_staple staples no certificate.</p></body></html>\n",
                r);
        }
        return OK;
    }
    if (r->header_only) {
        return OK;
    }
    rows = make_rows(reg, now, r->pool);
    switch (fmt) {
    case FMT_JSON:
        emit_json(r, reg, rows, now);
        break;
    case FMT_AUTO:
        emit_auto(r, reg, rows);
        break;
    case FMT_PROM:
        emit_prometheus(r, reg, rows);
        break;
    default:
        emit_html(r, reg, rows, now);
    }
    return OK;
}

/* The section in mod_status's server-status page. */
static int staple_server_status(request_rec *r, int flags)
{
    staple_reg_t *reg = staple_reg;
    apr_uint64_t stapled, unstapled, fetches, failed;
    row_t *rows;
    int i, valid = 0;

    if (reg == NULL || !reg->active) {
        return OK;
    }
    rows = make_rows(reg, apr_time_now(), r->pool);
    for (i = 0; i < reg->items->nelts; i++) {
        valid += rows[i].valid;
    }
    totals(reg, &stapled, &unstapled, &fetches, &failed);
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r,
                   "StapleCertificates: %d\nStapleValid: %d\nStapleHandshakesStapled: "
                   "%" APR_UINT64_T_FMT "\nStapleHandshakesUnstapled: %" APR_UINT64_T_FMT
                   "\n",
                   reg->items->nelts, valid, stapled, unstapled);
        return OK;
    }
    ap_rprintf(
        r,
        "<hr>\n<h2>OCSP stapling (mod_staple)</h2>\n<p>%d certificate(s), %d with a "
        "valid response &middot; handshakes stapled %" APR_UINT64_T_FMT
        ", unstapled %" APR_UINT64_T_FMT " &middot; fetches %" APR_UINT64_T_FMT
        ", failed %" APR_UINT64_T_FMT "</p>\n",
        reg->items->nelts, valid, stapled, unstapled, fetches, failed);
    return OK;
}

void staple_status_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(staple_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, staple_server_status, NULL, NULL, APR_HOOK_MIDDLE);
}
