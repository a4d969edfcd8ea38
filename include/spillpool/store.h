/* spillpool store layer: where spilled bytes live.
 *
 * A store is a table of functions plus a context, the way SQLite's VFS is: the
 * version field comes first and new members are only ever appended. The pool calls
 * a store without holding its lock, from many threads at once, so a store must be
 * thread-safe for calls on different files; calls on one file are serialized by the
 * pool.
 *
 * Names are plain file names chosen by the pool (e.g. "1a.sp") or by the caller (a
 * tag). Each name lives in one of two places: SP_PLACE_SESSION (deleted when the
 * store closes) or SP_PLACE_KEEP (outlives the store: retained objects and tags).
 */
#ifndef SPILLPOOL_STORE_H
#define SPILLPOOL_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_place { SP_PLACE_SESSION = 0, SP_PLACE_KEEP = 1 } sp_place;

/* What becomes of a spill file's pages in the kernel's page cache. KEEP (the
 * default) leaves them to the kernel: fast while the machine's spare memory holds
 * the spill. DROP writes each file through to the disk when it is finished and
 * drops its pages, and drops them again after a read back: a spilled object then
 * really leaves memory (a cgroup charges the page cache to the process too), a full
 * or failing disk is reported at the spill instead of later, and restores cost what
 * they cost once data outgrows memory. */
typedef enum sp_page_cache { SP_CACHE_KEEP = 0, SP_CACHE_DROP = 1 } sp_page_cache;
const char *sp_page_cache_name(sp_page_cache c); /* "keep", "drop" */
/* "keep" or "drop" (case-insensitive). Errors: SP_ERR_INVALID naming the text. */
sp_status sp_parse_page_cache(const char *text, sp_page_cache *out);

typedef struct sp_store_methods {
    int version; /* 1, or 2 with commit_new */
    /* Create (or truncate) a file for writing. Nothing is visible under `name` in
     * SP_PLACE_KEEP until commit succeeds. */
    sp_status (*create)(void *ctx, const char *name, sp_place place, void **file);
    /* Write all of buf. A short write is an error (SP_ERR_DISK_FULL for ENOSPC). */
    sp_status (*write)(void *file, const void *buf, size_t len);
    /* Finish a created file and close the handle. On failure the file is gone. */
    sp_status (*commit)(void *file);
    /* Close a created file and remove what was written. Cannot fail. */
    void (*abort)(void *file);
    /* Open a file for reading; *size receives its length in bytes. */
    sp_status (*open)(void *ctx, const char *name, sp_place place, void **file, uint64_t *size);
    /* Read up to len bytes; *got < len only at end of file. */
    sp_status (*read)(void *file, void *buf, size_t len, size_t *got);
    /* Close a handle from open. */
    void (*close)(void *file);
    /* Remove a file. A file already gone is SP_ERR_NOT_FOUND. */
    sp_status (*remove)(void *ctx, const char *name, sp_place place);
    /* Write into buf (cap bytes, NUL-terminated) where name lives, for messages. */
    void (*describe)(void *ctx, const char *name, sp_place place, char *buf, size_t cap);
    /* Version 2, may be NULL. As commit, for a file created in SP_PLACE_KEEP, but a
     * file already under that name stays: the commit fails with SP_ERR_BUSY and what
     * was written is removed, with no moment at which the other file is replaced.
     * The pool commits a tagged object's first file this way, so that it never takes
     * the place of a file it did not write; without it, the pool checks before it
     * writes, and a file created between that check and the commit is replaced. */
    sp_status (*commit_new)(void *file);
} sp_store_methods;

/* The built-in directory store. Opening it creates `dir` (mode 0700) if missing,
 * removes the session directories of pools whose process is gone, and creates a
 * session directory `dir/session-<pid>-<random>/` (mode 0700) held by a lock file.
 * Files are created mode 0600. Closing it removes the session directory.
 *
 * Errors: SP_ERR_INVALID (dir empty, too long, or an existing non-directory),
 * SP_ERR_PERMISSION (EACCES/EPERM,
 * or dir not writable), SP_ERR_IO (anything else), SP_ERR_NOMEM. */
sp_status sp_dir_store_open(const char *dir, void **ctx);
void sp_dir_store_close(void *ctx);
/* The session directory path (owned by the store). */
const char *sp_dir_store_session(void *ctx);
/* Set what happens to the page cache of files written and read from now on. */
void sp_dir_store_set_page_cache(void *ctx, sp_page_cache mode);
extern const sp_store_methods sp_dir_store_methods;

#ifdef __cplusplus
}
#endif
#endif
