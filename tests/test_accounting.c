/* Accounting stays exact under random put/pin/unpin/addref/release sequences,
 * checked after every step against a simple model and against the files on disk. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define MAX_OBJS 64

typedef struct {
    sp_ref ref;
    size_t len;
    unsigned seed;
    int refs, held_pins;
    sp_tier tier; /* as last seen */
} mobj;

typedef struct {
    mobj o[MAX_OBJS];
    int n;
    uint64_t pins, misses, evictions;
} model;

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

/* Compare the pool with the model; count MEM->DISK moves as evictions. */
static void check(sp_pool *p, model *m, uint64_t mem_bound)
{
    uint64_t mem = 0, disk = 0, in_mem = 0, pinned = 0;
    for (int i = 0; i < m->n; i++) {
        sp_ref_info info;
        t_ok(sp_ref_query(p, m->o[i].ref, &info));
        if (m->o[i].tier == SP_TIER_MEMORY && info.tier == SP_TIER_DISK) m->evictions++;
        m->o[i].tier = info.tier;
        assert_int_equal(info.refs, m->o[i].refs);
        assert_int_equal(info.pins, m->o[i].held_pins);
        assert_int_equal(info.size, m->o[i].len);
        if (info.tier == SP_TIER_MEMORY) {
            mem += m->o[i].len;
            in_mem++;
            assert_int_equal(info.disk_bytes, 0);
        } else {
            assert_true(info.disk_bytes > m->o[i].len);
            assert_int_equal(m->o[i].held_pins, 0);
        }
        disk += info.disk_bytes;
        if (m->o[i].held_pins) pinned++;
    }
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.memory_used, mem);
    assert_true(s.memory_used <= mem_bound);
    assert_int_equal(s.disk_used, disk);
    assert_int_equal(s.disk_used, t_dir_bytes(sp_pool_session_dir(p)));
    assert_int_equal(s.objects_in_memory, in_mem);
    assert_int_equal(s.objects_on_disk, (uint64_t)m->n - in_mem);
    assert_int_equal(s.objects_pinned, pinned);
    assert_int_equal(s.hits + s.misses, m->pins);
    assert_int_equal(s.misses, m->misses);
    assert_int_equal(s.evictions, m->evictions);
    assert_int_equal(s.files_written, s.evictions);
    assert_int_equal(s.files_read, s.misses);
}

static void pin_model(sp_pool *p, model *m, int i, int hold)
{
    mobj *o = &m->o[i];
    m->pins++;
    if (o->tier == SP_TIER_DISK) m->misses++;
    void *obj;
    t_ok(sp_pin(p, o->ref, &obj));
    o->tier = SP_TIER_MEMORY;
    const sp_bytes *b = obj;
    assert_int_equal(b->len, o->len);
    for (size_t k = 0; k < o->len; k++)
        if (b->data[k] != (unsigned char)(o->seed + k * 31)) fail_msg("object %d byte %zu differs", i, k);
    if (hold) o->held_pins++;
    else t_ok(sp_unpin(p, o->ref));
}

static void remove_at(model *m, int i) { m->o[i] = m->o[--m->n]; }

static void run(sp_policy policy, uint64_t seed)
{
    rng_state = seed;
    const uint64_t bound = 4096;
    char *dir = t_tmpdir();
    sp_pool *p = t_pool(dir, bound, 1 << 20, policy);
    model m;
    memset(&m, 0, sizeof m);
    unsigned next_seed = 1;
    for (int step = 0; step < 3000; step++) {
        uint32_t op = rnd(100);
        if ((op < 30 || m.n == 0) && m.n < MAX_OBJS) {
            size_t len = rnd(1500);
            uint64_t held = 0;
            for (int i = 0; i < m.n; i++)
                if (m.o[i].held_pins) held += m.o[i].len;
            if (held + len > bound) continue; /* would be SP_ERR_MEMORY_FULL: tested elsewhere */
            mobj *o = &m.o[m.n++];
            o->len = len;
            o->seed = next_seed++;
            o->refs = 1;
            o->held_pins = 0;
            o->tier = SP_TIER_MEMORY;
            o->ref = t_put(p, len, o->seed);
        } else if (op < 60) {
            pin_model(p, &m, (int)rnd((uint32_t)m.n), 0);
        } else if (op < 68) {
            int i = (int)rnd((uint32_t)m.n);
            uint64_t held = 0;
            for (int k = 0; k < m.n; k++)
                if (m.o[k].held_pins && k != i) held += m.o[k].len;
            if (held + m.o[i].len <= bound / 2) pin_model(p, &m, i, 1);
        } else if (op < 78) {
            int i = (int)rnd((uint32_t)m.n);
            if (m.o[i].held_pins) {
                t_ok(sp_unpin(p, m.o[i].ref));
                m.o[i].held_pins--;
            } else t_status(sp_unpin(p, m.o[i].ref), SP_ERR_NOT_PINNED);
        } else if (op < 84) {
            int i = (int)rnd((uint32_t)m.n);
            t_ok(sp_addref(p, m.o[i].ref));
            m.o[i].refs++;
        } else {
            int i = (int)rnd((uint32_t)m.n);
            mobj *o = &m.o[i];
            if (o->refs == 1 && o->held_pins) {
                t_status(sp_release(p, o->ref), SP_ERR_BUSY);
            } else {
                t_ok(sp_release(p, o->ref));
                if (--o->refs == 0) {
                    sp_ref gone = o->ref;
                    remove_at(&m, i);
                    void *x;
                    t_status(sp_pin(p, gone, &x), SP_ERR_BAD_REF);
                }
            }
        }
        check(p, &m, bound);
    }
    /* Drain: unpin and release everything; both tiers must read zero. */
    while (m.n > 0) {
        mobj *o = &m.o[0];
        while (o->held_pins) {
            t_ok(sp_unpin(p, o->ref));
            o->held_pins--;
        }
        while (o->refs) {
            t_ok(sp_release(p, o->ref));
            o->refs--;
        }
        remove_at(&m, 0);
        check(p, &m, bound);
    }
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
    assert_true(s.evictions > 100); /* the sequence really did spill */
    assert_true(s.misses > 100);
    assert_int_equal(t_count_files(sp_pool_session_dir(p)), 0);
    t_ok(sp_pool_close(p));
    t_rmrf(dir);
    free(dir);
}

static void lru_accounting_matches_model(void **s)
{
    (void)s;
    run(SP_POLICY_LRU, 42);
    run(SP_POLICY_LRU, 7);
}

static void mru_accounting_matches_model(void **s)
{
    (void)s;
    run(SP_POLICY_MRU, 42);
    run(SP_POLICY_MRU, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lru_accounting_matches_model),
        cmocka_unit_test(mru_accounting_matches_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
