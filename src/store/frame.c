/* Framing and checksums of spilled objects: see frame.h for the format. */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "../common/alloc.h"
#include "../filter/par.h"
#include "frame.h"

static const unsigned char sp_magic[8] = {'S', 'P', 'I', 'L', 'L', 'P', 'L', 1};

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Grow a staging buffer to hold need bytes (doubling, at most one frame), so small
 * objects never pay for a whole frame's buffer. */
static sp_status sp_grow_to(unsigned char **buf, size_t *cap, size_t need, size_t limit)
{
    if (need <= *cap) return SP_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    if (n > limit) n = limit;
    unsigned char *p = sp__realloc(*buf, n);
    SP_RETURN_IF(p == NULL, SP_ERR_NOMEM, "out of memory for a %zu-byte frame buffer", n);
    *buf = p;
    *cap = n;
    return SP_OK;
}

static sp_status sp_grow(unsigned char **buf, size_t *cap, size_t need)
{
    return sp_grow_to(buf, cap, need, SP_FRAME_SIZE);
}

/* Filter scratch is kept per thread: a fresh pair of 1 MiB buffers for every spill
 * costs page faults that outweigh a fast codec. A writer or reader borrows the
 * thread's set (or, if it is already lent out, owns one of its own): a pair of
 * buffers for each frame it may have in flight. */
typedef struct sp_scratch {
    unsigned char *a[SP_PAR_MAX], *b[SP_PAR_MAX];
    size_t cap_a[SP_PAR_MAX], cap_b[SP_PAR_MAX];
    int busy, owned;
} sp_scratch;

static pthread_key_t sp_scratch_key;
static pthread_once_t sp_scratch_once = PTHREAD_ONCE_INIT;

static void sp_scratch_free(void *p)
{
    sp_scratch *sc = p;
    for (unsigned i = 0; i < SP_PAR_MAX; i++) {
        sp__free(sc->a[i]);
        sp__free(sc->b[i]);
    }
    sp__free(sc);
}

static void sp_scratch_init(void) { (void)pthread_key_create(&sp_scratch_key, sp_scratch_free); }

static sp_scratch *sp_scratch_get(void)
{
    pthread_once(&sp_scratch_once, sp_scratch_init);
    sp_scratch *sc = pthread_getspecific(sp_scratch_key);
    if (!sc) {
        sc = sp__calloc(1, sizeof *sc);
        if (sc && pthread_setspecific(sp_scratch_key, sc) != 0) {
            sp__free(sc);
            sc = NULL;
        }
    }
    if (sc && !sc->busy) {
        sc->busy = 1;
        return sc;
    }
    sc = sp__calloc(1, sizeof *sc); /* the thread's set is lent out (or unavailable) */
    if (sc) sc->owned = 1;
    return sc;
}

static void sp_scratch_put(sp_scratch *sc)
{
    if (!sc) return;
    if (sc->owned) sp_scratch_free(sc);
    else sc->busy = 0;
}

/* Slot i's two buffers, sized for a frame of n plain bytes under chain c. */
static sp_status sp_scratch_fit(sp_scratch **sc, unsigned i, sp_chain *c, size_t n)
{
    if (!*sc) *sc = sp_scratch_get();
    SP_RETURN_IF(!*sc, SP_ERR_NOMEM, "out of memory for filter scratch");
    size_t need = sp__chain_caps(c, n, NULL);
    SP_FORWARD(sp_grow_to(&(*sc)->a[i], &(*sc)->cap_a[i], need, c->buf_cap));
    return sp_grow_to(&(*sc)->b[i], &(*sc)->cap_b[i], need, c->buf_cap);
}

/* The flags' low bits enter shifted, the shuffle bits (16 and up) multiplied in: a
 * file written before they existed hashes as it did. A flipped skip bit (8..15) is
 * left to the decode: a stage skipped that ran leaves bytes of the wrong length (or
 * fails authentication under encryption), and one run that was skipped meets bytes
 * not in its format that would have to decode to exactly the frame's length. */
static uint64_t sp_frame_seed(uint32_t stored, uint32_t raw, uint32_t flags, uint64_t index)
{
    return (((uint64_t)stored << 32) | raw) ^ ((uint64_t)flags << 58) ^ (index * 0x9E3779B97F4A7C15ull) ^
           ((uint64_t)(flags >> 16) * 0xC2B2AE3D27D4EB4Full);
}

uint64_t sp__end_hash(uint64_t raw_total, uint64_t frames)
{
    unsigned char t[16];
    put64(t, raw_total);
    put64(t + 8, frames);
    return XXH3_64bits_withSeed(t, sizeof t, sp_frame_seed(0, 0, SP_FRAME_END, frames));
}

static sp_status sp_emit(sp_writer *w, const void *buf, size_t len)
{
    SP_FORWARD(w->charge(w->charge_ctx, len));
    w->stored_total += len;
    return w->m->write(w->file, buf, len);
}

/* Write one frame whose payload is already filtered. */
static sp_status sp_emit_encoded(sp_writer *w, const unsigned char *out, size_t out_len, uint32_t raw,
                                 uint32_t flags)
{
    unsigned char h[SP_FRAME_HEADER];
    put32(h, (uint32_t)out_len);
    put32(h + 4, raw);
    put32(h + 8, flags);
    put32(h + 12, 0);
    uint64_t hash = 0;
    if (!w->chain || !w->chain->tail_auth)
        hash = XXH3_64bits_withSeed(out, out_len, sp_frame_seed((uint32_t)out_len, raw, flags, w->frames));
    put64(h + 16, hash);
    SP_FORWARD(sp_emit(w, h, sizeof h));
    if (out_len) SP_FORWARD(sp_emit(w, out, out_len));
    w->frames++;
    w->raw_total += raw;
    return SP_OK;
}

static sp_status sp_emit_frame(sp_writer *w, const unsigned char *payload, uint32_t len, uint32_t flags)
{
    const unsigned char *out = payload;
    size_t out_len = len;
    if (w->chain) {
        uint32_t skip = 0;
        SP_FORWARD(sp_scratch_fit(&w->scratch, 0, w->chain, len));
        sp_frame_key k = {w->file_id, w->file_key};
        SP_FORWARD(sp__chain_encode(w->chain, &k, w->frames, payload, len, w->scratch->a[0], w->scratch->b[0], &out,
                                    &out_len, &skip));
        flags |= skip << SP_FRAME_SKIP_SHIFT;
    }
    return sp_emit_encoded(w, out, out_len, len, flags);
}

/* Whole frames filtered side by side on the helpers, then written in order. */
typedef struct sp_enc_batch {
    sp_writer *w;
    const unsigned char *in;
    const unsigned char *out[SP_PAR_MAX];
    size_t out_len[SP_PAR_MAX];
    uint32_t skip[SP_PAR_MAX];
    sp_status st[SP_PAR_MAX];
    char msg[SP_PAR_MAX][256];
} sp_enc_batch;

static void sp_enc_job(void *arg, unsigned i)
{
    sp_enc_batch *b = arg;
    sp_writer *w = b->w;
    sp_frame_key k = {w->file_id, w->file_key};
    b->st[i] = sp__chain_encode(w->chain, &k, w->frames + i, b->in + (size_t)i * SP_FRAME_SIZE, SP_FRAME_SIZE,
                                w->scratch->a[i], w->scratch->b[i], &b->out[i], &b->out_len[i], &b->skip[i]);
    if (b->st[i] != SP_OK) snprintf(b->msg[i], sizeof b->msg[i], "%s", sp_last_error()); /* helper's thread */
}

static sp_status sp_emit_batch(sp_writer *w, const unsigned char *in, unsigned k)
{
    for (unsigned i = 0; i < k; i++) SP_FORWARD(sp_scratch_fit(&w->scratch, i, w->chain, SP_FRAME_SIZE));
    sp_enc_batch b;
    b.w = w;
    b.in = in;
    sp__par_run(k, sp_enc_job, &b);
    for (unsigned i = 0; i < k; i++) {
        if (b.st[i] != SP_OK) return sp__fail(b.st[i], "%s", b.msg[i]);
        SP_FORWARD(sp_emit_encoded(w, b.out[i], b.out_len[i], SP_FRAME_SIZE, b.skip[i] << SP_FRAME_SKIP_SHIFT));
    }
    return SP_OK;
}

sp_status sp__writer_begin(sp_writer *w, const sp_store_methods *m, void *file, sp_charge_fn charge,
                           void *charge_ctx, sp_chain *chain, const unsigned char *key)
{
    memset(w, 0, sizeof *w);
    w->m = m;
    w->file = file;
    w->charge = charge;
    w->charge_ctx = charge_ctx;
    w->chain = chain && chain->n ? chain : NULL;
    size_t clen = w->chain ? strlen(w->chain->text) : 0;
    int keyed = w->chain && w->chain->encrypted;
    SP_RETURN_IF(keyed && !key, SP_ERR_INVALID, "filter chain %s encrypts, but the pool has no key",
                 w->chain->text);
    if (keyed) SP_FORWARD(sp__crypto_init());
    sp__random_bytes(w->file_id, sizeof w->file_id);
    unsigned char h[SP_HEADER_MAX];
    size_t n = 24;
    memcpy(h, sp_magic, 8);
    put32(h + 12, SP_FRAME_SIZE);
    put32(h + 16, keyed ? SP_HEADER_KEYCHECK : 0);
    h[20] = (unsigned char)clen;
    h[21] = (unsigned char)(clen >> 8);
    h[22] = h[23] = 0;
    if (clen) memcpy(h + n, w->chain->text, clen);
    n += clen;
    memcpy(h + n, w->file_id, SP_FILE_ID_BYTES);
    n += SP_FILE_ID_BYTES;
    if (keyed) {
        sp__aead_key_check(key, w->file_id, h + n);
        n += 16;
        sp__aead_file_key(key, w->file_id, w->file_key);
    }
    put32(h + 8, (uint32_t)(n + 8));
    put64(h + n, XXH3_64bits(h, n));
    return sp_emit(w, h, n + 8);
}

sp_status sp_write(sp_writer *w, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        if (w->fill == 0 && len >= 2 * (size_t)SP_FRAME_SIZE && w->chain && sp__par_width() > 1) {
            unsigned k = sp__par_width();
            if (k > SP_PAR_MAX) k = SP_PAR_MAX;
            if (k > len / SP_FRAME_SIZE) k = (unsigned)(len / SP_FRAME_SIZE);
            SP_FORWARD(sp_emit_batch(w, p, k));
            p += (size_t)k * SP_FRAME_SIZE;
            len -= (size_t)k * SP_FRAME_SIZE;
            continue;
        }
        if (w->fill == 0 && len >= SP_FRAME_SIZE) {
            /* Whole frames go straight from the object: no copy. */
            SP_FORWARD(sp_emit_frame(w, p, SP_FRAME_SIZE, 0));
            p += SP_FRAME_SIZE;
            len -= SP_FRAME_SIZE;
            continue;
        }
        size_t n = SP_FRAME_SIZE - w->fill;
        if (n > len) n = len;
        SP_FORWARD(sp_grow(&w->stage, &w->stage_cap, w->fill + n));
        memcpy(w->stage + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
        if (w->fill == SP_FRAME_SIZE) {
            SP_FORWARD(sp_emit_frame(w, w->stage, SP_FRAME_SIZE, 0));
            w->fill = 0;
        }
    }
    return SP_OK;
}

sp_status sp__writer_finish(sp_writer *w)
{
    if (w->fill) {
        SP_FORWARD(sp_emit_frame(w, w->stage, (uint32_t)w->fill, 0));
        w->fill = 0;
    }
    unsigned char h[SP_FRAME_HEADER];
    put32(h, 0);
    put32(h + 4, 0);
    put32(h + 8, SP_FRAME_END);
    put32(h + 12, 0);
    put64(h + 16, sp__end_hash(w->raw_total, w->frames));
    return sp_emit(w, h, sizeof h);
}

void sp__writer_cleanup(sp_writer *w)
{
    sp__free(w->stage);
    w->stage = NULL;
    sp_scratch_put(w->scratch);
    w->scratch = NULL;
    sodium_memzero(w->file_key, sizeof w->file_key);
}

/* Read exactly len bytes of the file, or fail naming where it ended. */
static sp_status sp_take(sp_reader *r, void *buf, size_t len)
{
    size_t got = 0;
    sp_status st = r->m->read(r->file, buf, len, &got);
    if (st != SP_OK) return sp__wrap(st, "%s", r->what);
    r->consumed += got;
    SP_RETURN_IF(got < len, SP_ERR_CORRUPT, "%s: truncated at byte %llu of %llu", r->what,
                 (unsigned long long)r->consumed, (unsigned long long)r->file_size);
    return SP_OK;
}

sp_status sp__reader_begin(sp_reader *r, const sp_store_methods *m, void *file, uint64_t file_size,
                           const char *what, sp_chain *expect, const unsigned char *key)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->file = file;
    r->what = what;
    r->file_size = file_size;
    unsigned char h[SP_HEADER_MAX];
    SP_FORWARD(sp_take(r, h, 24));
    SP_RETURN_IF(memcmp(h, sp_magic, 8) != 0, SP_ERR_CORRUPT, "%s: not a spill file (bad magic)", what);
    uint32_t hlen = get32(h + 8), flags = get32(h + 16);
    size_t clen = (size_t)h[20] | (size_t)h[21] << 8;
    size_t want = 24 + clen + SP_FILE_ID_BYTES + ((flags & SP_HEADER_KEYCHECK) ? 16 : 0) + 8;
    SP_RETURN_IF(clen >= SP_CHAIN_TEXT_CAP || hlen != want || (flags & ~SP_HEADER_KEYCHECK) || h[22] || h[23],
                 SP_ERR_CORRUPT, "%s: malformed header", what);
    SP_FORWARD(sp_take(r, h + 24, hlen - 24));
    SP_RETURN_IF(get64(h + hlen - 8) != XXH3_64bits(h, hlen - 8), SP_ERR_CORRUPT,
                 "%s: header checksum mismatch", what);
    SP_RETURN_IF(get32(h + 12) != SP_FRAME_SIZE, SP_ERR_UNSUPPORTED,
                 "%s: frames of %u bytes; this version reads %u", what, get32(h + 12), SP_FRAME_SIZE);
    char text[SP_CHAIN_TEXT_CAP];
    memcpy(text, h + 24, clen);
    text[clen] = '\0';
    SP_RETURN_IF(strlen(text) != clen, SP_ERR_CORRUPT, "%s: malformed header", what);
    memcpy(r->file_id, h + 24 + clen, SP_FILE_ID_BYTES);
    if (expect) {
        SP_RETURN_IF(strcmp(text, expect->text) != 0, SP_ERR_CORRUPT,
                     "%s: the file names filter chain \"%s\", but it was written with \"%s\"", what, text,
                     expect->text);
        r->chain = expect;
    } else {
        r->own_chain = sp__calloc(1, sizeof *r->own_chain);
        SP_RETURN_IF(!r->own_chain, SP_ERR_NOMEM, "%s: out of memory", what);
        sp_status st = sp__chain_parse(text, NULL, 0, r->own_chain);
        if (st != SP_OK) return sp__wrap(st == SP_ERR_INVALID ? SP_ERR_UNSUPPORTED : st, "%s", what);
        r->chain = r->own_chain;
    }
    if (r->chain->n == 0) r->chain = NULL;
    int keyed = r->chain && r->chain->encrypted;
    SP_RETURN_IF(keyed != !!(flags & SP_HEADER_KEYCHECK), SP_ERR_CORRUPT, "%s: malformed header (key check)",
                 what);
    if (keyed) {
        SP_RETURN_IF(!key, SP_ERR_AUTH, "%s: encrypted (%s), but the pool has no key", what, text);
        unsigned char check[16];
        sp__aead_key_check(key, r->file_id, check);
        int same = sodium_memcmp(check, h + 24 + clen + SP_FILE_ID_BYTES, 16) == 0;
        SP_RETURN_IF(!same, SP_ERR_AUTH, "%s: encrypted with a different key than the pool's", what);
        sp__aead_file_key(key, r->file_id, r->file_key);
    }
    return SP_OK;
}

/* Read the next frame header. */
static sp_status sp_next_frame(sp_reader *r, uint32_t *stored, uint32_t *raw, uint32_t *flags, uint64_t *hash)
{
    unsigned char h[SP_FRAME_HEADER];
    SP_FORWARD(sp_take(r, h, sizeof h));
    *stored = get32(h);
    *raw = get32(h + 4);
    *flags = get32(h + 8);
    *hash = get64(h + 16);
    uint32_t skip = *flags >> SP_FRAME_SKIP_SHIFT;
    int ok = *raw <= SP_FRAME_SIZE && get32(h + 12) == 0 &&
             (*flags & ((1u << SP_FRAME_SKIP_SHIFT) - 1) & ~SP_FRAME_END) == 0;
    if (ok && !r->chain) ok = *stored == *raw && skip == 0;
    if (ok && r->chain) ok = *stored <= sp__chain_caps(r->chain, *raw, NULL) && sp__chain_word_ok(r->chain, skip);
    if (ok && (*flags & SP_FRAME_END)) ok = *stored == 0 && *raw == 0 && skip == 0;
    SP_RETURN_IF(!ok, SP_ERR_CORRUPT, "%s: malformed frame %llu at byte %llu", r->what,
                 (unsigned long long)r->frames, (unsigned long long)(r->consumed - SP_FRAME_HEADER));
    return SP_OK;
}

static sp_status sp_check_frame(sp_reader *r, const unsigned char *p, uint32_t stored, uint32_t raw,
                                uint32_t flags, uint64_t hash, uint64_t index)
{
    uint64_t want = 0;
    if (!r->chain || !r->chain->tail_auth)
        want = XXH3_64bits_withSeed(p, stored, sp_frame_seed(stored, raw, flags, index));
    SP_RETURN_IF(want != hash, SP_ERR_CORRUPT, "%s: checksum mismatch in frame %llu (bytes %llu..%llu)", r->what,
                 (unsigned long long)index, (unsigned long long)(r->consumed - stored),
                 (unsigned long long)r->consumed);
    return SP_OK;
}

/* Read one frame's payload and undo the chain into dst (room for raw bytes). */
static sp_status sp_load_frame(sp_reader *r, unsigned char *dst, uint32_t stored, uint32_t raw, uint32_t flags,
                               uint64_t hash)
{
    if (!r->chain) { /* plain: the payload is the data, read in place */
        SP_FORWARD(sp_take(r, dst, stored));
        SP_FORWARD(sp_check_frame(r, dst, stored, raw, flags, hash, r->frames));
    } else {
        SP_FORWARD(sp_scratch_fit(&r->scratch, 0, r->chain, raw));
        unsigned char *a = r->scratch->a[0];
        SP_FORWARD(sp_take(r, a, stored));
        SP_FORWARD(sp_check_frame(r, a, stored, raw, flags, hash, r->frames));
        sp_frame_key k = {r->file_id, r->file_key};
        sp_status st = sp__chain_decode(r->chain, &k, r->frames, flags >> SP_FRAME_SKIP_SHIFT, raw, a, stored, a,
                                        r->scratch->b[0], dst);
        if (st != SP_OK) return sp__wrap(st, "%s", r->what);
    }
    r->frames++;
    r->raw_total += raw;
    return SP_OK;
}

/* Several whole frames read in order, then unfiltered side by side into dst. */
typedef struct sp_dec_batch {
    sp_reader *r;
    unsigned char *dst[SP_PAR_MAX];
    uint32_t stored[SP_PAR_MAX], raw[SP_PAR_MAX], skip[SP_PAR_MAX];
    sp_status st[SP_PAR_MAX];
    char msg[SP_PAR_MAX][256];
} sp_dec_batch;

static void sp_dec_job(void *arg, unsigned i)
{
    sp_dec_batch *b = arg;
    sp_reader *r = b->r;
    sp_frame_key k = {r->file_id, r->file_key};
    unsigned char *a = r->scratch->a[i];
    b->st[i] = sp__chain_decode(r->chain, &k, r->frames + i, b->skip[i], b->raw[i], a, b->stored[i], a,
                                r->scratch->b[i], b->dst[i]);
    if (b->st[i] != SP_OK) snprintf(b->msg[i], sizeof b->msg[i], "%s", sp_last_error()); /* helper's thread */
}

/* Fills as many frames as fit in len (at least one frame each), up to the helpers'
 * width; *got receives the bytes delivered. */
static sp_status sp_read_batch(sp_reader *r, unsigned char *p, size_t len, size_t *got)
{
    unsigned width = sp__par_width(), k = 0;
    if (width > SP_PAR_MAX) width = SP_PAR_MAX;
    sp_dec_batch b;
    b.r = r;
    size_t off = 0;
    while (k < width && len - off >= SP_FRAME_SIZE) { /* any frame fits: raw <= SP_FRAME_SIZE */
        uint32_t flags;
        uint64_t hash;
        SP_FORWARD(sp_next_frame(r, &b.stored[k], &b.raw[k], &flags, &hash));
        SP_RETURN_IF(flags & SP_FRAME_END, SP_ERR_CORRUPT, "%s: data ends %zu bytes short of the object", r->what,
                     len - off);
        SP_FORWARD(sp_scratch_fit(&r->scratch, k, r->chain, b.raw[k]));
        SP_FORWARD(sp_take(r, r->scratch->a[k], b.stored[k]));
        SP_FORWARD(sp_check_frame(r, r->scratch->a[k], b.stored[k], b.raw[k], flags, hash, r->frames + k));
        b.skip[k] = flags >> SP_FRAME_SKIP_SHIFT;
        b.dst[k] = p + off;
        off += b.raw[k];
        k++;
    }
    sp__par_run(k, sp_dec_job, &b);
    for (unsigned i = 0; i < k; i++)
        if (b.st[i] != SP_OK) return sp__fail(b.st[i], "%s: %s", r->what, b.msg[i]);
    r->frames += k;
    r->raw_total += off;
    *got = off;
    return SP_OK;
}

const void *sp_reader_arg(const sp_reader *r) { return r ? r->arg : NULL; }
int sp_reader_is_source(const sp_reader *r) { return r && r->raw; }

void sp__reader_begin_raw(sp_reader *r, int fd, uint64_t size, const char *what)
{
    memset(r, 0, sizeof *r);
    r->raw = 1;
    r->raw_fd = fd;
    r->file_size = size;
    r->what = what;
}

void sp__reader_begin_source(sp_reader *r, const sp_source_methods *m, void *file, uint64_t size, const char *what)
{
    sp__reader_begin_raw(r, -1, size, what);
    r->src_m = m;
    r->src_file = file;
}

static sp_status sp_read_raw(sp_reader *r, unsigned char *p, size_t len)
{
    SP_RETURN_IF(len > r->file_size - r->consumed, SP_ERR_CORRUPT,
                 "%s: the loader asked for %zu bytes at byte %llu of a %llu-byte file", r->what, len,
                 (unsigned long long)r->consumed, (unsigned long long)r->file_size);
    while (len > 0 && r->src_m) {
        size_t got = 0;
        sp__fail(SP_OK, "%s", "");
        sp_status st = r->src_m->read(r->src_file, r->consumed, p, len, &got);
        if (st != SP_OK)
            return sp_last_error()[0] ? sp__wrap(st, "%s: read at byte %llu", r->what, (unsigned long long)r->consumed)
                                      : sp__fail(st, "%s: read at byte %llu: %s", r->what,
                                                 (unsigned long long)r->consumed, sp_strerror(st));
        SP_RETURN_IF(got == 0 || got > len, SP_ERR_STALE, "%s: the source ended at byte %llu, but was %llu bytes "
                     "when opened (changed while being read)", r->what, (unsigned long long)r->consumed,
                     (unsigned long long)r->file_size);
        r->consumed += got;
        p += got;
        len -= got;
    }
    while (len > 0) {
        ssize_t n = read(r->raw_fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sp__fail_errno(SP_OK, errno, "%s: read at byte %llu", r->what, (unsigned long long)r->consumed);
        SP_RETURN_IF(n == 0, SP_ERR_STALE, "%s: the file ended at byte %llu, but was %llu bytes when opened (changed "
                     "while being read)", r->what, (unsigned long long)r->consumed, (unsigned long long)r->file_size);
        r->consumed += (uint64_t)n;
        p += n;
        len -= (size_t)n;
    }
    return SP_OK;
}

sp_status sp_read(sp_reader *r, void *buf, size_t len)
{
    if (r->raw) return sp_read_raw(r, buf, len);
    unsigned char *p = buf;
    while (len > 0) {
        if (r->stage_pos < r->stage_len) {
            size_t n = r->stage_len - r->stage_pos;
            if (n > len) n = len;
            memcpy(p, r->stage + r->stage_pos, n);
            r->stage_pos += n;
            p += n;
            len -= n;
            continue;
        }
        if (r->chain && len >= 2 * (size_t)SP_FRAME_SIZE && sp__par_width() > 1) {
            size_t got;
            SP_FORWARD(sp_read_batch(r, p, len, &got));
            p += got;
            len -= got;
            continue;
        }
        uint32_t stored, raw, flags;
        uint64_t hash;
        SP_FORWARD(sp_next_frame(r, &stored, &raw, &flags, &hash));
        SP_RETURN_IF(flags & SP_FRAME_END, SP_ERR_CORRUPT, "%s: data ends %zu bytes short of the object",
                     r->what, len);
        if (len >= raw) {
            /* The whole frame lands in the caller's buffer: no copy. */
            SP_FORWARD(sp_load_frame(r, p, stored, raw, flags, hash));
            p += raw;
            len -= raw;
            continue;
        }
        SP_FORWARD(sp_grow(&r->stage, &r->stage_cap, raw));
        SP_FORWARD(sp_load_frame(r, r->stage, stored, raw, flags, hash));
        r->stage_len = raw;
        r->stage_pos = 0;
    }
    return SP_OK;
}

sp_status sp__reader_finish(sp_reader *r)
{
    if (r->raw) {
        SP_RETURN_IF(r->consumed != r->file_size, SP_ERR_CORRUPT, "%s: the loader read %llu of its %llu bytes",
                     r->what, (unsigned long long)r->consumed, (unsigned long long)r->file_size);
        return SP_OK;
    }
    SP_RETURN_IF(r->stage_pos < r->stage_len, SP_ERR_CORRUPT, "%s: %zu bytes left after the object",
                 r->what, r->stage_len - r->stage_pos);
    uint32_t stored, raw, flags;
    uint64_t hash;
    SP_FORWARD(sp_next_frame(r, &stored, &raw, &flags, &hash));
    SP_RETURN_IF(!(flags & SP_FRAME_END), SP_ERR_CORRUPT, "%s: more data than the object holds", r->what);
    SP_RETURN_IF(sp__end_hash(r->raw_total, r->frames) != hash,
                 SP_ERR_CORRUPT, "%s: end marker does not match the frames read (frames dropped?)", r->what);
    SP_RETURN_IF(r->consumed != r->file_size, SP_ERR_CORRUPT, "%s: %llu stray bytes after the end marker",
                 r->what, (unsigned long long)(r->file_size - r->consumed));
    return SP_OK;
}

void sp__reader_cleanup(sp_reader *r)
{
    sp__free(r->stage);
    r->stage = NULL;
    sp_scratch_put(r->scratch);
    r->scratch = NULL;
    sp__free(r->own_chain);
    r->own_chain = NULL;
    sodium_memzero(r->file_key, sizeof r->file_key);
}
