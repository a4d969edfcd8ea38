/* Hooks for the test suite only (exported so tests linking the shared library reach
 * them; not part of the public API). */
#ifndef SP_COMMON_TESTING_H
#define SP_COMMON_TESTING_H

/* Let n more internal allocations succeed, then fail every one; n < 0 turns it off. */
void sp_testing_fail_alloc_after(long n);

#endif
