/* The README's API tour as a program that runs (CTest runs it, so the tour stays
 * true): a pool, an object put, pinned and released; then a few CSV files queried
 * through tasks and a partitioned table, with the answer checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spillpool/spillpool.h>

static int fail(sp_status st, const char *what)
{
    fprintf(stderr, "tour: %s: %s: %s\n", what, sp_strerror(st), sp_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    sp_config cfg;
    sp_status st = sp_config_from_env(&cfg);
    if (st != SP_OK) return fail(st, "configuration");
    cfg.dir = dir;
    cfg.memory_bound = 4 << 20; /* small, so something spills */
    cfg.spill_ahead = 1 << 20;  /* the write-back headroom must be under the bound */
    sp_pool *pool;
    if ((st = sp_pool_open(&pool, &cfg)) != SP_OK) return fail(st, "opening the pool");

    /* An object: put (the pool owns it), pin, unpin, release. */
    sp_bytes *b = sp_bytes_new(1 << 20);
    if (!b) return fail(SP_ERR_NOMEM, "allocating");
    memset(b->data, 7, b->len);
    sp_ref r;
    if ((st = sp_put(pool, b, &sp_bytes_type, NULL, &r)) != SP_OK) return fail(st, "put");
    void *p;
    if ((st = sp_pin(pool, r, &p)) != SP_OK) return fail(st, "pin");
    int same = ((sp_bytes *)p)->data[12345] == 7;
    sp_unpin(pool, r);
    sp_release(pool, r);

    /* Three CSV files, then a query over them as a partitioned table. */
    /* Types come from the first file (or a schema in sp_csv_options): prices are
     * written with decimals everywhere, so the column is double in every file. */
    const char *rows[3] = {"sym,price\nAAA,101.0\nIBM,150.0\nBBB,99.5\n", "sym,price\nAAA,120.0\nBBB,130.0\n",
                           "sym,price\nIBM,200.0\nAAA,90.5\n"};
    char paths[3][512];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/tour-%d.csv", dir, i);
        FILE *f = fopen(paths[i], "w");
        if (!f || fputs(rows[i], f) < 0 || fclose(f) != 0) return fail(SP_ERR_IO, paths[i]);
    }
    const char *list[3] = {paths[0], paths[1], paths[2]};
    sp_dag *dag;
    if ((st = sp_dag_open(&dag, pool, NULL)) != SP_OK) return fail(st, "opening the dag");
    sp_dtable *t = NULL, *hot = NULL;
    sp_table *g = NULL;
    st = sp_dtable_from_csv(dag, 3, list, NULL, &t); /* reads only the first file, now */
    if (st == SP_OK) st = sp_dtable_where(t, "price > 100 and sym != 'IBM'", &hot);
    sp_agg aggs[2] = {{SP_AGG_COUNT, NULL}, {SP_AGG_MEAN, "price"}};
    if (st == SP_OK) st = sp_dtable_group_by(hot, "sym", 2, aggs, &g); /* one row per sym, sorted */
    if (st != SP_OK) return fail(st, "query");
    for (uint64_t i = 0; i < g->nrows; i++)
        printf("%s  count %lld  mean(price) %.2f\n", sp_table_str(g, 0, i), (long long)g->cols[1].i64[i],
               g->cols[2].f64[i]);
    /* price > 100, not IBM: AAA 101 and 120, BBB 130 */
    int right = g->nrows == 2 && strcmp(sp_table_str(g, 0, 0), "AAA") == 0 && g->cols[1].i64[0] == 2 &&
                g->cols[2].f64[0] == 110.5 && strcmp(sp_table_str(g, 0, 1), "BBB") == 0 && g->cols[1].i64[1] == 1;
    sp_table_free(g);
    sp_dtable_free(hot);
    sp_dtable_free(t);
    sp_dag_close(dag);
    sp_pool_fprint(pool, stdout);
    if ((st = sp_pool_close(pool)) != SP_OK) return fail(st, "closing the pool");
    for (int i = 0; i < 3; i++) remove(paths[i]);
    if (!same || !right) {
        fprintf(stderr, "tour: wrong answer\n");
        return 1;
    }
    printf("tour: ok\n");
    return 0;
}
