/* `spillpool bench filters`: the article's missing cost table. The demo workload
 * under a memory bound that sends most partitions to disk, once per filter chain,
 * in one process, each row compared with the plain run. Twice: with the spill files
 * left in the kernel's page cache (on a machine with spare memory their I/O is a
 * memory copy), and dropped from it (their I/O reaches the disk, as it must once the
 * data outgrows the machine's memory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_filters.h"
#include "workload.h"

typedef struct {
    const char *chain;
    sp_page_cache cache;
    double seconds[16];
    sp_demo_result last;
} row;

static sp_status run_one(const sp_config *base, const row *w, const unsigned char *key, const sp_demo_opts *o,
                         sp_demo_result *r)
{
    sp_config c = *base;
    c.filters = w->chain;
    c.key = key;
    c.page_cache = w->cache;
    return sp_demo_on(&c, 0, o, r); /* the demo as `spillpool demo` runs it: tables, read-ahead */
}

int sp_bench_filters(const sp_bench_filters_opts *bo)
{
    /* the noshuffle rows show what the byte shuffle (filter.h) is worth */
    static const char *defaults[] = {"",           "zstd",        "lz4",         "gzip",
                                     "encrypt",    "zstd,encrypt", "lz4,encrypt", "zstd:1:noshuffle",
                                     "lz4:noshuffle"};
    const char **chains = bo->nchains ? bo->chains : defaults;
    unsigned n = bo->nchains ? bo->nchains : (unsigned)(sizeof defaults / sizeof defaults[0]);
    /* Every row is compared with plain: it runs first, asked for or not. */
    const char *ordered[33] = {""};
    unsigned nord = 1;
    for (unsigned i = 0; i < n && nord < 33; i++)
        if (chains[i][0] != '\0') ordered[nord++] = chains[i];
    chains = ordered;
    n = nord;
    unsigned runs = bo->runs ? bo->runs : 1;
    if (runs > 16) runs = 16;
    sp_config base;
    sp_status st = sp_config_from_env(&base);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench filters: configuration: %s: %s\n", sp_strerror(st), sp_last_error());
        return 1;
    }
    uint64_t data = (uint64_t)bo->demo.parts * bo->demo.rows * 8;
    /* Seven eighths go to disk, but leave room for the partitions pinned at once: one
     * per worker (a core each), the one being fetched and the one read ahead, each a
     * little over its rows as a table. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t floor = (uint64_t)(cores > 0 ? cores + 2 : 3) * (bo->demo.rows * 8 + 65536);
    base.memory_bound = bo->memory_bound ? bo->memory_bound : (data / 8 > floor ? data / 8 : floor);
    if (base.spill_ahead >= base.memory_bound) base.spill_ahead = base.memory_bound / 16;
    base.disk_bound = data * 2;
    unsigned char key[32];
    for (unsigned i = 0; i < sizeof key; i++) key[i] = (unsigned char)(i * 37 + 11); /* a bench-only key */
    sp_page_cache modes[2];
    unsigned nm = 0;
    for (unsigned m = SP_CACHE_KEEP; m <= SP_CACHE_DROP; m++)
        if (!bo->caches || (bo->caches & (1u << m))) modes[nm++] = (sp_page_cache)m;
    row *rows = calloc((size_t)n * nm, sizeof *rows); /* regime-major: rows[m * n + i] */
    if (!rows) return 1;
    for (unsigned m = 0; m < nm; m++)
        for (unsigned i = 0; i < n; i++) {
            rows[m * n + i].chain = chains[i];
            rows[m * n + i].cache = modes[m];
        }
    char b1[32], b2[32];
    if (!bo->json)
        fprintf(stderr, "bench filters: %u partitions x %llu rows (%s), memory bound %s, %u run(s) each\n",
                bo->demo.parts, (unsigned long long)bo->demo.rows, sp_format_size(data, b1, sizeof b1),
                sp_format_size(base.memory_bound, b2, sizeof b2), runs);
    /* Runs interleave the chains, so drift on the machine hits every row alike. */
    uint64_t checksum = 0;
    for (unsigned k = 0; k < runs; k++)
        for (unsigned j = 0; j < n * nm; j++) {
            row *w = &rows[j];
            st = run_one(&base, w, key, &bo->demo, &w->last);
            if (st == SP_OK && j == 0 && k == 0) checksum = w->last.checksum;
            if (st == SP_OK && w->last.checksum != checksum) {
                fprintf(stderr, "spillpool bench filters: chain \"%s\" gave checksum %016llx, the first %016llx\n",
                        w->chain, (unsigned long long)w->last.checksum, (unsigned long long)checksum);
                free(rows);
                return 1;
            }
            if (st != SP_OK) {
                fprintf(stderr, "spillpool bench filters: chain \"%s\", page cache %s: %s: %s\n", w->chain,
                        sp_page_cache_name(w->cache), sp_strerror(st), sp_last_error());
                free(rows);
                return 1;
            }
            w->seconds[k] = w->last.seconds;
        }
    if (bo->json) putchar('[');
    for (unsigned m = 0; m < nm; m++) {
        row *r = rows + (size_t)m * n;
        double base_s = sp_median(r[0].seconds, runs);
        double base_disk = (double)r[0].last.stats.disk_used;
        if (!bo->json)
            printf("%spage cache: %s\n%-16s %12s %8s %10s %12s %10s %9s\n", m ? "\n" : "",
                   modes[m] == SP_CACHE_DROP ? "drop (spill files written through to the disk and read from it)"
                                             : "keep (spill files stay in the kernel's cache)",
                   "chain", "disk bytes", "vs plain", "spill MB/s", "restore MB/s", "seconds", "vs plain");
        for (unsigned i = 0; i < n; i++) {
            const sp_stats *s = &r[i].last.stats;
            double sec = sp_median(r[i].seconds, runs);
            double dratio = base_disk > 0 ? (double)s->disk_used / base_disk : 0;
            const char *name = r[i].chain[0] ? r[i].chain : "plain";
            if (bo->json) {
                printf("%s{\"chain\":\"%s\",\"page_cache\":\"%s\",\"disk_bytes\":%llu,\"disk_vs_plain\":%.4f,"
                       "\"bytes_written\":%llu,\"spill_mb_s\":%.1f,\"restore_mb_s\":%.1f,\"seconds\":%.4f,"
                       "\"seconds_vs_plain\":%.4f,\"checksum\":\"%016llx\"}",
                       m || i ? "," : "", name, sp_page_cache_name(modes[m]), (unsigned long long)s->disk_used,
                       dratio, (unsigned long long)s->bytes_after_filters, s->spill_mb_s, s->restore_mb_s, sec,
                       sec / base_s, (unsigned long long)r[i].last.checksum);
            } else {
                printf("%-16s %12llu %7.1f%% %10.0f %12.0f %10.3f %8.2fx\n", name,
                       (unsigned long long)s->disk_used, 100 * dratio, s->spill_mb_s, s->restore_mb_s, sec,
                       sec / base_s);
            }
        }
    }
    if (bo->json) puts("]");
    free(rows);
    return 0;
}
