/* Filter chains: parsing the text form and running a chain over one frame.
 *
 * A chain is immutable once parsed except for its counters, so writers and readers
 * on many threads share it without locks. The pool interns every chain it has used
 * and keeps them until it closes: an object on disk points at the chain that wrote
 * it.
 */
#ifndef SP_FILTER_CHAIN_H
#define SP_FILTER_CHAIN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "../common/error.h"
#include "codec.h"
#include "spillpool/filter.h"

#define SP_CHAIN_MAX 8          /* stages in one chain */
#define SP_CHAIN_TEXT_CAP 256   /* canonical text, with its NUL */
#define SP_FILTER_NAME_CAP 32
#define SP_CUSTOM_MAX 16        /* caller filters per pool */
#define SP_SKIP_BELOW 64        /* frames shorter than this are not compressed */

/* A frame's filter word (the frame flags above their low byte): bit i set = stage i
 * skipped; bits 8..9 = the byte shuffle a compressing stage ran first (0 none, 1, 2, 3
 * for widths 2, 4, 8), bits 10..12 = that stage. Nothing else may be set. */
#define SP_WORD_SKIP 0xffu
#define SP_WORD_SHUF_SHIFT 8
#define SP_WORD_STAGE_SHIFT 10
#define SP_WORD_BITS 13

typedef enum sp_filter_kind { SP_F_ZSTD = 1, SP_F_LZ4, SP_F_GZIP, SP_F_ENCRYPT, SP_F_CUSTOM } sp_filter_kind;

typedef struct sp_stage {
    sp_filter_kind kind;
    int level;
    int shuffle; /* zstd, lz4: byte-shuffle frames of numbers first (see shuffle.h) */
    sp_aead aead;
    sp_filter_def custom;
    char name[SP_FILTER_NAME_CAP]; /* canonical: "zstd:3", "encrypt:xchacha20" */
    _Atomic uint64_t bytes_in, bytes_out, encode_ns, decode_ns, frames, skipped, shuffled;
} sp_stage;

typedef struct sp_chain {
    char text[SP_CHAIN_TEXT_CAP]; /* canonical, "" for none */
    unsigned n;
    int encrypted;     /* some stage encrypts: the pool needs a key */
    int tail_auth;     /* the last stage encrypts: frames carry no separate checksum */
    int may_shrink;    /* some stage compresses (or is the caller's and might) */
    size_t buf_cap;    /* scratch each of a whole frame's two buffers needs */
    sp_stage st[SP_CHAIN_MAX];
} sp_chain;

/* Parse text ("zstd:3,encrypt") into out, with the caller's filters available by
 * name. NULL or "" gives the empty chain. Errors: SP_ERR_INVALID naming the part. */
SP_HIDDEN sp_status sp__chain_parse(const char *text, const sp_filter_def *custom, unsigned ncustom,
                                    sp_chain *out);
/* Checks a filter definition of the caller's. */
SP_HIDDEN sp_status sp__filter_def_check(const sp_filter_def *def);

/* The scratch a frame of n plain bytes needs (per buffer); caps[i], if not NULL,
 * gets the most stage i can be handed. */
SP_HIDDEN size_t sp__chain_caps(const sp_chain *c, size_t n, size_t *caps);

/* What a frame needs to know about its file. */
typedef struct sp_frame_key {
    const unsigned char *file_id;  /* SP_FILE_ID_BYTES */
    const unsigned char *file_key; /* SP_KEY_BYTES, or NULL when nothing is encrypted */
} sp_frame_key;

/* Run the chain over one frame (n <= SP_FRAME_SIZE). a and b are scratch buffers of
 * sp__chain_caps(c, n) bytes; *out points into one of them, or at `in` when every stage was
 * skipped. *skip gets the frame's filter word (SP_WORD_*). */
SP_HIDDEN sp_status sp__chain_encode(sp_chain *c, const sp_frame_key *k, uint64_t index, const unsigned char *in,
                                     size_t n, unsigned char *a, unsigned char *b, const unsigned char **out,
                                     size_t *out_len, uint32_t *skip);
/* Whether a frame's filter word is one this chain can have written. */
SP_HIDDEN int sp__chain_word_ok(const sp_chain *c, uint32_t word);
/* Undo it: the result (exactly raw_len bytes, or SP_ERR_CORRUPT) goes to dst, which
 * has room for raw_len bytes. a and b hold sp__chain_caps(c, raw_len) bytes; in may
 * be a (not b), never dst. */
SP_HIDDEN sp_status sp__chain_decode(sp_chain *c, const sp_frame_key *k, uint64_t index, uint32_t skip,
                                     uint32_t raw_len, const unsigned char *in, size_t n, unsigned char *a,
                                     unsigned char *b, unsigned char *dst);

#endif
