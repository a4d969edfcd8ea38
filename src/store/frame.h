/* The on-disk format of a spilled object.
 *
 *   file   := header frame* end
 *   header := "SPILLPL\x01" u32 header_len u32 frame_size u32 flags u16 chain_len u16 0
 *             chain[chain_len] u64 xxh3(all header bytes before it)
 *   frame  := u32 stored_len u32 raw_len u32 flags u32 0 u64 hash  payload[stored_len]
 *   end    := u32 0 u32 0 u32 SP_FRAME_END u32 0 u64 hash(raw_total, frame_count)
 * Integers are little-endian. Each frame's hash (XXH3-64) covers its payload and is
 * seeded with its lengths, flags and index, so a flipped, moved or dropped frame is
 * detected; the end marker detects truncation. `chain` names the filters that wrote
 * the frames (empty: none).
 */
#ifndef SP_STORE_FRAME_H
#define SP_STORE_FRAME_H

#include <stdint.h>
#include "../common/error.h"
#include "spillpool/pool.h"
#include "spillpool/store.h"

#define SP_FRAME_SIZE (1u << 20)
#define SP_FRAME_HEADER 24u
#define SP_FRAME_END 1u

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
};

struct sp_reader {
    const sp_store_methods *m;
    void *file;
    const char *what; /* the object and path, for messages */
    uint64_t file_size, consumed, raw_total, frames;
    unsigned char *stage;
    size_t stage_len, stage_pos, stage_cap;
};

/* Write the header. stored_total counts every byte charged, even on failure. */
SP_HIDDEN sp_status sp__writer_begin(sp_writer *w, const sp_store_methods *m, void *file,
                                     sp_charge_fn charge, void *charge_ctx);
/* Flush the last frame and write the end marker. */
SP_HIDDEN sp_status sp__writer_finish(sp_writer *w);
SP_HIDDEN void sp__writer_cleanup(sp_writer *w);

SP_HIDDEN sp_status sp__reader_begin(sp_reader *r, const sp_store_methods *m, void *file,
                                     uint64_t file_size, const char *what);
/* Check that the object's data ends here: end marker, totals, nothing after it. */
SP_HIDDEN sp_status sp__reader_finish(sp_reader *r);
SP_HIDDEN void sp__reader_cleanup(sp_reader *r);

#endif
