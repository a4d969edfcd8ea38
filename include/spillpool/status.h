/* spillpool: status codes and error details shared by every layer.
 *
 * Every call that can fail returns an sp_status. The values are fixed: new codes are
 * only ever appended. sp_strerror() names a code; sp_last_error() gives the detail of
 * the calling thread's most recent failure (which object, which path, which errno).
 */
#ifndef SPILLPOOL_STATUS_H
#define SPILLPOOL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_status {
    SP_OK = 0,
    SP_ERR_INVALID = 1,      /* a bad argument or configuration value */
    SP_ERR_NOMEM = 2,        /* an allocation failed */
    SP_ERR_TOO_BIG = 3,      /* the object is larger than the memory or the disk bound */
    SP_ERR_MEMORY_FULL = 4,  /* the memory bound is held by pinned objects: nothing to evict */
    SP_ERR_DISK_FULL = 5,    /* the disk bound is reached, or the file system said ENOSPC */
    SP_ERR_IO = 6,           /* a read, write, open or rename failed */
    SP_ERR_CORRUPT = 7,      /* a stored file failed its checksum or is malformed/truncated */
    SP_ERR_NOT_FOUND = 8,    /* a stored file is missing */
    SP_ERR_BAD_REF = 9,      /* the ref was released, or never came from this pool */
    SP_ERR_NOT_PINNED = 10,  /* unpin of an object that is not pinned */
    SP_ERR_BUSY = 11,        /* the object is pinned, or the pool still has work in flight */
    SP_ERR_PERMISSION = 12,  /* a file or directory has the wrong owner or mode, or EACCES */
    SP_ERR_UNSUPPORTED = 13, /* the request names a feature this build or store lacks */
    SP_ERR_AUTH = 14,        /* decryption failed: a wrong key, or encrypted data was altered */
    SP_ERR_STALE = 15,       /* a registered source file changed since it was loaded */
    SP_ERR_CANCELLED = 16    /* the task was cancelled before it ran */
} sp_status;

/* The name of a code, e.g. "disk bound reached". Never NULL. */
const char *sp_strerror(sp_status st);

/* The detail message of the calling thread's last failed call, e.g.
 * "spill of object 7 to /x/7.sp: write: No space left on device".
 * Thread-local; valid until the next failing call on this thread. "" if none. */
const char *sp_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
