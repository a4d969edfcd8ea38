/* Filter chains: see chain.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../common/clock.h"
#include "../store/frame.h"
#include "chain.h"
#include "shuffle.h"

static int sp_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '-';
}

static int sp_builtin_name(const char *name)
{
    return !strcmp(name, "zstd") || !strcmp(name, "lz4") || !strcmp(name, "gzip") || !strcmp(name, "encrypt");
}

sp_status sp__filter_def_check(const sp_filter_def *def)
{
    SP_RETURN_IF(!def || !def->name || !def->bound || !def->encode || !def->decode, SP_ERR_INVALID,
                 "filter definition: name, bound, encode and decode are all required");
    size_t n = strlen(def->name);
    SP_RETURN_IF(n == 0 || n >= SP_FILTER_NAME_CAP, SP_ERR_INVALID, "filter name \"%s\": 1 to %d characters",
                 def->name, SP_FILTER_NAME_CAP - 1);
    for (size_t i = 0; i < n; i++)
        SP_RETURN_IF(!sp_name_char(def->name[i]), SP_ERR_INVALID,
                     "filter name \"%s\": only letters, digits, '_' and '-'", def->name);
    SP_RETURN_IF(sp_builtin_name(def->name), SP_ERR_INVALID, "filter name \"%s\" is a built-in filter",
                 def->name);
    return SP_OK;
}

static sp_status sp_parse_level(const char *chain, const char *name, const char *arg, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    SP_RETURN_IF(*arg == '\0' || *end != '\0' || errno == ERANGE, SP_ERR_INVALID,
                 "filter chain \"%s\": %s level \"%s\" is not a number", chain, name, arg);
    SP_RETURN_IF(v < lo || v > hi, SP_ERR_INVALID, "filter chain \"%s\": %s level %ld out of range %d..%d", chain,
                 name, v, lo, hi);
    *out = (int)v;
    return SP_OK;
}

static size_t sp_stage_bound(const sp_stage *s, size_t n)
{
    switch (s->kind) {
    case SP_F_ZSTD: return sp__zstd_bound(n);
    case SP_F_LZ4: return sp__lz4_bound(n);
    case SP_F_GZIP: return sp__gzip_bound(n);
    case SP_F_ENCRYPT: return n + SP_AEAD_TAG;
    case SP_F_CUSTOM: return s->custom.bound(s->custom.ctx, n);
    }
    return n;
}

/* One "name[:arg]" item of a chain. */
static sp_status sp_parse_stage(const char *chain, char *item, const sp_filter_def *custom, unsigned ncustom,
                                sp_stage *s)
{
    char *arg = strchr(item, ':');
    if (arg) *arg++ = '\0';
    memset(s, 0, sizeof *s);
    /* zstd and lz4 take ":noshuffle" last: compress every frame's bytes as they are */
    int shuffle = 1;
    if ((!strcmp(item, "zstd") || !strcmp(item, "lz4")) && arg) {
        char *last = strrchr(arg, ':');
        char *word = last ? last + 1 : arg;
        if (!strcmp(word, "noshuffle")) {
            shuffle = 0;
            if (last) *last = '\0';
            else arg = NULL;
        }
        SP_RETURN_IF(!shuffle && arg && !strcmp(arg, "noshuffle"), SP_ERR_INVALID,
                     "filter chain \"%s\": %s: \"noshuffle\" given twice", chain, item);
    }
    if (!strcmp(item, "zstd")) {
        s->kind = SP_F_ZSTD;
        s->level = 1; /* spilling favours speed: on columnar codes 1 compresses as well as 3, faster */
        s->shuffle = shuffle;
        if (arg) SP_FORWARD(sp_parse_level(chain, "zstd", arg, ZSTD_minCLevel(), ZSTD_maxCLevel(), &s->level));
        snprintf(s->name, sizeof s->name, "zstd:%d%s", s->level, shuffle ? "" : ":noshuffle");
    } else if (!strcmp(item, "gzip")) {
        s->kind = SP_F_GZIP;
        s->level = 1; /* level 6 is ten times slower for a few percent */
        if (arg) SP_FORWARD(sp_parse_level(chain, "gzip", arg, 1, 9, &s->level));
        snprintf(s->name, sizeof s->name, "gzip:%d", s->level);
    } else if (!strcmp(item, "lz4")) {
        SP_RETURN_IF(arg, SP_ERR_INVALID,
                     "filter chain \"%s\": lz4 takes only \"noshuffle\" as an argument (got \"%s\")", chain, arg);
        s->kind = SP_F_LZ4;
        s->shuffle = shuffle;
        snprintf(s->name, sizeof s->name, "lz4%s", shuffle ? "" : ":noshuffle");
    } else if (!strcmp(item, "encrypt")) {
        SP_FORWARD(sp__crypto_init());
        s->kind = SP_F_ENCRYPT;
        s->aead = sp__aead_default();
        if (arg)
            SP_RETURN_IF(!sp__aead_parse(arg, &s->aead), SP_ERR_INVALID,
                         "filter chain \"%s\": unknown cipher \"%s\" (aes256gcm or xchacha20)", chain, arg);
        SP_RETURN_IF(!sp__aead_available(s->aead), SP_ERR_UNSUPPORTED,
                     "filter chain \"%s\": %s is not available (the crypto libraries did not start)", chain,
                     sp__aead_name(s->aead));
        snprintf(s->name, sizeof s->name, "encrypt:%s", sp__aead_name(s->aead));
    } else {
        unsigned i = 0;
        while (i < ncustom && strcmp(custom[i].name, item) != 0) i++;
        SP_RETURN_IF(i == ncustom, SP_ERR_INVALID,
                     "filter chain \"%s\": unknown filter \"%s\" (built-in: zstd[:level][:noshuffle], "
                     "lz4[:noshuffle], gzip[:level], "
                     "encrypt[:aes256gcm|xchacha20])",
                     chain, item);
        SP_RETURN_IF(arg, SP_ERR_INVALID, "filter chain \"%s\": filter %s takes no argument", chain, item);
        s->kind = SP_F_CUSTOM;
        s->custom = custom[i];
        snprintf(s->name, sizeof s->name, "%.31s", item);
    }
    return SP_OK;
}

sp_status sp__chain_parse(const char *text, const sp_filter_def *custom, unsigned ncustom, sp_chain *out)
{
    memset(out, 0, sizeof *out);
    if (!text) text = "";
    char buf[SP_CHAIN_TEXT_CAP];
    SP_RETURN_IF(strlen(text) >= sizeof buf, SP_ERR_INVALID, "filter chain \"%.40s...\": longer than %zu bytes",
                 text, sizeof buf - 1);
    /* Drop blanks, so "zstd:3, encrypt" reads as it looks. */
    size_t k = 0;
    for (const char *p = text; *p; p++)
        if (*p != ' ' && *p != '\t') buf[k++] = *p;
    buf[k] = '\0';
    if (k == 0) return SP_OK;
    char *item = buf;
    for (char *p = buf;; p++) {
        if (*p != ',' && *p != '\0') continue;
        int last = *p == '\0';
        *p = '\0';
        SP_RETURN_IF(*item == '\0', SP_ERR_INVALID, "filter chain \"%s\": an empty filter name", text);
        SP_RETURN_IF(out->n == SP_CHAIN_MAX, SP_ERR_INVALID, "filter chain \"%s\": more than %d filters", text,
                     SP_CHAIN_MAX);
        SP_FORWARD(sp_parse_stage(text, item, custom, ncustom, &out->st[out->n]));
        out->n++;
        if (last) break;
        item = p + 1;
    }
    size_t len = 0;
    out->buf_cap = sp__chain_caps(out, SP_FRAME_SIZE, NULL);
    for (unsigned i = 0, first_enc = 0; i < out->n; i++) {
        sp_stage *s = &out->st[i];
        /* Every encrypt stage of a file uses its one key and the frame's nonce: a second
         * would apply the same keystream again and write the plain bytes to disk. */
        SP_RETURN_IF(s->kind == SP_F_ENCRYPT && out->encrypted, SP_ERR_INVALID,
                     "filter chain \"%s\": encrypt is filter %u and %u; one encrypt stage only", text, first_enc + 1,
                     i + 1);
        if (s->kind == SP_F_ENCRYPT && !out->encrypted) first_enc = i;
        if (s->kind == SP_F_ENCRYPT) out->encrypted = 1;
        else out->may_shrink = 1;
        size_t nl = strlen(s->name);
        SP_RETURN_IF(len + (i > 0) + nl >= sizeof out->text, SP_ERR_INVALID, "filter chain \"%s\": too long",
                     text);
        if (i) out->text[len++] = ',';
        memcpy(out->text + len, s->name, nl + 1);
        len += nl;
    }
    SP_RETURN_IF(out->buf_cap > (size_t)UINT32_MAX, SP_ERR_INVALID, "filter chain \"%s\": a bound is too large",
                 text);
    out->tail_auth = out->st[out->n - 1].kind == SP_F_ENCRYPT;
    return SP_OK;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* What an encrypted frame authenticates besides its bytes: the file, the frame's
 * place in it, its plain length and the stages skipped before this one, so no
 * frame can be moved, resized or have a stage switched off without detection. */
static size_t sp_frame_ad(unsigned char *ad, const sp_frame_key *k, uint64_t index, uint32_t raw_len,
                          uint32_t skip_before, unsigned stage)
{
    memcpy(ad, k->file_id, SP_FILE_ID_BYTES);
    put32(ad + 16, (uint32_t)index);
    put32(ad + 20, (uint32_t)(index >> 32));
    put32(ad + 24, raw_len);
    put32(ad + 28, skip_before);
    ad[32] = (unsigned char)stage;
    return 33;
}

size_t sp__chain_caps(const sp_chain *c, size_t n, size_t *caps)
{
    size_t need = n;
    for (unsigned i = 0; i < c->n; i++) {
        if (caps) caps[i] = n;
        size_t o = sp_stage_bound(&c->st[i], n);
        if (o > n) n = o; /* a skipped stage passes its input on */
        if (n > need) need = n;
    }
    return need;
}

static int sp_compressor(sp_filter_kind kind) { return kind == SP_F_ZSTD || kind == SP_F_LZ4; }

/* Width code in a filter word: 1, 2, 3 for 2, 4, 8 bytes. */
static unsigned sp_shuf_code(unsigned w) { return w == 2 ? 1u : w == 4 ? 2u : w == 8 ? 3u : 0u; }
static unsigned sp_shuf_width(uint32_t word) { return (1u << ((word >> SP_WORD_SHUF_SHIFT) & 3u)) & ~1u; }

/* The part of a frame's word an encrypting stage i authenticates: what ran before it. */
static uint32_t sp_word_before(uint32_t word, unsigned i)
{
    uint32_t before = word & ((1u << i) - 1);
    if (sp_shuf_width(word) && ((word >> SP_WORD_STAGE_SHIFT) & 7u) < i) before |= word & ~SP_WORD_SKIP;
    return before;
}

int sp__chain_word_ok(const sp_chain *c, uint32_t word)
{
    if (word >> SP_WORD_BITS || (word & SP_WORD_SKIP) >> c->n) return 0;
    unsigned stage = (word >> SP_WORD_STAGE_SHIFT) & 7u;
    if (!sp_shuf_width(word)) return stage == 0;
    /* only a compressing stage that shuffles and ran can have shuffled */
    return stage < c->n && c->st[stage].shuffle && !(word & (1u << stage));
}

static sp_status sp_stage_encode(sp_stage *s, const sp_frame_key *k, uint64_t index, uint32_t raw_len,
                                 uint32_t word, unsigned i, const unsigned char *in, size_t n, unsigned char *dst,
                                 size_t cap, size_t *got)
{
    switch (s->kind) {
    case SP_F_ZSTD: return sp__zstd_encode(s->level, in, n, dst, cap, got);
    case SP_F_LZ4: return sp__lz4_encode(in, n, dst, cap, got);
    case SP_F_GZIP: return sp__gzip_encode(s->level, in, n, dst, cap, got);
    case SP_F_ENCRYPT: {
        unsigned char ad[40];
        size_t adn = sp_frame_ad(ad, k, index, raw_len, word, i);
        return sp__aead_encrypt(s->aead, k->file_key, index, ad, adn, in, n, dst, cap, got);
    }
    default: break;
    }
    sp_status st = s->custom.encode(s->custom.ctx, in, n, dst, cap, got);
    if (st == SP_OK && *got > cap)
        st = sp__fail(SP_ERR_INVALID, "filter %s: encode wrote %zu bytes, over its bound %zu", s->name, *got, cap);
    return st;
}

sp_status sp__chain_encode(sp_chain *c, const sp_frame_key *k, uint64_t index, const unsigned char *in, size_t n,
                           unsigned char *a, unsigned char *b, const unsigned char **out, size_t *out_len,
                           uint32_t *skip)
{
    const unsigned char *cur = in;
    size_t cur_n = n;
    uint32_t word = 0;
    for (unsigned i = 0; i < c->n; i++) {
        sp_stage *s = &c->st[i];
        /* gzip is never skipped, so a gzip-only file stays readable by gzip -d. */
        if (sp_compressor(s->kind) && cur_n < SP_SKIP_BELOW) {
            word |= 1u << i;
            atomic_fetch_add_explicit(&s->skipped, 1, memory_order_relaxed);
            continue;
        }
        uint64_t t0 = sp__now_ns();
        /* A frame of numbers is shuffled into byte planes first (once per frame: a later
         * compressor sees compressed bytes). Then the shuffled copy is the input, in the
         * buffer that is not cur, and the output goes to the other one. */
        unsigned w = s->shuffle && !sp_shuf_width(word) ? sp__shuffle_pick(cur, cur_n) : 0;
        const unsigned char *src = cur;
        unsigned char *dst = cur == a ? b : a;
        if (w) {
            sp__shuffle(cur, dst, cur_n, w);
            src = dst;
            dst = dst == a ? b : a; /* may be cur: its bytes are in src now */
        }
        size_t got = 0, cap = sp_stage_bound(s, cur_n);
        sp_status st = sp_stage_encode(s, k, index, (uint32_t)n, word, i, src, cur_n, dst, cap, &got);
        if (st == SP_OK && sp_compressor(s->kind) && got >= cur_n) { /* did not pay: keep the input */
            if (w && dst == cur) sp__unshuffle(src, dst, cur_n, w); /* cur was overwritten: put it back */
            word |= 1u << i;
            atomic_fetch_add_explicit(&s->skipped, 1, memory_order_relaxed);
            got = cur_n;
            dst = (unsigned char *)cur;
        } else if (st == SP_OK && w) {
            word |= sp_shuf_code(w) << SP_WORD_SHUF_SHIFT | i << SP_WORD_STAGE_SHIFT;
            atomic_fetch_add_explicit(&s->shuffled, 1, memory_order_relaxed);
        }
        atomic_fetch_add_explicit(&s->encode_ns, sp__now_ns() - t0, memory_order_relaxed);
        if (st != SP_OK) return sp__wrap(st, "filter %s, frame %llu", s->name, (unsigned long long)index);
        atomic_fetch_add_explicit(&s->frames, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->bytes_in, cur_n, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->bytes_out, got, memory_order_relaxed);
        cur = dst;
        cur_n = got;
    }
    *out = cur;
    *out_len = cur_n;
    *skip = word;
    return SP_OK;
}

sp_status sp__chain_decode(sp_chain *c, const sp_frame_key *k, uint64_t index, uint32_t skip, uint32_t raw_len,
                           const unsigned char *in, size_t n, unsigned char *a, unsigned char *b,
                           unsigned char *dst)
{
    SP_RETURN_IF(!sp__chain_word_ok(c, skip), SP_ERR_CORRUPT,
                 "frame %llu: filter flags 0x%x name stages the chain lacks or could not have run",
                 (unsigned long long)index, skip);
    int lowest = -1; /* the last stage to run decodes straight into dst */
    for (unsigned i = 0; i < c->n; i++)
        if (!(skip & (1u << i))) {
            lowest = (int)i;
            break;
        }
    unsigned w = sp_shuf_width(skip), shuf_stage = (skip >> SP_WORD_STAGE_SHIFT) & 7u;
    size_t caps[SP_CHAIN_MAX];
    sp__chain_caps(c, raw_len, caps);
    const unsigned char *cur = in;
    size_t cur_n = n;
    for (int i = (int)c->n - 1; i >= 0; i--) {
        sp_stage *s = &c->st[i];
        if (skip & (1u << i)) {
            SP_RETURN_IF(!sp_compressor(s->kind), SP_ERR_CORRUPT,
                         "frame %llu: marked as skipping %s, which is never skipped", (unsigned long long)index,
                         s->name);
            continue;
        }
        int shuffled = w && (unsigned)i == shuf_stage;
        unsigned char *to = i == lowest && !shuffled ? dst : (cur == a ? b : a);
        size_t cap = i == lowest ? raw_len : caps[i], got = 0;
        uint64_t t0 = sp__now_ns();
        sp_status st;
        switch (s->kind) {
        case SP_F_ZSTD: st = sp__zstd_decode(cur, cur_n, to, cap, &got); break;
        case SP_F_LZ4: st = sp__lz4_decode(cur, cur_n, to, cap, &got); break;
        case SP_F_GZIP: st = sp__gzip_decode(cur, cur_n, to, cap, &got); break;
        case SP_F_ENCRYPT: {
            unsigned char ad[40];
            size_t adn = sp_frame_ad(ad, k, index, raw_len, sp_word_before(skip, (unsigned)i), (unsigned)i);
            st = sp__aead_decrypt(s->aead, k->file_key, index, ad, adn, cur, cur_n, to, cap, &got);
            break;
        }
        default:
            st = s->custom.decode(s->custom.ctx, cur, cur_n, to, cap, &got);
            if (st == SP_OK && got > cap) st = sp__fail(SP_ERR_CORRUPT, "decode wrote %zu bytes, over %zu", got, cap);
            break;
        }
        if (st == SP_OK && shuffled) { /* back from planes: into dst, or the buffer the input was in */
            unsigned char *planes = to;
            to = i == lowest ? dst : (planes == a ? b : a);
            sp__unshuffle(planes, to, got, w);
        }
        atomic_fetch_add_explicit(&s->decode_ns, sp__now_ns() - t0, memory_order_relaxed);
        if (st != SP_OK) return sp__wrap(st, "filter %s, frame %llu", s->name, (unsigned long long)index);
        cur = to;
        cur_n = got;
    }
    SP_RETURN_IF(cur_n != raw_len, SP_ERR_CORRUPT, "frame %llu: decodes to %zu bytes, the frame says %u",
                 (unsigned long long)index, cur_n, raw_len);
    if (cur != dst) memcpy(dst, cur, raw_len);
    return SP_OK;
}
