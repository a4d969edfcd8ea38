/* spillpool table layer: typed columnar tables, and partitioned tables whose
 * partitions are pool objects, with operations that run as tasks over partitions.
 *
 * An sp_table is one in-memory table: named columns of int64, double, uint8 or
 * string. Strings are always dictionary-coded (a uint32 code per row into a table
 * of distinct strings, like the article's PooledArray); a uint8 column may be too
 * (codes into up to 256 values: PooledArray{UInt8}).
 *
 * An sp_dtable is a partitioned table: a schema and N partitions, each a pool object
 * (a task result or a registered CSV file), so a table larger than memory spills
 * and is read back as its partitions are used. Every operation spawns one task per
 * partition on the dag at once and returns a new sp_dtable; the work runs in the
 * background, and results are read with fetch, the iterator, reduce or group-by.
 *
 * Errors from a partition's task (a malformed CSV file, a generator that failed)
 * reach whoever reads that partition, with the file and the task named.
 *
 * Caveats
 * - Free every sp_dtable (and close every iterator) before closing its dag.
 * - Functions given to generate, map and filter run on worker threads, several at
 *   once: they must be thread safe, and their user data must outlive the table.
 */
#ifndef SPILLPOOL_TABLE_H
#define SPILLPOOL_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include "dag.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_col_type { SP_COL_INT64 = 1, SP_COL_DOUBLE = 2, SP_COL_STRING = 3, SP_COL_UINT8 = 4 } sp_col_type;

typedef struct sp_column {
    char *name;
    sp_col_type type;
    int64_t *i64;     /* SP_COL_INT64: nrows values */
    double *f64;      /* SP_COL_DOUBLE: nrows values */
    uint8_t *u8;      /* SP_COL_UINT8: nrows values, or (codes != NULL) ndict values */
    uint32_t *codes;  /* SP_COL_STRING, pooled SP_COL_UINT8: nrows codes, each < ndict */
    uint32_t ndict;
    char **dict;      /* SP_COL_STRING: dict[code], NUL-terminated; one block, owned by dict[0] */
    uint32_t *dict_len;
    /* Internal: the row arrays came from sp_table_new's large-buffer allocator (freed
     * by size, so the table's nrows must not change); 0 for arrays from malloc. */
    int large;
} sp_column;

typedef struct sp_table {
    uint32_t ncols;
    uint64_t nrows;
    sp_column *cols;
    size_t bytes; /* memory held, charged by the pool */
} sp_table;

/* A column to create: a name, a type, and for SP_COL_UINT8 whether it is pooled. */
typedef struct sp_col_spec {
    const char *name;
    sp_col_type type;
    int pooled;
} sp_col_spec;

/* A table of nrows rows whose column arrays are allocated, not filled: fill i64,
 * f64, u8 or codes; set a string column's strings with sp_table_set_dict and a
 * pooled uint8 column's values in u8[0..ndict) with ndict. Errors: SP_ERR_INVALID
 * (no name, a duplicate name, an unknown type), SP_ERR_TOO_BIG (more rows than
 * memory can address), SP_ERR_NOMEM. */
sp_status sp_table_new(uint32_t ncols, const sp_col_spec *cols, uint64_t nrows, sp_table **out);
/* Copy n strings into column c's dictionary (replacing any). */
sp_status sp_table_set_dict(sp_table *t, uint32_t c, uint32_t n, const char *const *strings);
/* Recount t->bytes after the columns were filled (sp_table_new counts the arrays). */
void sp_table_recount(sp_table *t);
void sp_table_free(sp_table *t);
/* The index of the column called name, or -1. */
int sp_table_column(const sp_table *t, const char *name);
/* Row r of column c as a number (strings: NaN). */
double sp_table_num(const sp_table *t, uint32_t c, uint64_t r);
/* Row r of string column c (NULL for other types). */
const char *sp_table_str(const sp_table *t, uint32_t c, uint64_t r);
const char *sp_col_type_name(sp_col_type t);

/* The pool type of a table (its stored form is a binary copy of the columns). */
extern const sp_type sp_table_type;

/* ---- Partitioned tables ---- */

typedef struct sp_dtable sp_dtable;

/* Makes partition i; called on a worker thread, so it must be thread safe. */
typedef sp_status (*sp_gen_fn)(uint32_t i, void *user, sp_table **out);

/* N partitions made by gen(i) for i in 0..n-1, which must each have exactly the
 * columns of `schema` (names and types). part_bytes is the expected size of one,
 * for scheduling. user must stay valid until every partition was made (sp_dag_wait).
 * Errors: SP_ERR_INVALID, SP_ERR_NOMEM. */
sp_status sp_dtable_generate(sp_dag *dag, uint32_t ncols, const sp_col_spec *schema, uint32_t n, sp_gen_fn gen,
                             void *user, uint64_t part_bytes, sp_dtable **out);

typedef struct sp_csv_options sp_csv_options;
/* One partition per CSV file, registered lazily (sp_put_lazy): a file is read when a
 * task first needs it. The schema is opt's, or else the first file's (parsed once,
 * now; files with a header and no rows are passed over, up to the first with rows,
 * since they say nothing of the types); every other file must have the same column names and values that fit the
 * types, or reading it fails naming the file. Errors: SP_ERR_INVALID (no files),
 * the first file's parse errors, SP_ERR_NOMEM. */
sp_status sp_dtable_from_csv(sp_dag *dag, size_t nfiles, const char *const *paths, const sp_csv_options *opt,
                             sp_dtable **out);

/* Drop the caller's hold; tables made from this one keep what they need. */
void sp_dtable_free(sp_dtable *t);
uint32_t sp_dtable_nparts(const sp_dtable *t);
/* The schema: a table of zero rows with the columns' names and types (owned by t). */
const sp_table *sp_dtable_schema(const sp_dtable *t);

/* map: set column `name` (added, or replaced if it exists) to fn(partition, row). */
typedef union sp_value {
    int64_t i;
    double d;
    uint8_t u8;
    const char *s; /* copied; valid until the next call */
} sp_value;
typedef sp_status (*sp_map_fn)(const sp_table *part, uint64_t row, void *user, sp_value *out);
sp_status sp_dtable_map(sp_dtable *t, const char *name, sp_col_type type, sp_map_fn fn, void *user, sp_dtable **out);

/* filter: keep the rows where pred(partition, row) is nonzero. */
typedef int (*sp_pred_fn)(const sp_table *part, uint64_t row, void *user);
sp_status sp_dtable_filter(sp_dtable *t, sp_pred_fn pred, void *user, sp_dtable **out);

/* filter by an expression: comparisons `COL OP VALUE` (OP one of = == != < <= > >=;
 * VALUE a number, or a string in single or double quotes) joined by `and`, `or`,
 * `not` and parentheses, e.g. "a = 'beta' and (b < 10 or b >= 250)". A column name
 * that is not letters, digits, '_' and '.' (starting with no digit) goes in
 * backquotes: `my-col` >= 2 (`` for a backquote inside). An integer column compares
 * exactly with the number as written, decimal or not (x = 1e18 is x = 10^18, and
 * x < 2.5 is x <= 2); a double column with the double the number rounds to; NaN
 * compares false, except with !=.
 * Errors: SP_ERR_INVALID naming the position and what was wrong, a column that does
 * not exist, or a string column compared with a number (and the reverse). */
sp_status sp_dtable_where(sp_dtable *t, const char *expr, sp_dtable **out);

/* select: only the named columns, in that order. Errors: SP_ERR_INVALID (unknown). */
sp_status sp_dtable_select(sp_dtable *t, uint32_t n, const char *const *names, sp_dtable **out);

typedef enum sp_agg_fn { SP_AGG_COUNT = 0, SP_AGG_SUM, SP_AGG_MIN, SP_AGG_MAX, SP_AGG_MEAN } sp_agg_fn;
typedef struct sp_agg {
    sp_agg_fn fn;
    const char *column; /* ignored by count */
} sp_agg;
/* "sum:price" -> {SP_AGG_SUM, "price"}; "count" alone is fine. The column points
 * into text. Errors: SP_ERR_INVALID. */
sp_status sp_agg_parse(const char *text, sp_agg *out);
const char *sp_agg_name(sp_agg_fn fn);

typedef struct sp_agg_value {
    int is_int;  /* count, or an int64 or uint8 column's sum/min/max of some rows: exact in i */
    int64_t i;
    double d;    /* always set: NaN for a sum, min, max or mean of no values */
} sp_agg_value;

/* Aggregate over every row. NaN values are skipped; a sum, min, max or mean of no
 * values (no rows, or only NaNs) is NaN with is_int 0, as SQL's is NULL, where
 * count is 0. A sum of an integer column is exact, or an error if it does not fit
 * in int64 (partial sums past it that come back in range are fine). Errors:
 * SP_ERR_INVALID (an unknown column, an aggregate other than count on a string
 * column, an integer sum outside int64, naming the column), and any partition's
 * error. */
sp_status sp_dtable_reduce(sp_dtable *t, uint32_t naggs, const sp_agg *aggs, sp_agg_value *out);

/* Group by column `key` and aggregate each group: *out has the key column then one
 * column per aggregate (named "count", "sum(col)", ...), one row per distinct key,
 * sorted by key. An aggregate named like the key column or an earlier aggregate is
 * numbered by its position from 1 ("count#2"). count is int64; sum, min and max of an
 * integer column are int64; of a double column, and every mean, double (NaN for a
 * group with no values but NaNs, as for reduce). Double keys group by value: -0.0
 * with 0.0 (shown as 0.0), and every NaN in one group, sorted last. Errors: as for
 * reduce (an integer sum outside int64 names the group too); SP_ERR_INVALID when the
 * key column is itself named like a numbered aggregate, saying what to rename. */
sp_status sp_dtable_group_by(sp_dtable *t, const char *key, uint32_t naggs, const sp_agg *aggs, sp_table **out);

/* Every partition concatenated into one in-memory table (the caller frees it).
 * Needs memory for the whole table outside the pool: for tables larger than memory,
 * iterate. */
sp_status sp_dtable_fetch(sp_dtable *t, sp_table **out);

/* Partitions one by one, in order, holding one (plus the read-ahead) at a time. */
typedef struct sp_dtable_iter sp_dtable_iter;
/* readahead: partitions pinned ahead of the caller by helper threads (0: none; at
 * most 64, more is taken as 64), one per core at most, so restores run side by side.
 * When a partition read ahead does not fit under the memory bound, the read-ahead
 * gives way: the helpers stop and let go of their pins, and the iteration goes on
 * without them. */
sp_status sp_dtable_iter_open(sp_dtable *t, unsigned readahead, sp_dtable_iter **out);
/* *part is the next partition (read only, valid until the next call), or NULL at
 * the end. Errors: the partition's. */
sp_status sp_dtable_iter_next(sp_dtable_iter *it, const sp_table **part);
void sp_dtable_iter_close(sp_dtable_iter *it);

/* ---- Arrow C Data Interface (https://arrow.apache.org/docs/format/CDataInterface.html) ---- */

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};
struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};
#endif

/* Export partition i as an Arrow struct array (one child per column) without
 * copying column data: int64 "l", double "g", uint8 "C", strings as a dictionary
 * ("I" codes into "u" strings, the strings copied), a pooled uint8 as "I" codes into
 * "C". No nulls, no validity bitmaps. The partition stays pinned until the array's
 * release callback has run (and that of any child the consumer moved out of it); the
 * schema owns copies of its strings and holds nothing. On error both have release ==
 * NULL. Release every exported array before sp_pool_close: closing the pool frees
 * the partitions the arrays point into. Errors: SP_ERR_INVALID (i out of range, or a
 * string that is not UTF-8, which an Arrow utf8 array must hold: CSV bytes are not
 * checked when read), the partition's errors, SP_ERR_TOO_BIG (a string dictionary of
 * more than 2^31-1 bytes), SP_ERR_NOMEM. */
sp_status sp_dtable_export_arrow(sp_dtable *t, uint32_t i, struct ArrowSchema *schema, struct ArrowArray *array);

#ifdef __cplusplus
}
#endif
#endif
