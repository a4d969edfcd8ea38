/* UTF-8 checking, for what must be UTF-8 on the way out (JSON, Arrow utf8): CSV data
 * is bytes, and nothing checks them on the way in. */
#ifndef SP_COMMON_UTF8_H
#define SP_COMMON_UTF8_H
#include <stddef.h>

/* The length of the valid UTF-8 sequence at s (1-4; n >= 1 bytes there), or 0 if it
 * is not one: no overlong forms, no surrogates, nothing past U+10FFFF. */
static inline size_t sp__utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return len;
}

/* The offset of the first byte of s[0..n) that is not valid UTF-8, or n. */
static inline size_t sp__utf8_bad_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = sp__utf8_len(u + i, n - i);
        if (!l) return i;
        i += l;
    }
    return n;
}

#endif
