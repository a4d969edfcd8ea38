/* Every internal allocation goes through here, so a test can fail the Nth one. */
#ifndef SP_COMMON_ALLOC_H
#define SP_COMMON_ALLOC_H
#include <stddef.h>
#include "error.h"

SP_HIDDEN void *sp__malloc(size_t n);
SP_HIDDEN void *sp__calloc(size_t n, size_t size);
SP_HIDDEN void *sp__realloc(void *p, size_t n);
#define SP_HUGE_PAGE ((size_t)2 << 20)
/* For big buffers (>= 2 MiB): aligned to and advised for huge pages, recycled.
 * Free with sp__free_large and the same n. */
SP_HIDDEN void *sp__malloc_large(size_t n);
SP_HIDDEN void sp__free_large(void *p, size_t n);
SP_HIDDEN char *sp__strdup(const char *s);
SP_HIDDEN void sp__free(void *p);

#endif
