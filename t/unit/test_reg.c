/*
 * Unit tests of the registry (staple_reg.h): one case per decision, with an
 * in-memory cache, a clock the test moves and a fetcher that answers what
 * the test scripts. The fetcher is a test double because the cases need
 * exact answers at exact (fake) times; staple_fetch itself is tested
 * against a real local server in test_core.c. Responses are real, signed
 * by the in-memory PKI of testlib.c, and verified by the registry.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_base64.h>
#include <apr_strings.h>

#include <unistd.h>

#include "regfix.h"

/* ------------------------------------------------------------------ */
/* Cases                                                               */

/* A fetched response is stapled, and the next fetch replaces it. */
static void test_fetch_replaces(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1, l2;
    unsigned char *r1, *r2;
    void *shm;
    staple_reg_t *reg;
    apr_time_t next;

    reset();
    reg = make_reg(&o, NULL, &shm);
    CHECK(handshake(reg) == STAPLE_RESP_NONE && stapled_len == 0);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    next = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(staples(reg, r1, l1));
    /* due when half the validity is left, less the jitter */
    CHECK(next > fake_now + apr_time_from_sec(1600) &&
          next < fake_now + apr_time_from_sec(1830));
    /* nothing due: no fetch */
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 1);

    fake_now = next;
    r2 = resp_now(V_OCSP_CERTSTATUS_GOOD, -10, 3600, &l2);
    answer_with(r2, l2);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 2);
    CHECK(staples(reg, r2, l2));
    CHECK(snap_of(reg)->failures == 0 && !strcmp(snap_of(reg)->state, "good"));
}

/* A response that fails the checks never replaces the one held. */
static void test_rejected_never_replaces(void)
{
    staple_reg_opts_t o = default_opts("a");
    resp_spec_t forged = good_spec();
    apr_size_t l1, lf;
    unsigned char *r1, *rf;
    staple_snapshot_t *snap;
    void *shm;
    staple_reg_t *reg;

    reset();
    reg = make_reg(&o, NULL, &shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, r1, l1));

    forged.signer = &stranger;
    forged.base = fake_now;
    rf = make_resp(&forged, &lf);
    answer_with(rf, lf);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 2);
    CHECK(staples(reg, r1, l1));
    CHECK(cache_holds(&shared_mem, r1, l1));
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->certs[0].failures == 1);
    CHECK(!strcmp(snap->certs[0].state, "failing"));
    CHECK(snap->certs[0].last_error &&
          strstr(snap->certs[0].last_error, "response rejected (signature)"));
    CHECK(snap->outcomes[STAPLE_CHECK_SIGNATURE] == 1 && snap->outcomes[0] == 1);

    /* garbage neither */
    answer_with((const unsigned char *)"garbage", 7);
    fake_now = snap->certs[0].next_refresh;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 3 && snap_of(reg)->failures == 2);
    CHECK(staples(reg, r1, l1));
    CHECK(cache_holds(&shared_mem, r1, l1));
}

/* Another server's response in the shared cache is adopted, verified,
 * without a fetch. */
static void test_adopt_shared(void)
{
    staple_reg_opts_t oa = default_opts("a"), ob = default_opts("b");
    apr_size_t l1;
    unsigned char *r1;
    void *shm_a, *shm_b;
    staple_reg_t *a, *b;

    reset();
    a = make_reg(&oa, &local_a, &shm_a);
    b = make_reg(&ob, &local_b, &shm_b);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(staples(a, r1, l1));

    answer.status = APR_ECONNREFUSED; /* b must not need its own fetch */
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(staples(b, r1, l1));
    CHECK(!strcmp(snap_of(b)->state, "good"));
    CHECK(snap_of(b)->next_refresh > fake_now);
}

/* A shared entry that does not verify is refused, fetched again, and the
 * shared cache repaired. */
static void test_bad_shared_refetched(void)
{
    staple_reg_opts_t ob = default_opts("b");
    resp_spec_t other = good_spec();
    apr_size_t l1, lo;
    unsigned char *r1, *ro;
    void *shm;
    staple_reg_t *b;

    reset();
    b = make_reg(&ob, &local_b, &shm);
    /* a valid response, but about another certificate */
    other.subject = leaf2.cert;
    other.base = fake_now;
    ro = make_resp(&other, &lo);
    mem_set_entry(&shared_mem, leaf_sc->id, ro, lo);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    warnings = 0;
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(warnings >= 1); /* said why */
    CHECK(fetches == 1);
    CHECK(staples(b, r1, l1));
    CHECK(cache_holds(&shared_mem, r1, l1));

    /* and an entry that is not one of ours at all */
    reset();
    b = make_reg(&ob, &local_b, &shm);
    mem_put(&shared_mem, leaf_sc->id, STAPLE_ID_LEN, fake_now + apr_time_from_sec(60),
            (const unsigned char *)"junk", 4, pool);
    answer_with(r1, l1);
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(staples(b, r1, l1));
}

/* While one server holds the fetch lease, a second one does not fetch, and
 * adopts the holder's response afterwards. */
static staple_reg_t *second;
static int second_fetched;

static void second_round(void)
{
    int before = fetches;

    staple_reg_refresh(second, 0, 1, pool);
    second_fetched = fetches - before;
}

static void test_lease(void)
{
    staple_reg_opts_t oa = default_opts("a"), ob = default_opts("b");
    apr_size_t l1;
    unsigned char *r1;
    void *shm_a, *shm_b;
    staple_reg_t *a;

    reset();
    a = make_reg(&oa, &local_a, &shm_a);
    second = make_reg(&ob, &local_b, &shm_b);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    second_fetched = -1;
    during = second_round; /* b's round runs while a's fetch does */
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(second_fetched == 0);
    CHECK(fetches == 1);
    CHECK(handshake(second) == STAPLE_RESP_NONE);
    /* b looks again shortly, and finds a's response */
    CHECK(snap_of(second)->next_refresh <= fake_now + apr_time_from_sec(2));
    fake_now = snap_of(second)->next_refresh;
    staple_reg_refresh(second, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(staples(second, r1, l1));
}

/* Failed fetches back off exponentially with jitter, from StapleRetryDelay
 * up to StapleErrorCacheTimeout. */
static void test_backoff(void)
{
    staple_reg_opts_t o = default_opts("a");
    static const double jitters[] = {0.0, 0.999};
    apr_interval_time_t prev = 0, delay;
    void *shm;
    staple_reg_t *reg;
    unsigned j;
    int i;

    for (j = 0; j < sizeof(jitters) / sizeof(jitters[0]); j++) {
        reset();
        fake_random = jitters[j];
        reg = make_reg(&o, NULL, &shm);
        answer.status = APR_ECONNREFUSED;
        prev = 0;
        for (i = 1; i <= 8; i++) {
            staple_reg_refresh(reg, 0, 1, pool);
            CHECK(fetches == i);
            CHECK(snap_of(reg)->failures == (unsigned)i);
            delay = snap_of(reg)->next_refresh - fake_now;
            CHECK(delay >= o.timing.retry_delay && delay <= o.timing.retry_max);
            CHECK(delay >= prev || delay * 5 >= o.timing.retry_max * 4);
            if (i == 1 && jitters[j] == 0.0) {
                CHECK(delay == o.timing.retry_delay);
            }
            if (i == 8) {
                /* capped, and shortened by the jitter at most 20 % */
                CHECK(delay * 5 >= o.timing.retry_max * 4);
            }
            prev = delay;
            fake_now += delay;
        }
    }
}

/* Events become pending as fetches end, once per kind and certificate in
 * STAPLE_EVENT_INTERVAL. */
static int has_event(apr_array_header_t *evs, staple_event_e ev)
{
    int i;

    for (i = 0; i < evs->nelts; i++) {
        if (APR_ARRAY_IDX(evs, i, staple_event_t).event == ev) {
            return 1;
        }
    }
    return 0;
}

static void test_events(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1, lr;
    unsigned char *r1, *rr;
    apr_array_header_t *evs;
    void *shm;
    staple_reg_t *reg;

    reset();
    reg = make_reg(&o, NULL, &shm);
    CHECK(staple_reg_take_events(reg, pool)->nelts == 0);
    /* Must-Staple and nothing to staple: errored and missing */
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(reg, 0, 1, pool);
    evs = staple_reg_take_events(reg, pool);
    CHECK(evs->nelts == 2 && has_event(evs, STAPLE_EVENT_ERRORED) &&
          has_event(evs, STAPLE_EVENT_MISSING));
    CHECK(evs->nelts > 0 &&
          !strcmp(APR_ARRAY_IDX(evs, 0, staple_event_t).id_hex, leaf_sc->id_hex));
    CHECK(staple_reg_take_events(reg, pool)->nelts == 0); /* taken */

    /* the retry fails too, within the interval: rate limited */
    fake_now = snap_of(reg)->next_refresh;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 2 && snap_of(reg)->failures == 2);
    CHECK(staple_reg_take_events(reg, pool)->nelts == 0);

    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    fake_now = snap_of(reg)->next_refresh;
    staple_reg_refresh(reg, 0, 1, pool);
    evs = staple_reg_take_events(reg, pool);
    CHECK(evs->nelts == 1 && has_event(evs, STAPLE_EVENT_RENEWED));
    CHECK(evs->nelts == 1 &&
          !strncmp(APR_ARRAY_IDX(evs, 0, staple_event_t).detail, "good until ", 11));

    /* revoked, then past the interval another error */
    fake_now = snap_of(reg)->next_refresh;
    rr = resp_now(V_OCSP_CERTSTATUS_REVOKED, -60, 3600, &lr);
    answer_with(rr, lr);
    staple_reg_refresh(reg, 0, 1, pool);
    evs = staple_reg_take_events(reg, pool);
    CHECK(evs->nelts == 1 && has_event(evs, STAPLE_EVENT_REVOKED));
    fake_now += STAPLE_EVENT_INTERVAL;
    answer.status = APR_ECONNREFUSED;
    fake_now =
        snap_of(reg)->next_refresh > fake_now ? snap_of(reg)->next_refresh : fake_now;
    staple_reg_refresh(reg, 0, 1, pool);
    evs = staple_reg_take_events(reg, pool);
    CHECK(has_event(evs, STAPLE_EVENT_ERRORED));
}

/* A process keeps its copy until the generation says there is a new one. */
static void test_process_copy(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1, l2;
    unsigned char *r1, *r2;
    void *shm;
    staple_reg_t *reg, *child;

    reset();
    reg = make_reg(&o, NULL, &shm);
    /* a second view of the same shared memory and cache: another process */
    child = make_process(&o, shm);

    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(child, r1, l1));

    /* the cache changes behind the process's back: its copy stays */
    fake_now += apr_time_from_sec(5);
    r2 = resp_now(V_OCSP_CERTSTATUS_GOOD, -1, 3600, &l2);
    mem_set_entry(&shared_mem, leaf_sc->id, r2, l2);
    CHECK(staples(child, r1, l1));

    /* the refresher adopts it and announces it: the copy follows */
    fake_now = snap_of(reg)->next_refresh;
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 1);
    CHECK(staples(child, r2, l2));

    /* past nextUpdate nothing is stapled, whatever the copy */
    fake_now += apr_time_from_sec(3601);
    CHECK(handshake(child) == STAPLE_RESP_NONE);
    CHECK(snap_of(child)->stapled == 3 && snap_of(child)->unstapled == 1);
    CHECK(snap_of(reg)->stapled == 3); /* the counters are shared */
}

/* The snapshot has every field the status page shows. */
static void test_snapshot(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    staple_snapshot_t *snap;
    staple_cert_snap_t *c;
    void *shm;
    staple_reg_t *reg;
    apr_time_t t0;

    reset();
    reg = make_reg(&o, NULL, &shm);
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->count == 1 && snap->valid == 0 && !strcmp(snap->certs[0].state, "none"));
    CHECK(snap->certs[0].cert_status == -1 && snap->certs[0].last_error == NULL);
    t0 = fake_now;
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    staple_reg_refresh(reg, 0, 1, pool);
    handshake(reg);
    handshake(reg);
    fake_now = snap_of(reg)->next_refresh;
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(reg, 0, 1, pool);

    snap = staple_reg_snapshot(reg, pool);
    c = &snap->certs[0];
    CHECK(snap->now == fake_now && snap->cache_name &&
          !strcmp(snap->cache_name, "StapleCache mem"));
    CHECK(snap->node_local == 0 && snap->valid == 1);
    CHECK(!strcmp(c->id_hex, leaf_sc->id_hex) && !strcmp(c->subject, "CN=leaf.test"));
    CHECK(c->serial && *c->serial);
    CHECK(c->vhosts->nelts == 1 &&
          !strcmp(APR_ARRAY_IDX(c->vhosts, 0, const char *), "localhost:443"));
    CHECK(c->url && !strcmp(c->url, "http://127.0.0.1:1/ocsp"));
    CHECK(c->must_staple == 1 && c->valid == 1 && !strcmp(c->state, "failing"));
    CHECK(c->cert_status == V_OCSP_CERTSTATUS_GOOD);
    CHECK(c->this_update == apr_time_from_sec(apr_time_sec(t0) - 60));
    CHECK(c->next_update == apr_time_from_sec(apr_time_sec(t0) + 3600));
    CHECK(c->fetched_at == t0);
    CHECK(c->time_left == c->next_update - fake_now);
    CHECK(c->last_fetch_at == fake_now - apr_time_from_msec(12));
    CHECK(c->last_fetch_duration == apr_time_from_msec(12));
    CHECK(c->last_error && strstr(c->last_error, "Connection refused"));
    CHECK(c->last_error_at == fake_now && c->failures == 1);
    CHECK(c->next_refresh > fake_now);
    CHECK(c->stapled == 2 && c->unstapled == 0);
    CHECK(snap->stapled == 2 && snap->unstapled == 0);
    CHECK(snap->fetches == 2 && snap->failed == 1);
    CHECK(snap->outcomes[STAPLE_CHECK_OK] == 1 &&
          snap->outcomes[STAPLE_OUTCOME_FETCH_ERROR] == 1);
    CHECK(snap->hist[1] == 2 && snap->hist[STAPLE_HIST_BUCKETS - 1] == 2); /* 12 ms */
    CHECK(snap->hist[0] == 0);
    CHECK(snap->duration_sum_us == 2 * (apr_uint64_t)apr_time_from_msec(12));
    CHECK(!strcmp(staple_hist_buckets[STAPLE_HIST_BUCKETS - 1].le, "+Inf"));
}

/* What mod_ssl primes but the registry does not staple. */
static void test_claims(void)
{
    staple_reg_opts_t o = default_opts("a");
    staple_reg_t *reg = staple_reg_make(pool, &o);
    unsigned char other_id[STAPLE_ID_LEN] = {1};
    unsigned int mdlen;
    unsigned char ss_id[STAPLE_ID_LEN];

    reset();
    staple_reg_note_primed(reg, leaf_sc->id);
    CHECK(staple_reg_was_primed(reg, leaf_sc->id));
    CHECK(!staple_reg_was_primed(reg, other_id));
    CHECK(staple_reg_add(reg, leaf_sc->id, to_pem(leaf.cert, inter.cert), "a:443", NULL));
    /* the same certificate in a second virtual host: one entry */
    CHECK(staple_reg_add(reg, leaf_sc->id, to_pem(leaf.cert, inter.cert), "b:443", NULL));
    CHECK(staple_reg_count(reg) == 1);
    /* self-signed: no responder to ask */
    X509_digest(selfsigned.cert, EVP_sha1(), ss_id, &mdlen);
    CHECK(!staple_reg_add(reg, ss_id, to_pem(selfsigned.cert, NULL), "c:443", NULL));
    CHECK(staple_reg_count(reg) == 1);
}

/* ------------------------------------------------------------------ */
/* Freshness, failing servers, short-lived and aged responses          */

/* A fetch that answers an older response than the one held (a replay on
 * plain HTTP) is refused, counted and logged; the newer one stays. */
static void test_fetch_older_refused(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l2, l1;
    unsigned char *r2, *r1;
    staple_snapshot_t *snap;
    void *shm;
    staple_reg_t *reg;

    reset();
    reg = make_reg(&o, NULL, &shm);
    r2 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -10, -10, &l2);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -100, -100, &l1);
    answer_with(r2, l2);
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, r2, l2));
    answer_with(r1, l1);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 2);
    CHECK(staples(reg, r2, l2));
    CHECK(cache_holds(&shared_mem, r2, l2));
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->outcomes[STAPLE_OUTCOME_OLDER] == 1 && snap->certs[0].failures == 1);
    CHECK(snap->certs[0].last_error &&
          strstr(snap->certs[0].last_error, "response refused (older)") &&
          strstr(snap->certs[0].last_error, "producedAt"));
    CHECK(!strcmp(staple_outcome_name(STAPLE_OUTCOME_OLDER), "older"));
    /* the same response again is no failure */
    answer_with(r2, l2);
    fake_now = snap->certs[0].next_refresh;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(snap_of(reg)->failures == 0 && staples(reg, r2, l2));
}

/* Revoked is never replaced by good, but after certificateHold. */
static void test_revoked_stays(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t lr, lg, lh;
    unsigned char *rr, *rg, *rh;
    void *shm;
    staple_reg_t *reg;

    reset();
    reg = make_reg(&o, NULL, &shm);
    rr = resp_at(V_OCSP_CERTSTATUS_REVOKED, OCSP_REVOKED_STATUS_KEYCOMPROMISE, -100, -100,
                 &lr);
    answer_with(rr, lr);
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, rr, lr));
    rg = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -1, -1, &lg); /* newer, and good */
    answer_with(rg, lg);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, rr, lr));
    CHECK(staple_reg_snapshot(reg, pool)->outcomes[STAPLE_OUTCOME_UNREVOKED] == 1);
    CHECK(!strcmp(snap_of(reg)->state, "revoked"));

    /* on hold, then released: the newer good response replaces it */
    reset();
    reg = make_reg(&o, NULL, &shm);
    rh = resp_at(V_OCSP_CERTSTATUS_REVOKED, OCSP_REVOKED_STATUS_CERTIFICATEHOLD, -100,
                 -100, &lh);
    answer_with(rh, lh);
    fake_now = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, rh, lh));
    rg = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -1, -1, &lg);
    answer_with(rg, lg);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, rg, lg));
}

/* An older response in the shared cache (anyone may write there, and the
 * entry's header is not signed) is not adopted. */
static void test_shared_older_refused(void)
{
    staple_reg_opts_t ob = default_opts("b");
    apr_size_t l2, l1;
    unsigned char *r2, *r1;
    void *shm;
    staple_reg_t *b;

    reset();
    b = make_reg(&ob, &local_b, &shm);
    r2 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -10, -10, &l2);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -100, -100, &l1);
    answer_with(r2, l2);
    fake_now = staple_reg_refresh(b, 0, 1, pool);
    CHECK(staples(b, r2, l2));
    mem_set_entry(&shared_mem, leaf_sc->id, r1, l1); /* its header says: fetched now */
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(staples(b, r2, l2));
    CHECK(cache_holds(&local_b, r2, l2));
}

/* A restarting server's copy on disk does not overwrite a newer response
 * in the shared cache; an older shared one gets the disk's. */
static void test_store_vs_shared(void)
{
    staple_reg_opts_t ob = default_opts("b");
    apr_size_t l2, l1;
    unsigned char *r2, *r1;
    void *shm;
    staple_reg_t *b;

    reset();
    ob.store = make_store();
    r2 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -10, -10, &l2);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -100, -100, &l1);
    store_put(ob.store, r1, l1);
    mem_set_entry(&shared_mem, leaf_sc->id, r2, l2);
    b = make_reg(&ob, &local_b, &shm);
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(fetches == 0);
    CHECK(cache_holds(&shared_mem, r2, l2));
    CHECK(staples(b, r2, l2));

    /* the other way round: the disk's newer copy goes to the shared cache */
    reset();
    store_put(ob.store, r2, l2);
    mem_set_entry(&shared_mem, leaf_sc->id, r1, l1);
    b = make_reg(&ob, &local_b, &shm);
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(fetches == 0);
    CHECK(cache_holds(&shared_mem, r2, l2));
    CHECK(staples(b, r2, l2));
    store_clean(ob.store);
}

/* A server whose own fetches fail staples what the cluster fetched. */
static void test_failing_adopts(void)
{
    staple_reg_opts_t oa = default_opts("a"), ob = default_opts("b");
    apr_size_t l1, l2;
    unsigned char *r1, *r2;
    void *shm_a, *shm_b;
    staple_reg_t *a, *b;

    reset();
    a = make_reg(&oa, &local_a, &shm_a);
    b = make_reg(&ob, &local_b, &shm_b);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -60, -60, &l1);
    answer_with(r1, l1);
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(staples(b, r1, l1));
    /* b's route to the responder goes; a keeps fetching for the cluster */
    fake_now = snap_of(b)->next_refresh;
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(snap_of(b)->failures == 1);
    /* a's round once b's lease from that failed try has run out */
    fake_now += ob.fetch.timeout + apr_time_from_sec(6);
    r2 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -1, -1, &l2);
    answer_with(r2, l2);
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(staples(a, r2, l2));
    answer.status = APR_ECONNREFUSED;
    fake_now = snap_of(b)->next_refresh;
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(staples(b, r2, l2));
    CHECK(snap_of(b)->failures == 0);
}

/* A failing server does not take the fetch lease from healthy ones. */
static void test_failing_no_lease(void)
{
    staple_reg_opts_t oa = default_opts("a"), ob = default_opts("b");
    apr_size_t l1;
    unsigned char *r1;
    void *shm_a, *shm_b;
    staple_reg_t *a, *b;
    int before;

    reset();
    oa.timing.retry_delay = ob.timing.retry_delay = apr_time_from_sec(1);
    a = make_reg(&oa, &local_a, &shm_a);
    b = make_reg(&ob, &local_b, &shm_b);
    answer.status = APR_ECONNREFUSED;
    staple_reg_refresh(b, 0, 1, pool); /* its first try took the lease */
    CHECK(fetches == 1 && snap_of(b)->failures == 1);
    /* after that lease ran out, b retries, and a right after it */
    fake_now += ob.fetch.timeout + apr_time_from_sec(6);
    staple_reg_refresh(b, 0, 1, pool);
    CHECK(fetches == 2 && snap_of(b)->failures == 2);
    r1 = resp_at(V_OCSP_CERTSTATUS_GOOD, 0, -60, -60, &l1);
    answer_with(r1, l1);
    before = fetches;
    staple_reg_refresh(a, 0, 1, pool);
    CHECK(fetches == before + 1);
    CHECK(staples(a, r1, l1));
}

/* A response valid for a minute is renewed before it lapses. */
static void test_short_lived(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    resp_spec_t s = good_spec();
    void *shm;
    staple_reg_t *reg;
    apr_time_t next;

    reset();
    reg = make_reg(&o, NULL, &shm);
    s.base = fake_now;
    s.this_offset = 0;
    s.next_offset = 60;
    r1 = make_resp(&s, &l1);
    answer_with(r1, l1);
    next = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(next < snap_of(reg)->next_update - apr_time_from_sec(5));
    CHECK(next > fake_now);
}

/* StapleResponseMaxAge counts at handshake time and in the schedule. */
static void test_max_age(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    void *shm;
    staple_reg_t *reg;
    apr_time_t next, made;

    reset();
    o.check.max_age = apr_time_from_sec(120);
    reg = make_reg(&o, NULL, &shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    made = apr_time_from_sec(apr_time_sec(fake_now) - 60);
    answer_with(r1, l1);
    next = staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, r1, l1));
    CHECK(next < made + o.check.max_age);
    answer.status = APR_ECONNREFUSED;
    fake_now = made + o.check.max_age + 1;
    CHECK(handshake(reg) == STAPLE_RESP_NONE);
    CHECK(!snap_of(reg)->valid);
}

/* A bad entry in the local cache is reported once, not at every look. */
static void test_warning_rate_limited(void)
{
    staple_reg_opts_t o = default_opts("a");
    void *shm;
    staple_reg_t *reg;
    int i;

    reset();
    reg = make_reg(&o, &local_a, &shm);
    mem_set_entry(&local_a, leaf_sc->id, (const unsigned char *)"garbage", 7);
    warnings = 0;
    for (i = 0; i < 5; i++) {
        CHECK(handshake(reg) == STAPLE_RESP_NONE);
        fake_now += apr_time_from_sec(2);
    }
    CHECK(warnings == 1);
}

/* The local clock against the responder's: its Date header. */
static void test_clock(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    staple_snapshot_t *snap;
    void *shm;
    staple_reg_t *reg;

    reset();
    reg = make_reg(&o, NULL, &shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    answer.http_date = fake_now + apr_time_from_sec(200); /* ours is behind */
    warnings = 0;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, r1, l1));
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->responder_count == 1 && snap->responders[0].clock.known &&
          snap->responders[0].clock.offset == -apr_time_from_sec(200));
    CHECK(warnings == 1);
    /* within the limit: no warning, the offset follows */
    fake_now = snap->certs[0].next_refresh;
    answer.http_date = fake_now + apr_time_from_sec(1);
    staple_reg_refresh(reg, 0, 1, pool);
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->responders[0].clock.offset == -apr_time_from_sec(1) && warnings == 1);
}

/* A responder that refuses GET gets the same fetch as POST at once, and
 * POST from then on; a failed URL hands over to the next. */
static void test_method_and_failover(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_array_header_t *urls = apr_array_make(pool, 2, sizeof(const char *));
    apr_size_t l1;
    unsigned char *r1;
    staple_snapshot_t *snap;
    staple_reg_t *reg;
    void *shm;
    staple_cache_ops_t sh = mem_ops(&shared_mem, "StapleCache mem");

    reset();
    APR_ARRAY_PUSH(urls, const char *) = "http://127.0.0.1:2/a/";
    APR_ARRAY_PUSH(urls, const char *) = "http://127.0.0.1:3/b/";
    reg = staple_reg_make(pool, &o);
    CHECK(staple_reg_add(reg, leaf_sc->id, to_pem(leaf.cert, inter.cert), "x:443", urls));
    shm = apr_pcalloc(pool, staple_reg_shm_size(reg));
    staple_reg_attach(reg, shm, 1, &sh, NULL);
    CHECK(staple_reg_child_init(reg, pool) == APR_SUCCESS);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    /* both URLs answer GET with 405: each is asked again with POST; that
     * fails too (the fake answers alike), so the fetch fails after four */
    answer.status = APR_EGENERAL;
    answer.http_status = 405;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 4);
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->responder_count == 2 && !strcmp(snap->responders[0].method, "POST") &&
          !strcmp(snap->responders[1].method, "POST"));
    CHECK(snap->responders[0].failures == 1 && snap->responders[1].failures == 1);
    CHECK(snap->certs[0].failures == 1);
    CHECK(snap->certs[0].last_error &&
          strstr(snap->certs[0].last_error, "other responder"));
    /* the next fetch: the first URL fails, the second answers */
    fake_now = snap->certs[0].next_refresh;
    answer_with(r1, l1);
    during = NULL;
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(staples(reg, r1, l1));
    snap = staple_reg_snapshot(reg, pool);
    CHECK(snap->responders[0].successes == 1 || snap->responders[1].successes == 1);
}

/* An operator's refresh: at most one per certificate every 5 s, whichever
 * process is asked; a fetch just made does not count. */
static void test_refresh_rate_limited(void)
{
    staple_reg_opts_t o = default_opts("a");
    apr_size_t l1;
    unsigned char *r1;
    unsigned char other[STAPLE_ID_LEN];
    staple_refresh_e out[1];
    void *shm;
    staple_reg_t *reg, *child;
    apr_time_t t0;

    reset();
    reg = make_reg(&o, NULL, &shm);
    child = make_process(&o, shm);
    r1 = resp_now(V_OCSP_CERTSTATUS_GOOD, -60, 3600, &l1);
    answer_with(r1, l1);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 1);

    /* right after the scheduled fetch: asked, fetched at once */
    t0 = fake_now;
    CHECK(staple_reg_request_refresh(reg, leaf_sc->id, out) == 1 &&
          out[0] == STAPLE_REFRESH_SCHEDULED);
    /* again, here or in another process, within 5 s: not scheduled */
    CHECK(staple_reg_request_refresh(reg, leaf_sc->id, out) == 1 &&
          out[0] == STAPLE_REFRESH_TOO_RECENT);
    fake_now = t0 + apr_time_from_msec(100);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 2);
    fake_now = t0 + STAPLE_REFRESH_MIN_INTERVAL - 1;
    CHECK(staple_reg_request_refresh(child, leaf_sc->id, out) == 1 &&
          out[0] == STAPLE_REFRESH_TOO_RECENT);
    CHECK(staple_reg_request_refresh(child, NULL, out) == 1 &&
          out[0] == STAPLE_REFRESH_TOO_RECENT);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 2);
    /* 5 s after the last one asked: scheduled again, once */
    fake_now = t0 + STAPLE_REFRESH_MIN_INTERVAL;
    CHECK(staple_reg_request_refresh(child, NULL, out) == 1 &&
          out[0] == STAPLE_REFRESH_SCHEDULED);
    CHECK(staple_reg_request_refresh(reg, NULL, out) == 1 &&
          out[0] == STAPLE_REFRESH_TOO_RECENT);
    staple_reg_refresh(reg, 0, 1, pool);
    CHECK(fetches == 3);
    /* a clock set back by an hour does not keep refreshes away for an hour */
    fake_now -= apr_time_from_sec(3600);
    CHECK(staple_reg_request_refresh(reg, leaf_sc->id, NULL) == 1);
    CHECK(staple_reg_request_refresh(reg, leaf_sc->id, out) == 1 &&
          out[0] == STAPLE_REFRESH_TOO_RECENT);
    /* a certificate not stapled here */
    memset(other, 0, sizeof(other));
    CHECK(staple_reg_request_refresh(reg, other, out) == 0 &&
          out[0] == STAPLE_REFRESH_NOT_ASKED);
}

/* The OCSP request of a relay GET: after a slash, %-decoded once, in a
 * path of at most 2048 characters. */
static void test_relay_get(void)
{
    const unsigned char *q = leaf_sc->req_der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &q, (long)leaf_sc->req_len);
    unsigned char nonce[24], *der = NULL, *got;
    apr_size_t got_len, i;
    char *b64, *enc, *e, *path;
    int len, slashes = 0;

    /* a nonce of 0xff bytes: base64 full of slashes, more than eight */
    memset(nonce, 0xff, sizeof(nonce));
    CHECK(req && OCSP_request_add1_nonce(req, nonce, sizeof(nonce)));
    len = i2d_OCSP_REQUEST(req, &der);
    OCSP_REQUEST_free(req);
    CHECK(len > 0);
    b64 = apr_palloc(pool, (apr_size_t)apr_base64_encode_len(len));
    apr_base64_encode(b64, (const char *)der, len);
    enc = e = apr_palloc(pool, 3 * strlen(b64) + 1);
    for (i = 0; b64[i]; i++) {
        slashes += b64[i] == '/';
        if (b64[i] == '/' || b64[i] == '+' || b64[i] == '=') {
            e += sprintf(e, "%%%02X", b64[i]);
        } else {
            *e++ = b64[i];
        }
    }
    *e = '\0';
    CHECK(slashes > 8);

#define FOUND(path)                                                                      \
    (staple_relay_get_request(pool, (path), &got, &got_len) &&                           \
     got_len == (apr_size_t)len && !memcmp(got, der, got_len))
    /* sent as it is (its slashes too), or %-encoded, under any location */
    CHECK(FOUND(apr_pstrcat(pool, "/ocsp/", b64, NULL)));
    CHECK(FOUND(apr_pstrcat(pool, "/ocsp/", enc, NULL)));
    CHECK(FOUND(apr_pstrcat(pool, "/a/b/c/d/e/f/g/h/i/j/k/", enc, NULL)));
    CHECK(FOUND(apr_pstrcat(pool, "/", enc, NULL)));
    /* base64 comes in groups of four: the padding is not optional */
    if (b64[strlen(b64) - 1] == '=') {
        CHECK(!FOUND(
            apr_pstrndup(pool, apr_pstrcat(pool, "/ocsp/", b64, NULL), strlen(b64) + 5)));
    }
    CHECK(!FOUND("/ocsp/"));
    CHECK(!FOUND("/ocsp/MEow"));
    CHECK(!FOUND("/ocsp/%zz"));
    /* 2048 characters at most, whatever they hold */
    path = apr_pstrcat(pool, "/", enc, NULL);
    path = apr_pstrcat(pool, apr_psprintf(pool, "/%0*d", (int)(2047 - strlen(path)), 0),
                       path, NULL);
    CHECK(strlen(path) == 2048 && FOUND(path));
    CHECK(!FOUND(apr_pstrcat(pool, "/", path, NULL)));
    path = apr_palloc(pool, 100001);
    for (i = 0; i < 100000; i += 2) {
        path[i] = '/';
        path[i + 1] = 'A';
    }
    path[100000] = '\0';
    CHECK(!FOUND(path));
#undef FOUND
    OPENSSL_free(der);
}

int main(void)
{
    test_init();

    run_case("registry: claims, one entry per certificate", test_claims);
    run_case("registry: a fetched response replaces the held one", test_fetch_replaces);
    run_case("registry: a rejected response never replaces one",
             test_rejected_never_replaces);
    run_case("registry: another server's shared response is adopted", test_adopt_shared);
    run_case("registry: a bad shared entry is refused and fetched again",
             test_bad_shared_refetched);
    run_case("registry: the lease keeps a second server from fetching", test_lease);
    run_case("registry: backoff with jitter within the retry bounds", test_backoff);
    run_case("registry: events pending and rate limited", test_events);
    run_case("registry: the process copy follows the generation", test_process_copy);
    run_case("registry: the snapshot has every field of the status page", test_snapshot);
    run_case("freshness: an older fetched response is refused", test_fetch_older_refused);
    run_case("freshness: revoked stays revoked, but after certificateHold",
             test_revoked_stays);
    run_case("freshness: an older shared response is not adopted",
             test_shared_older_refused);
    run_case("freshness: the store does not overwrite a newer shared response",
             test_store_vs_shared);
    run_case("cluster: a failing server adopts the cluster's response",
             test_failing_adopts);
    run_case("cluster: a failing server does not take the lease", test_failing_no_lease);
    run_case("timing: a response valid for a minute is renewed in time",
             test_short_lived);
    run_case("timing: StapleResponseMaxAge at handshake time and in the schedule",
             test_max_age);
    run_case("handshakes: a bad cache entry is reported once", test_warning_rate_limited);
    run_case("responders: the clock against the responder's Date", test_clock);
    run_case("responders: POST when GET is refused, then the next URL",
             test_method_and_failover);
    run_case("operator: a refresh at most every 5 s per certificate",
             test_refresh_rate_limited);
    run_case("relay: a GET's request, found in linear time", test_relay_get);

    mem_clear(&shared_mem);
    mem_clear(&local_a);
    mem_clear(&local_b);
    return test_done("registry");
}
