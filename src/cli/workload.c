/* The demo workload (see workload.h). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "workload.h"

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

/* Partition i: column a (codes 0..3) then column b (codes 0..255), uint32 each. Each
 * partition has its own stream, so the data does not depend on generation order. */
sp_bytes *sp_demo_partition(const sp_demo_opts *o, uint32_t i)
{
    sp_bytes *b = sp_bytes_new(o->rows * 2 * sizeof(uint32_t));
    if (!b) return NULL;
    uint32_t *a = (uint32_t *)(void *)b->data, *c = a + o->rows;
    uint64_t s = o->seed * 0xD1B54A32D192ED03ull + i;
    for (uint64_t r = 0; r < o->rows; r++) {
        uint64_t x = sp_splitmix(&s);
        a[r] = (uint32_t)(x & 3);
        c[r] = (uint32_t)((x >> 32) & 255);
    }
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
        const sp_bytes *b = obj;
        const uint32_t *a = (const uint32_t *)(const void *)b->data;
        for (uint64_t k = 0; k < o->rows; k++) r->counts_a[a[k] & 3]++;
        uint64_t h = XXH3_64bits(b->data, b->len);
        sum = XXH3_64bits_withSeed(&h, sizeof h, sum);
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
