/* Registered source files: loading one through its loader, with the staleness check.
 * Registration itself lives in pool.c and touches no file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/alloc.h"
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

/* What differs between the stamp of the last load and now, for a message. A
 * handle's stamp holds its version where a file's holds the modification time. */
static void sp_stamp_change(const sp_stamp *was, const sp_stamp *now, int handle, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
#define SP_ADD(...)                                                                             \
    do {                                                                                       \
        if (n < cap) n += (size_t)snprintf(buf + n, cap - n, "%s", n ? ", " : "");              \
        if (n < cap) n += (size_t)snprintf(buf + n, cap - n, __VA_ARGS__);                      \
    } while (0)
    if (was->size != now->size)
        SP_ADD("size %llu -> %llu bytes", (unsigned long long)was->size, (unsigned long long)now->size);
    if (handle) {
        if (was->mtime_ns != now->mtime_ns)
            SP_ADD("version %llu -> %llu", (unsigned long long)was->mtime_ns, (unsigned long long)now->mtime_ns);
    } else {
        if (was->ino != now->ino || was->dev != now->dev) SP_ADD("replaced by another file");
        if (was->mtime_ns != now->mtime_ns) {
            double d = (double)(now->mtime_ns - was->mtime_ns) / 1e9;
            SP_ADD("modified %.3f s %s", d < 0 ? -d : d, d < 0 ? "earlier" : "later");
        } else if (was->ctime_ns != now->ctime_ns) {
            SP_ADD("its status changed (ctime)");
        }
    }
#undef SP_ADD
    if (!buf[0]) snprintf(buf, cap, "changed");
}

/* SP_ERR_STALE: "<verb> <what>: the source changed since <since> (<what changed>)". */
static sp_status sp_stale(const char *verb, const char *what, const char *since, const sp_stamp *was,
                          const sp_stamp *now, int handle)
{
    char why[160];
    sp_stamp_change(was, now, handle, why, sizeof why);
    return sp__fail(SP_ERR_STALE, "%s %s: the %s changed since %s (%s); register it again, or ask for reloads", verb,
                    what, handle ? "source" : "file", since, why);
}

/* Open a handle through the caller's methods; its version stands for the stamp's
 * times and identity. */
static sp_status sp_handle_open(const sp_source_methods *m, const char *handle, const char *verb, const char *what,
                                void **file, sp_stamp *now)
{
    uint64_t version = 0;
    memset(now, 0, sizeof *now);
    sp__fail(SP_OK, "%s", "");
    sp_status rc = m->open(m->ctx, handle, file, &now->size, &version);
    if (rc != SP_OK) /* the methods may have said why, or not */
        return sp_last_error()[0] ? sp__wrap(rc, "%s %s: open", verb, what)
                                  : sp__fail(rc, "%s %s: open: %s", verb, what, sp_strerror(rc));
    now->mtime_ns = (int64_t)version;
    return SP_OK;
}

/* A source read through the caller's methods. */
static sp_status sp_handle_load(const char *handle, const sp_source_methods *m, const char *what,
                                const sp_type *loader, sp_stamp *stamp, int known, int reload, void **data)
{
    void *file = NULL;
    sp_stamp now;
    SP_FORWARD(sp_handle_open(m, handle, "loading", what, &file, &now));
    sp_status rc = SP_OK;
    if (known && !sp_stamp_same(stamp, &now) && !reload)
        rc = sp_stale("loading", what, "it was loaded", stamp, &now, 1);
    void *d = NULL;
    if (rc == SP_OK) {
        sp_reader r;
        sp__reader_begin_source(&r, m, file, now.size, what);
        r.arg = loader->arg;
        rc = loader->decode(&r, now.size, &d);
        if (rc == SP_OK && (rc = sp__reader_finish(&r)) != SP_OK) loader->free(d);
        sp__reader_cleanup(&r);
    }
    m->close(file);
    /* Never a mix of old and new: the version asked for again after the read must be
     * the one the read began with (a second open: the methods have no other way). */
    if (rc == SP_OK) {
        void *again = NULL;
        sp_stamp after;
        if ((rc = sp_handle_open(m, handle, "loading", what, &again, &after)) == SP_OK) {
            m->close(again);
            if (!sp_stamp_same(&now, &after))
                rc = sp__fail(SP_ERR_STALE, "loading %s: the source changed while it was being read", what);
        }
        if (rc != SP_OK) loader->free(d);
    }
    if (rc != SP_OK) return rc;
    *stamp = now;
    *data = d;
    return SP_OK;
}

/* "object N (source PATH)", sized for the path: a message must name the file even
 * when its path is long. NULL when out of memory. */
static char *sp_what(uint64_t serial, const char *path)
{
    size_t cap = strlen(path) + 48;
    char *w = sp__malloc(cap);
    if (w) snprintf(w, cap, "object %llu (source %s)", (unsigned long long)serial, path);
    return w;
}

static sp_status sp_file_load(const char *path, const char *what, const sp_type *loader, sp_stamp *stamp, int known,
                              int reload, void **data);

sp_status sp__source_load(const char *path, const sp_source_methods *m, uint64_t serial, const sp_type *loader,
                          sp_stamp *stamp, int known, int reload, void **data)
{
    char *what = sp_what(serial, path);
    SP_RETURN_IF(!what, SP_ERR_NOMEM, "loading object %llu: out of memory", (unsigned long long)serial);
    sp_status st = m ? sp_handle_load(path, m, what, loader, stamp, known, reload, data)
                     : sp_file_load(path, what, loader, stamp, known, reload, data);
    sp__free(what);
    return st;
}

sp_status sp__source_check(const char *path, const sp_source_methods *m, uint64_t serial, const sp_stamp *stamp)
{
    char *what = sp_what(serial, path);
    SP_RETURN_IF(!what, SP_ERR_NOMEM, "checking object %llu: out of memory", (unsigned long long)serial);
    sp_stamp now = {0};
    sp_status rc = SP_OK;
    if (m) {
        void *file = NULL;
        if ((rc = sp_handle_open(m, path, "checking", what, &file, &now)) == SP_OK) m->close(file);
    } else {
        struct stat st;
        if (stat(path, &st) != 0) rc = sp__fail_errno(SP_OK, errno, "checking %s", what);
        else sp_stamp_of(&st, &now);
    }
    if (rc == SP_OK && !sp_stamp_same(stamp, &now))
        rc = sp_stale("checking", what, "its parsed copy was made", stamp, &now, m != NULL);
    sp__free(what);
    return rc;
}

static sp_status sp_file_load(const char *path, const char *what, const sp_type *loader, sp_stamp *stamp, int known,
                              int reload, void **data)
{
    /* Not blocking in open: a FIFO (or a device) would wait there for a writer; it
     * is refused below as not a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = sp__fail_errno(SP_OK, errno, "loading %s: fcntl", what);
    else if (known && !sp_stamp_same(stamp, &now) && !reload)
        rc = sp_stale("loading", what, "it was loaded", stamp, &now, 0);
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
