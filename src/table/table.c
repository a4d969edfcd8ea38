/* In-memory tables: creation, dictionaries, value access, freeing (see table.h). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#include "../common/alloc.h"
#include "table_internal.h"

const char *sp_col_type_name(sp_col_type t)
{
    switch (t) {
    case SP_COL_INT64: return "int64";
    case SP_COL_DOUBLE: return "double";
    case SP_COL_STRING: return "string";
    case SP_COL_UINT8: return "uint8";
    }
    return "unknown";
}

/* Row arrays of 2 MiB or more come from the large-buffer allocator: a partition
 * restored from disk then reuses the buffers of one just spilled instead of
 * faulting in fresh pages. */
static void *sp_rows_alloc(size_t bytes, int *large)
{
    *large = bytes >= SP_HUGE_PAGE;
    return *large ? sp__malloc_large(bytes) : sp__malloc(bytes);
}

static void sp_rows_free(void *p, size_t bytes, int large)
{
    if (!p) return;
    if (large) sp__free_large(p, bytes);
    else sp__free(p);
}

void sp_table_free(sp_table *t)
{
    if (!t) return;
    size_t n = t->nrows ? (size_t)t->nrows : 1;
    for (uint32_t c = 0; c < t->ncols; c++) {
        sp_column *col = &t->cols[c];
        sp__free(col->name);
        sp_rows_free(col->i64, n * 8, col->large);
        sp_rows_free(col->f64, n * 8, col->large);
        if (col->codes) sp__free(col->u8); /* a pooled uint8's values */
        else sp_rows_free(col->u8, n, col->large);
        sp_rows_free(col->codes, n * 4, col->large);
        if (col->dict) sp__free(col->dict[0]); /* the block of strings */
        sp__free(col->dict);
        sp__free(col->dict_len);
    }
    sp__free(t->cols);
    sp__free(t);
}

int sp_table_column(const sp_table *t, const char *name)
{
    for (uint32_t c = 0; t && name && c < t->ncols; c++)
        if (strcmp(t->cols[c].name, name) == 0) return (int)c;
    return -1;
}

void sp_table_recount(sp_table *t)
{
    size_t b = sizeof *t + t->ncols * sizeof *t->cols;
    for (uint32_t c = 0; c < t->ncols; c++) {
        const sp_column *col = &t->cols[c];
        b += strlen(col->name) + 1;
        switch (col->type) {
        case SP_COL_INT64:
        case SP_COL_DOUBLE: b += t->nrows * 8; break;
        case SP_COL_UINT8: b += col->codes ? t->nrows * 4 + 256 : t->nrows; break;
        case SP_COL_STRING:
            b += t->nrows * 4 + col->ndict * (sizeof(char *) + 4);
            for (uint32_t k = 0; k < col->ndict; k++) b += col->dict_len[k] + 1;
            break;
        }
    }
    t->bytes = b;
}

sp_status sp__table_shell(uint32_t ncols, sp_table **out)
{
    sp_table *t = sp__calloc(1, sizeof *t);
    if (t) t->cols = sp__calloc(ncols ? ncols : 1, sizeof *t->cols);
    if (!t || !t->cols) {
        sp__free(t);
        return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    t->ncols = ncols;
    *out = t;
    return SP_OK;
}

sp_status sp__column_alloc(sp_column *col, const char *name, sp_col_type type, int pooled, uint64_t nrows)
{
    size_t n = nrows ? (size_t)nrows : 1;
    col->type = type;
    /* rows times the widest value (8 bytes) must be a size: past it the arrays would be short */
    SP_RETURN_IF(nrows > SIZE_MAX / 8, SP_ERR_TOO_BIG, "table: %llu rows are too many for memory",
                 (unsigned long long)nrows);
    if (!(col->name = sp__strdup(name))) return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    switch (type) {
    case SP_COL_INT64: col->i64 = sp_rows_alloc(n * 8, &col->large); return col->i64 ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
    case SP_COL_DOUBLE: col->f64 = sp_rows_alloc(n * 8, &col->large); return col->f64 ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
    case SP_COL_UINT8:
        if (!pooled) {
            col->u8 = sp_rows_alloc(n, &col->large);
            return col->u8 ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
        }
        col->u8 = sp__calloc(256, 1);
        col->codes = sp_rows_alloc(n * 4, &col->large);
        return col->u8 && col->codes ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
    case SP_COL_STRING:
        col->codes = sp_rows_alloc(n * 4, &col->large);
        col->dict = sp__calloc(1, sizeof *col->dict);
        col->dict_len = sp__calloc(1, sizeof *col->dict_len);
        return col->codes && col->dict && col->dict_len ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    return sp__fail(SP_ERR_INVALID, "table: column '%s' has unknown type %d", name, (int)type);
}

int sp__names_repeat(const void *base, size_t stride, uint32_t n, uint32_t *a, uint32_t *b)
{
#define SP_NAME_AT(i) (*(const char *const *)(const void *)((const char *)base + (size_t)(i) * stride))
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    uint32_t *slots = sp__calloc(cap, sizeof *slots); /* index + 1, 0 empty */
    if (!slots) return -1;
    int found = 0;
    for (uint32_t c = 0; c < n && !found; c++) {
        const char *nm = SP_NAME_AT(c);
        size_t i = (size_t)XXH3_64bits(nm, strlen(nm)) & (cap - 1);
        for (; slots[i] && !found; i = (i + 1) & (cap - 1))
            if (strcmp(SP_NAME_AT(slots[i] - 1), nm) == 0) {
                *a = slots[i] - 1;
                *b = c;
                found = 1;
            }
        if (!found) slots[i] = c + 1;
    }
#undef SP_NAME_AT
    sp__free(slots);
    return found;
}

sp_status sp_table_new(uint32_t ncols, const sp_col_spec *cols, uint64_t nrows, sp_table **out)
{
    SP_RETURN_IF(!out || (ncols && !cols), SP_ERR_INVALID, "sp_table_new: NULL argument");
    for (uint32_t c = 0; c < ncols; c++)
        SP_RETURN_IF(!cols[c].name || !cols[c].name[0], SP_ERR_INVALID, "sp_table_new: column %u has no name", c);
    uint32_t a, b;
    int rep = ncols ? sp__names_repeat(&cols[0].name, sizeof *cols, ncols, &a, &b) : 0;
    SP_RETURN_IF(rep < 0, SP_ERR_NOMEM, "table: out of memory");
    SP_RETURN_IF(rep > 0, SP_ERR_INVALID, "sp_table_new: two columns are named '%s'", cols[b].name);
    sp_table *t = NULL;
    SP_FORWARD(sp__table_shell(ncols, &t));
    t->nrows = nrows;
    for (uint32_t c = 0; c < ncols; c++) {
        sp_status st = sp__column_alloc(&t->cols[c], cols[c].name, cols[c].type, cols[c].pooled, nrows);
        if (st != SP_OK) {
            sp_table_free(t);
            return st;
        }
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

sp_status sp__column_set_dict(sp_column *col, uint32_t n, const char *const *s, const uint32_t *lens)
{
    size_t total = 0;
    for (uint32_t k = 0; k < n; k++) total += (lens ? lens[k] : strlen(s[k])) + 1;
    char **dict = sp__calloc((size_t)n + 1, sizeof *dict);
    uint32_t *len = sp__calloc(n ? n : 1, sizeof *len);
    char *blob = n ? sp__malloc(total) : NULL;
    if (!dict || !len || (n && !blob)) {
        sp__free(dict);
        sp__free(len);
        sp__free(blob);
        return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    size_t at = 0;
    for (uint32_t k = 0; k < n; k++) {
        len[k] = (uint32_t)(lens ? lens[k] : strlen(s[k]));
        memcpy(blob + at, s[k], len[k]);
        blob[at + len[k]] = '\0';
        dict[k] = blob + at;
        at += len[k] + 1;
    }
    if (col->dict) sp__free(col->dict[0]);
    sp__free(col->dict);
    sp__free(col->dict_len);
    col->dict = dict;
    col->dict_len = len;
    col->ndict = n;
    return SP_OK;
}

sp_status sp_table_set_dict(sp_table *t, uint32_t c, uint32_t n, const char *const *strings)
{
    SP_RETURN_IF(!t || c >= t->ncols || t->cols[c].type != SP_COL_STRING || (n && !strings), SP_ERR_INVALID,
                 "sp_table_set_dict: column %u is not a string column", c);
    SP_FORWARD(sp__column_set_dict(&t->cols[c], n, strings, NULL));
    sp_table_recount(t);
    return SP_OK;
}

double sp_table_num(const sp_table *t, uint32_t c, uint64_t r)
{
    const sp_column *col = &t->cols[c];
    switch (col->type) {
    case SP_COL_INT64: return (double)col->i64[r];
    case SP_COL_DOUBLE: return col->f64[r];
    case SP_COL_UINT8: return col->codes ? col->u8[col->codes[r]] : col->u8[r];
    case SP_COL_STRING: break;
    }
    return NAN;
}

const char *sp_table_str(const sp_table *t, uint32_t c, uint64_t r)
{
    const sp_column *col = &t->cols[c];
    return col->type == SP_COL_STRING ? col->dict[col->codes[r]] : NULL;
}
