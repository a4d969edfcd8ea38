/* W1 (DESIGN.md): the demo workload under a 1 GiB memory bound against the same
 * program with no bound, in one process, alternating runs; prints both and the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

/* One run; the pool's counters are the ones taken after the read phase. */
static int run(const sp_config *base, uint64_t bound, uint64_t ahead, const sp_demo_opts *o, sp_demo_result *r,
               sp_stats *s)
{
    sp_config c = *base;
    c.memory_bound = bound;
    c.spill_ahead = ahead;
    sp_status st = sp_demo_on(&c, SP_DEMO_POOL_ONLY, o, r);
    if (st != SP_OK) {
        fprintf(stderr, "bench_w1: %s: %s\n", sp_strerror(st), sp_last_error());
        return -1;
    }
    *s = r->stats;
    return 0;
}

int main(int argc, char **argv)
{
    sp_demo_opts o;
    sp_demo_defaults(&o);
    uint64_t bound = 1ull << 30;
    int runs = 3, json = 0;
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (strcmp(argv[i], "--parts") == 0 && i + 1 < argc) {
            if (sp_parse_count("bench_w1", "--parts", argv[++i], 1, 1u << 24, &v)) return 2;
            o.parts = (uint32_t)v;
        } else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc) {
            if (sp_parse_count("bench_w1", "--rows", argv[++i], 1, 1ull << 32, &v)) return 2;
            o.rows = v;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            if (sp_parse_count("bench_w1", "--runs", argv[++i], 1, 50, &v)) return 2;
            runs = (int)v;
        } else if (strcmp(argv[i], "--bound") == 0 && i + 1 < argc) {
            if (sp_parse_size(argv[++i], &bound) != SP_OK || bound == 0) {
                fprintf(stderr, "bench_w1: --bound: %s\n", sp_last_error());
                return 2;
            }
        } else if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "usage: bench_w1 [--parts N] [--rows R] [--bound SIZE] [--runs K] [--json]\n");
            return 2;
        }
    }
    sp_config base;
    if (sp_config_from_env(&base) != SP_OK) {
        fprintf(stderr, "bench_w1: %s\n", sp_last_error());
        return 2;
    }
    uint64_t ahead = bound / 16 < (64u << 20) ? bound / 16 : (64u << 20);
    if (getenv("SPILLPOOL_SPILL_AHEAD")) ahead = base.spill_ahead;
    double tu[50], tb[50];
    sp_demo_result ru, rb;
    sp_stats su = {0}, sb = {0};
    for (int k = 0; k < runs; k++) {
        /* Alternate the order so that neither run always finds a warm machine. */
        int first_bounded = k % 2;
        for (int j = 0; j < 2; j++) {
            int bounded = (j == 0) == first_bounded;
            if (bounded ? run(&base, bound, ahead, &o, &rb, &sb) : run(&base, UINT64_MAX / 2, 0, &o, &ru, &su))
                return 1;
            (bounded ? tb : tu)[k] = bounded ? rb.seconds : ru.seconds;
        }
        if (ru.checksum != rb.checksum) {
            fprintf(stderr, "bench_w1: checksums differ: %016llx vs %016llx\n", (unsigned long long)ru.checksum,
                    (unsigned long long)rb.checksum);
            return 1;
        }
    }
    double mu = sp_median(tu, (unsigned)runs), mb = sp_median(tb, (unsigned)runs);
    char b1[32], b2[32];
    if (json) {
        printf("{\"parts\":%u,\"rows\":%llu,\"bound\":%llu,\"runs\":%d,\"unbounded_s\":%.4f,\"bounded_s\":%.4f,"
               "\"ratio\":%.3f,\"evictions\":%llu,\"misses\":%llu,\"spill_mb_s\":%.1f,\"restore_mb_s\":%.1f}\n",
               o.parts, (unsigned long long)o.rows, (unsigned long long)bound, runs, mu, mb, mb / mu,
               (unsigned long long)sb.evictions, (unsigned long long)sb.misses, sb.spill_mb_s, sb.restore_mb_s);
    } else {
        printf("W1: %u partitions x %s, memory bound %s, median of %d runs\n", o.parts,
               sp_format_size(o.rows * 8, b1, sizeof b1), sp_format_size(bound, b2, sizeof b2), runs);
        printf("  unbounded  %.3f s\n", mu);
        printf("  bounded    %.3f s  (%llu evictions, %llu restores, spill %.0f MB/s, restore %.0f MB/s)\n", mb,
               (unsigned long long)sb.evictions, (unsigned long long)sb.misses, sb.spill_mb_s, sb.restore_mb_s);
        printf("  ratio      %.2fx  (target <= 1.5x; peers: mmap 2.0x, OS swap 12.6x)\n", mb / mu);
    }
    return 0;
}
