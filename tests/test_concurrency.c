/* Many threads on one pool: stress with a tiny bound, one read for concurrent pins of
 * a spilled object, parallel spills, releases racing with I/O, and I/O never under
 * the pool's lock. Run under ThreadSanitizer by `make test`.
 *
 * cmocka's asserts must not fire off the main thread, so workers count problems
 * and keep the first message; the main thread asserts on them. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool_internal.h"
#include "testlib.h"

#define NTHREADS 8

typedef struct {
    atomic_int errors;
    pthread_mutex_t msg_lock;
    char msg[512];
} problems;

static void problem(problems *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *pr, const char *fmt, ...)
{
    if (atomic_fetch_add(&pr->errors, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        pthread_mutex_lock(&pr->msg_lock);
        vsnprintf(pr->msg, sizeof pr->msg, fmt, ap);
        pthread_mutex_unlock(&pr->msg_lock);
        va_end(ap);
    }
}

static void problems_init(problems *pr)
{
    memset(pr, 0, sizeof *pr);
    pthread_mutex_init(&pr->msg_lock, NULL);
}

static void problems_check(problems *pr)
{
    int n = atomic_load(&pr->errors);
    pthread_mutex_destroy(&pr->msg_lock);
    if (n) fail_msg("%d problem(s) in worker threads; first: %s", n, pr->msg);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static sp_bytes *pattern(size_t len, unsigned seed)
{
    sp_bytes *b = sp_bytes_new(len);
    if (b)
        for (size_t i = 0; i < len; i++) b->data[i] = (unsigned char)(seed + i * 31);
    return b;
}

/* Pin, compare with the pattern, unpin; problems are reported, not asserted. */
static void verify(problems *pr, sp_pool *p, sp_ref r, size_t len, unsigned seed)
{
    void *o;
    sp_status st = sp_pin(p, r, &o);
    if (st != SP_OK) {
        problem(pr, "pin of %llu: %s: %s", (unsigned long long)r, sp_strerror(st), sp_last_error());
        return;
    }
    sp_bytes *b = o;
    if (b->len != len) problem(pr, "ref %llu: length %zu, want %zu", (unsigned long long)r, b->len, len);
    else
        for (size_t i = 0; i < len; i++)
            if (b->data[i] != (unsigned char)(seed + i * 31)) {
                problem(pr, "ref %llu: byte %zu differs", (unsigned long long)r, i);
                break;
            }
    st = sp_unpin(p, r);
    if (st != SP_OK) problem(pr, "unpin of %llu: %s", (unsigned long long)r, sp_strerror(st));
}

static void check_empty(sp_pool *p, const char *session)
{
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(s.objects_in_memory, 0);
    assert_int_equal(s.objects_on_disk, 0);
    assert_int_equal(s.objects_pinned, 0);
    if (session) assert_int_equal(t_count_files(session), 0);
}

/* ---- stress: thousands of random operations from 8 threads, tiny bound ---- */

#define SHARED 32
#define OWN 16
#define OPS 2500

typedef struct {
    sp_pool *p;
    problems *pr;
    sp_ref shared[SHARED];
    size_t shared_len[SHARED];
} stress_ctx;

typedef struct {
    stress_ctx *c;
    unsigned id;
} stress_arg;

static void *stress_worker(void *argp)
{
    stress_arg *a = argp;
    stress_ctx *c = a->c;
    uint64_t rng = 1234 + a->id;
    sp_ref own[OWN] = {0};
    size_t own_len[OWN] = {0};
    unsigned own_seed[OWN] = {0};
    for (int op = 0; op < OPS; op++) {
        unsigned k = (unsigned)(rng_next(&rng) % OWN);
        switch (rng_next(&rng) % 6) {
        case 0: /* put (replacing whatever was in that slot) */
            if (own[k]) {
                sp_status st = sp_release(c->p, own[k]);
                if (st != SP_OK) problem(c->pr, "release: %s: %s", sp_strerror(st), sp_last_error());
                own[k] = 0;
            } else {
                size_t len = 1 + (size_t)(rng_next(&rng) % 4096);
                unsigned seed = (unsigned)rng_next(&rng);
                sp_bytes *b = pattern(len, seed);
                sp_ref r;
                sp_status st = sp_put(c->p, b, &sp_bytes_type, NULL, &r);
                if (st != SP_OK) {
                    problem(c->pr, "put of %zu bytes: %s: %s", len, sp_strerror(st), sp_last_error());
                    sp_bytes_free(b);
                } else {
                    own[k] = r;
                    own_len[k] = len;
                    own_seed[k] = seed;
                }
            }
            break;
        case 1:
        case 2: /* pin one of ours */
            if (own[k]) verify(c->pr, c->p, own[k], own_len[k], own_seed[k]);
            break;
        case 3:
        case 4: { /* pin a shared object, maybe taking and dropping a reference */
            unsigned j = (unsigned)(rng_next(&rng) % SHARED);
            sp_status st = sp_addref(c->p, c->shared[j]);
            if (st != SP_OK) problem(c->pr, "addref: %s", sp_strerror(st));
            verify(c->pr, c->p, c->shared[j], c->shared_len[j], 1000 + j);
            st = sp_release(c->p, c->shared[j]);
            if (st != SP_OK) problem(c->pr, "release of shared: %s: %s", sp_strerror(st), sp_last_error());
            break;
        }
        case 5: { /* query and stats while others work */
            sp_stats s;
            if (sp_pool_stats(c->p, &s) != SP_OK) problem(c->pr, "stats failed");
            else if (s.memory_used > s.memory_bound)
                problem(c->pr, "memory used %llu over the bound %llu", (unsigned long long)s.memory_used,
                        (unsigned long long)s.memory_bound);
            if (own[k]) {
                sp_ref_info info;
                if (sp_ref_query(c->p, own[k], &info) != SP_OK) problem(c->pr, "query failed");
            }
            break;
        }
        }
    }
    for (unsigned k = 0; k < OWN; k++)
        if (own[k]) {
            verify(c->pr, c->p, own[k], own_len[k], own_seed[k]);
            sp_status st = sp_release(c->p, own[k]);
            if (st != SP_OK) problem(c->pr, "final release: %s: %s", sp_strerror(st), sp_last_error());
        }
    return NULL;
}

static void stress(sp_policy policy, uint64_t spill_ahead, const char *filters, sp_page_cache cache)
{
    static const unsigned char key[32] = "concurrency-test-key-0123456789";
    char *dir = t_tmpdir();
    sp_config cfg;
    sp_config_default(&cfg);
    cfg.memory_bound = 64 << 10; /* about 16 objects: most of them live on disk */
    cfg.disk_bound = 64 << 20;
    cfg.dir = dir;
    cfg.policy = policy;
    cfg.spill_ahead = spill_ahead;
    cfg.filters = filters;
    cfg.key = filters ? key : NULL;
    cfg.page_cache = cache;
    sp_pool *p;
    t_ok(sp_pool_open(&p, &cfg));
    problems pr;
    problems_init(&pr);
    stress_ctx c = {.p = p, .pr = &pr};
    for (unsigned j = 0; j < SHARED; j++) {
        c.shared_len[j] = 100 + j * 97;
        c.shared[j] = t_put(p, c.shared_len[j], 1000 + j);
    }
    pthread_t th[NTHREADS];
    stress_arg args[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        args[i] = (stress_arg){&c, i};
        assert_int_equal(pthread_create(&th[i], NULL, stress_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    problems_check(&pr);

    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_true(s.evictions > 100); /* the bound really was exercised */
    assert_true(s.misses > 100);
    assert_int_equal(s.spill_failures, 0);
    for (unsigned j = 0; j < SHARED; j++) {
        t_check(p, c.shared[j], c.shared_len[j], 1000 + j);
        t_ok(sp_release(p, c.shared[j]));
    }
    check_empty(p, sp_pool_session_dir(p));
    t_ok(sp_pool_close(p));
    assert_int_equal(t_count_files(dir), 0);
    t_rmrf(dir);
    free(dir);
}

static void stress_mru_on_demand(void **state)
{
    (void)state;
    stress(SP_POLICY_MRU, 0, NULL, SP_CACHE_KEEP);
}

static void stress_lru_on_demand(void **state)
{
    (void)state;
    stress(SP_POLICY_LRU, 0, NULL, SP_CACHE_KEEP);
}

static void stress_mru_write_back(void **state)
{
    (void)state;
    stress(SP_POLICY_MRU, 16 << 10, NULL, SP_CACHE_KEEP);
}

/* Codec contexts are per thread: many threads compressing and encrypting at once. */
static void stress_with_filters(void **state)
{
    (void)state;
    stress(SP_POLICY_LRU, 16 << 10, "zstd:1,encrypt", SP_CACHE_KEEP);
    stress(SP_POLICY_MRU, 0, "lz4,gzip:1", SP_CACHE_KEEP);
}

/* Files written through and dropped from the page cache as threads spill at once. */
static void stress_dropping_the_page_cache(void **state)
{
    (void)state;
    stress(SP_POLICY_MRU, 16 << 10, "lz4", SP_CACHE_DROP);
}

/* ---- objects of several frames, filtered on the helper threads, from many threads ---- */

typedef struct {
    sp_pool *p;
    problems *pr;
    unsigned id;
} frames_arg;

/* Each thread's objects outgrow the bound by themselves, so every thread spills and
 * restores whatever the scheduling; the bound still holds a pin of every thread. */
#define FRAMES_OBJS 6
#define FRAMES_LEN ((2u << 20) + 100000) /* three frames, the last one partial */

static void *frames_worker(void *argp)
{
    frames_arg *a = argp;
    sp_ref r[FRAMES_OBJS];
    size_t len = FRAMES_LEN + 1000 * a->id;
    int made = 0;
    for (; made < FRAMES_OBJS; made++) {
        sp_bytes *b = pattern(len, a->id * 10 + (unsigned)made);
        sp_status st = sp_put(a->p, b, &sp_bytes_type, NULL, &r[made]);
        if (st != SP_OK) {
            problem(a->pr, "put: %s: %s", sp_strerror(st), sp_last_error());
            sp_bytes_free(b);
            break;
        }
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < made; i++) verify(a->pr, a->p, r[i], len, a->id * 10 + (unsigned)i);
    for (int i = 0; i < made; i++) {
        sp_status st = sp_release(a->p, r[i]);
        if (st != SP_OK) problem(a->pr, "release: %s", sp_strerror(st));
    }
    return NULL;
}

static void multi_frame_objects_from_many_threads(void **state)
{
    (void)state;
    static const unsigned char key[32] = "frames-test-key-0123456789abcdef";
    static const char *chains[] = {"lz4,encrypt", "zstd:1"};
    for (int c = 0; c < 2; c++) {
        char *dir = t_tmpdir();
        sp_config cfg;
        sp_config_default(&cfg);
        cfg.memory_bound = 10 << 20;
        cfg.disk_bound = 256 << 20;
        cfg.dir = dir;
        cfg.spill_ahead = c ? 0 : 1 << 20;
        cfg.filters = chains[c];
        cfg.key = key;
        sp_pool *p;
        t_ok(sp_pool_open(&p, &cfg));
        problems pr;
        problems_init(&pr);
        pthread_t th[4];
        frames_arg args[4];
        for (unsigned i = 0; i < 4; i++) {
            args[i] = (frames_arg){p, &pr, i};
            assert_int_equal(pthread_create(&th[i], NULL, frames_worker, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
        problems_check(&pr);
        sp_stats s;
        t_ok(sp_pool_stats(p, &s));
        assert_true(s.misses >= 4 * 2); /* each thread, each round */
        check_empty(p, sp_pool_session_dir(p));
        t_ok(sp_pool_close(p));
        t_rmrf(dir);
        free(dir);
    }
}

/* ---- 8 threads pin the same spilled object: one read, the rest wait for it ---- */

typedef struct {
    sp_pool *p;
    sp_ref r;
    size_t len;
    pthread_barrier_t go;
    problems pr;
} same_ctx;

static void *same_worker(void *argp)
{
    same_ctx *c = argp;
    pthread_barrier_wait(&c->go);
    verify(&c->pr, c->p, c->r, c->len, 5);
    return NULL;
}

static void concurrent_pins_share_one_read(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    t_store s;
    t_store_init(&s, dir);
    same_ctx c = {.len = 3 << 20};
    c.p = t_pool_on(&s, 4 << 20, 64 << 20, SP_POLICY_LRU);
    problems_init(&c.pr);
    c.r = t_put(c.p, c.len, 5);
    sp_ref other = t_put(c.p, 3 << 20, 6); /* pushes r out */
    assert_int_equal(t_tier(c.p, c.r), SP_TIER_DISK);
    sp_stats before;
    t_ok(sp_pool_stats(c.p, &before));
    atomic_store(&s.read_delay_ms, 100); /* every pinner arrives while the read is in flight */
    pthread_barrier_init(&c.go, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, same_worker, &c), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&c.go);
    problems_check(&c.pr);
    sp_stats after;
    t_ok(sp_pool_stats(c.p, &after));
    assert_int_equal(atomic_load(&s.opens), 1);
    assert_int_equal(after.misses - before.misses, 1);
    assert_int_equal(after.hits - before.hits, NTHREADS - 1);
    assert_int_equal(after.files_read - before.files_read, 1);
    t_ok(sp_release(c.p, c.r));
    t_ok(sp_release(c.p, other));
    check_empty(c.p, NULL);
    t_ok(sp_pool_close(c.p));
    t_store_fini(&s);
    t_rmrf(dir);
    free(dir);
}

/* ---- registered sources: one load for concurrent first pins; loads and clean
 * drops racing from several threads ---- */

typedef struct {
    sp_pool *p;
    problems *pr;
    sp_ref *refs;
    int n, id;
    pthread_barrier_t *go;
} lazy_arg;

static void verify_read(problems *pr, sp_pool *p, sp_ref r, size_t len, unsigned seed)
{
    const void *o;
    sp_status st = sp_pin_read(p, r, &o);
    if (st != SP_OK) {
        problem(pr, "pin_read: %s: %s", sp_strerror(st), sp_last_error());
        return;
    }
    const sp_bytes *b = o;
    if (b->len != len || (len && b->data[len - 1] != (unsigned char)(seed + (len - 1) * 31)))
        problem(pr, "source data differs");
    if (sp_unpin(p, r) != SP_OK) problem(pr, "unpin failed");
}

static void *lazy_worker(void *argp)
{
    lazy_arg *a = argp;
    pthread_barrier_wait(a->go);
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < a->n; i++) {
            int k = (i * 7 + a->id * 3 + round) % a->n;
            verify_read(a->pr, a->p, a->refs[k], 2000, (unsigned)k);
        }
    return NULL;
}

static void lazy_sources_under_threads(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    /* room for every thread's pin and 4 more: 12 of the 32 sources fit at once */
    sp_pool *p = t_pool(dir, (NTHREADS + 4) * 2000, 1 << 20, SP_POLICY_LRU);
    enum { N = 32 };
    sp_ref refs[N];
    for (int k = 0; k < N; k++) {
        char path[600];
        snprintf(path, sizeof path, "%s/src-%d", dir, k);
        FILE *fp = fopen(path, "wb");
        for (int i = 0; i < 2000; i++) fputc((int)(unsigned char)(k + i * 31), fp);
        fclose(fp);
        t_ok(sp_put_lazy(p, path, &sp_bytes_type, NULL, &refs[k]));
    }
    problems pr;
    problems_init(&pr);
    pthread_barrier_t go;
    /* first: all threads pin the same never-loaded source at once */
    pthread_barrier_init(&go, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    lazy_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (lazy_arg){p, &pr, refs, 1, i, &go};
        assert_int_equal(pthread_create(&th[i], NULL, lazy_worker, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.lazy_loads, 1);
    /* then: every source, loads and clean drops from all threads */
    pthread_barrier_init(&go, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (lazy_arg){p, &pr, refs, N, i, &go};
        assert_int_equal(pthread_create(&th[i], NULL, lazy_worker, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    problems_check(&pr);
    t_ok(sp_pool_stats(p, &s));
    assert_true(s.clean_drops > 50);
    assert_int_equal(s.files_written, 0);
    assert_true(s.memory_used <= (NTHREADS + 4) * 2000);
    for (int k = 0; k < N; k++) t_ok(sp_release(p, refs[k]));
    check_empty(p, sp_pool_session_dir(p));
    t_ok(sp_pool_close(p));
    t_rmrf(dir);
    free(dir);
}

/* ---- spills of independent objects overlap ---- */

typedef struct {
    sp_pool *p;
    pthread_barrier_t go;
    problems pr;
    sp_ref refs[NTHREADS];
} par_ctx;

typedef struct {
    par_ctx *c;
    int id;
} par_arg;

static void *par_worker(void *argp)
{
    par_arg *a = argp;
    pthread_barrier_wait(&a->c->go);
    sp_bytes *b = pattern(4096, 200 + (unsigned)a->id);
    sp_status st = sp_put(a->c->p, b, &sp_bytes_type, NULL, &a->c->refs[a->id]);
    if (st != SP_OK) {
        problem(&a->c->pr, "put: %s: %s", sp_strerror(st), sp_last_error());
        sp_bytes_free(b);
    }
    return NULL;
}

static void independent_spills_run_in_parallel(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    t_store s;
    t_store_init(&s, dir);
    par_ctx c = {0};
    c.p = t_pool_on(&s, NTHREADS * 4096, 64 << 20, SP_POLICY_LRU);
    problems_init(&c.pr);
    sp_ref first[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) first[i] = t_put(c.p, 4096, 100 + (unsigned)i);
    atomic_store(&s.write_delay_ms, 150); /* each spill takes a while: overlap shows */
    pthread_barrier_init(&c.go, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    par_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (par_arg){&c, i};
        assert_int_equal(pthread_create(&th[i], NULL, par_worker, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&c.go);
    problems_check(&c.pr);
    atomic_store(&s.write_delay_ms, 0);
    /* Each put needed one victim; the eight writes overlapped rather than queued. */
    assert_int_equal(atomic_load(&s.creates), NTHREADS);
    assert_true(atomic_load(&s.writers_max) >= 2);
    for (int i = 0; i < NTHREADS; i++) {
        t_check(c.p, first[i], 4096, 100 + (unsigned)i);
        t_check(c.p, c.refs[i], 4096, 200 + (unsigned)i);
    }
    for (int i = 0; i < NTHREADS; i++) {
        t_ok(sp_release(c.p, first[i]));
        t_ok(sp_release(c.p, c.refs[i]));
    }
    check_empty(c.p, NULL);
    t_ok(sp_pool_close(c.p));
    t_store_fini(&s);
    t_rmrf(dir);
    free(dir);
}

/* ---- releases racing with spills and restores of the same objects ---- */

#define RACE_OBJS 64

typedef struct {
    sp_pool *p;
    problems pr;
    sp_ref refs[RACE_OBJS];
    pthread_barrier_t go;
} race_ctx;

typedef struct {
    race_ctx *c;
    int id;
} race_arg;

/* Two threads each own one reference to every object: each pins it, then drops
 * its reference, while a third keeps putting to force spills of them. */
static void *race_owner(void *argp)
{
    race_arg *a = argp;
    pthread_barrier_wait(&a->c->go);
    for (int i = 0; i < RACE_OBJS; i++) {
        int j = a->id ? RACE_OBJS - 1 - i : i;
        verify(&a->c->pr, a->c->p, a->c->refs[j], 3000, 40 + (unsigned)j);
        sp_status st = sp_release(a->c->p, a->c->refs[j]);
        if (st != SP_OK) problem(&a->c->pr, "release %d: %s: %s", j, sp_strerror(st), sp_last_error());
    }
    return NULL;
}

static void *race_pusher(void *argp)
{
    race_arg *a = argp;
    pthread_barrier_wait(&a->c->go);
    for (int i = 0; i < 200; i++) {
        sp_bytes *b = pattern(3000, (unsigned)i);
        sp_ref r;
        sp_status st = sp_put(a->c->p, b, &sp_bytes_type, NULL, &r);
        if (st != SP_OK) {
            problem(&a->c->pr, "pusher put: %s: %s", sp_strerror(st), sp_last_error());
            sp_bytes_free(b);
            continue;
        }
        st = sp_release(a->c->p, r);
        if (st != SP_OK) problem(&a->c->pr, "pusher release: %s", sp_strerror(st));
    }
    return NULL;
}

static void release_races_with_spill_and_restore(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    sp_config cfg;
    sp_config_default(&cfg);
    cfg.memory_bound = 16 * 3000;
    cfg.disk_bound = 64 << 20;
    cfg.dir = dir;
    cfg.spill_ahead = 6000; /* the write-back thread joins the race */
    for (int round = 0; round < 3; round++) {
        race_ctx c;
        memset(&c, 0, sizeof c);
        problems_init(&c.pr);
        t_ok(sp_pool_open(&c.p, &cfg));
        for (int j = 0; j < RACE_OBJS; j++) {
            c.refs[j] = t_put(c.p, 3000, 40 + (unsigned)j);
            t_ok(sp_addref(c.p, c.refs[j]));
        }
        pthread_barrier_init(&c.go, NULL, 3);
        pthread_t th[3];
        race_arg args[3] = {{&c, 0}, {&c, 1}, {&c, 2}};
        assert_int_equal(pthread_create(&th[0], NULL, race_owner, &args[0]), 0);
        assert_int_equal(pthread_create(&th[1], NULL, race_owner, &args[1]), 0);
        assert_int_equal(pthread_create(&th[2], NULL, race_pusher, &args[2]), 0);
        for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&c.go);
        problems_check(&c.pr);
        for (int j = 0; j < RACE_OBJS; j++) t_status(sp_release(c.p, c.refs[j]), SP_ERR_BAD_REF);
        check_empty(c.p, sp_pool_session_dir(c.p));
        t_ok(sp_pool_close(c.p));
    }
    t_rmrf(dir);
    free(dir);
}

/* ---- a tag is one object's, whatever the timing ---- */

typedef struct {
    sp_pool *p;
    unsigned char fill;
    const char *tag;
    sp_ref ref;
    sp_status st;
} tag_put;

static void *tag_putter(void *argp)
{
    tag_put *a = argp;
    sp_bytes *b = sp_bytes_new(4096);
    if (!b) {
        a->st = SP_ERR_NOMEM;
        return NULL;
    }
    memset(b->data, a->fill, 4096);
    sp_put_options o = {.tag = a->tag};
    a->st = sp_put(a->p, b, &sp_bytes_type, &o, &a->ref);
    if (a->st != SP_OK) sp_bytes_free(b);
    return NULL;
}

static void tag_check(sp_pool *p, sp_ref r, unsigned char fill)
{
    const void *obj;
    t_ok(sp_pin_read(p, r, &obj));
    const sp_bytes *b = obj;
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] != fill) fail_msg("byte %zu is %u, want %u", i, b->data[i], fill);
    t_ok(sp_unpin(p, r));
}

/* Both puts must evict, which drops the lock: only one may take the tag. */
static void two_puts_of_one_tag_one_wins(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    t_store s;
    t_store_init(&s, dir);
    sp_pool *p = t_pool_on(&s, 3 * 4096, 1 << 20, SP_POLICY_MRU);
    sp_ref full[3];
    for (int i = 0; i < 3; i++) full[i] = t_put(p, 4096, 9);
    atomic_store(&s.write_delay_ms, 100); /* the evictions overlap */
    tag_put a[2] = {{p, 'A', "shared", SP_REF_NULL, SP_OK}, {p, 'B', "shared", SP_REF_NULL, SP_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, tag_putter, &a[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    atomic_store(&s.write_delay_ms, 0);
    int won = a[0].st == SP_OK ? 0 : 1;
    t_ok(a[won].st);
    t_status(a[1 - won].st, SP_ERR_INVALID);
    /* The winner goes to disk under the tag and comes back intact. */
    for (int i = 0; i < 3; i++) t_touch(p, full[i]);
    tag_check(p, a[won].ref, a[won].fill);
    for (int i = 0; i < 3; i++) t_ok(sp_release(p, full[i]));
    t_ok(sp_release(p, a[won].ref));
    t_ok(sp_pool_close(p));
    t_store_fini(&s);
    t_rmrf(dir);
    free(dir);
}

typedef struct {
    sp_pool *p;
    sp_ref ref;
    sp_status st;
} tag_release;

static void *tag_releaser(void *argp)
{
    tag_release *a = argp;
    a->st = sp_release(a->p, a->ref);
    return NULL;
}

/* A release removes the tagged file after the object is gone: a put of the same
 * tag meanwhile waits for that, so the late remove cannot delete the new file. */
static void tag_reused_during_its_release_keeps_the_new_file(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    t_store s;
    t_store_init(&s, dir);
    sp_pool *p = t_pool_on(&s, 2 * 4096 + 2048, 1 << 20, SP_POLICY_LRU); /* two objects */
    tag_put x = {p, 'X', "t", SP_REF_NULL, SP_OK};
    tag_putter(&x);
    t_ok(x.st);
    sp_ref other[2];
    for (int i = 0; i < 2; i++) other[i] = t_put(p, 4096, 3); /* LRU: x goes to disk */
    assert_int_equal(t_tier(p, x.ref), SP_TIER_DISK);
    atomic_store(&s.remove_delay_ms, 300);
    tag_release rel = {p, x.ref, SP_OK};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, tag_releaser, &rel), 0);
    t_sleep_ms(100); /* the release is in its remove now */
    tag_put y = {p, 'Y', "t", SP_REF_NULL, SP_OK};
    tag_putter(&y);
    t_ok(y.st);
    /* Read pins (no removes, which are slowed down now) bring the others back: y,
     * least recently used, goes to disk under "t" while the release still runs. */
    for (int i = 0; i < 2; i++) {
        const void *obj;
        t_ok(sp_pin_read(p, other[i], &obj));
        t_ok(sp_unpin(p, other[i]));
    }
    assert_int_equal(t_tier(p, y.ref), SP_TIER_DISK);
    pthread_join(th, NULL);
    atomic_store(&s.remove_delay_ms, 0);
    t_ok(rel.st);
    tag_check(p, y.ref, 'Y');
    for (int i = 0; i < 2; i++) t_ok(sp_release(p, other[i]));
    t_ok(sp_release(p, y.ref));
    t_ok(sp_pool_close(p));
    t_store_fini(&s);
    t_rmrf(dir);
    free(dir);
}

/* ---- no store call and no encode/decode/free runs under the pool's lock ---- */

static sp_pool *probe_pool;
static atomic_int probe_calls, probe_locked;

static void probe(void)
{
    atomic_fetch_add(&probe_calls, 1);
    if (!probe_pool) return;
    int e = pthread_mutex_trylock(&probe_pool->lock);
    if (e == 0) pthread_mutex_unlock(&probe_pool->lock);
    else atomic_fetch_add(&probe_locked, 1);
}

static size_t probe_size(const void *o) { return sp_bytes_type.size(o); }
static sp_status probe_encode(const void *o, sp_writer *w)
{
    probe();
    return sp_bytes_type.encode(o, w);
}
static sp_status probe_decode(sp_reader *r, uint64_t len, void **o)
{
    probe();
    return sp_bytes_type.decode(r, len, o);
}
static void probe_free(void *o)
{
    probe();
    sp_bytes_type.free(o);
}
static const sp_type probe_type = {"probe", probe_size, probe_encode, probe_decode, probe_free, NULL};

static sp_status lp_create(void *ctx, const char *name, sp_place place, void **f)
{
    probe();
    return t_store_methods.create(ctx, name, place, f);
}
static sp_status lp_write(void *f, const void *buf, size_t len)
{
    probe();
    return t_store_methods.write(f, buf, len);
}
static sp_status lp_commit(void *f)
{
    probe();
    return t_store_methods.commit(f);
}
static sp_status lp_open(void *ctx, const char *name, sp_place place, void **f, uint64_t *size)
{
    probe();
    return t_store_methods.open(ctx, name, place, f, size);
}
static sp_status lp_read(void *f, void *buf, size_t len, size_t *got)
{
    probe();
    return t_store_methods.read(f, buf, len, got);
}
static sp_status lp_remove(void *ctx, const char *name, sp_place place)
{
    probe();
    return t_store_methods.remove(ctx, name, place);
}

static void io_happens_outside_the_pool_lock(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    t_store s;
    t_store_init(&s, dir);
    sp_store_methods m = t_store_methods;
    m.create = lp_create;
    m.write = lp_write;
    m.commit = lp_commit;
    m.open = lp_open;
    m.read = lp_read;
    m.remove = lp_remove;
    sp_config cfg;
    sp_config_default(&cfg);
    cfg.memory_bound = 1000;
    cfg.disk_bound = 1 << 20;
    cfg.spill_ahead = 0; /* single-threaded: any held lock is the caller's own */
    cfg.store = &m;
    cfg.store_ctx = &s;
    sp_pool *p;
    t_ok(sp_pool_open(&p, &cfg));
    probe_pool = p;
    atomic_store(&probe_calls, 0);
    atomic_store(&probe_locked, 0);
    sp_ref r[6];
    for (int i = 0; i < 6; i++) {
        sp_bytes *b = pattern(400, (unsigned)i);
        t_ok(sp_put(p, b, &probe_type, &(sp_put_options){.retain = i == 5}, &r[i]));
    }
    for (int i = 0; i < 6; i++) t_check(p, r[i], 400, (unsigned)i);
    for (int i = 0; i < 6; i++) t_ok(sp_release(p, r[i]));
    probe_pool = NULL;
    t_ok(sp_pool_close(p));
    /* creates, writes, commits, opens, reads, removes, encodes, decodes, frees */
    assert_true(atomic_load(&probe_calls) > 30);
    assert_int_equal(atomic_load(&probe_locked), 0);
    t_store_fini(&s);
    t_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stress_mru_on_demand),
        cmocka_unit_test(stress_lru_on_demand),
        cmocka_unit_test(stress_mru_write_back),
        cmocka_unit_test(stress_with_filters),
        cmocka_unit_test(stress_dropping_the_page_cache),
        cmocka_unit_test(multi_frame_objects_from_many_threads),
        cmocka_unit_test(lazy_sources_under_threads),
        cmocka_unit_test(concurrent_pins_share_one_read),
        cmocka_unit_test(independent_spills_run_in_parallel),
        cmocka_unit_test(release_races_with_spill_and_restore),
        cmocka_unit_test(two_puts_of_one_tag_one_wins),
        cmocka_unit_test(tag_reused_during_its_release_keeps_the_new_file),
        cmocka_unit_test(io_happens_outside_the_pool_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
