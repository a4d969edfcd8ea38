/* `spillpool bench table` and `spillpool bench dag`: the article's demo through the
 * table layer with and without a bound and read-ahead; and the per-task cost of the
 * scheduler. */
#ifndef SP_CLI_BENCH_TABLE_H
#define SP_CLI_BENCH_TABLE_H

#include <stdint.h>
#include "workload.h"

typedef struct sp_bench_table_opts {
    sp_demo_opts demo;
    uint64_t memory_bound; /* 0: 1 GiB, the article's */
    unsigned runs;         /* the median is shown */
    int json;
} sp_bench_table_opts;
int sp_bench_table(const sp_bench_table_opts *o);

typedef struct sp_bench_dag_opts {
    unsigned tasks; /* default 100000 */
    unsigned runs;
    int json;
} sp_bench_dag_opts;
int sp_bench_dag(const sp_bench_dag_opts *o);

#endif
