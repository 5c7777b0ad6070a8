#include <string.h>
#include <time.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "staple_util.h"

int staple_asn1_to_time(const ASN1_TIME *t, apr_time_t *out)
{
    struct tm tm;
    time_t secs;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
        return 0;
    }
    secs = timegm(&tm);
    if (secs == (time_t)-1) {
        return 0;
    }
    *out = apr_time_from_sec((apr_time_t)secs);
    return 1;
}

const char *staple_hex(apr_pool_t *p, const unsigned char *data, apr_size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char *s = apr_palloc(p, len * 2 + 1);
    apr_size_t i;

    for (i = 0; i < len; i++) {
        s[2 * i] = digits[data[i] >> 4];
        s[2 * i + 1] = digits[data[i] & 0x0f];
    }
    s[len * 2] = '\0';
    return s;
}

const char *staple_fmt_duration(apr_pool_t *p, apr_interval_time_t t)
{
    apr_int64_t s = apr_time_sec(t);
    const char *sign = "";

    if (s < 0) {
        sign = "-";
        s = -s;
    }
    if (s >= 86400) {
        return apr_psprintf(p, "%s%" APR_INT64_T_FMT "d %" APR_INT64_T_FMT "h", sign,
                            s / 86400, (s % 86400) / 3600);
    }
    if (s >= 3600) {
        return apr_psprintf(p, "%s%" APR_INT64_T_FMT "h %" APR_INT64_T_FMT "m", sign,
                            s / 3600, (s % 3600) / 60);
    }
    if (s >= 60) {
        return apr_psprintf(p, "%s%" APR_INT64_T_FMT "m %" APR_INT64_T_FMT "s", sign,
                            s / 60, s % 60);
    }
    return apr_psprintf(p, "%s%" APR_INT64_T_FMT "s", sign, s);
}

const char *staple_fmt_time(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    if (t <= 0 || apr_time_exp_gmt(&tm, t) != APR_SUCCESS) {
        return NULL;
    }
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * The password left out by the text alone, for what apr_uri reads another
 * way or not at all ("user:secret@proxy:3128" is the scheme "user" and a
 * path to it, as curl takes it for a proxy with a password). The authority
 * starts after "scheme:" and the slashes after it (curl allows one, three,
 * or backslashes), else at the first character that is not blank; the user
 * information ends at the last '@' before any '?' or '#' (a '/' may be in
 * the password), and what follows its first ':' is left out. An '@' in a
 * path may hide a little of it: what is shown is for people.
 */
static const char *url_shown_text(apr_pool_t *p, const char *url)
{
    const char *start = url, *end, *at = NULL, *colon, *s;

    while (*start == ' ' || *start == '\t') {
        start++;
    }
    s = start;
    if (apr_isalpha(*s)) {
        while (apr_isalnum(*s) || *s == '+' || *s == '-' || *s == '.') {
            s++;
        }
        if (*s == ':' && (s[1] == '/' || s[1] == '\\')) {
            for (s++; *s == '/' || *s == '\\'; s++) {
            }
            start = s;
        }
    }
    end = start + strcspn(start, "?#");
    for (s = start; s < end; s++) {
        if (*s == '@') {
            at = s;
        }
    }
    if (at == NULL || (colon = memchr(start, ':', (apr_size_t)(at - start))) == NULL) {
        return url;
    }
    return apr_pstrcat(p, apr_pstrmemdup(p, url, (apr_size_t)(colon - url)), at, NULL);
}

const char *staple_url_shown(apr_pool_t *p, const char *url)
{
    apr_uri_t uri;

    if (url == NULL) {
        return NULL;
    }
    if (apr_uri_parse(p, url, &uri) == APR_SUCCESS && uri.password != NULL) {
        return apr_uri_unparse(p, &uri, APR_URI_UNP_OMITPASSWORD);
    }
    return url_shown_text(p, url);
}
