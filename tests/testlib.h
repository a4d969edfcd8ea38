/* Helpers shared by the tests: temporary directories, small pools, byte patterns,
 * and a store that wraps the directory store to count calls and inject faults. */
#ifndef SP_TESTLIB_H
#define SP_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "spillpool/spillpool.h"

/* A fresh directory under $TMPDIR (or /tmp); free() the result. */
char *t_tmpdir(void);
void t_rmrf(const char *dir);
/* Regular files directly in dir (not recursing). */
int t_count_files(const char *dir);
/* Sum of the sizes of regular files directly in dir. */
uint64_t t_dir_bytes(const char *dir);

/* A whole file (malloc'd, one spare byte after it), and its length. */
unsigned char *t_slurp(const char *path, size_t *len);
/* Replace a file's contents with len bytes of buf. */
void t_spew(const char *path, const unsigned char *buf, size_t len);

/* The configuration the test pools use: dir (NULL with a custom store), the bounds,
 * the policy, and exact on-demand eviction (no write-back thread). No cmocka inside,
 * so a forked child may call it. */
void t_config(sp_config *c, const char *dir, uint64_t mem, uint64_t disk, sp_policy policy);
/* A pool on dir with exact on-demand eviction (no write-back thread). */
sp_pool *t_pool(const char *dir, uint64_t mem, uint64_t disk, sp_policy policy);

/* Bytes b[i] = (seed + i * 31) & 0xff. */
sp_ref t_put(sp_pool *p, size_t len, unsigned seed);
/* Pin, compare with the pattern, unpin. */
void t_check(sp_pool *p, sp_ref r, size_t len, unsigned seed);
sp_tier t_tier(sp_pool *p, sp_ref r);
/* Pin then unpin: a touch. */
void t_touch(sp_pool *p, sp_ref r);
void t_sleep_ms(int ms);

/* The path of r's file; r must be on disk. */
void t_disk_path(sp_pool *p, sp_ref r, char *out, size_t cap);

/* A fresh directory and a pool on it (or none yet), for cmocka fixtures whose state is
 * a t_fix: setup makes the directory and leaves the pool NULL; teardown closes the
 * pool if open and removes the directory. */
typedef struct t_fix {
    char *dir;
    sp_pool *p;
} t_fix;
int t_fix_setup(void **state);
int t_fix_teardown(void **state);

/* A pool on a fresh directory (on-demand eviction, MRU) with a dag on it. */
typedef struct t_dagfx {
    char *dir;
    sp_pool *p;
    sp_dag *d;
} t_dagfx;
/* workers 0: one per core; readahead as in sp_dag_options. */
t_dagfx *t_dagfx_open(uint64_t mem, unsigned workers, unsigned readahead);
/* Close the dag, check that nothing is pinned or left in the pool, close the pool. */
void t_dagfx_close(t_dagfx *f);

#define t_ok(expr)                                                                            \
    do {                                                                                      \
        sp_status t__st = (expr);                                                             \
        if (t__st != SP_OK)                                                                   \
            fail_msg("%s -> %s: %s", #expr, sp_strerror(t__st), sp_last_error());             \
    } while (0)

#define t_status(expr, want)                                                                  \
    do {                                                                                      \
        sp_status t__st = (expr);                                                             \
        if (t__st != (want))                                                                  \
            fail_msg("%s -> %s (%d), want %s (%d); detail: %s", #expr, sp_strerror(t__st),    \
                     (int)t__st, sp_strerror(want), (int)(want), sp_last_error());            \
    } while (0)

/* ---- a store wrapping the directory store ---- */

typedef struct t_store {
    void *inner;               /* the directory store */
    atomic_int fail_write;     /* status to return from writes (0: none) */
    atomic_long fail_after;    /* bytes that may still be written before failing (<0: no limit) */
    atomic_int fail_commit;    /* status to return from commit */
    atomic_int creates, opens, reads, removes;
    atomic_int writers_now, writers_max; /* concurrent writes seen */
    atomic_int write_delay_ms;           /* sleep in each create, to make overlap visible */
    atomic_int read_delay_ms;            /* sleep in each open, likewise */
    atomic_int remove_delay_ms;          /* sleep in each remove, before it */
} t_store;

extern const sp_store_methods t_store_methods;
void t_store_init(t_store *s, const char *dir);
void t_store_fini(t_store *s);
sp_pool *t_pool_on(t_store *s, uint64_t mem, uint64_t disk, sp_policy policy);

#endif
