/*
 * The directives, the merge of per-server settings, defaults where values
 * are read, and the report on certificates mod_ssl never primed.
 */
#include <apr_file_io.h>
#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_uri.h>
#include <ap_provider.h>
#include <http_core.h>

#include "staple_ocsp.h"
#include "mod_staple_config.h"
#include "mod_staple_private.h"

static staple_mod_conf_t *mod_conf_make(apr_pool_t *p)
{
    staple_mod_conf_t *mc = apr_pcalloc(p, sizeof(*mc));

    mc->event_timeout = STAPLE_UNSET;
    mc->request_method = STAPLE_UNSET;
    mc->startup_timeout = STAPLE_UNSET;
    mc->responder_timeout = STAPLE_UNSET;
    mc->time_skew = STAPLE_UNSET;
    mc->max_age = STAPLE_UNSET;
    mc->standard_timeout = STAPLE_UNSET;
    mc->retry_delay = STAPLE_UNSET;
    mc->error_timeout = STAPLE_UNSET;
    mc->renew_pct = STAPLE_UNSET;
    mc->renew_window = STAPLE_UNSET;
    return mc;
}

void *staple_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    staple_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    (void)s;
    c->engine = STAPLE_UNSET;
    c->force_urls = NULL;
    /* only the main server's is used: virtual hosts get it by the merge */
    c->mc = mod_conf_make(p);
    return c;
}

void *staple_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    staple_srv_conf_t *base = basev, *add = addv;
    staple_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->engine = (add->engine != STAPLE_UNSET) ? add->engine : base->engine;
    c->force_urls = add->force_urls ? add->force_urls : base->force_urls;
    /* the server-wide directives are GLOBAL_ONLY: always the main server's */
    c->mc = base->mc;
    return c;
}

staple_srv_conf_t *staple_srv_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &staple_module);
}

static staple_mod_conf_t *mod_conf(cmd_parms *cmd)
{
    return staple_srv_conf(cmd->server)->mc;
}

int staple_conf_engine(const staple_srv_conf_t *sc)
{
    return sc->engine != 0;
}

/* A server-wide value, or its default when no directive set it. */
#define OR_DEFAULT(v, def) ((v) != STAPLE_UNSET ? (v) : (def))

apr_interval_time_t staple_conf_event_timeout(const staple_mod_conf_t *mc)
{
    return OR_DEFAULT(mc->event_timeout, apr_time_from_sec(60));
}

apr_interval_time_t staple_conf_startup_timeout(const staple_mod_conf_t *mc)
{
    return OR_DEFAULT(mc->startup_timeout, apr_time_from_sec(5));
}

const char *staple_conf_store(const staple_mod_conf_t *mc, apr_pool_t *p)
{
    if (mc->store && !strcmp(mc->store, STAPLE_STORE_NONE)) {
        return NULL;
    }
    return ap_runtime_dir_relative(p, mc->store ? mc->store : "staple");
}

void staple_conf_reg_opts(const staple_mod_conf_t *mc, staple_reg_opts_t *o)
{
    o->check.time_skew = OR_DEFAULT(mc->time_skew, apr_time_from_sec(300));
    o->check.max_age = OR_DEFAULT(mc->max_age, -1);
    if (mc->renew_pct == STAPLE_UNSET && mc->renew_window == STAPLE_UNSET) {
        o->timing.renew_pct = 50;
        o->timing.renew_window = STAPLE_UNSET;
    } else {
        o->timing.renew_pct = mc->renew_pct;
        o->timing.renew_window = mc->renew_window;
    }
    o->timing.standard_timeout =
        OR_DEFAULT(mc->standard_timeout, apr_time_from_sec(3600));
    o->timing.retry_delay = OR_DEFAULT(mc->retry_delay, apr_time_from_sec(30));
    o->timing.retry_max = OR_DEFAULT(mc->error_timeout, apr_time_from_sec(600));
    o->fetch.timeout = OR_DEFAULT(mc->responder_timeout, apr_time_from_sec(10));
    o->fetch.proxy = mc->proxy;
    o->request_method = OR_DEFAULT(mc->request_method, STAPLE_METHOD_AUTO);
    o->trusted = mc->trusted;
}

/* The longest any of the durations may be: ten years. */
#define STAPLE_MAX_SECONDS (10L * 365 * 86400)

/* Parse a whole number of seconds from min_sec to STAPLE_MAX_SECONDS; with
 * min_sec -1, -1 stands for "no limit" and 0 is refused. */
static const char *parse_seconds(cmd_parms *cmd, const char *arg, apr_int64_t min_sec,
                                 apr_interval_time_t *out)
{
    const char *name = cmd->cmd->name;
    char *end;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (min_sec < 0 && !errno && end != arg && *end == '\0' && v == 0) {
        return apr_psprintf(cmd->pool,
                            "%s: 0 would refuse every response; use -1 or a whole number "
                            "of seconds from 1 to %ld (for example: %s 86400)",
                            name, STAPLE_MAX_SECONDS, name);
    }
    if (errno || end == arg || *end != '\0' || v < min_sec || v > STAPLE_MAX_SECONDS) {
        if (min_sec < 0) {
            return apr_psprintf(cmd->pool,
                                "%s: '%s' is not valid; use -1 or a whole number of "
                                "seconds from 1 to %ld (for example: %s 86400; -1: no "
                                "limit)",
                                name, arg, STAPLE_MAX_SECONDS, name);
        }
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not a valid number of seconds; use a whole "
                            "number from %" APR_INT64_T_FMT
                            " to %ld (for example: %s 10)",
                            name, arg, min_sec, STAPLE_MAX_SECONDS, name);
    }
    *out = apr_time_from_sec(v);
    return NULL;
}

#define GLOBAL_ONLY_CHECK(cmd)                                                           \
    do {                                                                                 \
        const char *err_ = ap_check_cmd_context((cmd), GLOBAL_ONLY);                     \
        if (err_)                                                                        \
            return err_;                                                                 \
    } while (0)

/* The server-wide directives that take seconds store into the field at
 * cmd->info (an offset) with the minimum in the command's table entry. */
typedef struct {
    apr_size_t offset;
    apr_int64_t min_sec;
} seconds_arg_t;

static const char *set_seconds(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_mod_conf_t *c = mod_conf(cmd);
    const seconds_arg_t *spec = cmd->info;

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    return parse_seconds(cmd, arg, spec->min_sec,
                         (apr_interval_time_t *)((char *)c + spec->offset));
}

static const char *set_engine(cmd_parms *cmd, void *dc, int flag)
{
    (void)dc;
    staple_srv_conf(cmd->server)->engine = flag;
    return NULL;
}

static const char *set_cache(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_mod_conf_t *c = mod_conf(cmd);
    const char *sep, *name, *err;

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    /* Same syntax as SSLStaplingCache: "name" or "name:arguments". */
    sep = ap_strchr_c(arg, ':');
    name = sep ? apr_pstrmemdup(cmd->pool, arg, (apr_size_t)(sep - arg)) : arg;
    c->cache_provider =
        ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name, AP_SOCACHE_PROVIDER_VERSION);
    if (c->cache_provider == NULL) {
        apr_array_header_t *names = ap_list_provider_names(
            cmd->pool, AP_SOCACHE_PROVIDER_GROUP, AP_SOCACHE_PROVIDER_VERSION);
        const char *all =
            names->nelts ? apr_array_pstrcat(cmd->pool, names, ',') : "none";
        return apr_psprintf(cmd->pool,
                            "StapleCache: '%s' is not a loaded socache provider (loaded: "
                            "%s); load it first, for example LoadModule "
                            "socache_%s_module modules/mod_socache_%s.so",
                            name, all, name, name);
    }
    err = c->cache_provider->create(&c->cache_instance, sep ? sep + 1 : NULL,
                                    cmd->temp_pool, cmd->pool);
    if (err) {
        return apr_psprintf(cmd->pool, "StapleCache: '%s': %s", arg, err);
    }
    c->cache_spec = arg;
    return NULL;
}

/* Each StapleTrustedCertificate line adds its certificates to the list. */
static const char *set_trusted(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_mod_conf_t *c = mod_conf(cmd);
    const char *path = ap_server_root_relative(cmd->pool, arg);
    STACK_OF(X509) *certs;
    char err[512];
    int i;

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    if (path == NULL ||
        staple_load_pem_file(&certs, path, cmd->pool, err, sizeof(err)) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool,
                            "StapleTrustedCertificate: %s; give a readable file of PEM "
                            "certificates trusted to sign OCSP responses",
                            path ? err : arg);
    }
    if (c->trusted == NULL) {
        c->trusted = certs;
        return NULL;
    }
    for (i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (!X509_up_ref(x)) {
            return "StapleTrustedCertificate: out of memory";
        }
        if (!sk_X509_push(c->trusted, x)) {
            X509_free(x);
            return "StapleTrustedCertificate: out of memory";
        }
    }
    return NULL;
}

/* An http(s) URL with a host, for StapleForceURL and StapleProxy. */
static int is_http_url(apr_pool_t *p, const char *arg)
{
    apr_uri_t uri;

    return apr_uri_parse(p, arg, &uri) == APR_SUCCESS && uri.scheme != NULL &&
           (!strcasecmp(uri.scheme, "http") || !strcasecmp(uri.scheme, "https")) &&
           uri.hostname != NULL && uri.hostname[0] != '\0';
}

/* An error naming the directive and the form when arg is not an http(s)
 * URL with a host (shown without a password); NULL when it is. */
static const char *check_url(cmd_parms *cmd, const char *arg, const char *example)
{
    if (is_http_url(cmd->pool, arg)) {
        return NULL;
    }
    return apr_psprintf(cmd->pool, "%s: '%s' is not an http:// or https:// URL; use %s",
                        cmd->cmd->name, staple_url_shown(cmd->pool, arg), example);
}

/* StapleForceURL url [url ...]: each argument adds one, tried in order. */
static const char *set_force_url(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_srv_conf_t *sc = staple_srv_conf(cmd->server);
    const char *err =
        check_url(cmd, arg, "the responder's URL, for example http://ocsp.example.com/");

    (void)dc;
    if (err) {
        return err;
    }
    if (sc->force_urls == NULL) {
        sc->force_urls = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(sc->force_urls, const char *) = arg;
    return NULL;
}

static const char *set_proxy(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err;

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    if ((err = check_url(
             cmd, arg, "the proxy's URL, for example http://proxy.example.com:3128/"))) {
        return err;
    }
    mod_conf(cmd)->proxy = arg;
    return NULL;
}

static const char *set_request_method(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_mod_conf_t *c = mod_conf(cmd);

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    if (!strcasecmp(arg, "auto")) {
        c->request_method = STAPLE_METHOD_AUTO;
    } else if (!strcasecmp(arg, "get")) {
        c->request_method = STAPLE_METHOD_GET;
    } else if (!strcasecmp(arg, "post")) {
        c->request_method = STAPLE_METHOD_POST;
    } else {
        return apr_psprintf(
            cmd->pool,
            "StapleRequestMethod: '%s' is not auto, get or post (auto: GET "
            "when the request fits, POST when a responder refuses GET)",
            arg);
    }
    return NULL;
}

static const char *set_event_cmd(cmd_parms *cmd, void *dc, const char *args)
{
    staple_mod_conf_t *c = mod_conf(cmd);
    apr_finfo_t fi;
    const char *word;

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    c->event_cmd = apr_array_make(cmd->pool, 4, sizeof(const char *));
    while (*(word = ap_getword_conf(cmd->pool, &args)) != '\0') {
        APR_ARRAY_PUSH(c->event_cmd, const char *) = word;
    }
    if (c->event_cmd->nelts == 0) {
        return "StapleEventCmd: give the program to run, and optionally its first "
               "arguments";
    }
    word =
        ap_server_root_relative(cmd->pool, APR_ARRAY_IDX(c->event_cmd, 0, const char *));
    if (word == NULL ||
        apr_stat(&fi, word, APR_FINFO_TYPE | APR_FINFO_PROT, cmd->pool) != APR_SUCCESS ||
        fi.filetype != APR_REG ||
        !(fi.protection & (APR_UEXECUTE | APR_GEXECUTE | APR_WEXECUTE))) {
        return apr_psprintf(cmd->pool,
                            "StapleEventCmd: '%s' is not an executable file; give the "
                            "full path of the program to run on events",
                            APR_ARRAY_IDX(c->event_cmd, 0, const char *));
    }
    APR_ARRAY_IDX(c->event_cmd, 0, const char *) = word;
    return NULL;
}

static const char *set_store(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_mod_conf_t *c = mod_conf(cmd);

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    if (!strcasecmp(arg, STAPLE_STORE_NONE)) {
        c->store = STAPLE_STORE_NONE;
        return NULL;
    }
    /* resolved against DefaultRuntimeDir in post_config, when its final
     * value is known */
    c->store = arg;
    return NULL;
}

/* A StapleRenewWindow in seconds beyond these is refused, or warned of. */
#define STAPLE_RENEW_WINDOW_MAX  apr_time_from_sec(30 * 86400)
#define STAPLE_RENEW_WINDOW_WARN apr_time_from_sec(86400)

static const char *set_renew_window(cmd_parms *cmd, void *dc, const char *arg)
{
    staple_mod_conf_t *c = mod_conf(cmd);
    apr_size_t len = strlen(arg);
    const char *err;

    (void)dc;
    GLOBAL_ONLY_CHECK(cmd);
    if (len > 1 && arg[len - 1] == '%') {
        char *end;
        long pct = strtol(arg, &end, 10);
        if (end != arg + len - 1 || pct < 1 || pct > 99) {
            return apr_psprintf(cmd->pool,
                                "StapleRenewWindow: '%s' is not a percentage from 1%% to "
                                "99%% or a number of seconds (for example: "
                                "StapleRenewWindow 50%%)",
                                arg);
        }
        c->renew_pct = (int)pct;
        c->renew_window = STAPLE_UNSET;
        return NULL;
    }
    c->renew_pct = -1;
    if ((err = parse_seconds(cmd, arg, 0, &c->renew_window)) != NULL) {
        return err;
    }
    if (c->renew_window > STAPLE_RENEW_WINDOW_MAX) {
        return apr_psprintf(
            cmd->pool,
            "StapleRenewWindow: %s seconds is longer than OCSP responses "
            "live (30 days at most, commonly a few hours to 7 days): every "
            "response would be renewed at every chance, about once a "
            "minute; use a percentage (for example: StapleRenewWindow "
            "50%%) or fewer seconds",
            arg);
    }
    if (c->renew_window > STAPLE_RENEW_WINDOW_WARN) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server,
                     "StapleRenewWindow %s: longer than the validity of many OCSP "
                     "responses (commonly a few hours to 7 days); one that is valid "
                     "for less is renewed at every chance, about once a minute. A "
                     "percentage (StapleRenewWindow 50%%) follows each response's "
                     "validity",
                     arg);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Certificates mod_ssl never primed                                   */

/* A file's text (at most 16 MiB), or NULL when it cannot be read. */
static char *read_text(const char *path, apr_size_t *plen, apr_pool_t *p)
{
    apr_file_t *fd;
    apr_finfo_t fi;
    apr_size_t len;
    char *text;
    apr_status_t rv;

    if (apr_file_open(&fd, path, APR_FOPEN_READ, 0, p) != APR_SUCCESS) {
        return NULL;
    }
    if (apr_file_info_get(&fi, APR_FINFO_SIZE, fd) != APR_SUCCESS || fi.size <= 0 ||
        fi.size > 16 * 1024 * 1024) {
        apr_file_close(fd);
        return NULL;
    }
    len = (apr_size_t)fi.size;
    text = apr_palloc(p, len + 1);
    rv = apr_file_read_full(fd, text, len, &len);
    apr_file_close(fd);
    if (rv != APR_SUCCESS) {
        return NULL;
    }
    text[len] = '\0';
    *plen = len;
    return text;
}

/* The first argument of a directive named name in the block d is in. */
static const char *sibling_arg(ap_directive_t *d, const char *name, apr_pool_t *p)
{
    ap_directive_t *first = d->parent ? d->parent->first_child : ap_conftree;

    for (d = first; d; d = d->next) {
        if (!strcasecmp(d->directive, name) && d->args) {
            const char *args = d->args;
            return ap_getword_conf(p, &args);
        }
    }
    return NULL;
}

/*
 * mod_ssl primes only certificates whose issuer it found, and the first
 * module to claim a certificate staples it (mod_md with MDStapling on
 * claims every one, by default, when it is loaded first): certificates of
 * SSLCertificateFile lines that never reached mod_staple are said once
 * each, with the reason that holds.
 */
static void report_unprimed_file(const staple_reg_t *reg, server_rec *s,
                                 ap_directive_t *d, const char *file, apr_hash_t *seen,
                                 apr_pool_t *p)
{
    const char *path = ap_server_root_relative(p, file), *chain;
    apr_size_t len, chain_len;
    char *pem, *more, err[256];
    unsigned char id[STAPLE_ID_LEN];
    staple_cert_t *cert;
    apr_status_t rv;

    const char *engine = sibling_arg(d, "SSLEngine", p);

    /* mod_ssl loads certificates only where SSLEngine is on */
    if (engine == NULL || (strcasecmp(engine, "on") && strcasecmp(engine, "optional"))) {
        return;
    }
    if (path == NULL || apr_hash_get(seen, path, APR_HASH_KEY_STRING)) {
        return;
    }
    apr_hash_set(seen, path, APR_HASH_KEY_STRING, path);
    /* not a file (a PKCS#11 URI, say): mod_ssl reports its own errors */
    if ((pem = read_text(path, &len, p)) == NULL) {
        return;
    }
    /* the common case, a primed certificate, without parsing it */
    if (!staple_pem_first_id(pem, len, id) || staple_reg_was_primed(reg, id)) {
        return;
    }
    /* the issuer may come from SSLCertificateChainFile */
    if ((chain = sibling_arg(d, "SSLCertificateChainFile", p)) &&
        (chain = ap_server_root_relative(p, chain)) &&
        (more = read_text(chain, &chain_len, p))) {
        pem = apr_pstrcat(p, pem, "\n", more, NULL);
    }
    rv = staple_cert_load(&cert, p, pem, NULL, err, sizeof(err));
    if (cert == NULL || staple_reg_was_primed(reg, cert->id) ||
        apr_hash_get(seen, cert->id_hex, APR_HASH_KEY_STRING)) {
        return; /* primed (claimed or declined with a reason), or said already */
    }
    apr_hash_set(seen, cert->id_hex, APR_HASH_KEY_STRING, path);
    if (rv == APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "certificate %s (serial %s) in %s is stapled by another module, "
                     "which claimed it first (mod_md with MDStapling on claims every "
                     "certificate unless MDStapleOthers is off): mod_staple leaves it "
                     "alone",
                     cert->subject, cert->serial, path);
    } else if (cert->self_signed) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "certificate %s (serial %s) in %s is self-signed: there is no "
                     "responder to ask, not stapling it",
                     cert->subject, cert->serial, path);
    } else {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            "certificate %s (serial %s) in %s cannot be stapled: mod_ssl did not "
            "find its issuer; put the issuer certificate after it in "
            "SSLCertificateFile (or in SSLCertificateChainFile)",
            cert->subject, cert->serial, path);
    }
}

static void report_unprimed(const staple_reg_t *reg, server_rec *s, ap_directive_t *d,
                            apr_hash_t *seen, apr_pool_t *p)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "SSLCertificateFile") && d->args) {
            const char *args = d->args;
            const char *file = ap_getword_conf(p, &args);
            if (*file) {
                report_unprimed_file(reg, s, d, file, seen, p);
            }
        }
        if (d->first_child) {
            report_unprimed(reg, s, d->first_child, seen, p);
        }
    }
}

void staple_conf_report_unprimed(const staple_reg_t *reg, server_rec *s,
                                 apr_pool_t *ptemp)
{
    report_unprimed(reg, s, ap_conftree, apr_hash_make(ptemp), ptemp);
}

/* ------------------------------------------------------------------ */
/* The command table                                                   */

#define SECONDS_ARG(field, min)                                                          \
    static const seconds_arg_t arg_##field = {APR_OFFSETOF(staple_mod_conf_t, field),    \
                                              (min)}

SECONDS_ARG(startup_timeout, 0);
SECONDS_ARG(event_timeout, 1);
SECONDS_ARG(responder_timeout, 1);
SECONDS_ARG(time_skew, 0);
SECONDS_ARG(max_age, -1);
SECONDS_ARG(standard_timeout, 1);
SECONDS_ARG(retry_delay, 1);
SECONDS_ARG(error_timeout, 1);

#define SECONDS(name, field, help)                                                       \
    AP_INIT_TAKE1(name, set_seconds, (void *)&arg_##field, RSRC_CONF, help)

const command_rec staple_cmds[] = {
    AP_INIT_FLAG("StapleEngine", set_engine, NULL, RSRC_CONF,
                 "on|off: take over OCSP stapling for this server's certificates "
                 "(default on)"),
    AP_INIT_ITERATE("StapleForceURL", set_force_url, NULL, RSRC_CONF,
                    "http(s) URLs of the OCSP responders to ask instead of the "
                    "certificate's, in order (the last one that answered first)"),
    AP_INIT_TAKE1("StapleRequestMethod", set_request_method, NULL, RSRC_CONF,
                  "auto|get|post: GET when the request fits and POST when a responder "
                  "refuses it (auto, the default), GET, or always POST"),
    AP_INIT_TAKE1("StapleCache", set_cache, NULL, RSRC_CONF,
                  "provider[:arguments] socache for OCSP responses, as "
                  "SSLStaplingCache (default: shmcb sized for the certificates, 8 KiB "
                  "each, 1 MiB at least)"),
    AP_INIT_TAKE1("StapleProxy", set_proxy, NULL, RSRC_CONF,
                  "http(s) URL of the HTTP proxy for responder requests (default: none, "
                  "the environment's proxy variables are ignored)"),
    AP_INIT_RAW_ARGS("StapleEventCmd", set_event_cmd, NULL, RSRC_CONF,
                     "program [arguments]: run on renewed, errored, revoked, missing "
                     "and expiring events, with event, certificate id, subject and "
                     "detail appended"),
    AP_INIT_TAKE1("StapleStore", set_store, NULL, RSRC_CONF,
                  "directory|none: where verified responses are kept across restarts "
                  "(default: staple under DefaultRuntimeDir)"),
    AP_INIT_TAKE1("StapleTrustedCertificate", set_trusted, NULL, RSRC_CONF,
                  "PEM file of OCSP responder certificates trusted exactly, or of CAs "
                  "whose own OCSPSigning certificates are trusted, besides each "
                  "certificate's issuer; several lines add up"),
    AP_INIT_TAKE1("StapleRenewWindow", set_renew_window, NULL, RSRC_CONF,
                  "pct% or seconds of validity left when a response is renewed "
                  "(default 50%)"),
    SECONDS("StapleEventTimeout", event_timeout,
            "seconds a StapleEventCmd program may run before it is killed with its "
            "process group (default 60)"),
    SECONDS("StapleStartupTimeout", startup_timeout,
            "seconds startup may wait for first responses (default 5)"),
    SECONDS("StapleResponderTimeout", responder_timeout,
            "seconds for a whole fetch, name lookup to last byte (default 10)"),
    SECONDS("StapleResponseTimeSkew", time_skew,
            "seconds of clock skew allowed on thisUpdate (default 300)"),
    SECONDS("StapleResponseMaxAge", max_age,
            "-1 (no limit, the default) or seconds from 1: refuse and stop stapling "
            "responses older than this"),
    SECONDS("StapleStandardCacheTimeout", standard_timeout,
            "refresh responses at least this often, in seconds (default 3600)"),
    SECONDS("StapleRetryDelay", retry_delay,
            "seconds before the first retry after a failed fetch (default 30)"),
    SECONDS("StapleErrorCacheTimeout", error_timeout,
            "longest interval between retries, in seconds (default 600)"),
    {NULL},
};
