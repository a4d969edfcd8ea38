#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *t_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    assert_non_null(p);
    snprintf(p, 4096, "%s/spillpool-test-XXXXXX", base && base[0] ? base : "/tmp");
    assert_non_null(mkdtemp(p));
    return p;
}

void t_rmrf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(path, 0700);
            t_rmrf(path);
        } else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void t_scan(const char *dir, int *files, uint64_t *bytes)
{
    *files = 0;
    *bytes = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
            (*files)++;
            *bytes += (uint64_t)st.st_size;
        }
    }
    closedir(d);
}

int t_count_files(const char *dir)
{
    int n;
    uint64_t b;
    t_scan(dir, &n, &b);
    return n;
}

uint64_t t_dir_bytes(const char *dir)
{
    int n;
    uint64_t b;
    t_scan(dir, &n, &b);
    return b;
}

unsigned char *t_slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

void t_spew(const char *path, const unsigned char *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    fclose(fp);
}

void t_config(sp_config *c, const char *dir, uint64_t mem, uint64_t disk, sp_policy policy)
{
    sp_config_default(c);
    c->dir = dir;
    c->memory_bound = mem;
    c->disk_bound = disk;
    c->policy = policy;
    c->spill_ahead = 0;
}

sp_pool *t_pool(const char *dir, uint64_t mem, uint64_t disk, sp_policy policy)
{
    sp_config c;
    t_config(&c, dir, mem, disk, policy);
    sp_pool *p = NULL;
    t_ok(sp_pool_open(&p, &c));
    return p;
}

sp_ref t_put(sp_pool *p, size_t len, unsigned seed)
{
    sp_bytes *b = sp_bytes_new(len);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++) b->data[i] = (unsigned char)(seed + i * 31);
    sp_ref r = SP_REF_NULL;
    t_ok(sp_put(p, b, &sp_bytes_type, NULL, &r));
    return r;
}

void t_check(sp_pool *p, sp_ref r, size_t len, unsigned seed)
{
    void *obj;
    t_ok(sp_pin(p, r, &obj));
    const sp_bytes *b = obj;
    assert_int_equal(b->len, len);
    for (size_t i = 0; i < len; i++)
        if (b->data[i] != (unsigned char)(seed + i * 31)) fail_msg("byte %zu of object differs", i);
    t_ok(sp_unpin(p, r));
}

void t_disk_path(sp_pool *p, sp_ref r, char *out, size_t cap)
{
    sp_ref_info info;
    t_ok(sp_ref_query(p, r, &info));
    assert_int_equal(info.tier, SP_TIER_DISK);
    if ((size_t)snprintf(out, cap, "%s", info.path) >= cap) fail_msg("path %s too long", info.path);
}

int t_fix_setup(void **state)
{
    t_fix *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->dir = t_tmpdir();
    *state = f;
    return 0;
}

int t_fix_teardown(void **state)
{
    t_fix *f = *state;
    if (f->p) t_ok(sp_pool_close(f->p));
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

sp_tier t_tier(sp_pool *p, sp_ref r)
{
    sp_ref_info info;
    t_ok(sp_ref_query(p, r, &info));
    return info.tier;
}

void t_touch(sp_pool *p, sp_ref r)
{
    void *obj;
    t_ok(sp_pin(p, r, &obj));
    t_ok(sp_unpin(p, r));
}

/* ---- the wrapping store ---- */

typedef struct t_file {
    t_store *s;
    void *inner;
} t_file;

void t_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static sp_status t_create(void *ctx, const char *name, sp_place place, void **out)
{
    t_store *s = ctx;
    atomic_fetch_add(&s->creates, 1);
    int now = atomic_fetch_add(&s->writers_now, 1) + 1;
    int max = atomic_load(&s->writers_max);
    while (now > max && !atomic_compare_exchange_weak(&s->writers_max, &max, now)) {
    }
    int delay = atomic_load(&s->write_delay_ms);
    if (delay) t_sleep_ms(delay);
    t_file *f = malloc(sizeof *f);
    if (!f) return SP_ERR_NOMEM;
    f->s = s;
    sp_status st = sp_dir_store_methods.create(s->inner, name, place, &f->inner);
    if (st != SP_OK) {
        atomic_fetch_sub(&s->writers_now, 1);
        free(f);
        return st;
    }
    *out = f;
    return SP_OK;
}

static sp_status t_write(void *file, const void *buf, size_t len)
{
    t_file *f = file;
    int st = atomic_load(&f->s->fail_write);
    long left = atomic_load(&f->s->fail_after);
    if (left >= 0) {
        if ((long)len > left) {
            atomic_store(&f->s->fail_after, 0);
            return (sp_status)(st ? st : SP_ERR_DISK_FULL);
        }
        atomic_fetch_sub(&f->s->fail_after, (long)len);
    } else if (st) {
        return (sp_status)st;
    }
    return sp_dir_store_methods.write(f->inner, buf, len);
}

static sp_status t_commit(void *file)
{
    t_file *f = file;
    t_store *s = f->s;
    int st = atomic_load(&s->fail_commit);
    sp_status r;
    if (st) {
        sp_dir_store_methods.abort(f->inner);
        r = (sp_status)st;
    } else r = sp_dir_store_methods.commit(f->inner);
    atomic_fetch_sub(&s->writers_now, 1);
    free(f);
    return r;
}

static void t_abort(void *file)
{
    t_file *f = file;
    sp_dir_store_methods.abort(f->inner);
    atomic_fetch_sub(&f->s->writers_now, 1);
    free(f);
}

static sp_status t_open(void *ctx, const char *name, sp_place place, void **out, uint64_t *size)
{
    t_store *s = ctx;
    atomic_fetch_add(&s->opens, 1);
    int delay = atomic_load(&s->read_delay_ms);
    if (delay) t_sleep_ms(delay);
    t_file *f = malloc(sizeof *f);
    if (!f) return SP_ERR_NOMEM;
    f->s = s;
    sp_status st = sp_dir_store_methods.open(s->inner, name, place, &f->inner, size);
    if (st != SP_OK) {
        free(f);
        return st;
    }
    *out = f;
    return SP_OK;
}

static sp_status t_read(void *file, void *buf, size_t len, size_t *got)
{
    t_file *f = file;
    atomic_fetch_add(&f->s->reads, 1);
    return sp_dir_store_methods.read(f->inner, buf, len, got);
}

static void t_close(void *file)
{
    t_file *f = file;
    sp_dir_store_methods.close(f->inner);
    free(f);
}

static sp_status t_remove(void *ctx, const char *name, sp_place place)
{
    t_store *s = ctx;
    atomic_fetch_add(&s->removes, 1);
    int delay = atomic_load(&s->remove_delay_ms);
    if (delay) t_sleep_ms(delay);
    return sp_dir_store_methods.remove(s->inner, name, place);
}

static void t_describe(void *ctx, const char *name, sp_place place, char *buf, size_t cap)
{
    t_store *s = ctx;
    sp_dir_store_methods.describe(s->inner, name, place, buf, cap);
}

const sp_store_methods t_store_methods = {
    .version = 1,
    .create = t_create,
    .write = t_write,
    .commit = t_commit,
    .abort = t_abort,
    .open = t_open,
    .read = t_read,
    .close = t_close,
    .remove = t_remove,
    .describe = t_describe,
};

void t_store_init(t_store *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    atomic_store(&s->fail_after, -1);
    t_ok(sp_dir_store_open(dir, &s->inner));
}

void t_store_fini(t_store *s) { sp_dir_store_close(s->inner); }

sp_pool *t_pool_on(t_store *s, uint64_t mem, uint64_t disk, sp_policy policy)
{
    sp_config c;
    t_config(&c, NULL, mem, disk, policy);
    c.store = &t_store_methods;
    c.store_ctx = s;
    sp_pool *p = NULL;
    t_ok(sp_pool_open(&p, &c));
    return p;
}

t_dagfx *t_dagfx_open(uint64_t mem, unsigned workers, unsigned readahead)
{
    t_dagfx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = t_tmpdir();
    f->p = t_pool(f->dir, mem, 1ull << 30, SP_POLICY_MRU);
    sp_dag_options o = {workers, readahead};
    t_ok(sp_dag_open(&f->d, f->p, &o));
    return f;
}

void t_dagfx_close(t_dagfx *f)
{
    t_ok(sp_dag_close(f->d));
    sp_stats s;
    t_ok(sp_pool_stats(f->p, &s));
    assert_int_equal(s.objects_pinned, 0);
    assert_int_equal(s.objects_in_memory + s.objects_on_disk, 0);
    t_ok(sp_pool_close(f->p));
    t_rmrf(f->dir);
    free(f->dir);
    free(f);
}
