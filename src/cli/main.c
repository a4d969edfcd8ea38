/* The spillpool command. The library never prints; this file does the talking. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spillpool/spillpool.h"
#include "bench_filters.h"
#include "bench_csv.h"
#include "bench_lazy.h"
#include "inspect.h"
#include "workload.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: spillpool <command> [options]\n"
            "\n"
            "commands:\n"
            "  demo [--parts N] [--rows R] [--seed S] [--json]\n"
            "        the article's example: N partitions (default 200) of R rows (default\n"
            "        1048576) of two dictionary-coded columns, put into the pool, then each\n"
            "        pinned and checksummed; prints the checksum, the pool and its disk use\n"
            "  bench filters [--parts N] [--rows R] [--bound SIZE] [--runs K]\n"
            "                [--chains 'c1;c2;...'] [--json]\n"
            "        the demo under a memory bound that sends most partitions to disk (default\n"
            "        an eighth of the data), once per filter chain (default: plain, zstd, lz4,\n"
            "        gzip, encrypt, zstd+encrypt, lz4+encrypt): disk bytes, spill and restore\n"
            "        MB/s and seconds, each against plain\n"
            "  bench lazy [--files N] [--runs K] [--json]\n"
            "        writes N hourly CSV files (default 87600), registers them all with the\n"
            "        pool (median ns per file over K runs), then pins one day (24 files) and\n"
            "        reports how many files were opened\n"
            "  bench csv [--mb N] [--runs K] [--json]\n"
            "        parses an N MB CSV file (default 256) into typed columns and compares\n"
            "        the time with wc -l on the same file, and with libcsv's tokenizer\n"
            "  inspect FILE [--payload]\n"
            "        a spill file's header, chain and frames; --payload writes the frames'\n"
            "        stored bytes to stdout (a gzip-only file then pipes into gzip -d)\n"
            "  config [--json]   the configuration the SPILLPOOL_* variables give\n"
            "  version\n"
            "\n"
            "configuration (environment): SPILLPOOL_MEMORY_BOUND, SPILLPOOL_DISK_BOUND,\n"
            "SPILLPOOL_DIR, SPILLPOOL_POLICY (mru|lru), SPILLPOOL_SPILL_AHEAD,\n"
            "SPILLPOOL_FILTERS (e.g. zstd:3,encrypt), SPILLPOOL_KEY_FILE\n");
}

static int fail(sp_status st, const char *what)
{
    const char *d = sp_last_error();
    fprintf(stderr, "spillpool: %s: %s%s%s\n", what, sp_strerror(st), d[0] ? ": " : "", d);
    return 1;
}

static int parse_u64(const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!v || v[0] == '-' || v[0] == '\0') {
        fprintf(stderr, "spillpool: %s needs a number\n", opt);
        return -1;
    }
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n < min || n > max) {
        fprintf(stderr, "spillpool: %s '%s': expected a whole number from %llu to %llu\n", opt, v,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = n;
    return 0;
}

/* The workload options shared by demo and bench: 1 taken (i advanced), 0 not
 * one of them, -1 bad value (already reported). */
static int parse_demo_opt(int argc, char **argv, int *i, sp_demo_opts *o)
{
    uint64_t v;
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(argv[*i], "--parts") == 0) {
        if (parse_u64("--parts", val, 1, 1u << 24, &v)) return -1;
        o->parts = (uint32_t)v;
    } else if (strcmp(argv[*i], "--rows") == 0) {
        if (parse_u64("--rows", val, 1, 1ull << 32, &v)) return -1;
        o->rows = v;
    } else if (strcmp(argv[*i], "--seed") == 0) {
        if (parse_u64("--seed", val, 0, UINT64_MAX, &v)) return -1;
        o->seed = v;
    } else return 0;
    (*i)++;
    return 1;
}

static int cmd_demo(int argc, char **argv)
{
    sp_demo_opts o;
    sp_demo_defaults(&o);
    int json = 0;
    for (int i = 0; i < argc; i++) {
        int got = parse_demo_opt(argc, argv, &i, &o);
        if (got < 0) return 2;
        if (got) continue;
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "spillpool demo: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    sp_pool *pool;
    sp_status st = sp_pool_open(&pool, NULL);
    if (st != SP_OK) return fail(st, "opening the pool");
    sp_demo_result r;
    st = sp_demo_run(pool, &o, &r);
    if (st != SP_OK) {
        fail(st, "demo");
        sp_pool_close(pool);
        return 1;
    }
    if (json) {
        char extra[512];
        snprintf(extra, sizeof extra,
                 "\"checksum\":\"%016llx\",\"seconds\":%.6f,\"put_seconds\":%.6f,\"read_seconds\":%.6f,"
                 "\"parts\":%u,\"rows\":%llu,\"seed\":%llu,\"session_dir_bytes\":%llu,"
                 "\"session_dir_files\":%llu,\"counts_a\":{\"alpha\":%llu,\"beta\":%llu,\"delta\":%llu,"
                 "\"eta\":%llu}",
                 (unsigned long long)r.checksum, r.seconds, r.put_seconds, r.read_seconds, o.parts,
                 (unsigned long long)o.rows, (unsigned long long)o.seed, (unsigned long long)r.session_bytes,
                 (unsigned long long)r.session_files, (unsigned long long)r.counts_a[0],
                 (unsigned long long)r.counts_a[1], (unsigned long long)r.counts_a[2],
                 (unsigned long long)r.counts_a[3]);
        sp_stats_fprint_json(&r.stats, stdout, extra);
        putchar('\n');
    } else {
        char b1[32], b2[32];
        printf("%u partitions x %llu rows (%s), seed %llu: checksum %016llx in %.3f s "
               "(put %.3f s, read %.3f s)\n",
               o.parts, (unsigned long long)o.rows,
               sp_format_size((uint64_t)o.parts * o.rows * 8, b1, sizeof b1), (unsigned long long)o.seed,
               (unsigned long long)r.checksum, r.seconds, r.put_seconds, r.read_seconds);
        printf("rows per a: alpha %llu, beta %llu, delta %llu, eta %llu\n", (unsigned long long)r.counts_a[0],
               (unsigned long long)r.counts_a[1], (unsigned long long)r.counts_a[2],
               (unsigned long long)r.counts_a[3]);
        sp_stats_fprint(&r.stats, stdout);
        printf("du -sh %s: %s in %llu files\n", sp_pool_session_dir(pool),
               sp_format_size(r.session_bytes, b2, sizeof b2), (unsigned long long)r.session_files);
    }
    st = sp_pool_close(pool);
    if (st != SP_OK) return fail(st, "closing the pool");
    return 0;
}

static int cmd_config(int argc, char **argv)
{
    int json = argc > 0 && strcmp(argv[0], "--json") == 0;
    if (argc > (json ? 1 : 0)) {
        fprintf(stderr, "spillpool config: unknown option '%s'\n", argv[json ? 1 : 0]);
        return 2;
    }
    sp_config c;
    sp_status st = sp_config_from_env(&c);
    if (st != SP_OK) return fail(st, "configuration");
    const char *home = getenv("HOME");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", c.dir ? c.dir : "");
    if (!c.dir) snprintf(dir, sizeof dir, "%s/.spillpool", home ? home : "~");
    const char *filters = c.filters ? c.filters : "";
    const char *key_file = c.key_file ? c.key_file : "";
    if (json) {
        printf("{\"memory_bound\":%llu,\"disk_bound\":%llu,\"dir\":\"%s\",\"policy\":\"%s\",\"spill_ahead\":%llu,"
               "\"filters\":\"%s\",\"key_file\":\"%s\"}\n",
               (unsigned long long)c.memory_bound, (unsigned long long)c.disk_bound, dir,
               sp_policy_name(c.policy), (unsigned long long)c.spill_ahead, filters, key_file);
    } else {
        char a[32], b[32], d[32];
        printf("memory bound: %s\ndisk bound:   %s\ndir:          %s\npolicy:       %s\nspill ahead:  %s\n"
               "filters:      %s\nkey file:     %s\n",
               sp_format_size(c.memory_bound, a, sizeof a), sp_format_size(c.disk_bound, b, sizeof b), dir,
               sp_policy_name(c.policy), sp_format_size(c.spill_ahead, d, sizeof d),
               filters[0] ? filters : "(none)", key_file[0] ? key_file : "(none)");
    }
    return 0;
}

/* "NAME N": 1 taken (i advanced), 0 another option, -1 a bad value (reported). */
static int parse_uint_opt(int argc, char **argv, int *i, const char *name, uint64_t min, uint64_t max,
                          unsigned *out)
{
    if (strcmp(argv[*i], name) != 0) return 0;
    uint64_t v;
    if (parse_u64(name, *i + 1 < argc ? argv[*i + 1] : NULL, min, max, &v)) return -1;
    *out = (unsigned)v;
    (*i)++;
    return 1;
}

/* --json and --runs K, which every benchmark takes; returns as parse_uint_opt. */
static int parse_bench_opt(int argc, char **argv, int *i, unsigned runs_max, unsigned *runs, int *json)
{
    if (strcmp(argv[*i], "--json") == 0) {
        *json = 1;
        return 1;
    }
    return parse_uint_opt(argc, argv, i, "--runs", 1, runs_max, runs);
}

static int unknown_bench_opt(const char *bench, const char *opt)
{
    fprintf(stderr, "spillpool bench %s: unknown option '%s'\n", bench, opt);
    return 2;
}

static int cmd_bench_lazy(int argc, char **argv)
{
    sp_bench_lazy_opts o = {.files = 87600, .runs = 5};
    for (int i = 1; i < argc; i++) {
        int got = parse_bench_opt(argc, argv, &i, 101, &o.runs, &o.json);
        if (!got) got = parse_uint_opt(argc, argv, &i, "--files", 1, 10000000, &o.files);
        if (got < 0) return 2;
        if (!got) return unknown_bench_opt("lazy", argv[i]);
    }
    return sp_bench_lazy(&o);
}

static int cmd_bench_csv(int argc, char **argv)
{
    sp_bench_csv_opts o = {.mb = 256, .runs = 5};
    for (int i = 1; i < argc; i++) {
        int got = parse_bench_opt(argc, argv, &i, 101, &o.runs, &o.json);
        if (!got) got = parse_uint_opt(argc, argv, &i, "--mb", 1, 65536, &o.mb);
        if (got < 0) return 2;
        if (!got) return unknown_bench_opt("csv", argv[i]);
    }
    return sp_bench_csv(&o);
}

static int cmd_bench(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "lazy") == 0) return cmd_bench_lazy(argc, argv);
    if (argc >= 1 && strcmp(argv[0], "csv") == 0) return cmd_bench_csv(argc, argv);
    if (argc < 1 || strcmp(argv[0], "filters") != 0) {
        fprintf(stderr, "spillpool bench: which benchmark? (filters, lazy, csv)\n");
        return 2;
    }
    sp_bench_filters_opts o;
    memset(&o, 0, sizeof o);
    sp_demo_defaults(&o.demo);
    o.runs = 1;
    const char *chains[32];
    char *list = NULL;
    for (int i = 1; i < argc; i++) {
        int got = parse_demo_opt(argc, argv, &i, &o.demo);
        if (!got) got = parse_bench_opt(argc, argv, &i, 16, &o.runs, &o.json);
        if (got < 0) {
            free(list);
            return 2;
        }
        if (got) continue;
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--bound") == 0) {
            if (!val || sp_parse_size(val, &o.memory_bound) != SP_OK || o.memory_bound == 0) {
                fprintf(stderr, "spillpool bench filters: --bound '%s': expected a size such as 256MiB\n",
                        val ? val : "");
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--chains") == 0 && val) {
            free(list);
            list = strdup(val);
            o.nchains = 0;
            /* ';' separates chains, since ',' separates the filters of one */
            for (char *save = NULL, *t = strtok_r(list, ";", &save); t && o.nchains < 32;
                 t = strtok_r(NULL, ";", &save)) {
                if (strcmp(t, "plain") == 0) t[0] = '\0';
                sp_status st = sp_filters_check(t);
                if (st != SP_OK) {
                    free(list);
                    return fail(st, "--chains");
                }
                chains[o.nchains++] = t;
            }
            o.chains = chains;
            i++;
        } else {
            free(list);
            return unknown_bench_opt("filters", argv[i]);
        }
    }
    int rc = sp_bench_filters(&o);
    free(list);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "demo") == 0) return cmd_demo(argc - 2, argv + 2);
    if (strcmp(argv[1], "config") == 0) return cmd_config(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0) return cmd_bench(argc - 2, argv + 2);
    if (strcmp(argv[1], "inspect") == 0) {
        int payload = argc == 4 && strcmp(argv[3], "--payload") == 0;
        if (argc != 3 && !payload) {
            fprintf(stderr, "usage: spillpool inspect FILE [--payload]\n");
            return 2;
        }
        return sp_inspect(argv[2], payload);
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("spillpool %s\n", SPILLPOOL_VERSION);
        return 0;
    }
    fprintf(stderr, "spillpool: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
