/* spillpool filters: transforms applied to spilled bytes (compression, encryption).
 *
 * A chain is written as text: filter names separated by commas, each with an
 * optional ":argument", applied left to right on write and undone right to left on
 * read. "zstd:3,encrypt" compresses, then encrypts. Built-in filters:
 *
 *   zstd[:level][:noshuffle]  libzstd, level -131072..22 (default 1; negative is
 *                  faster)
 *   lz4[:noshuffle]  liblz4 block format
 *   gzip[:level]   zlib, gzip members (RFC 1952), level 1..9 (default 1)
 *   encrypt[:alg]  authenticated encryption; alg is aes256gcm (AES-256-GCM on
 *                  OpenSSL's libcrypto; the default where the CPU has AES
 *                  instructions) or xchacha20 (XChaCha20-Poly1305 on libsodium; the
 *                  default elsewhere). Needs a key: sp_config.key or .key_file, or
 *                  SPILLPOOL_KEY_FILE.
 *
 * Spilled objects are cut into frames of 1 MiB, filtered a few at a time on helper
 * threads (one per extra core, at most 3), so a spill or restore needs a few frames of
 * memory beyond the object. A compression stage that does not shrink a frame (or a
 * frame under 64 bytes) is skipped for that frame, and the frame says so.
 *
 * zstd and lz4 byte-shuffle a frame before compressing it when a sample shows it is
 * made of 2-, 4- or 8-byte numbers whose high bytes barely change (codes, counters,
 * doubles that share exponent and leading bits): all first bytes, then all second
 * bytes, and so on, as HDF5's shuffle filter and Blosc do. On 32-bit codes lz4 then
 * runs three times as fast and stores half the bytes. The frame records the width.
 * The sample (16 KiB of each 1 MiB frame) leaves text and random bytes as they are;
 * it decides for the whole frame, so data unlike its sample can compress worse than
 * it would as it is. ":noshuffle" turns this off; gzip never shuffles, so a gzip-only
 * file stays readable by gzip -d.
 *
 * Each spill file names the chain that wrote it; the pool remembers the chain of each
 * object, so changing the pool's chain never makes older files unreadable.
 */
#ifndef SPILLPOOL_FILTER_H
#define SPILLPOOL_FILTER_H

#include <stddef.h>
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A filter of the caller's: two transforms of one buffer each. */
typedef struct sp_filter_def {
    const char *name; /* letters, digits, '_' and '-'; not a built-in name */
    /* The largest output encode can produce from in_len bytes. */
    size_t (*bound)(void *ctx, size_t in_len);
    /* Transform in[0..in_len) into out (cap bytes, at least bound(in_len)). */
    sp_status (*encode)(void *ctx, const void *in, size_t in_len, void *out, size_t cap, size_t *out_len);
    /* Undo encode. cap is the most the original can hold; more is SP_ERR_CORRUPT. */
    sp_status (*decode)(void *ctx, const void *in, size_t in_len, void *out, size_t cap, size_t *out_len);
    void *ctx; /* passed to the functions above; must outlive the pool */
} sp_filter_def;

/* Make a filter of the caller's usable by name in chains of this pool (the
 * definition is copied). Errors: SP_ERR_INVALID (bad or taken name, NULL
 * functions), SP_ERR_NOMEM. At most 16 per pool. */
sp_status sp_pool_add_filter(sp_pool *pool, const sp_filter_def *def);

/* The chain for objects spilled from now on ("" or NULL: none). Objects already on
 * disk keep the chain they were written with. Errors: SP_ERR_INVALID (unknown
 * filter, level out of range, more than 8 filters, encrypt twice (every stage would
 * use the file's one key and nonce), encrypt without a key). */
sp_status sp_pool_set_filters(sp_pool *pool, const char *chain);

/* The pool's current chain in canonical form, e.g. "zstd:3,encrypt:aes256gcm". */
sp_status sp_pool_get_filters(sp_pool *pool, char *buf, size_t cap);

/* Check a chain of built-in filters without a pool, e.g. a configuration value.
 * Errors: SP_ERR_INVALID naming the bad part. */
sp_status sp_filters_check(const char *chain);

/* Set or replace the pool's key (32 bytes, copied into locked memory that is wiped
 * at close). Files already written with another key then fail with SP_ERR_AUTH. */
sp_status sp_pool_set_key(sp_pool *pool, const unsigned char key[32]);

#ifdef __cplusplus
}
#endif
#endif
