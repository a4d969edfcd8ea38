/* Internal error helpers: one line per error path, as in zstd's error_private.h. */
#ifndef SP_COMMON_ERROR_H
#define SP_COMMON_ERROR_H

#include "spillpool/status.h"

#define SP_HIDDEN __attribute__((visibility("hidden")))
#define SP_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Record a detail message for this thread and return st. */
SP_HIDDEN sp_status sp__fail(sp_status st, const char *fmt, ...) SP_PRINTF(2, 3);
/* The same, appending ": <strerror(err)>"; maps errno to a status when st is SP_OK. */
SP_HIDDEN sp_status sp__fail_errno(sp_status st, int err, const char *fmt, ...) SP_PRINTF(3, 4);
/* The status an errno value deserves (ENOSPC -> SP_ERR_DISK_FULL, ...). */
SP_HIDDEN sp_status sp__status_of_errno(int err);
/* Forget this thread's detail message: before a callback whose error may come
 * without one, so that an older message is not taken for its. */
SP_HIDDEN void sp__clear_error(void);
/* Prefix the current detail with more context: "<prefix>: <old detail>". */
SP_HIDDEN sp_status sp__wrap(sp_status st, const char *fmt, ...) SP_PRINTF(2, 3);

#define SP_RETURN_IF(cond, st, ...)                                                     \
    do {                                                                                \
        if (cond) return sp__fail((st), __VA_ARGS__);                                   \
    } while (0)

#define SP_FORWARD(expr)                                                                \
    do {                                                                                \
        sp_status sp__st = (expr);                                                      \
        if (sp__st != SP_OK) return sp__st;                                             \
    } while (0)

#endif
