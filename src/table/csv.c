/* CSV to typed columns: see include/spillpool/csv.h.
 *
 * Hand-written rather than on libcsv: libcsv calls back per field and per record,
 * and `spillpool bench csv` measured it far from the 3x-of-`wc -l` target on this
 * data, while a loop that scans unquoted fields in place and parses numbers as it
 * goes comes much closer (figures in the README).
 *
 * The shape of a parse: the header is read first; the records are then cut into
 * chunks at line breaks, one per core, and each chunk is parsed on its own into its
 * own column builders (sp__par_run), which write into the chunk's region of one
 * array per column; the chunks are merged in file order, the regions moved together. A line
 * break inside quotes can fool a cut, so a chunk only counts if the previous chunk's
 * parse ended exactly where it starts; otherwise the previous chunk swallows it.
 * The merge keeps the answer of a one-pass parse: a column is as wide as its widest
 * chunk, strings get codes in order of first appearance in the file, line numbers
 * are offset by the line breaks of the chunks before, and the first error in file
 * order is the one reported. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* Inlined: most strings here are a few bytes long, where a call costs as much as
 * the hash. */
#define XXH_INLINE_ALL
#include <xxhash.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../common/alloc.h"
#include "../common/error.h"
#include "../filter/par.h"
#include "spillpool/csv.h"
#include "table_internal.h"

/* For tests: parse with a given number of chunks (0: as sp_csv_parse would). */
SP_HIDDEN sp_status sp__csv_parse_chunks(const char *buf, size_t len, const sp_csv_options *opt, const char *what,
                                         unsigned nchunks, sp_table **out);

/* Below this many bytes of records a parse is one chunk: threads would cost more. */
#define SP_CSV_SPLIT_MIN ((size_t)1 << 20)
#define SP_CSV_MAX_CHUNKS 64

/* ---- the string dictionary of one column ---- */

typedef struct sp_dict {
    uint32_t *slots; /* open addressing: code + 1, 0 empty */
    uint32_t cap;    /* power of two */
    char *blob;      /* the strings, NUL-terminated, back to back */
    size_t blob_len, blob_cap;
    size_t *off;     /* offset of each code's string in blob */
    uint32_t *len;
    uint64_t *key;   /* two per code: its first 16 bytes, zero-padded */
    uint32_t n, off_cap;
} sp_dict;

/* Results of dictionary calls: they run on helper threads, so they leave the
 * message to the caller. */
enum { SP_DICT_OK = 0, SP_DICT_NOMEM, SP_DICT_FULL };

/* The first 16 bytes of a string, zero-padded, as two words: most values are that
 * short, and comparing and hashing two words beats memcmp and XXH3 calls on them.
 * can16: 16 bytes may be loaded at s. */
static inline void sp_str_key(const char *s, size_t n, int can16, uint64_t k[2])
{
    if (can16) {
        /* masks without branches on n: lengths vary row to row */
        size_t n1 = n > 8 ? n - 8 : 0;
        uint64_t m0 = n >= 8 ? ~0ull : (1ull << (8 * (n & 7))) - 1;
        uint64_t m1 = n1 >= 8 ? ~0ull : (1ull << (8 * (n1 & 7))) - 1;
        memcpy(&k[0], s, 8);
        memcpy(&k[1], s + 8, 8);
        k[0] &= m0;
        k[1] &= m1;
    } else {
        char t[16] = {0};
        memcpy(t, s, n < 16 ? n : 16);
        memcpy(&k[0], t, 8);
        memcpy(&k[1], t + 8, 8);
    }
}

static inline uint64_t sp_str_hash(const char *s, size_t n, const uint64_t k[2])
{
    if (n > 16) return XXH3_64bits(s, n);
    uint64_t h = (k[0] ^ (uint64_t)n) * 0x9E3779B97F4A7C15ull ^ k[1] * 0xC2B2AE3D27D4EB4Full;
    return h ^ h >> 31 ^ h >> 47;
}

static inline uint32_t sp_dict_find(const sp_dict *d, const char *s, uint32_t n, const uint64_t k[2], uint64_t h)
{
    uint32_t mask = d->cap - 1, i = (uint32_t)h & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t c = d->slots[i];
        if (c == 0) return i | 0x80000000u; /* empty slot i */
        c--;
        if (d->len[c] == n && d->key[2 * c] == k[0] && d->key[2 * c + 1] == k[1] &&
            (n <= 16 || memcmp(d->blob + d->off[c] + 16, s + 16, n - 16) == 0))
            return c;
    }
}

/* The code of a string already in the dictionary, found in line (the common case:
 * most values repeat); 0 if it is new. For n <= 16 where 16 bytes may be loaded. */
static inline __attribute__((always_inline)) int sp_dict_known16(const sp_dict *d, const char *s, uint32_t n,
                                                                 uint32_t *code)
{
    if (!d->cap) return 0;
    uint64_t k[2];
    sp_str_key(s, n, 1, k);
    uint32_t f = sp_dict_find(d, s, n, k, sp_str_hash(s, n, k));
    if (f & 0x80000000u) return 0;
    *code = f;
    return 1;
}

static int sp_dict_grow(sp_dict *d)
{
    uint32_t cap = d->cap ? d->cap * 2 : 64;
    uint32_t *slots = sp__calloc(cap, sizeof *slots);
    if (!slots) return SP_DICT_NOMEM;
    for (uint32_t c = 0; c < d->n; c++) {
        uint64_t h = sp_str_hash(d->blob + d->off[c], d->len[c], &d->key[2 * c]);
        uint32_t i = (uint32_t)h & (cap - 1);
        while (slots[i]) i = (i + 1) & (cap - 1);
        slots[i] = c + 1;
    }
    sp__free(d->slots);
    d->slots = slots;
    d->cap = cap;
    return SP_DICT_OK;
}

static inline int sp_dict_code(sp_dict *d, const char *s, uint32_t n, int can16, uint32_t *code)
{
    if (d->n * 2 >= d->cap && sp_dict_grow(d) != SP_DICT_OK) return SP_DICT_NOMEM;
    uint64_t k[2];
    sp_str_key(s, n, can16, k);
    uint64_t h = sp_str_hash(s, n, k);
    uint32_t f = sp_dict_find(d, s, n, k, h);
    if (!(f & 0x80000000u)) {
        *code = f;
        return SP_DICT_OK;
    }
    if (d->n == UINT32_MAX - 1) return SP_DICT_FULL;
    if (d->n == d->off_cap) {
        uint32_t c = d->off_cap ? d->off_cap * 2 : 64;
        size_t *off = sp__realloc(d->off, c * sizeof *off);
        if (off) d->off = off;
        uint32_t *len = off ? sp__realloc(d->len, c * sizeof *len) : NULL;
        if (len) d->len = len;
        uint64_t *key = len ? sp__realloc(d->key, 2 * (size_t)c * sizeof *key) : NULL;
        if (!key) return SP_DICT_NOMEM;
        d->key = key;
        d->off_cap = c;
    }
    if (d->blob_len + n + 1 > d->blob_cap) {
        size_t c = d->blob_cap ? d->blob_cap : 4096;
        while (c < d->blob_len + n + 1) c *= 2;
        char *b = sp__realloc(d->blob, c);
        if (!b) return SP_DICT_NOMEM;
        d->blob = b;
        d->blob_cap = c;
    }
    memcpy(d->blob + d->blob_len, s, n);
    d->blob[d->blob_len + n] = '\0';
    d->off[d->n] = d->blob_len;
    d->len[d->n] = n;
    d->key[2 * d->n] = k[0];
    d->key[2 * d->n + 1] = k[1];
    d->blob_len += n + 1;
    d->slots[f & 0x7fffffffu] = d->n + 1;
    *code = d->n++;
    return SP_DICT_OK;
}

static void sp_dict_free(sp_dict *d)
{
    sp__free(d->slots);
    sp__free(d->blob);
    sp__free(d->off);
    sp__free(d->len);
    sp__free(d->key);
    memset(d, 0, sizeof *d);
}

/* ---- numbers ---- */

static inline int sp_parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n) return 0;
    while (n - i > 1 && s[i] == '0') i++; /* leading zeros do not count towards the 19 digits */
    if (n - i > 19) return 0;
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

/* [+-]digits[.digits][(e|E)[+-]digits], with a digit before or after the point:
 * the only numbers here. strtod also takes hex, "inf", "nan" and leading spaces,
 * which would make a column of names like "Nan" or codes like "0x1A" numbers. */
static int sp_is_decimal(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) digits++;
    if (digits == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        size_t e = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == e) return 0;
    }
    return i == n;
}

/* Integers past this in magnitude may not be exact as doubles. */
#define SP_EXACT_INT ((uint64_t)1 << 53)

/* What the fast path leaves: a checked decimal to strtod, on a NUL-terminated copy
 * (on the heap when long: a long value is still a number). 1; 2 if it is an
 * integer (no point, no exponent) past 2^53, which the double may not hold exactly;
 * 0 if it is not a number (or overflows); -1 if the copy cannot be made. */
static __attribute__((noinline)) int sp_parse_f64_slow(const char *s, size_t n, double *out)
{
    if (!sp_is_decimal(s, n)) return 0;
    char small[128], *tmp = n < sizeof small ? small : sp__malloc(n + 1);
    if (!tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    int ok = end == tmp + n && !(errno == ERANGE && fabs(v) > 1);
    int64_t iv; /* judged on the integer written, as the int64 path judges it: a double may round to 2^53 */
    if (ok && !memchr(tmp, '.', n) && !memchr(tmp, 'e', n) && !memchr(tmp, 'E', n) &&
        (!sp_parse_i64(tmp, n, &iv) || (uint64_t)iv + SP_EXACT_INT > 2 * SP_EXACT_INT))
        ok = 2;
    if (tmp != small) sp__free(tmp);
    if (ok) *out = v;
    return ok;
}

/* Decimal numbers with at most 15 significant digits and no exponent are exact as
 * (integer / power of ten) with both below 2^53 and 10^22: the fast path. The rest
 * go to sp_parse_f64_slow. Returns as that does. */
static inline int sp_parse_f64(const char *s, size_t n, double *out)
{
    size_t i = 0;
    int neg = 0, digits = 0, frac = 0, dot = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    const size_t sign = i;
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
    /* digits counts significant ones: zeros alone need a byte past the sign and point
     * ("+" or "+." is not a number) */
    if (i == n && frac <= 22 && (digits || n > sign + (size_t)dot)) {
        double v = (double)m / sp_pow10[frac];
        *out = neg ? -v : v;
        return 1;
    }
    return sp_parse_f64_slow(s, n, out);
}

/* ---- scanning ---- */

/* The first byte at or after i that is the delimiter, '\n' or '"', or len. Fields
 * are a few bytes long: sixteen at a time with SSE2 (x86-64 baseline) finds most
 * ends in one step; the last bytes before len go one at a time. */
static inline size_t sp_scan_plain(const char *buf, size_t i, size_t len, char delim, const unsigned char *stop)
{
#if defined(__SSE2__)
    const __m128i vd = _mm_set1_epi8(delim), vn = _mm_set1_epi8('\n'), vq = _mm_set1_epi8('"');
    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(buf + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vd), _mm_cmpeq_epi8(v, vn)), _mm_cmpeq_epi8(v, vq));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m) return i + (size_t)__builtin_ctz(m);
    }
#else
    (void)delim;
#endif
    while (i < len && !stop[(unsigned char)buf[i]]) i++;
    return i;
}

/* The first '"' or '\n' at or after i, or len: inside a quoted field. */
static inline size_t sp_scan_quoted(const char *buf, size_t i, size_t len)
{
#if defined(__SSE2__)
    const __m128i vn = _mm_set1_epi8('\n'), vq = _mm_set1_epi8('"');
    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(buf + i));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, vn), _mm_cmpeq_epi8(v, vq)));
        if (m) return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < len && buf[i] != '"' && buf[i] != '\n') i++;
    return i;
}

/* ---- the header, read once before the records ---- */

typedef struct sp_parser {
    const char *buf, *what;
    size_t len;
    size_t begin; /* past a byte order mark */
    char delim;
    uint32_t ncols;
    uint64_t line; /* where the current field is, for messages */
    size_t line_start;
    char *scratch; /* an unquoted copy of a quoted field */
    size_t scratch_cap;
    unsigned char stop[256]; /* bytes that end an unquoted field's scan: delimiter, \n, " */
} sp_parser;

/* An error at a place: val (vlen bytes, not NUL-terminated) is the value, or NULL. */
static sp_status sp_at_value(const char *what, uint64_t line, size_t line_start, size_t pos, uint32_t field,
                             sp_status st, const char *msg, const char *val, size_t vlen)
{
    int n = vlen > 40 ? 40 : (int)vlen;
    return sp__fail(st, "%s: line %llu, field %u (column %zu): %s%.*s%s", what, (unsigned long long)line, field + 1,
                    pos - line_start + 1, msg, val ? n : 0, val ? val : "", vlen > 40 ? "..." : "");
}

static sp_status sp_at(const sp_parser *ps, size_t pos, uint32_t field, sp_status st, const char *msg)
{
    return sp_at_value(ps->what, ps->line, ps->line_start, pos, field, st, msg, NULL, 0);
}

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

/* One header field starting at *p: its text (in place, or unquoted into scratch)
 * and what ends it: the delimiter, a line break or the end. The records have their
 * own, faster loop (sp_records); this one only needs to be right. */
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
                return sp_at(ps, open, field, SP_ERR_CORRUPT, "unterminated quote");
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
            return sp_at(ps, i, field, SP_ERR_CORRUPT, "text after a closing quote");
    } else {
        size_t start = i;
        i = sp_scan_plain(buf, i, len, delim, ps->stop);
        if (i < len && buf[i] == '"') return sp_at(ps, i, field, SP_ERR_CORRUPT, "a quote inside an unquoted field");
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

/* Two columns of one name: a lookup by name would find the first, so operations
 * that name a column could not reach the second. */
static sp_status sp_unique_names(const sp_parser *ps, char **nm, uint32_t n)
{
    uint32_t k, c;
    int rep = n ? sp__names_repeat(nm, sizeof *nm, n, &k, &c) : 0;
    SP_RETURN_IF(rep < 0, SP_ERR_NOMEM, "%s: out of memory", ps->what);
    if (rep == 0) return SP_OK;
    size_t len = strlen(nm[c]);
    return sp__fail(SP_ERR_CORRUPT, "%s: columns %u and %u of the header are both named '%.*s%s'", ps->what, k + 1,
                    c + 1, len > 40 ? 40 : (int)len, nm[c], len > 40 ? "..." : "");
}

/* Parse the header (or count the first record's fields) into names. */
static sp_status sp_header(sp_parser *ps, int no_header, size_t *pos, char ***names)
{
    size_t p = ps->begin;
    uint32_t n = 0, cap = 16;
    char **nm = sp__calloc(cap, sizeof *nm);
    SP_RETURN_IF(!nm, SP_ERR_NOMEM, "%s: out of memory", ps->what);
    sp_status st = SP_OK;
    for (int end = 0; !end && st == SP_OK;) {
        const char *s = NULL;
        size_t len = 0;
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
        if (!no_header && len == 0) { /* named below, once every given name is known */
            n++;
            continue;
        }
        if (no_header) {
            snprintf(tmp, sizeof tmp, "c%u", n + 1);
            s = tmp;
            len = strlen(tmp);
        } else if (memchr(s, '\0', len)) { /* names are C strings: it would be cut, or empty */
            st = sp__fail(SP_ERR_CORRUPT, "%s: column %u of the header holds a NUL byte", ps->what, n + 1);
            break;
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
    /* An empty name (a spreadsheet's or pandas' unnamed index column) is named as
     * without a header, c<position>, or c<position>_2, ... if the file has that name:
     * a column without a name could not be selected or written. */
    for (uint32_t i = 0; st == SP_OK && !no_header && i < n; i++) {
        if (nm[i]) continue;
        char gen[48];
        for (unsigned k = 1;; k++) {
            if (k == 1) snprintf(gen, sizeof gen, "c%u", i + 1);
            else snprintf(gen, sizeof gen, "c%u_%u", i + 1, k);
            uint32_t j = 0;
            while (j < n && !(nm[j] && strcmp(nm[j], gen) == 0)) j++;
            if (j == n) break;
        }
        if (!(nm[i] = sp__strdup(gen))) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", ps->what);
    }
    if (st == SP_OK && !no_header) st = sp_unique_names(ps, nm, n);
    if (st != SP_OK) {
        for (uint32_t i = 0; i < n; i++) sp__free(nm[i]);
        sp__free(nm);
        return st;
    }
    ps->ncols = n;
    *pos = no_header ? ps->begin : p;
    if (no_header) { /* the first record is data: read it again */
        ps->line = 1;
        ps->line_start = ps->begin;
    }
    *names = nm;
    return SP_OK;
}

/* ---- the records of one chunk ---- */

typedef struct sp_build {
    sp_col_type type;
    /* An int64 value was written "-0": a conversion to double gives 0.0 where a
     * parse as double gives -0.0, so the merge must know (see sp_settle_types). */
    int negzero;
    /* An int64 value past 2^53 in magnitude was seen: as a double it could change,
     * so inference makes the column string rather than double. */
    int big;
    /* vals points into the parse's shared array of the column (the chunk's region of
     * it): not freed with the builder, and moved out to its own block to grow. */
    int borrowed;
    void *vals; /* int64_t, double or uint32_t codes */
    sp_dict dict;
} sp_build;

/* What every chunk shares; read-only while chunks run. */
typedef struct sp_ctx {
    const char *buf, *what;
    const char *buf_end; /* the caller's whole buffer: loads of 8 or 16 bytes may go up to it */
    size_t len;
    char delim;
    int fixed; /* a schema: types never widen */
    const char *schema_from; /* where the schema came from, for messages, or NULL */
    uint32_t ncols;
    double bytes_per_row; /* from a sample: sizes the columns once */
    char *const *shared;  /* per column, or NULL: the arrays the chunks' regions are in */
    unsigned char stop[256];
} sp_ctx;

/* What went wrong, kept as data: chunks run on helper threads and only the main
 * thread knows the line a chunk starts at, so the message is written at the merge. */
enum {
    SP_E_NONE = 0,
    SP_E_UNTERMINATED,
    SP_E_AFTER_QUOTE,
    SP_E_QUOTE_INSIDE,
    SP_E_MORE_FIELDS,
    SP_E_FIELD_COUNT, /* field holds the count */
    SP_E_NOT_INT,
    SP_E_NOT_DOUBLE,
    SP_E_HUGE,
    SP_E_NOMEM,
    SP_E_TOO_MANY_STRINGS,
};

typedef struct sp_err {
    int kind;
    size_t pos; /* byte offset in buf */
    uint32_t field;
    uint64_t line; /* line breaks since the chunk's start */
    size_t line_start;
    const char *val; /* the value, for type errors (may point into scratch) */
    size_t vlen;
} sp_err;

typedef struct sp_chunk {
    const sp_ctx *cx;
    size_t begin, limit; /* records that start in [begin, limit) */
    size_t end;          /* where the parse stopped: the next record's start */
    size_t size_for;     /* the columns are first sized for the records in [begin, size_for) */
    sp_col_type *init;   /* ncols: the types a parse starts from */
    /* Its region of cx->shared, in 8-byte rows: it starts at row region_row of each
     * column's array and holds region_cap rows (0: no region, own blocks). */
    uint64_t region_row, region_cap;
    sp_build *b;
    uint64_t rows, cap;
    uint64_t line; /* line breaks passed since begin */
    size_t line_start;
    uint64_t base_line; /* the line begin is on; set at the merge */
    char *scratch;      /* an unquoted copy of a quoted field with "" in it */
    size_t scratch_cap;
    sp_err err;
} sp_chunk;

static int sp_fail_at(sp_chunk *ch, int kind, size_t pos, uint32_t field, const char *val, size_t vlen)
{
    ch->err = (sp_err){.kind = kind, .pos = pos, .field = field, .line = ch->line, .line_start = ch->line_start,
                       .val = val, .vlen = vlen};
    return -1;
}

static void sp_builds_free(sp_build *b, uint32_t n)
{
    for (uint32_t c = 0; b && c < n; c++) {
        if (!b[c].borrowed) sp__free(b[c].vals);
        sp_dict_free(&b[c].dict);
    }
    sp__free(b);
}

static int sp_grow_rows(sp_chunk *ch, uint64_t cap)
{
    for (uint32_t c = 0; c < ch->cx->ncols; c++) {
        sp_build *b = &ch->b[c];
        size_t w = b->type == SP_COL_STRING ? 4 : 8;
        void *v;
        if (b->borrowed) { /* its region is full: on to a block of its own */
            if (!(v = sp__malloc(cap * w))) return -1;
            memcpy(v, b->vals, ch->rows * w);
            b->borrowed = 0;
        } else if (!(v = sp__realloc(b->vals, cap * w))) {
            return -1;
        }
        b->vals = v;
    }
    ch->cap = cap;
    return 0;
}

/* Fresh builders of the chunk's starting types, sized from the sample. */
static int sp_chunk_reset(sp_chunk *ch)
{
    const sp_ctx *cx = ch->cx;
    sp_builds_free(ch->b, cx->ncols);
    ch->rows = ch->cap = 0;
    ch->line = 0;
    ch->line_start = ch->begin;
    ch->end = ch->begin;
    if (!(ch->b = sp__calloc(cx->ncols ? cx->ncols : 1, sizeof *ch->b))) return -1;
    for (uint32_t c = 0; c < cx->ncols; c++) ch->b[c].type = ch->init[c];
    if (ch->region_cap) { /* written in place in the shared arrays: no copy, no fresh pages at the merge */
        for (uint32_t c = 0; c < cx->ncols; c++) {
            ch->b[c].vals = cx->shared[c] + ch->region_row * 8;
            ch->b[c].borrowed = 1;
        }
        ch->cap = ch->region_cap;
        return 0;
    }
    double est = (double)(ch->size_for - ch->begin) / cx->bytes_per_row * 1.1 + 64;
    return sp_grow_rows(ch, est > 1e12 ? (uint64_t)1e12 : (uint64_t)est);
}

static int sp_scratch_put(sp_chunk *ch, size_t k, const char *s, size_t n)
{
    if (k + n > ch->scratch_cap) {
        size_t c = ch->scratch_cap ? ch->scratch_cap : 256;
        while (c < k + n) c *= 2;
        char *sc = sp__realloc(ch->scratch, c);
        if (!sc) return -1;
        ch->scratch = sc;
        ch->scratch_cap = c;
    }
    memcpy(ch->scratch + k, s, n);
    return 0;
}

/* A quoted field at *p: its text, in place unless it holds doubled quotes (then
 * unquoted into scratch), and *p moved past the closing quote. */
static int sp_quoted(sp_chunk *ch, size_t *p, uint32_t field, const char **s, size_t *n)
{
    const sp_ctx *cx = ch->cx;
    const char *buf = cx->buf;
    size_t len = cx->len, open = *p, i = open + 1, seg = i, k = 0;
    uint64_t open_line = ch->line;
    size_t open_line_start = ch->line_start;
    int copied = 0;
    for (;;) {
        size_t j = sp_scan_quoted(buf, i, len);
        if (j >= len) {
            ch->line = open_line;
            ch->line_start = open_line_start;
            return sp_fail_at(ch, SP_E_UNTERMINATED, open, field, NULL, 0);
        }
        if (buf[j] == '\n') { /* line numbers count breaks inside quotes */
            ch->line++;
            ch->line_start = j + 1;
            i = j + 1;
            continue;
        }
        if (j + 1 < len && buf[j + 1] == '"') { /* a doubled quote: keep one */
            if (sp_scratch_put(ch, k, buf + seg, j + 1 - seg) != 0) return sp_fail_at(ch, SP_E_NOMEM, j, field, 0, 0);
            k += j + 1 - seg;
            seg = i = j + 2;
            copied = 1;
            continue;
        }
        if (copied) {
            if (sp_scratch_put(ch, k, buf + seg, j - seg) != 0) return sp_fail_at(ch, SP_E_NOMEM, j, field, 0, 0);
            *s = ch->scratch;
            *n = k + (j - seg);
        } else {
            *s = buf + open + 1;
            *n = j - open - 1;
        }
        i = j + 1;
        if (i < len && buf[i] != cx->delim && buf[i] != '\n' && !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n'))
            return sp_fail_at(ch, SP_E_AFTER_QUOTE, i, field, NULL, 0);
        *p = i;
        return 0;
    }
}

/* ---- the fast paths of the record loop ---- */

/* n (1..8) ASCII digits in the low bytes of x (first digit lowest, as loaded
 * little-endian) to their value, without a branch per digit (field lengths vary
 * row to row and mispredicted loop exits cost more than the arithmetic). 0 if a
 * byte is not a digit. */
static inline int sp_swar_digits(uint64_t x, size_t n, uint64_t *out)
{
    x -= 0x3030303030303030ull;
    x <<= 8 * (8 - n); /* drop the bytes past the field; the zeros shifted in are leading zeros */
    if (((x + 0x7676767676767676ull) | x) & 0x8080808080808080ull) return 0;
    x = (x * 10 + (x >> 8)) & 0x00ff00ff00ff00ffull;
    x = (x * 100 + (x >> 16)) & 0x0000ffff0000ffffull;
    x = (x * 10000 + (x >> 32)) & 0xffffffffull;
    *out = x;
    return 1;
}

/* May 8 bytes be loaded at s? Values point into the caller's buffer or scratch. */
static inline int sp_can_load8(const sp_ctx *cx, const char *s)
{
    return (uintptr_t)s >= (uintptr_t)cx->buf && (uintptr_t)s + 8 <= (uintptr_t)cx->buf_end;
}

static inline int sp_can_load16(const sp_ctx *cx, const char *s)
{
    return (uintptr_t)s >= (uintptr_t)cx->buf && (uintptr_t)s + 16 <= (uintptr_t)cx->buf_end;
}

/* sp_parse_i64 with a fast path for a sign and up to 8 digits: same answers. */
static inline int sp_int_fast(const sp_ctx *cx, const char *s, size_t n, int64_t *out)
{
    if (n >= 1) {
        /* signs without branches: they vary row to row, unpredictably */
        size_t sign = (s[0] == '-') | (s[0] == '+');
        uint64_t x, v;
        if (n - sign >= 1 && n - sign <= 8 && sp_can_load8(cx, s + sign)) {
            memcpy(&x, s + sign, 8);
            if (!sp_swar_digits(x, n - sign, &v)) return 0;
            uint64_t neg = s[0] == '-';
            *out = (int64_t)((v ^ (0 - neg)) + neg); /* -v if neg */
            return 1;
        }
    }
    return sp_parse_i64(s, n, out);
}

/* sp_parse_f64 with a fast path for a sign and up to 8 bytes of digits with at
 * most one '.': the same (integer / power of ten) the slow path computes. Returns
 * as sp_parse_f64 does. */
static inline __attribute__((always_inline)) int sp_f64_fast(const sp_ctx *cx, const char *s, size_t n, double *out)
{
    if (n >= 1) {
        size_t sign = (s[0] == '-') | (s[0] == '+'), m = n - sign;
        uint64_t x, v;
        if (m >= 2 && m <= 8 && sp_can_load8(cx, s + sign)) {
            memcpy(&x, s + sign, 8);
            uint64_t y = x ^ 0x2e2e2e2e2e2e2e2eull; /* '.' bytes become zero */
            uint64_t dots = (y - 0x0101010101010101ull) & ~y & 0x8080808080808080ull;
            dots &= m == 8 ? ~0ull : (1ull << (8 * m)) - 1;
            size_t digits = m, frac = 0;
            if (dots) { /* close the gap of the first dot; a second one fails as a non-digit */
                size_t d = (size_t)__builtin_ctzll(dots) / 8;
                uint64_t lo = d ? x & ((1ull << (8 * d)) - 1) : 0;
                uint64_t hi = d + 1 < 8 ? (x >> (8 * (d + 1))) << (8 * d) : 0;
                x = lo | hi;
                digits = m - 1;
                frac = m - 1 - d;
            }
            if (sp_swar_digits(x, digits, &v)) {
                double r = (double)v / sp_pow10[frac];
                uint64_t bits;
                memcpy(&bits, &r, 8);
                bits ^= (uint64_t)(s[0] == '-') << 63; /* -r if negative, without a branch */
                memcpy(out, &bits, 8);
                return 1;
            }
        }
    }
    return sp_parse_f64(s, n, out);
}

/* Bit i set: byte base + i (below len) ends an unquoted field (delimiter, '\n',
 * '"'). The record loop walks these bits instead of scanning from each field's
 * start: finding the next end is then a count of zero bits, off the chain of loads
 * that a scan per field puts between one field and the next. */
static inline uint64_t sp_marks(const sp_ctx *cx, size_t base)
{
    const char *p = cx->buf + base;
#if defined(__SSE2__)
    if (base + 64 <= cx->len) {
        const __m128i vd = _mm_set1_epi8(cx->delim), vn = _mm_set1_epi8('\n'), vq = _mm_set1_epi8('"');
        uint64_t m = 0;
        for (int k = 0; k < 4; k++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vd), _mm_cmpeq_epi8(v, vn)), _mm_cmpeq_epi8(v, vq));
            m |= (uint64_t)(unsigned)_mm_movemask_epi8(hit) << (16 * k);
        }
        return m;
    }
#endif
    uint64_t m = 0;
    for (size_t i = 0; i < 64 && base + i < cx->len; i++)
        if (cx->stop[(unsigned char)p[i]]) m |= 1ull << i;
    return m;
}

/* The records from pos up to the chunk's limit, into the builders. 0: done, with
 * ch->end set; -1: an error in ch->err; 1: a column must hold strings (its init
 * type is now string): start over. One loop for every field, with the column's
 * type switched on in place: a call per field cost more than the parsing. */
static int sp_records(sp_chunk *ch, size_t pos)
{
    const sp_ctx *cx = ch->cx;
    const char *buf = cx->buf;
    const size_t len = cx->len, limit = ch->limit;
    const char delim = cx->delim;
    const uint32_t ncols = cx->ncols;
    const int fixed = cx->fixed;
    /* the marks of [mb, mb + 64), those before pos cleared */
    size_t mb = pos;
    uint64_t mm = pos < len ? sp_marks(cx, pos) : 0;
    while (pos < limit) {
        if (ch->rows == ch->cap && sp_grow_rows(ch, ch->cap * 2) != 0)
            return sp_fail_at(ch, SP_E_NOMEM, pos, 0, NULL, 0);
        const uint64_t row = ch->rows;
        sp_build *b = ch->b;
        uint32_t c = 0;
        for (;; c++) {
            const char *s;
            size_t n, at = pos;
            int quoted = pos < len && buf[pos] == '"';
            if (quoted) {
                if (sp_quoted(ch, &pos, c, &s, &n) != 0) return -1;
            } else {
                size_t e;
                for (;;) {
                    if (mm) {
                        e = mb + (size_t)__builtin_ctzll(mm);
                        break;
                    }
                    mb += 64;
                    if (mb >= len) {
                        e = len;
                        break;
                    }
                    mm = sp_marks(cx, mb);
                }
                if (e < len && buf[e] == '"') return sp_fail_at(ch, SP_E_QUOTE_INSIDE, e, c, NULL, 0);
                s = buf + pos;
                n = e - pos;
                if (n && buf[e - 1] == '\r' && (e == len || buf[e] == '\n')) n--;
                pos = e;
            }
            if (c >= ncols) return sp_fail_at(ch, SP_E_MORE_FIELDS, at, c, NULL, 0);
            sp_build *bc = &b[c];
            if (bc->type == SP_COL_INT64) {
                int64_t v;
                double d;
                int f = 0;
                if (sp_int_fast(cx, s, n, &v)) {
                    ((int64_t *)bc->vals)[row] = v;
                    /* one branch, rarely taken: 0 is common (flags), "-0" and big values are not */
                    int negzero = (v == 0) & (s[0] == '-'), big = (uint64_t)v + SP_EXACT_INT > 2 * SP_EXACT_INT;
                    if (__builtin_expect(negzero | big, 0)) {
                        bc->negzero |= negzero;
                        bc->big |= big;
                    }
                } else if (fixed) { /* an empty one too: an int64 has no missing value */
                    return sp_fail_at(ch, SP_E_NOT_INT, at, c, s, n);
                } else if (!bc->big && (n == 0 || (f = sp_f64_fast(cx, s, n, &d)) == 1)) { /* widen in place */
                    int64_t *iv = bc->vals;
                    double *dv = bc->vals;
                    for (uint64_t r = 0; r < row; r++) dv[r] = (double)iv[r];
                    bc->type = SP_COL_DOUBLE;
                    dv[row] = n == 0 ? NAN : d;
                } else if (f < 0) {
                    return sp_fail_at(ch, SP_E_NOMEM, at, c, NULL, 0);
                } else { /* text, or a number the column's integers would not all survive as doubles */
                    ch->init[c] = SP_COL_STRING;
                    return 1;
                }
            } else if (bc->type == SP_COL_DOUBLE) {
                double d;
                int f;
                /* Empty is missing, NaN, with a schema too: a schema is how later files
                 * and re-parses of a file read it, and they must take what inference took. */
                if (n == 0) ((double *)bc->vals)[row] = NAN;
                else if ((f = sp_f64_fast(cx, s, n, &d)) == 1 || (f == 2 && fixed)) ((double *)bc->vals)[row] = d;
                else if (f < 0) return sp_fail_at(ch, SP_E_NOMEM, at, c, NULL, 0);
                else if (fixed) return sp_fail_at(ch, SP_E_NOT_DOUBLE, at, c, s, n);
                else {
                    ch->init[c] = SP_COL_STRING;
                    return 1;
                }
            } else {
                uint32_t code = 0;
                if (n > UINT32_MAX) return sp_fail_at(ch, SP_E_HUGE, at, c, NULL, 0);
                int can16 = sp_can_load16(cx, s);
                int r = can16 && n <= 16 && sp_dict_known16(&bc->dict, s, (uint32_t)n, &code)
                            ? SP_DICT_OK
                            : sp_dict_code(&bc->dict, s, (uint32_t)n, can16, &code);
                if (r != SP_DICT_OK)
                    return sp_fail_at(ch, r == SP_DICT_FULL ? SP_E_TOO_MANY_STRINGS : SP_E_NOMEM, at, c, NULL, 0);
                ((uint32_t *)bc->vals)[row] = code;
            }
            if (pos >= len) break;
            int more = buf[pos] == delim;
            pos += buf[pos] == '\r' ? 2 : 1; /* '\r' only after a closing quote, then '\n' */
            if (!quoted) mm &= mm - 1; /* the end just passed */
            else if (pos - mb < 64) mm &= ~0ull << (pos - mb);
            else mb = pos, mm = pos < len ? sp_marks(cx, pos) : 0;
            if (more) continue;
            ch->line++;
            ch->line_start = pos;
            break;
        }
        if (c + 1 != ncols) { /* named where the record ends: the missing field's place */
            int newline = pos > 0 && pos <= len && ch->line_start == pos && buf[pos - 1] == '\n';
            size_t end = newline ? pos - 1 : pos, ls;
            if (newline && end > 0 && buf[end - 1] == '\r') end--;
            for (ls = end; ls > 0 && buf[ls - 1] != '\n';) ls--;
            ch->err = (sp_err){.kind = SP_E_FIELD_COUNT, .field = c + 1, .pos = end, .line_start = ls,
                               .line = newline ? ch->line - 1 : ch->line};
            return -1;
        }
        ch->rows++;
    }
    ch->end = pos;
    return 0;
}

/* Parse the chunk from pos (its begin, or where an earlier run stopped when it
 * takes over the next chunk's range), starting over as columns turn to strings. */
static int sp_chunk_run(sp_chunk *ch, size_t pos)
{
    for (;;) {
        if (!ch->b) {
            if (sp_chunk_reset(ch) != 0) return sp_fail_at(ch, SP_E_NOMEM, ch->begin, 0, NULL, 0);
            pos = ch->begin;
        }
        int r = sp_records(ch, pos);
        if (r <= 0) return r;
        sp_builds_free(ch->b, ch->cx->ncols);
        ch->b = NULL;
    }
}

static void sp_chunk_job(void *arg, unsigned i)
{
    sp_chunk **list = arg;
    sp_chunk_run(list[i], list[i]->begin);
}

static void sp_chunk_free(sp_chunk *ch)
{
    if (ch->cx) sp_builds_free(ch->b, ch->cx->ncols);
    sp__free(ch->init);
    sp__free(ch->scratch);
    memset(ch, 0, sizeof *ch);
}

/* The message for a chunk's error, with the line counted from the file's start. */
static sp_status sp_report(const sp_chunk *ch)
{
    const sp_ctx *cx = ch->cx;
    const sp_err *e = &ch->err;
    uint64_t line = ch->base_line + e->line;
    const char *msg = "";
    sp_status st = SP_ERR_CORRUPT;
    switch (e->kind) {
    case SP_E_FIELD_COUNT: {
        char few[96];
        snprintf(few, sizeof few, "the record ends with %u fields, the header has %u", e->field, cx->ncols);
        return sp_at_value(cx->what, line, e->line_start, e->pos, e->field, SP_ERR_CORRUPT, few, NULL, 0);
    }
    case SP_E_NOMEM:
        return sp__fail(SP_ERR_NOMEM, "%s: line %llu: out of memory", cx->what, (unsigned long long)line);
    case SP_E_TOO_MANY_STRINGS:
        return sp__fail(SP_ERR_NOMEM, "%s: line %llu: too many distinct strings", cx->what, (unsigned long long)line);
    case SP_E_UNTERMINATED: msg = "unterminated quote"; break;
    case SP_E_AFTER_QUOTE: msg = "text after a closing quote"; break;
    case SP_E_QUOTE_INSIDE: msg = "a quote inside an unquoted field"; break;
    case SP_E_MORE_FIELDS: msg = "more fields than the header's"; break;
    case SP_E_NOT_INT: msg = "not an int64: "; break;
    case SP_E_NOT_DOUBLE: msg = "not a double: "; break;
    case SP_E_HUGE: msg = "a field over 4 GiB"; break;
    default: msg = "internal error"; st = SP_ERR_INVALID; break;
    }
    sp_at_value(cx->what, line, e->line_start, e->pos, e->field, st, msg, e->val, e->vlen);
    if ((e->kind == SP_E_NOT_INT || e->kind == SP_E_NOT_DOUBLE) && cx->schema_from) {
        char first[1024]; /* the message so far: the next one is written where it lives */
        snprintf(first, sizeof first, "%s", sp_last_error());
        sp__fail(st, "%s (the column's type comes from %s)", first,
                 cx->schema_from);
    }
    return st;
}

/* ---- merging the chunks ---- */

/* Make every chunk agree on each column's type, as one pass over the file would
 * have it: a column is a string if any chunk found text in it (chunks that parsed
 * it as numbers parse again), else a double if any chunk found a non-integer. A
 * one-pass parse converts the integers before the first double and parses the rest
 * as doubles; converting gives the same bits except for "-0", so a chunk that saw
 * "-0" after an earlier chunk's first double parses again too. The chunks are in
 * file order and have no errors. 0, or -1 with the chunk that failed in *bad. */
static int sp_settle_types(sp_chunk *ch, unsigned n, uint32_t ncols, sp_col_type *final, sp_chunk **bad)
{
    sp_chunk **redo = sp__calloc(n, sizeof *redo);
    uint8_t *dbl_before = sp__calloc(ncols ? ncols : 1, 1);
    int rc = 0;
    if (!redo || !dbl_before) {
        *bad = &ch[0];
        sp_fail_at(&ch[0], SP_E_NOMEM, ch[0].begin, 0, NULL, 0);
        rc = -1;
    }
    for (int round = 0; rc == 0; round++) {
        for (uint32_t c = 0; c < ncols; c++) {
            final[c] = SP_COL_INT64;
            int big = 0;
            for (unsigned k = 0; k < n; k++) {
                if (ch[k].b[c].type > final[c]) final[c] = ch[k].b[c].type;
                big |= ch[k].b[c].type == SP_COL_INT64 && ch[k].b[c].big;
            }
            if (final[c] == SP_COL_DOUBLE && big) final[c] = SP_COL_STRING; /* as in one chunk */
        }
        memset(dbl_before, 0, ncols ? ncols : 1);
        unsigned nredo = 0;
        for (unsigned k = 0; k < n; k++) {
            int again = 0;
            for (uint32_t c = 0; c < ncols; c++) {
                sp_build *b = &ch[k].b[c];
                if (final[c] == SP_COL_STRING && b->type != SP_COL_STRING) {
                    ch[k].init[c] = SP_COL_STRING;
                    again = 1;
                } else if (final[c] == SP_COL_DOUBLE && b->negzero && dbl_before[c]) {
                    ch[k].init[c] = SP_COL_DOUBLE;
                    again = 1;
                }
                if (b->type != SP_COL_INT64) dbl_before[c] = 1;
            }
            if (again) {
                sp_builds_free(ch[k].b, ncols);
                ch[k].b = NULL;
                redo[nredo++] = &ch[k];
            }
        }
        if (nredo == 0) break;
        if (round > 2) { /* cannot happen: one round settles every column */
            *bad = redo[0];
            sp_fail_at(redo[0], SP_E_NONE, redo[0]->begin, 0, NULL, 0);
            rc = -1;
            break;
        }
        sp__par_run(nredo, sp_chunk_job, redo);
        for (unsigned k = 0; k < nredo; k++)
            if (redo[k]->err.kind != SP_E_NONE) { /* only running out of memory, or a 4 GiB string */
                *bad = redo[k];
                rc = -1;
                break;
            }
    }
    sp__free(redo);
    sp__free(dbl_before);
    return rc;
}

/* Copy a chunk's column into the merged one at its row offset, dictionary codes
 * through the chunk's remap; in parts, so that a few columns still keep every
 * core busy. */
#define SP_COPY_PARTS 4
typedef struct sp_copy {
    sp_chunk *ch;
    unsigned n;
    uint32_t ncols;
    const uint64_t *row_off;
    void **dst;
    const sp_col_type *final;
    uint32_t *const *const *remap; /* [chunk][col] */
    const uint8_t *inplace;        /* [col]: its array is the shared one, regions moved by sp_move_job */
} sp_copy;

/* A column whose array is the shared one: each chunk's rows that are still in its
 * region move down to their place, in file order (a chunk's place never reaches
 * past its own region's start or into a later region: checked at the merge). Loads
 * and stores go through memcpy, as the source and the destination overlap. */
static void sp_move_job(void *arg, unsigned c)
{
    const sp_copy *cp = arg;
    for (unsigned k = 1; k < cp->n; k++) {
        const sp_chunk *ch = &cp->ch[k];
        const sp_build *b = &ch->b[c];
        if (!b->borrowed || ch->rows == 0) continue;
        const char *src = b->vals;
        if (cp->final[c] == SP_COL_STRING) {
            const uint32_t *map = cp->remap[k][c];
            char *dst = (char *)cp->dst[c] + cp->row_off[k] * 4;
            for (uint64_t r = 0; r < ch->rows; r++) {
                uint32_t x;
                memcpy(&x, src + 4 * r, 4);
                x = map[x];
                memcpy(dst + 4 * r, &x, 4);
            }
        } else {
            char *dst = (char *)cp->dst[c] + cp->row_off[k] * 8;
            if (cp->final[c] == SP_COL_DOUBLE && b->type == SP_COL_INT64) {
                for (uint64_t r = 0; r < ch->rows; r++) {
                    int64_t x;
                    memcpy(&x, src + 8 * r, 8);
                    double d = (double)x;
                    memcpy(dst + 8 * r, &d, 8);
                }
            } else if (dst != src) {
                memmove(dst, src, ch->rows * 8);
            }
        }
    }
}

static void sp_copy_job(void *arg, unsigned i)
{
    const sp_copy *cp = arg;
    unsigned part = i % SP_COPY_PARTS;
    i /= SP_COPY_PARTS;
    unsigned k = 1 + i / cp->ncols;
    uint32_t c = i % cp->ncols;
    const sp_chunk *ch = &cp->ch[k];
    if (cp->inplace[c] && ch->b[c].borrowed) return; /* moved by sp_move_job */
    /* rows [from, to) of the chunk's column */
    uint64_t from = ch->rows * part / SP_COPY_PARTS, to = ch->rows * (part + 1) / SP_COPY_PARTS;
    uint64_t rows = to - from, off = cp->row_off[k] + from;
    if (rows == 0) return;
    if (cp->final[c] == SP_COL_STRING) {
        const uint32_t *src = (const uint32_t *)ch->b[c].vals + from, *map = cp->remap[k][c];
        uint32_t *dst = (uint32_t *)cp->dst[c] + off;
        for (uint64_t r = 0; r < rows; r++) dst[r] = map[src[r]];
    } else {
        if (cp->final[c] == SP_COL_DOUBLE && ch->b[c].type == SP_COL_INT64) { /* widened elsewhere: convert */
            const int64_t *src = (const int64_t *)ch->b[c].vals + from;
            double *dst = (double *)cp->dst[c] + off;
            for (uint64_t r = 0; r < rows; r++) dst[r] = (double)src[r];
        } else {
            memcpy((char *)cp->dst[c] + off * 8, (const char *)ch->b[c].vals + from * 8, rows * 8);
        }
    }
}

/* Where chunks start: the record start at or after each even cut. A cut inside a
 * quoted field with line breaks gives a wrong start; the merge finds it out. */
static unsigned sp_cut(const char *buf, size_t start, size_t len, unsigned n, size_t *begin)
{
    unsigned m = 0;
    begin[m++] = start;
    for (unsigned k = 1; k < n; k++) {
        size_t at = start + (size_t)((double)(len - start) * k / n);
        if (at <= begin[m - 1]) at = begin[m - 1] + 1;
        if (at >= len) break;
        const char *nl = memchr(buf + at, '\n', len - at);
        if (!nl || (size_t)(nl - buf) + 1 >= len) break;
        begin[m++] = (size_t)(nl - buf) + 1;
    }
    return m;
}

sp_status sp_csv_parse(const char *buf, size_t len, const sp_csv_options *opt, const char *what, sp_table **out)
{
    return sp__csv_parse_chunks(buf, len, opt, what, 0, out);
}

sp_status sp__csv_parse_chunks(const char *buf, size_t len, const sp_csv_options *opt, const char *what,
                               unsigned nchunks, sp_table **out)
{
    *out = NULL;
    what = what ? what : "csv";
    /* A UTF-8 byte order mark, as some editors and spreadsheets write, is not part of
     * the first name or value; columns count from after it. */
    size_t bom = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    SP_RETURN_IF(len == bom, SP_ERR_CORRUPT, "%s: empty file (no header, no records)", what);
    sp_parser ps = {.buf = buf, .len = len, .what = what, .delim = opt && opt->delim ? opt->delim : ',', .line = 1,
                    .begin = bom, .line_start = bom};
    SP_RETURN_IF(ps.delim == '"' || ps.delim == '\n' || ps.delim == '\r', SP_ERR_INVALID,
                 "%s: the delimiter cannot be a quote or a line break", what);
    ps.stop[(unsigned char)ps.delim] = ps.stop['\n'] = ps.stop['"'] = 1;
    /* A trailing line break ends the last record; it does not start an empty one. */
    if (ps.len && buf[ps.len - 1] == '\n') ps.len--;
    if (ps.len && buf[ps.len - 1] == '\r') ps.len--;
    SP_RETURN_IF(ps.len == bom, SP_ERR_CORRUPT, "%s: empty file (a line break, no header, no records)", what);
    char **names = NULL;
    size_t start = 0;
    sp_status st = sp_header(&ps, opt && opt->no_header, &start, &names);
    sp__free(ps.scratch);
    if (st != SP_OK) return st;
    uint32_t ncols = ps.ncols;
    int fixed = opt && opt->schema;
    if (fixed && opt->schema_cols != ncols)
        st = sp__fail(SP_ERR_CORRUPT, "%s: %u columns, the schema gives %u", what, ncols, opt->schema_cols);
    sp_col_type *types = st == SP_OK ? sp__calloc(ncols, sizeof *types) : NULL;
    if (st == SP_OK && !types) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
    for (uint32_t c = 0; st == SP_OK && c < ncols; c++) {
        types[c] = fixed ? opt->schema[c] : SP_COL_INT64;
        if (types[c] < SP_COL_INT64 || types[c] > SP_COL_STRING)
            st = sp__fail(SP_ERR_INVALID, "%s: schema type %d of column %u is unknown", what, (int)types[c], c + 1);
    }

    sp_ctx cx = {.buf = buf, .what = what, .buf_end = buf + len, .len = ps.len, .delim = ps.delim, .fixed = fixed,
                 .schema_from = fixed ? opt->schema_from : NULL, .ncols = ncols};
    memcpy(cx.stop, ps.stop, sizeof cx.stop);
    /* Rows per byte from a sample: the columns are sized once instead of doubled. */
    size_t sample = ps.len - start < 65536 ? ps.len - start : 65536, nl = 0;
    for (const char *q = buf + start, *e = q + sample; q < e && (q = memchr(q, '\n', (size_t)(e - q))); q++) nl++;
    cx.bytes_per_row = sample ? (double)sample / (double)(nl + 1) : 1;
    if (cx.bytes_per_row < 1) cx.bytes_per_row = 1;

    if (nchunks == 0) nchunks = ps.len - start >= SP_CSV_SPLIT_MIN ? sp__par_width() : 1;
    if (nchunks > SP_CSV_MAX_CHUNKS) nchunks = SP_CSV_MAX_CHUNKS;
    size_t begin[SP_CSV_MAX_CHUNKS];
    unsigned n = st == SP_OK && start < ps.len ? sp_cut(buf, start, ps.len, nchunks, begin) : 0;
    sp_chunk *ch = st == SP_OK ? sp__calloc(n ? n : 1, sizeof *ch) : NULL;
    sp_chunk *list[SP_CSV_MAX_CHUNKS];
    if (st == SP_OK && !ch) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
    if (!ch) n = 0;
    for (unsigned k = 0; st == SP_OK && k < n; k++) {
        ch[k].cx = &cx;
        ch[k].begin = begin[k];
        ch[k].limit = k + 1 < n ? begin[k + 1] : ps.len;
        ch[k].base_line = ps.line;
        /* Chunk 0's columns become the table's: sized for the whole file, the merge
         * copies the others in without moving them. */
        ch[k].size_for = k == 0 ? ps.len : ch[k].limit;
        list[k] = &ch[k];
        if (!(ch[k].init = sp__malloc((ncols ? ncols : 1) * sizeof *types)))
            st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
        else memcpy(ch[k].init, types, ncols * sizeof *types);
    }
    /* With several chunks, each column is one array cut into a region per chunk, sized
     * from the sample with room to spare: a chunk writes its rows in place and the
     * merge moves them down to their rows, instead of copying them into fresh pages
     * (first touches of memory cost more here than the moves). A chunk that fills its
     * region goes on in a block of its own; if the shared array cannot be kept, the
     * merge copies as from own blocks. Without the arrays, every chunk has own blocks. */
    char **shared = NULL;
    uint64_t shared_rows = 0;
    if (st == SP_OK && n > 1 && ncols) {
        for (unsigned k = 0; k < n; k++) {
            double est = (double)(ch[k].limit - ch[k].begin) / cx.bytes_per_row * 1.1 + 64;
            ch[k].region_row = shared_rows;
            ch[k].region_cap = est > 1e12 ? (uint64_t)1e12 : (uint64_t)est;
            shared_rows += ch[k].region_cap;
        }
        int ok = (shared = sp__calloc(ncols, sizeof *shared)) != NULL;
        for (uint32_t c = 0; ok && c < ncols; c++) ok = (shared[c] = sp__malloc(shared_rows * 8)) != NULL;
        if (!ok) { /* own blocks: an allocation failing now fails again in them, with the message */
            for (uint32_t c = 0; shared && c < ncols; c++) sp__free(shared[c]);
            sp__free(shared);
            shared = NULL;
            for (unsigned k = 0; k < n; k++) ch[k].region_cap = 0;
        }
        cx.shared = shared;
    }
    if (st == SP_OK) sp__par_run(n, sp_chunk_job, list);

    /* In file order: a chunk's error stands only if the chunks before it ended where
     * it begins; a chunk whose start the previous one ran past (the cut was inside
     * quotes) is dropped and the previous one parses on over its range. */
    uint64_t line = ps.line;
    for (unsigned k = 0; st == SP_OK && k < n; k++) {
        sp_chunk *c = &ch[k];
        c->base_line = line;
        while (c->err.kind == SP_E_NONE && k + 1 < n && c->end != ch[k + 1].begin) {
            c->limit = ch[k + 1].limit;
            sp_chunk_free(&ch[k + 1]);
            memmove(&ch[k + 1], &ch[k + 2], (n - k - 2) * sizeof *ch);
            n--;
            sp_chunk_run(c, c->end);
        }
        if (c->err.kind != SP_E_NONE) st = sp_report(c);
        line += c->line;
    }
    sp_col_type *final = st == SP_OK && n ? sp__calloc(ncols ? ncols : 1, sizeof *final) : NULL;
    if (st == SP_OK && n && !final) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
    if (st == SP_OK && n > 1) {
        sp_chunk *bad = NULL;
        if (sp_settle_types(ch, n, ncols, final, &bad) != 0) st = sp_report(bad);
    } else if (st == SP_OK && n == 1) {
        for (uint32_t c = 0; c < ncols; c++) final[c] = ch[0].b[c].type;
    }

    /* Merge into chunk 0's arrays and dictionaries: grown in place (big blocks grow
     * by remapping, not copying), the other chunks copied in, in parallel. */
    uint64_t rows = 0, row_off[SP_CSV_MAX_CHUNKS];
    for (unsigned k = 0; k < n; k++) row_off[k] = rows, rows += ch[k].rows;
    uint32_t **remap_mem[SP_CSV_MAX_CHUNKS] = {0};
    void **dst = NULL;
    uint8_t *inplace = NULL; /* [col]: dst is the shared array, the chunks' regions move into place */
    int any_inplace = 0;
    if (st == SP_OK && n) {
        dst = sp__calloc(ncols ? ncols : 1, sizeof *dst + 1);
        if (!dst) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
        else inplace = (uint8_t *)(dst + (ncols ? ncols : 1));
        for (uint32_t c = 0; st == SP_OK && c < ncols; c++) {
            size_t w = final[c] == SP_COL_STRING ? 4 : 8;
            sp_build *b0 = &ch[0].b[c];
            if (b0->type == SP_COL_INT64 && final[c] == SP_COL_DOUBLE) {
                int64_t *iv = b0->vals;
                double *dv = b0->vals;
                for (uint64_t r = 0; r < ch[0].rows; r++) dv[r] = (double)iv[r];
                b0->type = SP_COL_DOUBLE;
            }
            void *v;
            if (b0->borrowed) {
                /* Chunk 0's rows are at the start of the shared array. It becomes the
                 * column if it holds every row and each chunk still in its region
                 * moves down (not up): in file order, a move then never overwrites
                 * rows still to move. Else a block of the right size. */
                int fits = rows * w <= shared_rows * 8;
                for (unsigned k = 1; fits && k < n; k++)
                    if (ch[k].b[c].borrowed && row_off[k] * w > ch[k].region_row * 8) fits = 0;
                if (fits) {
                    v = b0->vals;
                    shared[c] = NULL;
                    inplace[c] = 1;
                    any_inplace = 1;
                } else if ((v = sp__malloc(rows ? rows * w : 1)) != NULL) {
                    memcpy(v, b0->vals, ch[0].rows * w);
                }
                if (v) b0->borrowed = 0;
            } else {
                /* chunk 0 was sized for the whole file: realloc only if that estimate fell short */
                v = rows > ch[0].cap ? sp__realloc(b0->vals, rows * w) : b0->vals;
            }
            if (!v) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory for %llu rows", what, (unsigned long long)rows);
            else b0->vals = dst[c] = v;
        }
        for (unsigned k = 1; st == SP_OK && k < n; k++) {
            if (!(remap_mem[k] = sp__calloc(ncols ? ncols : 1, sizeof *remap_mem[k]))) {
                st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
                break;
            }
            for (uint32_t c = 0; st == SP_OK && c < ncols; c++) {
                if (final[c] != SP_COL_STRING) continue;
                sp_dict *from = &ch[k].b[c].dict, *to = &ch[0].b[c].dict;
                uint32_t *map = remap_mem[k][c] = sp__malloc((from->n ? from->n : 1) * sizeof *map);
                if (!map) st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
                /* in code order: a later chunk's new strings follow in order of first appearance */
                for (uint32_t i = 0; st == SP_OK && i < from->n; i++) {
                    int r = sp_dict_code(to, from->blob + from->off[i], from->len[i], 0, &map[i]);
                    if (r != SP_DICT_OK)
                        st = sp__fail(SP_ERR_NOMEM, "%s: %s", what,
                                      r == SP_DICT_FULL ? "too many distinct strings" : "out of memory");
                }
            }
        }
        if (st == SP_OK) {
            sp_copy cp = {.ch = ch, .n = n, .ncols = ncols, .row_off = row_off, .dst = dst, .final = final,
                          .remap = (uint32_t *const *const *)remap_mem, .inplace = inplace};
            /* the moves first: a chunk copied from its own block may land on a region not yet moved */
            if (any_inplace) sp__par_run(ncols, sp_move_job, &cp);
            if (n > 1) sp__par_run((n - 1) * ncols * SP_COPY_PARTS, sp_copy_job, &cp);
            /* the shared array's tail past the last row goes back (it may hold moved-out rows) */
            for (uint32_t c = 0; any_inplace && c < ncols; c++) {
                size_t need = rows * (final[c] == SP_COL_STRING ? 4 : 8);
                if (!inplace[c] || need + ((size_t)1 << 20) > shared_rows * 8) continue;
                void *v = sp__realloc(dst[c], need ? need : 1);
                if (v) ch[0].b[c].vals = dst[c] = v;
            }
        }
    }
    for (unsigned k = 1; k < n; k++) {
        for (uint32_t c = 0; remap_mem[k] && c < ncols; c++) sp__free(remap_mem[k][c]);
        sp__free(remap_mem[k]);
    }
    sp__free(dst);

    sp_table *t = st == SP_OK ? sp__calloc(1, sizeof *t) : NULL;
    if (st == SP_OK && (!t || !(t->cols = sp__calloc(ncols ? ncols : 1, sizeof *t->cols)))) {
        sp__free(t);
        t = NULL;
        st = sp__fail(SP_ERR_NOMEM, "%s: out of memory", what);
    }
    if (st == SP_OK) {
        t->ncols = ncols;
        t->nrows = rows;
        t->bytes = sizeof *t + ncols * sizeof *t->cols;
        for (uint32_t c = 0; c < ncols; c++) {
            sp_column *col = &t->cols[c];
            sp_build *b = n ? &ch[0].b[c] : NULL;
            col->name = names[c];
            names[c] = NULL;
            col->type = rows == 0 && !fixed ? SP_COL_STRING : n ? final[c] : types[c];
            t->bytes += strlen(col->name) + 1 + rows * (col->type == SP_COL_STRING ? 4 : 8);
            void *vals = b ? b->vals : NULL;
            if (b) b->vals = NULL;
            if (col->type == SP_COL_INT64) col->i64 = vals;
            else if (col->type == SP_COL_DOUBLE) col->f64 = vals;
            else col->codes = vals;
            if (col->type == SP_COL_STRING) { /* the blob is handed over: dict[0] points at its start */
                sp_dict empty = {0}, *d = b ? &b->dict : &empty;
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
    for (uint32_t c = 0; names && c < ncols; c++) sp__free(names[c]);
    sp__free(names);
    sp__free(types);
    sp__free(final);
    for (unsigned k = 0; ch && k < n; k++) sp_chunk_free(&ch[k]);
    sp__free(ch);
    for (uint32_t c = 0; shared && c < ncols; c++) sp__free(shared[c]);
    sp__free(shared);
    if (st != SP_OK) {
        sp_table_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}
