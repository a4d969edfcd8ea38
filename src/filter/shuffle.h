/* Byte shuffling ahead of a compressor, as HDF5's shuffle filter and Blosc do:
 * a frame of w-byte numbers is rewritten as w planes (every first byte, then
 * every second, ...), so the bytes that barely change (the high bytes of small
 * codes, the exponents of doubles) sit together in long runs. lz4 then
 * compresses the demo's 32-bit codes three times as fast and to half the size.
 * No library in Debian offers the transform on its own (Blosc bundles it with
 * its own container format), and it is short.
 *
 * The compressing stages pick the width per frame from a sample
 * (sp__shuffle_pick), so text and random bytes are left as they are.
 */
#ifndef SP_FILTER_SHUFFLE_H
#define SP_FILTER_SHUFFLE_H

#include "../common/error.h"
#include <stddef.h>

/* The width (2, 4 or 8) that would help compress these n bytes, or 0 for none:
 * byte p repeating byte p-w clearly more often than byte p-1 says the data is
 * made of w-byte numbers, and lz4 over a few shuffled blocks then saving an
 * eighth against the same blocks as they are. Reads at most 16 KiB, spread over
 * the input. */
SP_HIDDEN unsigned sp__shuffle_pick(const unsigned char *p, size_t n);
/* out = the w planes of in; the n % w bytes of a partial last number follow as
 * they are. in and out do not overlap. */
SP_HIDDEN void sp__shuffle(const unsigned char *in, unsigned char *out, size_t n, unsigned w);
/* The inverse. */
SP_HIDDEN void sp__unshuffle(const unsigned char *in, unsigned char *out, size_t n, unsigned w);

#endif
