/* A spilled object's file is its own: the pool refuses a file swapped in from another
 * object, does not drop a copy in memory on the strength of a file that is gone,
 * changed, or unreadable under today's key (it writes it again), keeps its books
 * right after a close that failed half way, and is not hung by a FIFO in a file's
 * place. Each case leaves the pool usable and every object intact. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define KB 1024u
#define OBJ (600 * KB)

static const unsigned char key1[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char key2[32] = "fedcba9876543210fedcba9876543210";

typedef t_fix fix;

static sp_pool *open_with(fix *f, uint64_t mem, uint64_t disk, const char *filters)
{
    sp_config c;
    t_config(&c, f->dir, mem, disk, SP_POLICY_LRU);
    c.filters = filters;
    c.key = key1;
    t_ok(sp_pool_open(&f->p, &c));
    return f->p;
}

/* Under LRU with a 1 MiB bound, a put of OBJ bytes sends the oldest object to disk. */
static void push_out(sp_pool *p, unsigned seed)
{
    sp_ref filler = t_put(p, OBJ, seed);
    t_ok(sp_release(p, filler));
}

static void must_say(const char *want)
{
    if (!strstr(sp_last_error(), want)) fail_msg("the error \"%s\" lacks \"%s\"", sp_last_error(), want);
}

static void swap_files(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *da = t_slurp(a, &na), *db = t_slurp(b, &nb);
    t_spew(a, db, nb);
    t_spew(b, da, na);
    free(da);
    free(db);
}

/* Two objects' files swapped (or one copied over the other) are refused, with and
 * without encryption, and read again once put back. */
static void a_file_from_another_object_is_refused(void **state)
{
    fix *f = *state;
    static const char *chains[] = {"", "zstd,encrypt"};
    for (int c = 0; c < 2; c++) {
        sp_pool *p = open_with(f, 1024 * KB, 64 * 1024 * KB, chains[c]);
        sp_ref a = t_put(p, OBJ, 1), b = t_put(p, OBJ, 2);
        push_out(p, 9); /* a and b go to disk */
        assert_int_equal(t_tier(p, a), SP_TIER_DISK);
        assert_int_equal(t_tier(p, b), SP_TIER_DISK);
        char pa[600], pb[600];
        t_disk_path(p, a, pa, sizeof pa);
        t_disk_path(p, b, pb, sizeof pb);
        swap_files(pa, pb);
        void *o;
        t_status(sp_pin(p, a, &o), SP_ERR_CORRUPT);
        must_say("not the file written for this object");
        must_say(pa);
        t_status(sp_pin(p, b, &o), SP_ERR_CORRUPT);
        swap_files(pa, pb); /* put back: nothing was lost */
        t_check(p, a, OBJ, 1);
        t_check(p, b, OBJ, 2);
        t_ok(sp_release(p, a));
        t_ok(sp_release(p, b));
        t_ok(sp_pool_close(p));
        f->p = NULL;
    }
}

/* A copy read back with sp_pin_read keeps its file; if the file is then deleted,
 * replaced by another object's, or left under an old key, evicting the copy writes
 * it again instead of dropping the only intact copy. */
static void a_clean_copy_whose_file_changed_is_written_again(void **state)
{
    fix *f = *state;
    sp_pool *p = open_with(f, 1024 * KB, 64 * 1024 * KB, "encrypt");
    for (int round = 0; round < 3; round++) {
        sp_ref a = t_put(p, OBJ, 10 + (unsigned)round), b = t_put(p, OBJ, 20);
        push_out(p, 30);
        char pa[600], pb[600];
        t_disk_path(p, a, pa, sizeof pa);
        t_disk_path(p, b, pb, sizeof pb);
        const void *o;
        t_ok(sp_pin_read(p, a, &o)); /* back in memory, its file kept: a clean copy */
        t_ok(sp_unpin(p, a));
        if (round == 0) assert_int_equal(unlink(pa), 0);
        if (round == 1) {
            size_t n;
            unsigned char *d = t_slurp(pb, &n);
            t_spew(pa, d, n);
            free(d);
        }
        if (round == 2) t_ok(sp_pool_set_key(p, key2)); /* a's file is under key1 */
        push_out(p, 31);
        push_out(p, 32); /* a is evicted again */
        assert_int_equal(t_tier(p, a), SP_TIER_DISK);
        t_check(p, a, OBJ, 10 + (unsigned)round);
        t_ok(sp_release(p, a));
        if (round == 2) t_ok(sp_pool_set_key(p, key1)); /* b was written under key1 */
        t_check(p, b, OBJ, 20);
        t_ok(sp_release(p, b));
    }
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
}

/* A retained object read back and left clean: if its file is deleted before the
 * pool closes, the close writes it again. */
static void close_rewrites_a_retained_file_that_vanished(void **state)
{
    fix *f = *state;
    sp_pool *p = open_with(f, 1024 * KB, 64 * 1024 * KB, NULL);
    sp_bytes *d = sp_bytes_new(OBJ);
    for (size_t i = 0; i < OBJ; i++) d->data[i] = (unsigned char)(i * 7);
    sp_ref a;
    t_ok(sp_put(p, d, &sp_bytes_type, &(sp_put_options){.tag = "out.sp", .retain = 1}, &a));
    push_out(p, 40);
    push_out(p, 41);
    char pa[600];
    t_disk_path(p, a, pa, sizeof pa);
    const void *o;
    t_ok(sp_pin_read(p, a, &o));
    t_ok(sp_unpin(p, a));
    assert_int_equal(unlink(pa), 0);
    t_ok(sp_pool_close(p));
    f->p = NULL;
    struct stat sb;
    assert_int_equal(stat(pa, &sb), 0);
    assert_true((size_t)sb.st_size > OBJ);
}

/* A close that fails on its second retained object has written the first: the pool
 * stays usable, and that first object, evicted as a clean copy, reads back whole. */
static void after_a_failed_close_the_written_object_reads_back(void **state)
{
    fix *f = *state;
    sp_pool *p = open_with(f, 4096 * KB, 1536 * KB, NULL); /* room on disk for one object */
    sp_ref r[2];
    for (int i = 0; i < 2; i++) {
        sp_bytes *d = sp_bytes_new(1024 * KB);
        for (size_t k = 0; k < d->len; k++) d->data[k] = (unsigned char)(k * 3 + (size_t)i);
        char tag[16];
        snprintf(tag, sizeof tag, "keep%d.sp", i);
        t_ok(sp_put(p, d, &sp_bytes_type, &(sp_put_options){.tag = tag, .retain = 1}, &r[i]));
    }
    t_status(sp_pool_close(p), SP_ERR_DISK_FULL);
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.files_written, 1);
    sp_ref_info info;
    t_ok(sp_ref_query(p, r[0], &info));
    int w = info.disk_bytes ? 0 : 1; /* the one the close wrote */
    t_ok(sp_ref_query(p, r[w], &info));
    assert_true(info.disk_bytes > 1024 * KB);
    t_touch(p, r[1 - w]); /* the written one is now the first victim, a clean drop */
    sp_ref filler[3];
    for (int i = 0; i < 3; i++) filler[i] = t_put(p, 1024 * KB, 5);
    assert_int_equal(t_tier(p, r[w]), SP_TIER_DISK);
    for (int i = 0; i < 3; i++) t_ok(sp_release(p, filler[i]));
    const void *o;
    t_ok(sp_pin_read(p, r[w], &o));
    const sp_bytes *got = o;
    assert_int_equal(got->len, 1024 * KB);
    for (size_t k = 0; k < got->len; k++)
        if (got->data[k] != (unsigned char)(k * 3 + (size_t)w)) fail_msg("byte %zu differs", k);
    t_ok(sp_unpin(p, r[w]));
    t_ok(sp_release(p, r[w]));     /* its file stays, out of the pool's books */
    t_ok(sp_release(p, r[1 - w])); /* now there is room to write the other */
}

/* A FIFO put in a spill file's place is refused at once, not waited on. */
static void a_fifo_in_place_of_a_file_does_not_hang(void **state)
{
    fix *f = *state;
    sp_pool *p = open_with(f, 1024 * KB, 64 * 1024 * KB, NULL);
    sp_ref a = t_put(p, OBJ, 50);
    push_out(p, 51);
    char pa[600], saved[700];
    t_disk_path(p, a, pa, sizeof pa);
    snprintf(saved, sizeof saved, "%s.saved", pa);
    assert_int_equal(rename(pa, saved), 0);
    assert_int_equal(mkfifo(pa, 0600), 0);
    void *o;
    t_status(sp_pin(p, a, &o), SP_ERR_CORRUPT);
    must_say("not a regular file");
    assert_int_equal(unlink(pa), 0);
    assert_int_equal(rename(saved, pa), 0);
    t_check(p, a, OBJ, 50);
    t_ok(sp_release(p, a));
}

/* A tag naming a file the pool did not write (the caller's, another pool's) is
 * refused unless the put says replace; the file is left as it was. */
static void a_tag_does_not_take_the_place_of_a_file_not_written_by_the_pool(void **state)
{
    fix *f = *state;
    char notes[600];
    snprintf(notes, sizeof notes, "%s/notes.txt", f->dir);
    t_spew(notes, (const unsigned char *)"mine\n", 5);
    sp_pool *p = open_with(f, 1024 * KB, 64 * 1024 * KB, NULL);
    sp_bytes *d = sp_bytes_new(OBJ);
    memset(d->data, 1, OBJ);
    sp_ref r;
    t_status(sp_put(p, d, &sp_bytes_type, &(sp_put_options){.tag = "notes.txt"}, &r), SP_ERR_BUSY);
    must_say(notes);
    size_t n;
    unsigned char *back = t_slurp(notes, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(back, "mine\n", 5);
    free(back);
    /* a second pool on the same directory cannot take the first one's tag either */
    t_ok(sp_put(p, d, &sp_bytes_type, &(sp_put_options){.tag = "shared.sp"}, &r));
    push_out(p, 60);
    push_out(p, 61);
    assert_int_equal(t_tier(p, r), SP_TIER_DISK);
    sp_pool *q;
    sp_config c;
    t_config(&c, f->dir, 1024 * KB, 64 * 1024 * KB, SP_POLICY_LRU);
    t_ok(sp_pool_open(&q, &c));
    sp_bytes *e = sp_bytes_new(OBJ);
    memset(e->data, 2, OBJ);
    sp_ref r2;
    t_status(sp_put(q, e, &sp_bytes_type, &(sp_put_options){.tag = "shared.sp"}, &r2), SP_ERR_BUSY);
    const void *o;
    t_ok(sp_pin_read(p, r, &o)); /* the first pool's object is untouched */
    for (size_t i = 0; i < OBJ; i++)
        if (((const sp_bytes *)o)->data[i] != 1) fail_msg("byte %zu differs", i);
    t_ok(sp_unpin(p, r));
    /* asked to replace, it does */
    t_ok(sp_put(q, e, &sp_bytes_type, &(sp_put_options){.tag = "notes.txt", .replace = 1, .retain = 1}, &r2));
    t_ok(sp_release(q, r2)); /* written on release */
    back = t_slurp(notes, &n);
    assert_true(n > OBJ);
    free(back);
    t_ok(sp_pool_close(q));
    t_ok(sp_release(p, r));
}

/* The check before a tagged object's first write cannot see a file made after it:
 * the store's commit then refuses to replace that file. A type whose encode makes
 * the file stands in for another process doing so at the worst moment. */
static char race_path[700];

static sp_status racing_encode(const void *obj, sp_writer *w)
{
    t_spew(race_path, (const unsigned char *)"theirs\n", 7);
    return sp_bytes_type.encode(obj, w);
}

static void a_tag_file_made_during_the_write_is_not_replaced(void **state)
{
    fix *f = *state;
    snprintf(race_path, sizeof race_path, "%s/race.sp", f->dir);
    sp_type racing = sp_bytes_type;
    racing.encode = racing_encode;
    sp_pool *p = open_with(f, 1024 * KB, 64 * 1024 * KB, NULL);
    sp_bytes *d = sp_bytes_new(OBJ);
    memset(d->data, 3, OBJ);
    sp_ref r;
    t_ok(sp_put(p, d, &racing, &(sp_put_options){.tag = "race.sp", .retain = 1}, &r)); /* no file yet */
    t_status(sp_release(p, r), SP_ERR_BUSY); /* written on release: the file appeared meanwhile */
    must_say(race_path);
    must_say("did not write");
    size_t n;
    unsigned char *back = t_slurp(race_path, &n);
    assert_int_equal(n, 7);
    assert_memory_equal(back, "theirs\n", 7);
    free(back);
    assert_int_equal(t_count_files(sp_pool_session_dir(p)), 0); /* what was written is gone */
    const void *o; /* the object is still there, unchanged */
    t_ok(sp_pin_read(p, r, &o));
    for (size_t i = 0; i < OBJ; i++)
        if (((const sp_bytes *)o)->data[i] != 3) fail_msg("byte %zu differs", i);
    t_ok(sp_unpin(p, r));
    racing.encode = sp_bytes_type.encode; /* the pool holds &racing: a plain encode from now on */
    assert_int_equal(unlink(race_path), 0);
    t_ok(sp_release(p, r)); /* now the name is free */
    back = t_slurp(race_path, &n);
    assert_true(n > OBJ);
    free(back);
}

/* A relative spill directory is made absolute at open: a chdir afterwards neither
 * loses the pool's files nor leaves its session behind. A blank one is refused. */
static void a_relative_dir_survives_a_chdir(void **state)
{
    fix *f = *state;
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    sp_config c;
    t_config(&c, "spill", 1024 * KB, 64 * 1024 * KB, SP_POLICY_LRU);
    t_ok(sp_pool_open(&f->p, &c));
    assert_int_equal(chdir("/"), 0);
    sp_ref a = t_put(f->p, OBJ, 70);
    push_out(f->p, 71);
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    t_check(f->p, a, OBJ, 70);
    t_ok(sp_release(f->p, a));
    t_ok(sp_pool_close(f->p));
    f->p = NULL;
    char spill[700];
    snprintf(spill, sizeof spill, "%s/spill", f->dir);
    assert_int_equal(t_count_files(spill), 0); /* no session, no lock left */
    assert_int_equal(chdir(cwd), 0);
    setenv("SPILLPOOL_DIR", " \t", 1);
    t_status(sp_config_from_env(&c), SP_ERR_INVALID);
    must_say("SPILLPOOL_DIR");
    unsetenv("SPILLPOOL_DIR");
}

#define T(name) cmocka_unit_test_setup_teardown(name, t_fix_setup, t_fix_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_file_from_another_object_is_refused),
        T(a_clean_copy_whose_file_changed_is_written_again),
        T(close_rewrites_a_retained_file_that_vanished),
        T(after_a_failed_close_the_written_object_reads_back),
        T(a_fifo_in_place_of_a_file_does_not_hang),
        T(a_tag_does_not_take_the_place_of_a_file_not_written_by_the_pool),
        T(a_tag_file_made_during_the_write_is_not_replaced),
        T(a_relative_dir_survives_a_chdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
