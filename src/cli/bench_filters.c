/* `spillpool bench filters`: the article's missing cost table. The demo workload
 * under a memory bound that sends most partitions to disk, once per filter chain,
 * in one process, each row compared with the plain run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_filters.h"
#include "workload.h"

typedef struct {
    const char *chain;
    double seconds[16];
    sp_demo_result last;
} row;

static sp_status run_one(const sp_config *base, const char *chain, const unsigned char *key,
                         const sp_demo_opts *o, sp_demo_result *r)
{
    sp_config c = *base;
    c.filters = chain;
    c.key = key;
    return sp_demo_on(&c, SP_DEMO_POOL_ONLY, o, r);
}

int sp_bench_filters(const sp_bench_filters_opts *bo)
{
    static const char *defaults[] = {"", "zstd", "lz4", "gzip", "encrypt", "zstd,encrypt", "lz4,encrypt"};
    const char **chains = bo->nchains ? bo->chains : defaults;
    unsigned n = bo->nchains ? bo->nchains : (unsigned)(sizeof defaults / sizeof defaults[0]);
    unsigned runs = bo->runs ? bo->runs : 1;
    if (runs > 16) runs = 16;
    sp_config base;
    sp_status st = sp_config_from_env(&base);
    if (st != SP_OK) {
        fprintf(stderr, "spillpool bench filters: configuration: %s: %s\n", sp_strerror(st), sp_last_error());
        return 1;
    }
    uint64_t data = (uint64_t)bo->demo.parts * bo->demo.rows * 8;
    /* Seven eighths go to disk, but room for two partitions at least, or none fits. */
    uint64_t part = bo->demo.rows * 8;
    base.memory_bound = bo->memory_bound ? bo->memory_bound : (data / 8 > 2 * part ? data / 8 : 2 * part);
    if (base.spill_ahead >= base.memory_bound) base.spill_ahead = base.memory_bound / 16;
    base.disk_bound = data * 2;
    unsigned char key[32];
    for (unsigned i = 0; i < sizeof key; i++) key[i] = (unsigned char)(i * 37 + 11); /* a bench-only key */
    row *rows = calloc(n, sizeof *rows);
    if (!rows) return 1;
    char b1[32], b2[32];
    if (!bo->json)
        fprintf(stderr, "bench filters: %u partitions x %llu rows (%s), memory bound %s, %u run(s) each\n",
                bo->demo.parts, (unsigned long long)bo->demo.rows, sp_format_size(data, b1, sizeof b1),
                sp_format_size(base.memory_bound, b2, sizeof b2), runs);
    /* Runs interleave the chains, so drift on the machine hits every row alike. */
    uint64_t checksum = 0;
    for (unsigned k = 0; k < runs; k++)
        for (unsigned i = 0; i < n; i++) {
            rows[i].chain = chains[i];
            st = run_one(&base, chains[i], key, &bo->demo, &rows[i].last);
            if (st != SP_OK) {
                fprintf(stderr, "spillpool bench filters: chain \"%s\": %s: %s\n", chains[i], sp_strerror(st),
                        sp_last_error());
                free(rows);
                return 1;
            }
            if (k == 0 && i == 0) checksum = rows[i].last.checksum;
            if (rows[i].last.checksum != checksum) {
                fprintf(stderr, "spillpool bench filters: chain \"%s\" gave checksum %016llx, plain %016llx\n",
                        chains[i], (unsigned long long)rows[i].last.checksum, (unsigned long long)checksum);
                free(rows);
                return 1;
            }
            rows[i].seconds[k] = rows[i].last.seconds;
        }
    double base_s = sp_median(rows[0].seconds, runs);
    double base_disk = (double)rows[0].last.stats.disk_used;
    if (bo->json) putchar('[');
    else
        printf("%-16s %12s %8s %10s %12s %10s %9s\n", "chain", "disk bytes", "vs plain", "spill MB/s",
               "restore MB/s", "seconds", "vs plain");
    for (unsigned i = 0; i < n; i++) {
        const sp_stats *s = &rows[i].last.stats;
        double sec = sp_median(rows[i].seconds, runs);
        double dratio = base_disk > 0 ? (double)s->disk_used / base_disk : 0;
        const char *name = rows[i].chain[0] ? rows[i].chain : "plain";
        if (bo->json) {
            printf("%s{\"chain\":\"%s\",\"disk_bytes\":%llu,\"disk_vs_plain\":%.4f,\"bytes_written\":%llu,"
                   "\"spill_mb_s\":%.1f,\"restore_mb_s\":%.1f,\"seconds\":%.4f,\"seconds_vs_plain\":%.4f,"
                   "\"checksum\":\"%016llx\"}",
                   i ? "," : "", name, (unsigned long long)s->disk_used, dratio,
                   (unsigned long long)s->bytes_after_filters, s->spill_mb_s, s->restore_mb_s, sec,
                   sec / base_s, (unsigned long long)rows[i].last.checksum);
        } else {
            printf("%-16s %12llu %7.1f%% %10.0f %12.0f %10.3f %8.2fx\n", name, (unsigned long long)s->disk_used,
                   100 * dratio, s->spill_mb_s, s->restore_mb_s, sec, sec / base_s);
        }
    }
    if (bo->json) puts("]");
    free(rows);
    return 0;
}
