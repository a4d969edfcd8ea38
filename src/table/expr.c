/* `where` expressions: a recursive-descent parser to a small tree, and a columnar
 * evaluator.
 *
 *   or      := and ('or' and)*
 *   and     := unary ('and' unary)*
 *   unary   := 'not' unary | '(' or ')' | column OP value
 *   column  := [A-Za-z_][A-Za-z0-9_.]*  |  `any text` (`` for a backquote)
 *   OP      := = == != < <= > >=
 *   value   := number | 'text' | "text" (the quote doubled inside for itself)
 *
 * Evaluation runs over blocks of rows, a node at a time: a comparison fills a byte
 * per row with a tight loop (or, for dictionary-coded columns, a lookup in a table
 * of the predicate over the partition's dictionary), and and/or/not combine those
 * bytes. Chains of and/or are one node with many children, so a long chain costs
 * one scratch block, not one per term. The compiled tree is never written after
 * compile, so any number of threads may evaluate it at once. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/alloc.h"
#include "table_internal.h"

enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
static const char *const sp_op_text[] = {"=", "!=", "<", "<=", ">", ">="};

enum { N_CMP, N_AND, N_OR, N_NOT };

/* How a comparison is evaluated, chosen at compile from the column type and literal. */
enum {
    L_CONST, /* the same for every row (a literal outside int64's range, or = with a fraction) */
    L_I64,   /* int64 column: exact, a literal with a fraction turned into its floor */
    L_F64,   /* double column */
    L_U8,    /* uint8 column: tab[value] */
    L_STR    /* string column: the predicate over the partition's dictionary */
};

#define SP_NONE UINT32_MAX
/* Nesting of parentheses and `not` allowed: bounds the recursion in parse and eval. */
#define SP_EXPR_MAX_DEPTH 100
/* Rows per evaluation block: scratch stays in cache and costs levels x this much. */
#define SP_EXPR_BLOCK 8192

typedef struct sp_enode {
    uint8_t kind, op, how, konst;
    sp_col_type type;     /* the column's, checked against each partition */
    uint32_t col;
    uint32_t first, next; /* children of and/or/not; the next sibling */
    uint32_t slot;        /* the per-evaluation dictionary table (L_U8, L_STR) */
    int64_t i;
    double d;
    char *s; /* L_STR: the literal's bytes (NUL-terminated for messages) */
    uint32_t slen;
    uint8_t *tab; /* L_U8: 256 entries, the predicate of each value */
} sp_enode;

struct sp_expr {
    sp_enode *nodes;
    uint32_t n, cap, root;
    uint32_t nslots;   /* comparisons that need a dictionary table */
    uint32_t nscratch; /* scratch blocks needed at once */
};

/* ---- lexing ---- */

enum { T_END, T_LP, T_RP, T_OP, T_AND, T_OR, T_NOT, T_NAME, T_QNAME, T_NUM, T_STR, T_BAD };

typedef struct sp_tok {
    int kind, op;
    size_t at, end; /* bytes of text */
} sp_tok;

typedef struct sp_eparser {
    const char *s;
    size_t pos;
    const sp_table *schema;
    sp_expr *e;
    int depth;
} sp_eparser;

static sp_status sp_syntax(size_t at, const char *fmt, ...) SP_PRINTF(2, 3);
static sp_status sp_syntax(size_t at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sp__fail(SP_ERR_INVALID, "where: at character %zu: %s", at + 1, msg);
}

static int sp_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int sp_is_digit(char c) { return c >= '0' && c <= '9'; }
static int sp_is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int sp_is_name(char c) { return sp_is_alpha(c) || sp_is_digit(c) || c == '.'; }

/* The token at p->pos (not consumed). Errors: an unterminated quote or a bad number. */
static sp_status sp_lex(sp_eparser *p, sp_tok *t)
{
    const char *s = p->s;
    size_t i = p->pos;
    while (sp_is_space(s[i])) i++;
    t->at = i;
    t->op = 0;
    char c = s[i];
    if (c == '\0') {
        t->kind = T_END;
        t->end = i;
        return SP_OK;
    }
    t->end = i + 1;
    switch (c) {
    case '(': t->kind = T_LP; return SP_OK;
    case ')': t->kind = T_RP; return SP_OK;
    case '=':
        t->kind = T_OP, t->op = OP_EQ;
        if (s[i + 1] == '=') t->end++;
        return SP_OK;
    case '!':
        if (s[i + 1] != '=') break;
        t->kind = T_OP, t->op = OP_NE, t->end++;
        return SP_OK;
    case '<':
    case '>':
        t->kind = T_OP, t->op = c == '<' ? OP_LT : OP_GT;
        if (s[i + 1] == '=') t->op++, t->end++; /* OP_LE, OP_GE follow OP_LT, OP_GT */
        return SP_OK;
    case '\'':
    case '"':
    case '`':
        for (size_t k = i + 1;; k++) {
            if (s[k] == '\0') {
                if (c == '`') return sp_syntax(i, "unterminated column name (no closing `)");
                return sp_syntax(i, "unterminated string (no closing %c)", c);
            }
            if (s[k] == c) {
                if (s[k + 1] == c) { /* doubled: the quote itself */
                    k++;
                    continue;
                }
                t->kind = c == '`' ? T_QNAME : T_STR;
                t->end = k + 1;
                return SP_OK;
            }
        }
    default: break;
    }
    if (sp_is_alpha(c)) {
        size_t k = i;
        while (sp_is_name(s[k])) k++;
        t->end = k;
        t->kind = T_NAME;
        if (k - i == 3 && strncasecmp(s + i, "and", 3) == 0) t->kind = T_AND;
        else if (k - i == 2 && strncasecmp(s + i, "or", 2) == 0) t->kind = T_OR;
        else if (k - i == 3 && strncasecmp(s + i, "not", 3) == 0) t->kind = T_NOT;
        return SP_OK;
    }
    if (sp_is_digit(c) || c == '.' || c == '+' || c == '-') {
        size_t k = i, digits = 0;
        if (s[k] == '+' || s[k] == '-') k++;
        while (sp_is_digit(s[k])) k++, digits++;
        if (s[k] == '.') {
            k++;
            while (sp_is_digit(s[k])) k++, digits++;
        }
        int ok = digits > 0;
        if (ok && (s[k] == 'e' || s[k] == 'E')) {
            size_t m = k + 1;
            if (s[m] == '+' || s[m] == '-') m++;
            if (sp_is_digit(s[m])) {
                while (sp_is_digit(s[m])) m++;
                k = m;
            } else ok = 0;
        }
        if (!ok && digits == 0 && k == i + 1 && c != '.') {
            t->kind = T_BAD; /* a lone sign */
            return SP_OK;
        }
        if (!ok || sp_is_name(s[k])) {
            while (sp_is_name(s[k]) || s[k] == '+' || s[k] == '-') k++;
            return sp_syntax(i, "bad number '%.*s'", (int)(k - i > 40 ? 40 : k - i), s + i);
        }
        t->kind = T_NUM;
        t->end = k;
        return SP_OK;
    }
    t->kind = T_BAD;
    return SP_OK;
}

/* "'text'" or "the end of the expression", for messages. */
static const char *sp_describe(const sp_eparser *p, const sp_tok *t, char *buf, size_t cap)
{
    if (t->kind == T_END) return "the end of the expression";
    unsigned char c = (unsigned char)p->s[t->at];
    if (t->kind == T_BAD && (c < 0x20 || c >= 0x7f)) snprintf(buf, cap, "the byte 0x%02x", c);
    else {
        size_t n = t->end - t->at;
        snprintf(buf, cap, "'%.*s%s'", (int)(n > 40 ? 40 : n), p->s + t->at, n > 40 ? "..." : "");
    }
    return buf;
}

/* ---- building the tree ---- */

static sp_status sp_add_node(sp_expr *e, const sp_enode *n, uint32_t *idx)
{
    if (e->n == e->cap) {
        uint32_t cap = e->cap ? e->cap * 2 : 16;
        sp_enode *v = sp__realloc(e->nodes, cap * sizeof *v);
        SP_RETURN_IF(!v, SP_ERR_NOMEM, "where: out of memory");
        e->nodes = v;
        e->cap = cap;
    }
    e->nodes[e->n] = *n;
    *idx = e->n++;
    return SP_OK;
}

static sp_status sp_add_parent(sp_expr *e, int kind, uint32_t first, uint32_t *idx)
{
    sp_enode n = {.kind = (uint8_t)kind, .first = first, .next = SP_NONE, .slot = SP_NONE};
    return sp_add_node(e, &n, idx);
}

/* A number token against integers, exactly (strtod would round 9007199254740993.0
 * to ...992, and 1e18 compared as a double matches 10^18 +- 64): its floor in *fl and
 * whether it has a fraction. 0, or 1 / -1 when it is above / below every int64. */
static int sp_literal_floor(const char *s, size_t n, int64_t *fl, int *frac)
{
    size_t i = 0, e = n;
    int neg = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    long exp = 0;
    for (size_t k = i; k < n; k++)
        if (s[k] == 'e' || s[k] == 'E') { /* the exponent, clamped: past +-10^6 only its sign matters */
            e = k;
            size_t m = k + 1;
            int eneg = m < n && s[m] == '-';
            if (m < n && (s[m] == '+' || s[m] == '-')) m++;
            for (; m < n; m++) exp = exp < 1000000 ? exp * 10 + (s[m] - '0') : exp;
            if (eneg) exp = -exp;
            break;
        }
    /* the digits before e, and where the point falls among them once shifted by exp */
    long ndig = 0, point = -1;
    for (size_t k = i; k < e; k++) {
        if (s[k] == '.') point = ndig;
        else ndig++;
    }
    if (point < 0) point = ndig;
    point += exp;
    unsigned __int128 v = 0;
    int big = 0;
    *frac = 0;
    long d = 0;
    for (size_t k = i; k < e; k++) {
        if (s[k] == '.') continue;
        unsigned c = (unsigned)(s[k] - '0');
        if (d++ < point) {
            if (!big) v = v * 10 + c;
            if (v > (unsigned __int128)1 << 64) big = 1;
        } else if (c) {
            *frac = 1;
        }
    }
    for (long z = ndig; z < point && !big; z++) /* zeros the exponent adds */
        if ((v *= 10) > (unsigned __int128)1 << 64) big = 1;
    if (!neg) {
        if (big || v > (unsigned __int128)INT64_MAX) return 1;
        *fl = (int64_t)v;
        return 0;
    }
    v += (unsigned)*frac; /* floor(-x) = -ceil(x) */
    if (big || v > (unsigned __int128)INT64_MAX + 1) return -1;
    *fl = v ? -(int64_t)(v - 1) - 1 : 0;
    return 0;
}

static int sp_test_cmp(int c, int op)
{
    switch (op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default: return c >= 0;
    }
}

static int sp_test_str(const char *a, size_t alen, const char *b, size_t blen, int op)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c == 0) c = alen < blen ? -1 : alen > blen;
    return sp_test_cmp(c, op);
}

/* A comparison's literal: the quoted text without quotes, doubled quotes undone. */
static char *sp_unquote(const char *s, const sp_tok *t, uint32_t *len)
{
    char q = s[t->at];
    char *out = sp__malloc(t->end - t->at);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t k = t->at + 1; k + 1 < t->end; k++) {
        out[n++] = s[k];
        if (s[k] == q) k++;
    }
    out[n] = '\0';
    *len = (uint32_t)n;
    return out;
}

/* hint: the name ran into a character a bare name cannot hold ("my-col"). */
static sp_status sp_unknown_column(const sp_table *schema, const char *name, int hint)
{
    char list[600];
    size_t at = 0;
    list[0] = '\0';
    for (uint32_t c = 0; c < schema->ncols; c++) {
        int w = snprintf(list + at, sizeof list - at, "%s%s", c ? ", " : "", schema->cols[c].name);
        if (w < 0 || (size_t)w >= sizeof list - at) {
            snprintf(list + (at < sizeof list - 6 ? at : sizeof list - 6), 6, ", ...");
            break;
        }
        at += (size_t)w;
    }
    return sp__fail(SP_ERR_INVALID, "where: column '%.100s' does not exist (columns: %s)%s", name, list,
                    hint ? "; a name with other characters than letters, digits, '_' and '.' goes in backquotes, "
                           "as `my-col`"
                         : "");
}

/* column OP value, the column token already read as t. */
static sp_status sp_parse_cmp(sp_eparser *p, const sp_tok *t, uint32_t *idx)
{
    const char *s = p->s;
    char buf[64];
    /* the name, NUL-terminated: backquoted ones are unquoted like strings */
    uint32_t nlen = (uint32_t)(t->end - t->at);
    char *name = t->kind == T_QNAME ? sp_unquote(s, t, &nlen) : sp__malloc(nlen + 1);
    SP_RETURN_IF(!name, SP_ERR_NOMEM, "where: out of memory");
    if (t->kind == T_NAME) {
        memcpy(name, s + t->at, nlen);
        name[nlen] = '\0';
    }
    if (nlen == 0) {
        sp__free(name);
        return sp_syntax(t->at, "empty column name ``");
    }
    int col = -1;
    for (uint32_t c = 0; c < p->schema->ncols; c++)
        if (strlen(p->schema->cols[c].name) == nlen && memcmp(p->schema->cols[c].name, name, nlen) == 0) col = (int)c;
    if (col < 0) {
        char next = t->kind == T_NAME ? s[t->end] : '\0';
        sp_status st = sp_unknown_column(p->schema, name, next && !strchr(" \t\r\n=!<>()", next));
        sp__free(name);
        return st;
    }
    sp__free(name);
    const sp_column *sc = &p->schema->cols[col];
    p->pos = t->end;

    sp_tok o, v;
    SP_FORWARD(sp_lex(p, &o));
    if (o.kind != T_OP)
        return sp_syntax(o.at, "expected a comparison operator (= == != < <= > >=) after column '%.100s', found %s",
                         sc->name, sp_describe(p, &o, buf, sizeof buf));
    p->pos = o.end;
    SP_FORWARD(sp_lex(p, &v));
    if (v.kind != T_NUM && v.kind != T_STR)
        return sp_syntax(v.at, "expected a number or a quoted string after '%s', found %s", sp_op_text[o.op],
                         sp_describe(p, &v, buf, sizeof buf));
    p->pos = v.end;
    size_t vlen = v.end - v.at;
    if (sc->type == SP_COL_STRING && v.kind == T_NUM)
        return sp__fail(SP_ERR_INVALID, "where: column '%.100s' is a string; compared with the number %.*s", sc->name,
                        (int)(vlen > 40 ? 40 : vlen), s + v.at);
    if (sc->type != SP_COL_STRING && v.kind == T_STR) {
        size_t n = vlen - 2;
        return sp__fail(SP_ERR_INVALID, "where: column '%.100s' is a number (%s); compared with the string '%.*s%s'",
                        sc->name, sp_col_type_name(sc->type), (int)(n > 40 ? 40 : n), s + v.at + 1,
                        n > 40 ? "..." : "");
    }

    sp_enode n = {.kind = N_CMP, .op = (uint8_t)o.op, .type = sc->type, .col = (uint32_t)col,
                  .first = SP_NONE, .next = SP_NONE, .slot = SP_NONE};
    if (v.kind == T_STR) {
        n.how = L_STR;
        if (!(n.s = sp_unquote(s, &v, &n.slen))) return sp__fail(SP_ERR_NOMEM, "where: out of memory");
    } else {
        char *end;
        n.d = strtod(s + v.at, &end);
        if (end != s + v.end) return sp_syntax(v.at, "bad number '%.*s'", (int)(vlen > 40 ? 40 : vlen), s + v.at);
        int range = 0, frac = 0; /* the literal is above (1) or below (-1) every int64 */
        if (sc->type != SP_COL_DOUBLE) { /* integers compare exactly with the literal as written */
            range = sp_literal_floor(s + v.at, vlen, &n.i, &frac);
            if (!range && frac) { /* between n.i and n.i + 1: no integer equals it */
                if (o.op == OP_EQ || o.op == OP_NE) range = o.op == OP_EQ ? 2 : 3;
                else n.op = o.op == OP_LT || o.op == OP_LE ? OP_LE : OP_GT;
            }
        }
        if (range) {
            n.how = L_CONST;
            /* every row's value is below (range 1) or above (range -1) the literal, or
             * none (2) or all (3) equal to it */
            n.konst = (uint8_t)(range >= 2 ? range == 3 : sp_test_cmp(-range, o.op));
        } else if (sc->type == SP_COL_INT64) n.how = L_I64;
        else if (sc->type == SP_COL_DOUBLE) n.how = L_F64;
        else {
            n.how = L_U8;
            if (!(n.tab = sp__malloc(256))) return sp__fail(SP_ERR_NOMEM, "where: out of memory");
            for (int k = 0; k < 256; k++) n.tab[k] = (uint8_t)sp_test_cmp((k > n.i) - (k < n.i), n.op);
        }
    }
    if (n.how == L_U8 || n.how == L_STR) n.slot = p->e->nslots++;
    sp_status st = sp_add_node(p->e, &n, idx);
    if (st != SP_OK) {
        sp__free(n.s);
        sp__free(n.tab);
    }
    return st;
}

static sp_status sp_parse_or(sp_eparser *p, uint32_t *idx);

static sp_status sp_parse_unary(sp_eparser *p, uint32_t *idx)
{
    char buf[64];
    sp_tok t;
    SP_FORWARD(sp_lex(p, &t));
    if (t.kind == T_NOT || t.kind == T_LP) {
        if (p->depth >= SP_EXPR_MAX_DEPTH) return sp_syntax(t.at, "nested too deeply (over %d levels)", SP_EXPR_MAX_DEPTH);
        p->pos = t.end;
        p->depth++;
        uint32_t child;
        if (t.kind == T_NOT) {
            SP_FORWARD(sp_parse_unary(p, &child));
            SP_FORWARD(sp_add_parent(p->e, N_NOT, child, idx));
        } else {
            SP_FORWARD(sp_parse_or(p, idx));
            sp_tok r;
            SP_FORWARD(sp_lex(p, &r));
            if (r.kind != T_RP)
                return sp_syntax(r.at, "expected 'and', 'or' or ')' to close the '(' at character %zu, found %s",
                                 t.at + 1, sp_describe(p, &r, buf, sizeof buf));
            p->pos = r.end;
        }
        p->depth--;
        return SP_OK;
    }
    if (t.kind == T_NAME || t.kind == T_QNAME) return sp_parse_cmp(p, &t, idx);
    if (t.kind == T_NUM || t.kind == T_STR)
        return sp_syntax(t.at, "expected a column name or '(', found %s (write COLUMN OP VALUE)",
                         sp_describe(p, &t, buf, sizeof buf));
    return sp_syntax(t.at, "expected a column name, 'not' or '(', found %s", sp_describe(p, &t, buf, sizeof buf));
}

/* One operand, or a node of kind with every operand joined by `word` as children. */
static sp_status sp_parse_chain(sp_eparser *p, int kind, uint32_t *idx)
{
    int word = kind == N_OR ? T_OR : T_AND;
    uint32_t first, last;
    SP_FORWARD(kind == N_OR ? sp_parse_chain(p, N_AND, &first) : sp_parse_unary(p, &first));
    last = first;
    for (;;) {
        sp_tok t;
        SP_FORWARD(sp_lex(p, &t));
        if (t.kind != word) break;
        p->pos = t.end;
        uint32_t next;
        SP_FORWARD(kind == N_OR ? sp_parse_chain(p, N_AND, &next) : sp_parse_unary(p, &next));
        p->e->nodes[last].next = next;
        last = next;
    }
    if (last == first) {
        *idx = first;
        return SP_OK;
    }
    return sp_add_parent(p->e, kind, first, idx);
}

static sp_status sp_parse_or(sp_eparser *p, uint32_t *idx) { return sp_parse_chain(p, N_OR, idx); }

/* Scratch blocks a node needs while it is evaluated: an and/or keeps its first
 * child's result in its output and each later child's in one more block. */
static uint32_t sp_scratch_need(const sp_expr *e, uint32_t idx)
{
    const sp_enode *n = &e->nodes[idx];
    if (n->kind == N_CMP) return 0;
    if (n->kind == N_NOT) return sp_scratch_need(e, n->first);
    uint32_t need = sp_scratch_need(e, n->first);
    for (uint32_t c = e->nodes[n->first].next; c != SP_NONE; c = e->nodes[c].next) {
        uint32_t k = 1 + sp_scratch_need(e, c);
        if (k > need) need = k;
    }
    return need;
}

void sp__expr_free(sp_expr *e)
{
    if (!e) return;
    for (uint32_t k = 0; k < e->n; k++) {
        sp__free(e->nodes[k].s);
        sp__free(e->nodes[k].tab);
    }
    sp__free(e->nodes);
    sp__free(e);
}

sp_status sp__expr_compile(const char *text, const sp_table *schema, sp_expr **out)
{
    SP_RETURN_IF(!text || !schema || !out, SP_ERR_INVALID, "where: NULL argument");
    *out = NULL;
    size_t k = 0;
    while (sp_is_space(text[k])) k++;
    SP_RETURN_IF(text[k] == '\0', SP_ERR_INVALID, "where: the expression is empty");
    sp_expr *e = sp__calloc(1, sizeof *e);
    SP_RETURN_IF(!e, SP_ERR_NOMEM, "where: out of memory");
    sp_eparser p = {.s = text, .schema = schema, .e = e};
    sp_status st = sp_parse_or(&p, &e->root);
    if (st == SP_OK) {
        char buf[64];
        sp_tok t;
        st = sp_lex(&p, &t);
        if (st == SP_OK && t.kind == T_RP) st = sp_syntax(t.at, "unmatched ')'");
        else if (st == SP_OK && t.kind != T_END)
            st = sp_syntax(t.at, "expected 'and', 'or' or the end of the expression, found %s",
                           sp_describe(&p, &t, buf, sizeof buf));
    }
    if (st != SP_OK) {
        sp__expr_free(e);
        return st;
    }
    e->nscratch = sp_scratch_need(e, e->root);
    *out = e;
    return SP_OK;
}

/* ---- evaluation ---- */

typedef struct sp_ectx {
    const sp_expr *e;
    const sp_table *part;
    uint8_t **tabs;   /* per slot: the predicate over the partition's dictionary */
    uint8_t *scratch; /* nscratch blocks of SP_EXPR_BLOCK bytes */
} sp_ectx;

/* out[i] = v[i] OP lit for each of the n rows, one loop per operator so each is
 * simple enough to vectorize. */
#define SP_CMP_LOOPS(CONV, v, lit, op, out, n)                                           \
    switch (op) {                                                                        \
    case OP_EQ: for (size_t i = 0; i < n; i++) out[i] = CONV(v[i]) == lit; break;        \
    case OP_NE: for (size_t i = 0; i < n; i++) out[i] = CONV(v[i]) != lit; break;        \
    case OP_LT: for (size_t i = 0; i < n; i++) out[i] = CONV(v[i]) < lit; break;         \
    case OP_LE: for (size_t i = 0; i < n; i++) out[i] = CONV(v[i]) <= lit; break;        \
    case OP_GT: for (size_t i = 0; i < n; i++) out[i] = CONV(v[i]) > lit; break;         \
    default: for (size_t i = 0; i < n; i++) out[i] = CONV(v[i]) >= lit; break;           \
    }
#define SP_SAME(x) (x)

static void sp_eval_cmp(const sp_ectx *x, const sp_enode *nd, uint64_t r0, size_t n, uint8_t *out)
{
    const sp_column *col = &x->part->cols[nd->col];
    switch (nd->how) {
    case L_CONST: memset(out, nd->konst, n); return;
    case L_I64: {
        const int64_t *v = col->i64 + r0;
        int64_t lit = nd->i;
        SP_CMP_LOOPS(SP_SAME, v, lit, nd->op, out, n);
        return;
    }
    case L_F64: {
        const double *v = col->f64 + r0;
        double lit = nd->d;
        SP_CMP_LOOPS(SP_SAME, v, lit, nd->op, out, n);
        return;
    }
    default: break;
    }
    /* L_U8 and L_STR: a table by value or by code */
    const uint8_t *tab = col->codes ? x->tabs[nd->slot] : nd->tab;
    if (col->codes) {
        const uint32_t *codes = col->codes + r0;
        for (size_t i = 0; i < n; i++) out[i] = tab[codes[i]];
    } else {
        const uint8_t *v = col->u8 + r0;
        for (size_t i = 0; i < n; i++) out[i] = tab[v[i]];
    }
}

static void sp_eval_node(const sp_ectx *x, uint32_t idx, uint64_t r0, size_t n, uint8_t *out, uint32_t level)
{
    const sp_expr *e = x->e;
    const sp_enode *nd = &e->nodes[idx];
    if (nd->kind == N_CMP) {
        sp_eval_cmp(x, nd, r0, n, out);
        return;
    }
    sp_eval_node(x, nd->first, r0, n, out, level);
    if (nd->kind == N_NOT) {
        for (size_t i = 0; i < n; i++) out[i] ^= 1;
        return;
    }
    uint8_t *tmp = x->scratch + (size_t)level * SP_EXPR_BLOCK;
    for (uint32_t c = e->nodes[nd->first].next; c != SP_NONE; c = e->nodes[c].next) {
        sp_eval_node(x, c, r0, n, tmp, level + 1);
        if (nd->kind == N_AND)
            for (size_t i = 0; i < n; i++) out[i] &= tmp[i];
        else
            for (size_t i = 0; i < n; i++) out[i] |= tmp[i];
    }
}

sp_status sp__expr_eval(const sp_expr *e, const sp_table *part, uint8_t *keep)
{
    SP_RETURN_IF(!e || !part || (part->nrows && !keep), SP_ERR_INVALID, "where: NULL argument");
    for (uint32_t k = 0; k < e->n; k++) {
        const sp_enode *nd = &e->nodes[k];
        if (nd->kind != N_CMP) continue;
        SP_RETURN_IF(nd->col >= part->ncols || part->cols[nd->col].type != nd->type, SP_ERR_INVALID,
                     "where: the partition's column %u is not the schema's (%s)", nd->col + 1,
                     sp_col_type_name(nd->type));
    }
    if (part->nrows == 0) return SP_OK;

    /* One allocation: slot pointers, scratch blocks, then each slot's table. */
    size_t ptrs = (size_t)e->nslots * sizeof(uint8_t *);
    size_t scratch = (size_t)e->nscratch * SP_EXPR_BLOCK;
    size_t total = ptrs + scratch;
    for (uint32_t k = 0; k < e->n; k++) {
        const sp_enode *nd = &e->nodes[k];
        if (nd->slot != SP_NONE && part->cols[nd->col].codes) total += part->cols[nd->col].ndict;
    }
    uint8_t *mem = sp__malloc(total ? total : 1);
    SP_RETURN_IF(!mem, SP_ERR_NOMEM, "where: out of memory for %zu bytes of scratch", total);
    sp_ectx x = {.e = e, .part = part, .tabs = (uint8_t **)(void *)mem, .scratch = mem + ptrs};
    uint8_t *at = mem + ptrs + scratch;
    for (uint32_t k = 0; k < e->n; k++) {
        const sp_enode *nd = &e->nodes[k];
        if (nd->slot == SP_NONE) continue;
        const sp_column *col = &part->cols[nd->col];
        x.tabs[nd->slot] = at;
        if (!col->codes) continue;
        for (uint32_t c = 0; c < col->ndict; c++)
            at[c] = nd->how == L_U8 ? nd->tab[col->u8[c]]
                                    : (uint8_t)sp_test_str(col->dict[c], col->dict_len[c], nd->s, nd->slen, nd->op);
        at += col->ndict;
    }
    for (uint64_t r0 = 0; r0 < part->nrows; r0 += SP_EXPR_BLOCK) {
        uint64_t left = part->nrows - r0;
        size_t n = left < SP_EXPR_BLOCK ? (size_t)left : SP_EXPR_BLOCK;
        sp_eval_node(&x, e->root, r0, n, keep + r0, 0);
    }
    sp__free(mem);
    return SP_OK;
}
