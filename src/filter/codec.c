/* One-shot codecs over libzstd, liblz4, zlib and libsodium: see codec.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "../common/alloc.h"
#include "../common/utf8.h"
#include "codec.h"

_Static_assert(SP_AEAD_TAG == crypto_aead_aes256gcm_ABYTES, "AES-GCM tag size");
_Static_assert(SP_AEAD_TAG == crypto_aead_xchacha20poly1305_ietf_ABYTES, "XChaCha20 tag size");
_Static_assert(SP_KEY_BYTES == crypto_aead_aes256gcm_KEYBYTES, "AES-GCM key size");
_Static_assert(SP_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "XChaCha20 key size");

#define SP_GZIP_WBITS (15 + 16) /* 32 KiB window, gzip wrapper */

/* ---- per-thread library contexts ---- */

typedef struct sp_codec_tls {
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    z_stream def, inf; /* zlib keeps a pointer back to these: they never move */
    int def_ready, inf_ready, def_level;
    EVP_CIPHER_CTX *gcm;
} sp_codec_tls;

static pthread_once_t sp_tls_once = PTHREAD_ONCE_INIT;
static pthread_key_t sp_tls_key;
static int sp_tls_key_ok;

static void sp_codec_tls_free(void *p)
{
    sp_codec_tls *t = p;
    if (!t) return;
    ZSTD_freeCCtx(t->zc);
    ZSTD_freeDCtx(t->zd);
    if (t->def_ready) deflateEnd(&t->def);
    if (t->inf_ready) inflateEnd(&t->inf);
    EVP_CIPHER_CTX_free(t->gcm);
    sp__free(t);
}

/* Key destructors never run for the thread that calls exit() (usually main): free its
 * contexts from atexit too, so LeakSanitizer and valgrind see nothing left. */
static void sp_codec_atexit(void) { sp__codec_thread_cleanup(); }

static void sp_tls_init(void)
{
    sp_tls_key_ok = pthread_key_create(&sp_tls_key, sp_codec_tls_free) == 0;
    if (sp_tls_key_ok) atexit(sp_codec_atexit);
}

/* This thread's contexts, created on first use; NULL when out of memory. */
static sp_codec_tls *sp_tls(void)
{
    pthread_once(&sp_tls_once, sp_tls_init);
    if (!sp_tls_key_ok) return NULL;
    sp_codec_tls *t = pthread_getspecific(sp_tls_key);
    if (t) return t;
    t = sp__calloc(1, sizeof *t);
    if (!t) return NULL;
    if (pthread_setspecific(sp_tls_key, t) != 0) {
        sp__free(t);
        return NULL;
    }
    return t;
}

void sp__codec_thread_cleanup(void)
{
    pthread_once(&sp_tls_once, sp_tls_init);
    if (!sp_tls_key_ok) return;
    sp_codec_tls *t = pthread_getspecific(sp_tls_key);
    if (!t) return;
    pthread_setspecific(sp_tls_key, NULL);
    sp_codec_tls_free(t);
}

/* zlib allocates through the project's allocator, so fault injection reaches it. */
static voidpf sp_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return sp__calloc(items, size);
}

static void sp_zfree(voidpf opaque, voidpf p)
{
    (void)opaque;
    sp__free(p);
}

static size_t sp_min(size_t a, size_t b) { return a < b ? a : b; }

/* ---- zstd ---- */

int sp__zstd_level_ok(int level) { return level >= ZSTD_minCLevel() && level <= ZSTD_maxCLevel(); }

size_t sp__zstd_bound(size_t n)
{
    size_t b = ZSTD_compressBound(n);
    return ZSTD_isError(b) ? SIZE_MAX : b;
}

sp_status sp__zstd_encode(int level, const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    SP_RETURN_IF(!sp__zstd_level_ok(level), SP_ERR_INVALID, "zstd: level %d is outside %d..%d", level,
                 ZSTD_minCLevel(), ZSTD_maxCLevel());
    sp_codec_tls *t = sp_tls();
    SP_RETURN_IF(t == NULL, SP_ERR_NOMEM, "zstd: out of memory for this thread's contexts");
    if (!t->zc) t->zc = ZSTD_createCCtx();
    SP_RETURN_IF(t->zc == NULL, SP_ERR_NOMEM, "zstd: out of memory for a compression context");
    size_t r = ZSTD_CCtx_setParameter(t->zc, ZSTD_c_compressionLevel, level);
    SP_RETURN_IF(ZSTD_isError(r), SP_ERR_INVALID, "zstd: level %d: %s", level, ZSTD_getErrorName(r));
    /* ZSTD_compress2 starts a new frame each call (session reset), keeping the level. */
    r = ZSTD_compress2(t->zc, out, cap, in, n);
    if (ZSTD_isError(r)) {
        switch (ZSTD_getErrorCode(r)) {
        case ZSTD_error_dstSize_tooSmall:
            return sp__fail(SP_ERR_TOO_BIG, "zstd: %zu bytes do not compress into %zu", n, cap);
        case ZSTD_error_memory_allocation:
            return sp__fail(SP_ERR_NOMEM, "zstd: compress: %s", ZSTD_getErrorName(r));
        default: return sp__fail(SP_ERR_INVALID, "zstd: compress: %s", ZSTD_getErrorName(r));
        }
    }
    *out_len = r;
    return SP_OK;
}

sp_status sp__zstd_decode(const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    unsigned long long size = ZSTD_getFrameContentSize(in, n);
    SP_RETURN_IF(size == ZSTD_CONTENTSIZE_ERROR, SP_ERR_CORRUPT,
                 "zstd: %zu bytes are not a zstd frame header", n);
    /* Refuse before decoding anything when the header already says it will not fit. */
    SP_RETURN_IF(size != ZSTD_CONTENTSIZE_UNKNOWN && size > cap, SP_ERR_CORRUPT,
                 "zstd: frame holds %llu bytes, more than the %zu expected", size, cap);
    size_t whole = ZSTD_findFrameCompressedSize(in, n);
    SP_RETURN_IF(ZSTD_isError(whole), SP_ERR_CORRUPT, "zstd: frame does not decode: %s",
                 ZSTD_getErrorName(whole));
    SP_RETURN_IF(whole != n, SP_ERR_CORRUPT, "zstd: %zu bytes after the %zu-byte frame", n - whole, whole);
    sp_codec_tls *t = sp_tls();
    SP_RETURN_IF(t == NULL, SP_ERR_NOMEM, "zstd: out of memory for this thread's contexts");
    if (!t->zd) t->zd = ZSTD_createDCtx();
    SP_RETURN_IF(t->zd == NULL, SP_ERR_NOMEM, "zstd: out of memory for a decompression context");
    size_t r = ZSTD_decompressDCtx(t->zd, out, cap, in, n);
    if (ZSTD_isError(r)) {
        switch (ZSTD_getErrorCode(r)) {
        case ZSTD_error_dstSize_tooSmall:
            return sp__fail(SP_ERR_CORRUPT, "zstd: frame holds more than the %zu bytes expected", cap);
        case ZSTD_error_memory_allocation:
            return sp__fail(SP_ERR_NOMEM, "zstd: decompress: %s", ZSTD_getErrorName(r));
        default: return sp__fail(SP_ERR_CORRUPT, "zstd: frame does not decode: %s", ZSTD_getErrorName(r));
        }
    }
    *out_len = r;
    return SP_OK;
}

/* ---- lz4 ---- */

size_t sp__lz4_bound(size_t n)
{
    if (n <= LZ4_MAX_INPUT_SIZE) return (size_t)LZ4_compressBound((int)n);
    /* Past lz4's input limit encode refuses (SP_ERR_TOO_BIG); keep the bound monotonic. */
    return n > SIZE_MAX - n / 255 - 16 ? SIZE_MAX : n + n / 255 + 16;
}

sp_status sp__lz4_encode(const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    SP_RETURN_IF(n > LZ4_MAX_INPUT_SIZE, SP_ERR_TOO_BIG, "lz4: %zu bytes exceed the block limit of %d", n,
                 LZ4_MAX_INPUT_SIZE);
    int r = LZ4_compress_default(in, out, (int)n, (int)sp_min(cap, INT_MAX));
    SP_RETURN_IF(r <= 0, SP_ERR_TOO_BIG, "lz4: %zu bytes do not compress into %zu", n, cap);
    *out_len = (size_t)r;
    return SP_OK;
}

sp_status sp__lz4_decode(const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    SP_RETURN_IF(n == 0 || n > INT_MAX, SP_ERR_CORRUPT, "lz4: a %zu-byte block is not valid", n);
    int r = LZ4_decompress_safe(in, out, (int)n, (int)sp_min(cap, INT_MAX));
    /* lz4 does not tell malformed input from output that would not fit. */
    SP_RETURN_IF(r < 0, SP_ERR_CORRUPT,
                 "lz4: block does not decode (malformed, truncated, or more than %zu bytes)", cap);
    *out_len = (size_t)r;
    return SP_OK;
}

/* ---- gzip ---- */

int sp__gzip_level_ok(int level) { return level >= 1 && level <= 9; }

size_t sp__gzip_bound(size_t n)
{
    /* compressBound is exact for memLevel 8 / 32 KiB window with zlib's 6-byte wrapper;
     * the gzip wrapper (no name or extra fields) takes 18 bytes, 12 more. */
    uLong b = compressBound((uLong)n);
    return (b < n || b > SIZE_MAX - 12) ? SIZE_MAX : (size_t)b + 12;
}

static sp_status sp_zlib_status(int rc, const char *what, const z_stream *z)
{
    if (rc == Z_MEM_ERROR) return sp__fail(SP_ERR_NOMEM, "gzip: %s: out of memory", what);
    return sp__fail(SP_ERR_INVALID, "gzip: %s: %s (%d)", what, z->msg ? z->msg : "zlib error", rc);
}

/* This thread's deflate stream, reset and set to level. */
static sp_status sp_deflater(sp_codec_tls *t, int level)
{
    z_stream *z = &t->def;
    if (t->def_ready) {
        int rc = deflateReset(z);
        /* On a stream just reset (no input yet) deflateParams only changes the level; an
         * older zlib may refuse, and then a fresh stream does the job. */
        if (rc == Z_OK && level != t->def_level) rc = deflateParams(z, level, Z_DEFAULT_STRATEGY);
        if (rc == Z_OK) {
            t->def_level = level;
            return SP_OK;
        }
        deflateEnd(z);
        t->def_ready = 0;
    }
    memset(z, 0, sizeof *z);
    z->zalloc = sp_zalloc;
    z->zfree = sp_zfree;
    int rc = deflateInit2(z, level, Z_DEFLATED, SP_GZIP_WBITS, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) return sp_zlib_status(rc, "deflateInit2", z);
    t->def_ready = 1;
    t->def_level = level;
    return SP_OK;
}

sp_status sp__gzip_encode(int level, const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    SP_RETURN_IF(!sp__gzip_level_ok(level), SP_ERR_INVALID, "gzip: level %d is outside 1..9", level);
    sp_codec_tls *t = sp_tls();
    SP_RETURN_IF(t == NULL, SP_ERR_NOMEM, "gzip: out of memory for this thread's contexts");
    SP_FORWARD(sp_deflater(t, level));
    z_stream *z = &t->def;
    z->next_in = (Bytef *)(uintptr_t)in; /* zlib's API is not const-correct; it only reads */
    z->next_out = out;
    size_t in_left = n, out_left = cap;
    /* avail_in/avail_out are 32-bit: feed larger buffers in slices. */
    for (;;) {
        uInt ai = (uInt)sp_min(in_left, UINT_MAX), ao = (uInt)sp_min(out_left, UINT_MAX);
        z->avail_in = ai;
        z->avail_out = ao;
        int rc = deflate(z, ai == in_left ? Z_FINISH : Z_NO_FLUSH);
        in_left -= ai - z->avail_in;
        out_left -= ao - z->avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) return sp_zlib_status(rc, "deflate", z);
        SP_RETURN_IF(out_left == 0, SP_ERR_TOO_BIG, "gzip: %zu bytes do not compress into %zu", n, cap);
        if (rc == Z_BUF_ERROR && z->avail_in == ai && z->avail_out == ao)
            return sp_zlib_status(rc, "deflate made no progress", z);
    }
    *out_len = cap - out_left;
    return SP_OK;
}

sp_status sp__gzip_decode(const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    sp_codec_tls *t = sp_tls();
    SP_RETURN_IF(t == NULL, SP_ERR_NOMEM, "gzip: out of memory for this thread's contexts");
    z_stream *z = &t->inf;
    if (t->inf_ready) {
        int rc = inflateReset(z);
        if (rc != Z_OK) return sp_zlib_status(rc, "inflateReset", z);
    } else {
        memset(z, 0, sizeof *z);
        z->zalloc = sp_zalloc;
        z->zfree = sp_zfree;
        int rc = inflateInit2(z, SP_GZIP_WBITS); /* gzip only, not zlib or raw deflate */
        if (rc != Z_OK) return sp_zlib_status(rc, "inflateInit2", z);
        t->inf_ready = 1;
    }
    z->next_in = (Bytef *)(uintptr_t)in;
    z->next_out = out;
    size_t in_left = n, out_left = cap;
    for (;;) {
        uInt ai = (uInt)sp_min(in_left, UINT_MAX), ao = (uInt)sp_min(out_left, UINT_MAX);
        z->avail_in = ai;
        z->avail_out = ao;
        int rc = inflate(z, Z_NO_FLUSH);
        in_left -= ai - z->avail_in;
        out_left -= ao - z->avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc == Z_MEM_ERROR) return sp_zlib_status(rc, "inflate", z);
        SP_RETURN_IF(rc != Z_OK && rc != Z_BUF_ERROR, SP_ERR_CORRUPT, "gzip: member does not decode: %s",
                     z->msg ? z->msg : "bad data");
        SP_RETURN_IF(in_left == 0, SP_ERR_CORRUPT, "gzip: member is truncated after %zu bytes", n);
        SP_RETURN_IF(out_left == 0, SP_ERR_CORRUPT, "gzip: member holds more than the %zu bytes expected",
                     cap);
        SP_RETURN_IF(rc == Z_BUF_ERROR && z->avail_in == ai && z->avail_out == ao, SP_ERR_CORRUPT,
                     "gzip: member does not decode: no progress");
    }
    /* One member per frame: anything after its trailer is not ours. */
    SP_RETURN_IF(in_left != 0, SP_ERR_CORRUPT, "gzip: %zu bytes after the member", in_left);
    *out_len = cap - out_left;
    return SP_OK;
}

/* ---- libsodium ---- */

static pthread_once_t sp_sodium_once = PTHREAD_ONCE_INIT;
static int sp_sodium_rc = -1;

static void sp_sodium_init_once(void) { sp_sodium_rc = sodium_init(); }

sp_status sp__crypto_init(void)
{
    pthread_once(&sp_sodium_once, sp_sodium_init_once);
    SP_RETURN_IF(sp_sodium_rc < 0, SP_ERR_UNSUPPORTED, "libsodium: sodium_init failed");
    return SP_OK;
}

/* AES-256-GCM runs on OpenSSL's libcrypto, which has a software path too, so a file
 * written on a machine with AES-NI stays readable on one without. */
int sp__aead_available(sp_aead a)
{
    if (sp__crypto_init() != SP_OK) return 0;
    return a == SP_AEAD_XCHACHA20 || a == SP_AEAD_AES256GCM;
}

/* Where the CPU lacks AES instructions, XChaCha20-Poly1305 is the faster choice. */
sp_aead sp__aead_default(void)
{
    if (sp__crypto_init() != SP_OK) return SP_AEAD_XCHACHA20;
    return crypto_aead_aes256gcm_is_available() ? SP_AEAD_AES256GCM : SP_AEAD_XCHACHA20;
}

const char *sp__aead_name(sp_aead a)
{
    switch (a) {
    case SP_AEAD_XCHACHA20: return "xchacha20";
    case SP_AEAD_AES256GCM: return "aes256gcm";
    }
    return "unknown-aead";
}

int sp__aead_parse(const char *name, sp_aead *out)
{
    if (!name) return 0;
    if (strcmp(name, "xchacha20") == 0) *out = SP_AEAD_XCHACHA20;
    else if (strcmp(name, "aes256gcm") == 0) *out = SP_AEAD_AES256GCM;
    else return 0;
    return 1;
}

/* Keyed BLAKE2b of file_id || context under key. */
static void sp_derive(const unsigned char key[SP_KEY_BYTES], const unsigned char file_id[SP_FILE_ID_BYTES],
                      const char *context, unsigned char *out, size_t out_len)
{
    unsigned char msg[SP_FILE_ID_BYTES + 32];
    size_t clen = strlen(context);
    memcpy(msg, file_id, SP_FILE_ID_BYTES);
    memcpy(msg + SP_FILE_ID_BYTES, context, clen);
    (void)sp__crypto_init();
    crypto_generichash(out, out_len, msg, SP_FILE_ID_BYTES + clen, key, SP_KEY_BYTES);
    sodium_memzero(msg, sizeof msg);
}

void sp__aead_file_key(const unsigned char key[SP_KEY_BYTES], const unsigned char file_id[SP_FILE_ID_BYTES],
                       unsigned char file_key[SP_KEY_BYTES])
{
    sp_derive(key, file_id, "spillpool file key v1", file_key, SP_KEY_BYTES);
}

void sp__aead_key_check(const unsigned char key[SP_KEY_BYTES], const unsigned char file_id[SP_FILE_ID_BYTES],
                        unsigned char check[16])
{
    sp_derive(key, file_id, "spillpool key check v1", check, 16);
}

/* The nonce: index little-endian, zero-padded (room for the longer XChaCha20 nonce). */
static void sp_nonce(uint64_t index, unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES])
{
    memset(nonce, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    for (int i = 0; i < 8; i++) nonce[i] = (unsigned char)(index >> (8 * i));
}

static sp_status sp_aead_check(sp_aead a, size_t n)
{
    SP_RETURN_IF(a != SP_AEAD_XCHACHA20 && a != SP_AEAD_AES256GCM, SP_ERR_INVALID, "aead: unknown algorithm %d",
                 (int)a);
    SP_RETURN_IF(!sp__aead_available(a), SP_ERR_UNSUPPORTED, "%s: not available on this CPU or build",
                 sp__aead_name(a));
    size_t max = a == SP_AEAD_AES256GCM ? crypto_aead_aes256gcm_messagebytes_max()
                                        : crypto_aead_xchacha20poly1305_ietf_messagebytes_max();
    SP_RETURN_IF(n > max, SP_ERR_TOO_BIG, "%s: %zu bytes exceed the message limit", sp__aead_name(a), n);
    return SP_OK;
}

/* AES-256-GCM through libcrypto's EVP interface: on this class of CPU it runs about
 * twice as fast as libsodium 1.0.18's, and the output is the same standard GCM (same
 * key, 96-bit nonce, AD and tag: the tests check the two byte for byte). The expanded
 * key is wiped after every frame (EVP_CIPHER_CTX_reset cleanses it). */
static EVP_CIPHER *sp_gcm_cipher;
static pthread_once_t sp_gcm_once = PTHREAD_ONCE_INIT;

/* Fetched once: OpenSSL 3 looks the implementation up on every init otherwise,
 * which cost a quarter of the throughput on 1 MiB frames. */
static void sp_gcm_fetch(void) { sp_gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL); }

static int sp_gcm(int enc, const unsigned char *key, const unsigned char *nonce, const void *ad, size_t ad_len,
                  const unsigned char *in, size_t n, unsigned char *out, unsigned char *tag)
{
    pthread_once(&sp_gcm_once, sp_gcm_fetch);
    sp_codec_tls *t = sp_tls();
    /* -2: no context (out of memory), which must not pass for altered data */
    if (!sp_gcm_cipher || !t || (!t->gcm && !(t->gcm = EVP_CIPHER_CTX_new()))) return -2;
    EVP_CIPHER_CTX *c = t->gcm;
    int len = 0, ok = n <= INT_MAX && ad_len <= INT_MAX;
    if (ok && EVP_CipherInit_ex(c, sp_gcm_cipher, NULL, key, nonce, enc) != 1) {
        EVP_CIPHER_CTX_reset(c);
        return -2;
    }
    if (ok && !enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SP_AEAD_TAG, tag) == 1;
    if (ok && ad_len) ok = EVP_CipherUpdate(c, NULL, &len, ad, (int)ad_len) == 1;
    if (ok && n) ok = EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
    int fin = 0;
    ok = ok && EVP_CipherFinal_ex(c, out + (ok ? len : 0), &fin) == 1; /* decrypt: checks the tag */
    if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SP_AEAD_TAG, tag) == 1;
    EVP_CIPHER_CTX_reset(c);
    return ok ? 0 : -1;
}

sp_status sp__aead_encrypt(sp_aead a, const unsigned char file_key[SP_KEY_BYTES], uint64_t index, const void *ad,
                           size_t ad_len, const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    SP_FORWARD(sp_aead_check(a, n));
    SP_RETURN_IF(cap < SP_AEAD_TAG || n > cap - SP_AEAD_TAG, SP_ERR_TOO_BIG,
                 "%s: %zu bytes and the tag do not fit in %zu", sp__aead_name(a), n, cap);
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    sp_nonce(index, nonce);
    unsigned long long clen = 0;
    int rc;
    if (a == SP_AEAD_AES256GCM) {
        rc = sp_gcm(1, file_key, nonce, ad, ad_len, in, n, out, (unsigned char *)out + n);
        clen = n + SP_AEAD_TAG;
    } else
        rc = crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, in, n, ad, ad_len, NULL, nonce, file_key);
    SP_RETURN_IF(rc == -2, SP_ERR_NOMEM, "%s: out of memory for a cipher context", sp__aead_name(a));
    SP_RETURN_IF(rc != 0, SP_ERR_INVALID, "%s: encryption failed", sp__aead_name(a));
    *out_len = (size_t)clen;
    return SP_OK;
}

sp_status sp__aead_decrypt(sp_aead a, const unsigned char file_key[SP_KEY_BYTES], uint64_t index, const void *ad,
                           size_t ad_len, const void *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    SP_RETURN_IF(n < SP_AEAD_TAG, SP_ERR_AUTH, "%s: %zu bytes are shorter than the tag", sp__aead_name(a), n);
    SP_FORWARD(sp_aead_check(a, n - SP_AEAD_TAG));
    /* The contract makes a frame too long for cap an authentication failure too. */
    SP_RETURN_IF(n - SP_AEAD_TAG > cap, SP_ERR_AUTH, "%s: frame holds %zu bytes, more than the %zu expected",
                 sp__aead_name(a), n - SP_AEAD_TAG, cap);
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    sp_nonce(index, nonce);
    unsigned long long mlen = 0;
    int rc;
    if (a == SP_AEAD_AES256GCM) {
        rc = sp_gcm(0, file_key, nonce, ad, ad_len, in, n - SP_AEAD_TAG, out,
                    (unsigned char *)(uintptr_t)((const unsigned char *)in + n - SP_AEAD_TAG));
        mlen = n - SP_AEAD_TAG;
    } else
        rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, in, n, ad, ad_len, nonce, file_key);
    if (rc != 0) {
        /* Unverified plaintext must not reach the caller. */
        if (n > SP_AEAD_TAG) sodium_memzero(out, n - SP_AEAD_TAG);
        SP_RETURN_IF(rc == -2, SP_ERR_NOMEM, "%s: out of memory for a cipher context", sp__aead_name(a));
        return sp__fail(SP_ERR_AUTH, "%s: decryption failed: wrong key or altered data", sp__aead_name(a));
    }
    *out_len = (size_t)mlen;
    return SP_OK;
}

/* ---- keys ---- */

#define SP_KEY_FILE_MAX 200

/* One byte 32 times (all zeros, a placeholder file) is no key: refused, and the
 * buffer wiped. */
static sp_status sp_key_not_filler(const char *path, unsigned char key[SP_KEY_BYTES])
{
    size_t same = 1;
    while (same < SP_KEY_BYTES && key[same] == key[0]) same++;
    if (same < SP_KEY_BYTES) return SP_OK;
    sodium_memzero(key, SP_KEY_BYTES);
    return sp__fail(SP_ERR_INVALID, "key file %s: one byte 32 times is not a key; want 32 random bytes", path);
}

/* Parse a key file's bytes into key; SP_ERR_INVALID naming path otherwise. */
static sp_status sp_key_parse(const char *path, const unsigned char *buf, size_t len,
                              unsigned char key[SP_KEY_BYTES])
{
    if (len == SP_KEY_BYTES) {
        /* 32 bytes that are all text (printable ASCII, or UTF-8 as in "Grüße") are a
         * passphrase or half a hex key, not a raw key: random bytes are all that with
         * odds of about 1 in 10^11. */
        size_t text = 0;
        for (size_t i = 0; i < len;) {
            size_t l = sp__utf8_len(buf + i, len - i);
            int ok = l > 1 || (l == 1 && ((buf[i] >= 0x20 && buf[i] < 0x7f) || buf[i] == '\n' || buf[i] == '\t'));
            if (!ok) break;
            text += l;
            i += l;
        }
        SP_RETURN_IF(text == len, SP_ERR_INVALID,
                     "key file %s: 32 bytes of text, not a raw key; want 32 random bytes or 64 hex characters",
                     path);
        memcpy(key, buf, SP_KEY_BYTES);
        return sp_key_not_filler(path, key);
    }
    size_t hex_len = len;
    if (hex_len > 0 && buf[hex_len - 1] == '\n') hex_len--;
    if (hex_len > 0 && hex_len + 1 == len && buf[hex_len - 1] == '\r') hex_len--;
    SP_RETURN_IF(hex_len != 2 * SP_KEY_BYTES, SP_ERR_INVALID,
                 "key file %s: %zu bytes; want 32 raw bytes or 64 hex characters", path, len);
    unsigned char tmp[SP_KEY_BYTES];
    size_t bin_len = 0;
    const char *end = NULL;
    int rc = sodium_hex2bin(tmp, sizeof tmp, (const char *)buf, hex_len, NULL, &bin_len, &end);
    int ok = rc == 0 && bin_len == SP_KEY_BYTES && end == (const char *)buf + hex_len;
    if (ok) memcpy(key, tmp, SP_KEY_BYTES);
    sodium_memzero(tmp, sizeof tmp);
    SP_RETURN_IF(!ok, SP_ERR_INVALID,
                 "key file %s: %zu bytes but not hex; want 32 raw bytes or 64 hex characters", path, len);
    return sp_key_not_filler(path, key);
}

sp_status sp__key_load_file(const char *path, unsigned char key[SP_KEY_BYTES])
{
    SP_RETURN_IF(path == NULL, SP_ERR_INVALID, "key file: NULL path");
    /* O_NONBLOCK: a FIFO planted at the path must not hang us before fstat refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return sp__fail_errno(SP_OK, errno, "key file %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sp__fail_errno(SP_ERR_IO, e, "key file %s: fstat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sp__fail(SP_ERR_PERMISSION, "key file %s: not a regular file (mode 0%o)", path,
                        (unsigned)st.st_mode);
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        return sp__fail(SP_ERR_PERMISSION, "key file %s: mode 0%03o gives group or others access to it; chmod 600 it",
                        path, (unsigned)(st.st_mode & 07777));
    }
    unsigned char buf[SP_KEY_FILE_MAX + 1]; /* one more, to tell an over-long file */
    size_t len = 0;
    sp_status st_out = SP_OK;
    while (len < sizeof buf) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st_out = sp__fail_errno(SP_ERR_IO, errno, "key file %s: read", path);
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    if (st_out == SP_OK) {
        if (len > SP_KEY_FILE_MAX)
            st_out = sp__fail(SP_ERR_INVALID,
                              "key file %s: more than %d bytes; want 32 raw bytes or 64 hex characters", path,
                              SP_KEY_FILE_MAX);
        else
            st_out = sp_key_parse(path, buf, len, key);
    }
    sodium_memzero(buf, sizeof buf);
    return st_out;
}

unsigned char *sp__key_alloc(void)
{
    /* sodium_malloc needs sodium_init (it sets the page size for its guard pages). */
    if (sp__crypto_init() != SP_OK) return NULL;
    return sodium_malloc(SP_KEY_BYTES);
}

void sp__key_free(unsigned char *key)
{
    if (key) sodium_free(key);
}

void sp__random_bytes(void *buf, size_t n)
{
    (void)sp__crypto_init();
    randombytes_buf(buf, n);
}
