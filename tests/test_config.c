/* Configuration: sizes, policies, the SPILLPOOL_* variables, bad values. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static void size_parses_plain_bytes_and_units(void **s)
{
    (void)s;
    uint64_t v;
    t_ok(sp_parse_size("1073741824", &v));
    assert_int_equal(v, 1073741824ull);
    t_ok(sp_parse_size("9000000T", &v)); /* past 2^63: exact, not stuck at 2^63 */
    assert_true(v == 9000000ull << 40);
    t_ok(sp_parse_size("15000000TB", &v));
    assert_true(v == 15000000000000000000ull);
    t_status(sp_parse_size("17000000T", &v), SP_ERR_INVALID);
    t_ok(sp_parse_size("1GiB", &v));
    assert_int_equal(v, 1073741824ull);
    t_ok(sp_parse_size("512M", &v));
    assert_int_equal(v, 512ull << 20);
    t_ok(sp_parse_size("512m", &v));
    assert_int_equal(v, 512ull << 20);
    t_ok(sp_parse_size("64KB", &v));
    assert_int_equal(v, 64000);
    t_ok(sp_parse_size("2 KiB", &v));
    assert_int_equal(v, 2048);
    t_ok(sp_parse_size("1.5G", &v));
    assert_int_equal(v, 3ull << 29);
    t_ok(sp_parse_size(" 32GiB ", &v));
    assert_int_equal(v, 32ull << 30);
    t_ok(sp_parse_size("1T", &v));
    assert_int_equal(v, 1ull << 40);
    t_ok(sp_parse_size("7B", &v));
    assert_int_equal(v, 7);
    t_ok(sp_parse_size("0", &v));
    assert_int_equal(v, 0);
}

static void size_rejects_junk_with_a_message(void **s)
{
    (void)s;
    uint64_t v = 99;
    const char *bad[] = {"", "  ", "abc", "-1", "1X", "1.5", "1.G", "1GiBs", "12 34",
                         "99999999999999999999", "20000000T", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t_status(sp_parse_size(bad[i], &v), SP_ERR_INVALID);
        assert_non_null(strstr(sp_last_error(), "size '"));
        assert_int_equal(v, 99);
    }
}

static void policy_names_parse(void **s)
{
    (void)s;
    sp_policy p;
    t_ok(sp_parse_policy("lru", &p));
    assert_int_equal(p, SP_POLICY_LRU);
    t_ok(sp_parse_policy("MRU", &p));
    assert_int_equal(p, SP_POLICY_MRU);
    t_status(sp_parse_policy("fifo", &p), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "fifo"));
    assert_string_equal(sp_policy_name(SP_POLICY_LRU), "lru");
}

static void clear_env(void)
{
    unsetenv("SPILLPOOL_MEMORY_BOUND");
    unsetenv("SPILLPOOL_DISK_BOUND");
    unsetenv("SPILLPOOL_DIR");
    unsetenv("SPILLPOOL_POLICY");
    unsetenv("SPILLPOOL_SPILL_AHEAD");
    unsetenv("SPILLPOOL_PAGE_CACHE");
}

static void defaults_are_the_articles_within_the_machine(void **s)
{
    (void)s;
    clear_env();
    sp_config c;
    t_ok(sp_config_from_env(&c));
    uint64_t phys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    assert_true(c.memory_bound <= 8ull << 30);
    assert_true(c.memory_bound <= phys);
    assert_true(c.memory_bound > 0);
    assert_int_equal(c.disk_bound, 32ull << 30);
    assert_int_equal(c.policy, SP_POLICY_MRU);
    assert_null(c.dir);
    assert_true(c.spill_ahead < c.memory_bound);
    assert_int_equal(c.page_cache, SP_CACHE_KEEP);
}

static void env_overrides_every_setting(void **s)
{
    (void)s;
    clear_env();
    setenv("SPILLPOOL_MEMORY_BOUND", "1GiB", 1);
    setenv("SPILLPOOL_DISK_BOUND", "4294967296", 1);
    setenv("SPILLPOOL_DIR", "/some/where", 1);
    setenv("SPILLPOOL_POLICY", "lru", 1);
    setenv("SPILLPOOL_SPILL_AHEAD", "0", 1);
    setenv("SPILLPOOL_PAGE_CACHE", "Drop", 1);
    sp_config c;
    t_ok(sp_config_from_env(&c));
    assert_int_equal(c.memory_bound, 1ull << 30);
    assert_int_equal(c.disk_bound, 4ull << 30);
    assert_string_equal(c.dir, "/some/where");
    assert_int_equal(c.policy, SP_POLICY_LRU);
    assert_int_equal(c.spill_ahead, 0);
    assert_int_equal(c.page_cache, SP_CACHE_DROP);
    assert_string_equal(sp_page_cache_name(c.page_cache), "drop");
    clear_env();
}

static void bad_env_values_name_the_variable(void **s)
{
    (void)s;
    struct {
        const char *var, *val;
    } cases[] = {
        {"SPILLPOOL_MEMORY_BOUND", "lots"}, {"SPILLPOOL_MEMORY_BOUND", "0"}, {"SPILLPOOL_DISK_BOUND", "-5G"},
        {"SPILLPOOL_DISK_BOUND", "0GiB"},   {"SPILLPOOL_POLICY", "random"},  {"SPILLPOOL_DIR", ""},
        {"SPILLPOOL_SPILL_AHEAD", "1Q"},   {"SPILLPOOL_PAGE_CACHE", "flush"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clear_env();
        setenv(cases[i].var, cases[i].val, 1);
        sp_config c;
        t_status(sp_config_from_env(&c), SP_ERR_INVALID);
        if (!strstr(sp_last_error(), cases[i].var)) fail_msg("message '%s' lacks %s", sp_last_error(), cases[i].var);
        sp_pool *p = (sp_pool *)&c;
        t_status(sp_pool_open(&p, NULL), SP_ERR_INVALID);
        assert_null(p);
    }
    clear_env();
}

static void open_rejects_zero_bounds_and_oversized_spill_ahead(void **s)
{
    (void)s;
    char *dir = t_tmpdir();
    sp_config c;
    sp_config_default(&c);
    c.dir = dir;
    sp_pool *p;
    c.memory_bound = 0;
    t_status(sp_pool_open(&p, &c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "memory bound"));
    c.memory_bound = 100;
    c.disk_bound = 0;
    t_status(sp_pool_open(&p, &c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "disk bound"));
    c.disk_bound = 100;
    c.spill_ahead = 100;
    t_status(sp_pool_open(&p, &c), SP_ERR_INVALID);
    c.spill_ahead = 0;
    c.policy = (sp_policy)7;
    t_status(sp_pool_open(&p, &c), SP_ERR_INVALID);
    c.policy = SP_POLICY_MRU;
    c.page_cache = (sp_page_cache)3;
    t_status(sp_pool_open(&p, &c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "page cache"));
    c.page_cache = SP_CACHE_KEEP;
    t_rmrf(dir);
    free(dir);
}

/* sp_config_check refuses what open would, without touching the spill directory. */
static void config_check_refuses_what_open_would(void **s)
{
    (void)s;
    char *dir = t_tmpdir();
    char spill[4200], key[4200];
    snprintf(spill, sizeof spill, "%s/never-made", dir);
    snprintf(key, sizeof key, "%s/key", dir);
    sp_config c;
    sp_config_default(&c);
    c.dir = spill;
    t_ok(sp_config_check(&c));
    c.spill_ahead = c.memory_bound;
    t_status(sp_config_check(&c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "spill-ahead"));
    c.spill_ahead = 0;
    c.filters = "zstd,nope";
    t_status(sp_config_check(&c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "nope"));
    c.filters = "lz4,encrypt";
    t_status(sp_config_check(&c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "no key"));
    c.key_file = key;
    t_status(sp_config_check(&c), SP_ERR_NOT_FOUND);
    unsigned char raw[32] = {1, 2, 3};
    t_spew(key, raw, sizeof raw);
    chmod(key, 0644); /* others may read it */
    t_status(sp_config_check(&c), SP_ERR_PERMISSION); /* mode bits, checked for root too */
    chmod(key, 0600);
    t_ok(sp_config_check(&c));
    c.key_file = NULL;
    c.key = raw;
    t_ok(sp_config_check(&c));
    struct stat st;
    assert_int_equal(stat(spill, &st), -1); /* nothing made */
    t_status(sp_config_check(NULL), SP_ERR_INVALID);
    t_rmrf(dir);
    free(dir);
}

static void spill_dir_that_cannot_be_created_is_an_error_naming_it(void **s)
{
    (void)s;
    char *dir = t_tmpdir();
    char file[4200], sub[4300];
    snprintf(file, sizeof file, "%s/plainfile", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    sp_config c;
    sp_config_default(&c);
    c.spill_ahead = 0;
    sp_pool *p;
    /* A regular file where the directory should be. */
    c.dir = file;
    sp_status st = sp_pool_open(&p, &c);
    assert_true(st == SP_ERR_INVALID || st == SP_ERR_IO);
    assert_non_null(strstr(sp_last_error(), "plainfile"));
    /* A path through a regular file. */
    snprintf(sub, sizeof sub, "%s/below", file);
    c.dir = sub;
    st = sp_pool_open(&p, &c);
    assert_int_not_equal(st, SP_OK);
    assert_non_null(strstr(sp_last_error(), "plainfile"));
    /* A directory without write permission (root ignores modes, so only as others). */
    if (geteuid() != 0) {
        snprintf(sub, sizeof sub, "%s/ro", dir);
        assert_int_equal(mkdir(sub, 0500), 0);
        c.dir = sub;
        t_status(sp_pool_open(&p, &c), SP_ERR_PERMISSION);
        assert_non_null(strstr(sp_last_error(), "ro"));
    }
    t_rmrf(dir);
    free(dir);
}

static void default_dir_is_under_home(void **s)
{
    (void)s;
    clear_env();
    char *home = t_tmpdir();
    char *old = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    sp_pool *p;
    t_ok(sp_pool_open(&p, NULL));
    const char *sess = sp_pool_session_dir(p);
    char want[4200];
    snprintf(want, sizeof want, "%s/.spillpool/session-", home);
    assert_memory_equal(sess, want, strlen(want));
    t_ok(sp_pool_close(p));
    if (old) setenv("HOME", old, 1);
    free(old);
    t_rmrf(home);
    free(home);
}

/* Internal (src/pool/config.c): the cgroup memory limit, from a hierarchy at sysfs. */
uint64_t sp__cgroup_memory_limit(const char *sysfs, const char *proc_cgroup);

static void put_text(const char *dir, const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *q = path + strlen(dir) + 1; (q = strchr(q, '/')) != NULL; q++) { /* mkdir -p */
        *q = '\0';
        mkdir(path, 0700);
        *q = '/';
    }
    t_spew(path, (const unsigned char *)text, strlen(text));
}

/* The default memory bound heeds a cgroup's limit wherever it is set: on the
 * process's own cgroup or one above it, in v2 (memory.max) or v1
 * (memory.limit_in_bytes); "max" and v1's near-2^63 are no limit. */
static void cgroup_limits_are_found_up_the_tree(void **s)
{
    (void)s;
    char *d = t_tmpdir(), sys[600], proc[600];
    snprintf(sys, sizeof sys, "%s/sys", d);
    snprintf(proc, sizeof proc, "%s/cgroup", d);
    assert_true(sp__cgroup_memory_limit(sys, proc) == UINT64_MAX); /* no file at all */
    put_text(d, "cgroup", "0::/a/b\n");
    put_text(d, "sys/a/memory.max", "3000000000\n");
    put_text(d, "sys/a/b/memory.max", "max\n");
    assert_int_equal(sp__cgroup_memory_limit(sys, proc), 3000000000ull); /* from the parent */
    put_text(d, "sys/unified/a/b/memory.max", "2500000000\n"); /* a hybrid host's v2 mount */
    assert_int_equal(sp__cgroup_memory_limit(sys, proc), 2500000000ull);
    put_text(d, "cgroup", "7:cpu,memory:/x/y\n3:pids:/x\n0::/a/b\n");
    put_text(d, "sys/memory/x/memory.limit_in_bytes", "2000000000\n");
    put_text(d, "sys/memory/x/y/memory.limit_in_bytes", "9223372036854771712\n");
    assert_int_equal(sp__cgroup_memory_limit(sys, proc), 2000000000ull); /* v1, the smallest */
    put_text(d, "cgroup", "3:pids:/x\n");
    assert_true(sp__cgroup_memory_limit(sys, proc) == UINT64_MAX); /* no memory controller named */
    t_rmrf(d);
    free(d);
}

static void status_names_are_distinct(void **s)
{
    (void)s;
    for (int a = 0; a <= SP_ERR_UNSUPPORTED; a++)
        for (int b = a + 1; b <= SP_ERR_UNSUPPORTED; b++)
            assert_string_not_equal(sp_strerror((sp_status)a), sp_strerror((sp_status)b));
    assert_string_equal(sp_strerror((sp_status)999), "unknown status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(size_parses_plain_bytes_and_units),
        cmocka_unit_test(size_rejects_junk_with_a_message),
        cmocka_unit_test(policy_names_parse),
        cmocka_unit_test(defaults_are_the_articles_within_the_machine),
        cmocka_unit_test(env_overrides_every_setting),
        cmocka_unit_test(bad_env_values_name_the_variable),
        cmocka_unit_test(open_rejects_zero_bounds_and_oversized_spill_ahead),
        cmocka_unit_test(config_check_refuses_what_open_would),
        cmocka_unit_test(spill_dir_that_cannot_be_created_is_an_error_naming_it),
        cmocka_unit_test(default_dir_is_under_home),
        cmocka_unit_test(cgroup_limits_are_found_up_the_tree),
        cmocka_unit_test(status_names_are_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
