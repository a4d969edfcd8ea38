/* The demo workload (see workload.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "workload.h"

#define SP_DEMO_FORWARD(expr)                                                           \
    do {                                                                                \
        sp_status sp__st = (expr);                                                      \
        if (sp__st != SP_OK) return sp__st;                                             \
    } while (0)

const char *const sp_demo_strings[4] = {"alpha", "beta", "delta", "eta"};

void sp_demo_defaults(sp_demo_opts *o)
{
    o->parts = 200;
    o->rows = 1048576;
    o->seed = 1;
}

static double sp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t sp_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The codes of partition i: a (0..3) and b (0..255). Each partition has its own
 * stream, so the data does not depend on generation order. */
static void sp_demo_fill(const sp_demo_opts *o, uint32_t i, uint32_t *a, uint32_t *c)
{
    uint64_t s = o->seed * 0xD1B54A32D192ED03ull + i;
    for (uint64_t r = 0; r < o->rows; r++) {
        uint64_t x = sp_splitmix(&s);
        a[r] = (uint32_t)(x & 3);
        c[r] = (uint32_t)((x >> 32) & 255);
    }
}

/* Count a's values and fold the partition's codes (a's, then b's) into the checksum:
 * the same for the pool-only and the table form of the demo. */
static void sp_demo_account(sp_demo_result *r, uint64_t *sum, const uint32_t *a, const uint32_t *c, uint64_t rows)
{
    for (uint64_t k = 0; k < rows; k++) r->counts_a[a[k] & 3]++;
    XXH3_state_t hs;
    XXH3_64bits_reset(&hs);
    XXH3_64bits_update(&hs, a, rows * 4);
    XXH3_64bits_update(&hs, c, rows * 4);
    uint64_t h = XXH3_64bits_digest(&hs);
    *sum = XXH3_64bits_withSeed(&h, sizeof h, *sum);
}

/* Partition i: column a then column b, uint32 codes each. */
sp_bytes *sp_demo_partition(const sp_demo_opts *o, uint32_t i)
{
    sp_bytes *b = sp_bytes_new(o->rows * 2 * sizeof(uint32_t));
    if (!b) return NULL;
    uint32_t *a = (uint32_t *)(void *)b->data;
    sp_demo_fill(o, i, a, a + o->rows);
    return b;
}

static void sp_dir_usage(const char *dir, uint64_t *bytes, uint64_t *files)
{
    *bytes = *files = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) != 0) continue;
        *bytes += (uint64_t)st.st_blocks * 512;
        (*files)++;
    }
    closedir(d);
}

static int sp_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sp_median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, sp_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

sp_status sp_demo_run(sp_pool *pool, const sp_demo_opts *o, sp_demo_result *r)
{
    memset(r, 0, sizeof *r);
    sp_ref *refs = calloc(o->parts ? o->parts : 1, sizeof *refs);
    if (!refs) return SP_ERR_NOMEM;
    sp_status st = SP_OK;
    uint32_t made = 0;
    double t0 = sp_now();
    for (; made < o->parts && st == SP_OK; made++) {
        sp_bytes *b = sp_demo_partition(o, made);
        if (!b) {
            st = SP_ERR_NOMEM;
            break;
        }
        st = sp_put(pool, b, &sp_bytes_type, NULL, &refs[made]);
        if (st != SP_OK) {
            sp_bytes_free(b);
            break;
        }
    }
    double t1 = sp_now();
    uint64_t sum = 0;
    for (uint32_t i = 0; i < made && st == SP_OK; i++) {
        const void *obj; /* read only: a partition read back keeps its file, so evicting it again is free */
        st = sp_pin_read(pool, refs[i], &obj);
        if (st != SP_OK) break;
        const uint32_t *a = (const uint32_t *)(const void *)((const sp_bytes *)obj)->data;
        sp_demo_account(r, &sum, a, a + o->rows, o->rows);
        st = sp_unpin(pool, refs[i]);
    }
    double t2 = sp_now();
    r->checksum = sum;
    r->put_seconds = t1 - t0;
    r->read_seconds = t2 - t1;
    r->seconds = t2 - t0;
    sp_dir_usage(sp_pool_session_dir(pool), &r->session_bytes, &r->session_files);
    sp_status ss = sp_pool_stats(pool, &r->stats);
    if (st == SP_OK) st = ss;
    for (uint32_t i = 0; i < made; i++) {
        sp_status rs = sp_release(pool, refs[i]);
        if (st == SP_OK) st = rs;
    }
    free(refs);
    return st;
}

uint64_t sp_peak_rss(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
}

/* Partition i as a table: a (string codes into the article's four strings) and b
 * (a pooled uint8: codes into the values 0..255), the same codes as
 * sp_demo_partition, so the checksum is the same. */
static const sp_col_spec sp_demo_cols[2] = {{"a", SP_COL_STRING, 0}, {"b", SP_COL_UINT8, 1}};

static sp_status sp_demo_gen(uint32_t i, void *user, sp_table **out)
{
    const sp_demo_opts *o = user;
    sp_table *t;
    SP_DEMO_FORWARD(sp_table_new(2, sp_demo_cols, o->rows, &t));
    sp_status st = sp_table_set_dict(t, 0, 4, sp_demo_strings);
    if (st != SP_OK) {
        sp_table_free(t);
        return st;
    }
    for (unsigned v = 0; v < 256; v++) t->cols[1].u8[v] = (uint8_t)v;
    t->cols[1].ndict = 256;
    sp_demo_fill(o, i, t->cols[0].codes, t->cols[1].codes);
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

sp_status sp_demo_table_run(sp_pool *pool, const sp_demo_opts *o, unsigned readahead, sp_demo_result *r)
{
    memset(r, 0, sizeof *r);
    sp_dag_options dopt = {0, readahead};
    sp_dag *dag;
    SP_DEMO_FORWARD(sp_dag_open(&dag, pool, &dopt));
    double t0 = sp_now();
    sp_dtable *t = NULL;
    sp_table *groups = NULL;
    sp_status st = sp_dtable_generate(dag, 2, sp_demo_cols, o->parts, sp_demo_gen, (void *)o, o->rows * 8 + 4096, &t);
    sp_agg count = {SP_AGG_COUNT, NULL};
    if (st == SP_OK) st = sp_dtable_group_by(t, "a", 1, &count, &groups);
    double t1 = sp_now();
    for (uint64_t g = 0; st == SP_OK && g < groups->nrows; g++)
        for (unsigned k = 0; k < 4; k++)
            if (strcmp(sp_table_str(groups, 0, g), sp_demo_strings[k]) == 0) r->groups_a[k] = (uint64_t)groups->cols[1].i64[g];
    sp_table_free(groups);
    /* Fetch: every partition in order, one at a time, read ahead by a helper. */
    sp_dtable_iter *it = NULL;
    uint64_t sum = 0;
    if (st == SP_OK) st = sp_dtable_iter_open(t, readahead == -1u ? 0 : 2, &it);
    for (const sp_table *p = NULL; st == SP_OK;) {
        if ((st = sp_dtable_iter_next(it, &p)) != SP_OK || !p) break;
        sp_demo_account(r, &sum, p->cols[0].codes, p->cols[1].codes, p->nrows);
    }
    sp_dtable_iter_close(it);
    double t2 = sp_now();
    r->checksum = sum;
    r->put_seconds = r->group_seconds = t1 - t0;
    r->read_seconds = t2 - t1;
    r->seconds = t2 - t0;
    sp_dir_usage(sp_pool_session_dir(pool), &r->session_bytes, &r->session_files);
    sp_status ss = sp_pool_stats(pool, &r->stats);
    if (st == SP_OK) st = ss;
    sp_dag_stats_get(dag, &r->dag);
    sp_dtable_free(t);
    sp_dag_close(dag);
    r->peak_rss = sp_peak_rss();
    return st;
}

sp_status sp_demo_on(const sp_config *cfg, unsigned readahead, const sp_demo_opts *o, sp_demo_result *r)
{
    sp_pool *p;
    SP_DEMO_FORWARD(sp_pool_open(&p, cfg));
    sp_status st = readahead == SP_DEMO_POOL_ONLY ? sp_demo_run(p, o, r) : sp_demo_table_run(p, o, readahead, r);
    sp_status cs = sp_pool_close(p);
    return st != SP_OK ? st : cs;
}

int sp_parse_count(const char *prog, const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!v || v[0] == '\0') {
        fprintf(stderr, "%s: %s needs a number\n", prog, opt);
        return -1;
    }
    /* digits only: strtoull would also take spaces, a sign, and wrap a minus around */
    char *end = NULL;
    errno = 0;
    unsigned long long n = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (v[0] < '0' || v[0] > '9' || errno || *end || n < min || n > max) {
        fprintf(stderr, "%s: %s '%s': expected a whole number from %llu to %llu\n", prog, opt, v,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = n;
    return 0;
}
