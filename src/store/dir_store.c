/* The built-in store: files in a directory.
 *
 * Layout under the spill directory D:
 *   D/session-<pid>-<rand>.lock   held with flock() while the owning store is open
 *   D/session-<pid>-<rand>/       this store's session files (removed at close)
 *   D/<name>                      kept files (retained objects, tags)
 * A lock file that can be flock()ed belongs to a process that is gone (the kernel
 * drops flocks when a process dies), so its session directory is removed. The lock
 * file is created before the directory and removed after it, so a live session is
 * never taken for a dead one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/error.h"
#include "spillpool/store.h"

#define SP_PATH_CAP 4096

typedef struct sp_dir_store {
    char base[SP_PATH_CAP];
    char session[SP_PATH_CAP];
    char lock_path[SP_PATH_CAP];
    int lock_fd;
    _Atomic int drop_cache; /* an sp_page_cache */
} sp_dir_store;

typedef struct sp_dir_file {
    sp_dir_store *s;
    int fd;
    sp_place place;
    char path[SP_PATH_CAP]; /* final name */
    char tmp[SP_PATH_CAP];  /* kept files are written here, then renamed */
} sp_dir_file;

static int sp_name_ok(const char *name)
{
    return name && name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0 && strlen(name) < 256;
}

static sp_status sp_dir_path(sp_dir_store *s, const char *name, sp_place place, char *out)
{
    SP_RETURN_IF(!sp_name_ok(name), SP_ERR_INVALID, "store: '%s' is not a plain file name",
                 name ? name : "(null)");
    int n = snprintf(out, SP_PATH_CAP, "%s/%s", place == SP_PLACE_KEEP ? s->base : s->session, name);
    SP_RETURN_IF(n < 0 || n >= SP_PATH_CAP, SP_ERR_INVALID, "store: path for '%s' too long", name);
    return SP_OK;
}

/* mkdir -p with mode 0700 for what it creates. */
static sp_status sp_mkdirs(const char *dir)
{
    char p[SP_PATH_CAP];
    size_t n = strlen(dir);
    SP_RETURN_IF(n == 0 || n >= sizeof p, SP_ERR_INVALID, "spill directory '%s': empty or too long", dir);
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return sp__fail_errno(SP_OK, errno, "spill directory: mkdir %s", p);
        p[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0) return sp__fail_errno(SP_OK, errno, "spill directory: stat %s", dir);
    SP_RETURN_IF(!S_ISDIR(st.st_mode), SP_ERR_INVALID, "spill directory %s: not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return sp__fail_errno(SP_ERR_PERMISSION, errno, "spill directory %s: not writable", dir);
    return SP_OK;
}

/* Remove a flat directory of files (a session directory never has subdirectories). */
static void sp_remove_flat_dir(const char *path)
{
    /* Not through a symbolic link, and only a directory of ours: a link planted in a
     * shared spill directory under a session's name must not lead this to empty
     * another directory. */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    DIR *d = fstat(fd, &st) == 0 && st.st_uid == geteuid() ? fdopendir(fd) : NULL;
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    rmdir(path);
}

/* Remove the session directories whose owners are gone. */
static void sp_reap_dead_sessions(sp_dir_store *s)
{
    DIR *d = opendir(s->base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "session-", 8) != 0 || n < 6 || strcmp(e->d_name + n - 5, ".lock") != 0)
            continue;
        char lock[SP_PATH_CAP], dir[SP_PATH_CAP];
        if (snprintf(lock, sizeof lock, "%s/%s", s->base, e->d_name) >= (int)sizeof lock) continue;
        int fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && flock(fd, LOCK_EX | LOCK_NB) == 0) {
            snprintf(dir, sizeof dir, "%.*s", (int)(strlen(lock) - 5), lock);
            sp_remove_flat_dir(dir);
            unlink(lock);
        }
        close(fd);
    }
    closedir(d);
}

static uint64_t sp_random64(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) return r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
}

sp_status sp_dir_store_open(const char *dir, void **ctx)
{
    SP_RETURN_IF(dir == NULL || ctx == NULL, SP_ERR_INVALID, "directory store: NULL argument");
    SP_FORWARD(sp_mkdirs(dir));
    /* Kept absolute: a relative directory would move with the caller's chdir, and the
     * pool would lose its files (and leave its session behind at close). */
    char *abs = realpath(dir, NULL);
    if (!abs) return sp__fail_errno(SP_OK, errno, "spill directory %s", dir);
    sp_dir_store *s = sp__calloc(1, sizeof *s);
    if (s == NULL || strlen(abs) >= sizeof s->base) {
        sp_status st = s ? sp__fail(SP_ERR_INVALID, "spill directory '%s': path too long", abs)
                         : sp__fail(SP_ERR_NOMEM, "directory store: out of memory");
        sp__free(s);
        free(abs);
        return st;
    }
    snprintf(s->base, sizeof s->base, "%s", abs);
    free(abs);
    dir = s->base;
    sp_reap_dead_sessions(s);
    for (int attempt = 0;; attempt++) {
        char id[64];
        snprintf(id, sizeof id, "session-%ld-%016llx", (long)getpid(), (unsigned long long)sp_random64());
        if (snprintf(s->session, sizeof s->session, "%s/%s", dir, id) >= (int)sizeof s->session ||
            snprintf(s->lock_path, sizeof s->lock_path, "%s.lock", s->session) >= (int)sizeof s->lock_path) {
            sp__free(s);
            return sp__fail(SP_ERR_INVALID, "spill directory '%s': path too long", dir);
        }
        int fd = open(s->lock_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            int err = errno;
            if (err == EEXIST && attempt < 8) continue;
            sp__free(s);
            return sp__fail_errno(SP_OK, err, "spill directory: create %s", s->lock_path);
        }
        struct stat a, b;
        /* A reaper may have unlinked the file between open and flock: then retry. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &a) != 0 || stat(s->lock_path, &b) != 0 ||
            a.st_ino != b.st_ino) {
            close(fd);
            if (attempt < 8) continue;
            sp__free(s);
            return sp__fail(SP_ERR_IO, "spill directory %s: could not lock a session", dir);
        }
        if (mkdir(s->session, 0700) != 0) {
            int err = errno;
            unlink(s->lock_path);
            close(fd);
            sp__free(s);
            return sp__fail_errno(SP_OK, err, "spill directory: mkdir %s", s->session);
        }
        s->lock_fd = fd;
        break;
    }
    *ctx = s;
    return SP_OK;
}

void sp_dir_store_close(void *ctx)
{
    sp_dir_store *s = ctx;
    if (!s) return;
    sp_remove_flat_dir(s->session);
    unlink(s->lock_path);
    close(s->lock_fd);
    sp__free(s);
}

const char *sp_dir_store_session(void *ctx) { return ((sp_dir_store *)ctx)->session; }

void sp_dir_store_set_page_cache(void *ctx, sp_page_cache mode)
{
    ((sp_dir_store *)ctx)->drop_cache = mode == SP_CACHE_DROP;
}

const char *sp_page_cache_name(sp_page_cache c) { return c == SP_CACHE_DROP ? "drop" : "keep"; }

sp_status sp_parse_page_cache(const char *text, sp_page_cache *out)
{
    SP_RETURN_IF(text == NULL, SP_ERR_INVALID, "page cache: NULL");
    if (strcasecmp(text, "keep") == 0) *out = SP_CACHE_KEEP;
    else if (strcasecmp(text, "drop") == 0) *out = SP_CACHE_DROP;
    else return sp__fail(SP_ERR_INVALID, "page cache '%s': expected 'keep' or 'drop'", text);
    return SP_OK;
}

/* Advice only: a kernel that ignores it leaves the pages cached, nothing worse. */
static void sp_drop_pages(int fd) { (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); }

static sp_status sp_dir_create(void *ctx, const char *name, sp_place place, void **out)
{
    sp_dir_store *s = ctx;
    sp_dir_file *f = sp__malloc(sizeof *f);
    SP_RETURN_IF(f == NULL, SP_ERR_NOMEM, "create '%s': out of memory", name);
    f->s = s;
    f->place = place;
    sp_status st = sp_dir_path(s, name, place, f->path);
    if (st != SP_OK) {
        sp__free(f);
        return st;
    }
    const char *target = f->path;
    f->tmp[0] = '\0';
    if (place == SP_PLACE_KEEP) {
        /* Written in the session directory and renamed into place at commit, so a
         * crash never leaves a half-written kept file. */
        if (snprintf(f->tmp, sizeof f->tmp, "%s/keep-%016llx.tmp", s->session,
                     (unsigned long long)sp_random64()) >= (int)sizeof f->tmp) {
            sp__free(f);
            return sp__fail(SP_ERR_INVALID, "create '%s': path too long", name);
        }
        target = f->tmp;
    }
    f->fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        st = sp__fail_errno(SP_OK, errno, "create %s", target);
        sp__free(f);
        return st == SP_ERR_NOT_FOUND ? SP_ERR_IO : st;
    }
    *out = f;
    return SP_OK;
}

static sp_status sp_dir_write(void *file, const void *buf, size_t len)
{
    sp_dir_file *f = file;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(f->fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sp__fail_errno(SP_OK, errno, "write %s", f->tmp[0] ? f->tmp : f->path);
        }
        if (n == 0) return sp__fail(SP_ERR_IO, "write %s: no progress", f->path);
        p += n;
        len -= (size_t)n;
    }
    return SP_OK;
}

static void sp_dir_abort(void *file)
{
    sp_dir_file *f = file;
    close(f->fd);
    unlink(f->tmp[0] ? f->tmp : f->path);
    sp__free(f);
}

/* Move a kept file from its temporary name to its final one. noreplace: a file
 * already there stays and the move fails with SP_ERR_BUSY. link() does that
 * atomically (it never replaces); on a file system without hard links the check
 * and the rename are two steps. */
static sp_status sp_dir_place(sp_dir_file *f, int noreplace)
{
    if (noreplace) {
        if (link(f->tmp, f->path) == 0) {
            unlink(f->tmp);
            return SP_OK;
        }
        int e = errno;
        struct stat st;
        if (e == EEXIST || lstat(f->path, &st) == 0)
            return sp__fail(SP_ERR_BUSY, "commit %s: a file is already there", f->path);
        if (e != EPERM && e != EOPNOTSUPP && e != EMLINK && e != ENOSYS)
            return sp__fail_errno(SP_OK, e, "link %s to %s", f->tmp, f->path);
    }
    if (rename(f->tmp, f->path) != 0) return sp__fail_errno(SP_OK, errno, "rename %s to %s", f->tmp, f->path);
    return SP_OK;
}

static sp_status sp_dir_finish(sp_dir_file *f, int noreplace)
{
    sp_status st = SP_OK;
    /* Kept files must survive a crash; session files die with the session anyway,
     * but reach the disk first when their pages are to be dropped (only clean pages
     * can be). A write-back error (a full or failing disk) fails the spill here. */
    int drop = f->s->drop_cache;
    if (f->place == SP_PLACE_KEEP && fsync(f->fd) != 0) st = sp__fail_errno(SP_OK, errno, "fsync %s", f->tmp);
    else if (f->place != SP_PLACE_KEEP && drop && fdatasync(f->fd) != 0)
        st = sp__fail_errno(SP_OK, errno, "write back %s", f->path);
    if (st == SP_OK && drop) sp_drop_pages(f->fd);
    if (close(f->fd) != 0 && st == SP_OK) st = sp__fail_errno(SP_OK, errno, "close %s", f->path); /* always closed */
    f->fd = -1;
    if (st == SP_OK && f->tmp[0]) st = sp_dir_place(f, noreplace);
    if (st != SP_OK) unlink(f->tmp[0] ? f->tmp : f->path);
    sp__free(f);
    return st;
}

static sp_status sp_dir_commit(void *file) { return sp_dir_finish(file, 0); }
static sp_status sp_dir_commit_new(void *file) { return sp_dir_finish(file, 1); }

static sp_status sp_dir_open(void *ctx, const char *name, sp_place place, void **out, uint64_t *size)
{
    sp_dir_store *s = ctx;
    sp_dir_file *f = sp__malloc(sizeof *f);
    SP_RETURN_IF(f == NULL, SP_ERR_NOMEM, "open '%s': out of memory", name);
    f->s = s;
    f->place = place;
    f->tmp[0] = '\0';
    sp_status st = sp_dir_path(s, name, place, f->path);
    if (st == SP_OK) {
        /* Non-blocking, so a FIFO put in a file's place cannot hang the open; then only
         * a regular file is read. */
        f->fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat sb;
        if (f->fd < 0) st = sp__fail_errno(SP_OK, errno, "open %s", f->path);
        else if (fstat(f->fd, &sb) != 0) {
            st = sp__fail_errno(SP_OK, errno, "stat %s", f->path);
            close(f->fd);
        } else if (!S_ISREG(sb.st_mode)) {
            st = sp__fail(SP_ERR_CORRUPT, "open %s: not a regular file", f->path);
            close(f->fd);
        } else {
            *size = (uint64_t)sb.st_size;
            int fl = fcntl(f->fd, F_GETFL);
            if (fl >= 0) (void)fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
        }
    }
    if (st != SP_OK) {
        sp__free(f);
        return st;
    }
    *out = f;
    return SP_OK;
}

static sp_status sp_dir_read(void *file, void *buf, size_t len, size_t *got)
{
    sp_dir_file *f = file;
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(f->fd, (char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sp__fail_errno(SP_ERR_IO, errno, "read %s", f->path);
        }
        if (n == 0) break;
        done += (size_t)n;
    }
    *got = done;
    return SP_OK;
}

static void sp_dir_close(void *file)
{
    sp_dir_file *f = file;
    if (f->s->drop_cache) sp_drop_pages(f->fd); /* the object is in memory now */
    close(f->fd);
    sp__free(f);
}

static sp_status sp_dir_remove(void *ctx, const char *name, sp_place place)
{
    char path[SP_PATH_CAP];
    SP_FORWARD(sp_dir_path(ctx, name, place, path));
    if (unlink(path) != 0) return sp__fail_errno(SP_OK, errno, "remove %s", path);
    return SP_OK;
}

static void sp_dir_describe(void *ctx, const char *name, sp_place place, char *buf, size_t cap)
{
    sp_dir_store *s = ctx;
    snprintf(buf, cap, "%s/%s", place == SP_PLACE_KEEP ? s->base : s->session, name);
}

const sp_store_methods sp_dir_store_methods = {
    .version = 2,
    .create = sp_dir_create,
    .write = sp_dir_write,
    .commit = sp_dir_commit,
    .abort = sp_dir_abort,
    .open = sp_dir_open,
    .read = sp_dir_read,
    .close = sp_dir_close,
    .remove = sp_dir_remove,
    .describe = sp_dir_describe,
    .commit_new = sp_dir_commit_new,
};
