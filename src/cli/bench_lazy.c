/* `spillpool bench lazy`: the article's second half. N hourly CSV files (default
 * 87,600: ten years) are written to a temporary directory, registered with the pool
 * (no I/O per file), and then one day of them (24 files) is pinned: the pool must
 * open exactly those 24. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/clock.h"
#include "bench_lazy.h"
#include "workload.h"

/* One hour of readings: a header and a row a minute. */
static int write_hour(const char *path, unsigned hour)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "minute,station,temperature,wind\n");
    for (unsigned m = 0; m < 60; m++)
        fprintf(f, "%u,\"st-%02u\",%.1f,%u\n", m, hour % 7, 10.0 + (double)((hour * 60 + m) % 200) / 10.0,
                (hour + m) % 40);
    return fclose(f);
}

static void remove_all(const char *dir, char **paths, unsigned n)
{
    for (unsigned i = 0; i < n; i++) unlink(paths[i]);
    rmdir(dir);
}

int sp_bench_lazy(const sp_bench_lazy_opts *o)
{
    unsigned n = o->files, runs = o->runs ? o->runs : 5;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/spillpool-lazy-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "spillpool bench lazy: mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char **paths = calloc(n, sizeof *paths);
    char *names = malloc((size_t)n * (strlen(dir) + 16));
    double *single = calloc(runs, sizeof *single), *batch = calloc(runs, sizeof *batch);
    sp_ref *refs = calloc(n, sizeof *refs);
    int rc = 1;
    if (!paths || !names || !single || !batch || !refs) goto out;
    size_t stride = strlen(dir) + 16;
    double t0 = (double)sp__now_ns();
    for (unsigned i = 0; i < n; i++) {
        paths[i] = names + (size_t)i * stride;
        snprintf(paths[i], stride, "%s/%05u.csv", dir, i);
        if (write_hour(paths[i], i) != 0) {
            fprintf(stderr, "spillpool bench lazy: writing %s: %s\n", paths[i], strerror(errno));
            remove_all(dir, paths, i + 1);
            goto out;
        }
    }
    double made_s = ((double)sp__now_ns() - t0) / 1e9;
    sp_config cfg;
    sp_status st = sp_config_from_env(&cfg);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench lazy: configuration: %s: %s\n", sp_strerror(st), sp_last_error());
        remove_all(dir, paths, n);
        goto out;
    }
    for (unsigned r = 0; r < runs && st == SP_OK; r++) {
        for (int mode = 0; mode < 2 && st == SP_OK; mode++) {
            sp_pool *p;
            if ((st = sp_pool_open(&p, &cfg)) != SP_OK) break;
            uint64_t a = sp__now_ns();
            if (mode == 0)
                for (unsigned i = 0; i < n && st == SP_OK; i++)
                    st = sp_put_lazy(p, paths[i], &sp_csv_type, NULL, &refs[i]);
            else st = sp_put_lazy_many(p, n, (const char *const *)paths, &sp_csv_type, NULL, refs);
            uint64_t b = sp__now_ns();
            (mode == 0 ? single : batch)[r] = (double)(b - a) / n;
            sp_status cs = sp_pool_close(p); /* releases every registration */
            if (st == SP_OK) st = cs;
        }
    }
    /* One day: files 24*d .. 24*d+23 of a day in the middle. */
    uint64_t opened = 0, rows = 0;
    unsigned day = n >= 48 ? (n / 24) / 2 : 0, first = day * 24, count = n < 24 ? n : 24;
    if (st == SP_OK) {
        sp_pool *p;
        if ((st = sp_pool_open(&p, &cfg)) == SP_OK) {
            st = sp_put_lazy_many(p, n, (const char *const *)paths, &sp_csv_type, NULL, refs);
            for (unsigned i = first; i < first + count && st == SP_OK; i++) {
                const void *obj;
                if ((st = sp_pin_read(p, refs[i], &obj)) != SP_OK) break;
                rows += ((const sp_table *)obj)->nrows; /* parsed: a header and 60 rows each */
                st = sp_unpin(p, refs[i]);
            }
            sp_stats s;
            if (sp_pool_stats(p, &s) == SP_OK) opened = s.lazy_loads;
            sp_status cs = sp_pool_close(p);
            if (st == SP_OK) st = cs;
        }
    }
    remove_all(dir, paths, n);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench lazy: %s: %s\n", sp_strerror(st), sp_last_error());
        goto out;
    }
    double cold = single[0]; /* the first run: its slabs were fresh pages */
    double ms = sp_median(single, runs), mb = sp_median(batch, runs);
    if (o->json)
        printf("{\"files\":%u,\"ns_per_file\":%.1f,\"ns_per_file_batch\":%.1f,\"ns_per_file_first_run\":%.1f,"
               "\"files_opened\":%llu,\"files_pinned\":%u,\"runs\":%u}\n",
               n, ms, mb, cold, (unsigned long long)opened, count, runs);
    else
        printf("bench lazy: %u CSV files (written in %.1f s), median of %u runs\n"
               "  register one at a time   %8.1f ns per file (%.2f ms in all; first run %.1f ns)\n"
               "  register in one call     %8.1f ns per file (%.2f ms in all)\n"
               "  pinned one day (%u files, parsed by the CSV loader): %llu files opened\n",
               n, made_s, runs, ms, ms * n / 1e6, cold, mb, mb * n / 1e6, count, (unsigned long long)opened);
    rc = opened == count && rows == 60ull * count ? 0 : 1;
    if (rc)
        fprintf(stderr, "spillpool bench lazy: %llu files opened and %llu rows parsed for %u pins\n",
                (unsigned long long)opened, (unsigned long long)rows, count);
out:
    free(paths);
    free(names);
    free(single);
    free(batch);
    free(refs);
    return rc;
}
