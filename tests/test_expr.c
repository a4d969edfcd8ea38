/* `where` expressions: each operator on each column type, exact int64 comparison,
 * NaN, precedence, error messages, per-partition dictionaries, concurrent
 * evaluation, and random expressions against a row-by-row reference. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "table/table_internal.h"

/* ---- building tables ---- */

/* Six rows of every column type:
 *   i int64:  -5, 0, 3, 3, 7, 100
 *   d double: -1.5, 0, 2.5, NaN, 1e300, -0.0
 *   u uint8:  0, 1, 200, 255, 7, 7
 *   p pooled uint8 over {10, 0, 255}: 10, 0, 255, 10, 0, 255
 *   s string: beta, alpha, "", alphabet, b, alpha */
static sp_table *mixed(void)
{
    static const sp_col_spec cols[] = {{"i", SP_COL_INT64, 0},
                                       {"d", SP_COL_DOUBLE, 0},
                                       {"u", SP_COL_UINT8, 0},
                                       {"p", SP_COL_UINT8, 1},
                                       {"s", SP_COL_STRING, 0}};
    static const int64_t iv[] = {-5, 0, 3, 3, 7, 100};
    const double dv[] = {-1.5, 0, 2.5, NAN, 1e300, -0.0};
    static const uint8_t uv[] = {0, 1, 200, 255, 7, 7};
    static const uint8_t pdict[] = {10, 0, 255};
    static const uint32_t pcodes[] = {0, 1, 2, 0, 1, 2};
    static const char *const sdict[] = {"beta", "alpha", "", "alphabet", "b"};
    static const uint32_t scodes[] = {0, 1, 2, 3, 4, 1};
    sp_table *t = NULL;
    t_ok(sp_table_new(5, cols, 6, &t));
    memcpy(t->cols[0].i64, iv, sizeof iv);
    memcpy(t->cols[1].f64, dv, sizeof dv);
    memcpy(t->cols[2].u8, uv, sizeof uv);
    memcpy(t->cols[3].u8, pdict, sizeof pdict);
    t->cols[3].ndict = 3;
    memcpy(t->cols[3].codes, pcodes, sizeof pcodes);
    t_ok(sp_table_set_dict(t, 4, 5, sdict));
    memcpy(t->cols[4].codes, scodes, sizeof scodes);
    return t;
}

/* One string column "s" whose rows are the strings given, each its own code. */
static sp_table *strings(uint32_t n, const char *const *s)
{
    const sp_col_spec col = {"s", SP_COL_STRING, 0};
    sp_table *t = NULL;
    t_ok(sp_table_new(1, &col, n, &t));
    t_ok(sp_table_set_dict(t, 0, n, s));
    for (uint32_t r = 0; r < n; r++) t->cols[0].codes[r] = r;
    return t;
}

/* ---- checking ---- */

/* Evaluate text on t and compare keep with want, a '0'/'1' character per row. */
static void keeps(const sp_table *t, const char *text, const char *want)
{
    sp_expr *e = NULL;
    t_ok(sp__expr_compile(text, t, &e));
    assert_int_equal(strlen(want), t->nrows);
    uint8_t *keep = malloc(t->nrows + 1);
    t_ok(sp__expr_eval(e, t, keep));
    for (uint64_t r = 0; r < t->nrows; r++)
        if (keep[r] != (uint8_t)(want[r] - '0'))
            fail_msg("%s: row %llu kept %d, want %c (want %s)", text, (unsigned long long)r, keep[r], want[r], want);
    free(keep);
    sp__expr_free(e);
}

static void rejects(const sp_table *t, const char *text, const char *says)
{
    static char dummy;
    sp_expr *e = (sp_expr *)(void *)&dummy; /* not NULL, to see it cleared */
    sp_status st = sp__expr_compile(text, t, &e);
    if (st == SP_OK) fail_msg("compiled, but should fail with \"%s\": %s", says, text);
    assert_int_equal(st, SP_ERR_INVALID);
    assert_null(e);
    if (!strstr(sp_last_error(), says)) fail_msg("%s: message \"%s\" lacks \"%s\"", text, sp_last_error(), says);
}

/* ---- operators on each type ---- */

static void int64_operators(void **state)
{
    (void)state;
    sp_table *t = mixed(); /* i: -5, 0, 3, 3, 7, 100 */
    keeps(t, "i = 3", "001100");
    keeps(t, "i == 3", "001100");
    keeps(t, "i != 3", "110011");
    keeps(t, "i < 3", "110000");
    keeps(t, "i <= 3", "111100");
    keeps(t, "i > 3", "000011");
    keeps(t, "i >= 3", "001111");
    keeps(t, "i > -5", "011111");
    keeps(t, "i >= +0", "011111");
    keeps(t, "i=-5", "100000");
    /* decimal literals compare exactly too */
    keeps(t, "i < 2.5", "110000");
    keeps(t, "i <= 2.5", "110000");
    keeps(t, "i > 2.5", "001111");
    keeps(t, "i >= 2.5", "001111");
    keeps(t, "i = 2.5", "000000");
    keeps(t, "i != 2.5", "111111");
    keeps(t, "i > -5.5", "111111");
    keeps(t, "i < -4.5", "100000");
    keeps(t, "i = 3e0", "001100");
    keeps(t, "i = 30e-1", "001100");
    keeps(t, "i = 0.3e1", "001100");
    keeps(t, "i = -0.0", "010000");
    keeps(t, "i > 1e1", "000001");
    keeps(t, "i = 3.0", "001100");
    keeps(t, "i >= .5", "001111");
    sp_table_free(t);
}

static void int64_comparison_is_exact_near_2_pow_53(void **state)
{
    (void)state;
    const sp_col_spec col = {"b", SP_COL_INT64, 0};
    sp_table *t = NULL;
    t_ok(sp_table_new(1, &col, 5, &t));
    const int64_t v[] = {9007199254740992, 9007199254740993, 9007199254740994, INT64_MAX, INT64_MIN};
    memcpy(t->cols[0].i64, v, sizeof v);
    keeps(t, "b = 9007199254740993", "01000");
    keeps(t, "b > 9007199254740992", "01110");
    keeps(t, "b < 9007199254740993", "10001");
    keeps(t, "b != 9007199254740994", "11011");
    keeps(t, "b = 9223372036854775807", "00010");
    keeps(t, "b = -9223372036854775808", "00001");
    /* integers past int64's range are above or below every row, exactly */
    keeps(t, "b >= 9223372036854775808", "00000");
    keeps(t, "b < 9223372036854775808", "11111");
    keeps(t, "b != 99999999999999999999", "11111");
    keeps(t, "b > -9223372036854775809", "11111");
    keeps(t, "b <= -9223372036854775809", "00000");
    /* a decimal literal compares as written, not as the double it rounds to */
    keeps(t, "b = 9007199254740993.0", "01000");
    keeps(t, "b = 9007199254740993e0", "01000");
    keeps(t, "b < 9007199254740992.5", "10001");
    keeps(t, "b > 9007199254740993.7", "00110");
    keeps(t, "b = 9.007199254740994e15", "00100");
    keeps(t, "b = 9223372036854775807.0", "00010");
    keeps(t, "b < 9223372036854775807.5", "11111");
    keeps(t, "b > 9223372036854775807.5", "00000");
    keeps(t, "b > -9223372036854775808.5", "11111");
    keeps(t, "b = -9.223372036854775808e18", "00001");
    keeps(t, "b < 1e19", "11111");
    keeps(t, "b > -1e300", "11111");
    keeps(t, "b = 1e-300", "00000");
    sp_table_free(t);
}

static void double_operators_and_nan(void **state)
{
    (void)state;
    sp_table *t = mixed(); /* d: -1.5, 0, 2.5, NaN, 1e300, -0.0 */
    keeps(t, "d = 0", "010001");
    keeps(t, "d != 0", "101110"); /* NaN != anything */
    keeps(t, "d < 0", "100000");
    keeps(t, "d <= 0", "110001");
    keeps(t, "d > 0", "001010");
    keeps(t, "d >= 0", "011011");
    keeps(t, "d = 2.5", "001000");
    keeps(t, "d = 25e-1", "001000");
    keeps(t, "d > 1E299", "000010");
    keeps(t, "d < 1e999", "111011"); /* infinity; NaN still false */
    keeps(t, "d < 99999999999999999999", "111001"); /* past int64: a double here */
    keeps(t, "not d < 0", "011111");                /* not (NaN < 0) holds */
    sp_table_free(t);
}

static void uint8_operators(void **state)
{
    (void)state;
    sp_table *t = mixed(); /* u: 0, 1, 200, 255, 7, 7 */
    keeps(t, "u = 7", "000011");
    keeps(t, "u == 7", "000011");
    keeps(t, "u != 7", "111100");
    keeps(t, "u < 7", "110000");
    keeps(t, "u <= 7", "110011");
    keeps(t, "u > 200", "000100");
    keeps(t, "u >= 200", "001100");
    keeps(t, "u < 1.5", "110000");
    keeps(t, "u > -1", "111111");
    keeps(t, "u = 256", "000000");
    keeps(t, "u < 99999999999999999999", "111111");
    keeps(t, "u > -99999999999999999999", "111111");
    sp_table_free(t);
}

static void pooled_uint8_operators(void **state)
{
    (void)state;
    sp_table *t = mixed(); /* p: 10, 0, 255, 10, 0, 255 */
    keeps(t, "p = 10", "100100");
    keeps(t, "p == 0", "010010");
    keeps(t, "p != 0", "101101");
    keeps(t, "p < 10", "010010");
    keeps(t, "p <= 10", "110110");
    keeps(t, "p > 10", "001001");
    keeps(t, "p >= 255", "001001");
    keeps(t, "p > 9.5", "101101");
    keeps(t, "p = 256", "000000");
    sp_table_free(t);
}

static void string_operators_in_byte_order(void **state)
{
    (void)state;
    sp_table *t = mixed(); /* s: beta, alpha, "", alphabet, b, alpha */
    keeps(t, "s = 'alpha'", "010001");
    keeps(t, "s == \"alpha\"", "010001");
    keeps(t, "s != 'alpha'", "101110");
    keeps(t, "s < 'alphabet'", "011001"); /* a prefix sorts first */
    keeps(t, "s <= 'alphabet'", "011101");
    keeps(t, "s > 'b'", "100000");
    keeps(t, "s >= 'b'", "100010");
    keeps(t, "s = ''", "001000");
    keeps(t, "s > ''", "110111");
    keeps(t, "s = 'Alpha'", "000000");
    sp_table_free(t);
    /* bytes compare unsigned; a doubled quote is the quote itself */
    static const char *const v[] = {"z", "\xc3\xa9t\xc3\xa9", "it's", "say \"hi\""};
    t = strings(4, v);
    keeps(t, "s > 'z'", "0100");
    keeps(t, "s = 'it''s'", "0010");
    keeps(t, "s = \"it's\"", "0010");
    keeps(t, "s = \"say \"\"hi\"\"\"", "0001");
    keeps(t, "s = 'say \"hi\"'", "0001");
    sp_table_free(t);
}

static void each_partition_has_its_own_dictionary(void **state)
{
    (void)state;
    const sp_col_spec col = {"s", SP_COL_STRING, 0};
    sp_table *schema = NULL, *a = NULL, *b = NULL;
    t_ok(sp_table_new(1, &col, 0, &schema));
    static const char *const da[] = {"x", "y"}, *const db[] = {"y", "z", "x"};
    t_ok(sp_table_new(1, &col, 3, &a));
    t_ok(sp_table_set_dict(a, 0, 2, da));
    a->cols[0].codes[0] = 0, a->cols[0].codes[1] = 1, a->cols[0].codes[2] = 1; /* x y y */
    t_ok(sp_table_new(1, &col, 3, &b));
    t_ok(sp_table_set_dict(b, 0, 3, db));
    b->cols[0].codes[0] = 2, b->cols[0].codes[1] = 0, b->cols[0].codes[2] = 1; /* x y z */
    sp_expr *e = NULL;
    t_ok(sp__expr_compile("s = 'x' or s = 'z'", schema, &e));
    uint8_t keep[3];
    t_ok(sp__expr_eval(e, a, keep));
    assert_true(keep[0] == 1 && keep[1] == 0 && keep[2] == 0);
    t_ok(sp__expr_eval(e, b, keep));
    assert_true(keep[0] == 1 && keep[1] == 0 && keep[2] == 1);
    t_ok(sp__expr_eval(e, a, keep)); /* and back: nothing of b's was kept */
    assert_true(keep[0] == 1 && keep[1] == 0 && keep[2] == 0);
    /* a partition without rows needs no keep array */
    t_ok(sp__expr_eval(e, schema, NULL));
    sp__expr_free(e);
    sp_table_free(schema);
    sp_table_free(a);
    sp_table_free(b);
}

/* ---- the language ---- */

static void not_binds_tighter_than_and_tighter_than_or(void **state)
{
    (void)state;
    sp_table *t = mixed(); /* i: -5, 0, 3, 3, 7, 100; s: beta, alpha, "", alphabet, b, alpha */
    keeps(t, "i = 3 or i = 7 and s = 'b'", "001110");
    keeps(t, "(i = 3 or i = 7) and s = 'b'", "000010");
    keeps(t, "s = 'b' and i = 7 or i = 3", "001110");
    keeps(t, "not i = 3 and s = 'alpha'", "010001");
    keeps(t, "not (i = 3 and s = 'alphabet')", "111011");
    keeps(t, "not i = 3 or i = 3", "111111");
    keeps(t, "not not i = 3", "001100");
    keeps(t, "((((i = 0))))", "010000");
    keeps(t, "i = 0 or (i = 3 and (s = '' or not s != 'alphabet'))", "011100");
    sp_table_free(t);
}

static void keywords_ignore_case_and_space_is_optional(void **state)
{
    (void)state;
    sp_table *t = mixed();
    keeps(t, "i = 3 AND s = 'alphabet' Or i = 100", "000101");
    keeps(t, "NOT i=3 aNd i>=0", "010011");
    keeps(t, "\ti>=3\n", "001111");
    keeps(t, "(i=3)or(i=7)", "001110");
    sp_table_free(t);
}

static void backquotes_name_any_column(void **state)
{
    (void)state;
    static const sp_col_spec cols[] = {{"two words", SP_COL_INT64, 0},
                                       {"x.y", SP_COL_INT64, 0},
                                       {"tick`s", SP_COL_INT64, 0},
                                       {"and", SP_COL_INT64, 0}};
    sp_table *t = NULL;
    t_ok(sp_table_new(4, cols, 3, &t));
    for (uint32_t c = 0; c < 4; c++)
        for (int r = 0; r < 3; r++) t->cols[c].i64[r] = r + 1;
    keeps(t, "`two words` >= 2", "011");
    keeps(t, "x.y = 2", "010");
    keeps(t, "`x.y` = 3", "001");
    keeps(t, "`tick``s` < 3", "110");
    keeps(t, "`and` = 1 and `and` = 1", "100");
    sp_table_free(t);
}

static void long_chains_need_no_deep_recursion(void **state)
{
    (void)state;
    sp_table *t = mixed();
    /* 5000 terms of or: one node with 5000 children */
    size_t cap = 5000 * 16;
    char *text = malloc(cap);
    size_t at = 0;
    for (int k = 0; k < 5000; k++) at += (size_t)snprintf(text + at, cap - at, "%si = %d", k ? " or " : "", k + 3);
    keeps(t, text, "001111");
    free(text);
    sp_table_free(t);
}

/* ---- errors ---- */

/* a: string, b: int64 (the messages of the documentation) */
static sp_table *ab(void)
{
    static const sp_col_spec cols[] = {{"a", SP_COL_STRING, 0}, {"b", SP_COL_INT64, 0}};
    sp_table *t = NULL;
    t_ok(sp_table_new(2, cols, 0, &t));
    return t;
}

static void unknown_column_lists_the_columns(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "x = 1", "where: column 'x' does not exist (columns: a, b)");
    rejects(t, "b = 1 or `a b` = 'z'", "where: column 'a b' does not exist");
    rejects(t, "A = 'x'", "column 'A' does not exist"); /* names are case-sensitive */
    /* a name cut short by a character a bare name cannot hold: the way out is named */
    rejects(t, "my-col = 1", "column 'my' does not exist (columns: a, b); a name with other characters");
    rejects(t, "my-col = 1", "goes in backquotes, as `my-col`");
    sp_expr *e = NULL;
    assert_int_equal(sp__expr_compile("x = 1", t, &e), SP_ERR_INVALID);
    assert_null(strstr(sp_last_error(), "backquotes")); /* not for a plain unknown name */
    sp_table_free(t);
}

static void string_column_compared_with_number_is_rejected(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "a = 3", "where: column 'a' is a string; compared with the number 3");
    rejects(t, "b = 1 or a < -2.5e3", "compared with the number -2.5e3");
    sp_table_free(t);
}

static void number_column_compared_with_string_is_rejected(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "b = 'x'", "where: column 'b' is a number (int64); compared with the string 'x'");
    rejects(t, "b = \"12\"", "compared with the string '12'");
    sp_table_free(t);
    t = mixed();
    rejects(t, "d > 'x'", "column 'd' is a number (double)");
    rejects(t, "u > 'x'", "column 'u' is a number (uint8)");
    sp_table_free(t);
}

static void missing_operator_names_its_position(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "not (a'x')", "where: at character 7: expected a comparison operator");
    rejects(t, "b ! 3", "where: at character 3: expected a comparison operator (= == != < <= > >=) after column 'b', "
                        "found '!'");
    rejects(t, "b", "at character 2: expected a comparison operator");
    rejects(t, "b <> 3", "at character 4: expected a number or a quoted string after '<', found '>'");
    rejects(t, "b =", "at character 4: expected a number or a quoted string after '=', found the end");
    rejects(t, "b = a", "expected a number or a quoted string after '=', found 'a'");
    sp_table_free(t);
}

static void unterminated_quotes_are_rejected(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "a = 'abc", "where: at character 5: unterminated string (no closing ')");
    rejects(t, "a = \"ab''", "at character 5: unterminated string (no closing \")");
    rejects(t, "a = 'it''", "at character 5: unterminated string");
    rejects(t, "b = 1 or `b = 2", "at character 10: unterminated column name");
    sp_table_free(t);
}

static void trailing_garbage_is_rejected(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "b = 1 xyz", "where: at character 7: expected 'and', 'or' or the end of the expression, found 'xyz'");
    rejects(t, "b = 1)", "where: at character 6: unmatched ')'");
    rejects(t, "b = 1 && b = 2", "at character 7: expected 'and', 'or' or the end of the expression, found '&'");
    rejects(t, "b = 1 \x01", "found the byte 0x01");
    sp_table_free(t);
}

static void empty_expression_is_rejected(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "", "where: the expression is empty");
    rejects(t, " \t\n", "where: the expression is empty");
    rejects(t, "()", "at character 2: expected a column name, 'not' or '(', found ')'");
    rejects(t, "b = 1 and", "at character 10: expected a column name, 'not' or '(', found the end of the expression");
    rejects(t, "not", "at character 4: expected a column name");
    sp_table_free(t);
}

static void other_syntax_errors_name_position_and_problem(void **state)
{
    (void)state;
    sp_table *t = ab();
    rejects(t, "(b = 1", "at character 7: expected 'and', 'or' or ')' to close the '(' at character 1, found the end");
    rejects(t, "(b = 1 b", "at character 8: expected 'and', 'or' or ')' to close the '(' at character 1, found 'b'");
    rejects(t, "3 = b", "at character 1: expected a column name or '(', found '3'");
    rejects(t, "b = 1.2.3", "at character 5: bad number '1.2.3'");
    rejects(t, "b = 12abc", "at character 5: bad number '12abc'");
    rejects(t, "b = 1e", "bad number '1e'");
    rejects(t, "b = - 1", "after '=', found '-'");
    rejects(t, "`` = 1", "at character 1: empty column name");
    /* nesting is bounded, so a hostile expression cannot exhaust the stack */
    char deep[1000];
    memset(deep, '(', 300);
    strcpy(deep + 300, "b = 1");
    rejects(t, deep, "nested too deeply");
    deep[0] = '\0';
    for (int k = 0; k < 200; k++) strcat(deep, "not ");
    strcat(deep, "b = 1");
    rejects(t, deep, "nested too deeply");
    t_status(sp__expr_compile(NULL, t, &(sp_expr *){NULL}), SP_ERR_INVALID);
    sp_table_free(t);
}

/* ---- evaluation ---- */

typedef struct eval_job {
    const sp_expr *e;
    const sp_table *t;
    uint8_t *keep;
    sp_status st;
} eval_job;

static void *eval_worker(void *arg)
{
    eval_job *j = arg;
    for (int k = 0; k < 20 && j->st == SP_OK; k++) j->st = sp__expr_eval(j->e, j->t, j->keep);
    return NULL;
}

static void many_threads_evaluate_one_expression(void **state)
{
    (void)state;
    enum { NROWS = 100000, NTHREADS = 8 };
    static const sp_col_spec cols[] = {{"i", SP_COL_INT64, 0}, {"s", SP_COL_STRING, 0}};
    static const char *const dict[] = {"red", "green", "blue"};
    sp_table *t = NULL;
    t_ok(sp_table_new(2, cols, NROWS, &t));
    t_ok(sp_table_set_dict(t, 1, 3, dict));
    for (uint32_t r = 0; r < NROWS; r++) {
        t->cols[0].i64[r] = (int64_t)(r * 7919u % 1000);
        t->cols[1].codes[r] = r % 3;
    }
    sp_expr *e = NULL;
    t_ok(sp__expr_compile("(i < 300 or i >= 900) and not s = 'green' or s = 'blue' and i = 5", t, &e));
    eval_job jobs[NTHREADS];
    pthread_t th[NTHREADS];
    for (int k = 0; k < NTHREADS; k++) {
        jobs[k] = (eval_job){.e = e, .t = t, .keep = malloc(NROWS), .st = SP_OK};
        assert_int_equal(pthread_create(&th[k], NULL, eval_worker, &jobs[k]), 0);
    }
    for (int k = 0; k < NTHREADS; k++) assert_int_equal(pthread_join(th[k], NULL), 0);
    for (int k = 0; k < NTHREADS; k++) {
        t_ok(jobs[k].st);
        for (uint32_t r = 0; r < NROWS; r++) {
            int64_t i = t->cols[0].i64[r];
            uint32_t s = t->cols[1].codes[r];
            int want = ((i < 300 || i >= 900) && s != 1) || (s == 2 && i == 5);
            if (jobs[k].keep[r] != want) fail_msg("thread %d row %u: kept %d, want %d", k, r, jobs[k].keep[r], want);
        }
        free(jobs[k].keep);
    }
    sp__expr_free(e);
    sp_table_free(t);
}

/* ---- random expressions against a reference ---- */

/* Rows span several evaluation blocks. */
#define R_ROWS 20000u
enum { R_I, R_D, R_U, R_P, R_S, R_NCOLS };
static const char *const r_strings[] = {"", "a", "ab", "abc", "b", "ba", "Zed", "\xc3\xa9t\xc3\xa9", "it's"};
#define R_NSTR 9u
static const uint8_t r_pool[] = {0, 3, 7, 128, 255};

static uint64_t r_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    r_state ^= r_state << 13;
    r_state ^= r_state >> 7;
    r_state ^= r_state << 17;
    return r_state;
}
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

static sp_table *random_table(void)
{
    static const sp_col_spec cols[] = {{"i", SP_COL_INT64, 0},
                                       {"d", SP_COL_DOUBLE, 0},
                                       {"u", SP_COL_UINT8, 0},
                                       {"p", SP_COL_UINT8, 1},
                                       {"s", SP_COL_STRING, 0}};
    static const int64_t big[] = {9007199254740992, 9007199254740993, INT64_MAX, INT64_MIN};
    sp_table *t = NULL;
    t_ok(sp_table_new(R_NCOLS, cols, R_ROWS, &t));
    memcpy(t->cols[R_P].u8, r_pool, sizeof r_pool);
    t->cols[R_P].ndict = sizeof r_pool;
    t_ok(sp_table_set_dict(t, R_S, R_NSTR, r_strings));
    for (uint32_t r = 0; r < R_ROWS; r++) {
        t->cols[R_I].i64[r] = below(20) ? (int64_t)below(41) - 20 : big[below(4)];
        uint32_t k = below(50);
        t->cols[R_D].f64[r] = k == 0 ? NAN : k == 1 ? -0.0 : k == 2 ? INFINITY : ((double)below(81) - 40) / 4;
        t->cols[R_U].u8[r] = (uint8_t)(below(4) ? below(12) : below(256));
        t->cols[R_P].codes[r] = below(sizeof r_pool);
        t->cols[R_S].codes[r] = below(R_NSTR);
    }
    return t;
}

typedef struct rnode {
    int kind; /* 0 compare, 1 and, 2 or, 3 not */
    int col, op, is_int;
    int64_t i;
    double d;
    const char *s;
    int n;
    struct rnode *kids[3];
} rnode;

static const char *const r_ops[] = {"=", "!=", "<", "<=", ">", ">="};

static rnode *random_tree(int depth)
{
    rnode *n = calloc(1, sizeof *n);
    uint32_t pick = depth > 0 ? below(10) : 0;
    if (pick >= 4) {
        n->kind = pick < 7 ? 1 : pick < 9 ? 2 : 3;
        n->n = n->kind == 3 ? 1 : 2 + (int)below(2);
        for (int k = 0; k < n->n; k++) n->kids[k] = random_tree(depth - 1);
        return n;
    }
    n->col = (int)below(R_NCOLS);
    n->op = (int)below(6);
    if (n->col == R_S) {
        static const char *const extra[] = {"abd", "Z", "\xc3\xa9", "a\xc3"};
        n->s = below(3) ? r_strings[below(R_NSTR)] : extra[below(4)];
        return n;
    }
    n->is_int = below(3) != 0;
    if (n->is_int) {
        static const int64_t big[] = {9007199254740992, 9007199254740993, INT64_MAX, INT64_MIN, 255, 256, -1};
        n->i = below(5) ? (int64_t)below(41) - 20 : big[below(7)];
        n->d = (double)n->i;
    } else
        n->d = ((double)below(81) - 40) / 4;
    return n;
}

static void free_tree(rnode *n)
{
    for (int k = 0; k < n->n; k++) free_tree(n->kids[k]);
    free(n);
}

static int prec(const rnode *n) { return n->kind == 0 ? 4 : n->kind == 3 ? 3 : n->kind == 1 ? 2 : 1; }

static void put(char **at, const char *text)
{
    size_t n = strlen(text);
    memcpy(*at, text, n);
    *at += n;
    **at = '\0';
}

static const char *keyword(const char *w)
{
    static char buf[8];
    for (size_t k = 0; k <= strlen(w); k++) buf[k] = below(4) == 0 && w[k] >= 'a' ? (char)(w[k] - 'a' + 'A') : w[k];
    return buf;
}

/* Text of n, parenthesized where precedence needs it and sometimes where not. */
static void print_tree(const rnode *n, char **at)
{
    static const char *const names[] = {"i", "d", "u", "p", "s"};
    char buf[64];
    if (n->kind == 0) {
        put(at, below(4) ? names[n->col] : (const char *[]){"`i`", "`d`", "`u`", "`p`", "`s`"}[n->col]);
        put(at, below(3) ? " " : "");
        put(at, n->op == 0 && below(2) ? "==" : r_ops[n->op]);
        put(at, below(3) ? " " : "");
        if (n->col == R_S) {
            char q = below(2) ? '\'' : '"';
            *(*at)++ = q;
            for (const char *c = n->s; *c; c++) {
                *(*at)++ = *c;
                if (*c == q) *(*at)++ = q;
            }
            *(*at)++ = q;
            **at = '\0';
        } else {
            if (n->is_int) snprintf(buf, sizeof buf, "%lld", (long long)n->i);
            else snprintf(buf, sizeof buf, below(2) ? "%.2f" : "%.17g", n->d);
            /* "%.17g" of a whole number prints no point: keep it a decimal literal */
            if (!n->is_int && !strpbrk(buf, ".e")) strcat(buf, ".0");
            put(at, buf);
        }
        return;
    }
    if (n->kind == 3) put(at, keyword("not "));
    for (int k = 0; k < n->n; k++) {
        if (k) put(at, keyword(n->kind == 1 ? " and " : " or "));
        const rnode *c = n->kids[k];
        int paren = prec(c) < prec(n) || (n->kind == 3 && c->kind != 0 && c->kind != 3) || below(4) == 0;
        if (paren) put(at, "(");
        print_tree(c, at);
        if (paren) put(at, ")");
    }
}

static int test_op(int c, int op)
{
    switch (op) {
    case 0: return c == 0;
    case 1: return c != 0;
    case 2: return c < 0;
    case 3: return c <= 0;
    case 4: return c > 0;
    default: return c >= 0;
    }
}

static int test_f64(double a, double b, int op)
{
    switch (op) {
    case 0: return a == b;
    case 1: return a != b;
    case 2: return a < b;
    case 3: return a <= b;
    case 4: return a > b;
    default: return a >= b;
    }
}

/* The reference: one row at a time, straight from the definition. */
static int ref_eval(const rnode *n, const sp_table *t, uint32_t r)
{
    switch (n->kind) {
    case 1:
        for (int k = 0; k < n->n; k++)
            if (!ref_eval(n->kids[k], t, r)) return 0;
        return 1;
    case 2:
        for (int k = 0; k < n->n; k++)
            if (ref_eval(n->kids[k], t, r)) return 1;
        return 0;
    case 3: return !ref_eval(n->kids[0], t, r);
    default: break;
    }
    const sp_column *col = &t->cols[n->col];
    if (n->col == R_S) {
        const char *v = col->dict[col->codes[r]];
        size_t a = strlen(v), b = strlen(n->s);
        int c = memcmp(v, n->s, a < b ? a : b);
        return test_op(c ? c : (a > b) - (a < b), n->op);
    }
    if (n->col == R_D) return test_f64(col->f64[r], n->d, n->op);
    int64_t v = n->col == R_I ? col->i64[r] : n->col == R_U ? col->u8[r] : col->u8[col->codes[r]];
    if (n->is_int) return test_op((v > n->i) - (v < n->i), n->op);
    return test_f64((double)v, n->d, n->op);
}

static void random_expressions_match_reference(void **state)
{
    (void)state;
    sp_table *t = random_table();
    uint8_t *keep = malloc(R_ROWS);
    char *text = malloc(1 << 16);
    for (int trial = 0; trial < 500; trial++) {
        rnode *tree = random_tree((int)below(5));
        char *at = text;
        put(&at, "");
        print_tree(tree, &at);
        sp_expr *e = NULL;
        if (sp__expr_compile(text, t, &e) != SP_OK) fail_msg("%s: %s", text, sp_last_error());
        t_ok(sp__expr_eval(e, t, keep));
        for (uint32_t r = 0; r < R_ROWS; r++) {
            int want = ref_eval(tree, t, r);
            if (keep[r] != want) fail_msg("%s: row %u kept %d, want %d", text, r, keep[r], want);
        }
        sp__expr_free(e);
        free_tree(tree);
    }
    free(text);
    free(keep);
    sp_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(int64_operators),
        cmocka_unit_test(int64_comparison_is_exact_near_2_pow_53),
        cmocka_unit_test(double_operators_and_nan),
        cmocka_unit_test(uint8_operators),
        cmocka_unit_test(pooled_uint8_operators),
        cmocka_unit_test(string_operators_in_byte_order),
        cmocka_unit_test(each_partition_has_its_own_dictionary),
        cmocka_unit_test(not_binds_tighter_than_and_tighter_than_or),
        cmocka_unit_test(keywords_ignore_case_and_space_is_optional),
        cmocka_unit_test(backquotes_name_any_column),
        cmocka_unit_test(long_chains_need_no_deep_recursion),
        cmocka_unit_test(unknown_column_lists_the_columns),
        cmocka_unit_test(string_column_compared_with_number_is_rejected),
        cmocka_unit_test(number_column_compared_with_string_is_rejected),
        cmocka_unit_test(missing_operator_names_its_position),
        cmocka_unit_test(unterminated_quotes_are_rejected),
        cmocka_unit_test(trailing_garbage_is_rejected),
        cmocka_unit_test(empty_expression_is_rejected),
        cmocka_unit_test(other_syntax_errors_name_position_and_problem),
        cmocka_unit_test(many_threads_evaluate_one_expression),
        cmocka_unit_test(random_expressions_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
