/* The recency scenario of MemPool's own suite, for both policies: bounds of 80 bytes
 * in memory and 80000 on disk; objects of 16, 24 and 40 bytes. */
#include <stdlib.h>

#include "testlib.h"

typedef struct {
    char *dir;
    sp_pool *p;
    sp_ref a, b, c, d, e;
} fix;

static int setup(void **state, sp_policy pol)
{
    fix *f = calloc(1, sizeof *f);
    f->dir = t_tmpdir();
    f->p = t_pool(f->dir, 80, 80000, pol);
    f->a = t_put(f->p, 16, 1);
    f->b = t_put(f->p, 24, 2);
    f->c = t_put(f->p, 40, 3);
    *state = f;
    return 0;
}
static int setup_lru(void **state) { return setup(state, SP_POLICY_LRU); }
static int setup_mru(void **state) { return setup(state, SP_POLICY_MRU); }

static int teardown(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_close(f->p));
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void assert_usage(sp_pool *p, uint64_t mem, uint64_t mem_objs, uint64_t disk_objs)
{
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.memory_used, mem);
    assert_int_equal(s.objects_in_memory, mem_objs);
    assert_int_equal(s.objects_on_disk, disk_objs);
}

static void three_objects_fill_memory_exactly(void **state)
{
    fix *f = *state;
    assert_usage(f->p, 80, 3, 0);
    assert_int_equal(t_tier(f->p, f->a), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->c), SP_TIER_MEMORY);
}

static void lru_fourth_object_evicts_the_oldest(void **state)
{
    fix *f = *state;
    f->d = t_put(f->p, 16, 4);
    assert_int_equal(t_tier(f->p, f->a), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->c), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->d), SP_TIER_MEMORY);
    assert_usage(f->p, 80, 3, 1);
}

static void mru_fourth_object_evicts_the_newest(void **state)
{
    fix *f = *state;
    f->d = t_put(f->p, 16, 4);
    assert_int_equal(t_tier(f->p, f->a), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->c), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, f->d), SP_TIER_MEMORY);
    assert_usage(f->p, 56, 3, 1);
}

/* LRU: recency b, d, c after touching b; a 16-byte put evicts c (40) alone; then
 * restoring c evicts the next least recent, d. */
static void lru_touch_reorders_and_restore_evicts_next_victim(void **state)
{
    fix *f = *state;
    f->d = t_put(f->p, 16, 4); /* a out */
    t_touch(f->p, f->b);       /* order: b d c */
    f->e = t_put(f->p, 16, 5); /* needs 16: c is least recent */
    assert_int_equal(t_tier(f->p, f->c), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->d), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->e), SP_TIER_MEMORY);
    assert_usage(f->p, 56, 3, 2);
    /* order: e b d; restoring c (40) needs 16 more: d goes */
    t_check(f->p, f->c, 40, 3);
    assert_int_equal(t_tier(f->p, f->d), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->e), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->c), SP_TIER_MEMORY);
    assert_usage(f->p, 80, 3, 2);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.evictions, 3);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.hits, 1);
}

/* MRU: after d, recency d b a; touching a makes it the most recent, so a 40-byte put
 * evicts a (16) alone; restoring a then evicts the newest, e. */
static void mru_touch_reorders_and_restore_evicts_next_victim(void **state)
{
    fix *f = *state;
    f->d = t_put(f->p, 16, 4); /* c out; memory a b d = 56 */
    t_touch(f->p, f->a);       /* order: a d b */
    f->e = t_put(f->p, 40, 5); /* needs 16: a is most recent */
    assert_int_equal(t_tier(f->p, f->a), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->d), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->e), SP_TIER_MEMORY);
    assert_usage(f->p, 80, 3, 2);
    /* order: e d b; restoring a (16) evicts e (40) */
    t_check(f->p, f->a, 16, 1);
    assert_int_equal(t_tier(f->p, f->e), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p, f->d), SP_TIER_MEMORY);
    assert_int_equal(t_tier(f->p, f->b), SP_TIER_MEMORY);
    assert_usage(f->p, 56, 3, 2);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.evictions, 3);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.hits, 1);
}

static void release_all_leaves_both_tiers_empty(void **state)
{
    fix *f = *state;
    f->d = t_put(f->p, 16, 4);
    f->e = t_put(f->p, 24, 5);
    t_check(f->p, f->a, 16, 1);
    t_check(f->p, f->b, 24, 2);
    t_check(f->p, f->c, 40, 3);
    t_check(f->p, f->d, 16, 4);
    t_check(f->p, f->e, 24, 5);
    sp_ref all[] = {f->a, f->b, f->c, f->d, f->e};
    for (int i = 0; i < 5; i++) t_ok(sp_release(f->p, all[i]));
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
    assert_int_equal(s.objects_in_memory, 0);
    assert_int_equal(s.objects_on_disk, 0);
    assert_int_equal(t_count_files(sp_pool_session_dir(f->p)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(three_objects_fill_memory_exactly, setup_lru, teardown),
        cmocka_unit_test_setup_teardown(lru_fourth_object_evicts_the_oldest, setup_lru, teardown),
        cmocka_unit_test_setup_teardown(mru_fourth_object_evicts_the_newest, setup_mru, teardown),
        cmocka_unit_test_setup_teardown(lru_touch_reorders_and_restore_evicts_next_victim, setup_lru, teardown),
        cmocka_unit_test_setup_teardown(mru_touch_reorders_and_restore_evicts_next_victim, setup_mru, teardown),
        cmocka_unit_test_setup_teardown(release_all_leaves_both_tiers_empty, setup_lru, teardown),
        cmocka_unit_test_setup_teardown(release_all_leaves_both_tiers_empty, setup_mru, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
