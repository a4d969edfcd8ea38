/* The CSV loader as a pool type: parse a source's bytes, or write and read back the
 * parsed columns in a binary form when the table is spilled (so a spilled table is
 * never parsed twice).
 *
 *   table  := "SPTBL1\0\0" u32 ncols u32 0 u64 nrows column*
 *   column := u32 type u32 name_len name  (int64 | double: nrows x 8 bytes)
 *             | (string: u32 ndict (u32 len bytes)* then nrows x u32 codes)
 * Host byte order: spill files never leave the machine that wrote them. */
#include <string.h>

#include "../common/alloc.h"
#include "../store/frame.h"
#include "spillpool/csv.h"

static const char sp_tbl_magic[8] = {'S', 'P', 'T', 'B', 'L', '1', 0, 0};

static size_t sp_csv_size(const void *obj) { return ((const sp_table *)obj)->bytes; }

static void sp_csv_free(void *obj) { sp_table_free(obj); }

static sp_status sp_put32(sp_writer *w, uint32_t v) { return sp_write(w, &v, sizeof v); }

static sp_status sp_csv_encode(const void *obj, sp_writer *w)
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
        if (col->type == SP_COL_INT64) SP_FORWARD(sp_write(w, col->i64, t->nrows * 8));
        else if (col->type == SP_COL_DOUBLE) SP_FORWARD(sp_write(w, col->f64, t->nrows * 8));
        else {
            SP_FORWARD(sp_put32(w, col->ndict));
            for (uint32_t k = 0; k < col->ndict; k++) {
                SP_FORWARD(sp_put32(w, col->dict_len[k]));
                SP_FORWARD(sp_write(w, col->dict[k], col->dict_len[k]));
            }
            SP_FORWARD(sp_write(w, col->codes, t->nrows * 4));
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

static sp_status sp_csv_decode_binary(sp_reader *r, uint64_t len, sp_table **out)
{
    sp_in in = {r, len};
    char magic[8];
    uint32_t hdr[2];
    uint64_t nrows;
    SP_FORWARD(sp_take_in(&in, magic, 8));
    SP_RETURN_IF(memcmp(magic, sp_tbl_magic, 8) != 0, SP_ERR_CORRUPT, "table: not a stored table");
    SP_FORWARD(sp_take_in(&in, hdr, sizeof hdr));
    SP_FORWARD(sp_take_in(&in, &nrows, 8));
    SP_RETURN_IF(hdr[0] > in.left / 8 + 1 || nrows > in.left, SP_ERR_CORRUPT, "table: %u columns of %llu rows "
                 "cannot fit in %llu bytes", hdr[0], (unsigned long long)nrows, (unsigned long long)in.left);
    sp_table *t = sp__calloc(1, sizeof *t);
    if (t) t->cols = sp__calloc(hdr[0] ? hdr[0] : 1, sizeof *t->cols);
    if (!t || !t->cols) {
        sp__free(t);
        return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    t->nrows = nrows;
    t->bytes = sizeof *t + hdr[0] * sizeof *t->cols;
    sp_status st = SP_OK;
    for (uint32_t c = 0; c < hdr[0] && st == SP_OK; c++) {
        sp_column *col = &t->cols[c];
        uint32_t type = 0, nl = 0;
        if ((st = sp_take_in(&in, &type, 4)) != SP_OK || (st = sp_take_in(&in, &nl, 4)) != SP_OK) break;
        t->ncols = c + 1;
        if (type < SP_COL_INT64 || type > SP_COL_STRING || nl > in.left) {
            st = sp__fail(SP_ERR_CORRUPT, "table: column %u is malformed", c);
            break;
        }
        col->type = (sp_col_type)type;
        if (!(col->name = sp__malloc(nl + 1))) st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
        else if ((st = sp_take_in(&in, col->name, nl)) == SP_OK) col->name[nl] = '\0';
        if (st != SP_OK) break;
        t->bytes += nl + 1;
        if (type != SP_COL_STRING) {
            if (nrows * 8 > in.left) {
                st = sp__fail(SP_ERR_CORRUPT, "table: column %u is short", c);
                break;
            }
            void *v = sp__malloc(nrows ? nrows * 8 : 1);
            if (!v) {
                st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
                break;
            }
            if (type == SP_COL_INT64) col->i64 = v;
            else col->f64 = v;
            st = sp_take_in(&in, v, nrows * 8);
            t->bytes += nrows * 8;
            continue;
        }
        uint32_t nd = 0;
        if ((st = sp_take_in(&in, &nd, 4)) != SP_OK) break;
        if ((uint64_t)nd * 4 > in.left) {
            st = sp__fail(SP_ERR_CORRUPT, "table: column %u: %u strings cannot fit", c, nd);
            break;
        }
        /* The strings go into one blob, like the parser's: dict[0] is its start. */
        col->dict = sp__calloc((size_t)nd + 1, sizeof *col->dict);
        col->dict_len = sp__calloc(nd ? nd : 1, sizeof *col->dict_len);
        char *blob = sp__malloc(in.left + nd + 1);
        if (!col->dict || !col->dict_len || !blob) {
            sp__free(blob);
            st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
            break;
        }
        size_t used = 0;
        for (uint32_t k = 0; k < nd && st == SP_OK; k++) {
            uint32_t l = 0;
            if ((st = sp_take_in(&in, &l, 4)) != SP_OK || (st = sp_take_in(&in, blob + used, l)) != SP_OK) break;
            blob[used + l] = '\0';
            col->dict[k] = blob + used;
            col->dict_len[k] = l;
            col->ndict = k + 1;
            used += l + 1;
        }
        if (col->ndict == 0) sp__free(blob); /* else dict[0] owns it */
        if (st != SP_OK) break;
        t->bytes += used + nd * (sizeof(char *) + 4);
        if (nrows * 4 > in.left) {
            st = sp__fail(SP_ERR_CORRUPT, "table: column %u is short", c);
            break;
        }
        if (!(col->codes = sp__malloc(nrows ? nrows * 4 : 1))) {
            st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
            break;
        }
        if ((st = sp_take_in(&in, col->codes, nrows * 4)) != SP_OK) break;
        for (uint64_t i = 0; i < nrows; i++)
            if (col->codes[i] >= nd) {
                st = sp__fail(SP_ERR_CORRUPT, "table: column %u, row %llu: code %u of %u strings", c,
                              (unsigned long long)i, col->codes[i], nd);
                break;
            }
        t->bytes += nrows * 4;
    }
    if (st == SP_OK && in.left != 0) st = sp__fail(SP_ERR_CORRUPT, "table: %llu bytes left over", (unsigned long long)in.left);
    if (st != SP_OK) {
        sp_table_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}

static sp_status sp_csv_decode(sp_reader *r, uint64_t len, void **obj)
{
    sp_table *t = NULL;
    if (!sp_reader_is_source(r)) {
        SP_FORWARD(sp_csv_decode_binary(r, len, &t));
        *obj = t;
        return SP_OK;
    }
    SP_RETURN_IF(len > (uint64_t)SIZE_MAX / 2, SP_ERR_TOO_BIG, "%s: too large to load", r->what);
    char *buf = sp__malloc_large(len ? (size_t)len : 1);
    SP_RETURN_IF(!buf, SP_ERR_NOMEM, "%s: out of memory for %llu bytes", r->what, (unsigned long long)len);
    sp_status st = sp_read(r, buf, (size_t)len);
    if (st == SP_OK) st = sp_csv_parse(buf, (size_t)len, sp_reader_arg(r), r->what, &t);
    sp__free_large(buf, len ? (size_t)len : 1);
    if (st != SP_OK) return st;
    *obj = t;
    return SP_OK;
}

const sp_type sp_csv_type = {"csv", sp_csv_size, sp_csv_encode, sp_csv_decode, sp_csv_free, NULL};

void sp_csv_loader(const sp_csv_options *opt, sp_type *out)
{
    *out = sp_csv_type;
    out->arg = opt;
}
