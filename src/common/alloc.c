/* The one allocation wrapper, with fault injection for tests (see testing.h). */
#include <stdatomic.h>
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

void *sp__malloc_large(size_t n)
{
    if (n < SP_HUGE_PAGE) return sp__malloc(n);
    if (sp_alloc_should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, SP_HUGE_PAGE, n) != 0) return NULL;
    /* First touch of fresh pages costs a fault per 4 KiB page; on some machines that
     * is slower than the disk. Huge pages cut the faults 512-fold. Advice only. */
    madvise(p, n & ~(size_t)(SP_HUGE_PAGE - 1), MADV_HUGEPAGE);
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
