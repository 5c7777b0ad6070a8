/*
 * Unit tests of the registry against what others can do to it: a shared
 * cache anyone on its network may write (leases, newer and older entries),
 * a local cache that loses entries, a StapleStore with an older file put
 * into it, fetches libcurl never runs, and a StapleCache that hangs.
 * Fixtures in regfix.c.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include <unistd.h>

#include "regfix.h"

/* Put a lease for leaf.test into the shared cache, as anyone could. */
static void lease_put(const char *value, apr_time_t expiry)
{
    const char *key = apr_pstrcat(pool, "staple-lease:", leaf_sc->id_hex, NULL);

    mem_put(&shared_mem, (const unsigned char *)key, (unsigned int)strlen(key), expiry,
            (const unsigned char *)value, (unsigned int)strlen(value), pool);
}

static const char *lease_until(apr_time_t t, const char *holder)
{
    return apr_psprintf(pool, "%" APR_INT64_T_FMT " %s", (apr_int64_t)t, holder);
}

/* A lease that does not say until when, or says longer than any fetch
 * takes, is ignored; one renewed for ever is waited for only so long. */
static void test_lease_bounded(void)
{
    staple_reg_opts_t oa = default_opts("a");
    apr_interval_time_t term = oa.fetch.timeout + apr_time_from_sec(5);
    apr_size_t l1;
    unsigned char *r1;
    void *shm;
    staple_reg_t *a;
    apr_time_t t0;

    /* no time in it (what anyone might write) */
    reset();
    a = make_reg(&oa, &local_a, &shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    lease_put("b", fake_now + apr_time_from_sec(86400));
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1 && staples(a, r1, l1));

    /* a day long */
    reset();
    a = make_reg(&oa, &local_a, &shm);
    answer_with(r1, l1);
    lease_put(lease_until(fake_now + apr_time_from_sec(86400), "b"),
              fake_now + apr_time_from_sec(86400));
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1 && staples(a, r1, l1));

    /* plausible, but renewed by its holder without a response, for ever */
    reset();
    a = make_reg(&oa, &local_a, &shm);
    answer_with(r1, l1);
    t0 = fake_now;
    while (fake_now - t0 <= 2 * term && fetches == 0) {
        lease_put(lease_until(fake_now + term, "b"), fake_now + term);
        staple_reg_refresh(a, 0, 1, pool);
        if (fetches == 0) {
            CHECK(snap_of(a)->next_refresh <= fake_now + apr_time_from_sec(2));
            fake_now = snap_of(a)->next_refresh;
        }
    }
    CHECK(fetches == 0); /* waited for two leases' time */
    lease_put(lease_until(fake_now + term, "b"), fake_now + term);
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1 && staples(a, r1, l1));
    CHECK(snap_of(a)->failures == 0);
}

/* Two servers found no lease at once and both put theirs: b's, put last,
 * stands. */
static apr_interval_time_t b_lease_term;

static void b_puts_lease(void)
{
    /* the cache keeps it for a minute, whatever it says */
    lease_put(lease_until(fake_now + b_lease_term, "b"), fake_now + apr_time_from_sec(60));
}

/* Of two leases put at the same time, only the holder of the one that
 * stands fetches; the other adopts its response. A server whose lease is
 * overwritten every time is not held off for ever. */
static void test_lease_race(void)
{
    staple_reg_opts_t oa = default_opts("a"), ob = default_opts("b");
    apr_size_t l1;
    unsigned char *r1;
    void *shm_a, *shm_b;
    staple_reg_t *a, *b;
    int rounds;

    reset();
    a = make_reg(&oa, &local_a, &shm_a);
    b = make_reg(&ob, &local_b, &shm_b);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    b_lease_term = oa.fetch.timeout + apr_time_from_sec(5);
    while_paused = b_puts_lease; /* between a's put and its second look */
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(pauses == 1);
    CHECK(fetches == 0);
    CHECK(handshake(a) == STAPLE_RESP_NONE);
    CHECK(snap_of(a)->next_refresh <= fake_now + apr_time_from_sec(2));
    /* b finds its own lease standing and fetches */
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(fetches == 1 && staples(b, r1, l1));
    fake_now = snap_of(a)->next_refresh;
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1 && staples(a, r1, l1));

    /* someone overwrites a's lease every time, with one that ends before
     * a looks again */
    reset();
    a = make_reg(&oa, &local_a, &shm_a);
    answer_with(r1, l1);
    b_lease_term = apr_time_from_sec(1);
    for (rounds = 1; rounds <= 10 && fetches == 0; rounds++) {
        while_paused = b_puts_lease;
        staple_reg_refresh(a, 0, 1, pool);
        if (fetches == 0) {
            fake_now = snap_of(a)->next_refresh;
        }
    }
    CHECK(fetches == 1 && staples(a, r1, l1));
    CHECK(rounds - 1 == 4); /* three claims lost, the fourth not confirmed */
    CHECK(pauses == 3);
    /* and the next claim is read back again */
    fake_now = snap_of(a)->next_refresh;
    b_lease_term = oa.fetch.timeout + apr_time_from_sec(5);
    while_paused = b_puts_lease;
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(pauses == 4 && fetches == 1);

    /* a lease that has run out, or runs implausibly long, put in the pause
     * is not given way to */
    for (rounds = 0; rounds < 2; rounds++) {
        reset();
        a = make_reg(&oa, &local_a, &shm_a);
        answer_with(r1, l1);
        b_lease_term = rounds == 0 ? -apr_time_from_sec(1) : apr_time_from_sec(86400);
        while_paused = b_puts_lease;
        staple_reg_refresh(a, 0, 1, pool);
        CHECK(pauses == 1 && fetches == 1 && staples(a, r1, l1));
    }
}

/* While this server fetched, another put a newer response into the
 * shared cache: this server's fetch does not replace it there. */
static mem_cache_t *newer_into;
static unsigned char *newer_der;
static apr_size_t newer_len;

static void put_newer(void)
{
    mem_set_entry(newer_into, leaf_sc->id, newer_der, newer_len);
}

static void test_fetch_keeps_newer_shared(void)
{
    staple_reg_opts_t oa = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    void *shm;
    staple_reg_t *a;

    reset();
    a = make_reg(&oa, &local_a, &shm);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -100, -100, &l1);
    newer_der = resp_at(V_OCSP_CERTSTATUS_REVOKED, OCSP_REVOKED_STATUS_KEYCOMPROMISE, -10,
                        -10, &newer_len);
    newer_into = &shared_mem;
    answer_with(r1, l1);
    during = put_newer;
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(cache_holds(&shared_mem, newer_der, newer_len));
    /* and this server staples it at once, and keeps it on disk */
    CHECK(staples(a, newer_der, newer_len));
    CHECK(!strcmp(snap_of(a)->state, "revoked"));
}

/* Of two responses with the same signed times, the revoked one wins: a
 * server of a cluster adopts it from the shared cache. */
static void test_same_times_revoked_wins(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t lg, lr;
    unsigned char *rg, *rr;
    void *shm;
    staple_reg_t *reg;

    reset();
    reg = make_reg(&o, &local_a, &shm);
    rg = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -10, -10, &lg);
    rr = resp_at(V_OCSP_CERTSTATUS_REVOKED, OCSP_REVOKED_STATUS_KEYCOMPROMISE, -10, -10,
                 &lr);
    answer_with(rg, lg);
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, rg, lg));
    mem_set_entry(&shared_mem, leaf_sc->id, rr, lr);
    answer.status = APR_ECONNREFUSED;
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 1 && staples(reg, rr, lr));
    /* and back: refused */
    answer_with(rg, lg);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, rr, lr));
    CHECK(staple_reg_snapshot(reg, pool)->outcomes[STAPLE_OUTCOME_UNREVOKED] == 1);
}

/* A process whose copy is older than the response the server holds does
 * not staple it when the cache lost the newer entry. */
static void test_copy_not_older_than_held(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t lg, lr;
    unsigned char *rg, *rr;
    void *shm;
    staple_reg_t *reg, *child;

    reset();
    reg = make_reg(&o, NULL, &shm);
    child = make_process(&o, shm);

    rg = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -100, -100, &lg);
    answer_with(rg, lg);
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(child, rg, lg));
    rr = resp_at(V_OCSP_CERTSTATUS_REVOKED, OCSP_REVOKED_STATUS_KEYCOMPROMISE, -10, -10,
                 &lr);
    answer_with(rr, lr);
    staple_reg_refresh(reg, 0, 1, pool);
    mem_clear(&shared_mem); /* evicted before the child looked */
    CHECK(handshake(child) == STAPLE_RESP_NONE);
}

/* An older response put into StapleStore is refused, and the one held is
 * written back, so that a restart does not begin with the older one; one
 * not yet valid (a clock behind) is left in place. */
static void test_store_older_put_back(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l2, l1, lf, len;
    unsigned char *r2, *r1, *rf, *der;
    apr_time_t at;
    void *shm;
    staple_reg_t *reg;

    reset();
    o.store = make_store();
    reg = make_reg(&o, NULL, &shm);
    r2 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -10, -10, &l2);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -100, -100, &l1);
    answer_with(r2, l2);
    staple_reg_refresh(reg, 0, 1, pool); /* the first scan: nothing there */
    CHECK(staples(reg, r2, l2));
    usleep(20000); /* the file's time must change */
    store_put(o.store, r1, l1);
    fake_now += apr_time_from_sec(60); /* past the next scan */
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, r2, l2));
    CHECK(staple_store_load(o.store, leaf_sc->id_hex, &der, &len, &at, pool) ==
          APR_SUCCESS);
    CHECK(len == l2 && !memcmp(der, r2, l2));

    /* the same, after the local cache lost the response held: the older
     * file is removed */
    usleep(20000);
    store_put(o.store, r1, l1);
    mem_clear(&shared_mem);
    fake_now += apr_time_from_sec(60);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staple_store_load(o.store, leaf_sc->id_hex, &der, &len, &at, pool) ==
          APR_ENOENT);

    /* not yet valid at a start: not stapled, not removed */
    reset();
    rf = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, 3600, 3600, &lf);
    store_put(o.store, rf, lf);
    reg = make_reg(&o, NULL, &shm);
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(handshake(reg) == STAPLE_RESP_NONE);
    CHECK(staple_store_load(o.store, leaf_sc->id_hex, &der, &len, &at, pool) ==
          APR_SUCCESS);
    store_clean(o.store);
}

/* A run in which libcurl could not run a fetch leaves no certificate in
 * flight: it counts as a failure, and the retry fetches. */
static int run_fails;

static apr_status_t failing_run(apr_array_header_t *list, const staple_fetch_opts_t *opts,
                                apr_time_t deadline, staple_fetch_done_fn *done,
                                staple_fetch_more_fn *more, void *ctx, apr_pool_t *p)
{
    if (run_fails) {
        return APR_ENOMEM; /* as when curl_multi_init fails */
    }
    return fake_run(list, opts, deadline, done, more, ctx, p);
}

static void test_run_failure_settled(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    void *shm;
    staple_reg_t *reg;
    staple_cert_snap_t *c;

    reset();
    o.fetch_run = failing_run;
    reg = make_reg(&o, NULL, &shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    run_fails = 1;
    staple_reg_refresh(reg, 0, 1, pool);
    c = snap_of(reg);
    CHECK(c->failures == 1 && c->last_error && strstr(c->last_error, "libcurl"));
    CHECK(c->next_refresh > fake_now);
    run_fails = 0;
    fake_now = c->next_refresh;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 1 && staples(reg, r1, l1));
}

/* A StapleCache that answers slowly is left alone for the rest of a
 * refresher's round too: the renewals do not wait on it. */
static int slow_gets;

static apr_status_t slow_get(void *baton, const unsigned char *key, unsigned int klen,
                             unsigned char *buf, unsigned int *len, apr_pool_t *p)
{
    slow_gets++;
    apr_sleep(apr_time_from_msec(1100));
    return mem_get(baton, key, klen, buf, len, p);
}

static void test_slow_shared_cache(void)
{
    staple_reg_opts_t oa = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    void *shm;
    staple_reg_t *a;
    staple_cache_ops_t sh = mem_ops(&shared_mem, "StapleCache slow");
    staple_cache_ops_t lo = mem_ops(&local_a, "node-local mem");

    reset();
    sh.get = slow_get;
    slow_gets = 0;
    a = staple_reg_make(pool, &oa);
    staple_reg_note_primed(a, leaf_sc->id);
    CHECK(staple_reg_add(a, leaf_sc->id, to_pem(leaf.cert, inter.cert), "x:443", NULL));
    shm = apr_pcalloc(pool, staple_reg_shm_size(a));
    staple_reg_attach(a, shm, 1, &sh, &lo);
    CHECK(staple_reg_child_init(a, pool) == APR_SUCCESS);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    warnings = 0;
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1 && staples(a, r1, l1));
    CHECK(slow_gets == 1);
    CHECK(warnings == 1);
}

/* The responders' addresses, resolved by a thread of their own. */
static void test_addresses(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    void *shm;
    staple_reg_t *reg;
    staple_snapshot_t *snap;
    int i;

    reset();
    reg = make_reg(&o, NULL, &shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    /* a round with a deadline waits for them */
    staple_reg_refresh(reg, fake_now + apr_time_from_sec(5), 0, pool);
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->responder_count == 1 &&
          !strcmp(snap->responders[0].addresses, "127.0.0.1"));
    /* the next rounds, without one, pick them up when the thread is done */
    reset();
    reg = make_reg(&o, NULL, &shm);
    answer_with(r1, l1);
    staple_reg_refresh(reg, 0, 1, pool);
    for (i = 0; i < 200; i++) {
        snap = staple_reg_snapshot(reg, pool);
        if (*snap->responders[0].addresses) {
            break;
        }
        apr_sleep(apr_time_from_msec(10));
        staple_reg_refresh(reg, 0, 1, pool);
    }
    CHECK(!strcmp(snap->responders[0].addresses, "127.0.0.1"));
}

int main(void)
{
    test_init();

    run_case("leases: none without an end, none too long, none for ever",
             test_lease_bounded);
    run_case("leases: of two put at once, only the one that stands fetches",
             test_lease_race);
    run_case("cluster: a fetch does not replace a newer shared response",
             test_fetch_keeps_newer_shared);
    run_case("freshness: with the same times, revoked wins",
             test_same_times_revoked_wins);
    run_case("handshakes: no copy older than the response held",
             test_copy_not_older_than_held);
    run_case("store: an older file is refused and the held one put back",
             test_store_older_put_back);
    run_case("fetches libcurl did not run are failures, not in flight",
             test_run_failure_settled);
    run_case("a slow StapleCache is left alone for the rest of a round",
             test_slow_shared_cache);
    run_case("responders: addresses resolved aside", test_addresses);

    mem_clear(&shared_mem);
    mem_clear(&local_a);
    mem_clear(&local_b);
    return test_done("registry safety");
}
