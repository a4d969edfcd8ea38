/* `spillpool bench lazy`: registering many files, and opening only those used. */
#ifndef SP_CLI_BENCH_LAZY_H
#define SP_CLI_BENCH_LAZY_H

#include "spillpool/spillpool.h"

typedef struct sp_bench_lazy_opts {
    unsigned files; /* default 87600: ten years of hourly files */
    unsigned runs;  /* registration runs; the median is shown */
    int json;
} sp_bench_lazy_opts;

/* Prints the figures; returns the process exit status (1 if the pins opened more or
 * fewer files than they pinned). */
int sp_bench_lazy(const sp_bench_lazy_opts *o);

#endif
