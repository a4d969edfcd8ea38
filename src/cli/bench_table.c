/* `spillpool bench table`: the demo (generate, group-by, fetch) with no bound, then
 * under the bound with the scheduler's read-ahead, then without it, in one process,
 * runs interleaved so drift on the machine hits each alike. `spillpool bench dag`:
 * empty tasks spawned and run, microseconds per task. */
#include <stdio.h>
#include <time.h>

#include "bench_table.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    const char *name;
    uint64_t bound;
    unsigned readahead;
    double seconds[16], gen[16], fetch[16];
    sp_demo_result last;
} sp_trow;

static sp_status run_one(const sp_config *base, sp_trow *row, const sp_demo_opts *o, unsigned k)
{
    sp_config c = *base;
    c.memory_bound = row->bound;
    if (c.spill_ahead >= c.memory_bound) c.spill_ahead = c.memory_bound / 16;
    sp_status st = sp_demo_on(&c, row->readahead, o, &row->last);
    row->seconds[k] = row->last.seconds;
    row->gen[k] = row->last.group_seconds;
    row->fetch[k] = row->last.read_seconds;
    return st;
}

int sp_bench_table(const sp_bench_table_opts *bo)
{
    sp_config base;
    sp_status st = sp_config_from_env(&base);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench table: configuration: %s: %s\n", sp_strerror(st), sp_last_error());
        return 1;
    }
    uint64_t data = (uint64_t)bo->demo.parts * bo->demo.rows * 8;
    uint64_t bound = bo->memory_bound ? bo->memory_bound : 1ull << 30;
    base.disk_bound = data * 2 + (1ull << 30);
    unsigned runs = bo->runs ? (bo->runs > 16 ? 16 : bo->runs) : 1;
    sp_trow rows[3] = {{"no bound", data * 2 + (1ull << 30), 0, {0}, {0}, {0}, {0}},
                       {"bound, read-ahead", bound, 0, {0}, {0}, {0}, {0}},
                       {"bound, no read-ahead", bound, -1u, {0}, {0}, {0}, {0}}};
    char b1[32], b2[32];
    if (!bo->json)
        fprintf(stderr, "bench table: %u partitions x %llu rows (%s), bound %s, %u run(s) each\n", bo->demo.parts,
                (unsigned long long)bo->demo.rows, sp_format_size(data, b1, sizeof b1),
                sp_format_size(bound, b2, sizeof b2), runs);
    for (unsigned k = 0; k < runs; k++)
        for (unsigned r = 0; r < 3; r++)
            if ((st = run_one(&base, &rows[r], &bo->demo, k)) != SP_OK) {
                fprintf(stderr, "spillpool bench table: %s: %s: %s\n", rows[r].name, sp_strerror(st), sp_last_error());
                return 1;
            }
    double med[3];
    for (unsigned r = 0; r < 3; r++) med[r] = sp_median(rows[r].seconds, runs);
    int same = rows[1].last.checksum == rows[0].last.checksum && rows[2].last.checksum == rows[0].last.checksum;
    if (bo->json) {
        printf("[");
        for (unsigned r = 0; r < 3; r++)
            printf("%s{\"config\":\"%s\",\"memory_bound\":%llu,\"seconds\":%.6f,\"generate_group_seconds\":%.6f,"
                   "\"fetch_seconds\":%.6f,\"vs_unbounded\":%.4f,\"bytes_spilled\":%llu,\"bytes_restored\":%llu,"
                   "\"staged_ahead\":%llu,\"checksum\":\"%016llx\"}",
                   r ? "," : "", rows[r].name, (unsigned long long)rows[r].bound, med[r], sp_median(rows[r].gen, runs),
                   sp_median(rows[r].fetch, runs), med[r] / med[0], (unsigned long long)rows[r].last.stats.bytes_spilled,
                   (unsigned long long)rows[r].last.stats.bytes_restored, (unsigned long long)rows[r].last.dag.staged_ahead,
                   (unsigned long long)rows[r].last.checksum);
        printf("]\n");
    } else {
        printf("%-22s %10s %14s %10s %10s %12s %12s\n", "config", "seconds", "gen+group-by", "fetch", "vs none",
               "spilled", "restored");
        for (unsigned r = 0; r < 3; r++)
            printf("%-22s %10.3f %14.3f %10.3f %9.2fx %12s %12s\n", rows[r].name, med[r], sp_median(rows[r].gen, runs),
                   sp_median(rows[r].fetch, runs), med[r] / med[0],
                   sp_format_size(rows[r].last.stats.bytes_spilled, b1, sizeof b1),
                   sp_format_size(rows[r].last.stats.bytes_restored, b2, sizeof b2));
        printf("checksums %s\n", same ? "agree" : "DIFFER");
    }
    return same ? 0 : 1;
}

static sp_status sp_empty_task(sp_task_ctx *ctx, void *user)
{
    (void)ctx;
    (void)user;
    return SP_OK;
}

int sp_bench_dag(const sp_bench_dag_opts *bo)
{
    unsigned n = bo->tasks ? bo->tasks : 100000, runs = bo->runs ? (bo->runs > 16 ? 16 : bo->runs) : 1;
    sp_pool *pool;
    sp_status st = sp_pool_open(&pool, NULL);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench dag: opening the pool: %s: %s\n", sp_strerror(st), sp_last_error());
        return 1;
    }
    double us[16], chain_us[16];
    sp_dag_stats ds = {0};
    for (unsigned k = 0; k < runs && st == SP_OK; k++) {
        sp_dag *dag;
        if ((st = sp_dag_open(&dag, pool, NULL)) != SP_OK) break;
        /* Independent tasks: spawn them all, wait for the last. */
        double t0 = now();
        for (unsigned i = 0; i < n && st == SP_OK; i++) st = sp_spawn(dag, sp_empty_task, NULL, 0, NULL, NULL, NULL);
        sp_dag_wait(dag);
        double t1 = now();
        /* A chain: each task depends on the one before (no two run at once). */
        sp_task *prev = NULL;
        for (unsigned i = 0; i < n / 10 && st == SP_OK; i++) {
            sp_task *t;
            sp_arg a = sp_arg_task(prev);
            st = sp_spawn(dag, sp_empty_task, NULL, prev ? 1 : 0, &a, NULL, &t);
            if (prev) sp_task_release(dag, prev);
            prev = st == SP_OK ? t : NULL;
        }
        if (prev) {
            if (st == SP_OK) st = sp_fetch(dag, prev, NULL);
            sp_task_release(dag, prev);
        }
        double t2 = now();
        us[k] = (t1 - t0) * 1e6 / n;
        chain_us[k] = (t2 - t1) * 1e6 / (n / 10 ? n / 10 : 1);
        sp_dag_stats_get(dag, &ds);
        sp_dag_close(dag);
    }
    sp_pool_close(pool);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench dag: %s: %s\n", sp_strerror(st), sp_last_error());
        return 1;
    }
    double m = sp_median(us, runs), mc = sp_median(chain_us, runs);
    if (bo->json)
        printf("{\"tasks\":%u,\"workers\":%u,\"us_per_task\":%.4f,\"chain_tasks\":%u,\"us_per_chain_task\":%.4f}\n", n,
               ds.workers, m, n / 10, mc);
    else
        printf("%u empty tasks on %u workers: %.3f us per task (median of %u); a chain of %u: %.3f us per task\n", n,
               ds.workers, m, runs, n / 10, mc);
    return 0;
}
