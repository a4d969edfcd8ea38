/* Status names and the per-thread detail message. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define SP_DETAIL_CAP 1024
static _Thread_local char sp_detail[SP_DETAIL_CAP];

const char *sp_strerror(sp_status st)
{
    switch (st) {
    case SP_OK: return "ok";
    case SP_ERR_INVALID: return "invalid argument";
    case SP_ERR_NOMEM: return "out of memory";
    case SP_ERR_TOO_BIG: return "object larger than a bound";
    case SP_ERR_MEMORY_FULL: return "memory bound held by pinned objects";
    case SP_ERR_DISK_FULL: return "disk bound reached or disk full";
    case SP_ERR_IO: return "I/O error";
    case SP_ERR_CORRUPT: return "corrupt or malformed data";
    case SP_ERR_NOT_FOUND: return "stored file missing";
    case SP_ERR_BAD_REF: return "invalid or released ref";
    case SP_ERR_NOT_PINNED: return "object not pinned";
    case SP_ERR_BUSY: return "busy";
    case SP_ERR_PERMISSION: return "permission denied";
    case SP_ERR_UNSUPPORTED: return "unsupported";
    case SP_ERR_AUTH: return "authentication failed";
    case SP_ERR_STALE: return "source file changed";
    case SP_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

const char *sp_last_error(void) { return sp_detail; }

void sp__clear_error(void) { sp_detail[0] = '\0'; }

sp_status sp__fail(sp_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_detail, sizeof sp_detail, fmt, ap);
    va_end(ap);
    return st;
}

sp_status sp__status_of_errno(int err)
{
    switch (err) {
    case ENOSPC:
    case EDQUOT: return SP_ERR_DISK_FULL;
    case ENOENT: return SP_ERR_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS: return SP_ERR_PERMISSION;
    case ENOMEM: return SP_ERR_NOMEM;
    case ENAMETOOLONG: return SP_ERR_INVALID;
    default: return SP_ERR_IO;
    }
}

/* Append text to the detail message, truncating at its end. */
static void sp_detail_append(size_t at, const char *text)
{
    size_t n = strlen(text);
    if (at >= sizeof sp_detail - 1) return;
    if (n > sizeof sp_detail - 1 - at) n = sizeof sp_detail - 1 - at;
    memcpy(sp_detail + at, text, n);
    sp_detail[at + n] = '\0';
}

sp_status sp__fail_errno(sp_status st, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_detail, sizeof sp_detail, fmt, ap);
    va_end(ap);
    char ebuf[128];
    /* strerror_r (XSI form under _POSIX_C_SOURCE >= 200112L) is thread-safe. */
    if (strerror_r(err, ebuf, sizeof ebuf) != 0) snprintf(ebuf, sizeof ebuf, "errno %d", err);
    sp_detail_append(strlen(sp_detail), ": ");
    sp_detail_append(strlen(sp_detail), ebuf);
    return st != SP_OK ? st : sp__status_of_errno(err);
}

sp_status sp__wrap(sp_status st, const char *fmt, ...)
{
    char old[SP_DETAIL_CAP];
    memcpy(old, sp_detail, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_detail, sizeof sp_detail, fmt, ap);
    va_end(ap);
    sp_detail_append(strlen(sp_detail), ": ");
    sp_detail_append(strlen(sp_detail), old);
    return st;
}
