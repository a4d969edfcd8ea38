/* The task graph: results against direct computation, failure propagation, memory-
 * aware admission, read-ahead, cancellation, and many threads at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/testing.h"
#include "spillpool/dag.h"
#include "testlib.h"

typedef t_dagfx fx;

/* A result of `len` bytes whose first 8 hold v. */
static void set_u64(sp_task_ctx *c, uint64_t v, size_t len)
{
    sp_bytes *b = sp_bytes_new(len < 8 ? 8 : len);
    memset(b->data, 0x5a, b->len);
    memcpy(b->data, &v, 8);
    sp_task_set_result(c, b, &sp_bytes_type);
}

static uint64_t in_u64(sp_task_ctx *c, unsigned i)
{
    const sp_bytes *b = sp_task_input(c, i);
    uint64_t v;
    memcpy(&v, b->data, 8);
    return v;
}

static uint64_t fetch_u64(fx *f, sp_task *t)
{
    sp_ref r;
    t_ok(sp_fetch(f->d, t, &r));
    const void *o;
    t_ok(sp_pin_read(f->p, r, &o));
    uint64_t v;
    memcpy(&v, ((const sp_bytes *)o)->data, 8);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
    return v;
}

/* arg 0: a value; result: value (len arg 1, default 8) */
static sp_status fn_const(sp_task_ctx *c, void *u)
{
    (void)u;
    size_t len = sp_task_nargs(c) > 1 ? (size_t)sp_task_arg(c, 1)->v.u : 8;
    set_u64(c, sp_task_arg(c, 0)->v.u, len);
    return SP_OK;
}

/* result: sum of every task/ref input times the user multiplier */
static sp_status fn_sum(sp_task_ctx *c, void *u)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < sp_task_nargs(c); i++)
        if (sp_task_arg(c, i)->kind != SP_ARG_VALUE) s += in_u64(c, i);
    set_u64(c, s * (u ? *(uint64_t *)u : 1), 8);
    return SP_OK;
}

static sp_status fn_fail(sp_task_ctx *c, void *u)
{
    (void)u;
    return sp_task_fail(c, SP_ERR_CORRUPT, "bad row %d", 42);
}

/* Leaves a detail message behind (from a failed call it made and got over), then
 * succeeds. */
static sp_status fn_noisy(sp_task_ctx *c, void *u)
{
    (void)u;
    assert_int_equal(sp_filters_check("no-such-filter"), SP_ERR_INVALID);
    set_u64(c, 1, 8);
    return SP_OK;
}

/* Fails without a message of its own. */
static sp_status fn_quiet_fail(sp_task_ctx *c, void *u)
{
    (void)c;
    (void)u;
    return SP_ERR_IO;
}

static sp_status fn_empty(sp_task_ctx *c, void *u)
{
    (void)c;
    (void)u;
    return SP_OK;
}

static sp_task *spawn(fx *f, sp_task_fn fn, void *u, unsigned n, const sp_arg *a, const char *name)
{
    sp_task *t;
    sp_spawn_options o = {name, 0};
    t_ok(sp_spawn(f->d, fn, u, n, a, &o, &t));
    return t;
}

static void test_diamond_matches_direct(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 2, 0);
    uint64_t two = 2, three = 3;
    sp_task *a = spawn(f, fn_const, NULL, 1, (sp_arg[]){sp_arg_i64(7)}, "a");
    sp_task *b = spawn(f, fn_sum, &two, 1, (sp_arg[]){sp_arg_task(a)}, "b");
    sp_task *c = spawn(f, fn_sum, &three, 1, (sp_arg[]){sp_arg_task(a)}, "c");
    sp_task *d = spawn(f, fn_sum, NULL, 2, (sp_arg[]){sp_arg_task(b), sp_arg_task(c)}, "d");
    assert_int_equal(fetch_u64(f, d), 7 * 2 + 7 * 3);
    assert_int_equal(fetch_u64(f, a), 7);
    for (sp_task **t = (sp_task *[]){a, b, c, d, NULL}; *t; t++) sp_task_release(f->d, *t);
    t_dagfx_close(f);
}

static void test_wide_graph_matches_direct(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 2, 0);
    enum { N = 300 };
    sp_arg args[N];
    uint64_t want = 0;
    for (unsigned i = 0; i < N; i++) {
        sp_task *t = spawn(f, fn_const, NULL, 1, (sp_arg[]){sp_arg_i64(i * i + 1)}, NULL);
        args[i] = sp_arg_task(t);
        want += i * i + 1;
    }
    sp_task *sum = spawn(f, fn_sum, NULL, N, args, "sum");
    for (unsigned i = 0; i < N; i++) sp_task_release(f->d, args[i].v.task); /* the sum holds them */
    assert_int_equal(fetch_u64(f, sum), want);
    sp_task_release(f->d, sum);
    sp_dag_stats s;
    sp_dag_stats_get(f->d, &s);
    assert_int_equal(s.completed, N + 1);
    assert_int_equal(s.failed, 0);
    t_dagfx_close(f);
}

static void test_failure_reaches_only_dependents(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 2, 0);
    /* a -> bad -> c -> e;  a -> ok;  (bad, ok) -> d */
    sp_task *a = spawn(f, fn_const, NULL, 1, (sp_arg[]){sp_arg_i64(5)}, "a");
    sp_task *bad = spawn(f, fn_fail, NULL, 1, (sp_arg[]){sp_arg_task(a)}, "parse-3");
    sp_task *c = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(bad)}, "c");
    sp_task *e = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(c)}, "e");
    sp_task *ok = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(a)}, "ok");
    sp_task *d = spawn(f, fn_sum, NULL, 2, (sp_arg[]){sp_arg_task(bad), sp_arg_task(ok)}, "d");
    assert_int_equal(fetch_u64(f, ok), 5);
    sp_ref r;
    t_status(sp_fetch(f->d, bad, &r), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "task 'parse-3' failed: bad row 42"));
    for (sp_task **t = (sp_task *[]){c, e, d, NULL}; *t; t++) {
        t_status(sp_fetch(f->d, *t, &r), SP_ERR_CORRUPT);
        assert_int_equal(r, SP_REF_NULL);
        assert_non_null(strstr(sp_last_error(), "task 'parse-3' failed: bad row 42"));
        assert_non_null(strstr(sp_last_error(), "not run"));
    }
    /* A task spawned on an already failed one fails at once, the same way. */
    sp_task *late = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(e)}, "late");
    t_status(sp_fetch(f->d, late, NULL), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "parse-3"));
    sp_dag_stats s;
    sp_dag_stats_get(f->d, &s);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.failed, 5);
    for (sp_task **t = (sp_task *[]){a, bad, c, e, ok, d, late, NULL}; *t; t++) sp_task_release(f->d, *t);
    t_dagfx_close(f);
}

static void test_task_larger_than_bound_fails_clearly(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(1 << 20, 2, 0);
    sp_spawn_options o = {"huge", 4 << 20};
    sp_task *t;
    t_ok(sp_spawn(f->d, fn_const, NULL, 1, (sp_arg[]){sp_arg_i64(1)}, &o, &t));
    t_status(sp_fetch(f->d, t, NULL), SP_ERR_TOO_BIG);
    assert_non_null(strstr(sp_last_error(), "task 'huge' needs 4194304 bytes"));
    sp_task_release(f->d, t);
    t_dagfx_close(f);
}

/* Results of 256 KiB under a 1 MiB bound, combined pairwise: everything spills, the
 * reserved bytes never pass the bound, and the answer is the direct one. */
static void test_memory_aware_tree_under_small_bound(void **state)
{
    (void)state;
    for (unsigned ra = 0; ra < 2; ra++) {
        fx *f = t_dagfx_open(1 << 20, 2, ra ? 0 : -1u);
        enum { N = 64 };
        sp_task *level[N];
        uint64_t want = 0;
        sp_spawn_options o = {NULL, 256 << 10};
        for (unsigned i = 0; i < N; i++) {
            t_ok(sp_spawn(f->d, fn_const, NULL, 2, (sp_arg[]){sp_arg_i64(i + 1), sp_arg_i64(256 << 10)}, &o,
                          &level[i]));
            want += i + 1;
        }
        /* i with i + n/2: the first half of each level is all made (and spilled)
         * before the first sum can run. */
        for (unsigned n = N; n > 1; n /= 2)
            for (unsigned i = 0; i < n / 2; i++) {
                sp_task *t;
                t_ok(sp_spawn(f->d, fn_sum, NULL, 2, (sp_arg[]){sp_arg_task(level[i]), sp_arg_task(level[i + n / 2])},
                              &o, &t));
                sp_task_release(f->d, level[i]);
                sp_task_release(f->d, level[i + n / 2]);
                level[i] = t;
            }
        assert_int_equal(fetch_u64(f, level[0]), want);
        sp_task_release(f->d, level[0]);
        sp_dag_stats s;
        sp_dag_stats_get(f->d, &s);
        assert_true(s.peak_reserved <= 1 << 20);
        assert_int_equal(s.failed, 0);
        sp_stats ps;
        t_ok(sp_pool_stats(f->p, &ps));
        assert_true(ps.evictions > 0);
        if (ra) assert_true(s.staged_ahead > 0);
        else assert_int_equal(s.staged_ahead, 0);
        t_dagfx_close(f);
    }
}

/* The caller's own pin holds most of the bound: a task whose result cannot fit
 * fails with SP_ERR_MEMORY_FULL once nothing else can free room; it does not hang. */
static void test_result_that_cannot_fit_fails_not_hangs(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(1 << 20, 2, 0);
    sp_ref big = t_put(f->p, 900 << 10, 1);
    void *o;
    t_ok(sp_pin(f->p, big, &o));
    sp_task *t = spawn(f, fn_const, NULL, 2, (sp_arg[]){sp_arg_i64(1), sp_arg_i64(300 << 10)}, "wide");
    t_status(sp_fetch(f->d, t, NULL), SP_ERR_MEMORY_FULL);
    assert_non_null(strstr(sp_last_error(), "task 'wide' failed: storing its result"));
    sp_task_release(f->d, t);
    t_ok(sp_unpin(f->p, big));
    /* With the pin gone the same task runs. */
    t = spawn(f, fn_const, NULL, 2, (sp_arg[]){sp_arg_i64(5), sp_arg_i64(300 << 10)}, "wide");
    assert_int_equal(fetch_u64(f, t), 5);
    sp_task_release(f->d, t);
    t_ok(sp_release(f->p, big));
    t_dagfx_close(f);
}

/* A disk that fills up in the middle of a graph: the tasks whose results could not
 * make room fail with SP_ERR_DISK_FULL naming the spill, their dependents fail the
 * same way, nothing hangs, every result that was stored reads back intact, and once
 * the disk has room again the same graph runs to the end. */
static void test_full_disk_fails_tasks_not_the_dag(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    t_store store;
    t_store_init(&store, dir);
    sp_pool *p = t_pool_on(&store, 512 << 10, 64 << 20, SP_POLICY_MRU);
    sp_dag *d;
    t_ok(sp_dag_open(&d, p, &(sp_dag_options){2, 0}));
    fx f = {dir, p, d};
    for (int round = 0; round < 2; round++) {
        atomic_store(&store.fail_write, round == 0 ? SP_ERR_DISK_FULL : 0);
        enum { N = 16 };
        sp_task *leaf[N], *tiny[N], *sum;
        sp_arg args[N];
        sp_spawn_options o = {NULL, 100 << 10};
        /* leaf: 100 KiB (the caller keeps them all, so they must spill); tiny: 8
         * bytes read from its leaf; sum: of the tiny ones */
        for (unsigned i = 0; i < N; i++) {
            t_ok(sp_spawn(d, fn_const, NULL, 2, (sp_arg[]){sp_arg_i64(i + 1), sp_arg_i64(100 << 10)}, &o, &leaf[i]));
            t_ok(sp_spawn(d, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(leaf[i])}, NULL, &tiny[i]));
            args[i] = sp_arg_task(tiny[i]);
        }
        t_ok(sp_spawn(d, fn_sum, NULL, N, args, NULL, &sum));
        for (unsigned i = 0; i < N; i++) sp_task_release(d, tiny[i]);
        sp_dag_wait(d); /* every leaf made before any is fetched: they cannot all stay in memory */
        unsigned ok = 0, full = 0;
        for (unsigned i = 0; i < N; i++) {
            sp_ref r;
            sp_status st = sp_fetch(d, leaf[i], &r);
            if (st == SP_OK) {
                const void *obj;
                t_ok(sp_pin_read(p, r, &obj));
                uint64_t v;
                memcpy(&v, ((const sp_bytes *)obj)->data, 8);
                assert_int_equal(v, i + 1);
                t_ok(sp_unpin(p, r));
                t_ok(sp_release(p, r));
                ok++;
            } else {
                assert_int_equal(st, SP_ERR_DISK_FULL);
                assert_non_null(strstr(sp_last_error(), "storing its result"));
                full++;
            }
            sp_task_release(d, leaf[i]);
        }
        if (round == 0) {
            /* 16 results of 100 KiB cannot all stay in 512 KiB, and none can spill. */
            assert_true(full > 0);
            t_status(sp_fetch(d, sum, NULL), SP_ERR_DISK_FULL);
            assert_non_null(strstr(sp_last_error(), "not run"));
        } else {
            assert_int_equal(ok, N);
            assert_int_equal(fetch_u64(&f, sum), N * (N + 1) / 2);
        }
        sp_task_release(d, sum);
        sp_dag_wait(d);
    }
    t_ok(sp_dag_close(d));
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.objects_pinned, 0);
    assert_int_equal(s.objects_in_memory + s.objects_on_disk, 0);
    t_ok(sp_pool_close(p));
    t_store_fini(&store);
    t_rmrf(dir);
    free(dir);
}

static sp_status fn_check_ref(sp_task_ctx *c, void *u)
{
    (void)u;
    const sp_bytes *b = sp_task_input(c, 0);
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] != (unsigned char)(3 + i * 31)) return sp_task_fail(c, SP_ERR_CORRUPT, "byte %zu", i);
    set_u64(c, b->len, 8);
    return SP_OK;
}

/* Ref arguments stay alive while the task waits, even when the caller released them,
 * and are read back from disk when spilled. */
static void test_ref_arguments_pinned_and_kept(void **state)
{
    (void)state;
    /* Up to 4 tasks hold a pin (2 workers, 2 staged ahead) beside the put. */
    fx *f = t_dagfx_open(512 << 10, 2, 0);
    sp_task *t[16];
    for (unsigned i = 0; i < 16; i++) {
        sp_ref r = t_put(f->p, 100 << 10, 3);
        t_ok(sp_spawn(f->d, fn_check_ref, NULL, 1, (sp_arg[]){sp_arg_ref(r)}, NULL, &t[i]));
        t_ok(sp_release(f->p, r));
    }
    for (unsigned i = 0; i < 16; i++) {
        assert_int_equal(fetch_u64(f, t[i]), 100 << 10);
        sp_task_release(f->d, t[i]);
    }
    sp_dag_wait(f->d);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.objects_in_memory + s.objects_on_disk, 0);
    /* A released ref cannot be an argument. */
    t_status(sp_spawn(f->d, fn_check_ref, NULL, 1, (sp_arg[]){sp_arg_ref(12345)}, NULL, NULL), SP_ERR_BAD_REF);
    t_dagfx_close(f);
}

static void test_bad_spawns_rejected(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(1 << 20, 1, 0);
    fx *g = t_dagfx_open(1 << 20, 1, 0);
    sp_task *other = spawn(g, fn_empty, NULL, 0, NULL, "other");
    t_status(sp_spawn(f->d, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(other)}, NULL, NULL), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "not a task of this dag"));
    t_status(sp_spawn(f->d, NULL, NULL, 0, NULL, NULL, NULL), SP_ERR_INVALID);
    t_status(sp_spawn(f->d, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(NULL)}, NULL, NULL), SP_ERR_INVALID);
    t_status(sp_fetch(f->d, other, NULL), SP_ERR_INVALID);
    sp_task_release(g->d, other);
    t_dagfx_close(g);
    t_dagfx_close(f);
}

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int go, started; /* started: how many tasks reached the gate */
} gate;

static sp_status fn_gate(sp_task_ctx *c, void *u)
{
    gate *g = u;
    pthread_mutex_lock(&g->m);
    g->started++;
    pthread_cond_broadcast(&g->c);
    while (!g->go) pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
    set_u64(c, sp_task_cancelled(c) ? 1 : 0, 8);
    return SP_OK;
}

static void test_cancel_graph(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(1 << 20, 1, 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    sp_task *run = spawn(f, fn_gate, &g, 0, NULL, "running");
    pthread_mutex_lock(&g.m);
    while (!g.started) pthread_cond_wait(&g.c, &g.m);
    pthread_mutex_unlock(&g.m);
    /* The only worker is busy: these have not started. */
    sp_task *q = spawn(f, fn_const, NULL, 1, (sp_arg[]){sp_arg_i64(1)}, "queued");
    sp_task *dep = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(run)}, "after-running");
    sp_task *dep2 = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(q)}, "after-queued");
    sp_task *keep = spawn(f, fn_const, NULL, 1, (sp_arg[]){sp_arg_i64(9)}, "kept");
    sp_task_cancel(f->d, q);
    t_status(sp_fetch(f->d, q, NULL), SP_ERR_CANCELLED);
    t_status(sp_fetch(f->d, dep2, NULL), SP_ERR_CANCELLED);
    assert_non_null(strstr(sp_last_error(), "task 'queued' was cancelled"));
    sp_task_cancel(f->d, run); /* running: flagged, its dependents cancelled */
    t_status(sp_fetch(f->d, dep, NULL), SP_ERR_CANCELLED);
    pthread_mutex_lock(&g.m);
    g.go = 1;
    pthread_cond_broadcast(&g.c);
    pthread_mutex_unlock(&g.m);
    assert_int_equal(fetch_u64(f, run), 1); /* it saw the flag, and finished */
    assert_int_equal(fetch_u64(f, keep), 9);
    /* sp_dag_cancel stops everything not started. */
    g.go = 0;
    g.started = 0;
    sp_task *run2 = spawn(f, fn_gate, &g, 0, NULL, "running2");
    pthread_mutex_lock(&g.m);
    while (!g.started) pthread_cond_wait(&g.c, &g.m);
    pthread_mutex_unlock(&g.m);
    sp_task *later[20];
    for (unsigned i = 0; i < 20; i++) later[i] = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(run2)}, NULL);
    sp_dag_cancel(f->d);
    for (unsigned i = 0; i < 20; i++) {
        t_status(sp_fetch(f->d, later[i], NULL), SP_ERR_CANCELLED);
        sp_task_release(f->d, later[i]);
    }
    pthread_mutex_lock(&g.m);
    g.go = 1;
    pthread_cond_broadcast(&g.c);
    pthread_mutex_unlock(&g.m);
    assert_int_equal(fetch_u64(f, run2), 1);
    for (sp_task **t = (sp_task *[]){run, q, dep, dep2, keep, run2, NULL}; *t; t++) sp_task_release(f->d, *t);
    t_dagfx_close(f);
}

/* A task may spawn more tasks; close with handles never released frees them. */
static sp_status fn_spawner(sp_task_ctx *c, void *u)
{
    (void)u;
    for (int i = 0; i < 10; i++)
        if (sp_spawn(sp_task_dag(c), fn_empty, NULL, 0, NULL, NULL, NULL) != SP_OK) return SP_ERR_NOMEM;
    return SP_OK;
}

/* A failure at the head of a long chain reaches its end: ended one by one from a
 * queue, not a stack frame per task (50,000 frames overflowed the stack). */
/* A function that fails without a message is reported with its status alone, not
 * with a message an earlier task left on the same worker thread. */
static void test_failure_without_message_gets_no_stale_one(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 1, 0);
    sp_task *a = spawn(f, fn_noisy, NULL, 0, NULL, "noisy");
    assert_int_equal(fetch_u64(f, a), 1);
    sp_task *b = spawn(f, fn_quiet_fail, NULL, 0, NULL, "quiet");
    t_status(sp_fetch(f->d, b, NULL), SP_ERR_IO);
    assert_non_null(strstr(sp_last_error(), "task 'quiet' failed: "));
    assert_null(strstr(sp_last_error(), "no-such-filter"));
    sp_task_release(f->d, a);
    sp_task_release(f->d, b);
    t_dagfx_close(f);
}

static void test_failure_down_a_long_chain(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 2, 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    sp_task *head = spawn(f, fn_gate, &g, 0, NULL, "head");
    sp_task *fail = spawn(f, fn_fail, NULL, 1, (sp_arg[]){sp_arg_task(head)}, "bad");
    sp_task *prev = fail;
    for (int i = 0; i < 50000; i++) {
        sp_task *t = spawn(f, fn_sum, NULL, 1, (sp_arg[]){sp_arg_task(prev)}, NULL);
        if (prev != fail) sp_task_release(f->d, prev);
        prev = t;
    }
    pthread_mutex_lock(&g.m); /* the whole chain waits until now */
    g.go = 1;
    pthread_cond_broadcast(&g.c);
    pthread_mutex_unlock(&g.m);
    t_status(sp_fetch(f->d, prev, NULL), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "task 'bad' failed: bad row 42"));
    sp_dag_stats s;
    sp_dag_stats_get(f->d, &s);
    assert_int_equal(s.failed, 50001);
    for (sp_task **t = (sp_task *[]){head, fail, prev, NULL}; *t; t++) sp_task_release(f->d, *t);
    t_dagfx_close(f);
}

/* Out of memory at each allocation of a spawn on two running tasks: the spawn fails
 * or its task does; the tasks it named are intact either way. */
static void test_spawn_out_of_memory_keeps_its_inputs(void **state)
{
    (void)state;
    for (long k = 0;; k++) {
        fx *f = t_dagfx_open(64 << 20, 2, -1u);
        gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
        sp_task *a = spawn(f, fn_gate, &g, 0, NULL, "a");
        sp_task *b = spawn(f, fn_gate, &g, 0, NULL, "b");
        /* Both running and waiting at the gate: the failing allocations below are
         * then the spawn's, not a worker's starting a or b. */
        pthread_mutex_lock(&g.m);
        while (g.started < 2) pthread_cond_wait(&g.c, &g.m);
        pthread_mutex_unlock(&g.m);
        sp_task *x = NULL;
        sp_testing_fail_alloc_after(k);
        sp_status st = sp_spawn(f->d, fn_sum, NULL, 2, (sp_arg[]){sp_arg_task(a), sp_arg_task(b)}, NULL, &x);
        sp_testing_fail_alloc_after(-1);
        pthread_mutex_lock(&g.m);
        g.go = 1;
        pthread_cond_broadcast(&g.c);
        pthread_mutex_unlock(&g.m);
        sp_status xs = SP_ERR_NOMEM;
        if (st == SP_OK) xs = sp_fetch(f->d, x, NULL);
        else t_status(st, SP_ERR_NOMEM);
        if (xs != SP_OK) t_status(xs, SP_ERR_NOMEM);
        assert_int_equal(fetch_u64(f, a), 0); /* not cancelled, and still there */
        assert_int_equal(fetch_u64(f, b), 0);
        if (x) sp_task_release(f->d, x);
        sp_task_release(f->d, a);
        sp_task_release(f->d, b);
        t_dagfx_close(f);
        if (xs == SP_OK) break; /* enough allocations for everything */
    }
}

static void test_tasks_spawn_tasks_and_close_frees(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(1 << 20, 2, 0);
    for (int i = 0; i < 10; i++) spawn(f, fn_spawner, NULL, 0, NULL, NULL); /* handles kept */
    sp_dag_wait(f->d);
    sp_dag_stats s;
    sp_dag_stats_get(f->d, &s);
    assert_int_equal(s.completed, 110);
    t_dagfx_close(f);
}

typedef struct {
    fx *f;
    unsigned seed;
} stress_arg;

static void *stress_thread(void *arg)
{
    stress_arg *a = arg;
    sp_task *prev = NULL;
    uint64_t want = 0;
    for (unsigned i = 0; i < 200; i++) {
        sp_task *t;
        sp_spawn_options o = {NULL, 16 << 10};
        uint64_t v = a->seed * 1000 + i;
        if (sp_spawn(a->f->d, fn_const, NULL, 2, (sp_arg[]){sp_arg_i64((int64_t)v), sp_arg_i64(16 << 10)}, &o, &t) != SP_OK)
            return (void *)1;
        want += v;
        if (prev) {
            sp_task *s;
            if (sp_spawn(a->f->d, fn_sum, NULL, 2, (sp_arg[]){sp_arg_task(prev), sp_arg_task(t)}, &o, &s) != SP_OK)
                return (void *)1;
            sp_task_release(a->f->d, prev);
            sp_task_release(a->f->d, t);
            t = s;
        }
        prev = t;
    }
    sp_ref r;
    if (sp_fetch(a->f->d, prev, &r) != SP_OK) return (void *)1;
    const void *o;
    uint64_t got = 0;
    if (sp_pin_read(a->f->p, r, &o) != SP_OK) return (void *)1;
    memcpy(&got, ((const sp_bytes *)o)->data, 8);
    sp_unpin(a->f->p, r);
    sp_release(a->f->p, r);
    sp_task_release(a->f->d, prev);
    return got == want ? NULL : (void *)1;
}

static void test_many_threads_spawn_and_fetch(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(512 << 10, 3, 0);
    pthread_t th[4];
    stress_arg a[4];
    for (unsigned i = 0; i < 4; i++) {
        a[i] = (stress_arg){f, i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &a[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    t_dagfx_close(f);
}

static sp_status fn_nap(sp_task_ctx *c, void *u)
{
    (void)u;
    usleep(50000);
    set_u64(c, 1, 8);
    return SP_OK;
}

/* A task whose inputs the read-ahead could not pin goes back to the queue; the one
 * worker went idle while it was being staged, and must be woken for it: the fetch
 * and the close return (they hung). */
static void test_task_put_back_by_read_ahead_still_runs(void **state)
{
    (void)state;
    for (int close_mode = 0; close_mode < 2; close_mode++) {
        char *dir = t_tmpdir();
        t_store store;
        t_store_init(&store, dir);
        sp_pool *p = t_pool_on(&store, 1 << 20, 64 << 20, SP_POLICY_LRU);
        sp_dag *d;
        t_ok(sp_dag_open(&d, p, &(sp_dag_options){1, 1})); /* one worker, read-ahead of one task */
        sp_ref r1 = t_put(p, 300000, 1), r2 = t_put(p, 500000, 2), x = t_put(p, 400000, 3); /* r1 to disk */
        const void *xo;
        t_ok(sp_pin_read(p, x, &xo)); /* the caller holds 400 KB a while */
        atomic_store(&store.read_delay_ms, 200);
        sp_task *b, *t;
        t_ok(sp_spawn(d, fn_nap, NULL, 0, NULL, NULL, &b)); /* the worker is busy for 50 ms */
        usleep(5000);
        /* The read-ahead takes t: r1 is read (200 ms), b ends and the worker goes
         * idle; then r2 does not fit, and t goes back to the queue. */
        t_ok(sp_spawn(d, fn_sum, NULL, 2, (sp_arg[]){sp_arg_ref(r1), sp_arg_ref(r2)}, NULL, &t));
        alarm(30); /* a hang ends the test */
        if (!close_mode) {
            usleep(400000);
            t_ok(sp_unpin(p, x));
            atomic_store(&store.read_delay_ms, 0);
            sp_ref res;
            sp_status st = sp_fetch(d, t, &res);
            if (st == SP_OK) t_ok(sp_release(p, res));
            else assert_int_equal(st, SP_ERR_MEMORY_FULL); /* it ran, while the caller still held x */
            sp_task_release(d, t);
            sp_task_release(d, b);
            t_ok(sp_dag_close(d));
        } else {
            usleep(100000); /* r1 is being read */
            sp_task_release(d, t);
            sp_task_release(d, b);
            t_ok(sp_dag_close(d)); /* cancels t, which is back in the queue, and waits */
            t_ok(sp_unpin(p, x));
        }
        alarm(0);
        atomic_store(&store.read_delay_ms, 0);
        t_ok(sp_release(p, r1));
        t_ok(sp_release(p, r2));
        t_ok(sp_release(p, x));
        t_ok(sp_pool_close(p));
        t_store_fini(&store);
        t_rmrf(dir);
        free(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond_matches_direct),
        cmocka_unit_test(test_wide_graph_matches_direct),
        cmocka_unit_test(test_failure_reaches_only_dependents),
        cmocka_unit_test(test_failure_without_message_gets_no_stale_one),
        cmocka_unit_test(test_task_larger_than_bound_fails_clearly),
        cmocka_unit_test(test_memory_aware_tree_under_small_bound),
        cmocka_unit_test(test_ref_arguments_pinned_and_kept),
        cmocka_unit_test(test_result_that_cannot_fit_fails_not_hangs),
        cmocka_unit_test(test_full_disk_fails_tasks_not_the_dag),
        cmocka_unit_test(test_bad_spawns_rejected),
        cmocka_unit_test(test_cancel_graph),
        cmocka_unit_test(test_tasks_spawn_tasks_and_close_frees),
        cmocka_unit_test(test_failure_down_a_long_chain),
        cmocka_unit_test(test_spawn_out_of_memory_keeps_its_inputs),
        cmocka_unit_test(test_many_threads_spawn_and_fetch),
        cmocka_unit_test(test_task_put_back_by_read_ahead_still_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
