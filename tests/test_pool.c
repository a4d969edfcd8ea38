/* The pool's API: put, pin, unpin, references, release, retain, tag, bounds, stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static void put_pin_returns_the_same_object(void **state)
{
    fix *f = *state;
    sp_bytes *b = sp_bytes_from("hello", 5);
    sp_ref r;
    t_ok(sp_put(f->p, b, &sp_bytes_type, NULL, &r));
    assert_int_not_equal(r, SP_REF_NULL);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    assert_ptr_equal(o, b);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
}

static void spilled_object_comes_back_intact(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 7);
    sp_ref b = t_put(f->p, 600, 8); /* a goes to disk */
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    t_check(f->p, a, 600, 7); /* b goes to disk */
    assert_int_equal(t_tier(f->p, b), SP_TIER_DISK);
    t_check(f->p, b, 600, 8);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, b));
}

static void empty_object_round_trips(void **state)
{
    fix *f = *state;
    sp_ref z = t_put(f->p, 0, 0);
    sp_ref a = t_put(f->p, 1000, 1);
    /* LRU order a, z: making room for b takes z (0 bytes) first, then a. */
    sp_ref b = t_put(f->p, 1000, 2);
    assert_int_equal(t_tier(f->p, z), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    t_check(f->p, z, 0, 0);
    assert_int_equal(t_tier(f->p, z), SP_TIER_MEMORY);
    t_check(f->p, a, 1000, 1);
    t_check(f->p, b, 1000, 2);
    t_ok(sp_release(f->p, z));
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, b));
}

static void pins_nest_and_unpin_of_unpinned_is_an_error(void **state)
{
    fix *f = *state;
    sp_ref r = t_put(f->p, 10, 1);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    t_ok(sp_pin(f->p, r, &o));
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, r, &info));
    assert_int_equal(info.pins, 2);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_unpin(f->p, r));
    t_status(sp_unpin(f->p, r), SP_ERR_NOT_PINNED);
    assert_non_null(strstr(sp_last_error(), "not pinned"));
    t_ok(sp_release(f->p, r));
}

static void pinned_objects_are_never_evicted(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 400, 1);
    void *o;
    t_ok(sp_pin(f->p, a, &o));
    sp_ref b = t_put(f->p, 400, 2);
    sp_ref c = t_put(f->p, 400, 3); /* must evict b, not the pinned a */
    assert_int_equal(t_tier(f->p, a), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, b), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, c), SP_TIER_MEMORY);
    t_ok(sp_unpin(f->p, a));
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, b));
    t_ok(sp_release(f->p, c));
}

static void memory_held_by_pins_gives_memory_full_and_loses_nothing(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1);
    void *o;
    t_ok(sp_pin(f->p, a, &o));
    sp_bytes *big = sp_bytes_new(500);
    sp_ref r = 12345;
    t_status(sp_put(f->p, big, &sp_bytes_type, NULL, &r), SP_ERR_MEMORY_FULL);
    assert_non_null(strstr(sp_last_error(), "memory bound"));
    big->data[0] = 1; /* still ours */
    sp_bytes_free(big);
    t_ok(sp_unpin(f->p, a));
    t_check(f->p, a, 600, 1);
    t_ok(sp_release(f->p, a));
}

static void objects_larger_than_a_bound_are_refused(void **state)
{
    fix *f = *state;
    sp_bytes *big = sp_bytes_new(1001);
    sp_ref r;
    t_status(sp_put(f->p, big, &sp_bytes_type, NULL, &r), SP_ERR_TOO_BIG);
    assert_non_null(strstr(sp_last_error(), "memory bound"));
    sp_bytes_free(big);
    sp_pool *p2 = t_pool(f->dir, 1000, 500, SP_POLICY_LRU);
    big = sp_bytes_new(600);
    t_status(sp_put(p2, big, &sp_bytes_type, NULL, &r), SP_ERR_TOO_BIG);
    assert_non_null(strstr(sp_last_error(), "disk bound"));
    sp_bytes_free(big);
    t_ok(sp_pool_close(p2));
}

static void released_and_foreign_refs_are_bad_refs(void **state)
{
    fix *f = *state;
    sp_ref r = t_put(f->p, 10, 1);
    t_ok(sp_release(f->p, r));
    void *o;
    t_status(sp_pin(f->p, r, &o), SP_ERR_BAD_REF);
    assert_non_null(strstr(sp_last_error(), "released"));
    t_status(sp_unpin(f->p, r), SP_ERR_BAD_REF);
    t_status(sp_release(f->p, r), SP_ERR_BAD_REF);
    t_status(sp_addref(f->p, r), SP_ERR_BAD_REF);
    t_status(sp_pin(f->p, SP_REF_NULL, &o), SP_ERR_BAD_REF);
    t_status(sp_pin(f->p, 0xdeadbeef00000077ull, &o), SP_ERR_BAD_REF);
    /* A new object in the reused slot does not revive the old ref. */
    sp_ref r2 = t_put(f->p, 10, 2);
    assert_int_not_equal(r2, r);
    t_status(sp_pin(f->p, r, &o), SP_ERR_BAD_REF);
    t_ok(sp_release(f->p, r2));
}

static void references_count_and_last_release_frees(void **state)
{
    fix *f = *state;
    sp_ref r = t_put(f->p, 100, 1);
    t_ok(sp_addref(f->p, r));
    t_ok(sp_release(f->p, r));
    t_check(f->p, r, 100, 1);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 100);
    t_ok(sp_release(f->p, r));
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.objects_in_memory, 0);
}

static void last_release_of_a_pinned_object_is_busy(void **state)
{
    fix *f = *state;
    sp_ref r = t_put(f->p, 100, 1);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    t_status(sp_release(f->p, r), SP_ERR_BUSY);
    assert_non_null(strstr(sp_last_error(), "pinned"));
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
}

static void unpin_recharges_a_changed_size(void **state)
{
    fix *f = *state;
    sp_ref r = t_put(f->p, 100, 1);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    ((sp_bytes *)o)->len = 40; /* shrink in place */
    t_ok(sp_unpin(f->p, r));
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 40);
    t_ok(sp_release(f->p, r));
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 0);
}

static void release_removes_the_spill_file(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1);
    sp_ref b = t_put(f->p, 600, 2);
    const char *sess = sp_pool_session_dir(f->p);
    assert_int_equal(t_count_files(sess), 1);
    t_ok(sp_release(f->p, a));
    assert_int_equal(t_count_files(sess), 0);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0);
    t_ok(sp_release(f->p, b));
}

static void restore_removes_the_file_exclusive_tiers(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1);
    sp_ref b = t_put(f->p, 300, 2);
    sp_ref c = t_put(f->p, 300, 3); /* a out */
    const char *sess = sp_pool_session_dir(f->p);
    assert_int_equal(t_count_files(sess), 1);
    t_ok(sp_release(f->p, b));
    t_ok(sp_release(f->p, c));
    t_check(f->p, a, 600, 1);
    assert_int_equal(t_count_files(sess), 0);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(s.objects_on_disk, 0);
    t_ok(sp_release(f->p, a));
}

static void tagged_object_uses_its_name_and_is_removed_unless_retained(void **state)
{
    fix *f = *state;
    sp_put_options opt = {.tag = "my-object.bin", .retain = 0};
    sp_bytes *b = sp_bytes_from("0123456789", 10);
    sp_ref r;
    t_ok(sp_put(f->p, b, &sp_bytes_type, &opt, &r));
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, r, &info));
    char want[4200];
    snprintf(want, sizeof want, "%s/my-object.bin", f->dir);
    assert_string_equal(info.path, want);
    /* Spill it by filling memory. */
    sp_ref big = t_put(f->p, 995, 3);
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK);
    assert_int_equal(access(want, F_OK), 0);
    t_ok(sp_release(f->p, r));
    assert_int_not_equal(access(want, F_OK), 0);
    t_ok(sp_release(f->p, big));
}

static void duplicate_and_unsafe_tags_are_refused(void **state)
{
    fix *f = *state;
    sp_put_options opt = {.tag = "same"};
    sp_ref r, r2;
    sp_bytes *b = sp_bytes_new(4);
    t_ok(sp_put(f->p, b, &sp_bytes_type, &opt, &r));
    sp_bytes *c = sp_bytes_new(4);
    t_status(sp_put(f->p, c, &sp_bytes_type, &opt, &r2), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "same"));
    const char *bad[] = {"", "a/b", "..", ".", "session-x", "../escape"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_put_options o2 = {.tag = bad[i]};
        t_status(sp_put(f->p, c, &sp_bytes_type, &o2, &r2), SP_ERR_INVALID);
    }
    sp_bytes_free(c);
    t_ok(sp_release(f->p, r));
}

static void retained_file_outlives_release_and_pool(void **state)
{
    fix *f = *state;
    sp_put_options opt = {.tag = "kept.sp", .retain = 1};
    sp_bytes *b = sp_bytes_from("precious", 8);
    sp_ref r;
    t_ok(sp_put(f->p, b, &sp_bytes_type, &opt, &r));
    char path[4200];
    snprintf(path, sizeof path, "%s/kept.sp", f->dir);
    t_ok(sp_release(f->p, r)); /* written at release, never spilled before */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 8);
    assert_int_equal(st.st_mode & 0777, 0600);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0); /* no longer the pool's */

    /* Untagged retained object alive at close: written then, kept after. */
    sp_put_options keep = {.retain = 1};
    sp_bytes *c = sp_bytes_from("also kept", 9);
    t_ok(sp_put(f->p, c, &sp_bytes_type, &keep, &r));
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, r, &info));
    char kept[512];
    snprintf(kept, sizeof kept, "%s", info.path);
    t_ok(sp_pool_close(f->p));
    f->p = NULL;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(stat(kept, &st), 0);
    /* Only the two kept files remain in the directory. */
    assert_int_equal(t_count_files(f->dir), 2);
}

static void retained_object_restored_keeps_its_file(void **state)
{
    fix *f = *state;
    sp_put_options keep = {.retain = 1};
    sp_bytes *b = sp_bytes_new(600);
    memset(b->data, 5, 600);
    sp_ref r;
    t_ok(sp_put(f->p, b, &sp_bytes_type, &keep, &r));
    sp_ref o2 = t_put(f->p, 600, 1); /* r spills */
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, r, &info));
    assert_true(info.disk_bytes > 600);
    assert_int_equal(access(info.path, F_OK), 0);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
    assert_int_equal(access(info.path, F_OK), 0);
    t_ok(sp_release(f->p, o2));
}

static void printing_shows_bounds_policy_and_counters(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1);
    sp_ref b = t_put(f->p, 600, 2);
    t_check(f->p, a, 600, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    t_ok(sp_pool_fprint(f->p, m));
    fclose(m);
    const char *want[] = {"policy=lru", "memory: 600 B used of 1000 B", "disk:", "of 97.66 KiB",
                          "hits 0, misses 1, evictions 2", "spilled 1.17 KiB", "MB/s"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(buf, want[i])) fail_msg("'%s' not in:\n%s", want[i], buf);
    free(buf);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    m = open_memstream(&buf, &len);
    sp_stats_fprint_json(&s, m, "\"x\":1");
    fclose(m);
    const char *keys[] = {"{\"x\":1,", "\"memory\":{\"used\":600,\"bound\":1000", "\"disk\":{\"used\":",
                          "\"policy\":\"lru\"", "\"hits\":0", "\"misses\":1", "\"evictions\":2",
                          "\"bytes_spilled\":1200", "\"bytes_restored\":600", "\"spill_mb_s\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(buf, keys[i])) fail_msg("'%s' not in: %s", keys[i], buf);
    free(buf);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, b));
}

static void null_arguments_are_invalid(void **state)
{
    fix *f = *state;
    sp_ref r;
    void *o;
    t_status(sp_put(f->p, NULL, &sp_bytes_type, NULL, &r), SP_ERR_INVALID);
    t_status(sp_put(NULL, NULL, NULL, NULL, NULL), SP_ERR_INVALID);
    t_status(sp_pin(f->p, 1, NULL), SP_ERR_INVALID);
    t_status(sp_pin(NULL, 1, &o), SP_ERR_INVALID);
    t_status(sp_pool_open(NULL, NULL), SP_ERR_INVALID);
    t_ok(sp_pool_close(NULL));
}

/* A read-only pin keeps the spill file as a copy: evicting the object again writes
 * nothing; a mutable pin ends that. */
static void read_pins_keep_a_clean_copy(void **state)
{
    fix *f = *state;
    sp_ref a = t_put(f->p, 600, 1), b = t_put(f->p, 600, 2); /* a spilled */
    const void *o;
    t_ok(sp_pin_read(f->p, a, &o)); /* b spilled to make room; a's file stays */
    t_ok(sp_unpin(f->p, a));
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 2);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.files_written, 2);
    assert_int_equal(s.disk_used, t_dir_bytes(sp_pool_session_dir(f->p))); /* the copy counts */
    t_ok(sp_pin_read(f->p, b, &o)); /* a goes: a clean copy, dropped */
    t_ok(sp_unpin(f->p, b));
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.files_written, 2);
    assert_int_equal(s.clean_drops, 1);
    t_check(f->p, a, 600, 1); /* a mutable pin: a's file goes, b is dropped (clean) */
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.files_written, 2);
    assert_int_equal(s.clean_drops, 2);
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 1); /* b's */
    t_check(f->p, b, 600, 2); /* a changed (maybe): written again */
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.files_written, 3);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, b));
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 0);
}

/* A mutable pin of an object in memory with a clean copy on disk: the copy goes at
 * once (it stops being the object's copy), so it holds no disk bytes, and the next
 * spill of the object does not need room for two files. */
static void mutable_pin_drops_the_clean_copy_of_a_read_pin(void **state)
{
    fix *f = *state;
    sp_pool *p = t_pool(f->dir, 1000, 1500, SP_POLICY_LRU); /* room for two files, not three */
    sp_ref a = t_put(p, 600, 1), b = t_put(p, 600, 2); /* a spilled */
    const void *ro;
    t_ok(sp_pin_read(p, a, &ro)); /* b spilled; a's file stays: two files */
    t_ok(sp_unpin(p, a));
    assert_int_equal(t_count_files(sp_pool_session_dir(p)), 2);
    void *o;
    t_ok(sp_pin(p, a, &o));
    ((sp_bytes *)o)->data[0] = 99; /* changed: the file on disk is stale */
    assert_int_equal(t_count_files(sp_pool_session_dir(p)), 1); /* b's */
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.disk_used, t_dir_bytes(sp_pool_session_dir(p)));
    t_ok(sp_unpin(p, a));
    sp_ref c = t_put(p, 600, 3); /* a is written again: two files, within the bound */
    assert_int_equal(t_tier(p, a), SP_TIER_DISK);
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.disk_used, t_dir_bytes(sp_pool_session_dir(p)));
    t_ok(sp_release(p, c));
    t_ok(sp_pin(p, a, &o));
    assert_int_equal(((sp_bytes *)o)->data[0], 99);
    t_ok(sp_unpin(p, a));
    t_check(p, b, 600, 2);
    t_ok(sp_release(p, a));
    t_ok(sp_release(p, b));
    t_ok(sp_pool_close(p));
}

/* A buffer that can grow while pinned (sp_bytes cannot). */
typedef struct {
    size_t len;
    unsigned char *d;
} t_vec;
static size_t t_vec_size(const void *o) { return ((const t_vec *)o)->len; }
static sp_status t_vec_encode(const void *o, sp_writer *w) { return sp_write(w, ((const t_vec *)o)->d, ((const t_vec *)o)->len); }
static void t_vec_free(void *o)
{
    t_vec *v = o;
    if (v) free(v->d);
    free(v);
}
static sp_status t_vec_decode(sp_reader *r, uint64_t len, void **out)
{
    t_vec *v = calloc(1, sizeof *v);
    if (!v || !(v->d = malloc(len ? len : 1))) {
        t_vec_free(v);
        return SP_ERR_NOMEM;
    }
    v->len = len;
    sp_status st = sp_read(r, v->d, len);
    if (st != SP_OK) t_vec_free(v);
    else *out = v;
    return st;
}
static const sp_type t_vec_type = {"vec", t_vec_size, t_vec_encode, t_vec_decode, t_vec_free, NULL};

/* An object that grew past the memory bound while pinned is spilled at unpin and
 * then refused with a clear error, not reported as memory held by pins. */
static void object_grown_past_the_bound_is_too_big_to_pin(void **state)
{
    fix *f = *state;
    t_vec *v = calloc(1, sizeof *v);
    assert_non_null(v);
    v->len = 100;
    v->d = calloc(1, 100);
    sp_ref r;
    t_ok(sp_put(f->p, v, &t_vec_type, NULL, &r));
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    t_vec *w = o;
    unsigned char *grown = realloc(w->d, 2000);
    assert_non_null(grown);
    memset(grown, 7, 2000);
    w->d = grown;
    w->len = 2000; /* twice the bound */
    t_ok(sp_unpin(f->p, r));
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK);
    t_status(sp_pin(f->p, r, &o), SP_ERR_TOO_BIG);
    assert_non_null(strstr(sp_last_error(), "larger than the memory bound"));
    /* the pool goes on */
    sp_ref q = t_put(f->p, 600, 4);
    t_check(f->p, q, 600, 4);
    t_ok(sp_release(f->p, q));
    t_ok(sp_release(f->p, r));
}

/* A freed big buffer is handed to the next allocation of its size: no fresh pages
 * (and their faults) for a restore that follows a spill. */
static void big_buffers_are_recycled(void **state)
{
    (void)state;
    sp_bytes *a = sp_bytes_new(3u << 20);
    assert_non_null(a);
    unsigned char *where = a->data;
    sp_bytes_free(a);
    sp_bytes *b = sp_bytes_new((3u << 20) - 100); /* the same 2 MiB size class */
    assert_ptr_equal(b->data, where);
    assert_int_equal(b->len, (3u << 20) - 100);
    sp_bytes *c = sp_bytes_new(3u << 20); /* none kept now: a fresh block */
    assert_ptr_not_equal(c->data, where);
    sp_bytes_free(b);
    sp_bytes_free(c);
    /* at most 64 MiB are kept; the rest go back to the system (ASan checks no leak) */
    sp_bytes *many[20];
    for (int i = 0; i < 20; i++) many[i] = sp_bytes_new(8u << 20);
    for (int i = 0; i < 20; i++) sp_bytes_free(many[i]);
}

/* Put with .pin: pinned from the start (not a victim, counted as pinned) until the
 * caller's unpin, after which it is an ordinary object. */
static void put_pinned_is_not_a_victim_until_unpinned(void **state)
{
    fix *f = *state;
    sp_ref a;
    sp_bytes *b = sp_bytes_new(600);
    memset(b->data, 1, 600);
    t_ok(sp_put(f->p, b, &sp_bytes_type, &(sp_put_options){.pin = 1}, &a));
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, a, &info));
    assert_int_equal(info.pins, 1);
    sp_ref c;
    sp_bytes *other = sp_bytes_new(600);
    t_status(sp_put(f->p, other, &sp_bytes_type, NULL, &c), SP_ERR_MEMORY_FULL);
    sp_bytes_free(other); /* still the caller's after an error */
    t_status(sp_release(f->p, a), SP_ERR_BUSY);
    t_ok(sp_unpin(f->p, a));
    sp_ref d = t_put(f->p, 600, 3); /* now a can go to disk */
    assert_int_equal(t_tier(f->p, a), SP_TIER_DISK);
    t_ok(sp_release(f->p, a));
    t_ok(sp_release(f->p, d));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(put_pin_returns_the_same_object),
        T(spilled_object_comes_back_intact),
        T(empty_object_round_trips),
        T(pins_nest_and_unpin_of_unpinned_is_an_error),
        T(pinned_objects_are_never_evicted),
        T(memory_held_by_pins_gives_memory_full_and_loses_nothing),
        T(objects_larger_than_a_bound_are_refused),
        T(released_and_foreign_refs_are_bad_refs),
        T(references_count_and_last_release_frees),
        T(last_release_of_a_pinned_object_is_busy),
        T(unpin_recharges_a_changed_size),
        T(release_removes_the_spill_file),
        T(restore_removes_the_file_exclusive_tiers),
        T(tagged_object_uses_its_name_and_is_removed_unless_retained),
        T(duplicate_and_unsafe_tags_are_refused),
        T(retained_file_outlives_release_and_pool),
        T(retained_object_restored_keeps_its_file),
        T(printing_shows_bounds_policy_and_counters),
        T(null_arguments_are_invalid),
        T(read_pins_keep_a_clean_copy),
        T(put_pinned_is_not_a_victim_until_unpinned),
        T(mutable_pin_drops_the_clean_copy_of_a_read_pin),
        T(object_grown_past_the_bound_is_too_big_to_pin),
        cmocka_unit_test(big_buffers_are_recycled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
