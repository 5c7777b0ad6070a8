#include <stdlib.h>
#include <string.h>

#include <apr_date.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <curl/curl.h>

#include "staple_fetch.h"
#include "staple_ocsp.h"

typedef struct {
    staple_fetch_t *f;
    CURL *curl;
    struct curl_slist *headers;
    apr_pool_t *pool;
    apr_time_t started;
    unsigned char *buf; /* malloc'ed, grows with the body */
    apr_size_t len;
    apr_size_t cap;
    int too_large;
} transfer_t;

/* First allocation for a body: most OCSP responses fit. */
#define STAPLE_BODY_INITIAL 4096

apr_status_t staple_fetch_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? APR_SUCCESS : APR_EGENERAL;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *userdata)
{
    transfer_t *t = userdata;
    size_t n = size * nmemb;

    if (t->len + n > STAPLE_MAX_RESPONSE_LEN) {
        t->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (t->len + n > t->cap) {
        /* grown as needed: a refresh of thousands of certificates must not
         * reserve the limit for each of them */
        apr_size_t cap = t->cap ? t->cap : STAPLE_BODY_INITIAL;
        unsigned char *buf;
        while (cap < t->len + n) {
            cap *= 2;
        }
        if (cap > STAPLE_MAX_RESPONSE_LEN) {
            cap = STAPLE_MAX_RESPONSE_LEN;
        }
        if ((buf = realloc(t->buf, cap)) == NULL) {
            return 0;
        }
        t->buf = buf;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, data, n);
    t->len += n;
    return n;
}

/* The Date header of the answer, for the caller's clock check. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    transfer_t *t = userdata;
    size_t n = size * nmemb;
    char line[128];

    if (n > 5 && n < sizeof(line) && !strncasecmp(data, "Date:", 5)) {
        char *v = line + 5;
        memcpy(line, data, n);
        line[n] = '\0';
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        v[strcspn(v, "\r\n")] = '\0';
        t->f->http_date = apr_date_parse_http(v);
    }
    return n;
}

/* Hand a finished fetch to the caller, then free its body: with a callback
 * the body lives until it returns, without one it is copied to the pool. */
static void deliver(transfer_t *t, staple_fetch_done_fn *done, void *ctx)
{
    staple_fetch_t *f = t->f;

    if (done) {
        done(f, ctx);
        f->body = NULL;
    } else if (f->body) {
        f->body = apr_pmemdup(t->pool, f->body, f->body_len);
    }
    free(t->buf);
    t->buf = NULL;
    t->len = t->cap = 0;
}

static apr_interval_time_t time_left(const staple_fetch_opts_t *opts, apr_time_t deadline)
{
    apr_interval_time_t left = opts->timeout;

    if (deadline) {
        apr_interval_time_t until = deadline - apr_time_now();
        if (until < left) {
            left = until;
        }
    }
    return left;
}

static apr_status_t start_transfer(CURLM *multi, transfer_t *t,
                                   const staple_fetch_opts_t *opts, apr_time_t deadline)
{
    staple_fetch_t *f = t->f;
    const char *get_url;
    long ms = (long)apr_time_as_msec(time_left(opts, deadline));

    if (ms <= 0) {
        f->status = APR_TIMEUP;
        apr_cpystrn(f->error, "no time left before the deadline", sizeof(f->error));
        return APR_TIMEUP;
    }
    if ((t->curl = curl_easy_init()) == NULL) {
        f->status = APR_ENOMEM;
        apr_cpystrn(f->error, "curl_easy_init failed", sizeof(f->error));
        return APR_ENOMEM;
    }
    get_url = f->post ? NULL : staple_ocsp_get_url(t->pool, f->url, f->req, f->req_len);
    if (get_url) {
        f->method = "GET";
        curl_easy_setopt(t->curl, CURLOPT_URL, get_url);
    } else {
        f->method = "POST";
        curl_easy_setopt(t->curl, CURLOPT_URL, f->url);
        curl_easy_setopt(t->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, (const char *)f->req);
        curl_easy_setopt(t->curl, CURLOPT_POSTFIELDSIZE, (long)f->req_len);
        t->headers =
            curl_slist_append(t->headers, "Content-Type: application/ocsp-request");
    }
    t->headers = curl_slist_append(t->headers, "Accept: application/ocsp-response");
    curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->curl, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(t->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->curl, CURLOPT_HEADERDATA, t);
    /* One limit for the whole exchange, name resolution included. */
    curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(t->curl, CURLOPT_MAXFILESIZE, (long)STAPLE_MAX_RESPONSE_LEN);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS,
                     (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    /* An empty proxy disables the environment's http_proxy: only the
     * configured proxy is ever used. */
    curl_easy_setopt(t->curl, CURLOPT_PROXY, opts->proxy ? opts->proxy : "");
    /* and no_proxy/NO_PROXY must not send requests around it */
    curl_easy_setopt(t->curl, CURLOPT_NOPROXY, "");
    if (opts->user_agent) {
        curl_easy_setopt(t->curl, CURLOPT_USERAGENT, opts->user_agent);
    }
    t->started = apr_time_now();
    f->started = 1;
    if (curl_multi_add_handle(multi, t->curl) != CURLM_OK) {
        f->status = APR_EGENERAL;
        apr_cpystrn(f->error, "curl_multi_add_handle failed", sizeof(f->error));
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

static void finish_transfer(transfer_t *t, CURLcode code)
{
    staple_fetch_t *f = t->f;

    char *ip = NULL;

    f->duration = apr_time_now() - t->started;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &f->http_status);
    if (curl_easy_getinfo(t->curl, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip) {
        apr_cpystrn(f->addr, ip, sizeof(f->addr));
    }
    if (t->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        f->status = APR_ENOSPC;
        apr_snprintf(f->error, sizeof(f->error),
                     "response body larger than %d bytes, refused",
                     STAPLE_MAX_RESPONSE_LEN);
    } else if (code != CURLE_OK) {
        f->status = (code == CURLE_OPERATION_TIMEDOUT) ? APR_TIMEUP : APR_EGENERAL;
        apr_snprintf(f->error, sizeof(f->error), "%s", curl_easy_strerror(code));
    } else if (f->http_status != 200) {
        f->status = APR_EGENERAL;
        apr_snprintf(f->error, sizeof(f->error), "HTTP status %ld", f->http_status);
    } else if (t->len == 0) {
        f->status = APR_EGENERAL;
        apr_cpystrn(f->error, "empty response body", sizeof(f->error));
    } else {
        f->status = APR_SUCCESS;
        f->body = t->buf;
        f->body_len = t->len;
    }
}

static void release_transfer(CURLM *multi, transfer_t *t)
{
    if (t->curl) {
        curl_multi_remove_handle(multi, t->curl);
        curl_easy_cleanup(t->curl);
        t->curl = NULL;
    }
    curl_slist_free_all(t->headers);
    t->headers = NULL;
}

static transfer_t *new_transfer(staple_fetch_t *f, apr_pool_t *p)
{
    transfer_t *t = apr_pcalloc(p, sizeof(*t));

    t->f = f;
    t->pool = p;
    f->status = APR_EINIT;
    f->started = 0;
    f->error[0] = '\0';
    f->body = NULL;
    f->body_len = 0;
    f->http_status = 0;
    f->duration = 0;
    f->http_date = 0;
    f->addr[0] = '\0';
    return t;
}

apr_status_t staple_fetch_run(apr_array_header_t *fetches,
                              const staple_fetch_opts_t *opts, apr_time_t deadline,
                              staple_fetch_done_fn *done, staple_fetch_more_fn *more,
                              void *ctx, apr_pool_t *p)
{
    CURLM *multi;
    /* transfer_t *, one per fetch, in the order of fetches */
    apr_array_header_t *ts;
    int next = 0, running = 0, i;
    int max_parallel = opts->max_parallel > 0 ? opts->max_parallel : 1;

    if (fetches->nelts == 0 && more == NULL) {
        return APR_SUCCESS;
    }
    if ((multi = curl_multi_init()) == NULL) {
        return APR_ENOMEM;
    }
    ts = apr_array_make(p, fetches->nelts + 4, sizeof(transfer_t *));

    for (;;) {
        CURLMsg *msg;
        int msgs, still;

        /* the caller may add what has fallen due meanwhile */
        if (more) {
            more(fetches, ctx);
        }
        while (ts->nelts < fetches->nelts) {
            APR_ARRAY_PUSH(ts, transfer_t *) =
                new_transfer(APR_ARRAY_IDX(fetches, ts->nelts, staple_fetch_t *), p);
        }
        if (next >= ts->nelts && running == 0) {
            break;
        }
        while (next < ts->nelts && running < max_parallel) {
            transfer_t *t = APR_ARRAY_IDX(ts, next++, transfer_t *);
            if (start_transfer(multi, t, opts, deadline) == APR_SUCCESS) {
                running++;
            } else {
                release_transfer(multi, t);
                deliver(t, done, ctx);
            }
        }
        if (curl_multi_perform(multi, &still) != CURLM_OK) {
            break;
        }
        while ((msg = curl_multi_info_read(multi, &msgs)) != NULL) {
            transfer_t *t = NULL;
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            finish_transfer(t, msg->data.result);
            release_transfer(multi, t);
            running--;
            deliver(t, done, ctx);
        }
        if (running > 0) {
            curl_multi_poll(multi, NULL, 0, 100, NULL);
        }
    }

    /* Only reached early when libcurl itself failed: fail what is left. */
    for (i = 0; i < ts->nelts; i++) {
        transfer_t *t = APR_ARRAY_IDX(ts, i, transfer_t *);
        if (t->curl || i >= next) {
            t->f->status = APR_EGENERAL;
            apr_cpystrn(t->f->error, "transfer aborted", sizeof(t->f->error));
            release_transfer(multi, t);
            deliver(t, done, ctx);
        }
    }
    curl_multi_cleanup(multi);
    return APR_SUCCESS;
}
