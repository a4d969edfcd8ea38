/* Partitions exported through the Arrow C Data Interface (see table.h and
 * https://arrow.apache.org/docs/format/CDataInterface.html).
 *
 * Column data is lent, not copied. Every exported array that points into the
 * partition (the struct, each column, a pooled uint8's dictionary) holds a reference
 * on one shared pin, so a consumer may move a child out and release it after its
 * parent, as the spec allows. Only a string dictionary is copied, into Arrow's
 * offsets + data form, and it holds no pin. Private data lives on the heap and never
 * points back at the struct that owns it, so both structs can be moved by memcpy. */
#include <stdatomic.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/utf8.h"
#include "table_internal.h"

/* The partition's pin, shared by the arrays of one export; the last one unpins. */
typedef struct sp_arrow_pin {
    atomic_uint refs;
    sp_pool *pool;
    sp_ref ref;
} sp_arrow_pin;

static void sp_arrow_pin_drop(sp_arrow_pin *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1) return;
    /* A release callback cannot report errors; the pool keeps the detail. */
    (void)sp_unpin(p->pool, p->ref);
    (void)sp_release(p->pool, p->ref);
    sp__free(p);
}

/* ---- arrays ---- */

/* private_data of one ArrowArray. */
typedef struct sp_arrow_node {
    sp_arrow_pin *pin; /* NULL: the array holds only its own copies */
    const void *buffers[3];
    int64_t nkids;
    struct ArrowArray *kids;       /* the children, stored here */
    struct ArrowArray **children;  /* kids[k]'s addresses, for ArrowArray.children */
    struct ArrowArray dict;        /* the dictionary, if the array has one */
    int32_t *offsets;              /* a string dictionary's copy */
    char *data;
} sp_arrow_node;

/* Releases what was built so far too: unbuilt children have release == NULL. */
static void sp_arrow_array_release(struct ArrowArray *a)
{
    sp_arrow_node *n = a->private_data;
    for (int64_t k = 0; k < n->nkids; k++)
        if (n->kids[k].release) n->kids[k].release(&n->kids[k]);
    if (n->dict.release) n->dict.release(&n->dict);
    sp__free(n->kids);
    sp__free(n->children);
    sp__free(n->offsets);
    sp__free(n->data);
    if (n->pin) sp_arrow_pin_drop(n->pin);
    sp__free(n);
    a->release = NULL;
    a->private_data = NULL;
}

/* An array of `length` rows and n_buffers buffers, all NULL for the caller to set
 * (buffer 0, validity, stays NULL: null_count is 0); takes a reference on pin. */
static sp_status sp_arrow_array_init(struct ArrowArray *a, sp_arrow_pin *pin, uint64_t length, int64_t n_buffers)
{
    memset(a, 0, sizeof *a);
    sp_arrow_node *n = sp__calloc(1, sizeof *n);
    if (!n) return sp__fail(SP_ERR_NOMEM, "arrow export: out of memory");
    if (pin) atomic_fetch_add(&pin->refs, 1);
    n->pin = pin;
    a->length = (int64_t)length;
    a->n_buffers = n_buffers;
    a->buffers = n->buffers;
    a->private_data = n;
    a->release = sp_arrow_array_release;
    return SP_OK;
}

/* A string column's dictionary as a "u" array: int32 offsets and the bytes, copied. */
static sp_status sp_arrow_strings(struct ArrowArray *a, const sp_column *col)
{
    uint64_t total = 0;
    for (uint32_t k = 0; k < col->ndict; k++) total += col->dict_len[k];
    SP_RETURN_IF(total > INT32_MAX, SP_ERR_TOO_BIG,
                 "arrow export: column '%s': its %u strings hold %llu bytes, more than the 2^31-1 of a utf8 array",
                 col->name, col->ndict, (unsigned long long)total);
    SP_FORWARD(sp_arrow_array_init(a, NULL, col->ndict, 3));
    sp_arrow_node *n = a->private_data;
    n->offsets = sp__malloc(((size_t)col->ndict + 1) * sizeof *n->offsets);
    n->data = sp__malloc(total ? (size_t)total : 1);
    if (!n->offsets || !n->data) return sp__fail(SP_ERR_NOMEM, "arrow export: out of memory");
    int32_t at = 0;
    for (uint32_t k = 0; k < col->ndict; k++) {
        /* utf8 arrays must hold UTF-8, and a CSV's bytes were never checked */
        size_t bad = sp__utf8_bad_at(col->dict[k], col->dict_len[k]);
        SP_RETURN_IF(bad < col->dict_len[k], SP_ERR_INVALID,
                     "arrow export: column '%s': string %u is not UTF-8 (byte %zu is 0x%02x), which a utf8 array "
                     "must hold", col->name, k, bad, (unsigned)(unsigned char)col->dict[k][bad]);
        n->offsets[k] = at;
        memcpy(n->data + at, col->dict[k], col->dict_len[k]);
        at += (int32_t)col->dict_len[k];
    }
    n->offsets[col->ndict] = at;
    n->buffers[1] = n->offsets;
    n->buffers[2] = n->data;
    return SP_OK;
}

/* One column: its values, or its codes (uint32 indices) and a dictionary. */
static sp_status sp_arrow_column(struct ArrowArray *a, sp_arrow_pin *pin, const sp_column *col, uint64_t nrows)
{
    SP_FORWARD(sp_arrow_array_init(a, pin, nrows, 2));
    sp_arrow_node *n = a->private_data;
    switch (col->type) {
    case SP_COL_INT64: n->buffers[1] = col->i64; return SP_OK;
    case SP_COL_DOUBLE: n->buffers[1] = col->f64; return SP_OK;
    case SP_COL_UINT8:
        if (!col->codes) {
            n->buffers[1] = col->u8;
            return SP_OK;
        }
        n->buffers[1] = col->codes;
        a->dictionary = &n->dict;
        SP_FORWARD(sp_arrow_array_init(&n->dict, pin, col->ndict, 2));
        ((sp_arrow_node *)n->dict.private_data)->buffers[1] = col->u8;
        return SP_OK;
    case SP_COL_STRING:
        n->buffers[1] = col->codes;
        a->dictionary = &n->dict;
        return sp_arrow_strings(&n->dict, col);
    }
    return sp__fail(SP_ERR_INVALID, "arrow export: column '%s' has unknown type %d", col->name, (int)col->type);
}

/* The partition as a struct array, one child per column. */
static sp_status sp_arrow_struct(struct ArrowArray *a, sp_arrow_pin *pin, const sp_table *t)
{
    SP_FORWARD(sp_arrow_array_init(a, pin, t->nrows, 1));
    sp_arrow_node *n = a->private_data;
    if (!t->ncols) return SP_OK;
    n->kids = sp__calloc(t->ncols, sizeof *n->kids);
    n->children = sp__calloc(t->ncols, sizeof *n->children);
    if (!n->kids || !n->children) return sp__fail(SP_ERR_NOMEM, "arrow export: out of memory");
    for (uint32_t c = 0; c < t->ncols; c++) n->children[c] = &n->kids[c];
    n->nkids = t->ncols;
    a->n_children = t->ncols;
    a->children = n->children;
    for (uint32_t c = 0; c < t->ncols; c++) SP_FORWARD(sp_arrow_column(&n->kids[c], pin, &t->cols[c], t->nrows));
    return SP_OK;
}

/* ---- schemas ---- */

/* private_data of one ArrowSchema: it owns its strings, children and dictionary. */
typedef struct sp_arrow_snode {
    char *strings; /* format, then name, in one block */
    int64_t nkids;
    struct ArrowSchema *kids;
    struct ArrowSchema **children;
    struct ArrowSchema dict;
} sp_arrow_snode;

static void sp_arrow_schema_release(struct ArrowSchema *s)
{
    sp_arrow_snode *n = s->private_data;
    for (int64_t k = 0; k < n->nkids; k++)
        if (n->kids[k].release) n->kids[k].release(&n->kids[k]);
    if (n->dict.release) n->dict.release(&n->dict);
    sp__free(n->kids);
    sp__free(n->children);
    sp__free(n->strings);
    sp__free(n);
    s->release = NULL;
    s->private_data = NULL;
}

/* A not-nullable field of that format and name, no metadata. */
static sp_status sp_arrow_schema_init(struct ArrowSchema *s, const char *format, const char *name)
{
    memset(s, 0, sizeof *s);
    size_t fl = strlen(format) + 1, nl = strlen(name) + 1;
    sp_arrow_snode *n = sp__calloc(1, sizeof *n);
    char *strings = sp__malloc(fl + nl);
    if (!n || !strings) {
        sp__free(n);
        sp__free(strings);
        return sp__fail(SP_ERR_NOMEM, "arrow export: out of memory");
    }
    memcpy(strings, format, fl);
    memcpy(strings + fl, name, nl);
    n->strings = strings;
    s->format = strings;
    s->name = strings + fl;
    s->private_data = n;
    s->release = sp_arrow_schema_release;
    return SP_OK;
}

static sp_status sp_arrow_field(struct ArrowSchema *s, const sp_column *col)
{
    const char *format = "", *dict = NULL;
    switch (col->type) {
    case SP_COL_INT64: format = "l"; break;
    case SP_COL_DOUBLE: format = "g"; break;
    case SP_COL_UINT8:
        format = col->codes ? "I" : "C";
        dict = col->codes ? "C" : NULL;
        break;
    case SP_COL_STRING:
        format = "I";
        dict = "u";
        break;
    }
    SP_RETURN_IF(!format[0], SP_ERR_INVALID, "arrow export: column '%s' has unknown type %d", col->name,
                 (int)col->type);
    SP_FORWARD(sp_arrow_schema_init(s, format, col->name));
    if (!dict) return SP_OK;
    sp_arrow_snode *n = s->private_data;
    s->dictionary = &n->dict;
    return sp_arrow_schema_init(&n->dict, dict, "");
}

static sp_status sp_arrow_schema_struct(struct ArrowSchema *s, const sp_table *t)
{
    SP_FORWARD(sp_arrow_schema_init(s, "+s", ""));
    sp_arrow_snode *n = s->private_data;
    if (!t->ncols) return SP_OK;
    n->kids = sp__calloc(t->ncols, sizeof *n->kids);
    n->children = sp__calloc(t->ncols, sizeof *n->children);
    if (!n->kids || !n->children) return sp__fail(SP_ERR_NOMEM, "arrow export: out of memory");
    for (uint32_t c = 0; c < t->ncols; c++) n->children[c] = &n->kids[c];
    n->nkids = t->ncols;
    s->n_children = t->ncols;
    s->children = n->children;
    for (uint32_t c = 0; c < t->ncols; c++) SP_FORWARD(sp_arrow_field(&n->kids[c], &t->cols[c]));
    return SP_OK;
}

/* ---- export ---- */

sp_status sp_dtable_export_arrow(sp_dtable *t, uint32_t i, struct ArrowSchema *schema, struct ArrowArray *array)
{
    if (schema) memset(schema, 0, sizeof *schema);
    if (array) memset(array, 0, sizeof *array);
    SP_RETURN_IF(!t || !schema || !array, SP_ERR_INVALID, "sp_dtable_export_arrow: NULL argument");
    uint32_t nparts = sp_dtable_nparts(t);
    SP_RETURN_IF(i >= nparts, SP_ERR_INVALID, "sp_dtable_export_arrow: partition %u of a table of %u", i, nparts);
    sp_arrow_pin *pin = sp__calloc(1, sizeof *pin);
    SP_RETURN_IF(!pin, SP_ERR_NOMEM, "arrow export: out of memory");
    const sp_table *part;
    sp_status st = sp__dtable_pin(t, i, &pin->pool, &pin->ref, &part);
    if (st != SP_OK) {
        sp__free(pin);
        return st;
    }
    /* This call's own reference, dropped below: on success the arrays hold the rest,
     * on failure it is the last and unpins. */
    atomic_init(&pin->refs, 1);
    if (part->nrows > INT64_MAX)
        st = sp__fail(SP_ERR_TOO_BIG, "arrow export: partition %u has more rows than Arrow can count", i);
    if (st == SP_OK) st = sp_arrow_struct(array, pin, part);
    if (st == SP_OK) st = sp_arrow_schema_struct(schema, part);
    if (st != SP_OK) {
        if (array->release) array->release(array);
        if (schema->release) schema->release(schema);
    }
    sp_arrow_pin_drop(pin);
    return st;
}
