/* `spillpool query`: CSV files as a partitioned table (one partition per file,
 * registered lazily, so only the files a task needs are in memory at once), an
 * optional filter, then a group-by or a reduce, printed as text or JSON. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/utf8.h"
#include "../table/table_internal.h"
#include "spillpool/spillpool.h"
#include "query.h"

#define Q_MAX_AGGS 16 /* what sp_dtable_group_by and sp_dtable_reduce accept */

static const char q_usage_text[] =
    "usage: spillpool query FILE|DIR... [--where EXPR] [--group-by COL] [--agg FUNC:COL]...\n"
    "                       [--types COL:TYPE,...] [--delim C] [--json]\n";

/* A library failure, in the style of main.c's fail(). */
static int q_fail(sp_status st, const char *what)
{
    const char *d = sp_last_error();
    fprintf(stderr, "spillpool query: %s: %s%s%s\n", what, sp_strerror(st), d[0] ? ": " : "", d);
    return 1;
}

static int q_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int q_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("spillpool query: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(q_usage_text, stderr);
    return 2;
}

/* ---- the file list ---- */

typedef struct {
    char **v;
    size_t n, cap;
} q_paths;

/* Takes s (freed on failure); -1 when out of memory. */
static int q_push(q_paths *p, char *s)
{
    if (!s) return -1;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        char **v = realloc(p->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return -1;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = s;
    return 0;
}

static void q_paths_free(q_paths *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->v[i]);
    free(p->v);
}

static int q_cmp_paths(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The directory's regular *.csv files (not recursive), sorted by name. 0, or 1
 * (reported). */
static int q_expand_dir(const char *dir, q_paths *p)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "spillpool query: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    size_t first = p->n, dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl >= 4 && strcmp(e->d_name + nl - 4, ".csv") == 0) {
            size_t len = dl + 1 + nl + 1;
            char *path = malloc(len);
            struct stat sb;
            if (path) snprintf(path, len, "%s%s%s", dir, sep, e->d_name);
            /* stat, not d_type: some file systems leave d_type unknown, and a link
             * to a regular file counts as one */
            if (path && (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))) {
                free(path);
            } else if (q_push(p, path) != 0) {
                fprintf(stderr, "spillpool query: %s: out of memory\n", dir);
                rc = 1;
            }
        }
        errno = 0;
    }
    if (rc == 0 && errno) {
        fprintf(stderr, "spillpool query: %s: %s\n", dir, strerror(errno));
        rc = 1;
    }
    closedir(d);
    if (rc == 0 && p->n == first) {
        fprintf(stderr, "spillpool query: %s: no .csv files in the directory\n", dir);
        rc = 1;
    }
    if (rc == 0) qsort(p->v + first, p->n - first, sizeof *p->v, q_cmp_paths);
    return rc;
}

/* ---- values ---- */

/* A double as text: the shortest of 15-17 significant digits that reads back
 * exactly (fewer would show sums of large values rounded), with nan and inf spelled
 * one way on every libc. */
static const char *q_fmt_double(double d, char *buf, size_t n)
{
    if (isnan(d)) return "nan";
    if (isinf(d)) return d > 0 ? "inf" : "-inf";
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    return buf;
}

/* A double as JSON: as in text; null for NaN and the infinities, which JSON has no
 * numbers for. */
static void q_json_double(FILE *f, double d)
{
    char b[40];
    fputs(isfinite(d) ? q_fmt_double(d, b, sizeof b) : "null", f);
}

/* n bytes as a JSON string. CSV data is bytes, and JSON must be UTF-8: an invalid
 * byte becomes U+FFFD rather than breaking the document. */
void sp_json_string(FILE *f, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    putc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc(c, f);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default: fprintf(f, "\\u%04x", c); break;
            }
            i++;
        } else {
            size_t l = sp__utf8_len(u + i, n - i);
            if (l) fwrite(u + i, 1, l, f);
            else fputs("\\ufffd", f);
            i += l ? l : 1;
        }
    }
    putc('"', f);
}

/* Row r of column c as text: s/len point into the table (strings) or into buf. */
typedef struct {
    const char *s;
    size_t len;
    char buf[48];
} q_cell;

static void q_cell_text(const sp_column *c, uint64_t r, q_cell *out)
{
    out->s = out->buf;
    switch (c->type) {
    case SP_COL_STRING:
        out->s = c->dict[c->codes[r]];
        out->len = c->dict_len[c->codes[r]];
        return;
    case SP_COL_INT64: snprintf(out->buf, sizeof out->buf, "%lld", (long long)c->i64[r]); break;
    case SP_COL_DOUBLE: out->s = q_fmt_double(c->f64[r], out->buf, sizeof out->buf); break;
    case SP_COL_UINT8: snprintf(out->buf, sizeof out->buf, "%u", c->u8[c->codes ? c->codes[r] : r]); break;
    }
    out->len = strlen(out->s);
}

static void q_json_cell(FILE *f, const sp_column *c, uint64_t r)
{
    if (c->type == SP_COL_STRING) sp_json_string(f, c->dict[c->codes[r]], c->dict_len[c->codes[r]]);
    else if (c->type == SP_COL_DOUBLE) q_json_double(f, c->f64[r]);
    else {
        q_cell x;
        q_cell_text(c, r, &x);
        fputs(x.s, f);
    }
}

/* Text cells show control characters as C escapes (\t, \n, \x01), so a value
 * holding a tab or a line break cannot break the table's rows and columns. */
static size_t q_escape(unsigned char c, char out[5])
{
    const char *e = c == '\t' ? "\\t" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : NULL;
    if (e) return (size_t)snprintf(out, 5, "%s", e);
    if (c < 0x20 || c == 0x7f) return (size_t)snprintf(out, 5, "\\x%02x", c);
    return 0;
}

/* Terminal columns taken by n bytes of UTF-8 as q_write shows them
 * (continuation bytes take none). */
static size_t q_width(const char *s, size_t n)
{
    size_t w = 0;
    char e[5];
    for (size_t i = 0; i < n; i++) {
        size_t el = q_escape((unsigned char)s[i], e);
        w += el ? el : ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return w;
}

static void q_write(FILE *f, const char *s, size_t n)
{
    char e[5];
    for (size_t i = 0; i < n; i++) {
        if (q_escape((unsigned char)s[i], e)) fputs(e, f);
        else putc(s[i], f);
    }
}

static void q_pad(FILE *f, size_t n)
{
    while (n--) putc(' ', f);
}

/* ---- output ---- */

/* The group-by result as an aligned table: strings to the left, numbers to the
 * right, two spaces between columns. */
static int q_print_groups(const sp_table *g, size_t nfiles)
{
    size_t *w = calloc(g->ncols ? g->ncols : 1, sizeof *w);
    if (!w) {
        fprintf(stderr, "spillpool query: out of memory\n");
        return 1;
    }
    q_cell x;
    for (uint32_t c = 0; c < g->ncols; c++) {
        w[c] = q_width(g->cols[c].name, strlen(g->cols[c].name));
        for (uint64_t r = 0; r < g->nrows; r++) {
            q_cell_text(&g->cols[c], r, &x);
            size_t xw = q_width(x.s, x.len);
            if (xw > w[c]) w[c] = xw;
        }
    }
    for (uint64_t r = 0; r <= g->nrows; r++) { /* row 0: the header */
        for (uint32_t c = 0; c < g->ncols; c++) {
            const sp_column *col = &g->cols[c];
            if (r == 0) {
                x.s = col->name;
                x.len = strlen(col->name);
            } else {
                q_cell_text(col, r - 1, &x);
            }
            size_t pad = w[c] - q_width(x.s, x.len);
            if (c) fputs("  ", stdout);
            if (col->type != SP_COL_STRING) q_pad(stdout, pad);
            q_write(stdout, x.s, x.len);
            if (col->type == SP_COL_STRING && c + 1 < g->ncols) q_pad(stdout, pad);
        }
        putchar('\n');
    }
    printf("%llu group%s from %zu file%s\n", (unsigned long long)g->nrows, g->nrows == 1 ? "" : "s", nfiles,
           nfiles == 1 ? "" : "s");
    free(w);
    return 0;
}

static void q_json_groups(const sp_table *g, size_t nfiles, const sp_stats *s)
{
    printf("{\"files\":%zu,\"groups\":[", nfiles);
    for (uint64_t r = 0; r < g->nrows; r++) {
        if (r) putchar(',');
        putchar('{');
        for (uint32_t c = 0; c < g->ncols; c++) {
            if (c) putchar(',');
            sp_json_string(stdout, g->cols[c].name, strlen(g->cols[c].name));
            putchar(':');
            q_json_cell(stdout, &g->cols[c], r);
        }
        putchar('}');
    }
    fputs("],\"stats\":", stdout);
    sp_stats_fprint_json(s, stdout, NULL);
    fputs("}\n", stdout);
}

static int q_print_reduce(uint32_t n, const sp_agg *aggs, const sp_agg_value *v, int json, size_t nfiles,
                          const sp_stats *s)
{
    char *names[Q_MAX_AGGS], buf[48];
    sp_status st = sp__agg_names(NULL, n, aggs, n, names); /* without a key, only out of memory fails */
    if (st != SP_OK) return q_fail(st, "naming the results");
    if (json) printf("{\"files\":%zu,\"result\":{", nfiles);
    for (uint32_t a = 0; a < n; a++) {
        if (json) {
            if (a) putchar(',');
            sp_json_string(stdout, names[a], strlen(names[a]));
            putchar(':');
            if (v[a].is_int) printf("%lld", (long long)v[a].i);
            else q_json_double(stdout, v[a].d);
        } else if (v[a].is_int) {
            q_write(stdout, names[a], strlen(names[a]));
            printf(" = %lld\n", (long long)v[a].i);
        } else {
            q_write(stdout, names[a], strlen(names[a]));
            printf(" = %s\n", q_fmt_double(v[a].d, buf, sizeof buf));
        }
    }
    if (json) {
        fputs("},\"stats\":", stdout);
        sp_stats_fprint_json(s, stdout, NULL);
        fputs("}\n", stdout);
    }
    sp__agg_names_free(n, names);
    return 0;
}

/* ---- the command ---- */

/* --types "v:double,id:string": the inferred types (from the first file with rows)
 * with these columns' replaced, into types[ncols]. 0, or 2 (reported). */
static int q_parse_types(const char *spec, const sp_table *schema, sp_col_type *types)
{
    for (uint32_t c = 0; c < schema->ncols; c++) types[c] = schema->cols[c].type;
    char *copy = strdup(spec);
    uint8_t *given = calloc(schema->ncols ? schema->ncols : 1, 1);
    if (!copy || !given) {
        free(copy);
        free(given);
        return q_usage("--types: out of memory");
    }
    int rc = 0;
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item && rc == 0; item = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(item, ':');
        if (!colon || colon == item) {
            rc = q_usage("--types: '%s': expected COLUMN:TYPE (int64, double or string)", item);
            break;
        }
        *colon = '\0';
        const char *ty = colon + 1;
        int c = sp_table_column(schema, item);
        if (c < 0) rc = q_usage("--types: column '%s' does not exist", item);
        else if (given[c]++) rc = q_usage("--types: column '%s' given twice", item);
        else if (strcmp(ty, "int64") == 0) types[c] = SP_COL_INT64;
        else if (strcmp(ty, "double") == 0) types[c] = SP_COL_DOUBLE;
        else if (strcmp(ty, "string") == 0) types[c] = SP_COL_STRING;
        else rc = q_usage("--types: '%s' for column '%s': expected int64, double or string", ty, item);
    }
    free(copy);
    free(given);
    return rc;
}

/* --delim: one byte, or "\t" / "tab" for a tab (hard to type in a shell). A quote
 * or a line break cannot separate fields. */
static int q_parse_delim(const char *v, char *out)
{
    if (strcmp(v, "\\t") == 0 || strcmp(v, "tab") == 0) {
        *out = '\t';
        return 0;
    }
    if (v[0] == '\0' || v[1] != '\0' || v[0] == '"' || v[0] == '\n' || v[0] == '\r') return -1;
    *out = v[0];
    return 0;
}

typedef struct {
    const char *where, *key, *types;
    sp_agg aggs[Q_MAX_AGGS];
    uint32_t naggs;
    char delim;
    int json;
} q_opts;

/* Options into o, the other arguments into args[*nargs]. 0, 2 (reported), or -1
 * for --help (printed). */
static int q_parse(int argc, char **argv, q_opts *o, char **args, int *nargs)
{
    int files_only = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (files_only || a[0] != '-' || a[1] == '\0') {
            args[(*nargs)++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            files_only = 1; /* then a file may start with '-' */
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(q_usage_text, stdout);
            return -1;
        }
        int known = strcmp(a, "--where") == 0 || strcmp(a, "--group-by") == 0 || strcmp(a, "--agg") == 0 ||
                    strcmp(a, "--delim") == 0 || strcmp(a, "--types") == 0;
        if (!known) return q_usage("unknown option '%s'", a);
        if (!val) return q_usage("%s needs a value", a);
        i++;
        if (strcmp(a, "--where") == 0) {
            if (o->where) return q_usage("--where given twice (join the conditions with and)");
            o->where = val;
        } else if (strcmp(a, "--group-by") == 0) {
            if (o->key) return q_usage("--group-by given twice (one key column)");
            if (!val[0]) return q_usage("--group-by needs a column name");
            o->key = val;
        } else if (strcmp(a, "--types") == 0) {
            if (o->types) return q_usage("--types given twice (list the columns in one, comma-separated)");
            o->types = val;
        } else if (strcmp(a, "--delim") == 0) {
            if (o->delim) return q_usage("--delim given twice");
            if (q_parse_delim(val, &o->delim) != 0)
                return q_usage("--delim '%s': expected one character, or tab", val);
        } else {
            if (o->naggs == Q_MAX_AGGS) return q_usage("more than %d aggregates", Q_MAX_AGGS);
            if (sp_agg_parse(val, &o->aggs[o->naggs]) != SP_OK) return q_usage("--agg: %s", sp_last_error());
            o->naggs++;
        }
    }
    if (*nargs == 0) return q_usage("no files given");
    return 0;
}

int sp_cmd_query(int argc, char **argv)
{
    q_opts o;
    memset(&o, 0, sizeof o);
    char **args = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *args);
    if (!args) {
        fprintf(stderr, "spillpool query: out of memory\n");
        return 1;
    }
    int nargs = 0;
    int rc = q_parse(argc, argv, &o, args, &nargs);
    if (rc != 0) {
        free(args);
        return rc < 0 ? 0 : rc;
    }
    if (o.naggs == 0) o.aggs[o.naggs++] = (sp_agg){SP_AGG_COUNT, NULL};

    /* A directory gives its *.csv files; anything else is a file, left for the
     * library to open when a task needs it (and to report if it cannot). */
    q_paths paths = {0};
    for (int i = 0; i < nargs && rc == 0; i++) {
        struct stat sb;
        if (stat(args[i], &sb) == 0 && S_ISDIR(sb.st_mode)) rc = q_expand_dir(args[i], &paths);
        else if (q_push(&paths, strdup(args[i])) != 0) {
            fprintf(stderr, "spillpool query: out of memory\n");
            rc = 1;
        }
    }
    free(args);
    if (rc != 0) {
        q_paths_free(&paths);
        return rc;
    }

    sp_pool *pool = NULL;
    sp_dag *dag = NULL;
    sp_dtable *base = NULL, *filtered = NULL;
    sp_table *groups = NULL;
    sp_agg_value vals[Q_MAX_AGGS];
    sp_stats stats;
    sp_csv_options copt;
    memset(&copt, 0, sizeof copt);
    copt.delim = o.delim;
    sp_status st;
    if ((st = sp_pool_open(&pool, NULL)) != SP_OK) rc = q_fail(st, "opening the pool");
    if (rc == 0 && (st = sp_dag_open(&dag, pool, NULL)) != SP_OK) rc = q_fail(st, "starting the workers");
    if (rc == 0 && (st = sp_dtable_from_csv(dag, paths.n, (const char *const *)paths.v, &copt, &base)) != SP_OK)
        rc = q_fail(st, "reading the CSV files");
    sp_col_type *types = NULL;
    if (rc == 0 && o.types) { /* the inferred types, some replaced: the files are registered again with them */
        const sp_table *schema = sp_dtable_schema(base);
        types = malloc((schema->ncols ? schema->ncols : 1) * sizeof *types);
        if (!types) rc = q_fail(SP_ERR_NOMEM, "--types");
        else rc = q_parse_types(o.types, schema, types);
        if (rc == 0) {
            copt.schema = types;
            copt.schema_cols = schema->ncols;
            sp_dtable_free(base);
            base = NULL;
            if ((st = sp_dtable_from_csv(dag, paths.n, (const char *const *)paths.v, &copt, &base)) != SP_OK)
                rc = q_fail(st, "reading the CSV files");
        }
    }
    if (rc == 0 && o.where && (st = sp_dtable_where(base, o.where, &filtered)) != SP_OK) rc = q_fail(st, "--where");
    sp_dtable *t = filtered ? filtered : base;
    if (rc == 0 && o.key && (st = sp_dtable_group_by(t, o.key, o.naggs, o.aggs, &groups)) != SP_OK)
        rc = q_fail(st, "running the query");
    if (rc == 0 && !o.key && (st = sp_dtable_reduce(t, o.naggs, o.aggs, vals)) != SP_OK)
        rc = q_fail(st, "running the query");
    if (rc == 0 && o.json && (st = sp_pool_stats(pool, &stats)) != SP_OK) rc = q_fail(st, "pool statistics");

    if (rc == 0) {
        if (o.key && o.json) q_json_groups(groups, paths.n, &stats);
        else if (o.key) rc = q_print_groups(groups, paths.n);
        else rc = q_print_reduce(o.naggs, o.aggs, vals, o.json, paths.n, &stats);
    } /* output that could not be written is reported by main, as for every command */

    sp_table_free(groups);
    sp_dtable_free(filtered);
    sp_dtable_free(base);
    if (dag && (st = sp_dag_close(dag)) != SP_OK && rc == 0) rc = q_fail(st, "stopping the workers");
    if (pool && (st = sp_pool_close(pool)) != SP_OK && rc == 0) rc = q_fail(st, "closing the pool");
    free(types);
    q_paths_free(&paths);
    return rc;
}
