/* The one-shot codecs (filter/codec.h): zstd, lz4 and gzip round trips at the frame
 * sizes around 1 MiB, the cap contract, flipped and truncated input, gzip(1)
 * interoperation, the AEAD (nonces, derived keys, tampering), key files, and
 * per-thread contexts from several threads at once.
 *
 * Decoders write into buffers of exactly cap bytes followed by a canary, so an
 * overrun shows in the plain build too, and ASan sees any read past the input. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sodium.h>
#include <zlib.h>
#include <zstd.h>

#include "filter/codec.h"
#include "filter/shuffle.h"
#include "testlib.h"

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)
#define CANARY 64

/* ---- data ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_random(unsigned char *b, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(rng_next(&seed) >> 24);
}

/* Four words in random order with a random byte now and then: compresses, not trivially. */
static void fill_text(unsigned char *b, size_t n, uint64_t seed)
{
    static const char *const words[4] = {"spill ", "pool ", "frame ", "codec "};
    size_t i = 0;
    while (i < n) {
        uint64_t r = rng_next(&seed);
        if ((r & 15) == 0) {
            b[i++] = (unsigned char)(r >> 8);
            continue;
        }
        const char *w = words[(r >> 4) & 3];
        for (size_t k = 0; w[k] && i < n; k++) b[i++] = (unsigned char)w[k];
    }
}

static unsigned char *xmalloc(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* A buffer of cap bytes followed by a canary. */
static unsigned char *guarded(size_t cap)
{
    unsigned char *p = xmalloc(cap + CANARY);
    memset(p, 0xA5, cap + CANARY);
    return p;
}

static void canary_intact(const unsigned char *p, size_t cap)
{
    for (size_t i = 0; i < CANARY; i++)
        if (p[cap + i] != 0xA5) fail_msg("decoder wrote past cap %zu (at +%zu)", cap, i);
}

/* ---- the codecs under one shape ---- */

typedef sp_status (*enc_fn)(int level, const void *in, size_t n, void *out, size_t cap, size_t *out_len);
typedef sp_status (*dec_fn)(const void *in, size_t n, void *out, size_t cap, size_t *out_len);

static sp_status lz4_enc(int level, const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    (void)level;
    return sp__lz4_encode(in, n, out, cap, out_len);
}

typedef struct {
    const char *name; /* the prefix of its messages */
    int level;
    size_t (*bound)(size_t);
    enc_fn enc;
    dec_fn dec;
} codec;

static const codec zstd1 = {"zstd", 1, sp__zstd_bound, sp__zstd_encode, sp__zstd_decode};
static const codec zstd3 = {"zstd", 3, sp__zstd_bound, sp__zstd_encode, sp__zstd_decode};
static const codec zstd19 = {"zstd", 19, sp__zstd_bound, sp__zstd_encode, sp__zstd_decode};
static const codec zstd_fast5 = {"zstd", -5, sp__zstd_bound, sp__zstd_encode, sp__zstd_decode};
static const codec lz4 = {"lz4", 0, sp__lz4_bound, lz4_enc, sp__lz4_decode};
static const codec gzip1 = {"gzip", 1, sp__gzip_bound, sp__gzip_encode, sp__gzip_decode};
static const codec gzip6 = {"gzip", 6, sp__gzip_bound, sp__gzip_encode, sp__gzip_decode};
static const codec gzip9 = {"gzip", 9, sp__gzip_bound, sp__gzip_encode, sp__gzip_decode};
static const codec *const all_codecs[] = {&zstd1, &zstd3, &zstd19, &zstd_fast5, &lz4, &gzip1, &gzip6, &gzip9};
#define NCODECS (sizeof all_codecs / sizeof all_codecs[0])

/* Encode with cap = bound; the result is malloc'd at exactly its length. */
static unsigned char *encode(const codec *c, const unsigned char *in, size_t n, size_t *len)
{
    size_t cap = c->bound(n);
    unsigned char *out = xmalloc(cap);
    sp_status st = c->enc(c->level, in, n, out, cap, len);
    if (st != SP_OK)
        fail_msg("%s:%d encode of %zu bytes -> %s: %s", c->name, c->level, n, sp_strerror(st), sp_last_error());
    assert_true(*len <= cap);
    unsigned char *exact = xmalloc(*len);
    memcpy(exact, out, *len);
    free(out);
    return exact;
}

static void round_trip(const codec *c, const unsigned char *in, size_t n, int compressible)
{
    size_t clen;
    unsigned char *comp = encode(c, in, n, &clen);
    if (compressible && n >= 4 * KIB && clen >= n / 2)
        fail_msg("%s:%d: %zu compressible bytes became %zu", c->name, c->level, n, clen);
    unsigned char *back = guarded(n);
    size_t got = (size_t)-1;
    sp_status st = c->dec(comp, clen, back, n, &got);
    if (st != SP_OK)
        fail_msg("%s:%d decode of %zu -> %zu bytes -> %s: %s", c->name, c->level, n, clen, sp_strerror(st),
                 sp_last_error());
    assert_int_equal(got, n);
    if (n && memcmp(back, in, n) != 0) fail_msg("%s:%d: %zu bytes came back different", c->name, c->level, n);
    canary_intact(back, n);
    free(back);
    free(comp);
}

static void round_trips(const codec *c)
{
    static const size_t sizes[] = {0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB};
    unsigned char *in = xmalloc(5 * MIB);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        fill_text(in, sizes[i], 100 + i);
        round_trip(c, in, sizes[i], 1);
        fill_random(in, sizes[i], 200 + i);
        round_trip(c, in, sizes[i], 0);
    }
    free(in);
}

static void zstd_level_1_round_trips(void **s) { (void)s, round_trips(&zstd1); }
static void zstd_level_3_round_trips(void **s) { (void)s, round_trips(&zstd3); }
static void zstd_level_19_round_trips(void **s) { (void)s, round_trips(&zstd19); }
static void zstd_level_minus_5_round_trips(void **s) { (void)s, round_trips(&zstd_fast5); }
static void lz4_round_trips(void **s) { (void)s, round_trips(&lz4); }
static void gzip_level_1_round_trips(void **s) { (void)s, round_trips(&gzip1); }
static void gzip_level_6_round_trips(void **s) { (void)s, round_trips(&gzip6); }
static void gzip_level_9_round_trips(void **s) { (void)s, round_trips(&gzip9); }

static void levels_are_checked(void **s)
{
    (void)s;
    assert_true(sp__zstd_level_ok(1) && sp__zstd_level_ok(19) && sp__zstd_level_ok(-5));
    assert_true(sp__zstd_level_ok(ZSTD_maxCLevel()) && sp__zstd_level_ok(ZSTD_minCLevel()));
    assert_false(sp__zstd_level_ok(ZSTD_maxCLevel() + 1));
    assert_false(sp__zstd_level_ok(ZSTD_minCLevel() - 1));
    for (int l = 1; l <= 9; l++) assert_true(sp__gzip_level_ok(l));
    assert_false(sp__gzip_level_ok(0));
    assert_false(sp__gzip_level_ok(10));
    assert_false(sp__gzip_level_ok(-1));
    unsigned char in[16] = {0}, out[256];
    size_t len;
    t_status(sp__zstd_encode(ZSTD_maxCLevel() + 1, in, sizeof in, out, sizeof out, &len), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "zstd"));
    t_status(sp__gzip_encode(0, in, sizeof in, out, sizeof out, &len), SP_ERR_INVALID);
    assert_non_null(strstr(sp_last_error(), "gzip"));
    t_status(sp__gzip_encode(10, in, sizeof in, out, sizeof out, &len), SP_ERR_INVALID);
}

/* Incompressible input cannot fit in its own size: every codec adds framing. */
static void encode_into_a_small_cap_is_too_big(void **s)
{
    (void)s;
    static const size_t sizes[] = {1, 4 * KIB, MIB};
    unsigned char *in = xmalloc(MIB);
    for (size_t k = 0; k < NCODECS; k++) {
        const codec *c = all_codecs[k];
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            fill_random(in, n, 300 + i);
            unsigned char *out = guarded(n);
            size_t len = 12345;
            sp_status st = c->enc(c->level, in, n, out, n, &len);
            if (st != SP_ERR_TOO_BIG)
                fail_msg("%s:%d: %zu random bytes into cap %zu -> %s, want too big", c->name, c->level, n, n,
                         sp_strerror(st));
            assert_non_null(strstr(sp_last_error(), c->name));
            canary_intact(out, n);
            free(out);
        }
        /* A cap of 0 cannot hold even an empty frame. */
        size_t len;
        unsigned char out[1];
        t_status(c->enc(c->level, in, 0, out, 0, &len), SP_ERR_TOO_BIG);
    }
    free(in);
}

/* Decoding with a cap one byte short of the content is refused without overrun. */
static void decode_refuses_more_than_cap(void **s)
{
    (void)s;
    static const size_t sizes[] = {1, 4 * KIB, MIB};
    unsigned char *in = xmalloc(MIB);
    for (size_t k = 0; k < NCODECS; k++) {
        const codec *c = all_codecs[k];
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i], clen, got;
            fill_text(in, n, 400 + i);
            unsigned char *comp = encode(c, in, n, &clen);
            const size_t caps[] = {0, n / 2, n - 1};
            for (size_t j = 0; j < 3; j++) {
                size_t cap = caps[j];
                unsigned char *out = guarded(cap);
                sp_status st = c->dec(comp, clen, out, cap, &got);
                if (st != SP_ERR_CORRUPT)
                    fail_msg("%s:%d: %zu bytes into cap %zu -> %s, want corrupt", c->name, c->level, n, cap,
                             sp_strerror(st));
                assert_non_null(strstr(sp_last_error(), c->name));
                canary_intact(out, cap);
                free(out);
            }
            unsigned char *out = guarded(n);
            t_ok(c->dec(comp, clen, out, n, &got));
            assert_int_equal(got, n);
            free(out);
            free(comp);
        }
    }
    free(in);
}

/* A frame without a content size takes the other path: zstd stops at cap itself. */
static void zstd_frame_without_content_size_is_bounded_by_cap(void **s)
{
    (void)s;
    size_t n = 100 * KIB;
    unsigned char *in = xmalloc(n);
    fill_text(in, n, 5);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    assert_non_null(z);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0)));
    size_t cap = ZSTD_compressBound(n);
    unsigned char *comp = xmalloc(cap);
    size_t clen = ZSTD_compress2(z, comp, cap, in, n);
    assert_false(ZSTD_isError(clen));
    ZSTD_freeCCtx(z);
    assert_int_equal(ZSTD_getFrameContentSize(comp, clen), ZSTD_CONTENTSIZE_UNKNOWN);

    size_t got;
    unsigned char *out = guarded(n - 1);
    t_status(sp__zstd_decode(comp, clen, out, n - 1, &got), SP_ERR_CORRUPT);
    canary_intact(out, n - 1);
    free(out);
    out = guarded(n);
    t_ok(sp__zstd_decode(comp, clen, out, n, &got));
    assert_int_equal(got, n);
    assert_memory_equal(out, in, n);
    free(out);
    free(comp);
    free(in);
}

/* One frame or member per call: bytes after it are corrupt, whatever they are. */
static void trailing_bytes_are_corrupt(void **s)
{
    (void)s;
    size_t n = 4 * KIB;
    unsigned char in[4 * KIB];
    fill_text(in, n, 6);
    const codec *cs[] = {&zstd3, &gzip6};
    for (size_t k = 0; k < 2; k++) {
        size_t clen, got;
        unsigned char *comp = encode(cs[k], in, n, &clen);
        unsigned char *two = xmalloc(2 * clen);
        memcpy(two, comp, clen);
        memcpy(two + clen, comp, clen);
        unsigned char *out = guarded(2 * n);
        t_status(cs[k]->dec(two, 2 * clen, out, 2 * n, &got), SP_ERR_CORRUPT); /* two frames */
        assert_non_null(strstr(sp_last_error(), "after"));
        t_status(cs[k]->dec(two, clen + 1, out, 2 * n, &got), SP_ERR_CORRUPT); /* one stray byte */
        t_ok(cs[k]->dec(two, clen, out, 2 * n, &got));
        assert_int_equal(got, n);
        free(out);
        free(two);
        free(comp);
    }
}

static void empty_and_garbage_input_is_corrupt(void **s)
{
    (void)s;
    unsigned char junk[1000], out[4096];
    fill_random(junk, sizeof junk, 7);
    size_t got;
    for (size_t k = 0; k < NCODECS; k++) {
        const codec *c = all_codecs[k];
        t_status(c->dec(junk, 0, out, sizeof out, &got), SP_ERR_CORRUPT);
        assert_non_null(strstr(sp_last_error(), c->name));
    }
    t_status(sp__zstd_decode(junk, sizeof junk, out, sizeof out, &got), SP_ERR_CORRUPT);
    t_status(sp__gzip_decode(junk, sizeof junk, out, sizeof out, &got), SP_ERR_CORRUPT);
    /* A zlib stream (not gzip) is refused too. */
    unsigned char z[64];
    uLongf zlen = sizeof z;
    assert_int_equal(compress(z, &zlen, (const Bytef *)"hello", 5), Z_OK);
    t_status(sp__gzip_decode(z, zlen, out, sizeof out, &got), SP_ERR_CORRUPT);
}

/* ---- altered input ---- */

#define FLIP_N (4 * KIB)

/* Decode in (an exact-size copy, so ASan sees over-reads) into cap FLIP_N + canary. */
static sp_status decode_guarded(const codec *c, const unsigned char *in, size_t n, unsigned char *out, size_t *got)
{
    unsigned char *copy = xmalloc(n);
    if (n) memcpy(copy, in, n);
    memset(out, 0xA5, FLIP_N + CANARY);
    *got = (size_t)-1;
    sp_status st = c->dec(copy, n, out, FLIP_N, got);
    free(copy);
    canary_intact(out, FLIP_N);
    if (st != SP_OK && st != SP_ERR_CORRUPT)
        fail_msg("%s: decode of altered input -> %s: %s", c->name, sp_strerror(st), sp_last_error());
    return st;
}

/* What a flipped byte may do, by codec:
 * - zstd (no checksum: the frame layer's XXH3 covers that) may decode altered literals,
 *   but never to another length: the header's content size is checked. Its magic is
 *   always checked.
 * - lz4 has no checks at all: only no overrun, no crash.
 * - gzip: the CRC-32 and ISIZE catch every change of the output, so a flip that
 *   decodes must give the original bytes. That happens in fields nobody checks (MTIME,
 *   XFL, OS, the FTEXT flag), in the last byte's padding bits, and where a changed
 *   match distance points at an identical copy of the same words: harmless. Flips of
 *   the magic, method, reserved flags and the trailer are always caught. */
static void flips(const codec *c)
{
    unsigned char in[FLIP_N];
    fill_text(in, FLIP_N, 8);
    size_t clen, got;
    unsigned char *comp = encode(c, in, FLIP_N, &clen);
    assert_true(clen > 200 && clen < FLIP_N / 2);
    unsigned char *alt = xmalloc(clen), *out = xmalloc(FLIP_N + CANARY);
    int detected = 0, tried = 0, harmless = 0;
    for (size_t i = 0; i < clen; i++) {
        for (int m = 0; m < 9; m++) {
            unsigned mask = m < 8 ? 1u << m : 0xFFu;
            memcpy(alt, comp, clen);
            alt[i] ^= (unsigned char)mask;
            sp_status st = decode_guarded(c, alt, clen, out, &got);
            tried++;
            if (st != SP_OK) {
                detected++;
                continue;
            }
            int same = got == FLIP_N && memcmp(out, in, FLIP_N) == 0;
            if (strcmp(c->name, "zstd") == 0) {
                if (i < 4) fail_msg("zstd: flip %#x of magic byte %zu decoded", mask, i);
                if (got != FLIP_N) fail_msg("zstd: flip %#x at %zu decoded to %zu bytes", mask, i, got);
            } else if (strcmp(c->name, "gzip") == 0) {
                int checked = i < 3 || (i == 3 && (mask & 0xE0)) || i >= clen - 8;
                if (!same) fail_msg("gzip:%d: flip %#x at %zu of %zu decoded to other bytes", c->level, mask, i, clen);
                if (checked) fail_msg("gzip:%d: flip %#x at %zu of %zu went unnoticed", c->level, mask, i, clen);
                if (i >= 10) harmless++;
            }
        }
    }
    /* Sanity: most flips are caught by each codec's own parsing. */
    if (detected < tried / 4) fail_msg("%s: only %d of %d flips detected", c->name, detected, tried);
    /* In the deflate data a harmless flip is rare (a distance onto identical bytes). */
    if (harmless > tried / 50) fail_msg("gzip:%d: %d of %d flips decoded", c->level, harmless, tried);
    print_message("%s:%d: %d of %d flips of a %zu-byte frame refused\n", c->name, c->level, detected, tried, clen);
    free(alt);
    free(out);
    free(comp);
}

/* Every proper prefix is an error for zstd and gzip; lz4 may accept a prefix that
 * ends on a sequence boundary, and then yields a prefix of the data, never all of it. */
static void truncations(const codec *c)
{
    unsigned char in[FLIP_N];
    fill_text(in, FLIP_N, 9);
    size_t clen, got;
    unsigned char *comp = encode(c, in, FLIP_N, &clen);
    unsigned char *out = xmalloc(FLIP_N + CANARY);
    for (size_t l = 0; l < clen; l++) {
        sp_status st = decode_guarded(c, comp, l, out, &got);
        if (st == SP_OK && strcmp(c->name, "lz4") != 0)
            fail_msg("%s: a %zu-byte prefix of %zu decoded", c->name, l, clen);
        if (st == SP_OK && (got >= FLIP_N || memcmp(out, in, got) != 0))
            fail_msg("lz4: a %zu-byte prefix of %zu decoded to %zu bytes, not a shorter prefix", l, clen, got);
    }
    assert_int_equal(decode_guarded(c, comp, clen, out, &got), SP_OK);
    free(out);
    free(comp);
}

static void zstd_flips_are_caught_or_harmless(void **s) { (void)s, flips(&zstd3), flips(&zstd_fast5); }
static void lz4_flips_never_overrun(void **s) { (void)s, flips(&lz4); }
static void gzip_flips_are_all_caught(void **s) { (void)s, flips(&gzip1), flips(&gzip6), flips(&gzip9); }
static void truncated_input_is_refused(void **s)
{
    (void)s;
    truncations(&zstd3);
    truncations(&zstd_fast5);
    truncations(&lz4);
    truncations(&gzip6);
    truncations(&gzip1);
}

/* ---- gzip(1) ---- */

static void write_file(const char *path, const void *buf, size_t n, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1024, len = 0;
    unsigned char *b = xmalloc(cap);
    size_t r;
    while ((r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            b = realloc(b, cap *= 2);
            assert_non_null(b);
        }
    }
    fclose(f);
    *n = len;
    return b;
}

static void gzip_tool_reads_our_members_and_we_read_its(void **s)
{
    (void)s;
    char *dir = t_tmpdir();
    char gz[4200], raw[4200], cmd[9000];
    snprintf(gz, sizeof gz, "%s/m.gz", dir);
    snprintf(raw, sizeof raw, "%s/m", dir);
    size_t n1 = MIB, n2 = 1000;
    unsigned char *a = xmalloc(n1 + n2);
    fill_text(a, n1, 10);
    fill_random(a + n1, n2, 11);
    size_t l1, l2, got;
    unsigned char *m1 = encode(&gzip6, a, n1, &l1);
    unsigned char *m2 = encode(&gzip9, a + n1, n2, &l2);

    /* One member. */
    write_file(gz, m1, l1, 0600);
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' > '%s'", gz, raw);
    assert_int_equal(system(cmd), 0);
    unsigned char *back = read_file(raw, &got);
    assert_int_equal(got, n1);
    assert_true(memcmp(back, a, n1) == 0);
    free(back);

    /* Two members concatenated: one stream, as a spill file's payloads are. */
    unsigned char *both = xmalloc(l1 + l2);
    memcpy(both, m1, l1);
    memcpy(both + l1, m2, l2);
    write_file(gz, both, l1 + l2, 0600);
    assert_int_equal(system(cmd), 0);
    back = read_file(raw, &got);
    assert_int_equal(got, n1 + n2);
    assert_true(memcmp(back, a, n1 + n2) == 0);
    free(back);

    /* And the other way: a member made by gzip itself. */
    write_file(raw, a, n1, 0600);
    snprintf(cmd, sizeof cmd, "gzip -9 -n -c < '%s' > '%s'", raw, gz);
    assert_int_equal(system(cmd), 0);
    size_t glen;
    unsigned char *g = read_file(gz, &glen);
    unsigned char *out = guarded(n1);
    t_ok(sp__gzip_decode(g, glen, out, n1, &got));
    assert_int_equal(got, n1);
    assert_true(memcmp(out, a, n1) == 0);
    free(out);
    free(g);

    free(both);
    free(m1);
    free(m2);
    free(a);
    t_rmrf(dir);
    free(dir);
}

/* A cached context switching level must give what a fresh one at that level gives. */
static void cached_contexts_follow_the_level(void **s)
{
    (void)s;
    size_t n = 256 * KIB;
    unsigned char *in = xmalloc(n);
    fill_text(in, n, 12);
    static const int gz_levels[] = {9, 1, 6, 1, 9, 9, 3};
    for (size_t i = 0; i < sizeof gz_levels / sizeof gz_levels[0]; i++) {
        int level = gz_levels[i];
        size_t cap = sp__gzip_bound(n), len;
        unsigned char *ours = xmalloc(cap), *ref = xmalloc(cap);
        t_ok(sp__gzip_encode(level, in, n, ours, cap, &len));
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
        z.next_in = in;
        z.avail_in = (uInt)n;
        z.next_out = ref;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        if (z.total_out != len || memcmp(ours, ref, len) != 0)
            fail_msg("gzip level %d after level %d: %zu bytes, a fresh stream gives %lu", level,
                     i ? gz_levels[i - 1] : 0, len, z.total_out);
        deflateEnd(&z);
        free(ours);
        free(ref);
    }
    static const int zs_levels[] = {19, 1, -5, 3, 3, 19};
    for (size_t i = 0; i < sizeof zs_levels / sizeof zs_levels[0]; i++) {
        int level = zs_levels[i];
        size_t cap = sp__zstd_bound(n), len;
        unsigned char *ours = xmalloc(cap), *ref = xmalloc(cap);
        t_ok(sp__zstd_encode(level, in, n, ours, cap, &len));
        ZSTD_CCtx *z = ZSTD_createCCtx();
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, level)));
        size_t rlen = ZSTD_compress2(z, ref, cap, in, n);
        assert_false(ZSTD_isError(rlen));
        if (rlen != len || memcmp(ours, ref, len) != 0)
            fail_msg("zstd level %d: %zu bytes, a fresh context gives %zu", level, len, rlen);
        ZSTD_freeCCtx(z);
        free(ours);
        free(ref);
    }
    free(in);
}

static void thread_cleanup_then_reuse(void **s)
{
    (void)s;
    unsigned char in[8 * KIB];
    fill_text(in, sizeof in, 13);
    for (int round = 0; round < 3; round++) {
        for (size_t k = 0; k < NCODECS; k++) round_trip(all_codecs[k], in, sizeof in, 1);
        sp__codec_thread_cleanup();
        sp__codec_thread_cleanup(); /* twice is harmless */
    }
    /* The contexts made now are freed at exit (atexit), which LeakSanitizer checks. */
    round_trip(&gzip6, in, sizeof in, 1);
    round_trip(&zstd3, in, sizeof in, 1);
}

/* ---- threads ---- */

#define NTHREADS 4
#define ROUNDS 200

typedef struct {
    int id;
    int errors;
    char msg[256];
} worker;

static void *codec_worker(void *arg)
{
    worker *w = arg;
    size_t n = 64 * KIB;
    unsigned char *in = malloc(n), *out = malloc(n), *comp = malloc(sp__zstd_bound(n) + sp__gzip_bound(n));
    if (!in || !out || !comp) {
        w->errors++;
        snprintf(w->msg, sizeof w->msg, "out of memory");
        goto done;
    }
    for (int r = 0; r < ROUNDS && !w->errors; r++) {
        fill_text(in, n, (uint64_t)w->id * 100000 + (uint64_t)r);
        for (size_t k = 0; k < 3; k++) {
            /* Levels vary per round, so cached contexts also switch level under load. */
            const codec *c = k == 0 ? (r & 1 ? &zstd1 : &zstd3) : k == 1 ? (r % 3 ? &gzip6 : &gzip1) : &lz4;
            size_t clen = 0, got = 0;
            sp_status st = c->enc(c->level, in, n, comp, c->bound(n), &clen);
            if (st == SP_OK) st = c->dec(comp, clen, out, n, &got);
            if (st != SP_OK || got != n || memcmp(in, out, n) != 0) {
                w->errors++;
                snprintf(w->msg, sizeof w->msg, "thread %d round %d %s:%d: %s: %s", w->id, r, c->name, c->level,
                         sp_strerror(st), st ? sp_last_error() : "bytes differ");
                break;
            }
        }
    }
done:
    free(in);
    free(out);
    free(comp);
    return NULL; /* the contexts are freed by the thread-exit destructor */
}

static void threads_each_use_their_own_contexts(void **s)
{
    (void)s;
    pthread_t t[NTHREADS];
    worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, codec_worker, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < NTHREADS; i++)
        if (w[i].errors) fail_msg("%s", w[i].msg);
}

/* ---- AEAD ---- */

static const sp_aead all_aeads[] = {SP_AEAD_XCHACHA20, SP_AEAD_AES256GCM};

static void aead_names_and_default(void **s)
{
    (void)s;
    t_ok(sp__crypto_init());
    t_ok(sp__crypto_init());
    assert_true(sp__aead_available(SP_AEAD_XCHACHA20));
    assert_true(sp__aead_available(SP_AEAD_AES256GCM)); /* libcrypto has a software path */
    assert_false(sp__aead_available((sp_aead)99));
    assert_int_equal(sp__aead_default(),
                     crypto_aead_aes256gcm_is_available() ? SP_AEAD_AES256GCM : SP_AEAD_XCHACHA20);
    assert_string_equal(sp__aead_name(SP_AEAD_XCHACHA20), "xchacha20");
    assert_string_equal(sp__aead_name(SP_AEAD_AES256GCM), "aes256gcm");
    for (size_t i = 0; i < 2; i++) {
        sp_aead a = 0;
        assert_true(sp__aead_parse(sp__aead_name(all_aeads[i]), &a));
        assert_int_equal(a, all_aeads[i]);
    }
    sp_aead a = SP_AEAD_XCHACHA20;
    assert_false(sp__aead_parse("aes", &a));
    assert_false(sp__aead_parse("", &a));
    assert_false(sp__aead_parse(NULL, &a));
    assert_int_equal(a, SP_AEAD_XCHACHA20);
    print_message("default AEAD here: %s\n", sp__aead_name(sp__aead_default()));
}

static void test_key(unsigned char key[SP_KEY_BYTES], unsigned seed)
{
    for (unsigned i = 0; i < SP_KEY_BYTES; i++) key[i] = (unsigned char)(seed * 37 + i * 11);
}

static void aead_round_trips(void **s)
{
    (void)s;
    static const size_t sizes[] = {0, 1, 64, MIB};
    unsigned char key[SP_KEY_BYTES];
    test_key(key, 1);
    const char ad[] = "frame header";
    unsigned char *in = xmalloc(MIB);
    for (size_t k = 0; k < 2; k++) {
        sp_aead a = all_aeads[k];
        if (!sp__aead_available(a)) continue;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i], clen, got;
            fill_text(in, n, 20 + i);
            for (int with_ad = 0; with_ad < 2; with_ad++) {
                const void *adp = with_ad ? ad : NULL;
                size_t adl = with_ad ? sizeof ad : 0;
                unsigned char *ct = guarded(n + SP_AEAD_TAG);
                t_ok(sp__aead_encrypt(a, key, 7, adp, adl, in, n, ct, n + SP_AEAD_TAG, &clen));
                assert_int_equal(clen, n + SP_AEAD_TAG);
                canary_intact(ct, clen);
                unsigned char *pt = guarded(n);
                t_ok(sp__aead_decrypt(a, key, 7, adp, adl, ct, clen, pt, n, &got));
                assert_int_equal(got, n);
                if (n && memcmp(pt, in, n) != 0) fail_msg("%s: %zu bytes came back different", sp__aead_name(a), n);
                canary_intact(pt, n);
                free(pt);
                free(ct);
            }
        }
    }
    free(in);
}

/* ---- byte shuffle ---- */

/* Every width over lengths around the 16-number blocks and a partial last number:
 * the planes are where the header says, and unshuffle gives the input back. */
static void shuffle_round_trips_at_every_length(void **s)
{
    (void)s;
    enum { N = 1200 };
    unsigned char in[N], planes[N + CANARY], back[N + CANARY];
    fill_random(in, N, 31);
    static const unsigned widths[] = {2, 4, 8};
    for (unsigned k = 0; k < 3; k++) {
        unsigned w = widths[k];
        for (size_t n = 0; n <= N; n += n < 300 ? 1 : 113) {
            memset(planes, 0xA5, sizeof planes);
            memset(back, 0xA5, sizeof back);
            sp__shuffle(in, planes, n, w);
            canary_intact(planes, n);
            size_t m = n / w;
            for (size_t i = 0; i < m; i++)
                for (unsigned j = 0; j < w; j++)
                    if (planes[j * m + i] != in[i * w + j])
                        fail_msg("width %u, %zu bytes: byte %u of number %zu is not in plane %u", w, n, j, i, j);
            assert_memory_equal(planes + m * w, in + m * w, n - m * w); /* the partial number, as it was */
            sp__unshuffle(planes, back, n, w);
            canary_intact(back, n);
            if (n) assert_memory_equal(back, in, n);
        }
    }
    for (unsigned w = 0; w < 2; w++) { /* not a width: a copy */
        sp__shuffle(in, planes, N, w);
        assert_memory_equal(planes, in, N);
        sp__unshuffle(planes, back, N, w);
        assert_memory_equal(back, in, N);
    }
}

/* The width is picked only where shuffling pays: 4 for 32-bit codes, 8 for small
 * 64-bit integers, none for text, random bytes, runs or a short input. */
static void shuffle_pick_finds_numbers_and_leaves_the_rest(void **s)
{
    (void)s;
    size_t n = MIB;
    unsigned char *b = xmalloc(n);
    uint64_t seed = 41;
    for (size_t i = 0; i < n / 4; i++) {
        uint32_t v = (uint32_t)(rng_next(&seed) & 255);
        memcpy(b + 4 * i, &v, 4);
    }
    assert_int_equal(sp__shuffle_pick(b, n), 4);
    assert_int_equal(sp__shuffle_pick(b + 1, n - 1), 4); /* not aligned to the numbers */
    assert_int_equal(sp__shuffle_pick(b, 8 * KIB), 0);   /* too short to gain from it */
    for (size_t i = 0; i < n / 8; i++) {
        uint64_t v = rng_next(&seed) % 100000;
        memcpy(b + 8 * i, &v, 8);
    }
    assert_int_equal(sp__shuffle_pick(b, n), 8);
    /* doubles: shuffled where their high bytes repeat enough to save an eighth under
     * lz4 (values in [100, 110): exponent and leading mantissa bits shared), not where
     * they spread over a range of exponents with random mantissas ([0, 1)) */
    for (size_t i = 0; i < n / 8; i++) {
        double v = 100.0 + (double)(rng_next(&seed) >> 11) / 9007199254740992.0 * 10.0;
        memcpy(b + 8 * i, &v, 8);
    }
    assert_int_equal(sp__shuffle_pick(b, n), 8);
    for (size_t i = 0; i < n / 8; i++) {
        double v = (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
        memcpy(b + 8 * i, &v, 8);
    }
    assert_int_equal(sp__shuffle_pick(b, n), 0);
    fill_text(b, n, 42);
    assert_int_equal(sp__shuffle_pick(b, n), 0);
    fill_random(b, n, 43);
    assert_int_equal(sp__shuffle_pick(b, n), 0);
    memset(b, 7, n);
    assert_int_equal(sp__shuffle_pick(b, n), 0);
    free(b);
}

/* The format is fixed: the nonce is the index little-endian, zero-padded, and the
 * output is libsodium's combined ciphertext || tag. */
static void aead_matches_libsodium_with_the_index_nonce(void **s)
{
    (void)s;
    unsigned char key[SP_KEY_BYTES], in[100], ours[100 + SP_AEAD_TAG], ref[100 + SP_AEAD_TAG];
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES] = {0};
    test_key(key, 2);
    fill_random(in, sizeof in, 21);
    uint64_t index = 0x0102030405060708ull;
    for (int i = 0; i < 8; i++) nonce[i] = (unsigned char)(index >> (8 * i));
    size_t len;
    unsigned long long rlen;
    t_ok(sp__aead_encrypt(SP_AEAD_XCHACHA20, key, index, "ad", 2, in, sizeof in, ours, sizeof ours, &len));
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(ref, &rlen, in, sizeof in,
                                                               (const unsigned char *)"ad", 2, NULL, nonce, key),
                     0);
    assert_int_equal(len, rlen);
    assert_memory_equal(ours, ref, len);
    if (sp__aead_available(SP_AEAD_AES256GCM)) {
        t_ok(sp__aead_encrypt(SP_AEAD_AES256GCM, key, index, "ad", 2, in, sizeof in, ours, sizeof ours, &len));
        assert_int_equal(crypto_aead_aes256gcm_encrypt(ref, &rlen, in, sizeof in, (const unsigned char *)"ad", 2,
                                                       NULL, nonce, key),
                         0);
        assert_int_equal(len, rlen);
        assert_memory_equal(ours, ref, len);
    }
}

static void aead_refuses_wrong_key_index_ad_and_any_flip(void **s)
{
    (void)s;
    unsigned char key[SP_KEY_BYTES], other[SP_KEY_BYTES];
    test_key(key, 3);
    test_key(other, 4);
    enum { N = 64 };
    unsigned char in[N], ct[N + SP_AEAD_TAG], alt[N + SP_AEAD_TAG];
    unsigned char *pt = guarded(N);
    fill_text(in, N, 22);
    const char ad[] = "ad-1";
    size_t clen, got;
    for (size_t k = 0; k < 2; k++) {
        sp_aead a = all_aeads[k];
        if (!sp__aead_available(a)) continue;
        t_ok(sp__aead_encrypt(a, key, 42, ad, sizeof ad, in, N, ct, sizeof ct, &clen));
        assert_int_equal(clen, sizeof ct);

#define REFUSED(expr)                                                                         \
    do {                                                                                      \
        memset(pt, 0xA5, N + CANARY);                                                         \
        t_status(expr, SP_ERR_AUTH);                                                          \
        canary_intact(pt, N);                                                                 \
        for (size_t z = 0; z < N; z++)                                                        \
            if (pt[z] != 0) fail_msg("%s: unverified plaintext left at %zu", sp__aead_name(a), z); \
    } while (0)

        REFUSED(sp__aead_decrypt(a, other, 42, ad, sizeof ad, ct, clen, pt, N, &got));
        assert_non_null(strstr(sp_last_error(), "wrong key or altered data"));
        assert_non_null(strstr(sp_last_error(), sp__aead_name(a)));
        REFUSED(sp__aead_decrypt(a, key, 43, ad, sizeof ad, ct, clen, pt, N, &got));
        REFUSED(sp__aead_decrypt(a, key, 42 + (1ull << 32), ad, sizeof ad, ct, clen, pt, N, &got));
        REFUSED(sp__aead_decrypt(a, key, 42, "ad-2", sizeof ad, ct, clen, pt, N, &got));
        REFUSED(sp__aead_decrypt(a, key, 42, ad, sizeof ad - 1, ct, clen, pt, N, &got));
        REFUSED(sp__aead_decrypt(a, key, 42, NULL, 0, ct, clen, pt, N, &got));
        for (size_t i = 0; i < clen; i++)
            for (int b = 0; b < 8; b++) {
                memcpy(alt, ct, clen);
                alt[i] ^= (unsigned char)(1u << b);
                REFUSED(sp__aead_decrypt(a, key, 42, ad, sizeof ad, alt, clen, pt, N, &got));
            }
        /* Truncated: a dropped byte, a dropped tag, less than a tag. */
        t_status(sp__aead_decrypt(a, key, 42, ad, sizeof ad, ct, clen - 1, pt, N, &got), SP_ERR_AUTH);
        t_status(sp__aead_decrypt(a, key, 42, ad, sizeof ad, ct, N, pt, N, &got), SP_ERR_AUTH);
        t_status(sp__aead_decrypt(a, key, 42, ad, sizeof ad, ct, SP_AEAD_TAG - 1, pt, N, &got), SP_ERR_AUTH);
        /* More plaintext than cap. */
        t_status(sp__aead_decrypt(a, key, 42, ad, sizeof ad, ct, clen, pt, N - 1, &got), SP_ERR_AUTH);
        /* The other algorithm does not accept it. */
        sp_aead b = a == SP_AEAD_AES256GCM ? SP_AEAD_XCHACHA20 : SP_AEAD_AES256GCM;
        if (sp__aead_available(b)) REFUSED(sp__aead_decrypt(b, key, 42, ad, sizeof ad, ct, clen, pt, N, &got));
        /* Still fine with everything right. */
        t_ok(sp__aead_decrypt(a, key, 42, ad, sizeof ad, ct, clen, pt, N, &got));
        assert_memory_equal(pt, in, N);
        /* Encrypt needs room for the tag. */
        t_status(sp__aead_encrypt(a, key, 42, ad, sizeof ad, in, N, alt, N + SP_AEAD_TAG - 1, &clen),
                 SP_ERR_TOO_BIG);
#undef REFUSED
    }
    t_status(sp__aead_encrypt((sp_aead)99, key, 0, NULL, 0, in, N, ct, sizeof ct, &clen), SP_ERR_INVALID);
    free(pt);
}

static int contains(const unsigned char *h, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(h + i, needle, k) == 0) return 1;
    return 0;
}

static void aead_hides_the_plaintext_and_nonces_differ(void **s)
{
    (void)s;
    static const char marker[] = "SPILLPOOL-PLAINTEXT-MARKER";
    size_t n = 64 * KIB;
    unsigned char *in = xmalloc(n), *c1 = xmalloc(n + SP_AEAD_TAG), *c2 = xmalloc(n + SP_AEAD_TAG);
    for (size_t i = 0; i < n; i++) in[i] = (unsigned char)marker[i % (sizeof marker - 1)];
    unsigned char key[SP_KEY_BYTES];
    test_key(key, 5);
    for (size_t k = 0; k < 2; k++) {
        sp_aead a = all_aeads[k];
        if (!sp__aead_available(a)) continue;
        size_t l1, l2;
        t_ok(sp__aead_encrypt(a, key, 0, NULL, 0, in, n, c1, n + SP_AEAD_TAG, &l1));
        t_ok(sp__aead_encrypt(a, key, 1, NULL, 0, in, n, c2, n + SP_AEAD_TAG, &l2));
        assert_false(contains(c1, l1, marker, 8));
        assert_false(contains(c2, l2, marker, 8));
        /* The index is the nonce: the same plaintext encrypts differently per frame. */
        size_t same = 0;
        for (size_t i = 0; i < n; i++) same += c1[i] == c2[i];
        if (same > n / 64) fail_msg("%s: %zu of %zu bytes equal under two indexes", sp__aead_name(a), same, n);
    }
    free(in);
    free(c1);
    free(c2);
}

static void file_keys_and_key_checks(void **s)
{
    (void)s;
    unsigned char key[SP_KEY_BYTES], other[SP_KEY_BYTES], id1[SP_FILE_ID_BYTES], id2[SP_FILE_ID_BYTES];
    test_key(key, 6);
    test_key(other, 7);
    fill_random(id1, sizeof id1, 23);
    memcpy(id2, id1, sizeof id2);
    id2[15] ^= 1;
    unsigned char f1[SP_KEY_BYTES], f1b[SP_KEY_BYTES], f2[SP_KEY_BYTES], fo[SP_KEY_BYTES];
    sp__aead_file_key(key, id1, f1);
    sp__aead_file_key(key, id1, f1b);
    sp__aead_file_key(key, id2, f2);
    sp__aead_file_key(other, id1, fo);
    assert_memory_equal(f1, f1b, SP_KEY_BYTES);
    assert_memory_not_equal(f1, f2, SP_KEY_BYTES);
    assert_memory_not_equal(f1, fo, SP_KEY_BYTES);
    assert_memory_not_equal(f1, key, SP_KEY_BYTES);

    /* The documented derivation: keyed BLAKE2b of file_id || context. */
    unsigned char msg[64], ref[SP_KEY_BYTES];
    memcpy(msg, id1, 16);
    memcpy(msg + 16, "spillpool file key v1", 21);
    crypto_generichash(ref, SP_KEY_BYTES, msg, 16 + 21, key, SP_KEY_BYTES);
    assert_memory_equal(f1, ref, SP_KEY_BYTES);

    unsigned char c1[16], c1b[16], c2[16], co[16];
    sp__aead_key_check(key, id1, c1);
    sp__aead_key_check(key, id1, c1b);
    sp__aead_key_check(key, id2, c2);
    sp__aead_key_check(other, id1, co);
    assert_memory_equal(c1, c1b, 16);
    assert_memory_not_equal(c1, co, 16);
    assert_memory_not_equal(c1, c2, 16);
    assert_memory_not_equal(c1, f1, 16); /* another context than the file key */
    memcpy(msg + 16, "spillpool key check v1", 22);
    crypto_generichash(ref, 16, msg, 16 + 22, key, SP_KEY_BYTES);
    assert_memory_equal(c1, ref, 16);

    /* A frame sealed under one file's key does not open under another's. */
    unsigned char in[32] = "thirty-two bytes of plain text!", ct[32 + SP_AEAD_TAG], pt[32];
    size_t clen, got;
    sp_aead a = sp__aead_default();
    t_ok(sp__aead_encrypt(a, f1, 0, NULL, 0, in, 32, ct, sizeof ct, &clen));
    t_status(sp__aead_decrypt(a, f2, 0, NULL, 0, ct, clen, pt, 32, &got), SP_ERR_AUTH);
    t_ok(sp__aead_decrypt(a, f1, 0, NULL, 0, ct, clen, pt, 32, &got));
}

static void key_memory_and_random_bytes(void **s)
{
    (void)s;
    unsigned char *k = sp__key_alloc();
    assert_non_null(k);
    memset(k, 0x11, SP_KEY_BYTES);
    sp__key_free(k);
    sp__key_free(NULL);
    unsigned char a[32] = {0}, b[32] = {0}, zero[32] = {0};
    sp__random_bytes(a, sizeof a);
    sp__random_bytes(b, sizeof b);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_memory_not_equal(a, b, sizeof a);
}

/* ---- key files ---- */

typedef struct {
    char *dir;
    char path[4200];
} keyfix;

static int key_setup(void **state)
{
    keyfix *f = calloc(1, sizeof *f);
    f->dir = t_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/key", f->dir);
    *state = f;
    return 0;
}

static int key_teardown(void **state)
{
    keyfix *f = *state;
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const unsigned char raw_key[SP_KEY_BYTES] = {
    0x00, 0x01, 0xfe, 0xff, 0x10, 0x20, 0x30, 0x40, 0x0a, 0x0d, 0x55, 0xaa, 0x12, 0x34, 0x56, 0x78,
    0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21, 0x77, 0x88, 0x99, 0x0a};

static void load_ok(const char *path, const void *content, size_t n, mode_t mode)
{
    write_file(path, content, n, mode);
    unsigned char key[SP_KEY_BYTES];
    memset(key, 0x5A, sizeof key);
    t_ok(sp__key_load_file(path, key));
    assert_memory_equal(key, raw_key, SP_KEY_BYTES);
}

/* Refused with want, naming the path (and need when given); the key is untouched. */
static void load_refused(const char *path, sp_status want, const char *need)
{
    unsigned char key[SP_KEY_BYTES], same[SP_KEY_BYTES];
    memset(key, 0x5A, sizeof key);
    memset(same, 0x5A, sizeof same);
    t_status(sp__key_load_file(path, key), want);
    if (!strstr(sp_last_error(), path)) fail_msg("'%s' does not name %s", sp_last_error(), path);
    if (need && !strstr(sp_last_error(), need)) fail_msg("'%s' does not say '%s'", sp_last_error(), need);
    assert_memory_equal(key, same, sizeof key);
}

static void key_file_raw_and_hex(void **state)
{
    keyfix *f = *state;
    char hex[2 * SP_KEY_BYTES + 3];
    sodium_bin2hex(hex, sizeof hex, raw_key, SP_KEY_BYTES);
    load_ok(f->path, raw_key, SP_KEY_BYTES, 0600);
    load_ok(f->path, raw_key, SP_KEY_BYTES, 0400);
    load_ok(f->path, hex, 64, 0600);
    strcat(hex, "\n");
    load_ok(f->path, hex, 65, 0600);
    hex[64] = '\r';
    hex[65] = '\n';
    load_ok(f->path, hex, 66, 0600);
    for (int i = 0; i < 64; i++)
        if (hex[i] >= 'a' && hex[i] <= 'f') hex[i] = (char)(hex[i] - 'a' + 'A');
    load_ok(f->path, hex, 64, 0600); /* upper case too */
    /* A symlink is followed; the file it names is what gets checked. */
    char link[4300];
    snprintf(link, sizeof link, "%s/link", f->dir);
    assert_int_equal(symlink(f->path, link), 0);
    unsigned char key[SP_KEY_BYTES];
    t_ok(sp__key_load_file(link, key));
    assert_memory_equal(key, raw_key, SP_KEY_BYTES);
}

static void key_file_of_the_wrong_length_or_text_is_invalid(void **state)
{
    keyfix *f = *state;
    char hex[2 * SP_KEY_BYTES + 1], buf[300];
    sodium_bin2hex(hex, sizeof hex, raw_key, SP_KEY_BYTES);
    write_file(f->path, raw_key, 31, 0600);
    load_refused(f->path, SP_ERR_INVALID, "31 bytes");
    memcpy(buf, raw_key, 32);
    buf[32] = '\n';
    write_file(f->path, buf, 33, 0600);
    load_refused(f->path, SP_ERR_INVALID, "33 bytes");
    write_file(f->path, hex, 63, 0600);
    load_refused(f->path, SP_ERR_INVALID, "63 bytes");
    write_file(f->path, "", 0, 0600);
    load_refused(f->path, SP_ERR_INVALID, "0 bytes");
    memcpy(buf, hex, 64);
    buf[10] = 'g';
    write_file(f->path, buf, 64, 0600);
    load_refused(f->path, SP_ERR_INVALID, "not hex");
    memcpy(buf, hex, 64);
    buf[63] = ' ';
    write_file(f->path, buf, 64, 0600);
    load_refused(f->path, SP_ERR_INVALID, NULL);
    memcpy(buf, hex, 64);
    memcpy(buf + 64, "\n\n", 2);
    write_file(f->path, buf, 66, 0600);
    load_refused(f->path, SP_ERR_INVALID, NULL);
    memcpy(buf, hex, 64);
    memcpy(buf + 64, "ab", 2);
    write_file(f->path, buf, 66, 0600); /* 66 hex digits */
    load_refused(f->path, SP_ERR_INVALID, NULL);
    memset(buf, 'a', sizeof buf);
    write_file(f->path, buf, sizeof buf, 0600);
    load_refused(f->path, SP_ERR_INVALID, NULL);
}

static void key_file_missing_open_to_others_or_not_a_file(void **state)
{
    keyfix *f = *state;
    load_refused(f->path, SP_ERR_NOT_FOUND, "No such file or directory");
    static const mode_t modes[] = {0640, 0604, 0644, 0610, 0601, 0660};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        write_file(f->path, raw_key, SP_KEY_BYTES, modes[i]);
        char want[16];
        snprintf(want, sizeof want, "mode 0%o", (unsigned)modes[i]);
        load_refused(f->path, SP_ERR_PERMISSION, want);
        assert_non_null(strstr(sp_last_error(), "chmod 600"));
    }
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/dir", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    load_refused(sub, SP_ERR_PERMISSION, "not a regular file");
    char fifo[4300];
    snprintf(fifo, sizeof fifo, "%s/fifo", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    load_refused(fifo, SP_ERR_PERMISSION, "not a regular file"); /* and does not hang */
    t_status(sp__key_load_file(NULL, (unsigned char[SP_KEY_BYTES]){0}), SP_ERR_INVALID);
}

#define K(name) cmocka_unit_test_setup_teardown(name, key_setup, key_teardown)
/* OpenSSL's allocations through these, so that a test can make them fail on one
 * thread: a cipher context that cannot be made is out of memory, not altered data. */
static _Thread_local int ossl_fail;
static int ossl_hooked;
static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return ossl_fail ? NULL : malloc(n);
}
static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return ossl_fail ? NULL : realloc(p, n);
}
static void ossl_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    free(p);
}

typedef struct {
    const unsigned char *key, *ct;
    size_t clen;
    sp_status enc, dec;
} oom_job;

static void *oom_thread(void *arg)
{
    oom_job *j = arg;
    unsigned char pt[64], ct[64 + SP_AEAD_TAG];
    size_t got = 0;
    ossl_fail = 1; /* a new thread: its cipher context is made now, and cannot be */
    j->dec = sp__aead_decrypt(SP_AEAD_AES256GCM, j->key, 3, "ad", 2, j->ct, j->clen, pt, sizeof pt, &got);
    j->enc = sp__aead_encrypt(SP_AEAD_AES256GCM, j->key, 3, "ad", 2, pt, 64, ct, sizeof ct, &got);
    return NULL;
}

static void aead_out_of_memory_is_not_an_auth_failure(void **state)
{
    (void)state;
    if (!ossl_hooked) skip(); /* OpenSSL allocated before main: the hooks could not be set */
    unsigned char key[32], pt[64] = {1}, ct[64 + SP_AEAD_TAG];
    memset(key, 7, sizeof key);
    size_t clen = 0;
    t_ok(sp__aead_encrypt(SP_AEAD_AES256GCM, key, 3, "ad", 2, pt, sizeof pt, ct, sizeof ct, &clen));
    oom_job j = {key, ct, clen, SP_OK, SP_OK};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, oom_thread, &j), 0);
    pthread_join(th, NULL);
    assert_int_equal(j.dec, SP_ERR_NOMEM);
    assert_int_equal(j.enc, SP_ERR_NOMEM);
}

int main(void)
{
    ossl_hooked = CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) == 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aead_out_of_memory_is_not_an_auth_failure),
        cmocka_unit_test(zstd_level_1_round_trips),
        cmocka_unit_test(zstd_level_3_round_trips),
        cmocka_unit_test(zstd_level_19_round_trips),
        cmocka_unit_test(zstd_level_minus_5_round_trips),
        cmocka_unit_test(lz4_round_trips),
        cmocka_unit_test(gzip_level_1_round_trips),
        cmocka_unit_test(gzip_level_6_round_trips),
        cmocka_unit_test(gzip_level_9_round_trips),
        cmocka_unit_test(levels_are_checked),
        cmocka_unit_test(encode_into_a_small_cap_is_too_big),
        cmocka_unit_test(decode_refuses_more_than_cap),
        cmocka_unit_test(zstd_frame_without_content_size_is_bounded_by_cap),
        cmocka_unit_test(trailing_bytes_are_corrupt),
        cmocka_unit_test(empty_and_garbage_input_is_corrupt),
        cmocka_unit_test(zstd_flips_are_caught_or_harmless),
        cmocka_unit_test(lz4_flips_never_overrun),
        cmocka_unit_test(gzip_flips_are_all_caught),
        cmocka_unit_test(truncated_input_is_refused),
        cmocka_unit_test(gzip_tool_reads_our_members_and_we_read_its),
        cmocka_unit_test(cached_contexts_follow_the_level),
        cmocka_unit_test(thread_cleanup_then_reuse),
        cmocka_unit_test(threads_each_use_their_own_contexts),
        cmocka_unit_test(shuffle_round_trips_at_every_length),
        cmocka_unit_test(shuffle_pick_finds_numbers_and_leaves_the_rest),
        cmocka_unit_test(aead_names_and_default),
        cmocka_unit_test(aead_round_trips),
        cmocka_unit_test(aead_matches_libsodium_with_the_index_nonce),
        cmocka_unit_test(aead_refuses_wrong_key_index_ad_and_any_flip),
        cmocka_unit_test(aead_hides_the_plaintext_and_nonces_differ),
        cmocka_unit_test(file_keys_and_key_checks),
        cmocka_unit_test(key_memory_and_random_bytes),
        K(key_file_raw_and_hex),
        K(key_file_of_the_wrong_length_or_text_is_invalid),
        K(key_file_missing_open_to_others_or_not_a_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
