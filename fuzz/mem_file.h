/* A file in memory for the fuzz targets: the reader and writer of the spill format
 * run over it through a store table that has only read and write. */
#ifndef SP_FUZZ_MEM_FILE_H
#define SP_FUZZ_MEM_FILE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spillpool/store.h"

typedef struct {
    uint8_t *data; /* read-only when the file was made from fuzz input */
    size_t len, cap, pos;
} mem_file;

static inline sp_status mem_write(void *file, const void *buf, size_t len)
{
    mem_file *f = file;
    if (f->len + len > f->cap) {
        size_t c = f->cap ? f->cap : 4096;
        while (c < f->len + len) c *= 2;
        uint8_t *d = realloc(f->data, c);
        if (!d) return SP_ERR_NOMEM;
        f->data = d;
        f->cap = c;
    }
    memcpy(f->data + f->len, buf, len);
    f->len += len;
    return SP_OK;
}

static inline sp_status mem_read(void *file, void *buf, size_t len, size_t *got)
{
    mem_file *f = file;
    size_t n = f->len - f->pos < len ? f->len - f->pos : len;
    memcpy(buf, f->data + f->pos, n);
    f->pos += n;
    *got = n;
    return SP_OK;
}

static const sp_store_methods mem_store = {.version = 1, .write = mem_write, .read = mem_read};

#endif
