/* The spill directory as the directory store and the pool use it: where sessions
 * live and with which modes, what close and crash recovery remove, what a live
 * session and retained or tagged files keep, and how a bad directory is reported.
 * Every check looks at the file system itself (lstat, readdir, flock). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define SD_MEM 1000
#define SD_DISK 100000
#define SD_PATH 4096

typedef struct {
    char *dir;
    sp_pool *p[2];
    pid_t child;  /* a forked child still to be reaped, or -1 */
    int to_child; /* write end of the pipe a blocked child waits on, or -1 */
    mode_t old_umask;
} fix;

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->dir = t_tmpdir();
    f->child = -1;
    f->to_child = -1;
    /* No umask: the modes on disk are then exactly the modes the library asks for. */
    f->old_umask = umask(0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    if (f->to_child >= 0) close(f->to_child);
    if (f->child > 0) {
        kill(f->child, SIGKILL);
        waitpid(f->child, NULL, 0);
    }
    for (int i = 0; i < 2; i++)
        if (f->p[i]) t_ok(sp_pool_close(f->p[i]));
    umask(f->old_umask);
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* ---- file-system helpers ---- */

static void sd_join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, SD_PATH, "%s/%s", a, b);
    if (n < 0 || n >= SD_PATH) fail_msg("path %s/%s too long", a, b);
}

static void sd_copy(char *out, const char *s)
{
    assert_non_null(s);
    int n = snprintf(out, SD_PATH, "%s", s);
    if (n < 0 || n >= SD_PATH) fail_msg("path %s too long", s);
}

static void sd_lock_of(char *out, const char *session)
{
    int n = snprintf(out, SD_PATH, "%s.lock", session);
    if (n < 0 || n >= SD_PATH) fail_msg("path %s.lock too long", session);
}

static int sd_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void sd_assert_gone(const char *path)
{
    if (sd_exists(path)) fail_msg("%s still exists", path);
}

/* Assert path is a directory (want_dir) or a regular file, with permission bits mode. */
static void sd_assert_node(const char *path, int want_dir, int mode)
{
    struct stat st;
    if (lstat(path, &st) != 0) fail_msg("lstat %s: %s", path, strerror(errno));
    if (want_dir && !S_ISDIR(st.st_mode))
        fail_msg("%s: not a directory (mode %o)", path, (unsigned)st.st_mode);
    if (!want_dir && !S_ISREG(st.st_mode))
        fail_msg("%s: not a regular file (mode %o)", path, (unsigned)st.st_mode);
    if (mode >= 0 && (int)(st.st_mode & 07777) != mode)
        fail_msg("%s: mode %04o, want %04o", path, (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

/* Entries of dir other than . and .., their names joined into names (may be NULL). */
static int sd_entries(const char *dir, char *names, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) fail_msg("opendir %s: %s", dir, strerror(errno));
    int n = 0;
    size_t at = 0;
    if (names && cap) names[0] = '\0';
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
        if (names && at < cap) {
            int w = snprintf(names + at, cap - at, "%s%s", at ? " " : "", e->d_name);
            if (w > 0) at += (size_t)w;
        }
    }
    closedir(d);
    return n;
}

static void sd_assert_entries(const char *dir, int want)
{
    char names[2048];
    int n = sd_entries(dir, names, sizeof names);
    if (n != want) fail_msg("%s holds %d entries, want %d: [%s]", dir, n, want, names);
}

/* 1 if some other open file description holds a flock on path, 0 if not. */
static int sd_lock_held(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
    int held = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) fail_msg("flock %s: %s", path, strerror(errno));
        held = 1;
    }
    close(fd); /* drops our lock, if we got it */
    return held;
}

/* path must be dir + "/" + a plain name. */
static void sd_assert_directly_in(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || path[n] != '/' || path[n + 1] == '\0' || strchr(path + n + 1, '/'))
        fail_msg("%s is not directly inside %s", path, dir);
}

/* session must be dir/session-<pid>-<hex>. */
static void sd_assert_session_name(const char *session, const char *dir, long pid)
{
    sd_assert_directly_in(session, dir);
    const char *name = session + strlen(dir) + 1;
    char want[64];
    snprintf(want, sizeof want, "session-%ld-", pid);
    size_t w = strlen(want);
    if (strncmp(name, want, w) != 0) fail_msg("session name %s does not start with %s", name, want);
    const char *hex = name + w;
    size_t h = strlen(hex);
    if (h == 0 || strspn(hex, "0123456789abcdefABCDEF") != h)
        fail_msg("session name %s: '%s' is not a hex number", name, hex);
}

/* ---- pool helpers ---- */

/* The config t_pool uses, without cmocka (a forked child may call this). */
static sp_status sd_open(sp_pool **p, const char *dir)
{
    sp_config c;
    t_config(&c, dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    *p = NULL;
    return sp_pool_open(p, &c);
}

static sp_ref sd_put_opt(sp_pool *p, size_t len, unsigned seed, const sp_put_options *opt)
{
    sp_bytes *b = sp_bytes_new(len);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++) b->data[i] = (unsigned char)(seed + i * 31);
    sp_ref r = SP_REF_NULL;
    t_ok(sp_put(p, b, &sp_bytes_type, opt, &r));
    return r;
}

static void sd_path_of(sp_pool *p, sp_ref r, char *out)
{
    sp_ref_info info;
    t_ok(sp_ref_query(p, r, &info));
    sd_copy(out, info.path);
}

/* Two 600-byte puts under a 1000-byte bound: the first is spilled. Returns it. */
static sp_ref sd_spill(sp_pool *p, unsigned seed, sp_ref *second)
{
    sp_ref a = t_put(p, 600, seed);
    sp_ref b = t_put(p, 600, seed + 1);
    assert_int_equal(t_tier(p, a), SP_TIER_DISK);
    assert_int_equal(t_tier(p, b), SP_TIER_MEMORY);
    if (second) *second = b;
    return a;
}

/* ---- a forked child holding a pool (no cmocka in there) ---- */

static int sd_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int sd_child_put(sp_pool *p, sp_ref *r)
{
    sp_bytes *b = sp_bytes_new(600);
    if (!b) return -1;
    memset(b->data, 0x5a, 600);
    if (sp_put(p, b, &sp_bytes_type, NULL, r) != SP_OK) {
        sp_bytes_free(b);
        return -1;
    }
    return 0;
}

/* Open a pool on dir, spill one object, write the session path (NUL-terminated) to
 * report_fd. Then, with wait_fd < 0, exit without closing the pool (a crash);
 * otherwise wait until wait_fd has a byte or is closed, close the pool and exit. */
static void sd_child(const char *dir, int report_fd, int wait_fd)
{
    alarm(60); /* never outlive a stuck parent for long */
    sp_pool *p;
    if (sd_open(&p, dir) != SP_OK) _exit(10);
    sp_ref a, b;
    if (sd_child_put(p, &a) != 0 || sd_child_put(p, &b) != 0) _exit(11);
    sp_ref_info info;
    if (sp_ref_query(p, a, &info) != SP_OK || info.tier != SP_TIER_DISK) _exit(12);
    const char *s = sp_pool_session_dir(p);
    if (!s) _exit(13);
    if (sd_write_all(report_fd, s, strlen(s) + 1) != 0) _exit(14);
    close(report_fd);
    if (wait_fd < 0) _exit(0); /* simulated crash: the pool is never closed */
    char c;
    ssize_t n;
    do n = read(wait_fd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (sp_pool_close(p) != SP_OK) _exit(15);
    _exit(0);
}

static void sd_wait_child(fix *f)
{
    int status = 0;
    pid_t w;
    do w = waitpid(f->child, &status, 0);
    while (w < 0 && errno == EINTR);
    pid_t pid = f->child;
    f->child = -1;
    if (w != pid) fail_msg("waitpid %ld: %s", (long)pid, strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child %ld: %s %d", (long)pid, WIFEXITED(status) ? "exit code" : "killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* Fork a child running sd_child; blocking: it waits on f->to_child before closing.
 * Returns its pid; session receives the child's session directory. */
static pid_t sd_fork_child(fix *f, int blocking, char *session)
{
    int rep[2], hold[2] = {-1, -1};
    assert_int_equal(pipe(rep), 0);
    if (blocking) assert_int_equal(pipe(hold), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        close(rep[0]);
        if (blocking) close(hold[1]);
        sd_child(f->dir, rep[1], blocking ? hold[0] : -1);
        _exit(99); /* not reached */
    }
    f->child = pid;
    close(rep[1]);
    if (blocking) {
        close(hold[0]);
        f->to_child = hold[1];
    }
    size_t got = 0;
    int done = 0;
    while (got < SD_PATH) {
        ssize_t n = read(rep[0], session + got, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (session[got++] == '\0') {
            done = 1;
            break;
        }
    }
    close(rep[0]);
    if (!done) {
        /* The child failed before reporting: its exit code says where. */
        if (f->to_child >= 0) {
            close(f->to_child);
            f->to_child = -1;
        }
        sd_wait_child(f);
        fail_msg("child %ld did not report a session directory", (long)pid);
    }
    return pid;
}

/* ---- 1. the session directory, its lock and a spilled file ---- */

static void session_dir_lock_file_and_spill_file_have_their_names_and_modes(void **state)
{
    fix *f = *state;
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    char session[SD_PATH], lock[SD_PATH], file[SD_PATH];
    sd_copy(session, sp_pool_session_dir(f->p[0]));
    sd_lock_of(lock, session);

    sd_assert_session_name(session, f->dir, (long)getpid());
    sd_assert_node(session, 1, 0700);
    sd_assert_node(lock, 0, 0600);
    assert_int_equal(sd_lock_held(lock), 1);
    /* The base directory holds the session and its lock, nothing else. */
    sd_assert_entries(f->dir, 2);
    sd_assert_entries(session, 0);

    sp_ref b;
    sp_ref a = sd_spill(f->p[0], 1, &b);
    sd_path_of(f->p[0], a, file);
    sd_assert_directly_in(file, session);
    sd_assert_node(file, 0, 0600);
    struct stat st;
    assert_int_equal(lstat(file, &st), 0);
    assert_true(st.st_size >= 600);
    sd_assert_entries(session, 1);
    t_check(f->p[0], a, 600, 1);
    t_ok(sp_release(f->p[0], a));
    t_ok(sp_release(f->p[0], b));
}

/* ---- 2. mkdir -p ---- */

static void missing_nested_dir_is_created_with_mode_0700(void **state)
{
    fix *f = *state;
    char a[SD_PATH], ab[SD_PATH], abc[SD_PATH];
    sd_join(a, f->dir, "a");
    sd_join(ab, a, "b");
    sd_join(abc, ab, "c");
    sd_assert_gone(a);
    f->p[0] = t_pool(abc, SD_MEM, SD_DISK, SP_POLICY_LRU);
    sd_assert_node(a, 1, 0700);
    sd_assert_node(ab, 1, 0700);
    sd_assert_node(abc, 1, 0700);
    const char *session = sp_pool_session_dir(f->p[0]);
    assert_non_null(session);
    sd_assert_session_name(session, abc, (long)getpid());
    sd_assert_node(session, 1, 0700);

    /* And the pool spills there. */
    char file[SD_PATH];
    sp_ref b;
    sp_ref x = sd_spill(f->p[0], 3, &b);
    sd_path_of(f->p[0], x, file);
    sd_assert_directly_in(file, session);
    sd_assert_node(file, 0, 0600);
    t_ok(sp_pool_close(f->p[0]));
    f->p[0] = NULL;
    sd_assert_entries(abc, 0);
}

/* ---- 3. close removes the session ---- */

static void close_removes_session_and_lock_even_with_live_spilled_objects(void **state)
{
    fix *f = *state;
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    char session[SD_PATH], lock[SD_PATH], file_a[SD_PATH], file_c[SD_PATH];
    sd_copy(session, sp_pool_session_dir(f->p[0]));
    sd_lock_of(lock, session);

    sp_ref b;
    sp_ref a = sd_spill(f->p[0], 1, &b);
    /* A tagged object (not retained) spilled too: its file is in the base dir. */
    sp_put_options tag = {.tag = "alive.bin", .retain = 0};
    sp_ref c = sd_put_opt(f->p[0], 600, 5, &tag); /* evicts b */
    sp_ref d = t_put(f->p[0], 600, 6);           /* evicts c */
    (void)d;
    assert_int_equal(t_tier(f->p[0], b), SP_TIER_DISK);
    assert_int_equal(t_tier(f->p[0], c), SP_TIER_DISK);
    sd_path_of(f->p[0], a, file_a);
    sd_path_of(f->p[0], c, file_c);
    sd_assert_node(file_a, 0, 0600);
    sd_assert_node(file_c, 0, 0600);
    sd_assert_directly_in(file_c, f->dir);
    sd_assert_entries(session, 2);     /* a and b */
    sd_assert_entries(f->dir, 3);      /* session, lock, alive.bin */

    /* Close with all four objects still referenced. */
    t_ok(sp_pool_close(f->p[0]));
    f->p[0] = NULL;
    sd_assert_gone(session);
    sd_assert_gone(lock);
    sd_assert_gone(file_c);
    sd_assert_entries(f->dir, 0);
}

/* ---- 4. a crashed process's session is reaped ---- */

static void crashed_session_is_removed_by_the_next_pool(void **state)
{
    fix *f = *state;
    char child_session[SD_PATH], child_lock[SD_PATH];
    pid_t pid = sd_fork_child(f, 0, child_session);
    sd_wait_child(f);
    sd_lock_of(child_lock, child_session);

    /* The crash left the session behind, spill file and lock file included. */
    sd_assert_session_name(child_session, f->dir, (long)pid);
    sd_assert_node(child_session, 1, 0700);
    sd_assert_entries(child_session, 1);
    sd_assert_node(child_lock, 0, 0600);
    assert_int_equal(sd_lock_held(child_lock), 0); /* the kernel dropped the dead process's lock */
    sd_assert_entries(f->dir, 2);

    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    sd_assert_gone(child_session);
    sd_assert_gone(child_lock);
    const char *mine = sp_pool_session_dir(f->p[0]);
    assert_non_null(mine);
    assert_string_not_equal(mine, child_session);
    sd_assert_session_name(mine, f->dir, (long)getpid());
    sd_assert_node(mine, 1, 0700);
    char my_lock[SD_PATH];
    sd_lock_of(my_lock, mine);
    sd_assert_node(my_lock, 0, 0600);
    assert_int_equal(sd_lock_held(my_lock), 1);
    sd_assert_entries(f->dir, 2);
}

/* A symbolic link planted under a dead session's name (in a spill directory others
 * can write, say) is not followed: the directory it points to keeps its files. */
static void a_link_in_a_session_s_place_is_not_followed(void **state)
{
    fix *f = *state;
    char spill[SD_PATH], other[SD_PATH], link[SD_PATH], lock[SD_PATH], keep[SD_PATH];
    sd_join(spill, f->dir, "spill");
    sd_join(other, f->dir, "other");
    assert_int_equal(mkdir(spill, 0700), 0);
    assert_int_equal(mkdir(other, 0700), 0);
    sd_join(keep, other, "precious.txt");
    t_spew(keep, (const unsigned char *)"mine\n", 5);
    sd_join(link, spill, "session-1-0123456789abcdef");
    assert_int_equal(symlink(other, link), 0);
    sd_lock_of(lock, link);
    t_spew(lock, (const unsigned char *)"", 0); /* a lock nobody holds: the session looks dead */
    f->p[0] = t_pool(spill, SD_MEM, SD_DISK, SP_POLICY_LRU);
    size_t n;
    unsigned char *back = t_slurp(keep, &n);
    assert_int_equal(n, 5);
    free(back);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0); /* the link itself is left alone too */
    assert_true(S_ISLNK(st.st_mode));
}

/* A dead-looking session directory, or lock file, of another user is not this
 * user's to reap (checked where the test can make one: as root). */
static void another_user_s_session_is_not_reaped(void **state)
{
    fix *f = *state;
    if (geteuid() != 0) skip();
    for (int which = 0; which < 2; which++) { /* the directory, then the lock file, not ours */
        char spill[SD_PATH], sess[SD_PATH], lock[SD_PATH], inside[SD_PATH];
        sd_join(spill, f->dir, which ? "spill-lock" : "spill-dir");
        assert_int_equal(mkdir(spill, 0700), 0);
        sd_join(sess, spill, "session-1-0123456789abcdef");
        assert_int_equal(mkdir(sess, 0700), 0);
        sd_join(inside, sess, "1.sp");
        t_spew(inside, (const unsigned char *)"x", 1);
        sd_lock_of(lock, sess);
        t_spew(lock, (const unsigned char *)"", 0);
        assert_int_equal(chown(which ? lock : sess, 65534, 65534), 0);
        sp_pool *p = t_pool(spill, SD_MEM, SD_DISK, SP_POLICY_LRU);
        struct stat st;
        assert_int_equal(stat(inside, &st), 0);
        t_ok(sp_pool_close(p));
    }
}

/* ---- 5. a live process's session is not reaped ---- */

static void live_session_of_another_process_is_kept(void **state)
{
    fix *f = *state;
    char child_session[SD_PATH], child_lock[SD_PATH];
    pid_t pid = sd_fork_child(f, 1, child_session);
    sd_lock_of(child_lock, child_session);
    sd_assert_session_name(child_session, f->dir, (long)pid);
    sd_assert_node(child_session, 1, 0700);
    sd_assert_entries(child_session, 1);
    assert_int_equal(sd_lock_held(child_lock), 1);

    /* Opening a pool reaps dead sessions only. */
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    sd_assert_node(child_session, 1, 0700);
    sd_assert_entries(child_session, 1);
    sd_assert_node(child_lock, 0, 0600);
    assert_int_equal(sd_lock_held(child_lock), 1);
    char mine[SD_PATH];
    sd_copy(mine, sp_pool_session_dir(f->p[0]));
    assert_string_not_equal(mine, child_session);
    sd_assert_entries(f->dir, 4);
    sp_ref b;
    sp_ref a = sd_spill(f->p[0], 7, &b);

    /* The child closes its pool and exits normally. */
    assert_int_equal(write(f->to_child, "x", 1), 1);
    close(f->to_child);
    f->to_child = -1;
    sd_wait_child(f);
    sd_assert_gone(child_session);
    sd_assert_gone(child_lock);
    sd_assert_node(mine, 1, 0700);
    sd_assert_entries(mine, 1);
    sd_assert_entries(f->dir, 2);
    t_check(f->p[0], a, 600, 7);
    t_ok(sp_release(f->p[0], a));
    t_ok(sp_release(f->p[0], b));
}

/* ---- 6. retained and tagged files ---- */

static void retained_and_tagged_files_survive_release_close_and_reaping(void **state)
{
    fix *f = *state;
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    char session[SD_PATH];
    sd_copy(session, sp_pool_session_dir(f->p[0]));

    /* Retained, with and without a tag: released while in memory. */
    sp_put_options keep = {.tag = NULL, .retain = 1};
    sp_put_options keep_tag = {.tag = "mydata.bin", .retain = 1};
    char file_r[SD_PATH], file_rt[SD_PATH], file_t[SD_PATH], file_plain[SD_PATH], file_live[SD_PATH];
    char want[SD_PATH];
    sp_ref r = sd_put_opt(f->p[0], 100, 1, &keep);
    sp_ref rt = sd_put_opt(f->p[0], 100, 2, &keep_tag);
    sd_path_of(f->p[0], r, file_r);
    sd_path_of(f->p[0], rt, file_rt);
    sd_assert_directly_in(file_r, f->dir); /* kept files live in the base dir */
    sd_join(want, f->dir, "mydata.bin");
    assert_string_equal(file_rt, want);
    t_ok(sp_release(f->p[0], r));
    t_ok(sp_release(f->p[0], rt));
    sd_assert_node(file_r, 0, 0600);
    sd_assert_node(file_rt, 0, 0600);
    struct stat st_r, st_rt;
    assert_int_equal(lstat(file_r, &st_r), 0);
    assert_int_equal(lstat(file_rt, &st_rt), 0);
    assert_true(st_r.st_size >= 100);
    assert_true(st_rt.st_size >= 100);

    /* A tag alone names the file (in the base dir) but does not keep it. */
    sp_put_options tag_only = {.tag = "tagonly.bin", .retain = 0};
    sp_ref t = sd_put_opt(f->p[0], 600, 3, &tag_only);
    sp_ref plain = t_put(f->p[0], 600, 4); /* evicts t */
    assert_int_equal(t_tier(f->p[0], t), SP_TIER_DISK);
    sd_path_of(f->p[0], t, file_t);
    sd_join(want, f->dir, "tagonly.bin");
    assert_string_equal(file_t, want);
    sd_assert_node(file_t, 0, 0600);
    sp_ref other = t_put(f->p[0], 600, 5); /* evicts plain */
    assert_int_equal(t_tier(f->p[0], plain), SP_TIER_DISK);
    sd_path_of(f->p[0], plain, file_plain);
    sd_assert_directly_in(file_plain, session);
    sd_assert_node(file_plain, 0, 0600);
    t_ok(sp_release(f->p[0], t));
    sd_assert_gone(file_t);
    t_ok(sp_release(f->p[0], plain));
    sd_assert_gone(file_plain);
    t_ok(sp_release(f->p[0], other));

    /* A retained object never released: close writes its file. */
    sp_ref live = sd_put_opt(f->p[0], 100, 6, &keep);
    sd_path_of(f->p[0], live, file_live);
    sd_assert_directly_in(file_live, f->dir);
    t_ok(sp_pool_close(f->p[0]));
    f->p[0] = NULL;
    sd_assert_gone(session);
    sd_assert_node(file_r, 0, 0600);
    sd_assert_node(file_rt, 0, 0600);
    sd_assert_node(file_live, 0, 0600);
    sd_assert_entries(f->dir, 3);

    /* A new pool reaps sessions, not kept files. */
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    struct stat st2;
    assert_int_equal(lstat(file_r, &st2), 0);
    assert_int_equal(st2.st_size, st_r.st_size);
    assert_int_equal(lstat(file_rt, &st2), 0);
    assert_int_equal(st2.st_size, st_rt.st_size);
    sd_assert_node(file_live, 0, 0600);
    t_ok(sp_pool_close(f->p[0]));
    f->p[0] = NULL;
    sd_assert_node(file_r, 0, 0600);
    sd_assert_node(file_rt, 0, 0600);
    sd_assert_node(file_live, 0, 0600);
    sd_assert_entries(f->dir, 3);
}

/* ---- 7. two pools in one process ---- */

static void two_pools_in_one_process_have_separate_sessions(void **state)
{
    fix *f = *state;
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    f->p[1] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    char s0[SD_PATH], s1[SD_PATH], l0[SD_PATH], l1[SD_PATH], file0[SD_PATH], file1[SD_PATH];
    sd_copy(s0, sp_pool_session_dir(f->p[0]));
    sd_copy(s1, sp_pool_session_dir(f->p[1]));
    assert_string_not_equal(s0, s1);
    sd_lock_of(l0, s0);
    sd_lock_of(l1, s1);
    sd_assert_node(s0, 1, 0700);
    sd_assert_node(s1, 1, 0700);
    assert_int_equal(sd_lock_held(l0), 1);
    assert_int_equal(sd_lock_held(l1), 1);

    sp_ref b0, b1;
    sp_ref a0 = sd_spill(f->p[0], 10, &b0);
    sp_ref a1 = sd_spill(f->p[1], 20, &b1);
    (void)b0;
    sd_path_of(f->p[0], a0, file0);
    sd_path_of(f->p[1], a1, file1);
    sd_assert_directly_in(file0, s0);
    sd_assert_directly_in(file1, s1);
    sd_assert_node(file0, 0, 0600);
    sd_assert_node(file1, 0, 0600);

    t_ok(sp_pool_close(f->p[0]));
    f->p[0] = NULL;
    sd_assert_gone(s0);
    sd_assert_gone(l0);
    sd_assert_node(s1, 1, 0700);
    sd_assert_node(file1, 0, 0600);
    assert_int_equal(sd_lock_held(l1), 1);
    sd_assert_entries(f->dir, 2);

    /* Another pool opening (and reaping) does not take the live one's session. */
    f->p[0] = t_pool(f->dir, SD_MEM, SD_DISK, SP_POLICY_LRU);
    sd_assert_node(s1, 1, 0700);
    sd_assert_node(file1, 0, 0600);

    /* The second pool still works: the spilled object comes back intact. */
    t_check(f->p[1], a1, 600, 20);
    t_check(f->p[1], b1, 600, 21);
    t_ok(sp_release(f->p[1], a1));
    t_ok(sp_release(f->p[1], b1));
    t_ok(sp_pool_close(f->p[1]));
    f->p[1] = NULL;
    sd_assert_gone(s1);
    sd_assert_gone(l1);
}

/* ---- 8. directories that cannot be used ---- */

static void dir_under_a_regular_file_is_an_io_error_naming_the_path(void **state)
{
    fix *f = *state;
    char file[SD_PATH], sub[SD_PATH];
    sd_join(file, f->dir, "file");
    sd_join(sub, file, "sub");
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);

    sp_pool *p = (sp_pool *)&p; /* must be reset to NULL */
    /* mkdir file/sub fails with ENOTDIR, which the store maps to SP_ERR_IO. */
    t_status(sd_open(&p, sub), SP_ERR_IO);
    assert_null(p);
    if (!strstr(sp_last_error(), sub)) fail_msg("detail '%s' does not name %s", sp_last_error(), sub);

    /* The spill dir itself a regular file: refused too, naming it. */
    p = (sp_pool *)&p;
    sp_status st = sd_open(&p, file);
    if (st == SP_OK) fail_msg("a regular file was accepted as the spill directory");
    assert_null(p);
    if (!strstr(sp_last_error(), file)) fail_msg("detail '%s' does not name %s", sp_last_error(), file);

    /* Nothing was created, and the file is untouched. */
    sd_assert_entries(f->dir, 1);
    sd_assert_node(file, 0, 0600);
    struct stat st_f;
    assert_int_equal(lstat(file, &st_f), 0);
    assert_int_equal(st_f.st_size, 1);
}

static void unwritable_dir_is_a_permission_error(void **state)
{
    fix *f = *state;
    if (geteuid() == 0) {
        print_message("note: running as root, which ignores directory modes: permission checks skipped\n");
        skip();
    }
    char ro[SD_PATH], sub[SD_PATH];
    sd_join(ro, f->dir, "ro");
    sd_join(sub, ro, "sub");
    assert_int_equal(mkdir(ro, 0500), 0);
    sd_assert_node(ro, 1, 0500);

    sp_pool *p = (sp_pool *)&p;
    t_status(sd_open(&p, ro), SP_ERR_PERMISSION);
    assert_null(p);
    if (!strstr(sp_last_error(), ro)) fail_msg("detail '%s' does not name %s", sp_last_error(), ro);

    /* A missing directory under it cannot be made: EACCES. */
    p = (sp_pool *)&p;
    t_status(sd_open(&p, sub), SP_ERR_PERMISSION);
    assert_null(p);
    if (!strstr(sp_last_error(), sub)) fail_msg("detail '%s' does not name %s", sp_last_error(), sub);

    sd_assert_entries(ro, 0);
    assert_int_equal(chmod(ro, 0700), 0);
}

/* ---- 10. the page cache of spill files ---- */

/* Pages of the file in the kernel's cache (mincore on a mapping of it); -1 where
 * the file system cannot drop them (tmpfs keeps its pages in memory by nature). */
static long sd_cached_pages(const char *path)
{
    struct statfs fs;
    if (statfs(path, &fs) != 0) fail_msg("statfs %s: %s", path, strerror(errno));
    if (fs.f_type == 0x01021994) return -1; /* TMPFS_MAGIC */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    long psz = sysconf(_SC_PAGESIZE);
    size_t pages = ((size_t)st.st_size + (size_t)psz - 1) / (size_t)psz;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    unsigned char *vec = calloc(pages, 1);
    assert_non_null(vec);
    assert_int_equal(mincore(m, (size_t)st.st_size, vec), 0);
    long n = 0;
    for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
    free(vec);
    munmap(m, (size_t)st.st_size);
    close(fd);
    return n;
}

static void dropped_spill_files_leave_the_page_cache_and_read_back_intact(void **state)
{
    fix *f = *state;
    const size_t len = 256 * 1024;
    for (int mode = SP_CACHE_KEEP; mode <= SP_CACHE_DROP; mode++) {
        sp_config c;
        t_config(&c, f->dir, len + len / 2, 16 * len, SP_POLICY_LRU);
        c.page_cache = (sp_page_cache)mode;
        t_ok(sp_pool_open(&f->p[0], &c));
        sp_ref a = t_put(f->p[0], len, 7 + (unsigned)mode);
        sp_ref b = t_put(f->p[0], len, 9);
        assert_int_equal(t_tier(f->p[0], a), SP_TIER_DISK);
        char file[SD_PATH];
        sd_path_of(f->p[0], a, file);
        long cached = sd_cached_pages(file);
        if (cached >= 0) {
            /* Kept, the file just written is in the cache: the check can see pages. */
            if (mode == SP_CACHE_KEEP) assert_true(cached > 0);
            else if (cached != 0) fail_msg("drop: %ld pages of %s still cached after the spill", cached, file);
        } else {
            print_message("tmpfs: the page cache is the file itself; only the round trip is checked\n");
        }
        /* Read back for reading only, so the file stays as a clean copy; b goes out. */
        const void *obj;
        t_ok(sp_pin_read(f->p[0], a, &obj));
        const sp_bytes *got = obj;
        assert_int_equal(got->len, len);
        for (size_t i = 0; i < len; i++)
            if (got->data[i] != (unsigned char)(7 + (unsigned)mode + i * 31)) fail_msg("byte %zu differs", i);
        t_ok(sp_unpin(f->p[0], a));
        assert_int_equal(t_tier(f->p[0], b), SP_TIER_DISK);
        if (mode == SP_CACHE_DROP && cached >= 0) {
            long after = sd_cached_pages(file);
            if (after != 0) fail_msg("drop: %ld pages of %s cached after the read back", after, file);
        }
        t_check(f->p[0], b, len, 9);
        t_ok(sp_release(f->p[0], a));
        t_ok(sp_release(f->p[0], b));
        t_ok(sp_pool_close(f->p[0]));
        f->p[0] = NULL;
    }
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(session_dir_lock_file_and_spill_file_have_their_names_and_modes),
        T(missing_nested_dir_is_created_with_mode_0700),
        T(close_removes_session_and_lock_even_with_live_spilled_objects),
        T(crashed_session_is_removed_by_the_next_pool),
        T(a_link_in_a_session_s_place_is_not_followed),
        T(another_user_s_session_is_not_reaped),
        T(live_session_of_another_process_is_kept),
        T(retained_and_tagged_files_survive_release_close_and_reaping),
        T(two_pools_in_one_process_have_separate_sessions),
        T(dir_under_a_regular_file_is_an_io_error_naming_the_path),
        T(unwritable_dir_is_a_permission_error),
        T(dropped_spill_files_leave_the_page_cache_and_read_back_intact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
