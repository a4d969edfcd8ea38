/* Tables as pool objects: the binary form written when a table is spilled, and the
 * CSV loader, which parses a registered source but reads back the binary form once
 * the parsed table was spilled (so a spilled table is never parsed twice).
 *
 *   table  := "SPTBL1\0\0" u32 ncols u32 0 u64 nrows column*
 *   column := u32 type u32 name_len name payload
 *   int64, double: nrows x 8 bytes
 *   string: u32 ndict (u32 len bytes)* then nrows x u32 codes
 *   uint8:  u32 ndict; 0: nrows bytes; else ndict bytes then nrows x u32 codes (a
 *           pooled column without values, which has no rows, is written with one
 *           value 0, so that it comes back pooled)
 * Host byte order: spill files never leave the machine that wrote them. */
#include <string.h>

#include "../common/alloc.h"
#include "../store/frame.h"
#include "table_internal.h"

static const char sp_tbl_magic[8] = {'S', 'P', 'T', 'B', 'L', '1', 0, 0};

static size_t sp_tbl_size(const void *obj) { return ((const sp_table *)obj)->bytes; }

static void sp_tbl_free(void *obj) { sp_table_free(obj); }

static sp_status sp_put32(sp_writer *w, uint32_t v) { return sp_write(w, &v, sizeof v); }

static sp_status sp_tbl_encode(const void *obj, sp_writer *w)
{
    const sp_table *t = obj;
    uint32_t hdr[2] = {t->ncols, 0};
    SP_FORWARD(sp_write(w, sp_tbl_magic, sizeof sp_tbl_magic));
    SP_FORWARD(sp_write(w, hdr, sizeof hdr));
    SP_FORWARD(sp_write(w, &t->nrows, sizeof t->nrows));
    for (uint32_t c = 0; c < t->ncols; c++) {
        const sp_column *col = &t->cols[c];
        uint32_t nl = (uint32_t)strlen(col->name);
        SP_FORWARD(sp_put32(w, (uint32_t)col->type));
        SP_FORWARD(sp_put32(w, nl));
        SP_FORWARD(sp_write(w, col->name, nl));
        switch (col->type) {
        case SP_COL_INT64: SP_FORWARD(sp_write(w, col->i64, t->nrows * 8)); break;
        case SP_COL_DOUBLE: SP_FORWARD(sp_write(w, col->f64, t->nrows * 8)); break;
        case SP_COL_UINT8: {
            uint32_t nd = col->codes ? (col->ndict ? col->ndict : 1) : 0; /* the pool holds 256 bytes */
            SP_FORWARD(sp_put32(w, nd));
            if (!col->codes) SP_FORWARD(sp_write(w, col->u8, t->nrows));
            else {
                SP_FORWARD(sp_write(w, col->u8, nd));
                SP_FORWARD(sp_write(w, col->codes, t->nrows * 4));
            }
            break;
        }
        case SP_COL_STRING:
            SP_FORWARD(sp_put32(w, col->ndict));
            for (uint32_t k = 0; k < col->ndict; k++) {
                SP_FORWARD(sp_put32(w, col->dict_len[k]));
                SP_FORWARD(sp_write(w, col->dict[k], col->dict_len[k]));
            }
            SP_FORWARD(sp_write(w, col->codes, t->nrows * 4));
            break;
        }
    }
    return SP_OK;
}

/* Bytes still to read of the stored form, so a bad count cannot make us allocate
 * more than the file holds. */
typedef struct {
    sp_reader *r;
    uint64_t left;
} sp_in;

static sp_status sp_take_in(sp_in *in, void *buf, uint64_t n)
{
    SP_RETURN_IF(n > in->left, SP_ERR_CORRUPT, "table: stored form ends %llu bytes early",
                 (unsigned long long)(n - in->left));
    in->left -= n;
    return sp_read(in->r, buf, (size_t)n);
}

static sp_status sp_take_codes(sp_in *in, sp_column *col, uint32_t c, uint64_t nrows, uint32_t nd)
{
    SP_RETURN_IF(nrows * 4 > in->left, SP_ERR_CORRUPT, "table: column %u is short", c);
    SP_FORWARD(sp_take_in(in, col->codes, nrows * 4));
    uint32_t bad = 0; /* one pass without a branch per row */
    for (uint64_t i = 0; i < nrows; i++) bad |= col->codes[i] >= nd;
    if (!bad) return SP_OK;
    for (uint64_t i = 0; i < nrows; i++)
        SP_RETURN_IF(col->codes[i] >= nd, SP_ERR_CORRUPT, "table: column %u, row %llu: code %u of %u values", c,
                     (unsigned long long)i, col->codes[i], nd);
    return SP_OK;
}

static sp_status sp_take_column(sp_in *in, sp_column *col, uint32_t c, uint64_t nrows)
{
    uint32_t type = 0, nl = 0;
    SP_FORWARD(sp_take_in(in, &type, 4));
    SP_FORWARD(sp_take_in(in, &nl, 4));
    SP_RETURN_IF(type < SP_COL_INT64 || type > SP_COL_UINT8 || nl == 0 || nl > in->left || nl > 4096, SP_ERR_CORRUPT,
                 "table: column %u is malformed", c);
    char name[4097];
    SP_FORWARD(sp_take_in(in, name, nl));
    name[nl] = '\0';
    SP_RETURN_IF(memchr(name, '\0', nl), SP_ERR_CORRUPT, "table: column %u: a NUL byte in its name", c);
    uint32_t nd = 0;
    if (type == SP_COL_UINT8 || type == SP_COL_STRING) SP_FORWARD(sp_take_in(in, &nd, 4));
    SP_RETURN_IF(type == SP_COL_UINT8 && nd > 256, SP_ERR_CORRUPT, "table: column %u has %u uint8 values", c, nd);
    uint64_t width = type == SP_COL_UINT8 ? (nd ? 4 : 1) : type == SP_COL_STRING ? 4 : 8;
    /* a string's length takes 4 bytes, a pooled uint8 value 1 */
    uint64_t dict_min = type == SP_COL_STRING ? (uint64_t)nd * 4 : nd;
    SP_RETURN_IF(nrows * width > in->left, SP_ERR_CORRUPT, "table: column %u is short", c);
    SP_RETURN_IF(nrows * width + dict_min > in->left, SP_ERR_CORRUPT, "table: column %u: %u %s cannot fit", c, nd,
                 type == SP_COL_STRING ? "strings" : "values");
    SP_FORWARD(sp__column_alloc(col, name, (sp_col_type)type, nd != 0, nrows));
    switch (type) {
    case SP_COL_INT64: return sp_take_in(in, col->i64, nrows * 8);
    case SP_COL_DOUBLE: return sp_take_in(in, col->f64, nrows * 8);
    case SP_COL_UINT8:
        if (nd == 0) return sp_take_in(in, col->u8, nrows);
        col->ndict = nd;
        SP_FORWARD(sp_take_in(in, col->u8, nd));
        return sp_take_codes(in, col, c, nrows, nd);
    }
    /* Strings: read into one growing block, then copied into the column's. */
    size_t cap = 256, used = 0;
    char *blob = sp__malloc(cap);
    size_t *off = sp__calloc(nd ? nd : 1, sizeof *off);
    uint32_t *len = sp__calloc(nd ? nd : 1, sizeof *len);
    const char **s = sp__calloc(nd ? nd : 1, sizeof *s);
    sp_status st = blob && off && len && s ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
    for (uint32_t k = 0; k < nd && st == SP_OK; k++) {
        if ((st = sp_take_in(in, &len[k], 4)) != SP_OK) break;
        if (len[k] > in->left) {
            st = sp__fail(SP_ERR_CORRUPT, "table: column %u: string %u is short", c, k);
            break;
        }
        while (used + len[k] > cap) {
            char *nb = sp__realloc(blob, cap * 2);
            if (!nb) {
                st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
                break;
            }
            blob = nb;
            cap *= 2;
        }
        if (st != SP_OK || (st = sp_take_in(in, blob + used, len[k])) != SP_OK) break;
        off[k] = used;
        used += len[k];
    }
    for (uint32_t k = 0; k < nd && st == SP_OK; k++) s[k] = blob + off[k];
    if (st == SP_OK) st = sp__column_set_dict(col, nd, s, len);
    sp__free(blob);
    sp__free(off);
    sp__free(len);
    sp__free(s);
    return st == SP_OK ? sp_take_codes(in, col, c, nrows, nd) : st;
}

static sp_status sp_tbl_decode_binary(sp_reader *r, uint64_t len, sp_table **out)
{
    sp_in in = {r, len};
    char magic[8];
    uint32_t hdr[2];
    uint64_t nrows;
    SP_FORWARD(sp_take_in(&in, magic, 8));
    SP_RETURN_IF(memcmp(magic, sp_tbl_magic, 8) != 0, SP_ERR_CORRUPT, "table: not a stored table");
    SP_FORWARD(sp_take_in(&in, hdr, sizeof hdr));
    SP_FORWARD(sp_take_in(&in, &nrows, 8));
    SP_RETURN_IF(hdr[1] != 0, SP_ERR_CORRUPT, "table: malformed header");
    SP_RETURN_IF(hdr[0] > in.left / 8 + 1 || nrows > in.left, SP_ERR_CORRUPT, "table: %u columns of %llu rows "
                 "cannot fit in %llu bytes", hdr[0], (unsigned long long)nrows, (unsigned long long)in.left);
    sp_table *t;
    SP_FORWARD(sp__table_shell(hdr[0], &t));
    t->nrows = nrows;
    t->ncols = 0; /* counts the columns made, for sp_table_free */
    sp_status st = SP_OK;
    for (uint32_t c = 0; c < hdr[0] && st == SP_OK; c++) {
        st = sp_take_column(&in, &t->cols[c], c, nrows);
        if (t->cols[c].name) t->ncols = c + 1;
    }
    if (st == SP_OK && in.left != 0) st = sp__fail(SP_ERR_CORRUPT, "table: %llu bytes left over", (unsigned long long)in.left);
    uint32_t a, b;
    int rep = st == SP_OK && t->ncols ? sp__names_repeat(&t->cols[0].name, sizeof *t->cols, t->ncols, &a, &b) : 0;
    if (rep < 0) st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
    else if (rep > 0) st = sp__fail(SP_ERR_CORRUPT, "table: columns %u and %u are both named '%s'", a, b, t->cols[b].name);
    if (st != SP_OK) {
        sp_table_free(t);
        return st;
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

static sp_status sp_tbl_decode(sp_reader *r, uint64_t len, void **obj)
{
    sp_table *t = NULL;
    SP_FORWARD(sp_tbl_decode_binary(r, len, &t));
    *obj = t;
    return SP_OK;
}

const sp_type sp_table_type = {"table", sp_tbl_size, sp_tbl_encode, sp_tbl_decode, sp_tbl_free, NULL};

sp_status sp__csv_decode_with(sp_reader *r, uint64_t len, const sp_csv_options *opt, void **obj)
{
    sp_table *t = NULL;
    if (!sp_reader_is_source(r)) {
        SP_FORWARD(sp_tbl_decode_binary(r, len, &t));
        *obj = t;
        return SP_OK;
    }
    SP_RETURN_IF(len > (uint64_t)SIZE_MAX / 2, SP_ERR_TOO_BIG, "%s: too large to load", r->what);
    char *buf = sp__malloc_large(len ? (size_t)len : 1);
    SP_RETURN_IF(!buf, SP_ERR_NOMEM, "%s: out of memory for %llu bytes", r->what, (unsigned long long)len);
    sp_status st = sp_read(r, buf, (size_t)len);
    if (st == SP_OK) st = sp_csv_parse(buf, (size_t)len, opt, r->what, &t);
    sp__free_large(buf, len ? (size_t)len : 1);
    if (st != SP_OK) return st;
    *obj = t;
    return SP_OK;
}

static sp_status sp_csv_decode(sp_reader *r, uint64_t len, void **obj)
{
    return sp__csv_decode_with(r, len, sp_reader_arg(r), obj);
}

const sp_type sp_csv_type = {"csv", sp_tbl_size, sp_tbl_encode, sp_csv_decode, sp_tbl_free, NULL};

void sp_csv_loader(const sp_csv_options *opt, sp_type *out)
{
    *out = sp_csv_type;
    out->arg = opt;
}
