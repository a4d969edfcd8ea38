/* One-shot buffer codecs under the filter chain: each wraps the library made for
 * the job (libzstd, liblz4, zlib; libsodium for XChaCha20-Poly1305, key derivation and
 * key memory; OpenSSL's libcrypto for AES-256-GCM, twice as fast as libsodium 1.0.18's
 * here) and works on one frame at a time.
 *
 * Contract shared by every encode/decode here:
 * - out has cap bytes; *out_len receives the bytes produced.
 * - encode with cap >= the codec's bound never fails for lack of room; with a smaller
 *   cap it returns SP_ERR_TOO_BIG (the caller then stores the input as is).
 * - decode never writes past cap; input that is malformed, fails its own checks or
 *   would produce more than cap bytes is SP_ERR_CORRUPT (SP_ERR_AUTH for the AEAD),
 *   with a detail message naming the codec.
 * - Library contexts are cached per thread and reused, so a frame does not pay for
 *   allocating a compressor; sp__codec_thread_cleanup frees them (also done
 *   automatically at thread exit).
 */
#ifndef SP_FILTER_CODEC_H
#define SP_FILTER_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "../common/error.h"

/* zstd: levels ZSTD_minCLevel()..ZSTD_maxCLevel() (negative = fast). */
SP_HIDDEN int sp__zstd_level_ok(int level);
SP_HIDDEN size_t sp__zstd_bound(size_t n);
SP_HIDDEN sp_status sp__zstd_encode(int level, const void *in, size_t n, void *out, size_t cap,
                                    size_t *out_len);
SP_HIDDEN sp_status sp__zstd_decode(const void *in, size_t n, void *out, size_t cap, size_t *out_len);

/* lz4 block format (LZ4_compress_default / LZ4_decompress_safe). */
SP_HIDDEN size_t sp__lz4_bound(size_t n);
SP_HIDDEN sp_status sp__lz4_encode(const void *in, size_t n, void *out, size_t cap, size_t *out_len);
SP_HIDDEN sp_status sp__lz4_decode(const void *in, size_t n, void *out, size_t cap, size_t *out_len);

/* gzip (RFC 1952) members, levels 1..9: one member per frame, so a file's payloads
 * concatenated are a valid multi-member .gz. Decode checks the CRC-32 and ISIZE. */
SP_HIDDEN int sp__gzip_level_ok(int level);
SP_HIDDEN size_t sp__gzip_bound(size_t n);
SP_HIDDEN sp_status sp__gzip_encode(int level, const void *in, size_t n, void *out, size_t cap,
                                    size_t *out_len);
SP_HIDDEN sp_status sp__gzip_decode(const void *in, size_t n, void *out, size_t cap, size_t *out_len);

/* Authenticated encryption. */
typedef enum sp_aead {
    SP_AEAD_XCHACHA20 = 1, /* crypto_aead_xchacha20poly1305_ietf */
    SP_AEAD_AES256GCM = 2  /* AES-256-GCM (libcrypto EVP), the default where the CPU has AES-NI */
} sp_aead;
#define SP_KEY_BYTES 32u
#define SP_AEAD_TAG 16u   /* bytes an encrypted frame adds */
#define SP_FILE_ID_BYTES 16u

/* sodium_init once (thread-safe); SP_ERR_UNSUPPORTED if it fails. */
SP_HIDDEN sp_status sp__crypto_init(void);
/* AES-256-GCM where available, else XChaCha20-Poly1305. */
SP_HIDDEN sp_aead sp__aead_default(void);
SP_HIDDEN int sp__aead_available(sp_aead a);
SP_HIDDEN const char *sp__aead_name(sp_aead a); /* "aes256gcm", "xchacha20" */
SP_HIDDEN int sp__aead_parse(const char *name, sp_aead *out);

/* The per-file key: keyed BLAKE2b of the file id under the master key, so nonces
 * (the frame index) never repeat under one key across files. */
SP_HIDDEN void sp__aead_file_key(const unsigned char key[SP_KEY_BYTES],
                                 const unsigned char file_id[SP_FILE_ID_BYTES],
                                 unsigned char file_key[SP_KEY_BYTES]);
/* A 16-byte fingerprint of the master key for this file (keyed BLAKE2b of the file id
 * with a different context than the file key), stored in the header so a wrong key is
 * told apart from altered data. Reveals nothing about the key. */
SP_HIDDEN void sp__aead_key_check(const unsigned char key[SP_KEY_BYTES],
                                  const unsigned char file_id[SP_FILE_ID_BYTES], unsigned char check[16]);
/* Encrypt n bytes: out gets n + SP_AEAD_TAG bytes. The nonce is derived from index
 * (unique per file key); ad (may be NULL/0) is authenticated, not stored. */
SP_HIDDEN sp_status sp__aead_encrypt(sp_aead a, const unsigned char file_key[SP_KEY_BYTES], uint64_t index,
                                     const void *ad, size_t ad_len, const void *in, size_t n, void *out,
                                     size_t cap, size_t *out_len);
/* SP_ERR_AUTH when the tag does not verify; nothing is left in out in that case. */
SP_HIDDEN sp_status sp__aead_decrypt(sp_aead a, const unsigned char file_key[SP_KEY_BYTES], uint64_t index,
                                     const void *ad, size_t ad_len, const void *in, size_t n, void *out,
                                     size_t cap, size_t *out_len);

/* Key material: 32 raw bytes, or 64 hex characters (an optional trailing newline
 * allowed). Refuses a file that is not a regular file, or whose mode gives the group
 * or others any access (SP_ERR_PERMISSION, naming the path and its mode). Missing:
 * SP_ERR_NOT_FOUND; wrong length or bad hex: SP_ERR_INVALID (naming the length found).
 * The key is read into `key`; every temporary copy is wiped. */
SP_HIDDEN sp_status sp__key_load_file(const char *path, unsigned char key[SP_KEY_BYTES]);
/* Memory for keys: locked (best effort) and wiped when freed (sodium_malloc/free). */
SP_HIDDEN unsigned char *sp__key_alloc(void);
SP_HIDDEN void sp__key_free(unsigned char *key);
/* Fill buf with random bytes (randombytes_buf). */
SP_HIDDEN void sp__random_bytes(void *buf, size_t n);

SP_HIDDEN void sp__codec_thread_cleanup(void);

#endif
