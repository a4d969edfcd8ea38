/* Running the frames of one object through a filter chain on several cores.
 *
 * A few helper threads, shared by every pool in the process and started on first
 * use, take jobs from the batches callers publish; the caller works on its own batch
 * too, so a batch always finishes even when every helper is busy elsewhere. Helpers
 * live as long as the process: their codec contexts stay warm between objects.
 */
#ifndef SP_FILTER_PAR_H
#define SP_FILTER_PAR_H

#include "../common/error.h"

#define SP_PAR_MAX 4 /* frames in flight per spill or restore */

/* How many frames a batch should hold: 1 + helpers (1 on a single CPU). */
SP_HIDDEN unsigned sp__par_width(void);

/* Run fn(arg, i) for i in 0..n-1, on the calling thread and the helpers; returns
 * when all have returned. fn must not fail by longjmp or block on the caller. */
SP_HIDDEN void sp__par_run(unsigned n, void (*fn)(void *arg, unsigned i), void *arg);

#endif
