/* `spillpool inspect FILE [--payload]`: the structure of a spill file (see
 * src/store/frame.h), read without a pool or a key. With --payload the frames'
 * stored bytes are written to stdout back to back: for a file written by the gzip
 * filter alone that is a multi-member gzip stream, so `| gzip -d` gives the object's
 * stored form. It checks the layout as the pool's reader does (header and its
 * checksum, frame lengths and flags, the end marker, its hash of the frames before it
 * and nothing after it), not the frames' data: their checksums and tags are checked
 * when the pool reads them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../store/frame.h"
#include "inspect.h"

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int bad(const char *path, const char *what, long at)
{
    fprintf(stderr, "spillpool inspect: %s: %s at byte %ld\n", path, what, at);
    return 1;
}

int sp_inspect(const char *path, int payload)
{
    /* Opened without blocking and checked before reading: a FIFO would hang the read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    struct stat sb;
    int statted = fstat(fd, &sb) == 0;
    if (!statted || !S_ISREG(sb.st_mode)) {
        int dir = statted && S_ISDIR(sb.st_mode);
        close(fd);
        return bad(path, dir ? "a directory, not a spill file" : "not a regular file", 0);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        perror(path);
        close(fd);
        return 1;
    }
    FILE *out = payload ? stdout : NULL, *rep = payload ? stderr : stdout;
    unsigned char h[24];
    int rc = 0;
    if (fread(h, 1, 24, f) != 24 || memcmp(h, "SPILLPL\x01", 8) != 0) {
        fclose(f);
        return bad(path, "not a spill file", 0);
    }
    uint32_t hlen = le32(h + 8), fsize = le32(h + 12), flags = le32(h + 16);
    size_t clen = (size_t)h[20] | (size_t)h[21] << 8;
    char chain[SP_CHAIN_TEXT_CAP] = "";
    unsigned char hb[SP_HEADER_MAX];
    size_t want = 24 + clen + SP_FILE_ID_BYTES + ((flags & SP_HEADER_KEYCHECK) ? 16 : 0) + 8;
    if (clen >= sizeof chain || hlen != want || (flags & ~SP_HEADER_KEYCHECK) || h[22] || h[23]) {
        fclose(f);
        return bad(path, "malformed header", 8);
    }
    memcpy(hb, h, 24);
    if (fread(hb + 24, 1, hlen - 24, f) != hlen - 24) {
        fclose(f);
        return bad(path, "truncated header", 24);
    }
    uint64_t sum = 0;
    for (int i = 7; i >= 0; i--) sum = sum << 8 | hb[hlen - 8 + (unsigned)i];
    if (sum != XXH3_64bits(hb, hlen - 8)) {
        fclose(f);
        return bad(path, "header checksum mismatch", (long)hlen - 8);
    }
    if (fsize != SP_FRAME_SIZE) {
        fclose(f);
        fprintf(stderr, "spillpool inspect: %s: frames of %u bytes; this version reads %u\n", path, fsize,
                SP_FRAME_SIZE);
        return 1;
    }
    memcpy(chain, hb + 24, clen);
    chain[clen] = '\0';
    unsigned stages = clen ? 1 : 0;
    for (size_t i = 0; i < clen; i++) stages += chain[i] == ',';
    if (strlen(chain) != clen || stages > SP_CHAIN_MAX) { /* a NUL inside, or more stages than a chain has */
        fclose(f);
        return bad(path, "malformed header", 24);
    }
    /* The frames' filter words are checked against the chain as the reader does. A
     * chain naming the caller's own filters does not parse here: then its stage count
     * bounds the words. */
    sp_chain parsed;
    int known = clen && sp__chain_parse(chain, NULL, 0, &parsed) == SP_OK;
    fprintf(rep, "%s: header %u bytes, frames of %u bytes, chain \"%s\"%s\n", path, hlen, fsize, chain,
            (flags & 1) ? ", encrypted (key check present)" : "");
    if (fseek(f, (long)hlen, SEEK_SET) != 0) {
        fclose(f);
        return bad(path, "short header", 24);
    }
    unsigned char *buf = malloc(fsize + (fsize >> 2) + 65536);
    uint64_t raw = 0, stored = 0, frames = 0;
    for (;;) {
        long at = ftell(f);
        unsigned char fh[24];
        if (fread(fh, 1, 24, f) != 24) {
            rc = bad(path, "truncated: no end marker", at);
            break;
        }
        uint32_t s = le32(fh), r = le32(fh + 4), fl = le32(fh + 8), skip = fl >> SP_FRAME_SKIP_SHIFT;
        /* the reader's checks: known flags, a zero word, lengths a chain can give */
        int ok = le32(fh + 12) == 0 && (fl & ((1u << SP_FRAME_SKIP_SHIFT) - 1) & ~SP_FRAME_END) == 0 &&
                 skip >> SP_WORD_BITS == 0 && (skip & SP_WORD_SKIP) >> stages == 0 && r <= fsize;
        if (ok && known) ok = sp__chain_word_ok(&parsed, skip) && s <= sp__chain_caps(&parsed, r, NULL);
        if (ok && !known && clen) {
            unsigned stage = skip >> SP_WORD_STAGE_SHIFT & 7u;
            ok = stage < stages && ((skip >> SP_WORD_SHUF_SHIFT & 3u) || stage == 0);
        }
        if (ok && clen == 0) ok = s == r && skip == 0;
        if (ok && (fl & SP_FRAME_END)) ok = s == 0 && r == 0 && skip == 0;
        if (!ok) {
            rc = bad(path, (fl & SP_FRAME_END) ? "malformed end marker" : "malformed frame header", at);
            break;
        }
        if (fl & SP_FRAME_END) {
            uint64_t hash = (uint64_t)le32(fh + 16) | (uint64_t)le32(fh + 20) << 32;
            if (hash != sp__end_hash(raw, frames)) {
                rc = bad(path, "end marker does not match the frames before it (frames dropped?)", at);
                break;
            }
            if (fgetc(f) != EOF) {
                rc = bad(path, "bytes after the end marker", at + 24);
                break;
            }
            fprintf(rep, "end marker at byte %ld: %llu frames, %llu bytes stored, %llu plain\n", at,
                    (unsigned long long)frames, (unsigned long long)stored, (unsigned long long)raw);
            break;
        }
        if (!buf || s > fsize + (fsize >> 2) + 65536) {
            rc = bad(path, "frame larger than any chain makes", at);
            break;
        }
        if (fread(buf, 1, s, f) != s) {
            rc = bad(path, "truncated frame", at);
            break;
        }
        if (!out) {
            fprintf(rep, "frame %llu at byte %ld: %u bytes stored, %u plain", (unsigned long long)frames, at, s, r);
            if (skip & SP_WORD_SKIP) fprintf(rep, ", stages skipped (mask 0x%x)", skip & SP_WORD_SKIP);
            if (skip >> SP_WORD_SHUF_SHIFT & 3u)
                fprintf(rep, ", %u-byte shuffle before stage %u", 1u << (skip >> SP_WORD_SHUF_SHIFT & 3u),
                        skip >> SP_WORD_STAGE_SHIFT & 7u);
            fputc('\n', rep);
        }
        if (out && fwrite(buf, 1, s, out) != s) {
            rc = bad(path, "write to stdout failed", at);
            break;
        }
        frames++;
        stored += s;
        raw += r;
    }
    free(buf);
    fclose(f);
    return rc;
}
