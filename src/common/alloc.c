/* The one allocation wrapper, with fault injection for tests (see testing.h). */
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"
#include "testing.h"

/* < 0: never fail. Otherwise the number of allocations that still succeed. */
static atomic_long sp_alloc_budget = -1;

void sp_testing_fail_alloc_after(long n) { atomic_store(&sp_alloc_budget, n); }

static int sp_alloc_should_fail(void)
{
    long b = atomic_load(&sp_alloc_budget);
    while (b >= 0) {
        if (b == 0) return 1;
        if (atomic_compare_exchange_weak(&sp_alloc_budget, &b, b - 1)) return 0;
    }
    return 0;
}

void *sp__malloc(size_t n) { return sp_alloc_should_fail() ? NULL : malloc(n ? n : 1); }

void *sp__calloc(size_t n, size_t size)
{
    return sp_alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *sp__realloc(void *p, size_t n) { return sp_alloc_should_fail() ? NULL : realloc(p, n ? n : 1); }

/* Recycled large blocks: a spill frees an object's buffer just before a put or a
 * restore allocates one of the same size, and fresh pages cost a fault and a zeroing
 * each (a quarter of the CPU of a spilling run here). A few freed blocks are kept,
 * by size rounded up to 2 MiB, at most SP_RECYCLE_BYTES in all. */
#define SP_RECYCLE_SLOTS 8
#define SP_RECYCLE_BYTES ((size_t)64 << 20)
static pthread_mutex_t sp_recycle_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t cap;
} sp_recycle[SP_RECYCLE_SLOTS];
static size_t sp_recycle_held;

static size_t sp_large_cap(size_t n) { return (n + SP_HUGE_PAGE - 1) & ~(SP_HUGE_PAGE - 1); }

void sp__free_large(void *p, size_t n)
{
    if (!p) return;
    if (n < SP_HUGE_PAGE) {
        sp__free(p);
        return;
    }
    size_t cap = sp_large_cap(n);
    pthread_mutex_lock(&sp_recycle_lock);
    for (int i = 0; i < SP_RECYCLE_SLOTS && sp_recycle_held + cap <= SP_RECYCLE_BYTES; i++)
        if (!sp_recycle[i].p) {
            sp_recycle[i].p = p;
            sp_recycle[i].cap = cap;
            sp_recycle_held += cap;
            p = NULL;
            break;
        }
    pthread_mutex_unlock(&sp_recycle_lock);
    free(p);
}

void *sp__malloc_large(size_t n)
{
    if (n < SP_HUGE_PAGE) return sp__malloc(n);
    if (sp_alloc_should_fail()) return NULL;
    size_t cap = sp_large_cap(n);
    void *p = NULL;
    pthread_mutex_lock(&sp_recycle_lock);
    for (int i = 0; i < SP_RECYCLE_SLOTS; i++)
        if (sp_recycle[i].p && sp_recycle[i].cap == cap) {
            p = sp_recycle[i].p;
            sp_recycle[i].p = NULL;
            sp_recycle_held -= cap;
            break;
        }
    pthread_mutex_unlock(&sp_recycle_lock);
    if (p) return p;
    if (posix_memalign(&p, SP_HUGE_PAGE, cap) != 0) return NULL;
    /* First touch of fresh pages costs a fault per 4 KiB page; on some machines that
     * is slower than the disk. Huge pages cut the faults 512-fold. Advice only. */
    madvise(p, cap, MADV_HUGEPAGE);
    return p;
}

char *sp__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sp__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void sp__free(void *p) { free(p); }
