/* `spillpool bench csv`: CSV parsing against the floor of reading the same file.
 * Writes a CSV file of hourly readings, reads it once so it sits in the page cache,
 * then times, median of K runs each: `wc -l` on it (the floor), libcsv
 * tokenizing it with empty callbacks (what building on libcsv would start from), and
 * the project's parser producing typed, dictionary-coded columns. It also times the
 * first touch of as much new memory as the columns take, on every core: any parser
 * that writes these columns into fresh memory pays it, so read + touch is the floor
 * the parse is measured against besides `wc -l`. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef SP_HAVE_LIBCSV
#include <csv.h>
#endif

#include "../common/clock.h"
#include "../filter/par.h"
#include "bench_csv.h"
#include "workload.h"

static double secs(void) { return (double)sp__now_ns() / 1e9; }

typedef struct touch {
    char *p;
    size_t len;
    unsigned parts;
} touch;

/* Part i of the block written once, as a parser's threads write their columns. Not
 * zero: malloc then memset with 0 may be turned into calloc, which touches nothing. */
static void touch_job(void *arg, unsigned i)
{
    const touch *t = arg;
    size_t a = t->len * i / t->parts, b = t->len * (i + 1) / t->parts;
    memset(t->p + a, 0x5a, b - a);
}

#ifdef SP_HAVE_LIBCSV
static void cb_field(void *s, size_t n, void *d)
{
    (void)s;
    (*(size_t *)d) += n;
}
static void cb_row(int c, void *d)
{
    (void)c;
    (*(size_t *)d)++;
}
#endif

int sp_bench_csv(const sp_bench_csv_opts *o)
{
    unsigned runs = o->runs ? o->runs : 5;
    uint64_t want = (uint64_t)(o->mb ? o->mb : 256) << 20;
    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/spillpool-csv-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "spillpool bench csv: %s: %s\n", path, strerror(errno));
        return 1;
    }
    FILE *f = fdopen(fd, "w");
    fprintf(f, "hour,station,temperature,wind,flag\n");
    static const char *stations[] = {"north", "south", "east", "west", "\"harbour, pier 3\""};
    uint64_t x = 88172645463325252ull, rows = 0;
    while ((uint64_t)ftell(f) < want) {
        for (int k = 0; k < 4096; k++, rows++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            fprintf(f, "%llu,%s,%.2f,%u,%u\n", (unsigned long long)(rows / 60), stations[x % 5],
                    -20.0 + (double)(x >> 40 & 0xffff) / 1000.0, (unsigned)(x >> 20 & 63), (unsigned)(x >> 8 & 1));
        }
    }
    fclose(f);
    struct stat st;
    stat(path, &st);
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len);
    double *t_wc = calloc(runs, sizeof *t_wc), *t_lib = calloc(runs, sizeof *t_lib),
           *t_read = calloc(runs, sizeof *t_read), *t_ours = calloc(runs, sizeof *t_ours),
           *t_touch = calloc(runs, sizeof *t_touch);
    size_t col_bytes = 0;
    int rc = 1;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "wc -l '%s' > /dev/null", path);
    if (!buf || !t_wc || !t_lib || !t_read || !t_ours || !t_touch) goto out;
    for (unsigned r = 0; r < runs; r++) {
        double a = secs();
        if (system(cmd) != 0) {
            fprintf(stderr, "spillpool bench csv: wc -l failed\n");
            goto out;
        }
        t_wc[r] = secs() - a;
        /* our parser as the pool runs it: read the file, then parse */
        a = secs();
        int in = open(path, O_RDONLY);
        size_t got = 0;
        while (in >= 0 && got < len) {
            ssize_t n = read(in, buf + got, len - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (in >= 0) close(in);
        double b = secs();
        sp_table *t = NULL;
        sp_status s = sp_csv_parse(buf, got, NULL, path, &t);
        double c = secs();
        if (s != SP_OK) {
            fprintf(stderr, "spillpool bench csv: %s: %s\n", sp_strerror(s), sp_last_error());
            goto out;
        }
        if (r == 0 && (t->nrows != rows || t->cols[1].ndict != 5)) {
            fprintf(stderr, "spillpool bench csv: parsed %llu rows, wrote %llu\n", (unsigned long long)t->nrows,
                    (unsigned long long)rows);
            sp_table_free(t);
            goto out;
        }
        if (r == 0)
            for (uint32_t k = 0; k < t->ncols; k++)
                col_bytes += (size_t)t->nrows * (t->cols[k].type == SP_COL_STRING ? 4 : 8);
        sp_table_free(t);
        t_read[r] = b - a;
        t_ours[r] = c - a;
        a = secs();
        touch tw = {.p = malloc(col_bytes), .len = col_bytes, .parts = sp__par_width()};
        if (!tw.p) goto out;
        sp__par_run(tw.parts, touch_job, &tw);
        t_touch[r] = secs() - a;
        free(tw.p);
#ifdef SP_HAVE_LIBCSV
        struct csv_parser p;
        size_t seen = 0;
        csv_init(&p, CSV_APPEND_NULL);
        a = secs();
        csv_parse(&p, buf, got, cb_field, cb_row, &seen);
        csv_fini(&p, cb_field, cb_row, &seen);
        t_lib[r] = secs() - a + t_read[r];
        csv_free(&p);
#endif
    }
    double wc = sp_median(t_wc, runs), ours = sp_median(t_ours, runs), rd = sp_median(t_read, runs),
           tch = sp_median(t_touch, runs);
    double mb = (double)len / 1e6;
#ifdef SP_HAVE_LIBCSV
    double lib = sp_median(t_lib, runs);
#else
    double lib = 0;
#endif
    if (o->json)
        printf("{\"bytes\":%zu,\"rows\":%llu,\"wc_l_seconds\":%.4f,\"read_seconds\":%.4f,\"parse_seconds\":%.4f,"
               "\"parse_mb_s\":%.1f,\"parse_vs_wc_l\":%.3f,\"libcsv_tokenize_seconds\":%.4f,"
               "\"column_bytes\":%zu,\"touch_seconds\":%.4f,\"read_touch_vs_wc_l\":%.3f}\n",
               len, (unsigned long long)rows, wc, rd, ours, mb / ours, ours / wc, lib, col_bytes, tch,
               (rd + tch) / wc);
    else {
        printf("bench csv: %.1f MB, %llu rows of 5 columns (int, string, double, int, int), median of %u runs\n",
               mb, (unsigned long long)rows, runs);
        printf("  wc -l                      %8.3f s  %7.0f MB/s  (the floor)\n", wc, mb / wc);
        printf("  read into memory           %8.3f s  %7.0f MB/s\n", rd, mb / rd);
        if (lib > 0)
            printf("  read + libcsv tokenizing   %8.3f s  %7.0f MB/s  %5.2fx wc -l (no types, no columns)\n", lib,
                   mb / lib, lib / wc);
        char label[64];
        snprintf(label, sizeof label, "first touch of %.0f MB", (double)col_bytes / 1e6);
        printf("  %-26s %8.3f s                (new memory as big as the columns)\n", label, tch);
        printf("  read + that touch          %8.3f s                %5.2fx wc -l (a floor for any parser)\n",
               rd + tch, (rd + tch) / wc);
        printf("  read + parse to columns    %8.3f s  %7.0f MB/s  %5.2fx wc -l (target 3x)\n", ours, mb / ours,
               ours / wc);
    }
    rc = 0;
out:
    unlink(path);
    free(buf);
    free(t_wc);
    free(t_lib);
    free(t_read);
    free(t_ours);
    free(t_touch);
    return rc;
}
