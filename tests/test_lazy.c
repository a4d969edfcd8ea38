/* Registered source files: no I/O at registration, load on first pin, clean eviction
 * without writes, dirty objects spilled, staleness, bad files, batch registration. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/testing.h"
#include "testlib.h"

typedef t_fix fix;

static int setup(void **state)
{
    if (t_fix_setup(state) != 0) return -1;
    fix *f = *state;
    f->p = t_pool(f->dir, 1000, 100000, SP_POLICY_LRU);
    return 0;
}

#define teardown t_fix_teardown

/* dir/name holding len bytes of pattern seed; returns the path (free it). */
static char *source(const char *dir, const char *name, size_t len, unsigned seed)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (size_t i = 0; i < len; i++) fputc((int)(unsigned char)(seed + i * 31), fp);
    fclose(fp);
    return path;
}

static void check_read(sp_pool *p, sp_ref r, size_t len, unsigned seed)
{
    const void *o;
    t_ok(sp_pin_read(p, r, &o));
    const sp_bytes *b = o;
    assert_int_equal(b->len, len);
    for (size_t i = 0; i < len; i++)
        if (b->data[i] != (unsigned char)(seed + i * 31)) fail_msg("byte %zu differs", i);
    t_ok(sp_unpin(p, r));
}

static sp_stats stats(sp_pool *p)
{
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    return s;
}

static void registration_touches_no_file(void **state)
{
    fix *f = *state;
    /* None of these exist: registration succeeds because it never looks. */
    char path[600];
    sp_ref r[100];
    for (int i = 0; i < 100; i++) {
        snprintf(path, sizeof path, "%s/missing/file-%d.csv", f->dir, i);
        t_ok(sp_put_lazy(f->p, path, &sp_bytes_type, NULL, &r[i]));
    }
    sp_stats s = stats(f->p);
    assert_int_equal(s.objects_on_disk, 100);
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0); /* sources are not the pool's bytes */
    assert_int_equal(s.lazy_loads, 0);
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, r[7], &info));
    assert_int_equal(info.tier, SP_TIER_DISK);
    assert_non_null(strstr(info.path, "missing/file-7.csv"));
    /* The first pin is where a missing file shows, for that object only. */
    const void *o;
    t_status(sp_pin_read(f->p, r[7], &o), SP_ERR_NOT_FOUND);
    assert_non_null(strstr(sp_last_error(), "missing/file-7.csv"));
    for (int i = 0; i < 100; i++) t_ok(sp_release(f->p, r[i]));
    assert_int_equal(stats(f->p).objects_on_disk, 0);
}

static void first_pin_loads_and_later_pins_hit(void **state)
{
    fix *f = *state;
    char *path = source(f->dir, "a.bin", 300, 5);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, path, &sp_bytes_type, NULL, &r));
    check_read(f->p, r, 300, 5);
    assert_int_equal(t_tier(f->p, r), SP_TIER_MEMORY);
    check_read(f->p, r, 300, 5);
    sp_stats s = stats(f->p);
    assert_int_equal(s.lazy_loads, 1);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.memory_used, 300); /* charged once loaded */
    t_ok(sp_release(f->p, r));
    struct stat st;
    assert_int_equal(stat(path, &st), 0); /* never deleted */
    free(path);
}

static void clean_eviction_drops_without_writing(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 600, 1), *b = source(f->dir, "b.bin", 600, 2);
    sp_ref ra, rb;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &ra));
    t_ok(sp_put_lazy(f->p, b, &sp_bytes_type, NULL, &rb));
    for (int round = 0; round < 3; round++) { /* 1000-byte bound: each load drops the other */
        check_read(f->p, ra, 600, 1);
        check_read(f->p, rb, 600, 2);
    }
    sp_stats s = stats(f->p);
    assert_int_equal(s.lazy_loads, 6);
    assert_int_equal(s.clean_drops, 5);
    assert_int_equal(s.evictions, 5);
    assert_int_equal(s.files_written, 0);
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 0);
    t_ok(sp_release(f->p, ra));
    t_ok(sp_release(f->p, rb));
    free(a);
    free(b);
}

static void a_changed_object_is_spilled_and_the_source_kept(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 600, 1), *b = source(f->dir, "b.bin", 600, 2);
    sp_ref ra, rb;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &ra));
    t_ok(sp_put_lazy(f->p, b, &sp_bytes_type, NULL, &rb));
    void *o;
    t_ok(sp_pin(f->p, ra, &o)); /* a mutable pin: a is no longer a copy of its file */
    memset(((sp_bytes *)o)->data, 'x', 600);
    t_ok(sp_unpin(f->p, ra));
    check_read(f->p, rb, 600, 2); /* evicts a: written to the spill directory */
    sp_stats s = stats(f->p);
    assert_int_equal(s.files_written, 1);
    assert_int_equal(s.clean_drops, 0);
    const void *c;
    t_ok(sp_pin_read(f->p, ra, &c)); /* back from the spill file, changed */
    for (int i = 0; i < 600; i++) assert_int_equal(((const sp_bytes *)c)->data[i], 'x');
    t_ok(sp_unpin(f->p, ra));
    assert_int_equal(stats(f->p).lazy_loads, 2); /* a once, b once */
    /* the source is untouched */
    FILE *fp = fopen(a, "rb");
    assert_int_equal(fgetc(fp), 1);
    fclose(fp);
    t_ok(sp_release(f->p, ra));
    t_ok(sp_release(f->p, rb));
    free(a);
    free(b);
}

static void cache_parsed_spills_instead_of_dropping(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 600, 1), *b = source(f->dir, "b.bin", 600, 2);
    sp_ref ra, rb;
    sp_lazy_options cache = {.cache_parsed = 1};
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &cache, &ra));
    t_ok(sp_put_lazy(f->p, b, &sp_bytes_type, NULL, &rb));
    check_read(f->p, ra, 600, 1);
    check_read(f->p, rb, 600, 2); /* a is written, not dropped */
    check_read(f->p, ra, 600, 1); /* from the spill file: no second load */
    sp_stats s = stats(f->p);
    assert_int_equal(s.lazy_loads, 2);
    assert_int_equal(s.files_written, 1);
    assert_int_equal(s.files_read, 1);
    t_ok(sp_release(f->p, ra));
    t_ok(sp_release(f->p, rb));
    free(a);
    free(b);
}

static void push_out(fix *f)
{
    sp_ref filler = t_put(f->p, 1000, 9); /* the whole bound: every other object leaves */
    t_ok(sp_release(f->p, filler));
}

static void a_changed_file_is_stale_or_reloaded(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 300, 1);
    sp_ref r, rr;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &r));
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &(sp_lazy_options){.reload = 1}, &rr));
    check_read(f->p, r, 300, 1);
    check_read(f->p, rr, 300, 1);
    push_out(f);
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK);
    usleep(20000);
    free(source(f->dir, "a.bin", 400, 7)); /* rewritten: new size and times */
    const void *o;
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "a.bin"));
    assert_non_null(strstr(sp_last_error(), "changed"));
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK); /* still registered, still failing */
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_STALE);
    check_read(f->p, rr, 400, 7); /* the reloading one sees the new file */
    assert_int_equal(stats(f->p).memory_used, 400);
    t_ok(sp_release(f->p, r));
    t_ok(sp_release(f->p, rr));
    /* gone since the last load */
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &r));
    check_read(f->p, r, 400, 7);
    push_out(f);
    unlink(a);
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_NOT_FOUND);
    t_ok(sp_release(f->p, r));
    free(a);
}

/* A parsed copy kept in the spill directory is only as good as its source: a
 * changed source is stale (or reloaded, the copy replaced), a vanished one is not
 * found; never the old bytes. */
static void a_parsed_copy_follows_its_source(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 300, 1);
    sp_ref r, rr;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &(sp_lazy_options){.cache_parsed = 1}, &r));
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &(sp_lazy_options){.cache_parsed = 1, .reload = 1}, &rr));
    check_read(f->p, r, 300, 1);
    check_read(f->p, rr, 300, 1);
    push_out(f); /* both written to the spill directory as parsed copies */
    assert_int_equal(stats(f->p).files_written, 2);
    check_read(f->p, r, 300, 1); /* unchanged: read from its copy */
    push_out(f);
    usleep(20000);
    free(source(f->dir, "a.bin", 400, 7));
    const void *o;
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "a.bin"));
    assert_non_null(strstr(sp_last_error(), "size 300 -> 400 bytes"));
    t_status(sp_pin(f->p, r, (void **)&o), SP_ERR_STALE); /* a mutable pin too */
    uint64_t loads = stats(f->p).lazy_loads;
    check_read(f->p, rr, 400, 7); /* reloaded from the source, not the copy */
    assert_int_equal(stats(f->p).lazy_loads, loads + 1);
    push_out(f);
    check_read(f->p, rr, 400, 7); /* its new copy */
    push_out(f);
    unlink(a);
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_NOT_FOUND);
    t_status(sp_pin_read(f->p, rr, &o), SP_ERR_NOT_FOUND);
    t_ok(sp_release(f->p, r));
    t_ok(sp_release(f->p, rr));
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 0);
    free(a);
}

/* A parsed copy that is deleted or damaged is a cache miss, not an error: the
 * unchanged source is loaded again, and the pool writes a fresh copy later. */
static void a_lost_parsed_copy_loads_the_source(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 300, 1);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &(sp_lazy_options){.cache_parsed = 1}, &r));
    check_read(f->p, r, 300, 1);
    for (int damage = 0; damage < 2; damage++) {
        push_out(f);
        char path[4096];
        t_disk_path(f->p, r, path, sizeof path);
        if (damage) { /* a byte of the payload flipped: the frame's checksum fails */
            FILE *fp = fopen(path, "r+b");
            assert_non_null(fp);
            assert_int_equal(fseek(fp, -10, SEEK_END), 0);
            int ch = fgetc(fp);
            assert_int_equal(fseek(fp, -10, SEEK_END), 0);
            fputc(ch ^ 0x40, fp);
            fclose(fp);
        } else {
            assert_int_equal(unlink(path), 0);
        }
        uint64_t loads = stats(f->p).lazy_loads;
        check_read(f->p, r, 300, 1);
        assert_int_equal(stats(f->p).lazy_loads, loads + 1);
        assert_int_equal(t_tier(f->p, r), SP_TIER_MEMORY);
    }
    push_out(f); /* a new copy, read back without loading */
    uint64_t loads = stats(f->p).lazy_loads;
    check_read(f->p, r, 300, 1);
    assert_int_equal(stats(f->p).lazy_loads, loads);
    t_ok(sp_release(f->p, r));
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 0);
    free(a);
}

/* A parsed copy that cannot be written (here a directory is in its place) does not
 * keep the object in memory: the copy is only a cache, so the object is dropped as
 * a clean copy of its source, and the next eviction tries the copy again. */
static void a_parsed_copy_that_cannot_be_written_is_skipped(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 600, 1);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &(sp_lazy_options){.cache_parsed = 1}, &r));
    check_read(f->p, r, 600, 1);
    push_out(f); /* its copy is written */
    char path[4096];
    t_disk_path(f->p, r, path, sizeof path);
    check_read(f->p, r, 600, 1); /* from the copy, kept as a clean copy of it */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0); /* the copy fails its check and cannot be written again */
    push_out(f); /* the put that needs the room succeeds */
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK);
    sp_stats s = stats(f->p);
    assert_int_equal(s.files_written, 1);
    assert_int_equal(s.spill_failures, 1);
    check_read(f->p, r, 600, 1); /* from the source */
    assert_int_equal(stats(f->p).lazy_loads, 2);
    assert_int_equal(rmdir(path), 0);
    push_out(f);
    assert_int_equal(stats(f->p).files_written, 2); /* the copy, this time */
    check_read(f->p, r, 600, 1);
    assert_int_equal(stats(f->p).lazy_loads, 2);
    t_ok(sp_release(f->p, r));
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 0);
    free(a);
}

/* A load that does not fit (the object is over the bound) is not the object's
 * load: the file may then change and the next pin still loads it, not STALE. */
static void a_load_that_does_not_fit_leaves_no_stamp(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 5000, 1);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &r));
    const void *o;
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_TOO_BIG);
    usleep(20000);
    free(source(f->dir, "a.bin", 500, 2));
    check_read(f->p, r, 500, 2);
    t_ok(sp_release(f->p, r));
    free(a);
}

/* A registered object changed through a mutable pin is its own data from then on:
 * spilled and read back, it is not checked against (or replaced by) its source. */
static void a_changed_object_is_not_its_source_again(void **state)
{
    fix *f = *state;
    char *a = source(f->dir, "a.bin", 300, 1);
    sp_ref r[2];
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &r[0]));
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, &(sp_lazy_options){.reload = 1, .cache_parsed = 1}, &r[1]));
    for (int i = 0; i < 2; i++) {
        void *o;
        t_ok(sp_pin(f->p, r[i], &o));
        ((sp_bytes *)o)->data[0] = (unsigned char)(0xA0 + i);
        t_ok(sp_unpin(f->p, r[i]));
    }
    push_out(f);
    usleep(20000);
    free(source(f->dir, "a.bin", 400, 7));
    for (int pass = 0; pass < 2; pass++) { /* the source changed, then gone */
        for (int i = 0; i < 2; i++) {
            const void *o;
            t_ok(sp_pin_read(f->p, r[i], &o));
            const sp_bytes *b = o;
            assert_int_equal(b->len, 300);
            assert_int_equal(b->data[0], 0xA0 + i);
            assert_int_equal(b->data[1], (unsigned char)(1 + 31));
            t_ok(sp_unpin(f->p, r[i]));
        }
        push_out(f);
        unlink(a);
    }
    for (int i = 0; i < 2; i++) t_ok(sp_release(f->p, r[i]));
    free(a);
}

/* A reload that replaces a parsed copy and then finds no room fails that pin only:
 * the copy it removed is no longer counted, and the next pin loads the source. */
static void a_reload_without_room_loses_nothing(void **state)
{
    fix *f = *state;
    char *x = source(f->dir, "x.bin", 100, 1);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, x, &sp_bytes_type, &(sp_lazy_options){.reload = 1, .cache_parsed = 1}, &r));
    check_read(f->p, r, 100, 1);
    push_out(f); /* its parsed copy is written */
    assert_int_equal(stats(f->p).files_written, 1);
    sp_bytes *big = sp_bytes_new(850);
    sp_ref rb;
    t_ok(sp_put(f->p, big, &sp_bytes_type, &(sp_put_options){.pin = 1}, &rb));
    usleep(20000);
    free(source(f->dir, "x.bin", 300, 2));
    const void *o;
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_MEMORY_FULL);
    sp_stats s = stats(f->p);
    assert_int_equal(s.disk_used, t_dir_bytes(sp_pool_session_dir(f->p)));
    t_ok(sp_unpin(f->p, rb));
    t_ok(sp_release(f->p, rb));
    check_read(f->p, r, 300, 2);
    check_read(f->p, r, 300, 2);
    t_ok(sp_release(f->p, r));
    free(x);
}

/* A mutable pin that fails leaves the object's source its home: it is not marked
 * changed, so it is still dropped clean and follows its source afterwards. */
static void a_failed_pin_keeps_the_source_home(void **state)
{
    fix *f = *state;
    char path[4200];
    snprintf(path, sizeof path, "%s/later.bin", f->dir);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, path, &sp_bytes_type, &(sp_lazy_options){.reload = 1}, &r));
    void *o;
    t_status(sp_pin(f->p, r, &o), SP_ERR_NOT_FOUND);
    free(source(f->dir, "later.bin", 300, 1));
    check_read(f->p, r, 300, 1);
    push_out(f);
    sp_stats s = stats(f->p);
    assert_int_equal(s.files_written, 0);
    assert_int_equal(s.clean_drops, 1);
    usleep(20000);
    free(source(f->dir, "later.bin", 500, 2));
    check_read(f->p, r, 500, 2);
    t_ok(sp_release(f->p, r));
}

/* Sources that are not regular files fail at the pin without waiting (a FIFO would
 * block in open for a writer); a long path is named whole in messages; a stale
 * message says what changed. */
static void odd_sources_and_messages(void **state)
{
    fix *f = *state;
    char fifo[4200];
    snprintf(fifo, sizeof fifo, "%s/pipe.csv", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    sp_ref r;
    t_ok(sp_put_lazy(f->p, fifo, &sp_bytes_type, NULL, &r));
    const void *o;
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "not a regular file"));
    t_ok(sp_release(f->p, r));
    /* a path of about 700 bytes, under the limit of messages */
    char deep[4200];
    int n = snprintf(deep, sizeof deep, "%s", f->dir);
    for (int i = 0; i < 12; i++) {
        n += snprintf(deep + n, sizeof deep - (size_t)n, "/%s", "a-directory-name-of-fifty-bytes-or-so-for-the-test");
        assert_int_equal(mkdir(deep, 0700), 0);
    }
    snprintf(deep + n, sizeof deep - (size_t)n, "/the-missing-file.bin");
    t_ok(sp_put_lazy(f->p, deep, &sp_bytes_type, NULL, &r));
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_NOT_FOUND);
    if (!strstr(sp_last_error(), "the-missing-file.bin")) fail_msg("'%s' lacks the file's name", sp_last_error());
    t_ok(sp_release(f->p, r));
    /* replaced by another file of the same size and an older time */
    char *a = source(f->dir, "a.bin", 100, 1), *b = source(f->dir, "b.bin", 100, 2);
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, b, old, 0), 0);
    t_ok(sp_put_lazy(f->p, a, &sp_bytes_type, NULL, &r));
    check_read(f->p, r, 100, 1);
    push_out(f);
    assert_int_equal(rename(b, a), 0);
    t_status(sp_pin_read(f->p, r, &o), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "replaced by another file"));
    assert_non_null(strstr(sp_last_error(), "earlier"));
    assert_null(strstr(sp_last_error(), "size"));
    t_ok(sp_release(f->p, r));
    free(a);
    free(b);
}

/* A loader that appends to its own file while reading it. */
static const char *meddle_path;
static sp_status meddle_decode(sp_reader *r, uint64_t len, void **obj)
{
    FILE *fp = fopen(meddle_path, "ab");
    fputc('!', fp);
    fclose(fp);
    return sp_bytes_type.decode(r, len, obj);
}
static sp_status short_decode(sp_reader *r, uint64_t len, void **obj)
{
    return sp_bytes_type.decode(r, len ? len - 1 : 0, obj); /* leaves a byte unread */
}

static void bad_sources_fail_that_object_only(void **state)
{
    fix *f = *state;
    char *good = source(f->dir, "good.bin", 100, 3), *m = source(f->dir, "m.bin", 100, 4);
    char *sh = source(f->dir, "short.bin", 100, 4), *empty = source(f->dir, "empty.bin", 0, 0);
    sp_ref rg, rm, rs, rd, re;
    t_ok(sp_put_lazy(f->p, good, &sp_bytes_type, NULL, &rg));
    sp_type meddler = sp_bytes_type, shorter = sp_bytes_type;
    meddler.decode = meddle_decode;
    shorter.decode = short_decode;
    meddle_path = m;
    t_ok(sp_put_lazy(f->p, m, &meddler, NULL, &rm));
    t_ok(sp_put_lazy(f->p, sh, &shorter, NULL, &rs));
    t_ok(sp_put_lazy(f->p, f->dir, &sp_bytes_type, NULL, &rd)); /* a directory */
    t_ok(sp_put_lazy(f->p, empty, &sp_bytes_type, NULL, &re));
    const void *o;
    t_status(sp_pin_read(f->p, rm, &o), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "while it was being read"));
    t_status(sp_pin_read(f->p, rs, &o), SP_ERR_CORRUPT);
    assert_non_null(strstr(sp_last_error(), "short.bin"));
    t_status(sp_pin_read(f->p, rd, &o), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "not a regular file"));
    check_read(f->p, re, 0, 0); /* empty is a fine byte buffer; a CSV loader may refuse it */
    check_read(f->p, rg, 100, 3);
    sp_stats s = stats(f->p);
    assert_int_equal(s.memory_used, 100); /* nothing charged for the failures */
    assert_int_equal(s.objects_pinned, 0);
    if (geteuid() != 0) { /* root reads anything */
        chmod(good, 0);
        push_out(f);
        t_status(sp_pin_read(f->p, rg, &o), SP_ERR_PERMISSION);
        chmod(good, 0644);
    }
    sp_ref all[5] = {rg, rm, rs, rd, re};
    for (int i = 0; i < 5; i++) t_ok(sp_release(f->p, all[i]));
    free(good);
    free(m);
    free(sh);
    free(empty);
}

static void batch_registration_is_all_or_nothing(void **state)
{
    fix *f = *state;
    enum { N = 5000 };
    char **paths = malloc(N * sizeof *paths);
    for (int i = 0; i < N; i++) {
        paths[i] = malloc(64);
        snprintf(paths[i], 64, "/data/hourly/%05d.csv", i);
    }
    sp_ref *refs = malloc(N * sizeof *refs);
    t_ok(sp_put_lazy_many(f->p, N, (const char *const *)paths, &sp_bytes_type, NULL, refs));
    assert_int_equal(stats(f->p).objects_on_disk, N);
    for (int i = 1; i < N; i++) assert_true(refs[i] != refs[i - 1]);
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, refs[4321], &info));
    assert_string_equal(info.path, "/data/hourly/04321.csv");
    for (int i = 0; i < N; i++) t_ok(sp_release(f->p, refs[i]));
    /* one bad path: nothing registered */
    paths[100][0] = '\0';
    t_status(sp_put_lazy_many(f->p, N, (const char *const *)paths, &sp_bytes_type, NULL, refs), SP_ERR_INVALID);
    assert_int_equal(stats(f->p).objects_on_disk, 0);
    sp_ref r;
    t_status(sp_put_lazy(f->p, NULL, &sp_bytes_type, NULL, &r), SP_ERR_INVALID);
    t_status(sp_put_lazy(f->p, "x", NULL, NULL, &r), SP_ERR_INVALID);
    for (int i = 0; i < N; i++) free(paths[i]);
    free(paths);
    free(refs);
}

/* Out of memory at every allocation of a batch (its objects, then the slots, which
 * grow as they fill): all or nothing, and the pool goes on. */
static void batch_registration_out_of_memory_registers_nothing(void **state)
{
    fix *f = *state;
    enum { N = 3000 };
    char **paths = malloc(N * sizeof *paths);
    for (int i = 0; i < N; i++) {
        paths[i] = malloc(32);
        snprintf(paths[i], 32, "/data/%05d.csv", i);
    }
    sp_ref *refs = malloc(N * sizeof *refs);
    int failed = 0;
    for (long k = 0;; k++) {
        sp_testing_fail_alloc_after(k);
        sp_status st = sp_put_lazy_many(f->p, N, (const char *const *)paths, &sp_bytes_type, NULL, refs);
        sp_testing_fail_alloc_after(-1);
        if (st == SP_OK) {
            assert_int_equal(stats(f->p).objects_on_disk, N);
            for (int i = 0; i < N; i++) t_ok(sp_release(f->p, refs[i]));
            break;
        }
        t_status(st, SP_ERR_NOMEM);
        failed++;
        assert_int_equal(stats(f->p).objects_on_disk, 0);
    }
    assert_true(failed > 0);
    for (int i = 0; i < N; i++) free(paths[i]);
    free(paths);
    free(refs);
}

/* ---- sources that are not file paths ---- */

/* An in-memory "object store": handle "key-<i>" is entry i. */
typedef struct {
    const char *bytes[4];
    size_t len[4];
    uint64_t version[4];
    size_t short_by;  /* read delivers this many bytes fewer than open said */
    int fail_read;
    int change_in_read; /* the first read of entry 0 finds it rewritten, a new version */
    atomic_int opens, closes;
} mem_store;

typedef struct {
    mem_store *s;
    int i;
} mem_file;

static sp_status ms_open(void *ctx, const char *handle, void **file, uint64_t *size, uint64_t *version)
{
    mem_store *s = ctx;
    atomic_fetch_add(&s->opens, 1);
    int i = -1;
    if (sscanf(handle, "key-%d", &i) != 1 || i < 0 || i > 3 || !s->bytes[i]) return SP_ERR_NOT_FOUND;
    mem_file *f = malloc(sizeof *f);
    f->s = s;
    f->i = i;
    *file = f;
    *size = s->len[i];
    *version = s->version[i];
    return SP_OK;
}

static sp_status ms_read(void *file, uint64_t offset, void *buf, size_t len, size_t *got)
{
    mem_file *f = file;
    mem_store *s = f->s;
    if (s->fail_read) return SP_ERR_IO;
    if (s->change_in_read && f->i == 0 && offset == 0) {
        s->change_in_read = 0;
        s->bytes[0] = "ALPHA BYTES";
        s->version[0]++;
    }
    size_t have = s->len[f->i] - s->short_by;
    size_t n = offset >= have ? 0 : (have - offset < len ? have - offset : len);
    memcpy(buf, s->bytes[f->i] + offset, n);
    *got = n;
    return SP_OK;
}

static void ms_close(void *file)
{
    mem_file *f = file;
    atomic_fetch_add(&f->s->closes, 1);
    free(f);
}

static void handles_load_through_source_methods(void **state)
{
    fix *f = *state;
    mem_store ms = {{"alpha bytes", "sym,qty\nA,1\nB,2\nA,3\n"}, {11, 20}, {7, 1}, 0, 0, 0, 0, 0};
    sp_source_methods m = {1, &ms, ms_open, ms_read, ms_close};
    sp_lazy_options o = {.source = &m};
    sp_ref r[40];
    char h[32];
    for (int i = 0; i < 40; i++) {
        snprintf(h, sizeof h, "key-%d", i % 4);
        t_ok(sp_put_lazy(f->p, h, &sp_bytes_type, &o, &r[i]));
    }
    assert_int_equal(atomic_load(&ms.opens), 0); /* registration never opens */
    const void *obj;
    t_ok(sp_pin_read(f->p, r[0], &obj));
    assert_int_equal(((const sp_bytes *)obj)->len, 11);
    assert_memory_equal(((const sp_bytes *)obj)->data, "alpha bytes", 11);
    t_ok(sp_unpin(f->p, r[0]));
    assert_int_equal(atomic_load(&ms.opens), 2); /* to read, then to check the version after */
    assert_int_equal(atomic_load(&ms.closes), 2);
    /* A CSV handle through the CSV loader. */
    sp_ref c;
    t_ok(sp_put_lazy(f->p, "key-1", &sp_csv_type, &o, &c));
    t_ok(sp_pin_read(f->p, c, &obj));
    const sp_table *t = obj;
    assert_int_equal(t->nrows, 3);
    assert_int_equal(t->cols[1].i64[2], 3);
    t_ok(sp_unpin(f->p, c));
    /* Clean eviction drops it; the next pin opens the source again. */
    push_out(f);
    t_ok(sp_pin_read(f->p, r[0], &obj));
    t_ok(sp_unpin(f->p, r[0]));
    assert_int_equal(atomic_load(&ms.opens), 6);
    assert_int_equal(stats(f->p).files_written, 0);
    t_ok(sp_release(f->p, c));
    for (int i = 0; i < 40; i++) t_ok(sp_release(f->p, r[i]));
}

/* A source whose version changes while it is being read is refused, never loaded
 * half old and half new; the next pin loads the new version whole (with reload). */
static void a_handle_changed_during_the_read_is_refused(void **state)
{
    fix *f = *state;
    mem_store ms = {{"alpha bytes"}, {11}, {7}, 0, 0, 1, 0, 0};
    sp_source_methods m = {1, &ms, ms_open, ms_read, ms_close};
    sp_ref r;
    t_ok(sp_put_lazy(f->p, "key-0", &sp_bytes_type, &(sp_lazy_options){.source = &m, .reload = 1}, &r));
    const void *obj;
    t_status(sp_pin_read(f->p, r, &obj), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "changed while it was being read"));
    assert_non_null(strstr(sp_last_error(), "key-0"));
    assert_int_equal(stats(f->p).memory_used, 0);
    t_ok(sp_pin_read(f->p, r, &obj));
    assert_memory_equal(((const sp_bytes *)obj)->data, "ALPHA BYTES", 11);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
}

static void changed_handles_are_stale_or_reloaded(void **state)
{
    fix *f = *state;
    mem_store ms = {{"version one", "version one"}, {11, 11}, {1, 1}, 0, 0, 0, 0, 0};
    sp_source_methods m = {1, &ms, ms_open, ms_read, ms_close};
    sp_lazy_options strict = {.source = &m}, reload = {.reload = 1, .source = &m};
    sp_ref a, b;
    t_ok(sp_put_lazy(f->p, "key-0", &sp_bytes_type, &strict, &a));
    t_ok(sp_put_lazy(f->p, "key-1", &sp_bytes_type, &reload, &b));
    const void *obj;
    t_ok(sp_pin_read(f->p, a, &obj));
    t_ok(sp_unpin(f->p, a));
    t_ok(sp_pin_read(f->p, b, &obj));
    t_ok(sp_unpin(f->p, b));
    push_out(f);
    ms.bytes[0] = ms.bytes[1] = "version two!";
    ms.len[0] = ms.len[1] = 12;
    ms.version[0] = ms.version[1] = 2;
    t_status(sp_pin_read(f->p, a, &obj), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "key-0"));
    assert_non_null(strstr(sp_last_error(), "version 1 -> 2"));
    t_ok(sp_pin_read(f->p, b, &obj));
    assert_memory_equal(((const sp_bytes *)obj)->data, "version two!", 12);
    t_ok(sp_unpin(f->p, b));
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, b));
}

static void bad_handles_fail_that_object_only(void **state)
{
    fix *f = *state;
    mem_store ms = {{"0123456789"}, {10}, {1}, 0, 0, 0, 0, 0};
    sp_source_methods m = {1, &ms, ms_open, ms_read, ms_close};
    sp_lazy_options o = {.source = &m};
    sp_ref missing, good;
    t_ok(sp_put_lazy(f->p, "key-3", &sp_bytes_type, &o, &missing));
    t_ok(sp_put_lazy(f->p, "key-0", &sp_bytes_type, &o, &good));
    const void *obj;
    t_status(sp_pin_read(f->p, missing, &obj), SP_ERR_NOT_FOUND);
    assert_non_null(strstr(sp_last_error(), "source key-3): open"));
    ms.short_by = 4; /* the source delivers less than it said */
    t_status(sp_pin_read(f->p, good, &obj), SP_ERR_STALE);
    assert_non_null(strstr(sp_last_error(), "ended at byte 6"));
    ms.short_by = 0;
    ms.fail_read = 1;
    t_status(sp_pin_read(f->p, good, &obj), SP_ERR_IO);
    assert_non_null(strstr(sp_last_error(), "read at byte 0"));
    ms.fail_read = 0;
    t_ok(sp_pin_read(f->p, good, &obj)); /* nothing was lost: it loads once the source works */
    t_ok(sp_unpin(f->p, good));
    assert_int_equal(atomic_load(&ms.opens), atomic_load(&ms.closes) + 1); /* the failed open has no close */
    sp_source_methods v2 = m, noread = m;
    v2.version = 2;
    noread.read = NULL;
    sp_ref x;
    t_status(sp_put_lazy(f->p, "key-0", &sp_bytes_type, &(sp_lazy_options){.source = &v2}, &x), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "version 2"));
    t_status(sp_put_lazy(f->p, "key-0", &sp_bytes_type, &(sp_lazy_options){.source = &noread}, &x), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "lack a method"));
    t_ok(sp_release(f->p, missing));
    t_ok(sp_release(f->p, good));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(registration_touches_no_file, setup, teardown),
        cmocka_unit_test_setup_teardown(first_pin_loads_and_later_pins_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(clean_eviction_drops_without_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_changed_object_is_spilled_and_the_source_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_parsed_spills_instead_of_dropping, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lost_parsed_copy_loads_the_source, setup, teardown),
        cmocka_unit_test_setup_teardown(a_parsed_copy_that_cannot_be_written_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_load_that_does_not_fit_leaves_no_stamp, setup, teardown),
        cmocka_unit_test_setup_teardown(a_changed_file_is_stale_or_reloaded, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_sources_fail_that_object_only, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_registration_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_parsed_copy_follows_its_source, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_pin_keeps_the_source_home, setup, teardown),
        cmocka_unit_test_setup_teardown(a_changed_object_is_not_its_source_again, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reload_without_room_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(odd_sources_and_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_registration_out_of_memory_registers_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(handles_load_through_source_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(a_handle_changed_during_the_read_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(changed_handles_are_stale_or_reloaded, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_handles_fail_that_object_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
