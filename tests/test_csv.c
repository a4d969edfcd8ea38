/* The CSV loader: RFC 4180 quoting, type inference and schemas, dictionary-coded
 * strings, errors with line and column, and the loader under the pool. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testing.h"
#include "testlib.h"

#define SP_TEST_PRINTF __attribute__((format(printf, 2, 3)))

static sp_table *parse_ok(const char *text, const sp_csv_options *opt)
{
    sp_table *t = NULL;
    t_ok(sp_csv_parse(text, strlen(text), opt, "t.csv", &t));
    return t;
}

static void parse_fails(const char *text, const sp_csv_options *opt, const char *says)
{
    sp_table *t = NULL;
    sp_status st = sp_csv_parse(text, strlen(text), opt, "t.csv", &t);
    if (st == SP_OK) fail_msg("parsed, but should fail with \"%s\": %s", says, text);
    assert_null(t);
    if (!strstr(sp_last_error(), says)) fail_msg("message \"%s\" lacks \"%s\"", sp_last_error(), says);
    assert_non_null(strstr(sp_last_error(), "t.csv"));
}

static const char *str_at(const sp_table *t, int c, uint64_t row) { return t->cols[c].dict[t->cols[c].codes[row]]; }

static void types_are_inferred(void **state)
{
    (void)state;
    sp_table *t = parse_ok("id,temp,name,mixed,big\n"
                           "1,20.5,alpha,3,9223372036854775807\n"
                           "2,-3,beta,1.5,99999999999999999999\n"
                           "-3,0.125,alpha,,1e3\n",
                           NULL);
    assert_int_equal(t->ncols, 5);
    assert_int_equal(t->nrows, 3);
    assert_string_equal(t->cols[0].name, "id");
    assert_int_equal(t->cols[0].type, SP_COL_INT64);
    assert_int_equal(t->cols[0].i64[2], -3);
    assert_int_equal(t->cols[1].type, SP_COL_DOUBLE);
    assert_true(t->cols[1].f64[0] == 20.5 && t->cols[1].f64[1] == -3.0 && t->cols[1].f64[2] == 0.125);
    assert_int_equal(t->cols[2].type, SP_COL_STRING);
    assert_int_equal(t->cols[2].ndict, 2); /* dictionary-coded: alpha, beta */
    assert_int_equal(t->cols[2].codes[0], t->cols[2].codes[2]);
    assert_string_equal(str_at(t, 2, 1), "beta");
    assert_int_equal(t->cols[3].type, SP_COL_DOUBLE); /* 3 then 1.5: widened; empty is NaN */
    assert_true(t->cols[3].f64[0] == 3.0 && t->cols[3].f64[1] == 1.5 && isnan(t->cols[3].f64[2]));
    /* past int64: no number type holds it exactly, so the column keeps the text */
    assert_int_equal(t->cols[4].type, SP_COL_STRING);
    assert_string_equal(str_at(t, 4, 0), "9223372036854775807");
    assert_string_equal(str_at(t, 4, 1), "99999999999999999999");
    assert_int_equal(sp_table_column(t, "name"), 2);
    assert_int_equal(sp_table_column(t, "nope"), -1);
    assert_true(t->bytes > 3 * 5 * 4);
    sp_table_free(t);
    /* a column that turns out to hold text is parsed again as strings */
    t = parse_ok("code\n1\n2\nx7\n2\n", NULL);
    assert_int_equal(t->cols[0].type, SP_COL_STRING);
    assert_int_equal(t->cols[0].ndict, 3);
    assert_string_equal(str_at(t, 0, 0), "1");
    assert_string_equal(str_at(t, 0, 2), "x7");
    assert_int_equal(t->cols[0].codes[1], t->cols[0].codes[3]);
    sp_table_free(t);
}

/* Inference never changes a value: a column of integers turns double (for a
 * missing value, a decimal) only if every integer in it is exact as a double (at
 * most 2^53 in magnitude); else it holds strings. A schema's double takes them. */
static void inference_keeps_large_integers_exact(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "id,k\n9007199254740993,1\n,2\n",  /* a big one, then a missing value */
        "id\n1.5\n9007199254740993\n",   /* a decimal, then a big integer */
        "id\n9007199254740993\n0.5\n",   /* a big integer, then a decimal */
        "id\n-9007199254740993\n2.5\n",  /* negative */
        "id\n12\n123456789012345678901\n", /* past int64 */
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        sp_table *t = parse_ok(texts[i], NULL);
        assert_int_equal(t->cols[0].type, SP_COL_STRING);
        sp_table_free(t);
    }
    sp_table *t = parse_ok("id\n9007199254740992\n-9007199254740992\n\n1.5\n", NULL); /* 2^53: exact */
    assert_int_equal(t->cols[0].type, SP_COL_DOUBLE);
    assert_true(t->cols[0].f64[0] == 9007199254740992.0 && t->cols[0].f64[1] == -9007199254740992.0);
    sp_table_free(t);
    t = parse_ok("id\n00000000000000000001\n-000000000000000000009223372036854775808\n", NULL);
    assert_int_equal(t->cols[0].type, SP_COL_INT64); /* leading zeros are not digits that count */
    assert_int_equal(t->cols[0].i64[0], 1);
    assert_int_equal(t->cols[0].i64[1], INT64_MIN);
    sp_table_free(t);
    t = parse_ok("id\n9007199254740993\n2\n", NULL); /* integers that fit int64 stay int64 */
    assert_int_equal(t->cols[0].type, SP_COL_INT64);
    assert_int_equal(t->cols[0].i64[0], 9007199254740993LL);
    sp_table_free(t);
    t = parse_ok("x\n1e300\n1234567.125\n", NULL); /* decimals and exponents are doubles as before */
    assert_int_equal(t->cols[0].type, SP_COL_DOUBLE);
    sp_table_free(t);
    const sp_col_type dbl = SP_COL_DOUBLE;
    sp_csv_options o = {.schema = &dbl, .schema_cols = 1};
    t = parse_ok("id\n1.5\n9007199254740993\n99999999999999999999\n", &o);
    assert_int_equal(t->cols[0].type, SP_COL_DOUBLE);
    assert_true(t->cols[0].f64[2] == 1e20);
    sp_table_free(t);
}

/* Header fields left empty (a spreadsheet's or pandas' unnamed index column) get
 * the names a headerless file's columns get. */
static void empty_header_names_are_numbered(void **state)
{
    (void)state;
    sp_table *t = parse_ok(",a,\"\",b\n0,1,2,3\n", NULL);
    assert_int_equal(t->ncols, 4);
    assert_string_equal(t->cols[0].name, "c1");
    assert_string_equal(t->cols[1].name, "a");
    assert_string_equal(t->cols[2].name, "c3");
    assert_string_equal(t->cols[3].name, "b");
    assert_int_equal(t->cols[2].i64[0], 2);
    sp_table_free(t);
    /* a name with a NUL byte would be cut short (or left empty): refused */
    sp_table *bad = NULL;
    t_status(sp_csv_parse("a,b\0c\n1,2\n", 10, NULL, "t.csv", &bad), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "column 2 of the header holds a NUL byte"));
    t_status(sp_csv_parse("\0\n1\n", 4, NULL, "t.csv", &bad), SP_ERR_CORRUPT);
}

static void rfc4180_quoting(void **state)
{
    (void)state;
    sp_table *t = parse_ok("a,\"b, with comma\",c\r\n"
                           "\"x \"\"quoted\"\"\",\"line1\nline2\",7\r\n"
                           "plain,,8",
                           NULL);
    assert_string_equal(t->cols[1].name, "b, with comma");
    assert_int_equal(t->nrows, 2);
    assert_string_equal(str_at(t, 0, 0), "x \"quoted\"");
    assert_string_equal(str_at(t, 1, 0), "line1\nline2");
    assert_string_equal(str_at(t, 1, 1), "");
    assert_int_equal(t->cols[2].type, SP_COL_INT64);
    assert_int_equal(t->cols[2].i64[1], 8);
    sp_table_free(t);
    /* other delimiters, no header */
    sp_csv_options semi = {.delim = ';', .no_header = 1};
    t = parse_ok("1;2,5;x\n3;4;y\n", &semi);
    assert_int_equal(t->nrows, 2);
    assert_string_equal(t->cols[1].name, "c2");
    assert_int_equal(t->cols[1].type, SP_COL_STRING); /* "2,5" is text here */
    assert_int_equal(t->cols[0].i64[1], 3);
    sp_table_free(t);
    sp_csv_options tab = {.delim = '\t'};
    t = parse_ok("a\tb\n1\t\"q\tq\"\n", &tab);
    assert_string_equal(str_at(t, 1, 0), "q\tq");
    sp_table_free(t);
    /* found by fuzzing: an empty quoted field, and many zeros after the point */
    t = parse_ok("a,b\n\"\",0.00000000000000000000001435\nx,1\n", NULL);
    assert_string_equal(str_at(t, 0, 0), "");
    assert_true(t->cols[1].f64[0] == 1.435e-23);
    sp_table_free(t);
    /* a header alone */
    t = parse_ok("a,b\n", NULL);
    assert_int_equal(t->nrows, 0);
    assert_int_equal(t->ncols, 2);
    sp_table_free(t);
}

static void schemas_are_enforced(void **state)
{
    (void)state;
    static const sp_col_type types[] = {SP_COL_STRING, SP_COL_INT64, SP_COL_DOUBLE};
    sp_csv_options o = {.schema = types, .schema_cols = 3};
    sp_table *t = parse_ok("k,n,x\n007,5,1\n008,6,2.5\n", &o);
    assert_int_equal(t->cols[0].type, SP_COL_STRING); /* kept as text: leading zeros survive */
    assert_string_equal(str_at(t, 0, 0), "007");
    assert_int_equal(t->cols[1].i64[1], 6);
    assert_true(t->cols[2].f64[0] == 1.0);
    sp_table_free(t);
    parse_fails("k,n,x\n007,5,1\n008,6.5,2\n", &o, "line 3, field 2 (column 5): not an int64: 6.5");
    parse_fails("k,n,x\n007,5,z\n", &o, "line 2, field 3 (column 7): not a double: z");
    parse_fails("k,n,x\n007,,1\n", &o, "not an int64");
    /* the bad value is quoted exactly, not read past its end (found by fuzzing) */
    sp_table *bad = NULL;
    t_status(sp_csv_parse("k,n,x\n1,2x,3\n", 13, &o, "t.csv", &bad), SP_ERR_CORRUPT);
    const char *e = sp_last_error();
    assert_string_equal(e + strlen(e) - 4, ": 2x");
    sp_csv_options two = {.schema = types, .schema_cols = 2};
    parse_fails("k,n,x\n1,2,3\n", &two, "the schema gives 2");
}

static void malformed_input_names_line_and_column(void **state)
{
    (void)state;
    parse_fails("", NULL, "empty file");
    parse_fails("\n", NULL, "empty file");
    parse_fails("\r\n", NULL, "empty file");
    parse_fails("\xEF\xBB\xBF\n", NULL, "empty file");
    parse_fails("a,b\n1,2\n3\n", NULL, "line 3, field 2 (column 2): the record ends with 1 fields, the header has 2");
    parse_fails("a,b,c\n1,2,3\n\"x\ny\",5\r\n", NULL, /* the end of a record over two lines */
                "line 4, field 3 (column 5): the record ends with 2 fields, the header has 3");
    parse_fails("a,b,c\n1,2,3\n4,5", NULL, "line 3, field 3 (column 4): the record ends with 2 fields");
    parse_fails("a,b\n1,2,3\n", NULL, "line 2, field 3 (column 5): more fields than the header's");
    parse_fails("a,b\n1,\"open\n\nstill open\n", NULL, "line 2, field 2 (column 3): unterminated quote");
    parse_fails("a,b\n\"q\"x,1\n", NULL, "line 2, field 1 (column 4): text after a closing quote");
    parse_fails("a,b\n1,ab\"c\n", NULL, "line 2, field 2 (column 5): a quote inside an unquoted field");
    /* line numbers count breaks inside quotes */
    parse_fails("a,b\n\"x\ny\",1\n2\n", NULL, "line 4, field 2 (column 2): the record ends with 1 fields");
    sp_csv_options q = {.delim = '"'};
    sp_table *t = NULL;
    t_status(sp_csv_parse("a", 1, &q, "t.csv", &t), SP_ERR_INVALID);
}

/* ---- under the pool ---- */

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    fputs(text, fp);
    fclose(fp);
    return path;
}

static void check_hour(const sp_table *t, int hour)
{
    assert_int_equal(t->nrows, 60);
    assert_int_equal(t->cols[0].type, SP_COL_INT64);
    assert_int_equal(t->cols[2].type, SP_COL_DOUBLE);
    assert_int_equal(t->cols[1].type, SP_COL_STRING);
    for (int m = 0; m < 60; m++) {
        assert_int_equal(t->cols[0].i64[m], m);
        assert_true(t->cols[2].f64[m] == hour + m / 4.0);
    }
    assert_string_equal(t->cols[1].dict[t->cols[1].codes[5]], (hour % 2) ? "north" : "south");
}

static char *hour_csv(int hour)
{
    char *s = malloc(4096), *p = s;
    p += sprintf(p, "minute,station,temp\n");
    for (int m = 0; m < 60; m++) p += sprintf(p, "%d,%s,%g\n", m, (hour % 2) ? "north" : "south", hour + m / 4.0);
    return s;
}

static void loader_under_the_pool(void **state)
{
    (void)state;
    char *dir = t_tmpdir();
    sp_pool *p = t_pool(dir, 3200, 1 << 20, SP_POLICY_LRU); /* two tables of about 1.4 KB */
    sp_ref r[4];
    char *paths[4];
    for (int h = 0; h < 4; h++) {
        char name[32], *text = hour_csv(h);
        snprintf(name, sizeof name, "%02d.csv", h);
        paths[h] = write_file(dir, name, text);
        free(text);
        sp_lazy_options o = {.cache_parsed = h == 3};
        t_ok(sp_put_lazy(p, paths[h], &sp_csv_type, &o, &r[h]));
    }
    for (int round = 0; round < 2; round++)
        for (int h = 0; h < 4; h++) {
            const void *o;
            t_ok(sp_pin_read(p, r[h], &o));
            check_hour(o, h);
            t_ok(sp_unpin(p, r[h]));
        }
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_true(s.clean_drops >= 4);
    assert_int_equal(s.lazy_loads, 7); /* hour 3 came back from its cached binary form */
    assert_int_equal(s.files_written, 1);
    /* a changed table is written in binary form and read back without parsing */
    void *w;
    t_ok(sp_pin(p, r[0], &w));
    sp_table *t = w;
    t->cols[0].i64[0] = 1234;
    t_ok(sp_unpin(p, r[0]));
    for (int h = 1; h < 4; h++) {
        const void *o;
        t_ok(sp_pin_read(p, r[h], &o));
        t_ok(sp_unpin(p, r[h]));
    }
    const void *o;
    t_ok(sp_pin_read(p, r[0], &o));
    assert_int_equal(((const sp_table *)o)->cols[0].i64[0], 1234);
    assert_string_equal(((const sp_table *)o)->cols[1].dict[0], "south");
    t_ok(sp_unpin(p, r[0]));
    /* malformed and empty files fail for that object only */
    char *bad = write_file(dir, "bad.csv", "a,b\n1,2\n3\n"), *empty = write_file(dir, "empty.csv", "");
    sp_ref rb, re;
    t_ok(sp_put_lazy(p, bad, &sp_csv_type, NULL, &rb));
    t_ok(sp_put_lazy(p, empty, &sp_csv_type, NULL, &re));
    t_status(sp_pin_read(p, rb, &o), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "bad.csv"));
    assert_non_null(strstr(sp_last_error(), "line 3"));
    t_status(sp_pin_read(p, re, &o), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "empty file"));
    t_ok(sp_pin_read(p, r[1], &o));
    check_hour(o, 1);
    t_ok(sp_unpin(p, r[1]));
    /* a loader with options: semicolons and a schema */
    static const sp_col_type types[] = {SP_COL_STRING, SP_COL_DOUBLE};
    sp_csv_options opt = {.delim = ';', .schema = types, .schema_cols = 2};
    sp_type semi;
    sp_csv_loader(&opt, &semi);
    char *sc = write_file(dir, "semi.csv", "k;v\n01;2\n02;3.5\n");
    sp_ref rs;
    t_ok(sp_put_lazy(p, sc, &semi, NULL, &rs));
    t_ok(sp_pin_read(p, rs, &o));
    assert_string_equal(((const sp_table *)o)->cols[0].dict[0], "01");
    assert_true(((const sp_table *)o)->cols[1].f64[1] == 3.5);
    t_ok(sp_unpin(p, rs));
    for (int h = 0; h < 4; h++) t_ok(sp_release(p, r[h]));
    t_ok(sp_release(p, rb));
    t_ok(sp_release(p, re));
    t_ok(sp_release(p, rs));
    t_ok(sp_pool_close(p));
    for (int h = 0; h < 4; h++) free(paths[h]);
    free(bad);
    free(empty);
    free(sc);
    t_rmrf(dir);
    free(dir);
}

/* ---- chunked parsing: the records cut at line breaks and parsed in parallel ---- */

/* Internal (src/table/csv.c): a parse cut into nchunks chunks, 0 as sp_csv_parse. */
sp_status sp__csv_parse_chunks(const char *buf, size_t len, const sp_csv_options *opt, const char *what,
                               unsigned nchunks, sp_table **out);

static sp_table *parse_chunks(const char *text, size_t len, const sp_csv_options *opt, unsigned n)
{
    sp_table *t = NULL;
    t_ok(sp__csv_parse_chunks(text, len, opt, "t.csv", n, &t));
    return t;
}

/* Bit for bit: types, values (a NaN or -0.0 too), dictionaries in the same order. */
static void assert_same_table(const sp_table *a, const sp_table *b)
{
    assert_int_equal(a->ncols, b->ncols);
    assert_int_equal(a->nrows, b->nrows);
    assert_int_equal(a->bytes, b->bytes);
    for (uint32_t c = 0; c < a->ncols; c++) {
        const sp_column *x = &a->cols[c], *y = &b->cols[c];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->type, y->type);
        if (a->nrows == 0) continue;
        if (x->type == SP_COL_INT64) assert_memory_equal(x->i64, y->i64, a->nrows * 8);
        if (x->type == SP_COL_DOUBLE) assert_memory_equal(x->f64, y->f64, a->nrows * 8);
        if (x->type == SP_COL_STRING) {
            assert_int_equal(x->ndict, y->ndict);
            assert_memory_equal(x->codes, y->codes, a->nrows * 4);
            for (uint32_t k = 0; k < x->ndict; k++) {
                assert_int_equal(x->dict_len[k], y->dict_len[k]);
                assert_memory_equal(x->dict[k], y->dict[k], x->dict_len[k] + 1);
            }
        }
    }
}

/* Every chunk count from 1 to 9 gives the one-chunk answer (or its error). */
static void assert_chunks_agree(const char *text, size_t len, const sp_csv_options *opt)
{
    sp_table *one = NULL;
    sp_status st1 = sp__csv_parse_chunks(text, len, opt, "t.csv", 1, &one);
    char err1[512];
    snprintf(err1, sizeof err1, "%s", st1 == SP_OK ? "" : sp_last_error());
    for (unsigned n = 2; n <= 9; n++) {
        sp_table *t = NULL;
        sp_status st = sp__csv_parse_chunks(text, len, opt, "t.csv", n, &t);
        assert_int_equal(st, st1);
        if (st != SP_OK) {
            assert_string_equal(sp_last_error(), err1);
            continue;
        }
        assert_same_table(one, t);
        sp_table_free(t);
    }
    sp_table_free(one);
}

typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) SP_TEST_PRINTF;
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap ? t->cap * 2 : 4096;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
}

static void chunks_split_at_record_boundaries(void **state)
{
    (void)state;
    /* A quoted field with line breaks in the middle of the file: cuts in halves,
     * thirds, ... land inside it, and the chunk after a bad cut is dropped. */
    text t = {0};
    put(&t, "id,note,v\n");
    for (int r = 0; r < 400; r++) put(&t, "%d,plain %d,%d\n", r, r % 7, r * 3);
    put(&t, "400,\"");
    for (int k = 0; k < 300; k++) put(&t, "line %d, with \"\"quotes\"\"\n", k);
    put(&t, "\",1200\r\n");
    for (int r = 401; r < 800; r++) put(&t, "%d,\"q\n%d\",%d\n", r, r % 5, r * 3);
    assert_chunks_agree(t.s, t.len, NULL);
    sp_table *one = parse_chunks(t.s, t.len, NULL, 1);
    assert_int_equal(one->nrows, 800);
    assert_int_equal(one->cols[0].type, SP_COL_INT64);
    assert_int_equal(one->cols[2].i64[400], 1200);
    const char *note = one->cols[1].dict[one->cols[1].codes[400]];
    assert_true(strncmp(note, "line 0, with \"quotes\"\nline 1,", 29) == 0);
    assert_string_equal(one->cols[1].dict[one->cols[1].codes[799]], "q\n4");
    sp_table_free(one);
    /* an error after the long field: its line counts every break before it */
    put(&t, "800,x\n");
    size_t lines = 1;
    for (size_t i = 0; i + 1 < t.len; i++) lines += t.s[i] == '\n';
    for (unsigned n = 1; n <= 9; n++) {
        sp_table *bad = NULL;
        t_status(sp__csv_parse_chunks(t.s, t.len, NULL, "t.csv", n, &bad), SP_ERR_CORRUPT);
        char want[96];
        snprintf(want, sizeof want, "line %zu, field 3 (column 6): the record ends with 2 fields", lines);
        if (!strstr(sp_last_error(), want)) fail_msg("%u chunks: \"%s\" lacks \"%s\"", n, sp_last_error(), want);
    }
    free(t.s);
}

static void chunks_agree_on_types_and_codes(void **state)
{
    (void)state;
    /* ints early and a double late; text late; strings that differ by chunk; "-0"
     * after the first double (a one-pass parse reads it as the double -0.0) */
    text t = {0};
    put(&t, "i,d,s,late,z\n");
    for (int r = 0; r < 2000; r++)
        put(&t, "%d,%d,%s,%d,%s\n", r, r, r < 1000 ? (r % 2 ? "a" : "b") : (r % 3 ? "c" : "a"), r,
            r == 10 ? "0.5" : r % 100 == 99 ? "-0" : "7");
    put(&t, "2000,2.5,d,word,-0\n");
    assert_chunks_agree(t.s, t.len, NULL);
    for (unsigned n = 1; n <= 4; n++) {
        sp_table *p = parse_chunks(t.s, t.len, NULL, n);
        assert_int_equal(p->nrows, 2001);
        assert_int_equal(p->cols[0].type, SP_COL_INT64);
        assert_int_equal(p->cols[1].type, SP_COL_DOUBLE);
        assert_true(p->cols[1].f64[1999] == 1999.0 && p->cols[1].f64[2000] == 2.5);
        assert_int_equal(p->cols[2].type, SP_COL_STRING);
        assert_int_equal(p->cols[2].ndict, 4); /* codes in order of first appearance */
        assert_string_equal(p->cols[2].dict[0], "b");
        assert_string_equal(p->cols[2].dict[1], "a");
        assert_string_equal(p->cols[2].dict[2], "c");
        assert_string_equal(p->cols[2].dict[3], "d");
        assert_int_equal(p->cols[3].type, SP_COL_STRING);
        assert_string_equal(str_at(p, 3, 1234), "1234");
        assert_string_equal(str_at(p, 3, 2000), "word");
        assert_int_equal(p->cols[4].type, SP_COL_DOUBLE);
        assert_true(p->cols[4].f64[1999] == 0 && signbit(p->cols[4].f64[1999]));
        assert_true(p->cols[4].f64[2000] == 0 && signbit(p->cols[4].f64[2000]));
        sp_table_free(p);
    }
    /* "-0" before any double is an integer 0: widened later, it stays +0.0 */
    text u = {0};
    put(&u, "z\n-0\n");
    for (int r = 0; r < 500; r++) put(&u, "%d\n", r);
    put(&u, "0.5\n");
    assert_chunks_agree(u.s, u.len, NULL);
    sp_table *p = parse_chunks(u.s, u.len, NULL, 3);
    assert_int_equal(p->cols[0].type, SP_COL_DOUBLE);
    assert_true(p->cols[0].f64[0] == 0 && !signbit(p->cols[0].f64[0]));
    sp_table_free(p);
    /* with a schema: a misfit in a late chunk is the error, with its line */
    static const sp_col_type types[] = {SP_COL_INT64, SP_COL_DOUBLE};
    sp_csv_options o = {.schema = types, .schema_cols = 2};
    text v = {0};
    put(&v, "a,b\n");
    for (int r = 0; r < 900; r++) put(&v, "%d,%d.5\n", r, r);
    put(&v, "1.5,2\n");
    for (int r = 0; r < 100; r++) put(&v, "%d,x\n", r);
    assert_chunks_agree(v.s, v.len, &o);
    sp_table *bad = NULL;
    t_status(sp__csv_parse_chunks(v.s, v.len, &o, "t.csv", 4, &bad), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "line 902, field 1 (column 1): not an int64: 1.5"));
    free(t.s);
    free(u.s);
    free(v.s);
}

/* Random CSV with quoting, line breaks in quotes, CRLF, numbers and text, and now
 * and then a malformed record: any number of chunks agrees with one. */
static void chunks_agree_on_random_csv(void **state)
{
    (void)state;
    static const char *vals[] = {"1", "-0", "007", "-17", "3.5", "-0.0", ".5", "1e3", "", "abc", "x y",
                                 "9223372036854775807", "99999999999999999999", "+4", "12345678", "123456789", "1.",
                                 "9007199254740993", "-9007199254740992"};
    uint64_t x = 0x9E3779B97F4A7C15ull;
#define RND(n) (x ^= x << 13, x ^= x >> 7, x ^= x << 17, (unsigned)(x % (n)))
    for (int it = 0; it < 300; it++) {
        text t = {0};
        char delim = RND(2) ? ',' : ';';
        int ncols = 1 + (int)RND(4), rows = 1 + (int)RND(it % 10 == 0 ? 2000 : 80), bad = RND(4) == 0;
        for (int r = 0; r <= rows; r++) {
            for (int f = 0; f < ncols + (bad && RND(300) == 0); f++) {
                if (f) put(&t, "%c", delim);
                unsigned k = RND(10);
                if (k < 7) put(&t, "%s", vals[RND(sizeof vals / sizeof *vals)]);
                else if (k < 9) {
                    put(&t, "\"");
                    for (unsigned m = RND(5); m; m--) {
                        static const char *in[] = {"\"\"", "\n", ",", ";", "\r\n", "q", "5"};
                        put(&t, "%s", in[RND(7)]);
                    }
                    put(&t, "\"");
                } else put(&t, "%d", (int)RND(100000) - 50000);
                if (bad && RND(400) == 0) put(&t, "%s", RND(2) ? "\"" : "x\"");
            }
            if (r < rows || RND(2)) put(&t, RND(4) ? "\n" : "\r\n");
        }
        sp_csv_options o = {.delim = delim, .no_header = (int)RND(2)};
        assert_chunks_agree(t.s, t.len, &o);
        free(t.s);
    }
#undef RND
}

/* Big enough that sp_csv_parse itself cuts it (one chunk per core). */
static void big_input_is_split_and_agrees(void **state)
{
    (void)state;
    text t = {0};
    put(&t, "hour,station,temp,note\n");
    static const char *st[] = {"north", "south", "\"harbour, pier 3\"", "east"};
    for (int r = 0; t.len < (3u << 20); r++)
        put(&t, "%d,%s,%d.%02d,%s\n", r / 60, st[r % 4], r % 40 - 20, r % 100, r % 1000 == 999 ? "\"a\nb\"" : "x");
    sp_table *a = NULL, *b = parse_chunks(t.s, t.len, NULL, 1);
    t_ok(sp_csv_parse(t.s, t.len, NULL, "t.csv", &a));
    assert_same_table(a, b);
    assert_int_equal(a->cols[1].ndict, 4);
    assert_int_equal(a->cols[2].type, SP_COL_DOUBLE);
    sp_table_free(a);
    sp_table_free(b);
    free(t.s);
}

/* Chunks write into regions of one array per column, sized from the first 64 KiB:
 * rows that get much shorter after the sample overflow the regions (a chunk goes on
 * in its own block, and later regions may no longer move down), rows that get
 * longer leave them half empty (the rows move far). Both agree with one chunk, with
 * a column widened to double and one turned to strings late. */
static void chunk_regions_overflow_and_underfill(void **state)
{
    (void)state;
    for (int shape = 0; shape < 3; shape++) {
        text t = {0};
        put(&t, "i,d,s,late,neg\n");
        for (int r = 0; t.len < (shape == 1 ? 2000u : 70000u); r++)
            put(&t, "%d,%d,%s,%d,%s\n", r, r, shape == 1 ? "s" : "\"a long value, repeated to make the rows wide\"", r,
                r % 50 == 7 ? "-0" : "1");
        for (int r = 0; r < 40000; r++) {
            int wide = shape == 1 && r % 3 == 0;
            put(&t, "%d,%s,%s,%s,%s\n", r % 10, r == 39000 ? "2.5" : "3", wide ? "\"w, i, d, e, r, o, w, s\"" : "k",
                shape == 2 && r == 30000 ? "text" : "5", r == 20000 ? "0.5" : r % 70 == 3 ? "-0" : "2");
        }
        assert_chunks_agree(t.s, t.len, NULL);
        sp_table *a = NULL, *b = parse_chunks(t.s, t.len, NULL, 1);
        t_ok(sp_csv_parse(t.s, t.len, NULL, "t.csv", &a));
        assert_same_table(a, b);
        assert_int_equal(b->cols[1].type, SP_COL_DOUBLE);
        assert_int_equal(b->cols[3].type, shape == 2 ? SP_COL_STRING : SP_COL_INT64);
        assert_int_equal(b->cols[4].type, SP_COL_DOUBLE);
        sp_table_free(a);
        sp_table_free(b);
        free(t.s);
    }
}

/* The number fast paths (a sign and up to 8 bytes of digits and a dot; 15 significant
 * digits as integer / power of ten) against strtod and strtoll, bit for bit: every
 * length around the 8-byte loads, the 15-digit and 10^22 limits, the int64 limits,
 * negative zeros, and values at the end of the buffer (no 8-byte loads there). */
static void numbers_match_strtod_and_strtoll(void **state)
{
    (void)state;
    static const char *fixed[] = {
        "0", "-0", "+0", "-0.0", "-.0", "-0.", "0.", ".5", "-.5", "+.5", "1.", "-1.", "1.5", "-1.5", "+1.5",
        "12345678", "-12345678", "1234567.8", "-1234567.8", "12345.678", "-1234.5678", "0.0000001", "-9.999999",
        "123456789012345", "1234567890123456", "12345678901234567", "9007199254740992", "9007199254740993",
        "-9007199254740993", "0.1", "0.2", "0.3", "2.675", "1.005", "0.1000000000000000055511151231257827",
        "123456789012345.6", "0.000000000000000000001", "0.0000000000000000000001", "0.00000000000000000000001",
        "1.0000000000000000000001", "9999999999999999999999", "99999999999999999999999.5", "000000000000000012.5",
        "4503599627370497.5", "-0.000000000000000000000000000000000000000000001", "79228162514264337593543950336",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809", "00000000.1"};
    uint64_t x = 0x2545F4914F6CDD1Dull;
#define RND(n) (x ^= x << 13, x ^= x >> 7, x ^= x << 17, (unsigned)(x % (n)))
    char vals[3000][48];
    unsigned nv = 0;
    for (; nv < sizeof fixed / sizeof *fixed; nv++) snprintf(vals[nv], sizeof vals[nv], "%s", fixed[nv]);
    while (nv < 3000) { /* [sign] digits [. digits], at least one digit */
        char *v = vals[nv];
        size_t k = 0;
        unsigned sign = RND(3), a = RND(4) ? RND(9) : RND(20), b = RND(3) ? RND(9) : RND(24), dot = RND(4) != 0;
        if (sign) v[k++] = sign == 1 ? '-' : '+';
        for (unsigned i = 0; i < a; i++) v[k++] = (char)('0' + (RND(3) ? RND(10) : 9 * RND(2)));
        if (dot) v[k++] = '.';
        for (unsigned i = 0; dot && i < b; i++) v[k++] = (char)('0' + RND(10));
        v[k] = '\0';
        if (a + (dot ? b : 0) > 0) nv++;
    }
#undef RND
    text dt = {0}, it = {0};
    put(&dt, "d\n");
    put(&it, "i\n");
    unsigned nint = 0;
    int64_t want_i[3000];
    for (unsigned k = 0; k < nv; k++) {
        put(&dt, "%s\n", vals[k]);
        if (strchr(vals[k], '.')) continue;
        errno = 0;
        long long w = strtoll(vals[k], NULL, 10);
        if (errno == ERANGE) continue;
        want_i[nint++] = w;
        put(&it, "%s\n", vals[k]);
    }
    static const sp_col_type dbl[] = {SP_COL_DOUBLE}, i64[] = {SP_COL_INT64};
    sp_csv_options od = {.schema = dbl, .schema_cols = 1}, oi = {.schema = i64, .schema_cols = 1};
    for (unsigned n = 1; n <= 3; n++) {
        sp_table *t = parse_chunks(dt.s, dt.len, &od, n);
        assert_int_equal(t->nrows, nv);
        for (unsigned k = 0; k < nv; k++) {
            double want = strtod(vals[k], NULL);
            if (memcmp(&want, &t->cols[0].f64[k], 8) != 0)
                fail_msg("\"%s\": %.17g, strtod says %.17g", vals[k], t->cols[0].f64[k], want);
        }
        sp_table_free(t);
        t = parse_chunks(it.s, it.len, &oi, n);
        assert_int_equal(t->nrows, nint);
        for (unsigned k = 0; k < nint; k++) assert_int_equal(t->cols[0].i64[k], want_i[k]);
        sp_table_free(t);
    }
    assert_chunks_agree(dt.s, dt.len, NULL); /* inferred: ints first, widened at the first double */
    assert_chunks_agree(it.s, it.len, NULL);
    free(dt.s);
    free(it.s);
}

/* Strings around the 8- and 16-byte keys, alternating so every lookup finds a known
 * one except the first of each: codes in order of first appearance, values intact. */
static void strings_alternate_around_key_lengths(void **state)
{
    (void)state;
    static const char *strs[] = {"",  "a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "abcdefgX", "Xbcdefgh",
                                 "abcdefghijklmno", "abcdefghijklmnop", "abcdefghijklmnoX", "abcdefghijklmnopq",
                                 "abcdefghijklmnopr", "abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyZ",
                                 "\"q, \"\"uoted\"\"\"", "b", "ba"};
    const unsigned ns = sizeof strs / sizeof *strs;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    text t = {0};
    put(&t, "k,s\n");
    unsigned pick[5000], order[32], nseen = 0;
    int seen[32] = {0};
    for (unsigned r = 0; r < 5000; r++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pick[r] = r < 2 * ns ? (r % 2 ? ns - 1 - r / 2 : r / 2) : (unsigned)(x % ns);
        if (!seen[pick[r]]) seen[pick[r]] = 1, order[nseen++] = pick[r];
        put(&t, "%u,%s\n", r, strs[pick[r]]);
    }
    for (unsigned n = 1; n <= 4; n++) {
        sp_table *p = parse_chunks(t.s, t.len, NULL, n);
        assert_int_equal(p->cols[1].type, SP_COL_STRING);
        assert_int_equal(p->cols[1].ndict, ns);
        for (unsigned k = 0; k < ns; k++) {
            const char *want = order[k] == 15 ? "q, \"uoted\"" : strs[order[k]];
            assert_string_equal(p->cols[1].dict[k], want);
            assert_int_equal(p->cols[1].dict_len[k], strlen(want));
        }
        for (unsigned r = 0; r < 5000; r++)
            assert_string_equal(str_at(p, 1, r), pick[r] == 15 ? "q, \"uoted\"" : strs[pick[r]]);
        sp_table_free(p);
    }
    assert_chunks_agree(t.s, t.len, NULL);
    free(t.s);
}

/* ---- missing values, what is a number, headers ---- */

/* An empty field in a double column is NaN with a schema too: a schema is how later
 * files of a table and a file parsed again after a drop are read, so they must take
 * what inference took. An int64 column has no missing value: empty stays an error. */
static void empty_doubles_are_nan_with_a_schema(void **state)
{
    (void)state;
    static const sp_col_type types[] = {SP_COL_STRING, SP_COL_DOUBLE, SP_COL_INT64};
    sp_csv_options o = {.schema = types, .schema_cols = 3};
    sp_table *t = parse_ok("k,v,n\na,1.5,1\nb,,2\nc,\"\",3\nd,2.5,4\n", &o);
    assert_int_equal(t->nrows, 4);
    assert_true(t->cols[1].f64[0] == 1.5 && t->cols[1].f64[3] == 2.5);
    assert_true(isnan(t->cols[1].f64[1]) && isnan(t->cols[1].f64[2])); /* quoted or not, as inferred */
    sp_table_free(t);
    parse_fails("k,v,n\na,,\n", &o, "line 2, field 3 (column 4): not an int64: ");
    parse_fails("k,v,n\na,1,\"\"\n", &o, "line 2, field 3 (column 5): not an int64: ");
    parse_fails("k,v,n\na,x,1\n", &o, "line 2, field 2 (column 3): not a double: x");
    /* a file parsed again with the types it was given the first time: the same table */
    const char *file = "k,v,w\na,1,\nb,,2.5\nc,3,\n\"\",\"\",7\n";
    sp_table *inferred = parse_ok(file, NULL);
    assert_int_equal(inferred->cols[1].type, SP_COL_DOUBLE);
    assert_int_equal(inferred->cols[2].type, SP_COL_DOUBLE);
    sp_col_type again[3];
    for (int c = 0; c < 3; c++) again[c] = inferred->cols[c].type;
    sp_csv_options oa = {.schema = again, .schema_cols = 3};
    sp_table *reparsed = parse_ok(file, &oa);
    assert_same_table(inferred, reparsed);
    sp_table_free(reparsed);
    sp_table_free(inferred);
    /* cut into chunks: empties in every chunk, the same answer */
    text big = {0};
    put(&big, "k,v,n\n");
    for (int r = 0; r < 3000; r++)
        put(&big, "%c,%s,%d\n", 'a' + r % 5, r % 7 == 3 ? "" : r % 11 == 0 ? "\"\"" : "0.25", r);
    assert_chunks_agree(big.s, big.len, &o);
    for (unsigned n = 1; n <= 4; n++) {
        sp_table *p = parse_chunks(big.s, big.len, &o, n);
        assert_int_equal(p->nrows, 3000);
        for (int r = 0; r < 3000; r++)
            assert_true((r % 7 == 3 || r % 11 == 0) ? isnan(p->cols[1].f64[r]) : p->cols[1].f64[r] == 0.25);
        sp_table_free(p);
    }
    put(&big, "z,1,\n"); /* an empty int64 in the last chunk: the error, with its line */
    assert_chunks_agree(big.s, big.len, &o);
    sp_table *bad = NULL;
    t_status(sp__csv_parse_chunks(big.s, big.len, &o, "t.csv", 4, &bad), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "line 3002, field 3 (column 5): not an int64: "));
    free(big.s);
}

/* The multi-file table of the report: the second file parses with the first's
 * types, and a missing value in either is NaN (skipped by sum). */
static void tables_of_files_with_missing_values(void **state)
{
    (void)state;
    t_dagfx *f = t_dagfx_open(64 << 20, 0, 0);
    char *dir = t_tmpdir();
    char *paths[2] = {write_file(dir, "f1.csv", "k,v\na,1.5\nb,\n"), write_file(dir, "f2.csv", "k,v\na,\nb,2.5\n")};
    sp_dtable *t;
    t_ok(sp_dtable_from_csv(f->d, 2, (const char *const *)paths, NULL, &t));
    sp_agg sum = {SP_AGG_SUM, "v"};
    sp_table *g;
    t_ok(sp_dtable_group_by(t, "k", 1, &sum, &g));
    assert_int_equal(g->nrows, 2);
    assert_string_equal(sp_table_str(g, 0, 0), "a");
    assert_true(g->cols[1].f64[0] == 1.5);
    assert_string_equal(sp_table_str(g, 0, 1), "b");
    assert_true(g->cols[1].f64[1] == 2.5);
    sp_table_free(g);
    sp_dtable_free(t);
    for (int i = 0; i < 2; i++) free(paths[i]);
    t_rmrf(dir);
    free(dir);
    t_dagfx_close(f);
}

/* A double is [+-]digits[.digits][(e|E)[+-]digits] with a digit somewhere before
 * the exponent; what else strtod takes (hex, inf, nan, leading spaces) is text. */
static void only_decimal_numbers_are_doubles(void **state)
{
    (void)state;
    static const char *not_numbers[] = {"nan", "NaN", "Nan", "-nan", "inf", "Inf", "-inf", "+Infinity", "infinity",
                                        "0x1A", "0xff", "-0x10", "0x1p3", " 5", "\t5", " 1.5", "5 ", "+", "-", "+.",
                                        "-.", ".", "e5", ".e5", "1e", "1e+", "1e-", "1.5e", "1ee5", "1e5.5", "1..5",
                                        "1.5.", "++1", "1-", "1,5"};
    static const sp_col_type dbl[] = {SP_COL_DOUBLE};
    sp_csv_options od = {.schema = dbl, .schema_cols = 1, .delim = ';'};
    sp_csv_options oi = {.delim = ';'};
    for (size_t k = 0; k < sizeof not_numbers / sizeof *not_numbers; k++) {
        const char *v = not_numbers[k];
        char buf[64];
        /* after an int and after a double: the column is text either way */
        for (int first = 0; first < 2; first++) {
            snprintf(buf, sizeof buf, "x\n%s\n%s\n2\n", first ? "1.5" : "1", v);
            sp_table *t = parse_ok(buf, &oi);
            if (t->cols[0].type != SP_COL_STRING) fail_msg("\"%s\" was taken for a number", v);
            assert_string_equal(str_at(t, 0, 1), v);
            sp_table_free(t);
        }
        snprintf(buf, sizeof buf, "x\n%s\n", v);
        char says[64];
        snprintf(says, sizeof says, "not a double: %s", v);
        parse_fails(buf, &od, says);
    }
    /* a column of names that strtod would read as numbers */
    sp_table *t = parse_ok("name,n\nNan,1\nInf,2\nInfinity,3\n", NULL);
    assert_int_equal(t->cols[0].type, SP_COL_STRING);
    assert_int_equal(t->cols[0].ndict, 3);
    assert_string_equal(str_at(t, 0, 0), "Nan");
    sp_table_free(t);
    /* the forms of the grammar, each one checked against strtod */
    static const char *numbers[] = {"1e5", "1E5", "-1e-5", "+1.5E+3", "5.e3", ".5e-1", "-.5E2", "1.", ".5",
                                    "007", "0e0", "1e-400", "12345678901234567890e-10", "1.7976931348623157e308"};
    for (size_t k = 0; k < sizeof numbers / sizeof *numbers; k++) {
        char buf[64];
        snprintf(buf, sizeof buf, "x\n%s\n0.5\n", numbers[k]);
        for (int fixed = 0; fixed < 2; fixed++) {
            t = parse_ok(buf, fixed ? &od : &oi);
            assert_int_equal(t->cols[0].type, SP_COL_DOUBLE);
            double want = strtod(numbers[k], NULL);
            if (memcmp(&want, &t->cols[0].f64[0], 8) != 0)
                fail_msg("\"%s\": %.17g, strtod says %.17g", numbers[k], t->cols[0].f64[0], want);
            sp_table_free(t);
        }
    }
    parse_fails("x\n1e999\n", &od, "not a double: 1e999"); /* overflow: not a number, as before */
    /* Long decimals are numbers too, however long: 70 digits of pi, 300 zeros before a
     * 15, 800 digits with an exponent. */
    text lt = {0};
    static const char pi[] = "3.141592653589793238462643383279502884197169399375105820974944592307816";
    put(&lt, "x\n1\n%s\n0.", pi);
    for (int i = 0; i < 300; i++) put(&lt, "0");
    put(&lt, "15\n-");
    for (int i = 0; i < 800; i++) put(&lt, "%d", (i * 7 + 3) % 10);
    put(&lt, "e-790\n");
    for (unsigned n = 1; n <= 2; n++) {
        for (int fixed = 0; fixed < 2; fixed++) {
            t = parse_chunks(lt.s, lt.len, fixed ? &od : NULL, n);
            assert_int_equal(t->cols[0].type, SP_COL_DOUBLE);
            assert_int_equal(t->nrows, 4);
            const char *line = strchr(lt.s, '\n') + 1;
            for (int r = 0; r < 4; r++, line = strchr(line, '\n') + 1) {
                double want = strtod(line, NULL);
                if (memcmp(&want, &t->cols[0].f64[r], 8) != 0)
                    fail_msg("row %d: %.17g, strtod says %.17g", r, t->cols[0].f64[r], want);
            }
            sp_table_free(t);
        }
    }
    /* a long value's copy goes on the heap: when that fails, the parse is out of
     * memory, never "not a double" or a column of text */
    sp_table *whole = parse_chunks(lt.s, lt.len, NULL, 1);
    for (int fixed = 0; fixed < 2; fixed++) {
        sp_status st = SP_ERR_NOMEM;
        for (long k = 0; st != SP_OK; k++) {
            sp_table *got = NULL;
            sp_testing_fail_alloc_after(k);
            st = sp__csv_parse_chunks(lt.s, lt.len, fixed ? &od : NULL, "t.csv", 1, &got);
            sp_testing_fail_alloc_after(-1);
            if (st != SP_OK && st != SP_ERR_NOMEM) fail_msg("%ld allocations: %s", k, sp_last_error());
            if (st == SP_OK) assert_same_table(whole, got);
            sp_table_free(got);
        }
    }
    sp_table_free(whole);
    free(lt.s);
    /* mixed into chunks: the same types and values whatever the cut */
    text ct = {0};
    put(&ct, "a;b;c\n");
    for (int r = 0; r < 3000; r++)
        put(&ct, "%d;%s;%s\n", r, r == 2500 ? "inf" : r % 3 ? "1e3" : "2.5", r == 2900 ? "0x1A" : "7");
    assert_chunks_agree(ct.s, ct.len, &oi);
    t = parse_chunks(ct.s, ct.len, &oi, 4);
    assert_int_equal(t->cols[0].type, SP_COL_INT64);
    assert_int_equal(t->cols[1].type, SP_COL_STRING);
    assert_int_equal(t->cols[2].type, SP_COL_STRING);
    assert_string_equal(str_at(t, 2, 2900), "0x1A");
    sp_table_free(t);
    free(ct.s);
}

/* Two columns of one name: operations that look a column up by name would reach
 * only the first. The header is refused, naming the name and both columns. */
static void repeated_header_names_are_refused(void **state)
{
    (void)state;
    parse_fails("a,a\n1,2\n", NULL, "columns 1 and 2 of the header are both named 'a'");
    parse_fails("id,x,\"y\",\"x\"\n1,2,3,4\n", NULL, "columns 2 and 4 of the header are both named 'x'");
    /* an empty name is numbered (c2) unless the file has that name: then c2_2 */
    sp_table *t = parse_ok("c2,,c2_2\n1,2,3\n", NULL);
    assert_string_equal(t->cols[1].name, "c2_3");
    sp_table_free(t);
    t = parse_ok(",c1\n0,5\n", NULL);
    assert_string_equal(t->cols[0].name, "c1_2");
    assert_string_equal(t->cols[1].name, "c1");
    sp_table_free(t);
    parse_fails("a,,a\n1,2,3\n", NULL, "columns 1 and 3 of the header are both named 'a'");
    sp_table *bad = NULL;
    t_status(sp_csv_parse("k,v,k\n", 6, NULL, "t.csv", &bad), SP_ERR_CORRUPT);
    /* names differ by case, or only in a prefix: distinct */
    t = parse_ok("a,A,ab,a b\n1,2,3,4\n", NULL);
    assert_int_equal(t->ncols, 4);
    sp_table_free(t);
    /* without a header the names are c1, c2, ...: repeated values are data */
    sp_csv_options nh = {.no_header = 1};
    t = parse_ok("a,a\n", &nh);
    assert_string_equal(t->cols[1].name, "c2");
    sp_table_free(t);
    /* a wide header (the check is not quadratic): unique, then with one repeat */
    text w = {0};
    for (int c = 0; c < 5000; c++) put(&w, "%scol%d", c ? "," : "", c);
    put(&w, "\n");
    for (int c = 0; c < 5000; c++) put(&w, "%s%d", c ? "," : "", c);
    put(&w, "\n");
    t = parse_chunks(w.s, w.len, NULL, 1);
    assert_int_equal(t->ncols, 5000);
    sp_table_free(t);
    text w2 = {0};
    for (int c = 0; c < 5000; c++) put(&w2, "%scol%d", c ? "," : "", c == 4999 ? 1234 : c);
    put(&w2, "\n");
    t_status(sp__csv_parse_chunks(w2.s, w2.len, NULL, "t.csv", 1, &bad), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "columns 1235 and 5000 of the header are both named 'col1234'"));
    /* cut into chunks: the same error */
    text d = {0};
    put(&d, "k,v,k\n");
    for (int r = 0; r < 2000; r++) put(&d, "%d,%d,%d\n", r, r, r);
    assert_chunks_agree(d.s, d.len, NULL);
    t_status(sp__csv_parse_chunks(d.s, d.len, NULL, "t.csv", 4, &bad), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "t.csv: columns 1 and 3 of the header are both named 'k'"));
    free(w.s);
    free(w2.s);
    free(d.s);
}

/* A UTF-8 byte order mark at the start, as spreadsheets write, is not part of the
 * first name (or, without a header, the first value); elsewhere it is data. */
static void byte_order_mark_is_skipped(void **state)
{
    (void)state;
    sp_table *t = parse_ok("\xEF\xBB\xBFid,v\n1,2\n", NULL);
    assert_string_equal(t->cols[0].name, "id");
    assert_int_equal(sp_table_column(t, "id"), 0);
    assert_int_equal(t->cols[0].type, SP_COL_INT64);
    sp_table_free(t);
    t = parse_ok("\xEF\xBB\xBF\"a b\",c\n1,2\n", NULL);
    assert_string_equal(t->cols[0].name, "a b");
    sp_table_free(t);
    sp_csv_options nh = {.no_header = 1};
    t = parse_ok("\xEF\xBB\xBF" "1,x\n3,y\n", &nh);
    assert_int_equal(t->cols[0].type, SP_COL_INT64);
    assert_int_equal(t->cols[0].i64[0], 1);
    assert_int_equal(t->cols[0].i64[1], 3);
    sp_table_free(t);
    /* columns in messages count from after it */
    parse_fails("\xEF\xBB\xBF" "a,b\"\n", NULL, "line 1, field 2 (column 4): a quote inside an unquoted field");
    parse_fails("\xEF\xBB\xBF" "1,b\"\n", &nh, "line 1, field 2 (column 4): a quote inside an unquoted field");
    /* a mark alone is an empty file; one past the start is data */
    parse_fails("\xEF\xBB\xBF", NULL, "empty file");
    t = parse_ok("x\n\xEF\xBB\xBF" "a\n", NULL);
    assert_string_equal(str_at(t, 0, 0), "\xEF\xBB\xBF" "a");
    sp_table_free(t);
    /* cut into chunks, with and without a header: the table of the file without it */
    text a = {0}, b = {0};
    put(&b, "\xEF\xBB\xBF");
    for (int r = 0; r < 2000; r++) {
        put(&a, "%d,%s\n", r, r % 3 ? "north" : "south");
        put(&b, "%d,%s\n", r, r % 3 ? "north" : "south");
    }
    for (int h = 0; h < 2; h++) {
        sp_csv_options o = {.no_header = !h};
        assert_chunks_agree(b.s, b.len, &o);
        sp_table *want = parse_chunks(a.s, a.len, &o, 1);
        for (unsigned n = 1; n <= 4; n++) {
            sp_table *got = parse_chunks(b.s, b.len, &o, n);
            assert_same_table(want, got);
            sp_table_free(got);
        }
        assert_string_equal(want->cols[0].name, h ? "0" : "c1");
        sp_table_free(want);
    }
    free(a.s);
    free(b.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(types_are_inferred),
        cmocka_unit_test(inference_keeps_large_integers_exact),
        cmocka_unit_test(empty_header_names_are_numbered),
        cmocka_unit_test(rfc4180_quoting),
        cmocka_unit_test(schemas_are_enforced),
        cmocka_unit_test(malformed_input_names_line_and_column),
        cmocka_unit_test(loader_under_the_pool),
        cmocka_unit_test(chunks_split_at_record_boundaries),
        cmocka_unit_test(chunks_agree_on_types_and_codes),
        cmocka_unit_test(chunks_agree_on_random_csv),
        cmocka_unit_test(big_input_is_split_and_agrees),
        cmocka_unit_test(chunk_regions_overflow_and_underfill),
        cmocka_unit_test(numbers_match_strtod_and_strtoll),
        cmocka_unit_test(strings_alternate_around_key_lengths),
        cmocka_unit_test(empty_doubles_are_nan_with_a_schema),
        cmocka_unit_test(tables_of_files_with_missing_values),
        cmocka_unit_test(only_decimal_numbers_are_doubles),
        cmocka_unit_test(repeated_header_names_are_refused),
        cmocka_unit_test(byte_order_mark_is_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
