/* Partitioned tables: generate, map, filter, where, select, reduce, group-by, fetch
 * and iterate, against references computed directly; the same pipeline under a bound
 * a tenth of the data; CSV files read lazily; and the errors users meet. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spillpool/spillpool.h"
#include "spillpool/table.h"
#include "common/testing.h"
#include "testlib.h"

typedef t_dagfx fx;

static const char *const words[5] = {"ant", "bee", "cat", "dog", "eel"};
static const sp_col_spec schema[4] = {{"id", SP_COL_INT64, 0}, {"x", SP_COL_DOUBLE, 0}, {"w", SP_COL_STRING, 0},
                                      {"u", SP_COL_UINT8, 1}};
enum { ROWS = 3000 };

/* Row r of partition i, deterministic. */
static int64_t v_id(uint32_t i, uint64_t r) { return (int64_t)(i * ROWS + r); }
static double v_x(uint32_t i, uint64_t r) { return (double)((i * 7 + r * 13) % 1000) / 8.0 - 20.0; }
static uint32_t v_w(uint32_t i, uint64_t r) { return (uint32_t)((i + r * r) % 5); }
static uint8_t v_u(uint32_t i, uint64_t r) { return (uint8_t)((i * 3 + r) % 7 * 30); }

static sp_status gen(uint32_t i, void *user, sp_table **out)
{
    (void)user;
    sp_table *t;
    sp_status made = sp_table_new(4, schema, ROWS, &t);
    if (made != SP_OK) return made;
    sp_status st = sp_table_set_dict(t, 2, 5, words);
    /* u's pool: the 7 values 0, 30, ... 180, coded in reverse to make codes differ from values */
    for (unsigned k = 0; k < 7; k++) t->cols[3].u8[k] = (uint8_t)(180 - 30 * k);
    t->cols[3].ndict = 7;
    for (uint64_t r = 0; r < ROWS; r++) {
        t->cols[0].i64[r] = v_id(i, r);
        t->cols[1].f64[r] = v_x(i, r);
        t->cols[2].codes[r] = v_w(i, r);
        t->cols[3].codes[r] = (uint32_t)(6 - v_u(i, r) / 30);
    }
    sp_table_recount(t);
    *out = t;
    return st;
}

static sp_status gen_fails_at_3(uint32_t i, void *user, sp_table **out)
{
    if (i == 3) return SP_ERR_CORRUPT; /* with the thread's last message */
    return gen(i, user, out);
}

static void test_fetch_equals_generated(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t;
    t_ok(sp_dtable_generate(f->d, 4, schema, 6, gen, NULL, 100 << 10, &t));
    assert_int_equal(sp_dtable_nparts(t), 6);
    assert_int_equal(sp_dtable_schema(t)->ncols, 4);
    sp_table *all;
    t_ok(sp_dtable_fetch(t, &all));
    assert_int_equal(all->nrows, 6 * ROWS);
    for (uint32_t i = 0; i < 6; i++)
        for (uint64_t r = 0; r < ROWS; r++) {
            uint64_t k = i * ROWS + r;
            assert_int_equal(all->cols[0].i64[k], v_id(i, r));
            assert_true(all->cols[1].f64[k] == v_x(i, r));
            assert_string_equal(sp_table_str(all, 2, k), words[v_w(i, r)]);
            assert_int_equal((int)sp_table_num(all, 3, k), v_u(i, r));
        }
    sp_table_free(all);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

static sp_status map_y(const sp_table *p, uint64_t r, void *user, sp_value *out)
{
    (void)user;
    out->d = p->cols[1].f64[r] * 2 + sp_table_num(p, 3, r);
    return SP_OK;
}

static sp_status map_tag(const sp_table *p, uint64_t r, void *user, sp_value *out)
{
    (void)user;
    out->s = p->cols[0].i64[r] % 2 ? "odd" : "even";
    return SP_OK;
}

static int pred_id(const sp_table *p, uint64_t r, void *user)
{
    (void)user;
    return p->cols[0].i64[r] % 3 != 0;
}

typedef struct {
    double sum_y[5];
    int64_t n[5], min_id[5], max_id[5], sum_u[5];
    int64_t odd[5];
} ref_groups;

/* The pipeline of run_pipeline, computed row by row. */
static void reference(uint32_t nparts, ref_groups *g)
{
    memset(g, 0, sizeof *g);
    for (int k = 0; k < 5; k++) {
        g->min_id[k] = INT64_MAX;
        g->max_id[k] = INT64_MIN;
    }
    for (uint32_t i = 0; i < nparts; i++)
        for (uint64_t r = 0; r < ROWS; r++) {
            int64_t id = v_id(i, r);
            double x = v_x(i, r);
            if (id % 3 == 0 || !(x > -10 && v_u(i, r) != 60)) continue;
            uint32_t w = v_w(i, r);
            g->n[w]++;
            g->sum_y[w] += x * 2 + v_u(i, r);
            if (id < g->min_id[w]) g->min_id[w] = id;
            if (id > g->max_id[w]) g->max_id[w] = id;
            g->sum_u[w] += v_u(i, r);
            g->odd[w] += id % 2;
        }
}

/* generate -> map y -> map tag -> filter -> where -> select -> group-by w */
static sp_table *run_pipeline(fx *f, uint32_t nparts)
{
    sp_dtable *t0, *t1, *t2, *t3, *t4, *t5;
    t_ok(sp_dtable_generate(f->d, 4, schema, nparts, gen, NULL, 100 << 10, &t0));
    t_ok(sp_dtable_map(t0, "y", SP_COL_DOUBLE, map_y, NULL, &t1));
    t_ok(sp_dtable_map(t1, "tag", SP_COL_STRING, map_tag, NULL, &t2));
    t_ok(sp_dtable_filter(t2, pred_id, NULL, &t3));
    t_ok(sp_dtable_where(t3, "x > -10 and not (u = 60)", &t4));
    const char *cols[5] = {"w", "y", "id", "u", "tag"};
    t_ok(sp_dtable_select(t4, 5, cols, &t5));
    /* the caller's holds can go at once: each table keeps what it reads */
    sp_dtable_free(t0);
    sp_dtable_free(t1);
    sp_dtable_free(t2);
    sp_dtable_free(t3);
    sp_dtable_free(t4);
    sp_agg aggs[6];
    t_ok(sp_agg_parse("count", &aggs[0]));
    t_ok(sp_agg_parse("sum:y", &aggs[1]));
    t_ok(sp_agg_parse("min:id", &aggs[2]));
    t_ok(sp_agg_parse("max:id", &aggs[3]));
    t_ok(sp_agg_parse("sum:u", &aggs[4]));
    t_ok(sp_agg_parse("mean:y", &aggs[5]));
    sp_table *g;
    t_ok(sp_dtable_group_by(t5, "w", 6, aggs, &g));
    sp_dtable *odd;
    t_ok(sp_dtable_where(t5, "tag == 'odd'", &odd));
    sp_table *go;
    t_ok(sp_dtable_group_by(odd, "w", 0, NULL, &go));
    /* odd counts go in the last column of g's copy: a 7th column checked by the caller */
    assert_int_equal(go->nrows, g->nrows);
    for (uint64_t r = 0; r < g->nrows; r++) g->cols[6].f64[r] += 1000000.0 * (double)go->cols[1].i64[r];
    sp_table_free(go);
    sp_dtable_free(odd);
    sp_dtable_free(t5);
    return g;
}

static void check_groups(const sp_table *g, const ref_groups *want)
{
    assert_int_equal(g->ncols, 7);
    assert_string_equal(g->cols[0].name, "w");
    assert_string_equal(g->cols[1].name, "count");
    assert_string_equal(g->cols[2].name, "sum(y)");
    assert_string_equal(g->cols[6].name, "mean(y)");
    assert_int_equal(g->cols[3].type, SP_COL_INT64);
    assert_int_equal(g->cols[2].type, SP_COL_DOUBLE);
    assert_int_equal(g->nrows, 5);
    for (uint64_t r = 0; r < 5; r++) {
        assert_string_equal(sp_table_str(g, 0, r), words[r]); /* sorted by key */
        assert_int_equal(g->cols[1].i64[r], want->n[r]);
        assert_true(fabs(g->cols[2].f64[r] - want->sum_y[r]) < 1e-6 * (1 + fabs(want->sum_y[r])));
        assert_int_equal(g->cols[3].i64[r], want->min_id[r]);
        assert_int_equal(g->cols[4].i64[r], want->max_id[r]);
        assert_int_equal(g->cols[5].i64[r], want->sum_u[r]);
        double mean = want->sum_y[r] / (double)want->n[r] + 1000000.0 * (double)want->odd[r];
        assert_true(fabs(g->cols[6].f64[r] - mean) < 1e-6 * fabs(mean));
    }
}

static void test_pipeline_matches_reference(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(256 << 20, 0, 0);
    ref_groups want;
    reference(8, &want);
    sp_table *g = run_pipeline(f, 8);
    check_groups(g, &want);
    sp_table_free(g);
    t_dagfx_close(f);
}

/* 40 partitions of ~100 KiB (and their map/filter results) under 400 KiB: the same
 * answer as with room for everything. */
static void test_pipeline_under_tenth_bound_same_answer(void **state)
{
    (void)state;
    fx *big = t_dagfx_open(1 << 30, 0, 0), *small = t_dagfx_open(400 << 10, 0, 0);
    sp_table *a = run_pipeline(big, 40), *b = run_pipeline(small, 40);
    ref_groups want;
    reference(40, &want);
    check_groups(a, &want);
    check_groups(b, &want);
    for (uint32_t c = 1; c < a->ncols; c++)
        assert_memory_equal(c == 2 || c == 6 ? (void *)a->cols[c].f64 : (void *)a->cols[c].i64,
                            c == 2 || c == 6 ? (void *)b->cols[c].f64 : (void *)b->cols[c].i64, 5 * 8);
    sp_stats s;
    t_ok(sp_pool_stats(small->p, &s));
    assert_true(s.evictions > 40);
    assert_true(s.misses > 0);
    sp_table_free(a);
    sp_table_free(b);
    t_dagfx_close(big);
    t_dagfx_close(small);
}

static void test_reduce_matches_reference(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t;
    t_ok(sp_dtable_generate(f->d, 4, schema, 5, gen, NULL, 100 << 10, &t));
    sp_agg aggs[5] = {{SP_AGG_COUNT, NULL}, {SP_AGG_SUM, "id"}, {SP_AGG_MIN, "x"}, {SP_AGG_MAX, "u"}, {SP_AGG_MEAN, "x"}};
    sp_agg_value v[5];
    t_ok(sp_dtable_reduce(t, 5, aggs, v));
    int64_t n = 0, sid = 0, maxu = 0;
    double minx = INFINITY, sx = 0;
    for (uint32_t i = 0; i < 5; i++)
        for (uint64_t r = 0; r < ROWS; r++) {
            n++;
            sid += v_id(i, r);
            if (v_x(i, r) < minx) minx = v_x(i, r);
            if (v_u(i, r) > maxu) maxu = v_u(i, r);
            sx += v_x(i, r);
        }
    assert_true(v[0].is_int);
    assert_int_equal(v[0].i, n);
    assert_true(v[1].is_int);
    assert_int_equal(v[1].i, sid);
    assert_false(v[2].is_int);
    assert_true(v[2].d == minx);
    assert_true(v[3].is_int);
    assert_int_equal(v[3].i, maxu);
    assert_true(fabs(v[4].d - sx / (double)n) < 1e-9);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

static void test_group_by_numeric_keys(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t;
    t_ok(sp_dtable_generate(f->d, 4, schema, 3, gen, NULL, 100 << 10, &t));
    sp_table *g;
    sp_agg a = {SP_AGG_SUM, "id"};
    t_ok(sp_dtable_group_by(t, "u", 1, &a, &g));
    assert_int_equal(g->nrows, 7);
    for (uint64_t r = 0; r < 7; r++) {
        int64_t want = 0;
        for (uint32_t i = 0; i < 3; i++)
            for (uint64_t k = 0; k < ROWS; k++)
                if (v_u(i, k) == 30 * r) want += v_id(i, k);
        assert_int_equal((int)sp_table_num(g, 0, r), 30 * r);
        assert_int_equal(g->cols[1].i64[r], want);
    }
    sp_table_free(g);
    t_ok(sp_dtable_group_by(t, "x", 0, NULL, &g)); /* a double key: sorted numerically */
    for (uint64_t r = 1; r < g->nrows; r++) assert_true(g->cols[0].f64[r - 1] < g->cols[0].f64[r]);
    int64_t total = 0;
    for (uint64_t r = 0; r < g->nrows; r++) total += g->cols[1].i64[r];
    assert_int_equal(total, 3 * ROWS);
    sp_table_free(g);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* Every partition of t (12 of gen's), in order, through an iterator reading ahead
 * `ahead` partitions. */
static void iterate_all(sp_dtable *t, unsigned ahead)
{
    sp_dtable_iter *it;
    t_ok(sp_dtable_iter_open(t, ahead, &it));
    uint32_t i = 0;
    for (const sp_table *p;; i++) {
        t_ok(sp_dtable_iter_next(it, &p));
        if (!p) break;
        assert_int_equal(p->nrows, ROWS);
        assert_int_equal(p->cols[0].i64[17], v_id(i, 17));
    }
    assert_int_equal(i, 12);
    sp_dtable_iter_close(it);
}

static void assert_nothing_pinned(sp_pool *p)
{
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.objects_pinned, 0);
}

static void test_iterate_with_and_without_readahead(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(300 << 10, 0, 0);
    sp_dtable *t;
    t_ok(sp_dtable_generate(f->d, 4, schema, 12, gen, NULL, 100 << 10, &t));
    for (unsigned ra = 0; ra < 4; ra += 3) iterate_all(t, ra);
    /* Closed half way, with partitions pinned ahead: nothing stays pinned. */
    sp_dtable_iter *it;
    t_ok(sp_dtable_iter_open(t, 3, &it));
    const sp_table *p;
    t_ok(sp_dtable_iter_next(it, &p));
    sp_dtable_iter_close(it);
    assert_nothing_pinned(f->p);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* Read-ahead that does not fit under the bound gives way instead of failing the
 * iteration: 3 ahead of about 72 KB each, and "as many as you like", under 200 KB. */
static void test_readahead_over_the_bound_gives_way(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(200 << 10, 0, 0);
    sp_dtable *t;
    t_ok(sp_dtable_generate(f->d, 4, schema, 12, gen, NULL, 100 << 10, &t));
    sp_dag_wait(f->d);
    static const unsigned ahead[] = {3, 4294967295u};
    for (unsigned k = 0; k < 2; k++)
        for (int round = 0; round < 3; round++) iterate_all(t, ahead[k]);
    assert_nothing_pinned(f->p);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* map over an existing name replaces that column in its place: the others keep
 * their positions (fetch and Arrow export read columns by position). */
static void test_map_replaces_a_column_in_place(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t, *m;
    t_ok(sp_dtable_generate(f->d, 4, schema, 3, gen, NULL, 100 << 10, &t));
    t_ok(sp_dtable_map(t, "x", SP_COL_DOUBLE, map_y, NULL, &m)); /* x := 2x + u */
    const sp_table *sc = sp_dtable_schema(m);
    assert_int_equal(sc->ncols, 4);
    for (uint32_t c = 0; c < 4; c++) {
        assert_string_equal(sc->cols[c].name, sp_dtable_schema(t)->cols[c].name);
        assert_int_equal(sc->cols[c].type, sp_dtable_schema(t)->cols[c].type);
    }
    sp_table *all;
    t_ok(sp_dtable_fetch(m, &all));
    for (uint32_t i = 0; i < 3; i++)
        for (uint64_t r = 0; r < ROWS; r++) {
            uint64_t k = i * ROWS + r;
            assert_string_equal(all->cols[1].name, "x");
            assert_int_equal(all->cols[0].i64[k], v_id(i, r));
            assert_true(all->cols[1].f64[k] == v_x(i, r) * 2 + v_u(i, r));
            assert_string_equal(sp_table_str(all, 2, k), words[v_w(i, r)]);
            assert_int_equal((int)sp_table_num(all, 3, k), v_u(i, r));
        }
    sp_table_free(all);
    sp_dtable_free(m);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

static void test_failed_partition_reported_to_reader(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t, *m;
    t_ok(sp_dtable_generate(f->d, 4, schema, 6, gen_fails_at_3, NULL, 100 << 10, &t));
    t_ok(sp_dtable_map(t, "y", SP_COL_DOUBLE, map_y, NULL, &m));
    sp_table *all;
    t_status(sp_dtable_fetch(m, &all), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "partition 3"));
    assert_non_null(strstr(sp_last_error(), "task 'generate 3' failed"));
    sp_agg_value v;
    sp_agg c = {SP_AGG_COUNT, NULL};
    t_status(sp_dtable_reduce(t, 1, &c, &v), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "generate 3"));
    sp_dtable_free(m);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

static sp_status gen_wrong_schema(uint32_t i, void *user, sp_table **out)
{
    (void)i;
    (void)user;
    static const sp_col_spec one[1] = {{"id", SP_COL_DOUBLE, 0}};
    return sp_table_new(1, one, 1, out);
}

/* As gen, but partition 1's string column has a code past its dictionary. */
static sp_status gen_bad_code(uint32_t i, void *user, sp_table **out)
{
    sp_status st = gen(i, user, out);
    if (st == SP_OK && i == 1) (*out)->cols[2].codes[3] = 5;
    return st;
}

static void test_bad_operations_rejected(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t, *o;
    t_ok(sp_dtable_generate(f->d, 4, schema, 2, gen, NULL, 100 << 10, &t));
    const char *nope[1] = {"nope"};
    t_status(sp_dtable_select(t, 1, nope, &o), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "column 'nope' does not exist (columns: id, x, w, u)"));
    t_status(sp_dtable_where(t, "w > 3", &o), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "'w'"));
    t_status(sp_dtable_where(t, "id = 'x'", &o), SP_ERR_INVALID);
    sp_agg a = {SP_AGG_SUM, "w"};
    sp_table *g;
    t_status(sp_dtable_group_by(t, "id", 1, &a, &g), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "sum of column 'w', which holds strings"));
    t_status(sp_dtable_group_by(t, "zz", 0, NULL, &g), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "column 'zz' does not exist"));
    sp_agg bad;
    t_status(sp_agg_parse("median:x", &bad), SP_ERR_INVALID);
    t_status(sp_agg_parse("sum", &bad), SP_ERR_INVALID);
    sp_dtable *w;
    t_ok(sp_dtable_generate(f->d, 4, schema, 2, gen_wrong_schema, NULL, 0, &w));
    t_status(sp_dtable_fetch(w, &g), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "generated partition 0 has 1 columns; the schema has 4"));
    sp_dtable_free(w);
    t_ok(sp_dtable_generate(f->d, 4, schema, 2, gen_bad_code, NULL, 0, &w));
    t_status(sp_dtable_group_by(w, "w", 0, NULL, &g), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "generated partition 1: column 'w', row 3: code 5, but the dictionary "
                                            "holds 5 values"));
    sp_dtable_free(w);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* ---- CSV ---- */

static char *write_file(const char *dir, const char *name, const char *text)
{
    size_t cap = strlen(dir) + strlen(name) + 2;
    char *path = malloc(cap);
    assert_non_null(path);
    snprintf(path, cap, "%s/%s", dir, name);
    t_spew(path, (const unsigned char *)text, strlen(text));
    return path;
}

static void test_csv_files_lazily_with_hand_computed_answer(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    char *src = t_tmpdir();
    char *paths[3] = {
        write_file(src, "h1.csv", "sym,price,qty\nAAA,10.5,3\nBBB,20,1\nAAA,11.5,2\n"),
        write_file(src, "h2.csv", "sym,price,qty\nCCC,5,10\nAAA,12,1\n"),
        write_file(src, "h3.csv", "sym,price,qty\n\"BBB\",22,4\n\"C,C\",1,1\n"),
    };
    sp_dtable *t;
    t_ok(sp_dtable_from_csv(f->d, 3, (const char *const *)paths, NULL, &t));
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.lazy_loads, 1); /* only the first file, for the schema */
    const sp_table *sc = sp_dtable_schema(t);
    assert_int_equal(sc->cols[1].type, SP_COL_DOUBLE);
    assert_int_equal(sc->cols[2].type, SP_COL_INT64);
    sp_dtable *w;
    t_ok(sp_dtable_where(t, "qty >= 2", &w));
    sp_agg aggs[3] = {{SP_AGG_COUNT, NULL}, {SP_AGG_SUM, "qty"}, {SP_AGG_MAX, "price"}};
    sp_table *g;
    t_ok(sp_dtable_group_by(w, "sym", 3, aggs, &g));
    /* qty >= 2: AAA 10.5x3, AAA 11.5x2, CCC 5x10, BBB 22x4 */
    assert_int_equal(g->nrows, 3);
    assert_string_equal(sp_table_str(g, 0, 0), "AAA");
    assert_int_equal(g->cols[1].i64[0], 2);
    assert_int_equal(g->cols[2].i64[0], 5);
    assert_true(g->cols[3].f64[0] == 11.5);
    assert_string_equal(sp_table_str(g, 0, 1), "BBB");
    assert_int_equal(g->cols[2].i64[1], 4);
    assert_true(g->cols[3].f64[1] == 22);
    assert_string_equal(sp_table_str(g, 0, 2), "CCC");
    assert_int_equal(g->cols[2].i64[2], 10);
    sp_table_free(g);
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.lazy_loads, 3);
    sp_dtable_free(w);
    sp_dtable_free(t);
    for (int i = 0; i < 3; i++) free(paths[i]);
    t_rmrf(src);
    free(src);
    t_dagfx_close(f);
}

/* Files with a header and no rows first: the types come from the first file with
 * rows, and the empty files parse with them. */
static void test_csv_schema_from_the_first_file_with_rows(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    char *src = t_tmpdir();
    char *paths[4] = {
        write_file(src, "e1.csv", "k,v\n"),
        write_file(src, "e2.csv", "k,v\n"),
        write_file(src, "d1.csv", "k,v\nx,1\ny,2.5\n"),
        write_file(src, "d2.csv", "k,v\nx,3\n"),
    };
    sp_dtable *t;
    t_ok(sp_dtable_from_csv(f->d, 4, (const char *const *)paths, NULL, &t));
    const sp_table *sc = sp_dtable_schema(t);
    assert_int_equal(sc->cols[0].type, SP_COL_STRING);
    assert_int_equal(sc->cols[1].type, SP_COL_DOUBLE);
    sp_dtable *w;
    t_ok(sp_dtable_where(t, "v > 1", &w));
    sp_agg sum = {SP_AGG_SUM, "v"};
    sp_table *g;
    t_ok(sp_dtable_group_by(w, "k", 1, &sum, &g));
    assert_int_equal(g->nrows, 2);
    assert_string_equal(sp_table_str(g, 0, 0), "x");
    assert_true(g->cols[1].f64[0] == 3);
    assert_string_equal(sp_table_str(g, 0, 1), "y");
    assert_true(g->cols[1].f64[1] == 2.5);
    sp_table_free(g);
    sp_dtable_free(w);
    sp_dtable_free(t);
    for (int i = 0; i < 4; i++) free(paths[i]);
    t_rmrf(src);
    free(src);
    t_dagfx_close(f);
}

/* Out of memory at every allocation of a construction that passes over an empty
 * first file: it fails cleanly, with nothing left pinned or in the pool. */
static void test_csv_from_files_out_of_memory_leaves_nothing(void **state)
{
    (void)state;
    char *src = t_tmpdir();
    char *paths[3] = {
        write_file(src, "e.csv", "k,v\n"),
        write_file(src, "d1.csv", "k,v\nx,1\n"),
        write_file(src, "d2.csv", "k,v\ny,2\n"),
    };
    int failed = 0;
    for (long n = 0;; n++) {
        fx *f = t_dagfx_open(64 << 20, 0, 0);
        sp_dtable *t = NULL;
        sp_testing_fail_alloc_after(n);
        sp_status st = sp_dtable_from_csv(f->d, 3, (const char *const *)paths, NULL, &t);
        sp_testing_fail_alloc_after(-1);
        if (st != SP_OK) {
            t_status(st, SP_ERR_NOMEM);
            failed++;
        }
        sp_dtable_free(t);
        t_dagfx_close(f); /* checks that nothing is pinned or left */
        if (st == SP_OK) break;
    }
    assert_true(failed > 0);
    for (int i = 0; i < 3; i++) free(paths[i]);
    t_rmrf(src);
    free(src);
}

static void test_csv_schemas_that_disagree_name_the_file(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    char *src = t_tmpdir();
    char *paths[3] = {
        write_file(src, "a.csv", "k,v\nx,1\n"),
        write_file(src, "b.csv", "k,w\ny,2\n"),
        write_file(src, "c.csv", "k,v\nz,2.5\n"),
    };
    sp_dtable *t;
    t_ok(sp_dtable_from_csv(f->d, 3, (const char *const *)paths, NULL, &t));
    sp_dtable_iter *it;
    t_ok(sp_dtable_iter_open(t, 0, &it));
    const sp_table *p;
    t_ok(sp_dtable_iter_next(it, &p));
    t_status(sp_dtable_iter_next(it, &p), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "b.csv"));
    assert_non_null(strstr(sp_last_error(), "column 2 is 'w'; the schema says 'v'"));
    assert_non_null(strstr(sp_last_error(), "a.csv"));
    sp_dtable_iter_close(it);
    sp_agg c = {SP_AGG_SUM, "v"};
    sp_agg_value v;
    const char *two[2] = {paths[0], paths[2]};
    sp_dtable *t2;
    t_ok(sp_dtable_from_csv(f->d, 2, two, NULL, &t2));
    t_status(sp_dtable_reduce(t2, 1, &c, &v), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "c.csv"));
    const char *missing[2] = {paths[0], "/nonexistent/zz.csv"};
    sp_dtable *t3;
    t_ok(sp_dtable_from_csv(f->d, 2, missing, NULL, &t3)); /* registration reads only the first */
    t_status(sp_dtable_reduce(t3, 1, &c, &v), SP_ERR_NOT_FOUND);
    assert_non_null(strstr(sp_last_error(), "zz.csv"));
    /* A schema given by the caller (copied: the caller's array may go at once). */
    sp_col_type *types = malloc(2 * sizeof *types);
    types[0] = SP_COL_STRING;
    types[1] = SP_COL_DOUBLE;
    sp_csv_options so = {.schema = types, .schema_cols = 2};
    sp_dtable *t5;
    t_ok(sp_dtable_from_csv(f->d, 2, two, &so, &t5));
    free(types);
    sp_agg_value sum;
    sp_agg sv = {SP_AGG_SUM, "v"};
    t_ok(sp_dtable_reduce(t5, 1, &sv, &sum)); /* 1 and 2.5 both fit a double */
    assert_false(sum.is_int);
    assert_true(sum.d == 3.5);
    sp_dtable_free(t5);
    const char *bad_first[1] = {"/nonexistent/first.csv"};
    sp_dtable *t4;
    t_status(sp_dtable_from_csv(f->d, 1, bad_first, NULL, &t4), SP_ERR_NOT_FOUND);
    sp_dtable_free(t3);
    sp_dtable_free(t2);
    sp_dtable_free(t);
    for (int i = 0; i < 3; i++) free(paths[i]);
    t_rmrf(src);
    free(src);
    t_dagfx_close(f);
}

/* ---- group-by and reduce edge cases, on small hand-made partitions ---- */

static double d_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* Double keys k (v = 1 a row): zeros of both signs and NaNs of several bit patterns
 * spread over three partitions. */
static sp_status gen_dkeys(uint32_t i, void *user, sp_table **out)
{
    (void)user;
    static const sp_col_spec sc[2] = {{"k", SP_COL_DOUBLE, 0}, {"v", SP_COL_INT64, 0}};
    double k[3][6] = {
        {3, d_bits(0x7ff8000000000000ull), 1, -0.0, 2, 5},           /* a quiet NaN */
        {0.0, d_bits(0xfff8000000000000ull), 0.5, -0.0, 4, 4},       /* negative NaN */
        {d_bits(0x7ff800000000beefull), d_bits(0x7ff0000000000001ull), /* payload, signalling */
         2, 0.0, 3, 1},
    };
    sp_table *t;
    sp_status st = sp_table_new(2, sc, 6, &t);
    if (st != SP_OK) return st;
    for (uint64_t r = 0; r < 6; r++) {
        t->cols[0].f64[r] = k[i][r];
        t->cols[1].i64[r] = 1;
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

/* -0.0 and 0.0 are one group (shown as 0.0), every NaN is one group, sorted last. */
static void test_group_by_double_keys_zero_and_nan(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t;
    static const sp_col_spec sc[2] = {{"k", SP_COL_DOUBLE, 0}, {"v", SP_COL_INT64, 0}};
    t_ok(sp_dtable_generate(f->d, 2, sc, 3, gen_dkeys, NULL, 1024, &t));
    sp_table *g;
    sp_agg a = {SP_AGG_SUM, "v"};
    t_ok(sp_dtable_group_by(t, "k", 1, &a, &g));
    static const double want_k[7] = {0, 0.5, 1, 2, 3, 4, 5};
    static const int64_t want_n[8] = {4, 1, 2, 2, 2, 2, 1, 4};
    assert_int_equal(g->nrows, 8);
    for (uint64_t r = 0; r < 7; r++) {
        assert_true(g->cols[0].f64[r] == want_k[r]);
        assert_int_equal(g->cols[1].i64[r], want_n[r]);
    }
    assert_false(signbit(g->cols[0].f64[0]));
    assert_true(isnan(g->cols[0].f64[7]));
    assert_int_equal(g->cols[1].i64[7], want_n[7]);
    sp_table_free(g);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* int64 key k and value v; partial sums that overflow int64 in one partition or
 * only when merged. */
static sp_status gen_big(uint32_t i, void *user, sp_table **out)
{
    (void)user;
    static const sp_col_spec sc[2] = {{"k", SP_COL_INT64, 0}, {"v", SP_COL_INT64, 0}};
    /* (| between partitions) k=1: MAX | 1, past int64 when merged; k=2: MAX, MAX in
     * one partition; k=4: MIN, -1, below; k=3: MAX, 1 | -1, fits in the end; k=5: 7 */
    static const int64_t rows[2][5][2] = {
        {{1, INT64_MAX}, {2, INT64_MAX}, {2, INT64_MAX}, {3, INT64_MAX}, {3, 1}},
        {{1, 1}, {3, -1}, {4, INT64_MIN}, {4, -1}, {5, 7}},
    };
    sp_table *t;
    sp_status st = sp_table_new(2, sc, 5, &t);
    if (st != SP_OK) return st;
    for (uint64_t r = 0; r < 5; r++) {
        t->cols[0].i64[r] = rows[i][r][0];
        t->cols[1].i64[r] = rows[i][r][1];
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

static sp_status gen_cancel(uint32_t i, void *user, sp_table **out)
{
    (void)user;
    static const sp_col_spec sc[2] = {{"k", SP_COL_INT64, 0}, {"v", SP_COL_INT64, 0}};
    /* k=1: 2^62 | 1, -2^62 (they cancel: the double sum loses the 1); k=2: -7 | 2.
     * Partition 0 has two rows. */
    static const int64_t rows[2][3][2] = {{{1, (int64_t)1 << 62}, {2, -7}, {0, 0}},
                                          {{1, 1}, {1, -((int64_t)1 << 62)}, {2, 2}}};
    uint64_t n = i == 0 ? 2 : 3;
    sp_table *t;
    sp_status st = sp_table_new(2, sc, n, &t);
    if (st != SP_OK) return st;
    for (uint64_t r = 0; r < n; r++) {
        t->cols[0].i64[r] = rows[i][r][0];
        t->cols[1].i64[r] = rows[i][r][1];
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

/* The mean of an integer column comes from its exact sum. */
static void test_int_mean_is_exact(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    static const sp_col_spec sc[2] = {{"k", SP_COL_INT64, 0}, {"v", SP_COL_INT64, 0}};
    sp_dtable *t;
    t_ok(sp_dtable_generate(f->d, 2, sc, 2, gen_cancel, NULL, 1024, &t));
    sp_agg mean = {SP_AGG_MEAN, "v"};
    sp_agg_value v;
    t_ok(sp_dtable_reduce(t, 1, &mean, &v)); /* (2^62 + 1 - 2^62 - 7 + 2) / 5 */
    assert_true(v.d == -4.0 / 5.0);
    sp_table *g;
    t_ok(sp_dtable_group_by(t, "k", 1, &mean, &g));
    assert_int_equal(g->nrows, 2);
    assert_true(g->cols[1].f64[0] == 1.0 / 3.0);
    assert_true(g->cols[1].f64[1] == -2.5);
    sp_table_free(g);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* A row count whose arrays could not be addressed is refused, not allocated short. */
static void test_table_new_refuses_impossible_row_counts(void **state)
{
    (void)state;
    static const sp_col_spec sc[1] = {{"a", SP_COL_INT64, 0}};
    sp_table *t = NULL;
    t_status(sp_table_new(1, sc, ((uint64_t)1 << 61) + 1, &t), SP_ERR_TOO_BIG);
    assert_null(t);
    assert_non_null(strstr(sp_last_error(), "rows"));
}

static void test_int_sum_overflow_fails(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    static const sp_col_spec sc[2] = {{"k", SP_COL_INT64, 0}, {"v", SP_COL_INT64, 0}};
    sp_dtable *t, *w;
    t_ok(sp_dtable_generate(f->d, 2, sc, 2, gen_big, NULL, 1024, &t));
    sp_agg sum = {SP_AGG_SUM, "v"};
    sp_table *g;
    sp_agg_value v;
    static const char *const where[3] = {"k = 1", "k = 2", "k = 4"}; /* also how the error names the group */
    for (int c = 0; c < 3; c++) {
        t_ok(sp_dtable_where(t, where[c], &w));
        t_status(sp_dtable_group_by(w, "k", 1, &sum, &g), SP_ERR_INVALID);
        assert_non_null(strstr(sp_last_error(), "sum of column 'v'"));
        assert_non_null(strstr(sp_last_error(), where[c]));
        assert_non_null(strstr(sp_last_error(), "int64"));
        t_status(sp_dtable_reduce(w, 1, &sum, &v), SP_ERR_INVALID);
        assert_non_null(strstr(sp_last_error(), "sum of column 'v'"));
        sp_dtable_free(w);
    }
    t_status(sp_dtable_group_by(t, "k", 1, &sum, &g), SP_ERR_INVALID); /* the first group that overflows */
    assert_non_null(strstr(sp_last_error(), "k = 1"));
    /* A partial sum past int64 (MAX + 1 in partition 0) is fine when the total fits. */
    t_ok(sp_dtable_where(t, "k = 3", &w));
    t_ok(sp_dtable_reduce(w, 1, &sum, &v));
    assert_true(v.is_int);
    assert_int_equal(v.i, INT64_MAX);
    t_ok(sp_dtable_group_by(w, "k", 1, &sum, &g));
    assert_int_equal(g->nrows, 1);
    assert_int_equal(g->cols[1].i64[0], INT64_MAX);
    sp_table_free(g);
    sp_dtable_free(w);
    /* Mean, min and max do not use the int64 sum. */
    sp_agg others[3] = {{SP_AGG_MEAN, "v"}, {SP_AGG_MIN, "v"}, {SP_AGG_MAX, "v"}};
    sp_agg_value o[3];
    t_ok(sp_dtable_reduce(t, 3, others, o));
    assert_int_equal(o[1].i, INT64_MIN);
    assert_int_equal(o[2].i, INT64_MAX);
    t_ok(sp_dtable_group_by(t, "k", 3, others, &g));
    assert_int_equal(g->nrows, 5);
    assert_true(g->cols[1].f64[1] == (double)INT64_MAX);
    assert_true(g->cols[1].f64[0] == ((double)INT64_MAX + 1) / 2);
    sp_table_free(g);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* One int64 column named by user (the key), and v; rows k = r % 2. */
static sp_status gen_named(uint32_t i, void *user, sp_table **out)
{
    (void)i;
    sp_col_spec sc[2] = {{user, SP_COL_INT64, 0}, {"v", SP_COL_INT64, 0}};
    sp_table *t;
    sp_status st = sp_table_new(2, sc, 3, &t);
    if (st != SP_OK) return st;
    for (uint64_t r = 0; r < 3; r++) {
        t->cols[0].i64[r] = (int64_t)(r % 2);
        t->cols[1].i64[r] = (int64_t)r;
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

/* A key column may share a name with an aggregate's default name: the aggregate is
 * numbered, as a repeated aggregate is; a clash numbering cannot solve is an error. */
static void test_group_by_key_named_like_an_aggregate(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    sp_dtable *t;
    sp_col_spec sc[2] = {{"count", SP_COL_INT64, 0}, {"v", SP_COL_INT64, 0}};
    t_ok(sp_dtable_generate(f->d, 2, sc, 2, gen_named, "count", 1024, &t));
    sp_table *g;
    t_ok(sp_dtable_group_by(t, "count", 0, NULL, &g));
    assert_int_equal(g->ncols, 2);
    assert_string_equal(g->cols[0].name, "count");
    assert_string_equal(g->cols[1].name, "count#1");
    assert_int_equal(g->nrows, 2);
    assert_int_equal(g->cols[1].i64[0], 4);
    assert_int_equal(g->cols[1].i64[1], 2);
    sp_table_free(g);
    sp_agg aggs[3] = {{SP_AGG_SUM, "v"}, {SP_AGG_COUNT, NULL}, {SP_AGG_COUNT, NULL}};
    t_ok(sp_dtable_group_by(t, "count", 3, aggs, &g));
    assert_string_equal(g->cols[1].name, "sum(v)");
    assert_string_equal(g->cols[2].name, "count#2");
    assert_string_equal(g->cols[3].name, "count#3");
    sp_table_free(g);
    sp_dtable_free(t);
    /* Aggregates apart from the key still number the later ones only. */
    sc[0].name = "k";
    t_ok(sp_dtable_generate(f->d, 2, sc, 1, gen_named, "k", 1024, &t));
    t_ok(sp_dtable_group_by(t, "k", 3, aggs, &g));
    assert_string_equal(g->cols[2].name, "count");
    assert_string_equal(g->cols[3].name, "count#3");
    sp_table_free(g);
    sp_dtable_free(t);
    /* The key is named as a numbered aggregate would be: say what to rename. */
    sc[0].name = "count#3";
    t_ok(sp_dtable_generate(f->d, 2, sc, 1, gen_named, "count#3", 1024, &t));
    t_status(sp_dtable_group_by(t, "count#3", 3, aggs, &g), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "'count#3'"));
    assert_non_null(strstr(sp_last_error(), "rename"));
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* k int64, d double with NaNs: k=1 d=1.5; k=2 only NaN (in both partitions); k=3 d=2. */
static sp_status gen_nan_values(uint32_t i, void *user, sp_table **out)
{
    (void)user;
    static const sp_col_spec sc[2] = {{"k", SP_COL_INT64, 0}, {"d", SP_COL_DOUBLE, 0}};
    sp_table *t;
    sp_status st = sp_table_new(2, sc, 2, &t);
    if (st != SP_OK) return st;
    t->cols[0].i64[0] = i ? 2 : 1;
    t->cols[1].f64[0] = i ? NAN : 1.5;
    t->cols[0].i64[1] = i ? 3 : 2;
    t->cols[1].f64[1] = i ? 2.0 : NAN;
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

/* A sum, min, max or mean of no values (only NaNs, or no rows) is NaN, from reduce
 * and group-by alike; count is 0. */
static void test_aggregates_of_no_values_are_nan(void **state)
{
    (void)state;
    fx *f = t_dagfx_open(64 << 20, 0, 0);
    static const sp_col_spec sc[2] = {{"k", SP_COL_INT64, 0}, {"d", SP_COL_DOUBLE, 0}};
    sp_dtable *t, *only_nan, *none;
    t_ok(sp_dtable_generate(f->d, 2, sc, 2, gen_nan_values, NULL, 1024, &t));
    t_ok(sp_dtable_where(t, "k = 2", &only_nan));
    t_ok(sp_dtable_where(t, "k = 9", &none));
    sp_agg aggs[5] = {{SP_AGG_SUM, "d"}, {SP_AGG_MIN, "d"}, {SP_AGG_MAX, "d"}, {SP_AGG_MEAN, "d"}, {SP_AGG_COUNT, NULL}};
    sp_agg_value v[5];
    t_ok(sp_dtable_reduce(only_nan, 5, aggs, v));
    for (int a = 0; a < 4; a++) {
        assert_false(v[a].is_int);
        assert_true(isnan(v[a].d));
    }
    assert_int_equal(v[4].i, 2);
    sp_table *g;
    t_ok(sp_dtable_group_by(only_nan, "k", 5, aggs, &g));
    assert_int_equal(g->nrows, 1);
    for (uint32_t c = 1; c < 5; c++) assert_true(isnan(g->cols[c].f64[0]));
    assert_int_equal(g->cols[5].i64[0], 2);
    sp_table_free(g);
    /* No rows: the int64 column's sum, min and max too. */
    sp_agg ints[4] = {{SP_AGG_SUM, "k"}, {SP_AGG_MIN, "k"}, {SP_AGG_MAX, "k"}, {SP_AGG_COUNT, NULL}};
    t_ok(sp_dtable_reduce(none, 4, ints, v));
    for (int a = 0; a < 3; a++) {
        assert_false(v[a].is_int);
        assert_true(isnan(v[a].d));
    }
    assert_true(v[3].is_int);
    assert_int_equal(v[3].i, 0);
    t_ok(sp_dtable_reduce(none, 1, aggs, v));
    assert_true(isnan(v[0].d));
    /* NaNs are skipped where there are numbers. */
    t_ok(sp_dtable_reduce(t, 4, aggs, v));
    assert_true(v[0].d == 3.5);
    assert_true(v[1].d == 1.5);
    assert_true(v[2].d == 2.0);
    assert_true(v[3].d == 1.75);
    sp_dtable_free(none);
    sp_dtable_free(only_nan);
    sp_dtable_free(t);
    t_dagfx_close(f);
}

/* ---- the stored form ---- */

/* t spilled (a second table of the bound's size pushes it out) and pinned back. */
static sp_table *spill_and_back(sp_pool *p, sp_table *t)
{
    sp_ref r, big;
    t_ok(sp_put(p, t, &sp_table_type, NULL, &r));
    big = t_put(p, 1000, 1);
    t_ok(sp_release(p, big));
    assert_int_equal(t_tier(p, r), SP_TIER_DISK);
    void *o;
    t_ok(sp_pin(p, r, &o));
    sp_table *copy = NULL;
    const sp_table *back = o;
    sp_col_spec spec[4];
    for (uint32_t c = 0; c < back->ncols; c++)
        spec[c] = (sp_col_spec){back->cols[c].name, back->cols[c].type, back->cols[c].codes != NULL};
    t_ok(sp_table_new(back->ncols, spec, back->nrows, &copy));
    for (uint32_t c = 0; c < back->ncols; c++) {
        const sp_column *a = &back->cols[c];
        sp_column *b = &copy->cols[c];
        if (a->codes) {
            memcpy(b->codes, a->codes, back->nrows * 4);
            memcpy(b->u8, a->u8, a->ndict);
            b->ndict = a->ndict;
        } else if (a->u8) {
            memcpy(b->u8, a->u8, back->nrows);
        }
    }
    t_ok(sp_unpin(p, r));
    t_ok(sp_release(p, r));
    return copy;
}

/* A pooled uint8 column with more values in its pool than rows (a filtered or small
 * partition) comes back, and one with no rows comes back pooled. */
static void test_pooled_uint8_round_trips(void **state)
{
    t_fix *f = *state;
    sp_pool *p = f->p = t_pool(f->dir, 1000, 1 << 20, SP_POLICY_LRU);
    for (uint64_t rows = 5;; rows = 0) {
        const sp_col_spec spec = {"u", SP_COL_UINT8, 1};
        sp_table *t;
        t_ok(sp_table_new(1, &spec, rows, &t));
        for (unsigned k = 0; k < 7; k++) t->cols[0].u8[k] = (uint8_t)(10 * k);
        t->cols[0].ndict = rows ? 7 : 0;
        for (uint64_t r = 0; r < rows; r++) t->cols[0].codes[r] = (uint32_t)(6 - r);
        sp_table_recount(t);
        sp_table *back = spill_and_back(p, t);
        assert_int_equal(back->nrows, rows);
        assert_non_null(back->cols[0].codes); /* still pooled */
        for (uint64_t r = 0; r < rows; r++) assert_int_equal((int)sp_table_num(back, 0, r), 10 * (6 - (int)r));
        sp_table_free(back);
        if (rows == 0) break;
    }
}

/* A type that writes given bytes and reads them back as a table: a stored form the
 * encoder would never write, for the decoder to refuse. */
static const unsigned char *raw_bytes;
static size_t raw_len;
static size_t raw_size(const void *o) { (void)o; return 8; }
static sp_status raw_encode(const void *o, sp_writer *w) { (void)o; return sp_write(w, raw_bytes, raw_len); }
static void raw_free(void *o) { free(o); }

static void put_u32(unsigned char *b, size_t *n, uint32_t v) { memcpy(b + *n, &v, 4), *n += 4; }

static void test_malformed_stored_tables_refused(void **state)
{
    t_fix *f = *state;
    sp_pool *p = f->p = t_pool(f->dir, 1000, 1 << 20, SP_POLICY_LRU);
    const sp_type raw = {"raw", raw_size, raw_encode, sp_table_type.decode, raw_free, NULL};
    static const char *const says[] = {"malformed header", "both named 'a'", "column 1 is malformed",
                                       "a NUL byte in its name"};
    for (int k = 0; k < 4; k++) {
        unsigned char b[256];
        size_t n = 0;
        memcpy(b, "SPTBL1\0\0", 8), n = 8;
        put_u32(b, &n, 2);          /* columns */
        put_u32(b, &n, k == 0);     /* reserved */
        uint64_t rows = 1;
        memcpy(b + n, &rows, 8), n += 8;
        for (int c = 0; c < 2; c++) {
            const char *name = c == 0 ? "a" : k == 1 ? "a" : k == 2 ? "" : "b\0c";
            uint32_t nl = c == 0 ? 1 : k == 1 ? 1 : k == 2 ? 0 : 3;
            put_u32(b, &n, SP_COL_INT64);
            put_u32(b, &n, nl);
            memcpy(b + n, name, nl), n += nl;
            int64_t v = 7;
            memcpy(b + n, &v, 8), n += 8;
        }
        raw_bytes = b;
        raw_len = n;
        sp_ref r, big;
        t_ok(sp_put(p, malloc(8), &raw, NULL, &r));
        big = t_put(p, 1000, 1);
        t_ok(sp_release(p, big));
        void *o;
        t_status(sp_pin(p, r, &o), SP_ERR_CORRUPT);
        if (!strstr(sp_last_error(), says[k])) fail_msg("case %d: \"%s\" lacks \"%s\"", k, sp_last_error(), says[k]);
        t_ok(sp_release(p, r));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_equals_generated),
        cmocka_unit_test_setup_teardown(test_pooled_uint8_round_trips, t_fix_setup, t_fix_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_stored_tables_refused, t_fix_setup, t_fix_teardown),
        cmocka_unit_test(test_pipeline_matches_reference),
        cmocka_unit_test(test_pipeline_under_tenth_bound_same_answer),
        cmocka_unit_test(test_reduce_matches_reference),
        cmocka_unit_test(test_group_by_numeric_keys),
        cmocka_unit_test(test_iterate_with_and_without_readahead),
        cmocka_unit_test(test_readahead_over_the_bound_gives_way),
        cmocka_unit_test(test_map_replaces_a_column_in_place),
        cmocka_unit_test(test_failed_partition_reported_to_reader),
        cmocka_unit_test(test_bad_operations_rejected),
        cmocka_unit_test(test_csv_files_lazily_with_hand_computed_answer),
        cmocka_unit_test(test_csv_schema_from_the_first_file_with_rows),
        cmocka_unit_test(test_csv_from_files_out_of_memory_leaves_nothing),
        cmocka_unit_test(test_csv_schemas_that_disagree_name_the_file),
        cmocka_unit_test(test_group_by_double_keys_zero_and_nan),
        cmocka_unit_test(test_int_sum_overflow_fails),
        cmocka_unit_test(test_int_mean_is_exact),
        cmocka_unit_test(test_table_new_refuses_impossible_row_counts),
        cmocka_unit_test(test_group_by_key_named_like_an_aggregate),
        cmocka_unit_test(test_aggregates_of_no_values_are_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
