/* The on-disk format of a spilled object.
 *
 *   file   := header frame* end
 *   header := "SPILLPL\x01" u32 header_len u32 frame_size u32 flags u16 chain_len u16 0
 *             chain[chain_len] file_id[16] [key_check[16] if flags & 1]
 *             u64 xxh3(all header bytes before it)
 *   frame  := u32 stored_len u32 raw_len u32 flags u32 0 u64 hash  payload[stored_len]
 *   end    := u32 0 u32 0 u32 SP_FRAME_END u32 0 u64 hash(raw_total, frame_count)
 * Integers are little-endian. `chain` is the canonical text of the filter chain that
 * wrote the frames (empty: none); a frame's flags carry, from bit 8 up, its filter
 * word (chain.h): the stages skipped for it (compression that did not pay) and the
 * byte shuffle a compressor ran first. Each frame's hash (XXH3-64) covers
 * its stored payload and is seeded with its lengths, flags and index, so a flipped,
 * moved or dropped frame is detected; when the chain ends in encryption the hash is
 * 0 and the AEAD tag does that job. The end marker detects truncation. file_id is
 * random: it keys the per-file encryption key and the key check.
 */
#ifndef SP_STORE_FRAME_H
#define SP_STORE_FRAME_H

#include <stdint.h>
#include "../common/error.h"
#include "../filter/chain.h"
#include "spillpool/pool.h"
#include "spillpool/store.h"

#define SP_FRAME_SIZE (1u << 20)
#define SP_FRAME_HEADER 24u
#define SP_FRAME_END 1u
#define SP_FRAME_SKIP_SHIFT 8
#define SP_HEADER_KEYCHECK 1u
#define SP_HEADER_MAX (24 + SP_CHAIN_TEXT_CAP + 2 * SP_FILE_ID_BYTES + 8)

/* Charges n more stored bytes against a bound before they are written. */
typedef sp_status (*sp_charge_fn)(void *ctx, uint64_t n);

struct sp_writer {
    const sp_store_methods *m;
    void *file;
    sp_charge_fn charge;
    void *charge_ctx;
    unsigned char *stage; /* grown on demand, to SP_FRAME_SIZE at most */
    size_t fill, stage_cap;
    uint64_t raw_total, stored_total, frames;
    sp_chain *chain;      /* NULL: none */
    struct sp_scratch *scratch; /* filter buffers: the thread's, or owned */
    unsigned char file_id[SP_FILE_ID_BYTES];
    unsigned char file_key[SP_KEY_BYTES]; /* wiped at cleanup */
};

struct sp_reader {
    const sp_store_methods *m;
    void *file;
    int raw, raw_fd; /* raw: the bytes of a plain file (a registered source), no frames */
    const sp_source_methods *src_m; /* a raw source read through the caller's methods */
    void *src_file;
    const void *arg; /* the type's arg */
    const char *what; /* the object and path, for messages */
    uint64_t file_size, consumed, raw_total, frames;
    unsigned char *stage;
    size_t stage_len, stage_pos, stage_cap;
    sp_chain *chain;      /* the chain the file names */
    sp_chain *own_chain;  /* parsed from the file when the caller gave none */
    struct sp_scratch *scratch;
    unsigned char file_id[SP_FILE_ID_BYTES];
    unsigned char file_key[SP_KEY_BYTES];
};

/* The end marker's hash: of the plain bytes and frames before it, so a file whose
 * last frames were cut off (with the marker kept) is found out. */
SP_HIDDEN uint64_t sp__end_hash(uint64_t raw_total, uint64_t frames);

/* Write the header. stored_total counts every byte charged, even on failure. chain
 * may be NULL (none); key is needed when it encrypts. */
SP_HIDDEN sp_status sp__writer_begin(sp_writer *w, const sp_store_methods *m, void *file,
                                     sp_charge_fn charge, void *charge_ctx, sp_chain *chain,
                                     const unsigned char *key);
/* Flush the last frame and write the end marker. */
SP_HIDDEN sp_status sp__writer_finish(sp_writer *w);
SP_HIDDEN void sp__writer_cleanup(sp_writer *w);

/* Read and check the header. expect: the chain the caller wrote the file with (the
 * file must name the same one: no silent downgrade), or NULL to take the file's own
 * chain of built-in filters. key: needed when the chain encrypts. */
SP_HIDDEN sp_status sp__reader_begin(sp_reader *r, const sp_store_methods *m, void *file,
                                     uint64_t file_size, const char *what, sp_chain *expect,
                                     const unsigned char *key);
/* A reader of a plain file's bytes, for loaders of registered sources: size is what
 * fstat said at open; reading past it, or the file ending early, is an error. */
SP_HIDDEN void sp__reader_begin_raw(sp_reader *r, int fd, uint64_t size, const char *what);
/* The same over a source opened through the caller's methods. */
SP_HIDDEN void sp__reader_begin_source(sp_reader *r, const sp_source_methods *m, void *file, uint64_t size,
                                       const char *what);
/* Check that the object's data ends here: end marker, totals, nothing after it.
 * For a raw reader: that the loader read the whole file. */
SP_HIDDEN sp_status sp__reader_finish(sp_reader *r);
SP_HIDDEN void sp__reader_cleanup(sp_reader *r);

#endif
