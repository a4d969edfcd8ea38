/* The built-in type for byte buffers. */
#include <string.h>

#include "../common/alloc.h"
#include "spillpool/pool.h"

sp_bytes *sp_bytes_new(size_t len)
{
    if (len > SIZE_MAX - sizeof(sp_bytes)) return NULL;
    sp_bytes *b = sp__malloc_large(sizeof(sp_bytes) + len);
    if (b) b->len = len;
    return b;
}

sp_bytes *sp_bytes_from(const void *data, size_t len)
{
    sp_bytes *b = sp_bytes_new(len);
    if (b && len) memcpy(b->data, data, len);
    return b;
}

void sp_bytes_free(sp_bytes *b)
{
    if (b) sp__free_large(b, sizeof(sp_bytes) + b->len);
}

static size_t sp_bytes_size(const void *obj) { return ((const sp_bytes *)obj)->len; }

static sp_status sp_bytes_encode(const void *obj, sp_writer *w)
{
    const sp_bytes *b = obj;
    return sp_write(w, b->data, b->len);
}

static sp_status sp_bytes_decode(sp_reader *r, uint64_t len, void **obj)
{
    SP_RETURN_IF(len > SIZE_MAX - sizeof(sp_bytes), SP_ERR_CORRUPT, "bytes: length %llu too large",
                 (unsigned long long)len);
    sp_bytes *b = sp_bytes_new((size_t)len);
    SP_RETURN_IF(b == NULL, SP_ERR_NOMEM, "bytes: out of memory for %llu bytes", (unsigned long long)len);
    sp_status st = sp_read(r, b->data, (size_t)len);
    if (st != SP_OK) {
        sp__free(b);
        return st;
    }
    *obj = b;
    return SP_OK;
}

static void sp_bytes_type_free(void *obj) { sp_bytes_free(obj); }

const sp_type sp_bytes_type = {
    .name = "bytes",
    .size = sp_bytes_size,
    .encode = sp_bytes_encode,
    .decode = sp_bytes_decode,
    .free = sp_bytes_type_free,
};
