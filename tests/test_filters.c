/* Filter chains through the pool: round trips of every filter and pair over frame
 * boundaries, the order of a chain, chain changes, keys, corruption, plaintext never
 * on disk, accounting after filters, and bad chains and key files. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "testlib.h"

#define F (1u << 20) /* the frame size */

/* Not all text: a key file of 32 printable bytes is refused as a passphrase. */
static const unsigned char key1[32] = "\x80" "123456789abcdef0123456789abcdef";
static const unsigned char key2[32] = "\x81" "edcba9876543210fedcba9876543210";

/* An object that costs `size` bytes of memory and writes nothing: putting one as big
 * as the bound pushes every other unpinned object to disk without writing itself. */
static size_t phantom_size(const void *o) { return *(const size_t *)o; }
static sp_status phantom_encode(const void *o, sp_writer *w)
{
    (void)o;
    (void)w;
    return SP_OK;
}
static sp_status phantom_decode(sp_reader *r, uint64_t len, void **o)
{
    (void)r;
    (void)len;
    (void)o;
    return SP_ERR_INVALID;
}
static void phantom_free(void *o) { free(o); }
static const sp_type phantom_type = {"phantom", phantom_size, phantom_encode, phantom_decode, phantom_free, NULL};

static void push_out(sp_pool *p)
{
    /* A byte first, so that even empty objects are chosen (LRU: oldest first). */
    sp_ref one = t_put(p, 1, 0);
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    assert_int_equal(s.policy, SP_POLICY_LRU);
    size_t *ph = malloc(sizeof *ph);
    *ph = (size_t)s.memory_bound;
    sp_ref r;
    t_ok(sp_put(p, ph, &phantom_type, NULL, &r));
    t_ok(sp_release(p, r));
    t_ok(sp_release(p, one));
}

/* Compressible but not trivial: words, counters and some noise. */
static sp_bytes *data_of(size_t len, unsigned seed, int random)
{
    sp_bytes *b = sp_bytes_new(len);
    assert_non_null(b);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    static const char *words[] = {"alpha ", "beta ", "delta ", "eta "};
    size_t i = 0;
    while (i < len) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (random) {
            b->data[i++] = (unsigned char)x;
            continue;
        }
        const char *w = words[x & 3];
        for (size_t k = 0; w[k] && i < len; k++) b->data[i++] = (unsigned char)w[k];
        if (i < len && (x >> 8) % 7 == 0) b->data[i++] = (unsigned char)(x >> 16);
    }
    return b;
}

/* len bytes of little-endian 32-bit codes 0..255 (the demo's column b), the last one
 * cut short when len is not a multiple of 4: what the compressors byte-shuffle. */
static sp_bytes *codes_of(size_t len, unsigned seed)
{
    sp_bytes *b = sp_bytes_new(len);
    assert_non_null(b);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    memset(b->data, 0, len);
    for (size_t i = 0; i < len; i += 4) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b->data[i] = (unsigned char)x;
    }
    return b;
}

/* The pool's count of frames a filter byte-shuffled, by canonical name. */
static uint64_t shuffled_by(sp_pool *p, const char *name)
{
    sp_stats s;
    t_ok(sp_pool_stats(p, &s));
    for (unsigned i = 0; i < s.n_filters; i++)
        if (!strcmp(s.filters[i].name, name)) return s.filters[i].shuffled;
    return 0;
}

typedef struct {
    char *dir;
    char *keyfile;
    sp_pool *p;
} fix;

static sp_pool *open_pool(const char *dir, uint64_t mem, uint64_t disk, const char *filters, const unsigned char *key)
{
    sp_config c;
    t_config(&c, dir, mem, disk, SP_POLICY_LRU);
    c.filters = filters;
    c.key = key;
    sp_pool *p = NULL;
    t_ok(sp_pool_open(&p, &c));
    return p;
}

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    f->dir = t_tmpdir();
    f->p = open_pool(f->dir, 8 * F, 256 * F, NULL, key1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    if (f->p) t_ok(sp_pool_close(f->p));
    t_rmrf(f->dir);
    free(f->dir);
    free(f->keyfile);
    free(f);
    return 0;
}

/* Put a copy of b under chain, push it out, pin it back and compare. */
static void round_trip(sp_pool *p, const char *chain, const sp_bytes *b)
{
    sp_bytes *copy = sp_bytes_from(b->data, b->len);
    sp_ref r;
    t_ok(sp_put(p, copy, &sp_bytes_type, &(sp_put_options){.filters = chain}, &r));
    push_out(p);
    assert_int_equal(t_tier(p, r), SP_TIER_DISK);
    void *o;
    sp_status st = sp_pin(p, r, &o);
    if (st != SP_OK) fail_msg("chain \"%s\", %zu bytes: %s: %s", chain, b->len, sp_strerror(st), sp_last_error());
    sp_bytes *got = o;
    assert_int_equal(got->len, b->len);
    if (b->len && memcmp(got->data, b->data, b->len) != 0)
        fail_msg("chain \"%s\", %zu bytes: the data came back different", chain, b->len);
    t_ok(sp_unpin(p, r));
    t_ok(sp_release(p, r));
}

static void every_filter_and_pair_round_trips(void **state)
{
    fix *f = *state;
    static const char *one[] = {"zstd", "lz4", "gzip", "encrypt"};
    char chains[1 + 4 + 16 + 2][64];
    int n = 0;
    strcpy(chains[n++], "");
    for (int i = 0; i < 4; i++) strcpy(chains[n++], one[i]);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            if (i != 3 || j != 3) snprintf(chains[n++], sizeof chains[0], "%s,%s", one[i], one[j]); /* see bad_chains */
    strcpy(chains[n++], "lz4:noshuffle");
    strcpy(chains[n++], "zstd:3:noshuffle,encrypt");
    static const size_t sizes[] = {0, 1, F - 1, F, F + 1, 3 * F + 17};
    sp_bytes *data[6], *codes[6], *noise = data_of(F + 1, 99, 1);
    for (int k = 0; k < 6; k++) data[k] = data_of(sizes[k], (unsigned)k, 0);
    for (int k = 0; k < 6; k++) codes[k] = codes_of(sizes[k] + (k > 1), (unsigned)k); /* partial last code */
    for (int c = 0; c < n; c++) {
        for (int k = 0; k < 6; k++) round_trip(f->p, chains[c], data[k]);
        for (int k = 0; k < 6; k++) round_trip(f->p, chains[c], codes[k]); /* byte-shuffled frames */
        round_trip(f->p, chains[c], noise); /* compression does not pay: stages skipped */
    }
    for (int k = 0; k < 6; k++) sp_bytes_free(data[k]), sp_bytes_free(codes[k]);
    sp_bytes_free(noise);
    /* Each whole frame of codes (6 per chain) was shuffled by lz4 (zstd) alone and first
     * in its 4 pairs, and never text, noise, or where the chain says not to. */
    assert_int_equal(shuffled_by(f->p, "lz4"), 5 * 6);
    assert_int_equal(shuffled_by(f->p, "zstd:1"), 5 * 6);
    assert_int_equal(shuffled_by(f->p, "lz4:noshuffle"), 0);
    assert_int_equal(shuffled_by(f->p, "zstd:3:noshuffle"), 0);
    assert_int_equal(shuffled_by(f->p, "gzip:1"), 0); /* gzip stays gzip -d readable */
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.memory_used, 0);
    assert_int_equal(s.disk_used, 0);
}

/* ---- the order of a chain: f2(f1(x)) on disk ---- */

static size_t same_bound(void *ctx, size_t n)
{
    (void)ctx;
    return n;
}
static sp_status add_enc(void *ctx, const void *in, size_t n, void *out, size_t cap, size_t *got)
{
    (void)ctx;
    (void)cap;
    for (size_t i = 0; i < n; i++) ((unsigned char *)out)[i] = (unsigned char)(((const unsigned char *)in)[i] + 1);
    *got = n;
    return SP_OK;
}
static sp_status add_dec(void *ctx, const void *in, size_t n, void *out, size_t cap, size_t *got)
{
    (void)ctx;
    if (n > cap) return SP_ERR_CORRUPT;
    for (size_t i = 0; i < n; i++) ((unsigned char *)out)[i] = (unsigned char)(((const unsigned char *)in)[i] - 1);
    *got = n;
    return SP_OK;
}
static sp_status xor_enc(void *ctx, const void *in, size_t n, void *out, size_t cap, size_t *got)
{
    (void)ctx;
    if (n > cap) return SP_ERR_CORRUPT;
    for (size_t i = 0; i < n; i++) ((unsigned char *)out)[i] = (unsigned char)(((const unsigned char *)in)[i] ^ 0xA5);
    *got = n;
    return SP_OK;
}

static void chain_applies_left_to_right(void **state)
{
    fix *f = *state;
    sp_filter_def add = {"add1", same_bound, add_enc, add_dec, NULL};
    sp_filter_def xr = {"xa5", same_bound, xor_enc, xor_enc, NULL};
    t_ok(sp_pool_add_filter(f->p, &add));
    t_ok(sp_pool_add_filter(f->p, &xr));
    t_status(sp_pool_add_filter(f->p, &add), SP_ERR_INVALID); /* the name is taken */
    sp_filter_def bad = {"zstd", same_bound, add_enc, add_dec, NULL};
    t_status(sp_pool_add_filter(f->p, &bad), SP_ERR_INVALID); /* a built-in name */
    t_ok(sp_pool_set_filters(f->p, "add1,xa5"));
    sp_bytes *b = sp_bytes_new(256);
    for (int i = 0; i < 256; i++) b->data[i] = (unsigned char)i;
    sp_ref r;
    t_ok(sp_put(f->p, b, &sp_bytes_type, NULL, &r));
    push_out(f->p);
    char path[512];
    t_disk_path(f->p, r, path, sizeof path);
    size_t len;
    unsigned char *file = t_slurp(path, &len);
    uint32_t hlen = file[8] | (uint32_t)file[9] << 8 | (uint32_t)file[10] << 16 | (uint32_t)file[11] << 24;
    assert_true(memmem(file, hlen, "add1,xa5", 8) != NULL); /* the file names its chain */
    const unsigned char *payload = file + hlen + 24;
    for (int i = 0; i < 256; i++) {
        unsigned char want = (unsigned char)((unsigned char)(i + 1) ^ 0xA5); /* xa5(add1(x)) */
        if (payload[i] != want) fail_msg("byte %d on disk is 0x%02x, want xa5(add1(x)) = 0x%02x", i, payload[i], want);
    }
    free(file);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    for (int i = 0; i < 256; i++) assert_int_equal(((sp_bytes *)o)->data[i], i);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
}

/* ---- files written under one chain stay readable after the chain changes ---- */

static void chain_change_keeps_old_files_readable(void **state)
{
    fix *f = *state;
    static const char *chains[] = {"zstd:5", "lz4", "gzip:1", "encrypt", "lz4,encrypt", ""};
    sp_ref r[6];
    sp_bytes *d = data_of(F + 100, 7, 0);
    for (int i = 0; i < 6; i++) {
        t_ok(sp_pool_set_filters(f->p, chains[i]));
        char now[256];
        t_ok(sp_pool_get_filters(f->p, now, sizeof now));
        if (i == 0) assert_string_equal(now, "zstd:5");
        t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type, NULL, &r[i]));
        push_out(f->p);
    }
    t_ok(sp_pool_set_filters(f->p, "gzip:9"));
    uint64_t prev_disk = 0;
    for (int i = 0; i < 6; i++) {
        sp_ref_info info;
        t_ok(sp_ref_query(f->p, r[i], &info));
        if (i == 5) assert_true(info.disk_bytes > d->len); /* plain */
        if (i < 3) assert_true(info.disk_bytes < d->len / 2); /* compressed */
        prev_disk += info.disk_bytes;
        void *o;
        t_ok(sp_pin(f->p, r[i], &o));
        assert_memory_equal(((sp_bytes *)o)->data, d->data, d->len);
        t_ok(sp_unpin(f->p, r[i]));
    }
    assert_true(prev_disk > 0);
    for (int i = 0; i < 6; i++) t_ok(sp_release(f->p, r[i]));
    sp_bytes_free(d);
}

/* ---- keys ---- */

static void wrong_key_is_an_auth_error_and_loses_nothing(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_set_filters(f->p, "zstd,encrypt"));
    sp_bytes *d = data_of(5000, 3, 0);
    sp_ref r;
    t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type, NULL, &r));
    push_out(f->p);
    char path[512];
    t_disk_path(f->p, r, path, sizeof path);
    t_ok(sp_pool_set_key(f->p, key2));
    void *o;
    t_status(sp_pin(f->p, r, &o), SP_ERR_AUTH);
    assert_non_null(strstr(sp_last_error(), "different key"));
    assert_non_null(strstr(sp_last_error(), path));
    assert_int_equal(t_tier(f->p, r), SP_TIER_DISK);
    t_ok(sp_pool_set_key(f->p, key1));
    t_ok(sp_pin(f->p, r, &o));
    assert_memory_equal(((sp_bytes *)o)->data, d->data, d->len);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
    sp_bytes_free(d);
}

/* Every change to any single byte of a spill file is caught: with xor masks 0x01,
 * 0x80 and 0xff at each offset, the pin fails (CORRUPT or AUTH), never returns data. */
static void corrupt_every_byte(sp_pool *p, const char *chain, size_t size)
{
    t_ok(sp_pool_set_filters(p, chain));
    sp_bytes *d = size % 4 == 1 ? codes_of(size, 11) : data_of(size, 11, 0); /* codes: shuffled */
    sp_ref r;
    t_ok(sp_put(p, sp_bytes_from(d->data, d->len), &sp_bytes_type, NULL, &r));
    push_out(p);
    char path[512];
    t_disk_path(p, r, path, sizeof path);
    size_t len;
    unsigned char *orig = t_slurp(path, &len);
    static const unsigned char masks[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < len; i++)
        for (int m = 0; m < 3; m++) {
            orig[i] ^= masks[m];
            t_spew(path, orig, len);
            orig[i] ^= masks[m];
            void *o;
            sp_status st = sp_pin(p, r, &o);
            if (st != SP_ERR_CORRUPT && st != SP_ERR_AUTH)
                fail_msg("chain %s: byte %zu of %zu ^ 0x%02x: %s (%s)", chain, i, len, masks[m], sp_strerror(st),
                         sp_last_error());
        }
    for (size_t cut = 0; cut < len; cut += 7) { /* and every truncation */
        t_spew(path, orig, cut);
        void *o;
        sp_status st = sp_pin(p, r, &o);
        if (st != SP_ERR_CORRUPT && st != SP_ERR_AUTH)
            fail_msg("chain %s: cut at %zu of %zu: %s", chain, cut, len, sp_strerror(st));
    }
    t_spew(path, orig, len);
    void *o;
    t_ok(sp_pin(p, r, &o)); /* the file restored: the object was never lost */
    assert_memory_equal(((sp_bytes *)o)->data, d->data, d->len);
    t_ok(sp_unpin(p, r));
    t_ok(sp_release(p, r));
    free(orig);
    sp_bytes_free(d);
}

static void every_byte_of_an_encrypted_file_is_checked(void **state)
{
    fix *f = *state;
    corrupt_every_byte(f->p, "encrypt", 100);
    corrupt_every_byte(f->p, "encrypt:xchacha20", 100);
    corrupt_every_byte(f->p, "zstd,encrypt", 300);
}

static void every_byte_of_a_compressed_file_is_checked(void **state)
{
    fix *f = *state;
    corrupt_every_byte(f->p, "zstd", 300);
    corrupt_every_byte(f->p, "lz4", 300);
    corrupt_every_byte(f->p, "gzip", 300);
    corrupt_every_byte(f->p, "encrypt,lz4", 300);
    /* a byte-shuffled frame: its flags say which width and stage, and are checked too */
    uint64_t before = shuffled_by(f->p, "lz4");
    corrupt_every_byte(f->p, "lz4", 16 * 1024 + 1);
    assert_int_equal(shuffled_by(f->p, "lz4"), before + 1);
    before = shuffled_by(f->p, "zstd:1");
    corrupt_every_byte(f->p, "zstd,encrypt", 16 * 1024 + 1);
    assert_int_equal(shuffled_by(f->p, "zstd:1"), before + 1);
}

static int file_has(const char *dir, const char *marker)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -rqa -- '%s' '%s'", marker, dir);
    return system(cmd) == 0;
}

static void no_plaintext_on_disk_when_encrypted(void **state)
{
    fix *f = *state;
    static const char marker[] = "TOP-SECRET-7f3a";
    sp_bytes *b = sp_bytes_new(3 * F);
    for (size_t i = 0; i < b->len; i++) b->data[i] = (unsigned char)marker[i % (sizeof marker - 1)];
    const char *session = sp_pool_session_dir(f->p);
    static const char *chains[] = {"", "encrypt", "zstd,encrypt", "encrypt,gzip"};
    for (int c = 0; c < 4; c++) {
        sp_ref r;
        t_ok(sp_put(f->p, sp_bytes_from(b->data, b->len), &sp_bytes_type, &(sp_put_options){.filters = chains[c]},
                    &r));
        push_out(f->p);
        /* Plain, the marker is there: the check can fail. Encrypted, it never is. */
        assert_int_equal(file_has(session, marker), c == 0);
        t_ok(sp_release(f->p, r));
    }
    sp_bytes_free(b);
}

/* ---- accounting ---- */

static void disk_bound_counts_bytes_after_filters(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_close(f->p));
    /* 1 MiB of disk: 3 MiB of compressible data fits only compressed. */
    f->p = open_pool(f->dir, 4 * F, F, "zstd", NULL);
    sp_bytes *d = data_of(3 * F, 5, 0);
    sp_ref r;
    t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type, NULL, &r));
    push_out(f->p);
    char path[512];
    t_disk_path(f->p, r, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, (uint64_t)st.st_size);
    /* push_out's one-byte filler was spilled (and released) too */
    assert_in_range(s.bytes_after_filters, (uint64_t)st.st_size + 1, (uint64_t)st.st_size + 200);
    assert_int_equal(s.bytes_before_filters, 3 * F + 1);
    assert_true(s.compression_ratio > 3.0);
    assert_int_equal(s.n_filters, 1);
    assert_string_equal(s.filters[0].name, "zstd:1");
    assert_int_equal(s.filters[0].frames, 3); /* the filler's frame was too small: skipped */
    assert_int_equal(s.filters[0].skipped, 1);
    assert_int_equal(s.filters[0].bytes_in, 3 * F);
    assert_true(s.filters[0].bytes_out < F);
    assert_true(s.filters[0].encode_seconds > 0);
    void *o;
    t_ok(sp_pin(f->p, r, &o));
    assert_memory_equal(((sp_bytes *)o)->data, d->data, d->len);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_pool_stats(f->p, &s));
    assert_true(s.filters[0].decode_seconds > 0);
    /* Without the filter the same object cannot spill: it stays in memory, intact. */
    t_ok(sp_pool_set_filters(f->p, ""));
    sp_stats before;
    t_ok(sp_pool_stats(f->p, &before));
    sp_ref a = t_put(f->p, F, 1), big; /* fills the memory bound; r is the oldest */
    sp_bytes *more = sp_bytes_new(F);
    t_status(sp_put(f->p, more, &sp_bytes_type, NULL, &big), SP_ERR_DISK_FULL);
    sp_bytes_free(more);
    assert_int_equal(t_tier(f->p, r), SP_TIER_MEMORY);
    t_ok(sp_release(f->p, a));
    t_ok(sp_pin(f->p, r, &o));
    assert_memory_equal(((sp_bytes *)o)->data, d->data, d->len);
    t_ok(sp_unpin(f->p, r));
    t_ok(sp_release(f->p, r));
    sp_bytes_free(d);
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.disk_used, 0);
}

static void small_objects_are_stored_plain(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_set_filters(f->p, "zstd,lz4"));
    sp_ref r = t_put(f->p, 20, 4);
    push_out(f->p);
    char path[512];
    t_disk_path(f->p, r, path, sizeof path);
    size_t len;
    unsigned char *file = t_slurp(path, &len);
    uint32_t hlen = file[8] | (uint32_t)file[9] << 8;
    assert_int_equal(len, hlen + 24 + 20 + 24); /* header, one frame of 20 bytes as is, end */
    uint32_t flags = file[hlen + 8] | (uint32_t)file[hlen + 9] << 8;
    assert_int_equal(flags >> 8, 3); /* both stages marked as skipped */
    free(file);
    t_check(f->p, r, 20, 4);
    t_ok(sp_release(f->p, r));
}

/* ---- bad chains and keys ---- */

static void bad_chains_are_refused_with_a_reason(void **state)
{
    fix *f = *state;
    static const struct {
        const char *chain, *says;
    } bad[] = {
        {"brotli", "unknown filter \"brotli\""},
        {"zstd:99", "out of range"},
        {"zstd:x", "not a number"},
        {"gzip:0", "out of range"},
        {"gzip:10", "out of range"},
        {"lz4:3", "takes only \"noshuffle\""},
        {"zstd:noshuffle:3", "not a number"},
        {"lz4:noshuffle:noshuffle", "\"noshuffle\" given twice"},
        {"zstd:noshuffle:noshuffle", "\"noshuffle\" given twice"},
        {"gzip:noshuffle", "not a number"},
        {"zstd,,lz4", "empty"},
        {",", "empty"},
        {"encrypt:des", "unknown cipher"},
        {"lz4,lz4,lz4,lz4,lz4,lz4,lz4,lz4,lz4", "more than 8"},
        /* encrypt twice: both stages would use the file's one key and nonce, the second
         * undoing the first, and the plain bytes would reach the disk */
        {"encrypt,encrypt", "one encrypt stage only"},
        {"encrypt:xchacha20,encrypt:xchacha20", "one encrypt stage only"},
        {"lz4,encrypt,encrypt", "one encrypt stage only"},
        {"encrypt,zstd,encrypt", "one encrypt stage only"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t_status(sp_filters_check(bad[i].chain), SP_ERR_INVALID);
        if (!strstr(sp_last_error(), bad[i].says))
            fail_msg("chain \"%s\": message \"%s\" lacks \"%s\"", bad[i].chain, sp_last_error(), bad[i].says);
        t_status(sp_pool_set_filters(f->p, bad[i].chain), SP_ERR_INVALID);
        sp_bytes *b = sp_bytes_new(10);
        sp_ref r;
        t_status(sp_put(f->p, b, &sp_bytes_type, &(sp_put_options){.filters = bad[i].chain}, &r), SP_ERR_INVALID);
        sp_bytes_free(b); /* still the caller's */
    }
    t_ok(sp_filters_check("zstd:-5, lz4 ,gzip:9,encrypt:xchacha20"));
    static const struct {
        const char *chain, *canonical;
    } good[] = {
        {"lz4:noshuffle", "lz4:noshuffle"},
        {"zstd:noshuffle", "zstd:1:noshuffle"},
        {"zstd:7:noshuffle,lz4", "zstd:7:noshuffle,lz4"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        t_ok(sp_pool_set_filters(f->p, good[i].chain));
        char got[256];
        t_ok(sp_pool_get_filters(f->p, got, sizeof got));
        assert_string_equal(got, good[i].canonical);
    }
    t_ok(sp_pool_set_filters(f->p, ""));
    char now[256];
    t_ok(sp_pool_get_filters(f->p, now, sizeof now));
    assert_string_equal(now, ""); /* unchanged by the failures */
    /* encrypt without a key */
    sp_pool *nokey = open_pool(f->dir, F, F, NULL, NULL);
    t_status(sp_pool_set_filters(nokey, "encrypt"), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "no key"));
    t_ok(sp_pool_close(nokey));
    sp_config c;
    sp_config_default(&c);
    c.dir = f->dir;
    c.filters = "zstd,encrypt";
    sp_pool *p = NULL;
    t_status(sp_pool_open(&p, &c), SP_ERR_INVALID);
    assert_null(p);
    /* the environment */
    setenv("SPILLPOOL_FILTERS", "zstd:42", 1);
    t_status(sp_config_from_env(&c), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "SPILLPOOL_FILTERS"));
    setenv("SPILLPOOL_FILTERS", "lz4,zstd:1", 1);
    t_ok(sp_config_from_env(&c));
    assert_string_equal(c.filters, "lz4,zstd:1");
    unsetenv("SPILLPOOL_FILTERS");
}

static sp_status open_with_key_file(const char *dir, const char *path)
{
    sp_config c;
    sp_config_default(&c);
    c.dir = dir;
    c.filters = "encrypt";
    c.key_file = path;
    sp_pool *p = NULL;
    sp_status st = sp_pool_open(&p, &c);
    if (p) t_ok(sp_pool_close(p));
    return st;
}

static void key_files_are_checked(void **state)
{
    fix *f = *state;
    char path[600];
    snprintf(path, sizeof path, "%s/key", f->dir);
    t_status(open_with_key_file(f->dir, path), SP_ERR_NOT_FOUND);
    assert_non_null(strstr(sp_last_error(), path));
    t_spew(path, key1, 32);
    chmod(path, 0600);
    t_ok(open_with_key_file(f->dir, path));
    chmod(path, 0644);
    t_status(open_with_key_file(f->dir, path), SP_ERR_PERMISSION);
    assert_non_null(strstr(sp_last_error(), path));
    chmod(path, 0640);
    t_status(open_with_key_file(f->dir, path), SP_ERR_PERMISSION);
    chmod(path, 0600);
    t_spew(path, key1, 31);
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    t_spew(path, (const unsigned char *)"00112233445566778899aabbccddeeff", 32); /* a 128-bit hex key */
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "32 bytes of text"));
    t_spew(path, (const unsigned char *)"correct horse battery staple 42\n", 32); /* a passphrase */
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    t_spew(path, (const unsigned char *)"Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln, mein Passwort", 32); /* in UTF-8 */
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "32 bytes of text"));
    unsigned char zeros[32] = {0}; /* a placeholder, raw or in hex */
    t_spew(path, zeros, 32);
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "one byte 32 times"));
    t_spew(path, (const unsigned char *)"0000000000000000000000000000000000000000000000000000000000000000", 64);
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    t_spew(path, (const unsigned char *)"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65);
    t_ok(open_with_key_file(f->dir, path));
    t_spew(path, (const unsigned char *)"0011223344556677zz99aabbccddeeff00112233445566778899aabbccddeeff", 64);
    t_status(open_with_key_file(f->dir, path), SP_ERR_INVALID);
    /* a key from SPILLPOOL_KEY_FILE reads what a key in the API wrote */
    t_spew(path, key1, 32);
    t_ok(sp_pool_set_filters(f->p, "encrypt"));
    sp_ref r = t_put(f->p, 3000, 9);
    push_out(f->p);
    sp_ref_info info;
    t_ok(sp_ref_query(f->p, r, &info));
    t_check(f->p, r, 3000, 9);
    t_ok(sp_release(f->p, r));
    setenv("SPILLPOOL_KEY_FILE", path, 1);
    setenv("SPILLPOOL_FILTERS", "encrypt", 1);
    sp_config c;
    t_ok(sp_config_from_env(&c));
    c.dir = f->dir;
    sp_pool *p;
    t_ok(sp_pool_open(&p, &c));
    unsetenv("SPILLPOOL_KEY_FILE");
    unsetenv("SPILLPOOL_FILTERS");
    char now[256];
    t_ok(sp_pool_get_filters(p, now, sizeof now));
    assert_true(strncmp(now, "encrypt:", 8) == 0);
    t_ok(sp_pool_close(p));
}

/* A multi-frame object is filtered a few frames at a time on the helper threads; an
 * error in one of them still names the frame and the file. */
static void error_in_a_parallel_frame_names_it(void **state)
{
    fix *f = *state;
    static const char *chains[] = {"encrypt", "zstd", "lz4,encrypt"};
    for (int c = 0; c < 3; c++) {
        t_ok(sp_pool_set_filters(f->p, chains[c]));
        sp_bytes *d = data_of(5 * F + 3, 21, 0);
        sp_ref r;
        t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type, NULL, &r));
        push_out(f->p);
        char path[512];
        t_disk_path(f->p, r, path, sizeof path);
        size_t len;
        unsigned char *file = t_slurp(path, &len);
        /* Walk to frame 2 and change a byte in the middle of its payload. */
        size_t off = file[8] | (size_t)file[9] << 8;
        for (int i = 0; i < 2; i++) off += 24 + (file[off] | (size_t)file[off + 1] << 8 | (size_t)file[off + 2] << 16);
        size_t stored = file[off] | (size_t)file[off + 1] << 8 | (size_t)file[off + 2] << 16;
        file[off + 24 + stored / 2] ^= 0x10;
        t_spew(path, file, len);
        void *o;
        sp_status st = sp_pin(f->p, r, &o);
        if (st != SP_ERR_AUTH && st != SP_ERR_CORRUPT) fail_msg("chain %s: %s", chains[c], sp_strerror(st));
        assert_non_null(strstr(sp_last_error(), "frame 2"));
        assert_non_null(strstr(sp_last_error(), path));
        file[off + 24 + stored / 2] ^= 0x10;
        t_spew(path, file, len);
        t_ok(sp_pin(f->p, r, &o));
        assert_memory_equal(((sp_bytes *)o)->data, d->data, d->len);
        t_ok(sp_unpin(f->p, r));
        t_ok(sp_release(f->p, r));
        free(file);
        sp_bytes_free(d);
    }
}

/* A file written by the gzip filter alone is gzip data once the spill file's own
 * headers are stripped, which `spillpool inspect --payload` does. */
static void gzip_only_file_reads_with_gzip_d(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_set_filters(f->p, "gzip"));
    sp_bytes *d = data_of(2 * F + 12345, 8, 0);
    sp_ref r;
    t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type,
                &(sp_put_options){.tag = "gz.sp", .retain = 1}, &r));
    t_ok(sp_release(f->p, r)); /* retained: written now, kept */
    t_ok(sp_pool_close(f->p));
    f->p = NULL;
    char cmd[2048], out[600];
    snprintf(out, sizeof out, "%s/plain", f->dir);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s/gz.sp' > /dev/null && '%s' inspect '%s/gz.sp' --payload | gzip -d > '%s'",
             SP_CLI, f->dir, SP_CLI, f->dir, out);
    assert_int_equal(system(cmd), 0);
    size_t len;
    unsigned char *got = t_slurp(out, &len);
    assert_int_equal(len, d->len);
    assert_memory_equal(got, d->data, len);
    free(got);
    sp_bytes_free(d);
}

/* inspect rejects what the pool's reader rejects in a file's layout, naming it. */
static int inspect_says(const char *dir, const char *file, const char *want)
{
    char cmd[2048], err[600];
    snprintf(err, sizeof err, "%s/inspect.err", dir);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' > /dev/null 2> '%s'", SP_CLI, file, err);
    int rc = system(cmd);
    size_t len;
    unsigned char *text = t_slurp(err, &len);
    char *msg = calloc(1, len + 1);
    memcpy(msg, text, len);
    int found = want ? strstr(msg, want) != NULL : len == 0;
    if (!found) print_message("inspect %s: exit %d, said: %s (want '%s')\n", file, rc, msg, want ? want : "");
    free(text);
    free(msg);
    return (want ? rc != 0 : rc == 0) && found;
}

static void inspect_checks_the_layout_as_the_reader_does(void **state)
{
    fix *f = *state;
    t_ok(sp_pool_set_filters(f->p, ""));
    sp_bytes *d = data_of(F + 100, 3, 0);
    sp_ref r;
    t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type,
                &(sp_put_options){.tag = "plain.sp", .retain = 1}, &r));
    t_ok(sp_release(f->p, r));
    sp_bytes_free(d);
    char good[600], bad[600];
    snprintf(good, sizeof good, "%s/plain.sp", f->dir);
    snprintf(bad, sizeof bad, "%s/bad.sp", f->dir);
    assert_true(inspect_says(f->dir, good, NULL));
    size_t len;
    unsigned char *b = t_slurp(good, &len);
    uint32_t hlen = (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
    unsigned char *c = malloc(len + 8);
    struct {
        size_t at;
        unsigned char to;
        const char *want;
    } cases[] = {
        {hlen + 7, 0xff, "malformed frame header"}, /* the first frame's raw length past a frame */
        {hlen + 8, 0x02, "malformed frame header"}, /* an unknown flag */
        {hlen + 4, 0x01, "malformed frame header"}, /* stored differs from raw without a chain */
        {30, 0x55, "header checksum mismatch"},     /* the file id */
        {len - 24 + 4, 0x01, "malformed end marker"},
        {len - 24 + 16, 0x01, "end marker does not match the frames before it"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(c, b, len);
        c[cases[k].at] ^= cases[k].to;
        t_spew(bad, c, len);
        if (!inspect_says(f->dir, bad, cases[k].want)) fail_msg("case %zu", k);
    }
    /* the last frame cut out, the end marker kept */
    size_t f0 = hlen, s0 = (size_t)b[f0] | (size_t)b[f0 + 1] << 8 | (size_t)b[f0 + 2] << 16 | (size_t)b[f0 + 3] << 24;
    size_t f1 = f0 + 24 + s0;
    assert_true(f1 < len - 24);
    memcpy(c, b, f1);
    memcpy(c + f1, b + len - 24, 24);
    t_spew(bad, c, f1 + 24);
    assert_true(inspect_says(f->dir, bad, "end marker does not match the frames before it"));
    memcpy(c, b, len);
    memcpy(c + len, "garbage\n", 8);
    t_spew(bad, c, len + 8);
    assert_true(inspect_says(f->dir, bad, "bytes after the end marker"));
    assert_true(inspect_says(f->dir, f->dir, "a directory"));
    /* a header, checksum right, whose chain text holds a NUL byte, or names more
     * stages than a chain has */
    static const char *const chains[] = {"lz4\0x", "x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x"};
    static const size_t clens[] = {5, 69};
    size_t idlen = hlen - 24 - 8; /* plain.sp: no chain, no key check */
    for (int k = 0; k < 2; k++) {
        size_t nh = 24 + clens[k] + idlen + 8;
        unsigned char *h = malloc(nh + len);
        memcpy(h, b, 24);
        h[8] = (unsigned char)nh, h[9] = (unsigned char)(nh >> 8), h[10] = h[11] = 0;
        h[20] = (unsigned char)clens[k], h[21] = 0;
        memcpy(h + 24, chains[k], clens[k]);
        memcpy(h + 24 + clens[k], b + 24, idlen);
        uint64_t sum = XXH3_64bits(h, nh - 8);
        for (int i = 0; i < 8; i++) h[nh - 8 + (size_t)i] = (unsigned char)(sum >> (8 * i));
        memcpy(h + nh, b + hlen, len - hlen);
        t_spew(bad, h, nh + len - hlen);
        if (!inspect_says(f->dir, bad, "malformed header")) fail_msg("chain %d", k);
        free(h);
    }
    free(c);
    free(b);
    /* a shuffled frame: inspect names the width and stage, and refuses flag bits past them */
    t_ok(sp_pool_set_filters(f->p, "lz4"));
    d = codes_of(F, 4);
    t_ok(sp_put(f->p, sp_bytes_from(d->data, d->len), &sp_bytes_type,
                &(sp_put_options){.tag = "codes.sp", .retain = 1}, &r));
    t_ok(sp_release(f->p, r));
    sp_bytes_free(d);
    snprintf(good, sizeof good, "%s/codes.sp", f->dir);
    char cmd[2048], out[600];
    snprintf(out, sizeof out, "%s/inspect.out", f->dir);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' > '%s'", SP_CLI, good, out);
    assert_int_equal(system(cmd), 0);
    unsigned char *said = t_slurp(out, &len);
    assert_non_null(memmem(said, len, "4-byte shuffle before stage 0", 29));
    free(said);
    b = t_slurp(good, &len);
    hlen = (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
    assert_int_equal(b[hlen + 10], 0x02); /* width code 2 (4 bytes), stage 0 */
    static const unsigned char words[] = {
        0x22, /* flags bit 21: past the filter word */
        0x0e, /* stage 3 of a one-stage chain */
        0x04, /* a stage without a width */
    };
    for (size_t k = 0; k < sizeof words; k++) {
        b[hlen + 10] = words[k];
        t_spew(bad, b, len);
        if (!inspect_says(f->dir, bad, "malformed frame header")) fail_msg("filter word byte 0x%02x", words[k]);
    }
    b[hlen + 10] = 0x02;
    memcpy(b + hlen + 4, "\x0a\0\0\0", 4); /* 10 plain bytes: more stored than lz4 makes of them */
    t_spew(bad, b, len);
    assert_true(inspect_says(f->dir, bad, "malformed frame header"));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(inspect_checks_the_layout_as_the_reader_does, setup, teardown),
        cmocka_unit_test_setup_teardown(every_filter_and_pair_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(chain_applies_left_to_right, setup, teardown),
        cmocka_unit_test_setup_teardown(chain_change_keeps_old_files_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_key_is_an_auth_error_and_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(every_byte_of_an_encrypted_file_is_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(every_byte_of_a_compressed_file_is_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(no_plaintext_on_disk_when_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(disk_bound_counts_bytes_after_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(small_objects_are_stored_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_chains_are_refused_with_a_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(key_files_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(gzip_only_file_reads_with_gzip_d, setup, teardown),
        cmocka_unit_test_setup_teardown(error_in_a_parallel_frame_names_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
