/* Partitions exported through the Arrow C Data Interface: every value read back
 * through the interface alone (formats, buffers, children, dictionaries) matches the
 * generator, the partition stays pinned exactly as long as the array, the structs
 * can be moved, and errors leave nothing behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testing.h"
#include "spillpool/table.h"
#include "testlib.h"

/* ---- the generated partitions ---- */

enum { NCOLS = 5, NCITY = 40, NGRADE = 5 };

static const sp_col_spec schema[NCOLS] = {
    {"id", SP_COL_INT64, 0},    {"price", SP_COL_DOUBLE, 0}, {"small", SP_COL_UINT8, 0},
    {"grade", SP_COL_UINT8, 1}, {"city", SP_COL_STRING, 0},
};

/* ~100 KB a partition, a little different in each so lengths are checked. */
static uint64_t rows_of(uint32_t i) { return 4000 + 13 * (uint64_t)i; }
static int64_t id_of(uint32_t i, uint64_t r) { return (int64_t)i * 1000000 + (int64_t)r * 7 - 5000; }
static double price_of(uint32_t i, uint64_t r) { return (double)i + (double)r * 0.25 - 100.5; }
static uint8_t small_of(uint32_t i, uint64_t r) { return (uint8_t)((r * 13 + i) & 0xff); }
static uint32_t grade_code(uint32_t i, uint64_t r) { return (uint32_t)((r + i) % NGRADE); }
static uint8_t grade_value(uint32_t i, uint32_t k) { return (uint8_t)(7 * k + 3 + i); }
static uint32_t city_code(uint32_t i, uint64_t r) { return (uint32_t)((r * r + 3 * i) % NCITY); }

/* An empty string and a multibyte one among them, to check offsets. */
static void city_name(uint32_t i, uint32_t k, char *buf, size_t cap)
{
    if (k == 0) snprintf(buf, cap, "%s", "");
    else if (k == 1) snprintf(buf, cap, "Z\xc3\xbcrich-%u", i);
    else snprintf(buf, cap, "city-%u-%u", i, k);
}

typedef struct {
    long fail;   /* the partition whose generator fails, or -1 */
    long latin1; /* the partition with a string that is not UTF-8, or -1 */
} gen_cfg;

static sp_status gen(uint32_t i, void *user, sp_table **out)
{
    const gen_cfg *g = user;
    if (g->fail == (long)i) return SP_ERR_CORRUPT;
    uint64_t n = rows_of(i);
    sp_table *t;
    sp_status st = sp_table_new(NCOLS, schema, n, &t);
    if (st != SP_OK) return st;
    for (uint64_t r = 0; r < n; r++) {
        t->cols[0].i64[r] = id_of(i, r);
        t->cols[1].f64[r] = price_of(i, r);
        t->cols[2].u8[r] = small_of(i, r);
        t->cols[3].codes[r] = grade_code(i, r);
        t->cols[4].codes[r] = city_code(i, r);
    }
    for (uint32_t k = 0; k < NGRADE; k++) t->cols[3].u8[k] = grade_value(i, k);
    t->cols[3].ndict = NGRADE;
    char names[NCITY][32];
    const char *ptrs[NCITY];
    for (uint32_t k = 0; k < NCITY; k++) {
        city_name(i, k, names[k], sizeof names[k]);
        ptrs[k] = names[k];
    }
    if (g->latin1 == (long)i) names[2][1] = '\xe9'; /* "c\xe9ty-...": Latin-1, not UTF-8 */
    if ((st = sp_table_set_dict(t, 4, NCITY, ptrs)) != SP_OK) {
        sp_table_free(t);
        return st;
    }
    sp_table_recount(t);
    *out = t;
    return SP_OK;
}

/* ---- fixture ---- */

typedef struct {
    char *dir;
    sp_pool *p;
    sp_dag *d;
    sp_dtable *t;
    uint32_t n;
    gen_cfg g;
} fx;

static long latin1_part = -1; /* for fx_open: gen_cfg.latin1 */

static fx *fx_open(uint64_t mem, uint32_t nparts, long fail)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = t_tmpdir();
    f->p = t_pool(f->dir, mem, 1ull << 30, SP_POLICY_LRU);
    sp_dag_options o = {2, 0};
    t_ok(sp_dag_open(&f->d, f->p, &o));
    f->n = nparts;
    f->g.fail = fail;
    f->g.latin1 = latin1_part;
    t_ok(sp_dtable_generate(f->d, NCOLS, schema, nparts, gen, &f->g, rows_of(0) * 25, &f->t));
    sp_dag_wait(f->d);
    return f;
}

static uint64_t pinned(fx *f)
{
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    return s.objects_pinned;
}

static void fx_close(fx *f)
{
    if (f->t) sp_dtable_free(f->t);
    t_ok(sp_dag_close(f->d));
    assert_int_equal(pinned(f), 0);
    t_ok(sp_pool_close(f->p));
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
}

/* ---- reading through the C Data Interface only ---- */

typedef struct {
    char kind; /* 'i' integer, 'd' double, 's' string */
    int64_t i;
    double d;
    const char *s;
    size_t len;
} aval;

/* Row r of an array, following its format and, for "I", its dictionary. */
static aval arrow_value(const struct ArrowSchema *s, const struct ArrowArray *a, int64_t r)
{
    aval v = {0, 0, 0, NULL, 0};
    assert_true(r >= 0 && r < a->length);
    assert_int_equal(a->null_count, 0);
    assert_null(a->buffers[0]); /* no validity bitmap: nothing is null */
    r += a->offset;
    const char *f = s->format;
    if (strcmp(f, "l") == 0) {
        assert_int_equal(a->n_buffers, 2);
        v.kind = 'i';
        v.i = ((const int64_t *)a->buffers[1])[r];
    } else if (strcmp(f, "g") == 0) {
        assert_int_equal(a->n_buffers, 2);
        v.kind = 'd';
        v.d = ((const double *)a->buffers[1])[r];
    } else if (strcmp(f, "C") == 0) {
        assert_int_equal(a->n_buffers, 2);
        v.kind = 'i';
        v.i = ((const uint8_t *)a->buffers[1])[r];
    } else if (strcmp(f, "u") == 0) {
        assert_int_equal(a->n_buffers, 3);
        const int32_t *off = a->buffers[1];
        assert_true(off[r] >= 0 && off[r] <= off[r + 1]);
        v.kind = 's';
        v.s = (const char *)a->buffers[2] + off[r];
        v.len = (size_t)(off[r + 1] - off[r]);
    } else if (strcmp(f, "I") == 0) {
        assert_int_equal(a->n_buffers, 2);
        assert_non_null(s->dictionary);
        assert_non_null(a->dictionary);
        uint32_t code = ((const uint32_t *)a->buffers[1])[r];
        assert_true(code < (uint64_t)a->dictionary->length);
        return arrow_value(s->dictionary, a->dictionary, code);
    } else {
        fail_msg("unexpected format '%s'", f);
    }
    return v;
}

/* The field's format, and its dictionary's ("" if none). */
static void want_format(uint32_t c, const char **format, const char **dict)
{
    static const char *const fmt[NCOLS] = {"l", "g", "C", "I", "I"};
    static const char *const dic[NCOLS] = {"", "", "", "C", "u"};
    *format = fmt[c];
    *dict = dic[c];
}

static void check_value(uint32_t i, uint32_t c, uint64_t r, aval v)
{
    char buf[32];
    switch (c) {
    case 0: assert_true(v.kind == 'i' && v.i == id_of(i, r)); break;
    case 1: assert_true(v.kind == 'd' && v.d == price_of(i, r)); break;
    case 2: assert_true(v.kind == 'i' && v.i == small_of(i, r)); break;
    case 3: assert_true(v.kind == 'i' && v.i == grade_value(i, grade_code(i, r))); break;
    case 4:
        city_name(i, city_code(i, r), buf, sizeof buf);
        assert_int_equal(v.kind, 's');
        assert_int_equal(v.len, strlen(buf));
        assert_memory_equal(v.s, buf, v.len);
        break;
    }
}

/* One column (field c of partition i) against the generator. */
static void check_column(uint32_t i, uint32_t c, const struct ArrowSchema *s, const struct ArrowArray *a)
{
    const char *format, *dict;
    want_format(c, &format, &dict);
    assert_string_equal(s->format, format);
    assert_string_equal(s->name, schema[c].name);
    assert_int_equal(s->flags, 0);
    assert_null(s->metadata);
    assert_int_equal(s->n_children, 0);
    assert_int_equal(a->n_children, 0);
    assert_non_null(s->release);
    assert_non_null(a->release);
    assert_int_equal(a->length, rows_of(i));
    assert_int_equal(a->offset, 0);
    if (dict[0]) {
        assert_string_equal(s->dictionary->format, dict);
        assert_int_equal(a->dictionary->length, c == 3 ? NGRADE : NCITY);
        assert_int_equal(a->dictionary->n_children, 0);
    } else {
        assert_null(s->dictionary);
        assert_null(a->dictionary);
    }
    for (uint64_t r = 0; r < rows_of(i); r++) check_value(i, c, r, arrow_value(s, a, (int64_t)r));
}

/* Partition i, field by field. */
static void check_partition(uint32_t i, const struct ArrowSchema *s, const struct ArrowArray *a)
{
    assert_string_equal(s->format, "+s");
    assert_int_equal(s->n_children, NCOLS);
    assert_null(s->dictionary);
    assert_int_equal(a->length, rows_of(i));
    assert_int_equal(a->null_count, 0);
    assert_int_equal(a->offset, 0);
    assert_int_equal(a->n_buffers, 1);
    assert_null(a->buffers[0]);
    assert_int_equal(a->n_children, NCOLS);
    assert_null(a->dictionary);
    for (uint32_t c = 0; c < NCOLS; c++) check_column(i, c, s->children[c], a->children[c]);
}

static void export_ok(fx *f, uint32_t i, struct ArrowSchema *s, struct ArrowArray *a)
{
    t_ok(sp_dtable_export_arrow(f->t, i, s, a));
    assert_non_null(s->release);
    assert_non_null(a->release);
}

/* A release callback that must be replaced: outputs are set even on errors. */
static void stale_schema_release(struct ArrowSchema *s) { (void)s; }
static void stale_array_release(struct ArrowArray *a) { (void)a; }

static void expect_released(const struct ArrowSchema *s, const struct ArrowArray *a)
{
    assert_null(s->release);
    assert_null(a->release);
}

/* ---- tests ---- */

static void test_every_value_matches_generator(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 4, -1);
    for (uint32_t i = 0; i < f->n; i++) {
        struct ArrowSchema s;
        struct ArrowArray a;
        export_ok(f, i, &s, &a);
        check_partition(i, &s, &a);
        a.release(&a);
        s.release(&s);
        expect_released(&s, &a);
    }
    fx_close(f);
}

/* 256 KiB of memory for eight partitions of ~100 KiB: most exports read the
 * partition back from disk, and an exported one is not evicted while others are. */
static void test_partitions_from_disk_under_small_bound(void **state)
{
    (void)state;
    fx *f = fx_open(256 << 10, 8, -1);
    sp_stats before, after;
    t_ok(sp_pool_stats(f->p, &before));
    assert_true(before.objects_on_disk > 0);
    struct ArrowSchema s0;
    struct ArrowArray a0;
    export_ok(f, 0, &s0, &a0);
    for (uint32_t i = 1; i < f->n; i++) {
        struct ArrowSchema s;
        struct ArrowArray a;
        export_ok(f, i, &s, &a);
        assert_int_equal(pinned(f), 2);
        check_partition(i, &s, &a);
        a.release(&a);
        s.release(&s);
        check_partition(0, &s0, &a0);
    }
    t_ok(sp_pool_stats(f->p, &after));
    assert_true(after.misses > before.misses);
    assert_true(after.memory_used <= after.memory_bound);
    a0.release(&a0);
    s0.release(&s0);
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

static void test_pinned_until_array_released(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 2, -1);
    assert_int_equal(pinned(f), 0);
    struct ArrowSchema s;
    struct ArrowArray a;
    export_ok(f, 1, &s, &a);
    assert_int_equal(pinned(f), 1);
    s.release(&s); /* the schema holds no pin */
    assert_null(s.release);
    assert_int_equal(pinned(f), 1);
    a.release(&a);
    assert_null(a.release);
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

/* The schema owns its strings: still readable after the array and the table went. */
static void test_schema_outlives_array_and_table(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 2, -1);
    struct ArrowSchema s;
    struct ArrowArray a;
    export_ok(f, 0, &s, &a);
    a.release(&a);
    sp_dtable_free(f->t);
    f->t = NULL;
    assert_string_equal(s.format, "+s");
    for (uint32_t c = 0; c < NCOLS; c++) {
        const char *format, *dict;
        want_format(c, &format, &dict);
        assert_string_equal(s.children[c]->name, schema[c].name);
        assert_string_equal(s.children[c]->format, format);
        if (dict[0]) assert_string_equal(s.children[c]->dictionary->format, dict);
    }
    s.release(&s);
    fx_close(f);
}

/* The array holds its own reference: it stays readable after the table is freed. */
static void test_array_outlives_table(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 3, -1);
    struct ArrowSchema s;
    struct ArrowArray a;
    export_ok(f, 2, &s, &a);
    sp_dtable_free(f->t);
    f->t = NULL;
    check_partition(2, &s, &a);
    assert_int_equal(pinned(f), 1);
    a.release(&a);
    s.release(&s);
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

/* A consumer may memcpy both structs elsewhere and mark the originals released. */
static void test_release_after_move(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 2, -1);
    struct ArrowSchema s, *s2 = malloc(sizeof *s2);
    struct ArrowArray a, *a2 = malloc(sizeof *a2);
    export_ok(f, 1, &s, &a);
    memcpy(a2, &a, sizeof a);
    memcpy(s2, &s, sizeof s);
    a.release = NULL;
    s.release = NULL;
    memset(&a, 0xa5, sizeof a); /* nothing may still point at the old place */
    memset(&s, 0xa5, sizeof s);
    check_partition(1, s2, a2);
    assert_int_equal(pinned(f), 1);
    a2->release(a2);
    assert_null(a2->release);
    assert_int_equal(pinned(f), 0);
    s2->release(s2);
    assert_null(s2->release);
    free(a2);
    free(s2);
    fx_close(f);
}

/* Per the spec a child may be moved out and the parent released at once: the
 * child (and its dictionary) must keep the partition and its own copies. */
static void test_moved_child_outlives_parent(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 2, -1);
    struct ArrowSchema s;
    struct ArrowArray a;
    export_ok(f, 0, &s, &a);
    struct ArrowArray city, grade, city_dict;
    struct ArrowSchema city_s;
    memcpy(&city, a.children[4], sizeof city);
    a.children[4]->release = NULL;
    memcpy(&grade, a.children[3], sizeof grade);
    a.children[3]->release = NULL;
    memcpy(&city_s, s.children[4], sizeof city_s);
    s.children[4]->release = NULL;
    a.release(&a);
    s.release(&s);
    assert_int_equal(pinned(f), 1);
    check_column(0, 4, &city_s, &city);
    /* a dictionary moved out of its child, likewise */
    memcpy(&city_dict, city.dictionary, sizeof city_dict);
    city.dictionary->release = NULL;
    city.release(&city);
    assert_null(city.release);
    for (uint32_t k = 0; k < NCITY; k++) {
        char buf[32];
        city_name(0, k, buf, sizeof buf);
        aval v = arrow_value(city_s.dictionary, &city_dict, k);
        assert_int_equal(v.len, strlen(buf));
        assert_memory_equal(v.s, buf, v.len);
    }
    city_dict.release(&city_dict);
    city_s.release(&city_s);
    assert_int_equal(pinned(f), 1); /* grade still lends the partition's memory */
    assert_int_equal(grade.length, rows_of(0));
    const uint8_t *gv = grade.dictionary->buffers[1];
    const uint32_t *gc = grade.buffers[1];
    for (uint64_t r = 0; r < rows_of(0); r++) assert_int_equal(gv[gc[r]], grade_value(0, grade_code(0, r)));
    /* and its dictionary, moved out, lends the partition's memory on its own */
    struct ArrowArray grade_dict;
    memcpy(&grade_dict, grade.dictionary, sizeof grade_dict);
    grade.dictionary->release = NULL;
    grade.release(&grade);
    assert_int_equal(pinned(f), 1);
    assert_int_equal(grade_dict.length, NGRADE);
    for (uint32_t k = 0; k < NGRADE; k++)
        assert_int_equal(((const uint8_t *)grade_dict.buffers[1])[k], grade_value(0, k));
    grade_dict.release(&grade_dict);
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

static void test_out_of_range_is_invalid(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 2, -1);
    uint32_t bad[] = {2, 3, UINT32_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct ArrowSchema s = {.release = stale_schema_release};
        struct ArrowArray a = {.release = stale_array_release};
        t_status(sp_dtable_export_arrow(f->t, bad[k], &s, &a), SP_ERR_INVALID);
        expect_released(&s, &a);
    }
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

static void test_failed_generator_error_returned(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 3, 1);
    struct ArrowSchema s = {.release = stale_schema_release};
    struct ArrowArray a = {.release = stale_array_release};
    t_status(sp_dtable_export_arrow(f->t, 1, &s, &a), SP_ERR_CORRUPT);
    expect_released(&s, &a);
    assert_int_equal(pinned(f), 0);
    /* the others are fine */
    for (uint32_t i = 0; i < 3; i += 2) {
        export_ok(f, i, &s, &a);
        check_partition(i, &s, &a);
        a.release(&a);
        s.release(&s);
    }
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

/* A string that is not UTF-8 cannot go out in a utf8 array: the export says which,
 * and leaves nothing behind. */
static void test_strings_not_utf8_are_refused(void **state)
{
    (void)state;
    latin1_part = 1;
    fx *f = fx_open(64 << 20, 3, -1);
    latin1_part = -1;
    struct ArrowSchema s = {.release = stale_schema_release};
    struct ArrowArray a = {.release = stale_array_release};
    t_status(sp_dtable_export_arrow(f->t, 1, &s, &a), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "column 'city': string 2 is not UTF-8 (byte 1 is 0xe9)"));
    expect_released(&s, &a);
    assert_int_equal(pinned(f), 0);
    export_ok(f, 0, &s, &a);
    a.release(&a);
    s.release(&s);
    fx_close(f);
}

/* Every allocation of an export failed in turn: an error, both outputs released,
 * nothing left pinned; and once enough succeed, the export is whole. */
static void test_allocation_failures_leave_nothing(void **state)
{
    (void)state;
    fx *f = fx_open(64 << 20, 2, -1);
    struct ArrowSchema s;
    struct ArrowArray a;
    long n = 0;
    for (;; n++) {
        s.release = stale_schema_release;
        a.release = stale_array_release;
        sp_testing_fail_alloc_after(n);
        sp_status st = sp_dtable_export_arrow(f->t, 1, &s, &a);
        sp_testing_fail_alloc_after(-1);
        if (st == SP_OK) break;
        assert_int_equal(st, SP_ERR_NOMEM);
        expect_released(&s, &a);
        assert_int_equal(pinned(f), 0);
    }
    assert_true(n > 10); /* the struct, five columns, two dictionaries, the schema */
    check_partition(1, &s, &a);
    a.release(&a);
    s.release(&s);
    assert_int_equal(pinned(f), 0);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_value_matches_generator),
        cmocka_unit_test(test_partitions_from_disk_under_small_bound),
        cmocka_unit_test(test_pinned_until_array_released),
        cmocka_unit_test(test_schema_outlives_array_and_table),
        cmocka_unit_test(test_array_outlives_table),
        cmocka_unit_test(test_release_after_move),
        cmocka_unit_test(test_moved_child_outlives_parent),
        cmocka_unit_test(test_out_of_range_is_invalid),
        cmocka_unit_test(test_failed_generator_error_returned),
        cmocka_unit_test(test_strings_not_utf8_are_refused),
        cmocka_unit_test(test_allocation_failures_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
