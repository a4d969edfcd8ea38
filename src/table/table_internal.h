/* Internals shared by the table layer's files. */
#ifndef SP_TABLE_INTERNAL_H
#define SP_TABLE_INTERNAL_H

#include "../common/error.h"
#include "spillpool/csv.h"
#include "spillpool/table.h"

/* A table with ncols zeroed columns and no rows. */
SP_HIDDEN sp_status sp__table_shell(uint32_t ncols, sp_table **out);
/* Allocate a column's arrays for nrows rows (not filled). */
SP_HIDDEN sp_status sp__column_alloc(sp_column *col, const char *name, sp_col_type type, int pooled, uint64_t nrows);
/* Replace a string column's dictionary with copies of n strings (lens NULL: strlen). */
SP_HIDDEN sp_status sp__column_set_dict(sp_column *col, uint32_t n, const char *const *s, const uint32_t *lens);

/* The CSV loader's decode with these options (a source is parsed, a spilled table
 * read back). */
SP_HIDDEN sp_status sp__csv_decode_with(sp_reader *r, uint64_t len, const sp_csv_options *opt, void **obj);

/* Pin partition i of t for reading: waits for its task, then *part is the table and
 * *ref a new reference to it; sp_unpin(pool, ref) then sp_release(pool, ref) after. */
SP_HIDDEN sp_status sp__dtable_pin(sp_dtable *t, uint32_t i, sp_pool **pool, sp_ref *ref, const sp_table **part);

/* A compiled `where` expression (expr.c). */
typedef struct sp_expr sp_expr;
/* Compile text against the columns of schema. Errors: SP_ERR_INVALID naming the
 * position and the problem (syntax, an unknown column, a string compared with a
 * number or the reverse). */
/* The result names of na aggregates (group-by's columns, reduce's values), with no
 * length cut, into names[na]; key: the group-by key, or NULL. Free with
 * sp__agg_names_free. Errors: SP_ERR_INVALID (two names meet), SP_ERR_NOMEM. */
SP_HIDDEN sp_status sp__agg_names(const char *key, uint32_t naggs, const sp_agg *aggs, uint32_t na, char **names);
SP_HIDDEN void sp__agg_names_free(uint32_t na, char **names);

/* Whether two of n names are the same; the names are the const char * at base,
 * base + stride, ... (a field of an array of structs). 1 with the first such pair in
 * *a < *b, 0 if none, -1 when out of memory. Hashed: a CSV header may be thousands
 * of columns wide. */
SP_HIDDEN int sp__names_repeat(const void *base, size_t stride, uint32_t n, uint32_t *a, uint32_t *b);

SP_HIDDEN sp_status sp__expr_compile(const char *text, const sp_table *schema, sp_expr **out);
/* keep[r] = 1 where the expression holds for row r of part (which has the schema's
 * columns at the same positions), else 0. Errors: SP_ERR_NOMEM. */
SP_HIDDEN sp_status sp__expr_eval(const sp_expr *e, const sp_table *part, uint8_t *keep);
SP_HIDDEN void sp__expr_free(sp_expr *e);

#endif
