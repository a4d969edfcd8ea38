/* bench_codecs: single-core speed of each filter's codec on the demo's data, one
 * 1 MiB frame at a time (the unit the filters work in), median of 5 passes over a
 * partition. Also libsodium's own AES-256-GCM, to show why the project runs that
 * cipher on libcrypto; then whole filter stages as a spill runs them, byte shuffle
 * (its sample, transform and inverse) included, with and without it. Usage:
 * bench_codecs */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "filter/chain.h"
#include "filter/codec.h"
#include "workload.h"

#define FRAME ((size_t)1 << 20)

typedef sp_status (*codec_fn)(int arg, const void *in, size_t n, void *out, size_t cap, size_t *got);

static const unsigned char key[SP_KEY_BYTES] = {7};

static sp_status z_enc(int l, const void *i, size_t n, void *o, size_t c, size_t *g) { return sp__zstd_encode(l, i, n, o, c, g); }
static sp_status z_dec(int l, const void *i, size_t n, void *o, size_t c, size_t *g) { (void)l; return sp__zstd_decode(i, n, o, c, g); }
static sp_status l_enc(int l, const void *i, size_t n, void *o, size_t c, size_t *g) { (void)l; return sp__lz4_encode(i, n, o, c, g); }
static sp_status l_dec(int l, const void *i, size_t n, void *o, size_t c, size_t *g) { (void)l; return sp__lz4_decode(i, n, o, c, g); }
static sp_status g_enc(int l, const void *i, size_t n, void *o, size_t c, size_t *g) { return sp__gzip_encode(l, i, n, o, c, g); }
static sp_status g_dec(int l, const void *i, size_t n, void *o, size_t c, size_t *g) { (void)l; return sp__gzip_decode(i, n, o, c, g); }
static sp_status a_enc(int a, const void *i, size_t n, void *o, size_t c, size_t *g)
{
    return sp__aead_encrypt((sp_aead)a, key, 0, "ad", 2, i, n, o, c, g);
}
static sp_status a_dec(int a, const void *i, size_t n, void *o, size_t c, size_t *g)
{
    return sp__aead_decrypt((sp_aead)a, key, 0, "ad", 2, i, n, o, c, g);
}
static sp_status s_enc(int a, const void *i, size_t n, void *o, size_t c, size_t *g)
{
    (void)a;
    (void)c;
    unsigned char nonce[crypto_aead_aes256gcm_NPUBBYTES] = {0};
    unsigned long long len;
    crypto_aead_aes256gcm_encrypt(o, &len, i, n, (const unsigned char *)"ad", 2, NULL, nonce, key);
    *g = (size_t)len;
    return SP_OK;
}
static sp_status s_dec(int a, const void *i, size_t n, void *o, size_t c, size_t *g)
{
    (void)a;
    (void)c;
    unsigned char nonce[crypto_aead_aes256gcm_NPUBBYTES] = {0};
    unsigned long long len;
    int rc = crypto_aead_aes256gcm_decrypt(o, &len, NULL, i, n, (const unsigned char *)"ad", 2, nonce, key);
    *g = (size_t)len;
    return rc == 0 ? SP_OK : SP_ERR_AUTH;
}

int main(void)
{
    static const struct {
        const char *name;
        codec_fn enc, dec;
        int arg;
    } codecs[] = {
        {"zstd:1", z_enc, z_dec, 1},
        {"lz4", l_enc, l_dec, 0},
        {"gzip:1", g_enc, g_dec, 1},
        {"aes256gcm (libcrypto)", a_enc, a_dec, SP_AEAD_AES256GCM},
        {"xchacha20 (libsodium)", a_enc, a_dec, SP_AEAD_XCHACHA20},
        {"aes256gcm (libsodium)", s_enc, s_dec, 0},
    };
    if (sp__crypto_init() != SP_OK) return 1;
    int have_sodium_aes = crypto_aead_aes256gcm_is_available();
    sp_demo_opts o;
    sp_demo_defaults(&o);
    sp_bytes *part = sp_demo_partition(&o, 0); /* 8 MiB of column codes */
    if (!part) return 1;
    const unsigned char *data = part->data;
    size_t n = part->len;
    unsigned char *enc = malloc(8 * (FRAME + FRAME / 8)), *dec = malloc(FRAME);
    size_t enc_len[8];
    printf("bench_codecs: one demo partition (%zu MiB) in 1 MiB frames, one core, median of 5\n", n >> 20);
    printf("%-24s %12s %12s %8s\n", "codec", "encode MB/s", "decode MB/s", "ratio");
    for (size_t c = 0; c < sizeof codecs / sizeof codecs[0]; c++) {
        if (codecs[c].enc == s_enc && !have_sodium_aes) continue;
        double te[5], td[5];
        size_t out = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = (double)sp__now_ns();
            out = 0;
            for (size_t f = 0; f < n / FRAME; f++) {
                if (codecs[c].enc(codecs[c].arg, data + f * FRAME, FRAME, enc + f * (FRAME + FRAME / 8),
                                  FRAME + FRAME / 8, &enc_len[f]) != SP_OK) {
                    fprintf(stderr, "%s: encode failed: %s\n", codecs[c].name, sp_last_error());
                    return 1;
                }
                out += enc_len[f];
            }
            double t1 = (double)sp__now_ns();
            for (size_t f = 0; f < n / FRAME; f++) {
                size_t got = 0;
                if (codecs[c].dec(codecs[c].arg, enc + f * (FRAME + FRAME / 8), enc_len[f], dec, FRAME, &got) !=
                        SP_OK ||
                    got != FRAME || memcmp(dec, data + f * FRAME, FRAME) != 0) {
                    fprintf(stderr, "%s: frame %zu does not decode to the original\n", codecs[c].name, f);
                    return 1;
                }
            }
            te[rep] = (t1 - t0) / 1e9;
            td[rep] = ((double)sp__now_ns() - t1) / 1e9;
        }
        printf("%-24s %12.0f %12.0f %8.3f\n", codecs[c].name, (double)n / 1e6 / sp_median(te, 5),
               (double)n / 1e6 / sp_median(td, 5), (double)out / (double)n);
    }
    /* Stages as sp__chain_encode runs them on a spill: the shuffle's pick, transform and
     * inverse are in the times. */
    static const char *const chains[] = {"lz4", "lz4:noshuffle", "zstd:1", "zstd:1:noshuffle"};
    unsigned char *a = malloc(FRAME + FRAME / 8), *b = malloc(FRAME + FRAME / 8);
    unsigned char file_id[SP_FILE_ID_BYTES] = {1};
    sp_frame_key fk = {file_id, NULL};
    printf("%-24s %12s %12s %8s %9s\n", "filter stage", "encode MB/s", "decode MB/s", "ratio", "shuffled");
    for (size_t c = 0; c < sizeof chains / sizeof chains[0]; c++) {
        sp_chain ch;
        if (sp__chain_parse(chains[c], NULL, 0, &ch) != SP_OK) return 1;
        double te[5], td[5];
        size_t out = 0, shuffled = 0;
        uint32_t word[8];
        for (int rep = 0; rep < 5; rep++) {
            double t0 = (double)sp__now_ns();
            out = shuffled = 0;
            for (size_t f = 0; f < n / FRAME; f++) {
                const unsigned char *res;
                if (sp__chain_encode(&ch, &fk, f, data + f * FRAME, FRAME, a, b, &res, &enc_len[f], &word[f]) !=
                    SP_OK) {
                    fprintf(stderr, "%s: encode failed: %s\n", chains[c], sp_last_error());
                    return 1;
                }
                memcpy(enc + f * (FRAME + FRAME / 8), res, enc_len[f]);
                out += enc_len[f];
                shuffled += (word[f] >> SP_WORD_SHUF_SHIFT) != 0;
            }
            double t1 = (double)sp__now_ns();
            for (size_t f = 0; f < n / FRAME; f++) {
                memcpy(a, enc + f * (FRAME + FRAME / 8), enc_len[f]); /* the reader's layout: payload in a */
                if (sp__chain_decode(&ch, &fk, f, word[f], FRAME, a, enc_len[f], a, b, dec) != SP_OK ||
                    memcmp(dec, data + f * FRAME, FRAME) != 0) {
                    fprintf(stderr, "%s: frame %zu does not decode to the original\n", chains[c], f);
                    return 1;
                }
            }
            te[rep] = (t1 - t0) / 1e9;
            td[rep] = ((double)sp__now_ns() - t1) / 1e9;
        }
        printf("%-24s %12.0f %12.0f %8.3f %5zu of %zu\n", chains[c], (double)n / 1e6 / sp_median(te, 5),
               (double)n / 1e6 / sp_median(td, 5), (double)out / (double)n, shuffled, n / FRAME);
    }
    free(a);
    free(b);
    sp_bytes_free(part);
    free(enc);
    free(dec);
    sp__codec_thread_cleanup();
    return 0;
}
