/* `spillpool inspect FILE [--payload]`: the structure of a spill file (see
 * src/store/frame.h), read without a pool or a key. With --payload the frames'
 * stored bytes are written to stdout back to back: for a file written by the gzip
 * filter alone that is a multi-member gzip stream, so `| gzip -d` gives the object's
 * stored form. It checks the layout, not the data: the pool verifies checksums and
 * tags when it reads a file back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
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
    char chain[300] = "";
    if (clen >= sizeof chain || hlen < 24 + clen + 16 + 8 || fread(chain, 1, clen, f) != clen) {
        fclose(f);
        return bad(path, "malformed header", 24);
    }
    chain[clen] = '\0';
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
        uint32_t s = le32(fh), r = le32(fh + 4), fl = le32(fh + 8);
        if (fl & 1) {
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
            if (fl >> 8) fprintf(rep, ", stages skipped (mask 0x%x)", fl >> 8);
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
