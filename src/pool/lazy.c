/* Registered source files: loading one through its loader, with the staleness check.
 * Registration itself lives in pool.c and touches no file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../store/frame.h"
#include "lazy.h"

static void sp_stamp_of(const struct stat *st, sp_stamp *s)
{
    s->size = (uint64_t)st->st_size;
    s->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    s->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
    s->ino = (uint64_t)st->st_ino;
    s->dev = (uint64_t)st->st_dev;
}

static int sp_stamp_same(const sp_stamp *a, const sp_stamp *b)
{
    return a->size == b->size && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns && a->ino == b->ino &&
           a->dev == b->dev;
}

/* A source read through the caller's methods: its version stands for the stamp's
 * times and identity. */
static sp_status sp_handle_load(const char *handle, const sp_source_methods *m, const char *what,
                                const sp_type *loader, sp_stamp *stamp, int known, int reload, void **data)
{
    void *file = NULL;
    uint64_t size = 0, version = 0;
    sp__fail(SP_OK, "%s", "");
    sp_status rc = m->open(m->ctx, handle, &file, &size, &version);
    if (rc != SP_OK) /* the methods may have said why, or not */
        return sp_last_error()[0] ? sp__wrap(rc, "loading %s: open", what)
                                  : sp__fail(rc, "loading %s: open: %s", what, sp_strerror(rc));
    sp_stamp now = {size, 0, 0, (int64_t)version, 0};
    if (known && !sp_stamp_same(stamp, &now) && !reload)
        rc = sp__fail(SP_ERR_STALE,
                      "loading %s: the source changed since it was loaded (size %llu -> %llu bytes, version %llu -> "
                      "%llu); register it again, or ask for reloads",
                      what, (unsigned long long)stamp->size, (unsigned long long)size,
                      (unsigned long long)stamp->mtime_ns, (unsigned long long)version);
    void *d = NULL;
    if (rc == SP_OK) {
        sp_reader r;
        sp__reader_begin_source(&r, m, file, size, what);
        r.arg = loader->arg;
        rc = loader->decode(&r, size, &d);
        if (rc == SP_OK && (rc = sp__reader_finish(&r)) != SP_OK) loader->free(d);
        sp__reader_cleanup(&r);
    }
    m->close(file);
    if (rc != SP_OK) return rc;
    *stamp = now;
    *data = d;
    return SP_OK;
}

sp_status sp__source_load(const char *path, const sp_source_methods *m, uint64_t serial, const sp_type *loader,
                          sp_stamp *stamp, int known, int reload, void **data)
{
    char what[600];
    snprintf(what, sizeof what, "object %llu (source %s)", (unsigned long long)serial, path);
    if (m) return sp_handle_load(path, m, what, loader, stamp, known, reload, data);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sp__fail_errno(SP_OK, errno, "loading %s: open", what);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        sp_status e = sp__fail_errno(SP_OK, errno, "loading %s: fstat", what);
        close(fd);
        return e;
    }
    sp_stamp now;
    sp_stamp_of(&st, &now);
    sp_status rc = SP_OK;
    if (!S_ISREG(st.st_mode))
        rc = sp__fail(SP_ERR_INVALID, "loading %s: not a regular file", what);
    else if (known && !sp_stamp_same(stamp, &now) && !reload)
        rc = sp__fail(SP_ERR_STALE,
                      "loading %s: the file changed since it was loaded (size %llu -> %llu bytes, modified %.3f s "
                      "later); register it again, or ask for reloads",
                      what, (unsigned long long)stamp->size, (unsigned long long)now.size,
                      (double)(now.mtime_ns - stamp->mtime_ns) / 1e9);
    void *d = NULL;
    if (rc == SP_OK) {
        sp_reader r;
        sp__reader_begin_raw(&r, fd, now.size, what);
        r.arg = loader->arg;
        rc = loader->decode(&r, now.size, &d);
        if (rc == SP_OK && (rc = sp__reader_finish(&r)) != SP_OK) loader->free(d);
        sp__reader_cleanup(&r);
    }
    /* Never a mix of old and new: a file written to during the read is refused. */
    if (rc == SP_OK) {
        sp_stamp after;
        if (fstat(fd, &st) != 0) rc = sp__fail_errno(SP_OK, errno, "loading %s: fstat", what);
        else {
            sp_stamp_of(&st, &after);
            if (!sp_stamp_same(&now, &after))
                rc = sp__fail(SP_ERR_STALE, "loading %s: the file changed while it was being read", what);
        }
        if (rc != SP_OK) loader->free(d);
    }
    close(fd);
    if (rc != SP_OK) return rc;
    *stamp = now;
    *data = d;
    return SP_OK;
}
