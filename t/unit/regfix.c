/*
 * The registry's test fixtures (regfix.h): a clock the test moves, an
 * in-memory cache, a scripted fetcher, registries for leaf.test, and
 * responses made at the fake time.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include <unistd.h>

#include "regfix.h"

/* ------------------------------------------------------------------ */
/* A clock, randomness and a log                                       */

apr_time_t fake_now;
double fake_random = 0.5;
int warnings; /* log lines at warning level or worse */

apr_time_t fake_clock(void)
{
    return fake_now;
}

double fake_rand(void)
{
    return fake_random;
}

/* The registry's pause (after putting a fetch lease): no time passes on the
 * fake clock, and while_paused, if set, runs once. */
void (*while_paused)(void);
int pauses;

void fake_sleep(apr_interval_time_t t)
{
    (void)t;
    pauses++;
    if (while_paused) {
        void (*fn)(void) = while_paused;
        while_paused = NULL;
        fn();
    }
}

void test_log(void *baton, int level, const char *msg)
{
    (void)baton;
    if (level <= STAPLE_LOG_WARNING) {
        warnings++;
    }
    if (getenv("STAPLE_TEST_VERBOSE")) {
        fprintf(stderr, "  log %d: %s\n", level, msg);
    }
}

/* ------------------------------------------------------------------ */
/* An in-memory cache                                                  */

mem_entry_t *mem_find(mem_cache_t *m, const unsigned char *key, unsigned int klen,
                      int make)
{
    int i;

    for (i = 0; i < MEM_SLOTS; i++) {
        if (m->e[i].key_len == klen && !memcmp(m->e[i].key, key, klen)) {
            return &m->e[i];
        }
    }
    for (i = 0; make && i < MEM_SLOTS; i++) {
        if (m->e[i].key_len == 0 && klen <= sizeof(m->e[i].key)) {
            memcpy(m->e[i].key, key, klen);
            m->e[i].key_len = klen;
            return &m->e[i];
        }
    }
    return NULL;
}

apr_status_t mem_get(void *baton, const unsigned char *key, unsigned int klen,
                     unsigned char *buf, unsigned int *len, apr_pool_t *p)
{
    mem_cache_t *m = baton;
    mem_entry_t *e = mem_find(m, key, klen, 0);

    (void)p;
    m->gets++;
    if (e == NULL || e->data == NULL || e->expiry <= fake_now || e->len > *len) {
        return APR_NOTFOUND;
    }
    memcpy(buf, e->data, e->len);
    *len = e->len;
    return APR_SUCCESS;
}

apr_status_t mem_put(void *baton, const unsigned char *key, unsigned int klen,
                     apr_time_t expiry, const unsigned char *data, unsigned int len,
                     apr_pool_t *p)
{
    mem_cache_t *m = baton;
    mem_entry_t *e = mem_find(m, key, klen, 1);

    (void)p;
    m->puts++;
    if (e == NULL) {
        return APR_ENOSPC;
    }
    free(e->data);
    e->data = malloc(len);
    memcpy(e->data, data, len);
    e->len = len;
    e->expiry = expiry;
    return APR_SUCCESS;
}

void mem_clear(mem_cache_t *m)
{
    int i;

    for (i = 0; i < MEM_SLOTS; i++) {
        free(m->e[i].data);
    }
    memset(m, 0, sizeof(*m));
}

staple_cache_ops_t mem_ops(mem_cache_t *m, const char *name)
{
    staple_cache_ops_t ops = {name, mem_get, mem_put, m};
    return ops;
}

/* Put a raw value (an encoded entry, or garbage) into a cache. */
void mem_set_entry(mem_cache_t *m, const unsigned char *id, const unsigned char *der,
                   apr_size_t len)
{
    unsigned char *buf = malloc(STAPLE_ENTRY_HEADER_LEN + len);
    apr_size_t n = staple_entry_encode(buf, der, len, fake_now);

    mem_put(m, id, STAPLE_ID_LEN, fake_now + apr_time_from_sec(3600), buf,
            (unsigned int)n, pool);
    free(buf);
}

/* 1 when the cache holds exactly this response for leaf.test. */
int cache_holds(mem_cache_t *m, const unsigned char *want, apr_size_t want_len)
{
    static unsigned char buf[STAPLE_ENTRY_HEADER_LEN + STAPLE_MAX_RESPONSE_LEN];
    unsigned int len = sizeof(buf);
    const unsigned char *der;
    apr_size_t der_len;
    apr_time_t at;
    const char *why;

    return mem_get(m, leaf_sc->id, STAPLE_ID_LEN, buf, &len, pool) == APR_SUCCESS &&
           staple_entry_decode(buf, len, &der, &der_len, &at, &why) == APR_SUCCESS &&
           der_len == want_len && !memcmp(der, want, want_len);
}

/* ------------------------------------------------------------------ */
/* A scripted fetcher                                                  */

answer_t answer;      /* what every fetch gets */
int fetches;          /* fetches run */
void (*during)(void); /* called while a fetch runs */

apr_status_t fake_run(apr_array_header_t *list, const staple_fetch_opts_t *opts,
                      apr_time_t deadline, staple_fetch_done_fn *done,
                      staple_fetch_more_fn *more, void *ctx, apr_pool_t *p)
{
    int i;

    (void)opts;
    (void)deadline;
    (void)p;
    if (more) {
        more(list, ctx);
    }
    for (i = 0; i < list->nelts; i++) {
        staple_fetch_t *f = APR_ARRAY_IDX(list, i, staple_fetch_t *);
        fetches++;
        if (during) {
            void (*fn)(void) = during;
            during = NULL;
            fn();
        }
        f->started = 1;
        f->method = "GET";
        f->duration = apr_time_from_msec(12);
        f->status = answer.status;
        f->http_status = answer.http_status             ? answer.http_status
                         : answer.status == APR_SUCCESS ? 200
                                                        : 0;
        f->http_date = answer.http_date;
        f->method = f->post ? "POST" : "GET";
        if (answer.status == APR_SUCCESS) {
            f->body = apr_pmemdup(p, answer.body, answer.len);
            f->body_len = answer.len;
        } else {
            apr_cpystrn(f->error, "Connection refused", sizeof(f->error));
        }
        done(f, ctx);
        /* as staple_fetch_run does between transfers: retries join */
        if (more) {
            more(list, ctx);
        }
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Registries                                                          */

mem_cache_t shared_mem, local_a, local_b;

staple_reg_opts_t default_opts(const char *node)
{
    staple_reg_opts_t o;

    memset(&o, 0, sizeof(o));
    o.check.time_skew = apr_time_from_sec(300);
    o.check.max_age = -1;
    o.timing.renew_pct = 50;
    o.timing.renew_window = -1;
    o.timing.standard_timeout = apr_time_from_sec(3600);
    o.timing.retry_delay = apr_time_from_sec(30);
    o.timing.retry_max = apr_time_from_sec(600);
    o.fetch.timeout = apr_time_from_sec(10);
    o.fetch.max_parallel = 4;
    o.node_id = node;
    o.clock = fake_clock;
    o.random = fake_rand;
    o.sleep = fake_sleep;
    o.fetch_run = fake_run;
    o.log = test_log;
    o.log_level = STAPLE_LOG_DEBUG;
    return o;
}

/* A registry for leaf.test, attached to fresh shared memory; node_local:
 * its own local cache besides the shared one, as with memcache or redis. */
staple_reg_t *make_reg(const staple_reg_opts_t *o, mem_cache_t *local, void **shm)
{
    staple_reg_t *reg = staple_reg_make(pool, o);
    staple_cache_ops_t sh = mem_ops(&shared_mem, "StapleCache mem");
    staple_cache_ops_t lo = mem_ops(local, "node-local mem");
    char *pem = to_pem(leaf.cert, inter.cert);

    staple_reg_note_primed(reg, leaf_sc->id);
    CHECK(staple_reg_add(reg, leaf_sc->id, pem, "localhost:443", NULL) == 1);
    *shm = apr_pcalloc(pool, staple_reg_shm_size(reg));
    staple_reg_attach(reg, *shm, 1, &sh, local ? &lo : NULL);
    CHECK(staple_reg_child_init(reg, pool) == APR_SUCCESS);
    return reg;
}

void reset(void)
{
    mem_clear(&shared_mem);
    mem_clear(&local_a);
    mem_clear(&local_b);
    fake_now = apr_time_now();
    fake_random = 0.5;
    fetches = 0;
    warnings = 0;
    during = NULL;
    while_paused = NULL;
    pauses = 0;
    memset(&answer, 0, sizeof(answer));
    answer.status = APR_SUCCESS;
}

/* A response for leaf.test made at the fake time. */
unsigned char *resp_now(int status, long this_offset, long next_offset, apr_size_t *len)
{
    resp_spec_t s = good_spec();

    s.base = fake_now;
    s.status = status;
    s.this_offset = this_offset;
    s.next_offset = next_offset;
    return make_resp(&s, len);
}

void answer_with(const unsigned char *der, apr_size_t len)
{
    answer.status = APR_SUCCESS;
    answer.body = der;
    answer.len = len;
}

/* What a handshake gets. */
unsigned char stapled[STAPLE_MAX_RESPONSE_LEN];
apr_size_t stapled_len;

void copy_cb(const unsigned char *der, apr_size_t len, void *baton)
{
    (void)baton;
    stapled_len = der ? len : 0;
    if (der) {
        memcpy(stapled, der, len);
    }
}

staple_resp_e handshake(staple_reg_t *reg)
{
    return staple_reg_get_resp(reg, leaf_sc->id, STAPLE_ID_LEN, copy_cb, NULL, pool);
}

int staples(staple_reg_t *reg, const unsigned char *der, apr_size_t len)
{
    return handshake(reg) == STAPLE_RESP_STAPLED && stapled_len == len &&
           !memcmp(stapled, der, len);
}

staple_cert_snap_t *snap_of(staple_reg_t *reg)
{
    return &staple_reg_snapshot(reg, pool)->certs[0];
}

/* A response for leaf.test with producedAt and thisUpdate at these offsets
 * from the fake time, valid for an hour after thisUpdate. */
unsigned char *resp_at(int status, int reason, long produced, long this_offset,
                       apr_size_t *len)
{
    resp_spec_t s = good_spec();

    s.base = fake_now;
    s.status = status;
    s.reason = reason;
    s.this_offset = this_offset;
    s.next_offset = this_offset + 3600;
    s.produced_offset = produced;
    s.set_produced = 1;
    return make_resp(&s, len);
}

char *make_store(void)
{
    char *dir = apr_pstrdup(pool, "/tmp/staple-test-store-XXXXXX");

    CHECK(mkdtemp(dir) != NULL);
    return dir;
}

void store_put(const char *dir, const unsigned char *der, apr_size_t len)
{
    char err[256];

    CHECK(staple_store_save(dir, leaf_sc->id_hex, der, len, pool, err, sizeof(err)) ==
          APR_SUCCESS);
}

void store_clean(const char *dir)
{
    staple_store_remove(dir, leaf_sc->id_hex, pool);
    CHECK(rmdir(dir) == 0);
}

staple_reg_t *make_process(const staple_reg_opts_t *o, void *shm)
{
    staple_reg_t *child = staple_reg_make(pool, o);
    staple_cache_ops_t sh = mem_ops(&shared_mem, "StapleCache mem");

    CHECK(staple_reg_add(child, leaf_sc->id, to_pem(leaf.cert, inter.cert), "x:443",
                         NULL) == 1);
    staple_reg_attach(child, shm, 0, &sh, NULL);
    CHECK(staple_reg_child_init(child, pool) == APR_SUCCESS);
    return child;
}
