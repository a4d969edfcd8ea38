/* `spillpool bench csv`: the CSV parser against `wc -l` and libcsv. */
#ifndef SP_CLI_BENCH_CSV_H
#define SP_CLI_BENCH_CSV_H

#include "spillpool/spillpool.h"

typedef struct sp_bench_csv_opts {
    unsigned mb;   /* file size, default 256 */
    unsigned runs; /* default 5 */
    int json;
} sp_bench_csv_opts;

int sp_bench_csv(const sp_bench_csv_opts *o);

#endif
