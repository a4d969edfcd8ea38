/* libFuzzer target: the CSV parser and the stored-table decoder. The first byte
 * picks the options (delimiter, header, a schema); the rest is the input. Each must
 * return an error or a well-formed table, never crash, hang or read out of bounds;
 * a parsed table must survive its own encode and decode unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem_file.h"
#include "store/frame.h"
#include "spillpool/csv.h"

static sp_status no_charge(void *ctx, uint64_t n)
{
    (void)ctx;
    (void)n;
    return SP_OK;
}

/* Store bytes as a spilled object's stored form (encode(obj) or raw bytes), then
 * decode them as a table. */
static sp_status store_and_load(const sp_table *t, const uint8_t *raw, size_t raw_len, sp_table **out)
{
    mem_file f = {0};
    sp_writer w;
    sp_status st = sp__writer_begin(&w, &mem_store, &f, no_charge, NULL, NULL, NULL);
    if (st == SP_OK) st = t ? sp_csv_type.encode(t, &w) : sp_write(&w, raw, raw_len);
    if (st == SP_OK) st = sp__writer_finish(&w);
    uint64_t len = w.raw_total;
    sp__writer_cleanup(&w);
    if (st == SP_OK) {
        sp_reader r;
        void *obj = NULL;
        st = sp__reader_begin(&r, &mem_store, &f, f.len, "fuzz", NULL, NULL);
        if (st == SP_OK) st = sp_csv_type.decode(&r, len, &obj);
        if (st == SP_OK && (st = sp__reader_finish(&r)) != SP_OK) sp_table_free(obj);
        sp__reader_cleanup(&r);
        if (st == SP_OK) *out = obj;
    }
    free(f.data);
    return st;
}

static void check(const sp_table *t)
{
    for (uint32_t c = 0; c < t->ncols; c++)
        if (t->cols[c].codes) /* strings and pooled uint8 */
            for (uint64_t r = 0; r < t->nrows; r++)
                if (t->cols[c].codes[r] >= t->cols[c].ndict) abort();
}

static void same(const sp_table *a, const sp_table *b)
{
    if (a->ncols != b->ncols || a->nrows != b->nrows) abort();
    for (uint32_t c = 0; c < a->ncols; c++) {
        const sp_column *x = &a->cols[c], *y = &b->cols[c];
        if (x->type != y->type || strcmp(x->name, y->name) != 0) abort();
        if (x->type == SP_COL_INT64 && a->nrows && memcmp(x->i64, y->i64, a->nrows * 8)) abort();
        if (x->type == SP_COL_DOUBLE && a->nrows && memcmp(x->f64, y->f64, a->nrows * 8)) abort();
        if (x->type == SP_COL_UINT8 && (!x->codes != !y->codes || x->ndict != y->ndict)) abort();
        if (x->type == SP_COL_UINT8 && a->nrows &&
            (x->codes ? memcmp(x->codes, y->codes, a->nrows * 4) || memcmp(x->u8, y->u8, x->ndict)
                      : memcmp(x->u8, y->u8, a->nrows)))
            abort();
        if (x->type == SP_COL_STRING) {
            if (x->ndict != y->ndict || (a->nrows && memcmp(x->codes, y->codes, a->nrows * 4))) abort();
            for (uint32_t k = 0; k < x->ndict; k++)
                if (x->dict_len[k] != y->dict_len[k] || memcmp(x->dict[k], y->dict[k], x->dict_len[k])) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const sp_col_type schema[3] = {SP_COL_INT64, SP_COL_STRING, SP_COL_DOUBLE};
    sp_csv_options o = {.delim = (data[0] & 1) ? ';' : ',', .no_header = (data[0] >> 1) & 1};
    if ((data[0] >> 2) & 1) {
        o.schema = schema;
        o.schema_cols = 3;
    }
    sp_table *t = NULL, *back = NULL;
    if (sp_csv_parse((const char *)data + 1, size - 1, &o, "fuzz", &t) == SP_OK) {
        check(t);
        if (store_and_load(t, NULL, 0, &back) != SP_OK) abort(); /* its own form must read back */
        same(t, back);
        sp_table_free(back);
        sp_table_free(t);
    }
    /* the same bytes posing as a stored table; one that decodes must re-encode to
     * a table that decodes the same */
    if (store_and_load(NULL, data + 1, size - 1, &back) == SP_OK) {
        check(back);
        sp_table *again = NULL;
        if (store_and_load(back, NULL, 0, &again) != SP_OK) abort();
        same(back, again);
        sp_table_free(again);
        sp_table_free(back);
    }
    return 0;
}
