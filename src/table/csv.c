/* CSV to typed columns: see include/spillpool/csv.h.
 *
 * Hand-written rather than on libcsv: libcsv calls back per field and per record,
 * and `spillpool bench csv` measured it far from the 3x-of-`wc -l` target on this
 * data, while a loop that scans unquoted fields in place and parses numbers as it
 * goes meets it (figures in the README). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../common/alloc.h"
#include "../common/error.h"
#include "spillpool/csv.h"

/* ---- one column being built ---- */

typedef struct sp_dict {
    uint32_t *slots; /* open addressing: code + 1, 0 empty */
    uint32_t cap;    /* power of two */
    char *blob;      /* the strings, NUL-terminated, back to back */
    size_t blob_len, blob_cap;
    size_t *off;     /* offset of each code's string in blob */
    uint32_t *len;
    uint32_t n, off_cap;
} sp_dict;

typedef struct sp_build {
    sp_col_type type;
    int fixed; /* from the schema: never widened */
    void *vals; /* int64_t, double or uint32_t codes */
    sp_dict dict;
} sp_build;

typedef struct sp_parser {
    const char *buf, *what;
    size_t len;
    char delim;
    uint32_t ncols;
    sp_build *b;
    uint64_t rows, cap;
    /* where the current field is, for messages */
    uint64_t line;
    size_t line_start;
    char *scratch; /* an unquoted copy of a quoted field */
    size_t scratch_cap;
    unsigned char stop[256]; /* bytes that end an unquoted field's scan: delimiter, \n, " */
} sp_parser;

/* An error at a place: val (vlen bytes, not NUL-terminated) is the value, or NULL. */
static sp_status sp_at_value(const sp_parser *ps, size_t pos, uint32_t field, sp_status st, const char *msg,
                             const char *val, size_t vlen)
{
    int n = vlen > 40 ? 40 : (int)vlen;
    return sp__fail(st, "%s: line %llu, field %u (column %zu): %s%.*s%s", ps->what, (unsigned long long)ps->line,
                    field + 1, pos - ps->line_start + 1, msg, val ? n : 0, val ? val : "", vlen > 40 ? "..." : "");
}

static sp_status sp_at(const sp_parser *ps, size_t pos, uint32_t field, sp_status st, const char *msg, const char *a)
{
    return sp_at_value(ps, pos, field, st, msg, a, a ? strlen(a) : 0);
}

static uint32_t sp_dict_find(sp_dict *d, const char *s, uint32_t n, uint64_t h)
{
    uint32_t mask = d->cap - 1, i = (uint32_t)h & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t c = d->slots[i];
        if (c == 0) return i | 0x80000000u; /* empty slot i */
        c--;
        if (d->len[c] == n && memcmp(d->blob + d->off[c], s, n) == 0) return c;
    }
}

static sp_status sp_dict_grow(sp_dict *d)
{
    uint32_t cap = d->cap ? d->cap * 2 : 64;
    uint32_t *slots = sp__calloc(cap, sizeof *slots);
    SP_RETURN_IF(!slots, SP_ERR_NOMEM, "csv: out of memory for a dictionary");
    for (uint32_t c = 0; c < d->n; c++) {
        uint64_t h = XXH3_64bits(d->blob + d->off[c], d->len[c]);
        uint32_t i = (uint32_t)h & (cap - 1);
        while (slots[i]) i = (i + 1) & (cap - 1);
        slots[i] = c + 1;
    }
    sp__free(d->slots);
    d->slots = slots;
    d->cap = cap;
    return SP_OK;
}

static sp_status sp_dict_code(sp_dict *d, const char *s, uint32_t n, uint32_t *code)
{
    if (d->n * 2 >= d->cap) SP_FORWARD(sp_dict_grow(d));
    uint64_t h = XXH3_64bits(s, n);
    uint32_t f = sp_dict_find(d, s, n, h);
    if (!(f & 0x80000000u)) {
        *code = f;
        return SP_OK;
    }
    SP_RETURN_IF(d->n == UINT32_MAX - 1, SP_ERR_NOMEM, "csv: too many distinct strings");
    if (d->n == d->off_cap) {
        uint32_t c = d->off_cap ? d->off_cap * 2 : 64;
        size_t *off = sp__realloc(d->off, c * sizeof *off);
        if (off) d->off = off;
        uint32_t *len = off ? sp__realloc(d->len, c * sizeof *len) : NULL;
        SP_RETURN_IF(!off || !len, SP_ERR_NOMEM, "csv: out of memory for a dictionary");
        d->len = len;
        d->off_cap = c;
    }
    if (d->blob_len + n + 1 > d->blob_cap) {
        size_t c = d->blob_cap ? d->blob_cap : 4096;
        while (c < d->blob_len + n + 1) c *= 2;
        char *b = sp__realloc(d->blob, c);
        SP_RETURN_IF(!b, SP_ERR_NOMEM, "csv: out of memory for strings");
        d->blob = b;
        d->blob_cap = c;
    }
    memcpy(d->blob + d->blob_len, s, n);
    d->blob[d->blob_len + n] = '\0';
    d->off[d->n] = d->blob_len;
    d->len[d->n] = n;
    d->blob_len += n + 1;
    d->slots[f & 0x7fffffffu] = d->n + 1;
    *code = d->n++;
    return SP_OK;
}

static void sp_dict_free(sp_dict *d)
{
    sp__free(d->slots);
    sp__free(d->blob);
    sp__free(d->off);
    sp__free(d->len);
    memset(d, 0, sizeof *d);
}

/* ---- numbers ---- */

static int sp_parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n || n - i > 19) return 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

static const double sp_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Decimal numbers with at most 15 significant digits and no exponent are exact as
 * (integer / power of ten) with both below 2^53 and 10^22: the fast path. The rest
 * go to strtod on a NUL-terminated copy. */
static int sp_parse_f64(const char *s, size_t n, double *out)
{
    size_t i = 0;
    int neg = 0, digits = 0, frac = 0, dot = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    uint64_t m = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (m || c != '0') digits++;
            m = m * 10 + (uint64_t)(c - '0');
            frac += dot;
            if (digits > 15) break;
        } else if (c == '.' && !dot) dot = 1;
        else break;
    }
    if (i == n && frac <= 22 && (digits || n > (size_t)neg + (size_t)dot)) {
        double v = (double)m / sp_pow10[frac];
        *out = neg ? -v : v;
        return 1;
    }
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + n || (errno == ERANGE && fabs(v) > 1)) return 0;
    *out = v;
    return 1;
}

/* ---- storing a value ---- */

static sp_status sp_grow_rows(sp_parser *ps)
{
    uint64_t cap = ps->cap ? ps->cap * 2 : 1024;
    for (uint32_t c = 0; c < ps->ncols; c++) {
        size_t w = ps->b[c].type == SP_COL_STRING ? 4 : 8;
        void *v = sp__realloc(ps->b[c].vals, cap * w);
        SP_RETURN_IF(!v, SP_ERR_NOMEM, "%s: out of memory for %llu rows", ps->what, (unsigned long long)cap);
        ps->b[c].vals = v;
    }
    ps->cap = cap;
    return SP_OK;
}

/* 1: stored; 0: the value needs a wider type (restart); <0 via *st: error. */
static int sp_store(sp_parser *ps, uint32_t c, const char *s, size_t n, size_t pos, sp_status *st)
{
    sp_build *b = &ps->b[c];
    uint64_t row = ps->rows;
    if (b->type == SP_COL_INT64) {
        int64_t v;
        if (sp_parse_i64(s, n, &v)) {
            ((int64_t *)b->vals)[row] = v;
            return 1;
        }
        if (b->fixed) {
            *st = sp_at_value(ps, pos, c, SP_ERR_CORRUPT, "not an int64: ", s, n);
            return -1;
        }
        double d;
        if (n == 0 || sp_parse_f64(s, n, &d)) { /* widen in place: same width */
            int64_t *iv = b->vals;
            double *dv = b->vals;
            for (uint64_t r = 0; r < row; r++) dv[r] = (double)iv[r];
            b->type = SP_COL_DOUBLE;
            dv[row] = n == 0 ? NAN : d;
            return 1;
        }
        return 0;
    }
    if (b->type == SP_COL_DOUBLE) {
        double d;
        if (n == 0 && !b->fixed) {
            ((double *)b->vals)[row] = NAN;
            return 1;
        }
        if (sp_parse_f64(s, n, &d)) {
            ((double *)b->vals)[row] = d;
            return 1;
        }
        if (b->fixed) {
            *st = sp_at_value(ps, pos, c, SP_ERR_CORRUPT, "not a double: ", s, n);
            return -1;
        }
        return 0;
    }
    if (n > UINT32_MAX) {
        *st = sp_at(ps, pos, c, SP_ERR_CORRUPT, "a field over 4 GiB", NULL);
        return -1;
    }
    uint32_t code = 0;
    *st = sp_dict_code(&b->dict, s, (uint32_t)n, &code);
    if (*st != SP_OK) return -1;
    ((uint32_t *)b->vals)[row] = code;
    return 1;
}

/* ---- scanning ---- */

static sp_status sp_scratch_room(sp_parser *ps, size_t need)
{
    if (need <= ps->scratch_cap) return SP_OK;
    size_t c = ps->scratch_cap ? ps->scratch_cap : 256;
    while (c < need) c *= 2;
    char *sc = sp__realloc(ps->scratch, c);
    SP_RETURN_IF(!sc, SP_ERR_NOMEM, "%s: out of memory", ps->what);
    ps->scratch = sc;
    ps->scratch_cap = c;
    return SP_OK;
}

/* One field starting at *p: its text (in place, or unquoted into scratch) and
 * what ends it: the delimiter, a line break or the end. */
static sp_status sp_field(sp_parser *ps, size_t *p, uint32_t field, const char **s, size_t *n, int *end_of_record)
{
    const char *buf = ps->buf;
    size_t i = *p, len = ps->len;
    char delim = ps->delim;
    if (i < len && buf[i] == '"') {
        size_t open = i, k = 0;
        uint64_t open_line = ps->line;
        size_t open_line_start = ps->line_start;
        i++;
        for (;;) {
            if (i >= len) {
                ps->line = open_line;
                ps->line_start = open_line_start;
                return sp_at(ps, open, field, SP_ERR_CORRUPT, "unterminated quote", NULL);
            }
            char ch = buf[i];
            if (ch == '"') {
                if (i + 1 < len && buf[i + 1] == '"') {
                    ch = '"';
                    i++;
                } else {
                    i++;
                    break;
                }
            } else if (ch == '\n') {
                ps->line++;
                ps->line_start = i + 1;
            }
            if (k + 2 > ps->scratch_cap) SP_FORWARD(sp_scratch_room(ps, k + 2));
            ps->scratch[k++] = ch;
            i++;
        }
        SP_FORWARD(sp_scratch_room(ps, k + 1)); /* an empty "" too */
        ps->scratch[k] = '\0';
        *s = ps->scratch;
        *n = k;
        if (i < len && buf[i] != delim && buf[i] != '\n' && !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n'))
            return sp_at(ps, i, field, SP_ERR_CORRUPT, "text after a closing quote", NULL);
    } else {
        size_t start = i;
        const unsigned char *stop = ps->stop;
        while (i < len && !stop[(unsigned char)buf[i]]) i++; /* the common case: plain bytes */
        if (i < len && buf[i] == '"')
            return sp_at(ps, i, field, SP_ERR_CORRUPT, "a quote inside an unquoted field", NULL);
        size_t e = i;
        if (e > start && buf[e - 1] == '\r' && (e == len || buf[e] == '\n')) e--;
        *s = buf + start;
        *n = e - start;
    }
    if (i >= len) *end_of_record = 1;
    else if (buf[i] == delim) *end_of_record = 0, i++;
    else {
        if (buf[i] == '\r') i++;
        *end_of_record = 1;
        i++; /* the '\n' */
        ps->line++;
        ps->line_start = i;
    }
    *p = i;
    return SP_OK;
}

static void sp_builds_free(sp_build *b, uint32_t n)
{
    for (uint32_t c = 0; b && c < n; c++) {
        sp__free(b[c].vals);
        sp_dict_free(&b[c].dict);
    }
    sp__free(b);
}

/* Parse the header (or count the first record's fields) into names. */
static sp_status sp_header(sp_parser *ps, int no_header, size_t *pos, char ***names)
{
    size_t p = 0;
    uint32_t n = 0, cap = 16;
    char **nm = sp__calloc(cap, sizeof *nm);
    SP_RETURN_IF(!nm, SP_ERR_NOMEM, "%s: out of memory", ps->what);
    sp_status st = SP_OK;
    for (int end = 0; !end && st == SP_OK;) {
        const char *s;
        size_t len;
        if ((st = sp_field(ps, &p, n, &s, &len, &end)) != SP_OK) break;
        if (n == cap) {
            char **g = sp__realloc(nm, 2 * cap * sizeof *nm);
            if (!g) {
                st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", ps->what);
                break;
            }
            memset(g + cap, 0, cap * sizeof *g);
            nm = g;
            cap *= 2;
        }
        char tmp[32];
        if (no_header) {
            snprintf(tmp, sizeof tmp, "c%u", n + 1);
            s = tmp;
            len = strlen(tmp);
        }
        nm[n] = sp__malloc(len + 1);
        if (!nm[n]) {
            st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", ps->what);
            break;
        }
        memcpy(nm[n], s, len);
        nm[n][len] = '\0';
        n++;
    }
    if (st != SP_OK) {
        for (uint32_t i = 0; i < n; i++) sp__free(nm[i]);
        sp__free(nm);
        return st;
    }
    ps->ncols = n;
    *pos = no_header ? 0 : p;
    if (no_header) { /* the first record is data: read it again */
        ps->line = 1;
        ps->line_start = 0;
    }
    *names = nm;
    return SP_OK;
}

/* The records from pos on. 0: done; 1: restart (a column had to widen to string). */
static int sp_records(sp_parser *ps, size_t pos, sp_status *st)
{
    while (pos < ps->len) {
        if (ps->rows == ps->cap && (*st = sp_grow_rows(ps)) != SP_OK) return -1;
        uint64_t rec_line = ps->line;
        uint32_t c = 0;
        for (int end = 0; !end; c++) {
            const char *s;
            size_t n, at = pos;
            if ((*st = sp_field(ps, &pos, c, &s, &n, &end)) != SP_OK) return -1;
            if (c >= ps->ncols) {
                *st = sp_at(ps, at, c, SP_ERR_CORRUPT, "more fields than the header's", NULL);
                return -1;
            }
            int r = sp_store(ps, c, s, n, at, st);
            if (r < 0) return -1;
            if (r == 0) {
                ps->b[c].type = SP_COL_STRING;
                return 1;
            }
        }
        if (c != ps->ncols) {
            *st = sp__fail(SP_ERR_CORRUPT, "%s: line %llu: %u fields, the header has %u", ps->what,
                           (unsigned long long)rec_line, c, ps->ncols);
            return -1;
        }
        ps->rows++;
    }
    return 0;
}

sp_status sp_csv_parse(const char *buf, size_t len, const sp_csv_options *opt, const char *what, sp_table **out)
{
    *out = NULL;
    what = what ? what : "csv";
    SP_RETURN_IF(len == 0, SP_ERR_CORRUPT, "%s: empty file (no header, no records)", what);
    sp_parser ps = {.buf = buf, .len = len, .what = what, .delim = opt && opt->delim ? opt->delim : ',', .line = 1};
    SP_RETURN_IF(ps.delim == '"' || ps.delim == '\n' || ps.delim == '\r', SP_ERR_INVALID,
                 "%s: the delimiter cannot be a quote or a line break", what);
    ps.stop[(unsigned char)ps.delim] = ps.stop['\n'] = ps.stop['"'] = 1;
    /* A trailing line break ends the last record; it does not start an empty one. */
    if (ps.len && buf[ps.len - 1] == '\n') ps.len--;
    if (ps.len && buf[ps.len - 1] == '\r') ps.len--;
    char **names = NULL;
    size_t start = 0;
    sp_status st = sp_header(&ps, opt && opt->no_header, &start, &names);
    if (st != SP_OK) {
        sp__free(ps.scratch);
        return st;
    }
    uint64_t first_line = ps.line; /* where the records start */
    size_t first_line_start = ps.line_start;
    /* Records are at most the line breaks left + 1: size the columns once (memchr runs
     * at memory speed; growing by doubling copied every column several times). */
    uint64_t expect = 1;
    for (const char *q = buf + start, *e = buf + ps.len; q < e && (q = memchr(q, '\n', (size_t)(e - q))); q++)
        expect++;
    if (opt && opt->schema && opt->schema_cols != ps.ncols)
        st = sp__fail(SP_ERR_CORRUPT, "%s: %u columns, the schema gives %u", what, ps.ncols, opt->schema_cols);
    sp_col_type *types = st == SP_OK ? sp__calloc(ps.ncols, sizeof *types) : NULL;
    if (st == SP_OK && !types) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
    for (uint32_t c = 0; st == SP_OK && c < ps.ncols; c++) {
        types[c] = opt && opt->schema ? opt->schema[c] : SP_COL_INT64;
        if (types[c] < SP_COL_INT64 || types[c] > SP_COL_STRING)
            st = sp__fail(SP_ERR_INVALID, "%s: schema type %d of column %u is unknown", what, (int)types[c], c + 1);
    }
    /* Parse; a column found to hold text restarts the parse with it as strings. */
    for (int pass = 0; st == SP_OK; pass++) {
        sp_builds_free(ps.b, ps.ncols);
        ps.b = sp__calloc(ps.ncols, sizeof *ps.b);
        if (!ps.b) {
            st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
        for (uint32_t c = 0; c < ps.ncols; c++) {
            ps.b[c].type = types[c];
            ps.b[c].fixed = opt && opt->schema;
        }
        ps.rows = ps.cap = 0;
        if (start < ps.len) {
            ps.cap = expect / 2; /* sp_grow_rows doubles it */
            if ((st = sp_grow_rows(&ps)) != SP_OK) break;
        }
        ps.line = first_line;
        ps.line_start = first_line_start;
        int r = sp_records(&ps, start, &st);
        if (r <= 0) break;
        for (uint32_t c = 0; c < ps.ncols; c++)
            if (ps.b[c].type == SP_COL_STRING) types[c] = SP_COL_STRING;
    }
    sp_table *t = st == SP_OK ? sp__calloc(1, sizeof *t) : NULL;
    if (st == SP_OK && (!t || !(t->cols = sp__calloc(ps.ncols ? ps.ncols : 1, sizeof *t->cols)))) {
        sp__free(t);
        t = NULL;
        st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
    }
    if (st == SP_OK) {
        t->ncols = ps.ncols;
        t->nrows = ps.rows;
        t->bytes = sizeof *t + ps.ncols * sizeof *t->cols;
        for (uint32_t c = 0; c < ps.ncols; c++) {
            sp_column *col = &t->cols[c];
            sp_build *b = &ps.b[c];
            col->name = names[c];
            names[c] = NULL;
            col->type = ps.rows == 0 && !(opt && opt->schema) ? SP_COL_STRING : b->type;
            t->bytes += strlen(col->name) + 1 + ps.rows * (col->type == SP_COL_STRING ? 4 : 8);
            if (col->type == SP_COL_INT64) col->i64 = b->vals;
            else if (col->type == SP_COL_DOUBLE) col->f64 = b->vals;
            else col->codes = b->vals;
            b->vals = NULL;
            if (col->type == SP_COL_STRING) { /* the blob is handed over: dict[0] points at its start */
                sp_dict *d = &b->dict;
                col->ndict = d->n;
                col->dict = sp__calloc(d->n + 1, sizeof *col->dict);
                col->dict_len = d->len;
                d->len = NULL;
                if (!col->dict) {
                    st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
                    continue;
                }
                for (uint32_t k = 0; k < d->n; k++) col->dict[k] = d->blob + d->off[k];
                if (d->n == 0) sp__free(d->blob);
                d->blob = NULL;
                t->bytes += d->blob_len + d->n * (sizeof(char *) + 4);
            }
        }
    }
    for (uint32_t c = 0; names && c < ps.ncols; c++) sp__free(names[c]);
    sp__free(names);
    sp__free(types);
    sp_builds_free(ps.b, ps.ncols);
    sp__free(ps.scratch);
    if (st != SP_OK) {
        sp_table_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}
