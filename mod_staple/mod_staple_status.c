/*
 * SetHandler staple-status: a snapshot of the registry, read from shared
 * memory so that every process shows the same figures, rendered as HTML
 * (default), ?json, ?auto (key: value lines like mod_status) or
 * ?prometheus (text exposition). A summary goes into mod_status's page.
 *
 * Each format is driven by a table of columns: a field added to the
 * snapshot is one row here.
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

typedef const staple_cert_snap_t cert_t;

/* ------------------------------------------------------------------ */
/* Value formatting                                                    */

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

static const char *cert_status(cert_t *c)
{
    return c->cert_status < 0 ? NULL : staple_cert_status_name(c->cert_status);
}

/* ------------------------------------------------------------------ */
/* JSON and ?auto: one row per field                                   */

typedef enum {
    V_STR,         /* const char *, null when NULL */
    V_STRS,        /* apr_array_header_t * of const char * */
    V_LIST,        /* const char *, comma-separated: an array */
    V_OFFSET,      /* staple_clock_t: seconds, null when unknown */
    V_BOOL,        /* int */
    V_TIME,        /* apr_time_t as ISO 8601, null when 0 */
    V_SECS,        /* apr_interval_time_t in whole seconds */
    V_MS,          /* apr_interval_time_t in milliseconds, one decimal */
    V_UINT,        /* unsigned int */
    V_U64,         /* apr_uint64_t */
    V_CERT_STATUS, /* int cert_status, by name */
} value_e;

typedef struct {
    const char *json;  /* key in ?json */
    const char *autok; /* key in ?auto after "Cert<i>", or NULL */
    value_e type;
    apr_size_t off;
} field_t;

#define F(json, autok, type, member)                                                     \
    {                                                                                    \
        json, autok, type, APR_OFFSETOF(staple_cert_snap_t, member)                      \
    }

static const field_t fields[] = {
    F("id", "Id", V_STR, id_hex),
    F("subject", "Subject", V_STR, subject),
    F("serial", NULL, V_STR, serial),
    F("vhosts", NULL, V_STRS, vhosts),
    F("responder", NULL, V_STR, url),
    F("must_staple", NULL, V_BOOL, must_staple),
    F("state", "State", V_STR, state),
    F("valid", NULL, V_BOOL, valid),
    F("cert_status", NULL, V_CERT_STATUS, cert_status),
    F("this_update", NULL, V_TIME, this_update),
    F("next_update", NULL, V_TIME, next_update),
    F("produced_at", NULL, V_TIME, produced_at),
    F("seconds_left", "SecondsLeft", V_SECS, time_left),
    F("fetched_at", NULL, V_TIME, fetched_at),
    F("last_fetch_at", NULL, V_TIME, last_fetch_at),
    F("last_fetch_ms", NULL, V_MS, last_fetch_duration),
    F("last_error", NULL, V_STR, last_error),
    F("last_error_at", NULL, V_TIME, last_error_at),
    F("consecutive_failures", "Failures", V_UINT, failures),
    F("next_refresh", NULL, V_TIME, next_refresh),
    F("handshakes_stapled", "Stapled", V_U64, stapled),
    F("handshakes_unstapled", "Unstapled", V_U64, unstapled),
    F("responders", NULL, V_STRS, urls),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

#define R(json, type, member)                                                            \
    {                                                                                    \
        json, NULL, type, APR_OFFSETOF(staple_responder_snap_t, member)                  \
    }

/* The responders, for the firewall and the clock */
static const field_t responder_fields[] = {
    R("url", V_STR, url),
    R("host", V_STR, host),
    R("port", V_UINT, port),
    R("addresses", V_LIST, addresses),
    R("via_proxy", V_BOOL, via_proxy),
    R("method", V_STR, method),
    R("fetches_ok", V_U64, successes),
    R("fetches_failed", V_U64, failures),
    R("consecutive_failures", V_UINT, consecutive),
    R("last_fetch_at", V_TIME, last_used_at),
    R("last_ok_at", V_TIME, last_ok_at),
    R("last_error", V_STR, last_error),
    R("last_error_at", V_TIME, last_error_at),
    R("clock_offset_seconds", V_OFFSET, clock),
};
#define NRFIELDS (sizeof(responder_fields) / sizeof(responder_fields[0]))

#define AT(c, f, type) (*(const type *)((const char *)(c) + (f)->off))

/* A field's value, as JSON (quoted strings, null) or as plain text. */
static const char *field_value(apr_pool_t *p, const void *c, const field_t *f, int json)
{
    const char *s;
    int i;

    switch (f->type) {
    case V_LIST: {
        char *copy = apr_pstrdup(p, AT(c, f, const char *)), *last, *w;
        const char *out = "[";
        for (i = 0, w = apr_strtok(copy, ",", &last); w;
             w = apr_strtok(NULL, ",", &last)) {
            out = apr_pstrcat(p, out, i++ ? "," : "", json_str(p, w), NULL);
        }
        return apr_pstrcat(p, out, "]", NULL);
    }
    case V_OFFSET: {
        const staple_clock_t *clock = &AT(c, f, staple_clock_t);
        return clock->known
                   ? apr_psprintf(p, "%" APR_TIME_T_FMT, apr_time_sec(clock->offset))
                   : "null";
    }
    case V_STR:
        s = AT(c, f, const char *);
        return json ? json_str(p, s) : (s ? s : "");
    case V_STRS: {
        const apr_array_header_t *a = AT(c, f, const apr_array_header_t *);
        const char *out = "[";
        for (i = 0; i < a->nelts; i++) {
            out = apr_pstrcat(p, out, i ? "," : "",
                              json_str(p, APR_ARRAY_IDX(a, i, const char *)), NULL);
        }
        return apr_pstrcat(p, out, "]", NULL);
    }
    case V_BOOL:
        return AT(c, f, int) ? "true" : "false";
    case V_TIME:
        s = staple_fmt_time(p, AT(c, f, apr_time_t));
        return json ? json_str(p, s) : (s ? s : "");
    case V_SECS:
        return apr_psprintf(p, "%" APR_TIME_T_FMT,
                            apr_time_sec(AT(c, f, apr_interval_time_t)));
    case V_MS:
        return apr_psprintf(p, "%.1f", (double)AT(c, f, apr_interval_time_t) / 1000.0);
    case V_UINT:
        return apr_psprintf(p, "%u", AT(c, f, unsigned int));
    case V_U64:
        return apr_psprintf(p, "%" APR_UINT64_T_FMT, AT(c, f, apr_uint64_t));
    case V_CERT_STATUS:
        s = cert_status((cert_t *)c);
        return json ? json_str(p, s) : (s ? s : "");
    }
    return "null";
}

static void emit_json(request_rec *r, const staple_snapshot_t *snap)
{
    apr_pool_t *p = r->pool;
    int i;
    unsigned k;

    ap_rprintf(r, "{\"version\":%s,\"now\":%s,\"certificates\":[",
               json_str(p, STAPLE_VERSION), json_str(p, staple_fmt_time(p, snap->now)));
    for (i = 0; i < snap->count; i++) {
        for (k = 0; k < NFIELDS; k++) {
            ap_rprintf(r, "%s%s:%s", k ? "," : (i ? ",{" : "{"),
                       json_str(p, fields[k].json),
                       field_value(p, &snap->certs[i], &fields[k], 1));
        }
        ap_rputc('}', r);
    }
    ap_rputs("],\"fetches\":{", r);
    for (i = 0; i < STAPLE_OUTCOME_COUNT; i++) {
        ap_rprintf(r, "%s%s:%" APR_UINT64_T_FMT, i ? "," : "",
                   json_str(p, staple_outcome_name(i)), snap->outcomes[i]);
    }
    ap_rputs("},\"fetch_duration_ms\":{\"buckets\":{", r);
    for (i = 0; i < STAPLE_HIST_BUCKETS; i++) {
        const staple_hist_bucket_t *b = &staple_hist_buckets[i];
        ap_rprintf(r, "%s\"%s\":%" APR_UINT64_T_FMT, i ? "," : "",
                   b->ms < 0 ? "+Inf" : apr_psprintf(p, "%" APR_TIME_T_FMT, b->ms),
                   snap->hist[i]);
    }
    ap_rprintf(r, "},\"count\":%" APR_UINT64_T_FMT ",\"sum\":%.1f},\"responders\":[",
               snap->hist[STAPLE_HIST_BUCKETS - 1],
               (double)snap->duration_sum_us / 1000.0);
    for (i = 0; i < snap->responder_count; i++) {
        for (k = 0; k < NRFIELDS; k++) {
            ap_rprintf(r, "%s%s:%s", k ? "," : (i ? ",{" : "{"),
                       json_str(p, responder_fields[k].json),
                       field_value(p, &snap->responders[i], &responder_fields[k], 1));
        }
        ap_rputc('}', r);
    }
    ap_rputs("],\"relay\":{", r);
    for (i = 0; i < STAPLE_RELAY_COUNT; i++) {
        ap_rprintf(r, "%s%s:%" APR_UINT64_T_FMT, i ? "," : "",
                   json_str(p, staple_relay_name(i)), snap->relay[i]);
    }
    ap_rputs("}}\n", r);
}

/* The totals of ?auto and of server-status?auto. */
static void emit_auto_totals(request_rec *r, const staple_snapshot_t *snap, int fetches)
{
    ap_rprintf(r,
               "StapleCertificates: %d\nStapleValid: %d\nStapleHandshakesStapled: "
               "%" APR_UINT64_T_FMT "\nStapleHandshakesUnstapled: %" APR_UINT64_T_FMT
               "\n",
               snap->count, snap->valid, snap->stapled, snap->unstapled);
    if (fetches) {
        ap_rprintf(r,
                   "StapleFetches: %" APR_UINT64_T_FMT
                   "\nStapleFetchesFailed: %" APR_UINT64_T_FMT "\n",
                   snap->fetches, snap->failed);
    }
}

static void emit_auto(request_rec *r, const staple_snapshot_t *snap)
{
    int i;
    unsigned k;

    emit_auto_totals(r, snap, 1);
    for (i = 0; i < snap->count; i++) {
        for (k = 0; k < NFIELDS; k++) {
            if (fields[k].autok) {
                ap_rprintf(r, "Cert%d%s: %s\n", i, fields[k].autok,
                           field_value(r->pool, &snap->certs[i], &fields[k], 0));
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Prometheus: one row per metric                                      */

typedef const char *prom_value_fn(apr_pool_t *p, cert_t *c, int series);

typedef struct {
    const char *name, *type, *help;
    int series;        /* samples per certificate */
    const char *label; /* extra label name, or NULL */
    const char *(*label_value)(cert_t *c, int series);
    prom_value_fn *value;
} metric_t;

static const char *series_stapled(cert_t *c, int series)
{
    (void)c;
    return series == 0 ? "true" : "false";
}

static const char *series_state(cert_t *c, int series)
{
    (void)series;
    return c->state;
}

static const char *v_handshakes(apr_pool_t *p, cert_t *c, int series)
{
    return apr_psprintf(p, "%" APR_UINT64_T_FMT, series == 0 ? c->stapled : c->unstapled);
}

static const char *v_valid(apr_pool_t *p, cert_t *c, int series)
{
    (void)p;
    (void)series;
    return c->valid ? "1" : "0";
}

static const char *v_revoked(apr_pool_t *p, cert_t *c, int series)
{
    (void)p;
    (void)series;
    return c->valid && c->cert_status == V_OCSP_CERTSTATUS_REVOKED ? "1" : "0";
}

static const char *v_must_staple(apr_pool_t *p, cert_t *c, int series)
{
    (void)p;
    (void)series;
    return c->must_staple ? "1" : "0";
}

#define UNIX_TIME_VALUE(fn, member)                                                      \
    static const char *fn(apr_pool_t *p, cert_t *c, int series)                          \
    {                                                                                    \
        (void)series;                                                                    \
        return apr_psprintf(p, "%" APR_TIME_T_FMT, apr_time_sec(c->member));             \
    }
UNIX_TIME_VALUE(v_next_update, next_update)
UNIX_TIME_VALUE(v_this_update, this_update)
UNIX_TIME_VALUE(v_next_refresh, next_refresh)

static const char *v_failures(apr_pool_t *p, cert_t *c, int series)
{
    (void)series;
    return apr_psprintf(p, "%u", c->failures);
}

static const char *v_duration(apr_pool_t *p, cert_t *c, int series)
{
    (void)series;
    return apr_psprintf(p, "%.6f", (double)c->last_fetch_duration / 1e6);
}

/* Names follow Prometheus' conventions: base units in the name (seconds),
 * Unix times as _timestamp_seconds, counters as _total. */
static const metric_t metrics[] = {
    {"staple_handshakes_total", "counter", "TLS handshakes that asked for a staple.", 2,
     "stapled", series_stapled, v_handshakes},
    {"staple_certificate_must_staple", "gauge",
     "1 when the certificate requires a staple (TLS Feature status_request).", 1, NULL,
     NULL, v_must_staple},
    {"staple_response_valid", "gauge", "1 when a response that may be stapled is held.",
     1, "state", series_state, v_valid},
    {"staple_response_revoked", "gauge", "1 when the held response says revoked.", 1,
     NULL, NULL, v_revoked},
    {"staple_response_next_update_timestamp_seconds", "gauge",
     "nextUpdate of the held response, as a Unix time (0: none).", 1, NULL, NULL,
     v_next_update},
    {"staple_response_this_update_timestamp_seconds", "gauge",
     "thisUpdate of the held response, as a Unix time (0: none).", 1, NULL, NULL,
     v_this_update},
    {"staple_next_refresh_timestamp_seconds", "gauge",
     "When the next fetch is due, as a Unix time.", 1, NULL, NULL, v_next_refresh},
    {"staple_fetch_consecutive_failures", "gauge",
     "Failed fetches since the last success.", 1, NULL, NULL, v_failures},
    {"staple_last_fetch_duration_seconds", "gauge",
     "The responder's response time at the last fetch.", 1, NULL, NULL, v_duration},
};

/* Per responder: fetches, its clock; and the relay's answers. */
static void emit_prometheus_responders(request_rec *r, const staple_snapshot_t *snap)
{
    apr_pool_t *p = r->pool;
    int i;

    ap_rputs("# HELP staple_responder_fetches_total Fetches from each OCSP responder "
             "URL, by result.\n# TYPE staple_responder_fetches_total counter\n",
             r);
    for (i = 0; i < snap->responder_count; i++) {
        const staple_responder_snap_t *o = &snap->responders[i];
        const char *url = prom_str(p, o->url);
        ap_rprintf(r,
                   "staple_responder_fetches_total{responder=\"%s\",result=\"success\"} "
                   "%" APR_UINT64_T_FMT "\n"
                   "staple_responder_fetches_total{responder=\"%s\",result=\"failure\"} "
                   "%" APR_UINT64_T_FMT "\n",
                   url, o->successes, url, o->failures);
    }
    ap_rputs("# HELP staple_responder_clock_offset_seconds The local clock minus the "
             "responder's (HTTP Date, producedAt), at the last fetch.\n"
             "# TYPE staple_responder_clock_offset_seconds gauge\n",
             r);
    for (i = 0; i < snap->responder_count; i++) {
        const staple_responder_snap_t *o = &snap->responders[i];
        if (o->clock.known) {
            ap_rprintf(r,
                       "staple_responder_clock_offset_seconds{responder=\"%s\"} %.0f\n",
                       prom_str(p, o->url), (double)apr_time_sec(o->clock.offset));
        }
    }
    ap_rputs("# HELP staple_relay_requests_total OCSP requests answered as a relay "
             "(SetHandler staple-responder), by outcome.\n"
             "# TYPE staple_relay_requests_total counter\n",
             r);
    for (i = 0; i < STAPLE_RELAY_COUNT; i++) {
        ap_rprintf(r,
                   "staple_relay_requests_total{outcome=\"%s\"} %" APR_UINT64_T_FMT "\n",
                   staple_relay_name(i), snap->relay[i]);
    }
}

static void emit_prometheus(request_rec *r, const staple_snapshot_t *snap)
{
    apr_pool_t *p = r->pool;
    unsigned m;
    int i, k;

    for (m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
        const metric_t *mt = &metrics[m];
        ap_rprintf(r, "# HELP %s %s\n# TYPE %s %s\n", mt->name, mt->help, mt->name,
                   mt->type);
        for (i = 0; i < snap->count; i++) {
            cert_t *c = &snap->certs[i];
            for (k = 0; k < mt->series; k++) {
                ap_rprintf(r, "%s{id=\"%s\",subject=\"%s\"%s%s%s%s} %s\n", mt->name,
                           c->id_hex, prom_str(p, c->subject), mt->label ? "," : "",
                           mt->label ? mt->label : "", mt->label ? "=\"" : "",
                           mt->label ? apr_pstrcat(p, mt->label_value(c, k), "\"", NULL)
                                     : "",
                           mt->value(p, c, k));
            }
        }
    }
    ap_rputs("# HELP staple_fetches_total Fetches by outcome.\n"
             "# TYPE staple_fetches_total counter\n",
             r);
    for (i = 0; i < STAPLE_OUTCOME_COUNT; i++) {
        ap_rprintf(r, "staple_fetches_total{outcome=\"%s\"} %" APR_UINT64_T_FMT "\n",
                   staple_outcome_name(i), snap->outcomes[i]);
    }
    ap_rputs(
        "# HELP staple_fetch_duration_seconds Duration of fetches, name lookup to last "
        "byte.\n# TYPE staple_fetch_duration_seconds histogram\n",
        r);
    for (i = 0; i < STAPLE_HIST_BUCKETS; i++) {
        ap_rprintf(
            r, "staple_fetch_duration_seconds_bucket{le=\"%s\"} %" APR_UINT64_T_FMT "\n",
            staple_hist_buckets[i].le, snap->hist[i]);
    }
    ap_rprintf(r,
               "staple_fetch_duration_seconds_sum %.6f\n"
               "staple_fetch_duration_seconds_count %" APR_UINT64_T_FMT "\n",
               (double)snap->duration_sum_us / 1e6, snap->hist[STAPLE_HIST_BUCKETS - 1]);
    emit_prometheus_responders(r, snap);
}

/* ------------------------------------------------------------------ */
/* HTML: one row per column                                            */

typedef const char *html_cell_fn(apr_pool_t *p, cert_t *c, apr_time_t now);

static const char *cell_state(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    (void)now;
    return apr_psprintf(p, "<td class=\"state\">%s</td>", c->state);
}

static const char *cell_cert(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    (void)now;
    return apr_psprintf(p, "<td>%s%s<br><small>serial %s<br>id %s<br>%s</small></td>",
                        esc(p, c->subject), c->must_staple ? " <b>(Must-Staple)</b>" : "",
                        esc(p, c->serial), c->id_hex,
                        esc(p, apr_array_pstrcat(p, c->vhosts, ' ')));
}

static const char *cell_left(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    (void)now;
    return apr_psprintf(p, "<td>%s</td>",
                        c->valid ? staple_fmt_duration(p, c->time_left) : "&ndash;");
}

static const char *cell_response(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    const char *st = cert_status(c);

    return apr_psprintf(p,
                        "<td>%s<br><small>this update %s<br>next update %s<br>fetched "
                        "%s</small></td>",
                        st ? st : "&ndash;", esc(p, staple_fmt_time(p, c->this_update)),
                        esc(p, staple_fmt_time(p, c->next_update)),
                        ago(p, c->fetched_at, now));
}

static const char *cell_fetch(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    return apr_psprintf(p,
                        "<td>%s<br><small>last %s, %.1f ms<br>next %s<br>%u failure(s) "
                        "in a row</small></td>",
                        esc(p, c->url), ago(p, c->last_fetch_at, now),
                        (double)c->last_fetch_duration / 1000.0,
                        ago(p, c->next_refresh, now), c->failures);
}

static const char *cell_error(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    return apr_psprintf(p, "<td>%s<br><small>%s</small></td>",
                        c->last_error ? esc(p, c->last_error) : "&ndash;",
                        ago(p, c->last_error_at, now));
}

static const char *cell_handshakes(apr_pool_t *p, cert_t *c, apr_time_t now)
{
    (void)now;
    return apr_psprintf(
        p, "<td>%" APR_UINT64_T_FMT " stapled<br>%" APR_UINT64_T_FMT " without</td>",
        c->stapled, c->unstapled);
}

static const struct {
    const char *title;
    html_cell_fn *cell;
} columns[] = {
    {"State", cell_state},           {"Certificate", cell_cert},
    {"Time left", cell_left},        {"Response", cell_response},
    {"Fetch", cell_fetch},           {"Last error", cell_error},
    {"Handshakes", cell_handshakes},
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

static void emit_html(request_rec *r, const staple_snapshot_t *snap)
{
    apr_pool_t *p = r->pool;
    unsigned k;
    int i;

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
             ".none{background:#e6e6e6}.responder-failing{background:#fff2c4}\n"
             ".state{font-weight:bold;text-transform:uppercase}\n"
             "small{color:#666}\n"
             "</style></head><body>\n",
             r);
    ap_rprintf(r,
               "<h1>OCSP stapling</h1>\n<p>mod_staple %s &middot; %d certificate(s) "
               "&middot; handshakes stapled %" APR_UINT64_T_FMT ", unstapled "
               "%" APR_UINT64_T_FMT " &middot; fetches %" APR_UINT64_T_FMT
               ", failed %" APR_UINT64_T_FMT " &middot; %s</p>\n",
               STAPLE_VERSION, snap->count, snap->stapled, snap->unstapled, snap->fetches,
               snap->failed, esc(p, snap->cache_name));
    ap_rputs("<table id=\"certificates\">\n<tr>", r);
    for (k = 0; k < NCOLUMNS; k++) {
        ap_rprintf(r, "<th>%s</th>", columns[k].title);
    }
    ap_rputs("</tr>\n", r);
    for (i = 0; i < snap->count; i++) {
        ap_rprintf(r, "<tr class=\"%s\">", snap->certs[i].state);
        for (k = 0; k < NCOLUMNS; k++) {
            ap_rputs(columns[k].cell(p, &snap->certs[i], snap->now), r);
        }
        ap_rputs("</tr>\n", r);
    }
    ap_rputs("</table>\n<h2>Responders</h2>\n<table "
             "id=\"responders\">\n<tr><th>URL</th><th>Addresses</th>"
             "<th>Fetches</th><th>Last error</th><th>Clock</th></tr>\n",
             r);
    for (i = 0; i < snap->responder_count; i++) {
        const staple_responder_snap_t *o = &snap->responders[i];
        ap_rprintf(
            r,
            "<tr class=\"responder%s\"><td>%s<br><small>%s%s</small></td><td>%s</td>"
            "<td>%" APR_UINT64_T_FMT " ok, %" APR_UINT64_T_FMT " failed<br><small>%u "
            "failure(s) in a row</small></td><td>%s<br><small>%s</small></td>"
            "<td>%s</td></tr>\n",
            o->consecutive ? "failing" : "good", esc(p, o->url), o->method,
            o->via_proxy ? ", through StapleProxy" : "",
            *o->addresses ? esc(p, o->addresses) : "&ndash;", o->successes, o->failures,
            o->consecutive, o->last_error ? esc(p, o->last_error) : "&ndash;",
            ago(p, o->last_error_at, snap->now),
            o->clock.known
                ? apr_psprintf(p, "%+" APR_TIME_T_FMT " s", apr_time_sec(o->clock.offset))
                : "&ndash;");
    }
    ap_rprintf(r,
               "</table>\n<p>Relay: %" APR_UINT64_T_FMT " answered, %" APR_UINT64_T_FMT
               " unauthorized, %" APR_UINT64_T_FMT " malformed.</p>\n",
               snap->relay[STAPLE_RELAY_SUCCESSFUL],
               snap->relay[STAPLE_RELAY_UNAUTHORIZED],
               snap->relay[STAPLE_RELAY_MALFORMED]);
    ap_rputs("<p><small>Also as <a href=\"?json\">JSON</a>, "
             "<a href=\"?auto\">key: value</a>, <a href=\"?prometheus\">Prometheus</a>."
             "</small></p>\n</body></html>\n",
             r);
}

/* ------------------------------------------------------------------ */
/* The handlers                                                        */

static const struct {
    const char *arg; /* NULL: the default */
    const char *type;
    void (*emit)(request_rec *r, const staple_snapshot_t *snap);
    const char *empty; /* the answer when nothing is stapled */
} formats[] = {
    {"json", "application/json", emit_json,
     "{\"version\":\"" STAPLE_VERSION "\",\"certificates\":[]}\n"},
    {"auto", "text/plain; charset=ISO-8859-1", emit_auto, "StapleCertificates: 0\n"},
    {"prometheus", "text/plain; version=0.0.4", emit_prometheus, ""},
    {NULL, "text/html; charset=ISO-8859-1", emit_html,
     "<html><body><p>mod_staple staples no certificate.</p></body></html>\n"},
};

static int staple_status_handler(request_rec *r)
{
    staple_reg_t *reg = staple_active_reg();
    unsigned f = 0;
    int rc;

    if (strcmp(r->handler, STAPLE_STATUS_HANDLER)) {
        return DECLINED;
    }
    if ((rc = staple_control(r, reg)) != DECLINED) {
        return rc;
    }
    r->allowed = (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    while (formats[f].arg && !(r->args && !strcmp(r->args, formats[f].arg))) {
        f++;
    }
    ap_set_content_type(r, formats[f].type);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (reg == NULL) {
        /* nothing claimed: an empty but well-formed answer */
        ap_rputs(formats[f].empty, r);
        return OK;
    }
    if (r->header_only) {
        return OK;
    }
    formats[f].emit(r, staple_reg_snapshot(reg, r->pool));
    return OK;
}

/* The section in mod_status's server-status page. */
static int staple_server_status(request_rec *r, int flags)
{
    staple_reg_t *reg = staple_active_reg();
    staple_snapshot_t *snap;

    if (reg == NULL) {
        return OK;
    }
    snap = staple_reg_snapshot(reg, r->pool);
    if (flags & AP_STATUS_SHORT) {
        emit_auto_totals(r, snap, 0);
        return OK;
    }
    ap_rprintf(
        r,
        "<hr>\n<h2>OCSP stapling (mod_staple)</h2>\n<p>%d certificate(s), %d with a "
        "valid response &middot; handshakes stapled %" APR_UINT64_T_FMT
        ", unstapled %" APR_UINT64_T_FMT " &middot; fetches %" APR_UINT64_T_FMT
        ", failed %" APR_UINT64_T_FMT "</p>\n",
        snap->count, snap->valid, snap->stapled, snap->unstapled, snap->fetches,
        snap->failed);
    return OK;
}

void staple_status_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(staple_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, staple_server_status, NULL, NULL, APR_HOOK_MIDDLE);
}
