/* The partitioned table's insides, shared by dtable.c, groupby.c and arrow.c. */
#ifndef SP_TABLE_DTABLE_H
#define SP_TABLE_DTABLE_H

#include <stdatomic.h>
#include "table_internal.h"

/* A table made from CSV files: the loader (a pool type whose arg is this struct)
 * and the options every file is parsed with. */
typedef struct sp_csv_src {
    sp_type type;
    sp_csv_options opt;
    sp_col_type *types;  /* the first file's types, when the caller gave none */
    sp_table *first;     /* the first file's columns (no rows) */
    char *first_path;    /* the file the types come from */
} sp_csv_src;

struct sp_dtable {
    sp_dag *dag;
    sp_pool *pool;
    atomic_uint refs;
    sp_dtable *parent;
    sp_table *schema;      /* no rows */
    uint32_t nparts;
    sp_arg *parts;         /* a task (its handle held) or a ref (a reference held) */
    uint64_t part_bytes;   /* expected size of a partition, for scheduling */
    /* what the tasks of this table need, by operation */
    sp_gen_fn gen;
    void *gen_user;
    sp_csv_src *src;
    uint32_t *keep_idx;    /* map, select: the input columns kept */
    uint32_t nkeep;
    char *new_name;        /* map */
    sp_col_type new_type;
    uint32_t new_at;       /* map: the new column's place (a replaced column's own) */
    sp_map_fn map_fn;
    void *map_user;
    sp_pred_fn pred;       /* filter */
    void *pred_user;
    sp_expr *expr;         /* where */
};

/* The index of column name in t's schema, or SP_ERR_INVALID naming what asked and
 * the columns there are. */
SP_HIDDEN sp_status sp__dtable_column(const sp_dtable *t, const char *name, const char *what, int *idx);

/* Byte strings to dense indices 0, 1, 2, ... in order of first insertion. */
typedef struct sp__keymap {
    uint32_t *slots; /* index + 1, 0 empty */
    uint32_t cap, n;
    char *blob;
    size_t blob_len, blob_cap;
    uint64_t *off;
    uint32_t *len;
    uint32_t nalloc;
} sp__keymap;
SP_HIDDEN void sp__keymap_init(sp__keymap *m);
SP_HIDDEN void sp__keymap_free(sp__keymap *m);
/* *idx for key; inserted when absent if insert, else SP_ERR_NOT_FOUND. */
SP_HIDDEN sp_status sp__keymap_get(sp__keymap *m, const void *key, uint32_t len, int insert, uint32_t *idx);
SP_HIDDEN const char *sp__keymap_key(const sp__keymap *m, uint32_t idx, uint32_t *len);
/* The keys, in index order, as col's string dictionary. */
SP_HIDDEN sp_status sp__keymap_to_dict(const sp__keymap *m, sp_column *col);

#endif
