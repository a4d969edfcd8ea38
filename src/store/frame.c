/* Framing and checksums of spilled objects: see frame.h for the format. */
#include <string.h>
#include <xxhash.h>

#include "../common/alloc.h"
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
static sp_status sp_grow(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return SP_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    if (n > SP_FRAME_SIZE) n = SP_FRAME_SIZE;
    unsigned char *p = sp__realloc(*buf, n);
    SP_RETURN_IF(p == NULL, SP_ERR_NOMEM, "out of memory for a %zu-byte frame buffer", n);
    *buf = p;
    *cap = n;
    return SP_OK;
}

static uint64_t sp_frame_seed(uint32_t stored, uint32_t raw, uint32_t flags, uint64_t index)
{
    return (((uint64_t)stored << 32) | raw) ^ ((uint64_t)flags << 58) ^ (index * 0x9E3779B97F4A7C15ull);
}

static sp_status sp_emit(sp_writer *w, const void *buf, size_t len)
{
    SP_FORWARD(w->charge(w->charge_ctx, len));
    w->stored_total += len;
    return w->m->write(w->file, buf, len);
}

static sp_status sp_emit_frame(sp_writer *w, const unsigned char *payload, uint32_t len, uint32_t flags)
{
    unsigned char h[SP_FRAME_HEADER];
    put32(h, len);
    put32(h + 4, len);
    put32(h + 8, flags);
    put32(h + 12, 0);
    put64(h + 16, XXH3_64bits_withSeed(payload, len, sp_frame_seed(len, len, flags, w->frames)));
    SP_FORWARD(sp_emit(w, h, sizeof h));
    if (len) SP_FORWARD(sp_emit(w, payload, len));
    w->frames++;
    w->raw_total += len;
    return SP_OK;
}

sp_status sp__writer_begin(sp_writer *w, const sp_store_methods *m, void *file, sp_charge_fn charge,
                           void *charge_ctx)
{
    memset(w, 0, sizeof *w);
    w->m = m;
    w->file = file;
    w->charge = charge;
    w->charge_ctx = charge_ctx;
    unsigned char h[32];
    memcpy(h, sp_magic, 8);
    put32(h + 8, 32);
    put32(h + 12, SP_FRAME_SIZE);
    put32(h + 16, 0);
    put32(h + 20, 0); /* chain_len 0, reserved 0 */
    put64(h + 24, XXH3_64bits(h, 24));
    return sp_emit(w, h, sizeof h);
}

sp_status sp_write(sp_writer *w, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
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
    unsigned char h[SP_FRAME_HEADER], t[16];
    put64(t, w->raw_total);
    put64(t + 8, w->frames);
    put32(h, 0);
    put32(h + 4, 0);
    put32(h + 8, SP_FRAME_END);
    put32(h + 12, 0);
    put64(h + 16, XXH3_64bits_withSeed(t, sizeof t, sp_frame_seed(0, 0, SP_FRAME_END, w->frames)));
    return sp_emit(w, h, sizeof h);
}

void sp__writer_cleanup(sp_writer *w)
{
    sp__free(w->stage);
    w->stage = NULL;
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
                           const char *what)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->file = file;
    r->what = what;
    r->file_size = file_size;
    unsigned char h[32];
    SP_FORWARD(sp_take(r, h, sizeof h));
    SP_RETURN_IF(memcmp(h, sp_magic, 8) != 0, SP_ERR_CORRUPT, "%s: not a spill file (bad magic)", what);
    SP_RETURN_IF(get64(h + 24) != XXH3_64bits(h, 24), SP_ERR_CORRUPT, "%s: header checksum mismatch", what);
    SP_RETURN_IF(get32(h + 8) != 32 || get32(h + 12) != SP_FRAME_SIZE || get32(h + 16) != 0 ||
                     get32(h + 20) != 0,
                 SP_ERR_UNSUPPORTED, "%s: header names a format this version does not read", what);
    return SP_OK;
}

/* Read the next frame header; returns its payload length and flags. */
static sp_status sp_next_frame(sp_reader *r, uint32_t *len, uint32_t *flags, uint64_t *hash)
{
    unsigned char h[SP_FRAME_HEADER];
    SP_FORWARD(sp_take(r, h, sizeof h));
    uint32_t stored = get32(h), raw = get32(h + 4);
    *flags = get32(h + 8);
    *hash = get64(h + 16);
    SP_RETURN_IF(stored != raw || stored > SP_FRAME_SIZE || get32(h + 12) != 0 || (*flags & ~SP_FRAME_END),
                 SP_ERR_CORRUPT, "%s: malformed frame %llu at byte %llu", r->what,
                 (unsigned long long)r->frames, (unsigned long long)(r->consumed - SP_FRAME_HEADER));
    SP_RETURN_IF((*flags & SP_FRAME_END) && stored != 0, SP_ERR_CORRUPT, "%s: malformed end marker",
                 r->what);
    *len = stored;
    return SP_OK;
}

static sp_status sp_check_frame(sp_reader *r, const unsigned char *p, uint32_t len, uint64_t hash)
{
    SP_RETURN_IF(XXH3_64bits_withSeed(p, len, sp_frame_seed(len, len, 0, r->frames)) != hash,
                 SP_ERR_CORRUPT, "%s: checksum mismatch in frame %llu (bytes %llu..%llu)", r->what,
                 (unsigned long long)r->frames, (unsigned long long)(r->consumed - len),
                 (unsigned long long)r->consumed);
    r->frames++;
    r->raw_total += len;
    return SP_OK;
}

sp_status sp_read(sp_reader *r, void *buf, size_t len)
{
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
        uint32_t flen, flags;
        uint64_t hash;
        SP_FORWARD(sp_next_frame(r, &flen, &flags, &hash));
        SP_RETURN_IF(flags & SP_FRAME_END, SP_ERR_CORRUPT, "%s: data ends %zu bytes short of the object",
                     r->what, len);
        if (len >= flen) {
            /* The whole frame lands in the caller's buffer: no copy. */
            SP_FORWARD(sp_take(r, p, flen));
            SP_FORWARD(sp_check_frame(r, p, flen, hash));
            p += flen;
            len -= flen;
            continue;
        }
        SP_FORWARD(sp_grow(&r->stage, &r->stage_cap, flen));
        SP_FORWARD(sp_take(r, r->stage, flen));
        SP_FORWARD(sp_check_frame(r, r->stage, flen, hash));
        r->stage_len = flen;
        r->stage_pos = 0;
    }
    return SP_OK;
}

sp_status sp__reader_finish(sp_reader *r)
{
    SP_RETURN_IF(r->stage_pos < r->stage_len, SP_ERR_CORRUPT, "%s: %zu bytes left after the object",
                 r->what, r->stage_len - r->stage_pos);
    uint32_t flen, flags;
    uint64_t hash;
    SP_FORWARD(sp_next_frame(r, &flen, &flags, &hash));
    SP_RETURN_IF(!(flags & SP_FRAME_END), SP_ERR_CORRUPT, "%s: more data than the object holds", r->what);
    unsigned char t[16];
    put64(t, r->raw_total);
    put64(t + 8, r->frames);
    SP_RETURN_IF(XXH3_64bits_withSeed(t, sizeof t, sp_frame_seed(0, 0, SP_FRAME_END, r->frames)) != hash,
                 SP_ERR_CORRUPT, "%s: end marker does not match the frames read (frames dropped?)", r->what);
    SP_RETURN_IF(r->consumed != r->file_size, SP_ERR_CORRUPT, "%s: %llu stray bytes after the end marker",
                 r->what, (unsigned long long)(r->file_size - r->consumed));
    return SP_OK;
}

void sp__reader_cleanup(sp_reader *r)
{
    sp__free(r->stage);
    r->stage = NULL;
}
