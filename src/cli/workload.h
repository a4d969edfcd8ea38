/* The seed article's first example on the pool alone: N partitions of two
 * dictionary-coded columns, put one at a time, then pinned in turn and checksummed.
 * Shared by the `spillpool demo` command and the W1 benchmark. */
#ifndef SP_CLI_WORKLOAD_H
#define SP_CLI_WORKLOAD_H

#include <stdint.h>
#include "spillpool/spillpool.h"

typedef struct sp_demo_opts {
    uint32_t parts;  /* default 200 */
    uint64_t rows;   /* per partition, default 1048576 */
    uint64_t seed;   /* default 1 */
} sp_demo_opts;

typedef struct sp_demo_result {
    uint64_t checksum;          /* a function of (parts, rows, seed) only */
    uint64_t counts_a[4];       /* rows per value of column a */
    double seconds, put_seconds, read_seconds;
    uint64_t session_bytes;     /* what `du` would say of the session directory */
    uint64_t session_files;
    sp_stats stats;             /* the pool after the read phase, before release */
    /* The table form (sp_demo_table_run) only: */
    uint64_t groups_a[4];       /* the group-by count over a, per value */
    double group_seconds;       /* generate + group-by (put_seconds is the same) */
    sp_dag_stats dag;
    uint64_t peak_rss;          /* the process's peak resident bytes so far */
} sp_demo_result;

/* Column a's dictionary (the article's strings). */
extern const char *const sp_demo_strings[4];

void sp_demo_defaults(sp_demo_opts *o);
/* Partition i of the workload (a function of the options' rows and seed and of i
 * only), or NULL when out of memory. */
sp_bytes *sp_demo_partition(const sp_demo_opts *o, uint32_t i);
/* The median of n timings (sorts v), shared by the benchmarks. */
double sp_median(double *v, unsigned n);
/* A command-line number: digits only (no sign, no spaces), from min to max. 0, or -1
 * after a message on stderr naming prog, the option and the range. */
int sp_parse_count(const char *prog, const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out);
/* Run the workload on pool; stats and disk use are taken after the read phase,
 * then every partition is released. */
sp_status sp_demo_run(sp_pool *pool, const sp_demo_opts *o, sp_demo_result *r);
/* The same data through the table layer, as the article runs it: a table generated
 * in `parts` partitions by tasks on a dag (readahead as in sp_dag_options), a
 * group-by count over a, then every partition fetched in order (iterated, with
 * read-ahead unless readahead is -1u) and checksummed. The checksum and counts_a
 * equal sp_demo_run's. */
sp_status sp_demo_table_run(sp_pool *pool, const sp_demo_opts *o, unsigned readahead, sp_demo_result *r);
/* Open a pool on cfg, run the demo on it (pool only when readahead is
 * SP_DEMO_POOL_ONLY, else the table form with that read-ahead), close the pool:
 * the first error. The benchmarks' one way to run the demo. */
#define SP_DEMO_POOL_ONLY 0xfffffffeu
sp_status sp_demo_on(const sp_config *cfg, unsigned readahead, const sp_demo_opts *o, sp_demo_result *r);
/* Peak resident set of this process, in bytes. */
uint64_t sp_peak_rss(void);

#endif
