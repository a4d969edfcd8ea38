/* `spillpool bench filters`: the demo workload once per filter chain. */
#ifndef SP_CLI_BENCH_FILTERS_H
#define SP_CLI_BENCH_FILTERS_H

#include <stdint.h>
#include "workload.h"

typedef struct sp_bench_filters_opts {
    sp_demo_opts demo;
    uint64_t memory_bound; /* 0: an eighth of the data, at least two partitions */
    unsigned runs;         /* per chain; the median time is shown */
    const char **chains;   /* NULL: plain, zstd, lz4, gzip, encrypt, zstd+encrypt, lz4+encrypt */
    unsigned nchains;
    /* Which page-cache regimes to run, SP_CACHE_KEEP and/or SP_CACHE_DROP as bits
     * (1 << mode); 0: both. */
    unsigned caches;
    int json;
} sp_bench_filters_opts;

/* Prints the table (or JSON array); returns the process exit status. */
int sp_bench_filters(const sp_bench_filters_opts *o);

#endif
