/* Partitioned tables: constructors, operations as tasks over partitions, fetch and
 * the iterator (see table.h). Reductions and group-by live in groupby.c.
 *
 * Lifetime: a dtable is counted: the caller's hold, and one per table made from it
 * (whose tasks read this one's partitions and may use this one's options). When the
 * count reaches zero, tasks not yet started are cancelled, running ones are waited
 * for, and everything is freed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../store/frame.h"
#include "table_internal.h"
#include "dtable.h"

/* ---- lifetime ---- */

static sp_status sp_dt_alloc(sp_dag *dag, sp_dtable *parent, uint32_t nparts, sp_dtable **out)
{
    sp_dtable *t = sp__calloc(1, sizeof *t);
    if (t) t->parts = sp__calloc(nparts ? nparts : 1, sizeof *t->parts);
    if (!t || !t->parts) {
        sp__free(t);
        return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    t->dag = dag;
    t->pool = sp_dag_pool(dag);
    atomic_init(&t->refs, 1);
    t->nparts = nparts;
    if (parent) {
        atomic_fetch_add(&parent->refs, 1);
        t->parent = parent;
        t->part_bytes = parent->part_bytes;
    }
    *out = t;
    return SP_OK;
}

void sp_dtable_free(sp_dtable *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    char why[1024]; /* freeing on an error path must not replace the error's message */
    snprintf(why, sizeof why, "%s", sp_last_error());
    for (uint32_t i = 0; i < t->nparts; i++)
        if (t->parts[i].kind == SP_ARG_TASK && t->parts[i].v.task) sp_task_cancel(t->dag, t->parts[i].v.task);
    for (uint32_t i = 0; i < t->nparts; i++) {
        if (t->parts[i].kind == SP_ARG_TASK && t->parts[i].v.task) {
            (void)sp_fetch(t->dag, t->parts[i].v.task, NULL); /* waits for a running task */
            sp_task_release(t->dag, t->parts[i].v.task);
        } else if (t->parts[i].kind == SP_ARG_REF && t->parts[i].v.ref)
            (void)sp_release(t->pool, t->parts[i].v.ref);
    }
    sp__free(t->parts);
    sp_table_free(t->schema);
    sp__free(t->keep_idx);
    sp__free(t->new_name);
    if (t->expr) sp__expr_free(t->expr);
    if (t->src) {
        sp_table_free(t->src->first);
        sp__free(t->src->types);
        sp__free(t->src->first_path);
        sp__free(t->src);
    }
    sp_dtable *parent = t->parent;
    sp__free(t);
    sp_dtable_free(parent);
    sp__fail(SP_OK, "%s", why);
}

uint32_t sp_dtable_nparts(const sp_dtable *t) { return t ? t->nparts : 0; }
const sp_table *sp_dtable_schema(const sp_dtable *t) { return t ? t->schema : NULL; }

/* A zero-row table with the given columns' names and types. */
static sp_status sp_schema_of(uint32_t n, const sp_column *cols, const uint32_t *idx, sp_table **out)
{
    sp_table *s;
    SP_FORWARD(sp__table_shell(n, &s));
    for (uint32_t c = 0; c < n; c++) {
        const sp_column *from = &cols[idx ? idx[c] : c];
        sp_status st = sp__column_alloc(&s->cols[c], from->name, from->type, from->codes != NULL, 0);
        if (st != SP_OK) {
            sp_table_free(s);
            return st;
        }
    }
    sp_table_recount(s);
    *out = s;
    return SP_OK;
}

/* "a, b, c": for messages about unknown columns. */
static void sp_names(const sp_table *s, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (uint32_t c = 0; c < s->ncols && at + 1 < cap; c++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", c ? ", " : "", s->cols[c].name);
}

sp_status sp__dtable_column(const sp_dtable *t, const char *name, const char *what, int *idx)
{
    *idx = sp_table_column(t->schema, name);
    if (*idx >= 0) return SP_OK;
    char names[512];
    sp_names(t->schema, names, sizeof names);
    return sp__fail(SP_ERR_INVALID, "%s: column '%s' does not exist (columns: %s)", what, name ? name : "(null)", names);
}

/* The end of every operation: if setting up `to` went well (st), spawn, for each
 * partition of `from`, fn with the partition as argument 0 and `to` as user (the
 * tasks become to's partitions) and hand `to` out; on any failure free it. */
static sp_status sp_dt_launch(sp_dtable *from, sp_dtable *to, sp_status st, sp_task_fn fn, const char *what,
                              sp_dtable **out)
{
    for (uint32_t i = 0; i < from->nparts && st == SP_OK; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s %u", what, i);
        sp_spawn_options o = {name, from->part_bytes};
        sp_task *task;
        st = sp_spawn(to->dag, fn, to, 1, &from->parts[i], &o, &task);
        if (st == SP_OK) to->parts[i] = sp_arg_task(task);
    }
    if (st != SP_OK) {
        sp_dtable_free(to);
        return st;
    }
    *out = to;
    return SP_OK;
}

/* ---- reading partitions ---- */

sp_status sp__dtable_pin(sp_dtable *t, uint32_t i, sp_pool **pool, sp_ref *ref, const sp_table **part)
{
    SP_RETURN_IF(!t || i >= t->nparts, SP_ERR_INVALID, "table: partition %u of %u", i, t ? t->nparts : 0);
    *pool = t->pool;
    sp_ref r = SP_REF_NULL;
    sp_status st;
    if (t->parts[i].kind == SP_ARG_TASK) {
        st = sp_fetch(t->dag, t->parts[i].v.task, &r);
        if (st == SP_OK && r == SP_REF_NULL) st = sp__fail(SP_ERR_INVALID, "table: partition %u has no table", i);
    } else {
        r = t->parts[i].v.ref;
        st = sp_addref(t->pool, r);
    }
    if (st != SP_OK) return sp__wrap(st, "partition %u", i);
    const void *obj;
    st = sp_pin_read(t->pool, r, &obj);
    if (st != SP_OK) {
        sp__wrap(st, "partition %u", i);
        (void)sp_release(t->pool, r);
        return st;
    }
    *ref = r;
    *part = obj;
    return SP_OK;
}

static void sp_unpin_part(sp_pool *pool, sp_ref r)
{
    (void)sp_unpin(pool, r);
    (void)sp_release(pool, r);
}

/* ---- generate ---- */

static sp_status sp_check_schema(const sp_table *s, const sp_table *p, const char *what)
{
    SP_RETURN_IF(p->ncols != s->ncols, SP_ERR_INVALID, "%s has %u columns; the schema has %u", what, p->ncols, s->ncols);
    for (uint32_t c = 0; c < s->ncols; c++) {
        const sp_column *a = &s->cols[c], *b = &p->cols[c];
        SP_RETURN_IF(strcmp(a->name, b->name) != 0, SP_ERR_INVALID, "%s: column %u is '%s'; the schema says '%s'", what,
                     c + 1, b->name, a->name);
        SP_RETURN_IF(a->type != b->type, SP_ERR_INVALID, "%s: column '%s' is %s; the schema says %s", what, a->name,
                     sp_col_type_name(b->type), sp_col_type_name(a->type));
        /* A code past the dictionary would be read (and written, by group-by's maps)
         * out of bounds later: refused here, where the partition is made. */
        if (b->codes && b->type == SP_COL_UINT8)
            SP_RETURN_IF(b->ndict > 256, SP_ERR_INVALID, "%s: column '%s' has %u values in its pool (at most 256)",
                         what, b->name, b->ndict);
        for (uint64_t r = 0; b->codes && r < p->nrows; r++)
            SP_RETURN_IF(b->codes[r] >= b->ndict, SP_ERR_INVALID,
                         "%s: column '%s', row %llu: code %u, but the dictionary holds %u values", what, b->name,
                         (unsigned long long)r, b->codes[r], b->ndict);
    }
    return SP_OK;
}

static sp_status sp_task_gen(sp_task_ctx *ctx, void *user)
{
    sp_dtable *t = user;
    uint32_t i = (uint32_t)sp_task_arg(ctx, 0)->v.u;
    sp_table *p = NULL;
    sp_status st = t->gen(i, t->gen_user, &p);
    if (st != SP_OK) return st;
    if (!p) return sp_task_fail(ctx, SP_ERR_INVALID, "generator made no table for partition %u", i);
    char what[48];
    snprintf(what, sizeof what, "generated partition %u", i);
    if ((st = sp_check_schema(t->schema, p, what)) != SP_OK) {
        sp_table_free(p);
        return st;
    }
    sp_table_recount(p);
    sp_task_set_result(ctx, p, &sp_table_type);
    return SP_OK;
}

sp_status sp_dtable_generate(sp_dag *dag, uint32_t ncols, const sp_col_spec *schema, uint32_t n, sp_gen_fn gen,
                             void *user, uint64_t part_bytes, sp_dtable **out)
{
    SP_RETURN_IF(!dag || !gen || !out || (ncols && !schema), SP_ERR_INVALID, "sp_dtable_generate: NULL argument");
    sp_table *s;
    SP_FORWARD(sp_table_new(ncols, schema, 0, &s));
    sp_dtable *t = NULL;
    sp_status st = sp_dt_alloc(dag, NULL, n, &t);
    if (st != SP_OK) {
        sp_table_free(s);
        return st;
    }
    t->schema = s;
    t->gen = gen;
    t->gen_user = user;
    t->part_bytes = part_bytes;
    for (uint32_t i = 0; i < n && st == SP_OK; i++) {
        char name[32];
        snprintf(name, sizeof name, "generate %u", i);
        sp_spawn_options o = {name, part_bytes};
        sp_arg a = {SP_ARG_VALUE, {.u = i}};
        sp_task *task;
        st = sp_spawn(dag, sp_task_gen, t, 1, &a, &o, &task);
        if (st == SP_OK) t->parts[i] = sp_arg_task(task);
    }
    if (st != SP_OK) {
        sp_dtable_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}

/* ---- from CSV files ---- */

/* Parse a source with the table's options, then check its header against the
 * first file's; read back the binary form once spilled. */
static sp_status sp_csv_src_decode(sp_reader *r, uint64_t len, void **obj)
{
    const sp_csv_src *src = sp_reader_arg(r);
    SP_FORWARD(sp__csv_decode_with(r, len, &src->opt, obj));
    if (!sp_reader_is_source(r) || !src->first) return SP_OK;
    sp_table *p = *obj;
    sp_status st = sp_check_schema(src->first, p, r->what);
    if (st != SP_OK) {
        sp_table_free(p);
        *obj = NULL;
        return sp__wrap(st, "its columns differ from the first file %s's", src->first_path);
    }
    return SP_OK;
}

sp_status sp_dtable_from_csv(sp_dag *dag, size_t nfiles, const char *const *paths, const sp_csv_options *opt,
                             sp_dtable **out)
{
    SP_RETURN_IF(!dag || !out || (nfiles && !paths), SP_ERR_INVALID, "sp_dtable_from_csv: NULL argument");
    SP_RETURN_IF(nfiles == 0, SP_ERR_INVALID, "sp_dtable_from_csv: no files");
    SP_RETURN_IF(nfiles > UINT32_MAX, SP_ERR_INVALID, "sp_dtable_from_csv: %zu files", nfiles);
    sp_dtable *t = NULL;
    SP_FORWARD(sp_dt_alloc(dag, NULL, (uint32_t)nfiles, &t));
    sp_csv_src *src = t->src = sp__calloc(1, sizeof *src);
    if (!src) {
        sp_dtable_free(t);
        return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    if (opt) src->opt = *opt;
    src->opt.schema_from = NULL; /* the caller's text may not outlive this call: not kept */
    if (opt && opt->schema) { /* the table keeps its own copy: the caller's may go */
        src->types = sp__calloc(opt->schema_cols ? opt->schema_cols : 1, sizeof *src->types);
        if (!src->types) {
            sp_dtable_free(t);
            return sp__fail(SP_ERR_NOMEM, "table: out of memory");
        }
        memcpy(src->types, opt->schema, opt->schema_cols * sizeof *src->types);
        src->opt.schema = src->types;
    }
    src->type = sp_csv_type;
    src->type.name = "csv table";
    src->type.decode = sp_csv_src_decode;
    src->type.arg = src;
    /* Registration does no I/O; the first file is then read for the schema, and the
     * others parse with its types (they are read only later, by tasks). */
    sp_status st = SP_OK;
    for (uint32_t i = 0; i < nfiles && st == SP_OK; i++) {
        st = sp_put_lazy(t->pool, paths[i], &src->type, NULL, &t->parts[i].v.ref);
        if (st == SP_OK) t->parts[i].kind = SP_ARG_REF;
    }
    sp_pool *pool;
    sp_ref r;
    const sp_table *first = NULL;
    /* A file with a header and no rows says nothing of the types (every column would
     * be a string): the schema comes from the first file that has rows. */
    uint32_t k = 0;
    int pinned = 0; /* first, file k, is pinned: unpinned on every path below */
    for (; st == SP_OK; k++) {
        st = sp__dtable_pin(t, k, &pool, &r, &first);
        pinned = st == SP_OK;
        if (st != SP_OK || first->nrows > 0 || k + 1 == nfiles || (opt && opt->schema)) break;
        sp_unpin_part(pool, r);
        pinned = 0;
    }
    if (st == SP_OK && !(src->first_path = sp__strdup(paths[k]))) st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
    /* The empty files before it were typed on their own: registered again, they
     * parse with the schema when a task needs them. */
    for (uint32_t i = 0; st == SP_OK && i < k; i++) {
        (void)sp_release(t->pool, t->parts[i].v.ref);
        t->parts[i].kind = SP_ARG_VALUE;
        st = sp_put_lazy(t->pool, paths[i], &src->type, NULL, &t->parts[i].v.ref);
        if (st == SP_OK) t->parts[i].kind = SP_ARG_REF;
    }
    if (st == SP_OK) {
        st = sp_schema_of(first->ncols, first->cols, NULL, &t->schema);
        if (st == SP_OK) st = sp_schema_of(first->ncols, first->cols, NULL, &src->first);
        if (st == SP_OK && !(opt && opt->schema)) {
            src->types = sp__calloc(first->ncols ? first->ncols : 1, sizeof *src->types);
            if (!src->types) st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
            for (uint32_t c = 0; src->types && c < first->ncols; c++) src->types[c] = first->cols[c].type;
            src->opt.schema = src->types;
            src->opt.schema_cols = first->ncols;
            src->opt.schema_from = src->first_path; /* named when a later value does not fit */
        }
    }
    if (pinned) sp_unpin_part(pool, r);
    if (st != SP_OK) {
        sp_dtable_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}

/* ---- copies of columns and rows ---- */

/* Copy column `from` into `to`, keeping the rows where keep[r] (all if keep NULL);
 * kept rows. */
static sp_status sp_copy_column(const sp_column *from, uint64_t nrows, const uint8_t *keep, uint64_t kept,
                                sp_column *to)
{
    SP_FORWARD(sp__column_alloc(to, from->name, from->type, from->codes != NULL, kept));
    size_t w = from->type == SP_COL_UINT8 && !from->codes ? 1 : from->type == SP_COL_STRING || from->codes ? 4 : 8;
    const unsigned char *src = from->type == SP_COL_INT64 ? (const void *)from->i64
                               : from->type == SP_COL_DOUBLE ? (const void *)from->f64
                               : from->codes ? (const void *)from->codes : (const void *)from->u8;
    unsigned char *dst = to->type == SP_COL_INT64 ? (void *)to->i64
                         : to->type == SP_COL_DOUBLE ? (void *)to->f64
                         : to->codes ? (void *)to->codes : (void *)to->u8;
    if (!keep) memcpy(dst, src, nrows * w);
    else {
        uint64_t k = 0;
        for (uint64_t r = 0; r < nrows; r++)
            if (keep[r]) memcpy(dst + (k++) * w, src + r * w, w);
    }
    if (from->type == SP_COL_STRING)
        SP_FORWARD(sp__column_set_dict(to, from->ndict, (const char *const *)from->dict, from->dict_len));
    else if (from->codes) {
        memcpy(to->u8, from->u8, from->ndict);
        to->ndict = from->ndict;
    }
    return SP_OK;
}

/* A table of columns idx[0..n) of p (rows where keep, or all). */
static sp_status sp_take(const sp_table *p, uint32_t n, const uint32_t *idx, const uint8_t *keep, uint32_t extra,
                         sp_table **out)
{
    uint64_t kept = p->nrows;
    if (keep) {
        kept = 0;
        for (uint64_t r = 0; r < p->nrows; r++) kept += keep[r];
    }
    sp_table *t = NULL;
    SP_FORWARD(sp__table_shell(n + extra, &t));
    t->ncols = 0;
    t->nrows = kept;
    sp_status st = SP_OK;
    for (uint32_t c = 0; c < n && st == SP_OK; c++) {
        st = sp_copy_column(&p->cols[idx ? idx[c] : c], p->nrows, keep, kept, &t->cols[c]);
        if (t->cols[c].name) t->ncols = c + 1;
    }
    if (st != SP_OK) {
        sp_table_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}

/* ---- map ---- */

static sp_status sp_task_map(sp_task_ctx *ctx, void *user)
{
    sp_dtable *t = user;
    const sp_table *p = sp_task_input(ctx, 0);
    sp_table *o;
    SP_FORWARD(sp_take(p, t->nkeep, t->keep_idx, NULL, 1, &o));
    sp_column *col = &o->cols[o->ncols];
    sp_status st = sp__column_alloc(col, t->new_name, t->new_type, 0, p->nrows);
    if (col->name) o->ncols++;
    if (st == SP_OK && t->new_at < o->ncols - 1) { /* a replaced column keeps its place */
        sp_column made = *col;
        memmove(&o->cols[t->new_at + 1], &o->cols[t->new_at], (o->ncols - 1 - t->new_at) * sizeof *o->cols);
        o->cols[t->new_at] = made;
        col = &o->cols[t->new_at];
    }
    sp__keymap km;
    sp__keymap_init(&km);
    for (uint64_t r = 0; r < p->nrows && st == SP_OK; r++) {
        sp_value v;
        memset(&v, 0, sizeof v);
        if ((st = t->map_fn(p, r, t->map_user, &v)) != SP_OK) break;
        switch (t->new_type) {
        case SP_COL_INT64: col->i64[r] = v.i; break;
        case SP_COL_DOUBLE: col->f64[r] = v.d; break;
        case SP_COL_UINT8: col->u8[r] = v.u8; break;
        case SP_COL_STRING: {
            const char *s = v.s ? v.s : "";
            st = sp__keymap_get(&km, s, (uint32_t)strlen(s), 1, &col->codes[r]);
            break;
        }
        }
    }
    if (st == SP_OK && t->new_type == SP_COL_STRING) st = sp__keymap_to_dict(&km, col);
    sp__keymap_free(&km);
    if (st != SP_OK) {
        sp_table_free(o);
        return st;
    }
    sp_table_recount(o);
    sp_task_set_result(ctx, o, &sp_table_type);
    return SP_OK;
}

sp_status sp_dtable_map(sp_dtable *from, const char *name, sp_col_type type, sp_map_fn fn, void *user, sp_dtable **out)
{
    SP_RETURN_IF(!from || !name || !name[0] || !fn || !out, SP_ERR_INVALID, "sp_dtable_map: NULL argument");
    SP_RETURN_IF(type < SP_COL_INT64 || type > SP_COL_UINT8, SP_ERR_INVALID, "sp_dtable_map: unknown type %d", (int)type);
    sp_dtable *t = NULL;
    SP_FORWARD(sp_dt_alloc(from->dag, from, from->nparts, &t));
    int replaced = sp_table_column(from->schema, name);
    t->keep_idx = sp__calloc(from->schema->ncols + 1, sizeof *t->keep_idx);
    t->new_name = sp__strdup(name);
    sp_status st = t->keep_idx && t->new_name ? SP_OK : sp__fail(SP_ERR_NOMEM, "table: out of memory");
    for (uint32_t c = 0; st == SP_OK && c < from->schema->ncols; c++)
        if ((int)c != replaced) t->keep_idx[t->nkeep++] = c;
    t->new_at = replaced >= 0 ? (uint32_t)replaced : t->nkeep;
    t->new_type = type;
    t->map_fn = fn;
    t->map_user = user;
    if (st == SP_OK) {
        sp_col_spec *spec = sp__calloc(t->nkeep + 1, sizeof *spec);
        if (!spec) st = sp__fail(SP_ERR_NOMEM, "table: out of memory");
        for (uint32_t c = 0, k = 0; spec && c <= t->nkeep; c++) {
            if (c == t->new_at) {
                spec[c] = (sp_col_spec){name, type, 0};
                continue;
            }
            const sp_column *col = &from->schema->cols[t->keep_idx[k++]];
            spec[c] = (sp_col_spec){col->name, col->type, col->codes != NULL};
        }
        if (spec) {
            st = sp_table_new(t->nkeep + 1, spec, 0, &t->schema);
        }
        sp__free(spec);
    }
    return sp_dt_launch(from, t, st, sp_task_map, "map", out);
}

/* ---- filter, where, select ---- */

static sp_status sp_task_filter(sp_task_ctx *ctx, void *user)
{
    sp_dtable *t = user;
    const sp_table *p = sp_task_input(ctx, 0);
    uint8_t *keep = sp__malloc(p->nrows ? p->nrows : 1);
    if (!keep) return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    sp_status st = SP_OK;
    if (t->expr) st = sp__expr_eval(t->expr, p, keep);
    else
        for (uint64_t r = 0; r < p->nrows; r++) keep[r] = t->pred(p, r, t->pred_user) != 0;
    sp_table *o = NULL;
    if (st == SP_OK) st = sp_take(p, p->ncols, NULL, keep, 0, &o);
    sp__free(keep);
    if (st != SP_OK) return st;
    sp_table_recount(o);
    sp_task_set_result(ctx, o, &sp_table_type);
    return SP_OK;
}

static sp_status sp_filter_common(sp_dtable *from, sp_pred_fn pred, void *user, sp_expr *e, sp_dtable **out)
{
    sp_dtable *t = NULL;
    sp_status st = sp_dt_alloc(from->dag, from, from->nparts, &t);
    if (st != SP_OK) {
        if (e) sp__expr_free(e);
        return st;
    }
    t->pred = pred;
    t->pred_user = user;
    t->expr = e;
    st = sp_schema_of(from->schema->ncols, from->schema->cols, NULL, &t->schema);
    return sp_dt_launch(from, t, st, sp_task_filter, e ? "where" : "filter", out);
}

sp_status sp_dtable_filter(sp_dtable *from, sp_pred_fn pred, void *user, sp_dtable **out)
{
    SP_RETURN_IF(!from || !pred || !out, SP_ERR_INVALID, "sp_dtable_filter: NULL argument");
    return sp_filter_common(from, pred, user, NULL, out);
}

sp_status sp_dtable_where(sp_dtable *from, const char *expr, sp_dtable **out)
{
    SP_RETURN_IF(!from || !expr || !out, SP_ERR_INVALID, "sp_dtable_where: NULL argument");
    sp_expr *e;
    SP_FORWARD(sp__expr_compile(expr, from->schema, &e));
    return sp_filter_common(from, NULL, NULL, e, out);
}

static sp_status sp_task_select(sp_task_ctx *ctx, void *user)
{
    sp_dtable *t = user;
    sp_table *o;
    SP_FORWARD(sp_take(sp_task_input(ctx, 0), t->nkeep, t->keep_idx, NULL, 0, &o));
    sp_table_recount(o);
    sp_task_set_result(ctx, o, &sp_table_type);
    return SP_OK;
}

sp_status sp_dtable_select(sp_dtable *from, uint32_t n, const char *const *names, sp_dtable **out)
{
    SP_RETURN_IF(!from || !out || (n && !names), SP_ERR_INVALID, "sp_dtable_select: NULL argument");
    uint32_t *idx = sp__calloc(n ? n : 1, sizeof *idx);
    SP_RETURN_IF(!idx, SP_ERR_NOMEM, "table: out of memory");
    for (uint32_t c = 0; c < n; c++) {
        int k;
        sp_status st = sp__dtable_column(from, names[c], "select", &k);
        for (uint32_t j = 0; st == SP_OK && j < c; j++)
            if (idx[j] == (uint32_t)k) st = sp__fail(SP_ERR_INVALID, "select: column '%s' named twice", names[c]);
        if (st != SP_OK) {
            sp__free(idx);
            return st;
        }
        idx[c] = (uint32_t)k;
    }
    sp_dtable *t = NULL;
    sp_status st = sp_dt_alloc(from->dag, from, from->nparts, &t);
    if (st != SP_OK) {
        sp__free(idx);
        return st;
    }
    t->keep_idx = idx;
    t->nkeep = n;
    st = sp_schema_of(n, from->schema->cols, idx, &t->schema);
    return sp_dt_launch(from, t, st, sp_task_select, "select", out);
}

/* ---- fetch: concatenate ---- */

/* Grow column `to` (of `have` rows, room for `cap`) by p's column c. Strings are
 * recoded into one dictionary through km. */
static sp_status sp_append_column(sp_column *to, sp__keymap *km, uint64_t have, uint64_t cap, const sp_column *from,
                                  uint64_t n)
{
    /* A concatenated uint8 column is plain (partitions' pools may differ). */
    size_t w = from->type == SP_COL_UINT8 ? 1 : from->type == SP_COL_STRING ? 4 : 8;
    void **arr = to->type == SP_COL_INT64 ? (void **)&to->i64 : to->type == SP_COL_DOUBLE ? (void **)&to->f64
                 : to->type == SP_COL_UINT8 ? (void **)&to->u8 : (void **)&to->codes;
    void *grown = sp__realloc(*arr, (cap ? cap : 1) * w);
    SP_RETURN_IF(!grown, SP_ERR_NOMEM, "fetch: out of memory for %llu rows", (unsigned long long)cap);
    *arr = grown;
    unsigned char *dst = (unsigned char *)grown + have * w;
    switch (from->type) {
    case SP_COL_INT64: memcpy(dst, from->i64, n * 8); break;
    case SP_COL_DOUBLE: memcpy(dst, from->f64, n * 8); break;
    case SP_COL_UINT8:
        if (!from->codes) memcpy(dst, from->u8, n);
        else
            for (uint64_t r = 0; r < n; r++) dst[r] = from->u8[from->codes[r]];
        break;
    case SP_COL_STRING: {
        uint32_t *map = sp__malloc((from->ndict ? from->ndict : 1) * sizeof *map);
        SP_RETURN_IF(!map, SP_ERR_NOMEM, "fetch: out of memory");
        sp_status st = SP_OK;
        for (uint32_t k = 0; k < from->ndict && st == SP_OK; k++)
            st = sp__keymap_get(km, from->dict[k], from->dict_len[k], 1, &map[k]);
        uint32_t *codes = (uint32_t *)(void *)dst;
        for (uint64_t r = 0; r < n && st == SP_OK; r++) codes[r] = map[from->codes[r]];
        sp__free(map);
        return st;
    }
    }
    return SP_OK;
}

sp_status sp_dtable_fetch(sp_dtable *t, sp_table **out)
{
    SP_RETURN_IF(!t || !out, SP_ERR_INVALID, "sp_dtable_fetch: NULL argument");
    const sp_table *s = t->schema;
    sp_table *o;
    SP_FORWARD(sp__table_shell(s->ncols, &o));
    sp__keymap *km = sp__calloc(s->ncols ? s->ncols : 1, sizeof *km);
    sp_status st = km ? SP_OK : sp__fail(SP_ERR_NOMEM, "fetch: out of memory");
    for (uint32_t c = 0; c < s->ncols && st == SP_OK; c++) {
        sp__keymap_init(&km[c]);
        o->cols[c].type = s->cols[c].type;
        if (!(o->cols[c].name = sp__strdup(s->cols[c].name))) st = sp__fail(SP_ERR_NOMEM, "fetch: out of memory");
    }
    uint64_t cap = 0;
    sp_dtable_iter *it = NULL;
    if (st == SP_OK) st = sp_dtable_iter_open(t, 2, &it);
    for (;;) {
        const sp_table *p = NULL;
        if (st != SP_OK || (st = sp_dtable_iter_next(it, &p)) != SP_OK || !p) break;
        if (o->nrows + p->nrows > cap) cap = (o->nrows + p->nrows) * 3 / 2;
        for (uint32_t c = 0; c < s->ncols && st == SP_OK; c++)
            st = sp_append_column(&o->cols[c], &km[c], o->nrows, cap, &p->cols[c], p->nrows);
        o->nrows += p->nrows;
    }
    sp_dtable_iter_close(it);
    for (uint32_t c = 0; c < s->ncols && km; c++) {
        if (st == SP_OK && o->cols[c].type == SP_COL_STRING) st = sp__keymap_to_dict(&km[c], &o->cols[c]);
        sp__keymap_free(&km[c]);
    }
    sp__free(km);
    /* Columns of a table with no rows still need their arrays. */
    for (uint32_t c = 0; c < s->ncols && st == SP_OK && o->nrows == 0; c++) {
        sp_column *col = &o->cols[c];
        void **arr = col->type == SP_COL_INT64 ? (void **)&col->i64 : col->type == SP_COL_DOUBLE ? (void **)&col->f64
                     : col->type == SP_COL_UINT8 ? (void **)&col->u8 : (void **)&col->codes;
        if (!*arr && !(*arr = sp__malloc(8))) st = sp__fail(SP_ERR_NOMEM, "fetch: out of memory");
        if (col->type == SP_COL_STRING && !col->dict) st = sp__column_set_dict(col, 0, NULL, NULL);
    }
    if (st != SP_OK) {
        sp_table_free(o);
        return st;
    }
    sp_table_recount(o);
    *out = o;
    return SP_OK;
}

/* ---- the iterator, with read-ahead threads ---- */

typedef struct {
    int done;
    uint32_t idx;
    sp_status st;
    char msg[512];
    sp_ref ref;
    const sp_table *part;
} sp_slot;

#define SP_ITER_THREADS 4
#define SP_ITER_AHEAD_MAX 64 /* partitions read ahead at most: more is taken as this */

struct sp_dtable_iter {
    sp_dtable *t;
    sp_pool *pool;
    unsigned ahead;
    uint32_t next;   /* the partition the caller gets next */
    sp_ref held;     /* the caller's current partition */
    sp_status failed;
    char failed_msg[512];
    /* Helpers read ahead side by side (restores are CPU work: read, checksum, filters):
     * helper k pins partitions k, k + nth, ... while they are within `ahead` of next. */
    pthread_t th[SP_ITER_THREADS];
    unsigned nth, stop;
    pthread_mutex_t m;
    pthread_cond_t c;
    sp_slot *slots;  /* ahead + 1: partition i in slot i % (ahead + 1) */
};

typedef struct {
    sp_dtable_iter *it;
    unsigned k;
} sp_iter_arg;

static void sp_iter_pin(sp_dtable_iter *it, uint32_t i, sp_slot *s)
{
    sp_pool *pool;
    s->idx = i;
    s->st = sp__dtable_pin(it->t, i, &pool, &s->ref, &s->part);
    if (s->st != SP_OK) snprintf(s->msg, sizeof s->msg, "%s", sp_last_error());
    s->done = 1;
}

static void *sp_iter_thread(void *arg)
{
    sp_dtable_iter *it = ((sp_iter_arg *)arg)->it;
    unsigned k = ((sp_iter_arg *)arg)->k;
    sp__free(arg);
    for (uint32_t i = k; i < it->t->nparts; i += it->nth) {
        pthread_mutex_lock(&it->m);
        while (!it->stop && i >= it->next + it->ahead) pthread_cond_wait(&it->c, &it->m);
        int stop = it->stop;
        pthread_mutex_unlock(&it->m);
        if (stop) break;
        sp_slot s;
        memset(&s, 0, sizeof s);
        sp_iter_pin(it, i, &s);
        pthread_mutex_lock(&it->m);
        it->slots[i % (it->ahead + 1)] = s;
        pthread_cond_broadcast(&it->c);
        pthread_mutex_unlock(&it->m);
        if (s.st != SP_OK) break; /* the caller stops at this partition, or reads on alone */
    }
    return NULL;
}

/* Stop the helpers and let go of what they pinned ahead; the caller reads on alone. */
static void sp_iter_stop_helpers(sp_dtable_iter *it, unsigned started)
{
    pthread_mutex_lock(&it->m);
    it->stop = 1;
    pthread_cond_broadcast(&it->c);
    pthread_mutex_unlock(&it->m);
    for (unsigned k = 0; k < started; k++) pthread_join(it->th[k], NULL);
    for (unsigned k = 0; k <= it->ahead; k++)
        if (it->slots[k].done && it->slots[k].st == SP_OK) sp_unpin_part(it->pool, it->slots[k].ref);
    memset(it->slots, 0, (it->ahead + 1) * sizeof *it->slots);
    it->stop = 0;
    it->nth = 0;
}

sp_status sp_dtable_iter_open(sp_dtable *t, unsigned readahead, sp_dtable_iter **out)
{
    SP_RETURN_IF(!t || !out, SP_ERR_INVALID, "sp_dtable_iter_open: NULL argument");
    if (readahead > SP_ITER_AHEAD_MAX) readahead = SP_ITER_AHEAD_MAX;
    sp_dtable_iter *it = sp__calloc(1, sizeof *it);
    if (it) it->slots = sp__calloc(readahead + 1, sizeof *it->slots);
    if (!it || !it->slots) {
        sp__free(it);
        return sp__fail(SP_ERR_NOMEM, "table: out of memory");
    }
    atomic_fetch_add(&t->refs, 1);
    it->t = t;
    it->pool = t->pool;
    it->ahead = readahead;
    pthread_mutex_init(&it->m, NULL);
    pthread_cond_init(&it->c, NULL);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = readahead < (unsigned)(ncpu > 0 ? ncpu : 1) ? readahead : (unsigned)(ncpu > 0 ? ncpu : 1);
    if (want > SP_ITER_THREADS) want = SP_ITER_THREADS;
    if (t->nparts == 0) want = 0;
    it->nth = want; /* fixed before any helper starts: each strides by it */
    unsigned started = 0;
    for (; started < want; started++) {
        sp_iter_arg *a = sp__malloc(sizeof *a);
        if (a) *a = (sp_iter_arg){it, started};
        if (!a || pthread_create(&it->th[started], NULL, sp_iter_thread, a) != 0) {
            sp__free(a);
            break;
        }
    }
    /* Fewer helpers than planned would leave partitions nobody reads: stop them and
     * read in the caller's thread instead. */
    if (started < want) sp_iter_stop_helpers(it, started);
    *out = it;
    return SP_OK;
}

sp_status sp_dtable_iter_next(sp_dtable_iter *it, const sp_table **part)
{
    SP_RETURN_IF(!it || !part, SP_ERR_INVALID, "sp_dtable_iter_next: NULL argument");
    *part = NULL;
    if (it->held != SP_REF_NULL) {
        sp_unpin_part(it->pool, it->held);
        it->held = SP_REF_NULL;
    }
    if (it->failed != SP_OK) return sp__fail(it->failed, "%s", it->failed_msg);
    if (it->next >= it->t->nparts) return SP_OK;
    sp_slot s;
    if (!it->nth) sp_iter_pin(it, it->next, &s);
    else {
        pthread_mutex_lock(&it->m);
        sp_slot *w = &it->slots[it->next % (it->ahead + 1)];
        while (!(w->done && w->idx == it->next)) pthread_cond_wait(&it->c, &it->m);
        s = *w;
        w->done = 0;
        pthread_mutex_unlock(&it->m);
        if (s.st == SP_ERR_MEMORY_FULL) {
            /* Reading ahead does not fit under the bound: it gives way. The helpers
             * stop and let go of their pins, and the caller reads on alone. */
            sp_iter_stop_helpers(it, it->nth);
            sp_iter_pin(it, it->next, &s);
        }
    }
    pthread_mutex_lock(&it->m);
    it->next++;
    pthread_cond_broadcast(&it->c);
    pthread_mutex_unlock(&it->m);
    if (s.st != SP_OK) {
        it->failed = s.st;
        snprintf(it->failed_msg, sizeof it->failed_msg, "%s", s.msg);
        return sp__fail(s.st, "%s", s.msg);
    }
    it->held = s.ref;
    *part = s.part;
    return SP_OK;
}

void sp_dtable_iter_close(sp_dtable_iter *it)
{
    if (!it) return;
    if (it->held != SP_REF_NULL) sp_unpin_part(it->pool, it->held);
    if (it->nth) sp_iter_stop_helpers(it, it->nth); /* and the partitions pinned ahead the caller never took */
    pthread_mutex_destroy(&it->m);
    pthread_cond_destroy(&it->c);
    sp_dtable_free(it->t);
    sp__free(it->slots);
    sp__free(it);
}
