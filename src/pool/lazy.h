/* Registered source files (sp_put_lazy): what is remembered of a source, and its load. */
#ifndef SP_POOL_LAZY_H
#define SP_POOL_LAZY_H

#include <stdint.h>
#include "../common/error.h"
#include "spillpool/pool.h"

/* Size, times and identity of a source at its last load: any change means stale. */
typedef struct sp_stamp {
    uint64_t size, ino, dev;
    int64_t mtime_ns, ctime_ns;
} sp_stamp;

/* Open path (through m when not NULL: its version stands for the times and
 * identity), check it against stamp (when known), run the loader over its bytes,
 * and check that nothing changed meanwhile; on success stamp is updated. Errors:
 * SP_ERR_NOT_FOUND / SP_ERR_PERMISSION / SP_ERR_IO from the file, SP_ERR_STALE (changed
 * since the last load and reload not asked, or changed during the read), the
 * loader's own errors. Nothing is returned on error. */
SP_HIDDEN sp_status sp__source_load(const char *path, const sp_source_methods *m, uint64_t serial,
                                    const sp_type *loader, sp_stamp *stamp, int known, int reload, void **data);
/* Is the source as it was at the last load (stamp)? Without reading it: a stat, or
 * the methods' open and close. For a parsed copy kept in the spill directory.
 * Errors: SP_ERR_STALE naming what changed, the file's or the methods' errors. */
SP_HIDDEN sp_status sp__source_check(const char *path, const sp_source_methods *m, uint64_t serial,
                                     const sp_stamp *stamp);

#endif
