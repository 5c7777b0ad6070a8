/*
 * The registry's test fixtures, shared by its unit tests: a clock the test
 * moves, an in-memory cache, a scripted fetcher (a test double: the cases
 * need exact answers at exact fake times), registries for leaf.test, and
 * real responses made at the fake time by testlib's PKI.
 */
#ifndef REGFIX_H
#define REGFIX_H

#include "staple_entry.h"
#include "staple_reg.h"
#include "staple_store.h"
#include "testlib.h"

/* A clock, randomness and a log */
extern apr_time_t fake_now;
extern double fake_random;
extern int warnings; /* log lines at warning level or worse */
apr_time_t fake_clock(void);
double fake_rand(void);
extern void (*while_paused)(void); /* run once in the registry's next pause */
extern int pauses;                 /* pauses the registry made */
void fake_sleep(apr_interval_time_t t);
void test_log(void *baton, int level, const char *msg);

/* An in-memory cache */
#define MEM_SLOTS 16

typedef struct {
    unsigned char key[64];
    unsigned int key_len;
    unsigned char *data; /* malloc'ed */
    unsigned int len;
    apr_time_t expiry;
} mem_entry_t;

typedef struct {
    mem_entry_t e[MEM_SLOTS];
    int gets, puts;
} mem_cache_t;

typedef struct {
    apr_status_t status;       /* of the fetch */
    const unsigned char *body; /* on success */
    apr_size_t len;
    apr_time_t http_date; /* the Date header, 0: none */
    long http_status;     /* 0: 200 on success */
} answer_t;

mem_entry_t *mem_find(mem_cache_t *m, const unsigned char *key, unsigned int klen,
                      int make);
apr_status_t mem_get(void *baton, const unsigned char *key, unsigned int klen,
                     unsigned char *buf, unsigned int *len, apr_pool_t *p);
apr_status_t mem_put(void *baton, const unsigned char *key, unsigned int klen,
                     apr_time_t expiry, const unsigned char *data, unsigned int len,
                     apr_pool_t *p);
void mem_clear(mem_cache_t *m);
staple_cache_ops_t mem_ops(mem_cache_t *m, const char *name);
/* Put a raw value (an encoded entry, or garbage) into a cache. */
void mem_set_entry(mem_cache_t *m, const unsigned char *id, const unsigned char *der,
                   apr_size_t len);
/* 1 when the cache holds exactly this response for leaf.test. */
int cache_holds(mem_cache_t *m, const unsigned char *want, apr_size_t want_len);

/* The scripted fetcher */
extern answer_t answer;      /* what every fetch gets */
extern int fetches;          /* fetches run */
extern void (*during)(void); /* called while a fetch runs */
apr_status_t fake_run(apr_array_header_t *list, const staple_fetch_opts_t *opts,
                      apr_time_t deadline, staple_fetch_done_fn *done,
                      staple_fetch_more_fn *more, void *ctx, apr_pool_t *p);

/* Registries */
extern mem_cache_t shared_mem, local_a, local_b;
staple_reg_opts_t default_opts(const char *node);
/* A registry for leaf.test, attached to fresh shared memory; with local:
 * its own local cache besides the shared one, as with memcache or redis. */
staple_reg_t *make_reg(const staple_reg_opts_t *o, mem_cache_t *local, void **shm);
void reset(void);
/* A second view of make_reg's shared memory and shared cache (without a
 * local one): another process of the same server. */
staple_reg_t *make_process(const staple_reg_opts_t *o, void *shm);

/* Responses for leaf.test made at the fake time */
unsigned char *resp_now(int status, long this_offset, long next_offset, apr_size_t *len);
/* With producedAt and thisUpdate at these offsets, valid for an hour. */
unsigned char *resp_at(int status, int reason, long produced, long this_offset,
                       apr_size_t *len);
void answer_with(const unsigned char *der, apr_size_t len);

/* What a handshake gets */
extern unsigned char stapled[STAPLE_MAX_RESPONSE_LEN];
extern apr_size_t stapled_len;
void copy_cb(const unsigned char *der, apr_size_t len, void *baton);
staple_resp_e handshake(staple_reg_t *reg);
int staples(staple_reg_t *reg, const unsigned char *der, apr_size_t len);
staple_cert_snap_t *snap_of(staple_reg_t *reg);

/* StapleStore in a temporary directory */
char *make_store(void);
void store_put(const char *dir, const unsigned char *der, apr_size_t len);
void store_clean(const char *dir);

#endif /* REGFIX_H */
