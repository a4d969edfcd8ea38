/* Faults: failing writes, a full disk bound, missing, truncated and altered spill
 * files, failing allocations. Each gives a clear status, loses nothing, and leaves
 * the pool usable. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/testing.h"
#include "testlib.h"

typedef struct {
    char *dir;
    t_store store;
    sp_pool *p;
} fix;

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    f->dir = t_tmpdir();
    t_store_init(&f->store, f->dir);
    f->p = t_pool_on(&f->store, 1000, 1 << 20, SP_POLICY_LRU);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_close(f->p));
    t_store_fini(&f->store);
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const char *session(fix *f) { return sp_dir_store_session(f->store.inner); }

static void failing_write_keeps_victim_in_memory(fix *f, int fault, sp_status want)
{
    sp_ref a = t_put(f->p, 600, 1);
    atomic_store(&f->store.fail_write, fault);
    sp_bytes *b = sp_bytes_new(600);
    memset(b->data, 9, 600);
    sp_ref rb;
    t_status(sp_put(f->p, b, &sp_bytes_type, NULL, &rb), want);
    assert_non_null(strstr(sp_last_error(), "spilling object"));
    assert_int_equal(t_tier(f->p, a), SP_TIER_MEMORY);
    t_check(f->p, a, 600, 1);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 600);
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(s.spill_failures, 1);
    assert_int_equal(t_count_files(session(f)), 0);
    /* The disk recovers: the same put now succeeds and a spills. */
    atomic_store(&f->store.fail_write, 0);
    t_ok(sp_put(f->p, b, &sp_bytes_type, NULL, &rb));
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    t_check(f->p, a, 600, 1);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, rb));
}

static void enospc_on_write_is_disk_full_and_loses_nothing(void **state)
{
    failing_write_keeps_victim_in_memory(*state, SP_ERR_DISK_FULL, SP_ERR_DISK_FULL);
}

static void eio_on_write_is_io_error_and_loses_nothing(void **state)
{
    failing_write_keeps_victim_in_memory(*state, SP_ERR_IO, SP_ERR_IO);
}

static void failure_midway_leaves_no_partial_file(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1);
    atomic_store(&f->store.fail_after, 100); /* header and part of the first frame */
    sp_bytes *b = sp_bytes_new(600);
    sp_ref rb;
    t_status(sp_put(f->p, b, &sp_bytes_type, NULL, &rb), SP_ERR_DISK_FULL);
    assert_int_equal(t_count_files(session(f)), 0);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0);
    t_check(f->p, a, 600, 1);
    atomic_store(&f->store.fail_after, -1);
    sp_bytes_free(b);
    t_ok(sp_release(f->p, a));
}

static void failing_commit_is_reported_and_loses_nothing(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1);
    atomic_store(&f->store.fail_commit, SP_ERR_IO);
    sp_bytes *b = sp_bytes_new(600);
    sp_ref rb;
    t_status(sp_put(f->p, b, &sp_bytes_type, NULL, &rb), SP_ERR_IO);
    atomic_store(&f->store.fail_commit, 0);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(t_count_files(session(f)), 0);
    t_check(f->p, a, 600, 1);
    sp_bytes_free(b);
    t_ok(sp_release(f->p, a));
}

/* The disk failing at write-back: this program's fdatasync and fsync stand in for
 * the C library's (the executable's symbols come first), failing while asked to. */
static atomic_int sync_fails;
int fdatasync(int fd)
{
    if (atomic_load(&sync_fails)) return errno = EIO, -1;
    return (int)syscall(SYS_fdatasync, fd);
}
int fsync(int fd)
{
    if (atomic_load(&sync_fails)) return errno = EIO, -1;
    return (int)syscall(SYS_fsync, fd);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static void failing_write_back_is_reported_and_leaks_no_file(void **state)
{
    fix *f = *state;
    sp_config c;
    t_config(&c, f->dir, 1000, 1 << 20, SP_POLICY_LRU);
    c.page_cache = SP_CACHE_DROP; /* session files are synced: the failure shows there */
    sp_pool *p;
    t_ok(sp_pool_open(&p, &c));
    sp_ref a = t_put(p, 600, 1);
    int fds = open_fds();
    atomic_store(&sync_fails, 1);
    for (int i = 0; i < 10; i++) {
        sp_bytes *b = sp_bytes_new(600);
        sp_ref rb;
        t_status(sp_put(p, b, &sp_bytes_type, NULL, &rb), SP_ERR_IO);
        if (!strstr(sp_last_error(), "write back")) fail_msg("message '%s' lacks 'write back'", sp_last_error());
        sp_bytes_free(b);
    }
    /* A retained object's release writes its kept file, synced in every mode. */
    sp_put_options keep = {.retain = 1};
    sp_bytes *k = sp_bytes_new(100);
    memset(k->data, 5, 100);
    sp_ref rk;
    t_ok(sp_put(p, k, &sp_bytes_type, &keep, &rk));
    t_status(sp_release(p, rk), SP_ERR_IO);
    atomic_store(&sync_fails, 0);
    assert_int_equal(open_fds(), fds);
    assert_int_equal(t_count_files(sp_pool_session_dir(p)), 0);
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.disk_used, 0);
    t_check(p, a, 600, 1);
    t_ok(sp_release(p, rk)); /* the disk is back: now it is written */
    t_ok(sp_release(p, a));
    t_ok(sp_pool_close(p));
}

static void full_disk_bound_keeps_object_in_memory(void **state)
{
    fix *f = *state;
    sp_pool *p = t_pool(f->dir, 1000, 700, SP_POLICY_LRU);
    sp_ref a = t_put(p, 600, 1);
    sp_ref b = t_put(p, 600, 2); /* a spills: its file is under 700 bytes */
    assert_int_equal(t_tier(p, a), SP_TIER_DISK);
    sp_bytes *c = sp_bytes_new(600);
    sp_ref rc;
    t_status(sp_put(p, c, &sp_bytes_type, NULL, &rc), SP_ERR_DISK_FULL);
    assert_non_null(strstr(sp_last_error(), "disk bound"));
    assert_int_equal(t_tier(p, b), SP_TIER_MEMORY);
    t_check(p, b, 600, 2);
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_true(s.disk_used <= 700);
    assert_int_equal(s.disk_used, t_dir_bytes(sp_pool_session_dir(p)));
    /* Freeing disk space makes room again. */
    t_ok(sp_release(p, a));
    t_ok(sp_put(p, c, &sp_bytes_type, NULL, &rc));
    assert_int_equal(t_tier(p, b), SP_TIER_DISK);
    /* Swapping b back in would need c's file beside b's: over the bound, refused. */
    void *o;
    t_status(sp_pin(p, b, &o), SP_ERR_DISK_FULL);
    assert_int_equal(t_tier(p, b), SP_TIER_DISK);
    t_ok(sp_release(p, rc));
    t_check(p, b, 600, 2);
    t_ok(sp_release(p, b));
    t_ok(sp_pool_close(p));
}

/* Spill a 600-byte object with pattern seed 1; returns its ref and file path. */
static sp_ref spill_one(fix *f, char *path, sp_ref *other)
{
    sp_ref a = t_put(f->p, 600, 1);
    *other = t_put(f->p, 600, 2);
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, a, &info));
    strcpy(path, info.path);
    return a;
}

static void missing_spill_file_is_not_found_and_pool_stays_usable(void **state)
{
    fix *f = *state;
    char path[512];
    sp_ref other, a = spill_one(f, path, &other);
    assert_int_equal(unlink(path), 0);
    void *o;
    t_status(sp_pin(f->p, a, &o), SP_ERR_NOT_FOUND);
    assert_non_null(strstr(sp_last_error(), path));
    assert_non_null(strstr(sp_last_error(), "restoring object"));
    t_status(sp_pin(f->p, a, &o), SP_ERR_NOT_FOUND); /* still on disk, same answer */
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    t_check(f->p, other, 600, 2);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, other));
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
}

static void truncated_spill_file_is_corrupt_and_object_kept(void **state)
{
    fix *f = *state;
    char path[512];
    sp_ref other, a = spill_one(f, path, &other);
    size_t len;
    unsigned char *orig = t_slurp(path, &len);
    size_t cuts[] = {0, 10, 31, 32, 40, 56, 300, len - 24, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        t_spew(path, orig, cuts[i]);
        void *o;
        t_status(sp_pin(f->p, a, &o), SP_ERR_CORRUPT);
        assert_non_null(strstr(sp_last_error(), path));
        assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    }
    t_spew(path, orig, len); /* put back: the object was never lost */
    t_check(f->p, a, 600, 1);
    free(orig);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, other));
}

static void every_single_bit_flip_is_detected(void **state)
{
    fix *f = *state;
    char path[512];
    sp_ref other, a = spill_one(f, path, &other);
    size_t len;
    unsigned char *orig = t_slurp(path, &len);
    assert_int_equal(len, 48 + 24 + 600 + 24); /* header with its file id, frame, end */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            orig[i] ^= (unsigned char)(1u << bit);
            t_spew(path, orig, len);
            orig[i] ^= (unsigned char)(1u << bit);
            void *o;
            sp_status st = sp_pin(f->p, a, &o);
            if (st != SP_ERR_CORRUPT)
                fail_msg("flip of bit %d in byte %zu: %s (%s)", bit, i, sp_strerror(st), sp_last_error());
        }
    }
    orig[len] = 0;
    t_spew(path, orig, len + 1); /* one stray byte at the end */
    void *o;
    t_status(sp_pin(f->p, a, &o), SP_ERR_CORRUPT);
    t_spew(path, orig, len);
    t_check(f->p, a, 600, 1);
    free(orig);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, other));
}

static void frames_swapped_are_detected(void **state)
{
    fix *f = *state;
    /* A 3 MiB object: three 1 MiB frames of different content. */
    sp_pool *p = t_pool(f->dir, 4 << 20, 64 << 20, SP_POLICY_LRU);
    sp_ref a = t_put(p, 3 << 20, 5);
    sp_ref b = t_put(p, 2 << 20, 6);
    assert_int_equal(t_tier(p, a), SP_TIER_DISK);
    sp_ref_info info;
    t_ok(sp_ref_query(p, a, &info));
    int fd = open(info.path, O_RDWR);
    assert_true(fd >= 0);
    size_t fr = 24 + (1 << 20);
    unsigned char *x = malloc(fr), *y = malloc(fr);
    assert_int_equal(pread(fd, x, fr, 32), (ssize_t)fr);
    assert_int_equal(pread(fd, y, fr, 32 + (off_t)fr), (ssize_t)fr);
    assert_int_equal(pwrite(fd, y, fr, 32), (ssize_t)fr);
    assert_int_equal(pwrite(fd, x, fr, 32 + (off_t)fr), (ssize_t)fr);
    void *o;
    t_status(sp_pin(p, a, &o), SP_ERR_CORRUPT);
    assert_int_equal(pwrite(fd, x, fr, 32), (ssize_t)fr);
    assert_int_equal(pwrite(fd, y, fr, 32 + (off_t)fr), (ssize_t)fr);
    close(fd);
    free(x);
    free(y);
    t_check(p, a, 3 << 20, 5);
    t_ok(sp_release(p, a));
    t_ok(sp_release(p, b));
    t_ok(sp_pool_close(p));
}

/* One scenario, every step allowed to fail: returns the first failing status. */
static sp_status scenario(const char *dir, int *done)
{
    sp_config c;
    sp_config_default(&c);
    c.dir = dir;
    c.memory_bound = 3000;
    c.disk_bound = 1 << 20;
    c.policy = SP_POLICY_LRU;
    c.spill_ahead = 0;
    sp_pool *p;
    *done = 0;
    sp_status st = sp_pool_open(&p, &c);
    if (st != SP_OK) return st;
    sp_ref refs[4];
    int n = 0;
    for (int i = 0; i < 4 && st == SP_OK; i++) {
        sp_bytes *b = sp_bytes_new(1000);
        if (!b) {
            st = SP_ERR_NOMEM;
            break;
        }
        memset(b->data, i + 1, 1000);
        st = sp_put(p, b, &sp_bytes_type, NULL, &refs[n]);
        if (st == SP_OK) n++;
        else sp_bytes_free(b);
    }
    for (int i = 0; i < n && st == SP_OK; i++) {
        void *o;
        st = sp_pin(p, refs[i], &o);
        if (st == SP_OK) sp_unpin(p, refs[i]);
    }
    /* Whatever failed: with allocations back, every object is intact. */
    sp_testing_fail_alloc_after(-1);
    for (int i = 0; i < n; i++) {
        void *o;
        t_ok(sp_pin(p, refs[i], &o));
        const sp_bytes *b = o;
        assert_int_equal(b->len, 1000);
        for (int k = 0; k < 1000; k++) assert_int_equal(b->data[k], i + 1);
        t_ok(sp_unpin(p, refs[i]));
        t_ok(sp_release(p, refs[i]));
    }
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
    t_ok(sp_pool_close(p));
    *done = st == SP_OK;
    return st;
}

static void allocation_failures_are_clean_at_every_point(void **state)
{
    fix *f = *state;
    int failures = 0;
    for (long n = 0; n < 1000; n++) {
        sp_testing_fail_alloc_after(n);
        int done;
        sp_status st = scenario(f->dir, &done);
        sp_testing_fail_alloc_after(-1);
        if (st == SP_OK) break;
        assert_int_equal(st, SP_ERR_NOMEM);
        failures++;
    }
    assert_true(failures > 10); /* the scenario really allocates through the wrapper */
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(enospc_on_write_is_disk_full_and_loses_nothing),
        T(eio_on_write_is_io_error_and_loses_nothing),
        T(failure_midway_leaves_no_partial_file),
        T(failing_commit_is_reported_and_loses_nothing),
        T(failing_write_back_is_reported_and_leaks_no_file),
        T(full_disk_bound_keeps_object_in_memory),
        T(missing_spill_file_is_not_found_and_pool_stays_usable),
        T(truncated_spill_file_is_corrupt_and_object_kept),
        T(every_single_bit_flip_is_detected),
        T(frames_swapped_are_detected),
        T(allocation_failures_are_clean_at_every_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
