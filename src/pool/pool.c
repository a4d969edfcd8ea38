/* The pool: refs, reference counts, pins, placement and eviction.
 * See pool_internal.h for what the lock guards and how transitions are owned. */
#include <errno.h>
#include <sodium.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/clock.h"
#include "../filter/codec.h"
#include "../store/frame.h"
#include "pool_internal.h"

#define SP_NAME_CAP 300

/* ---- recency list: O(1) touch, remove and victim choice ---- */

static void sp_list_remove(sp_obj *o)
{
    o->prev->next = o->next;
    o->next->prev = o->prev;
    o->prev = o->next = NULL;
}

static void sp_list_push_front(sp_pool *p, sp_obj *o)
{
    o->next = p->lru.next;
    o->prev = &p->lru;
    p->lru.next->prev = o;
    p->lru.next = o;
}

static void sp_list_push_back(sp_pool *p, sp_obj *o)
{
    o->prev = p->lru.prev;
    o->next = &p->lru;
    p->lru.prev->next = o;
    p->lru.prev = o;
}

/* MRU evicts from the front (most recent), LRU from the back. */
static sp_obj *sp_pick_victim(sp_pool *p)
{
    sp_obj *v = p->cfg.policy == SP_POLICY_MRU ? p->lru.next : p->lru.prev;
    return v == &p->lru ? NULL : v;
}

/* Put an object back where the policy will pick it last (after a failed spill). */
static void sp_list_push_last_victim(sp_pool *p, sp_obj *o)
{
    if (p->cfg.policy == SP_POLICY_MRU) sp_list_push_back(p, o);
    else sp_list_push_front(p, o);
}

/* ---- refs ---- */

static sp_obj *sp_lookup(sp_pool *p, sp_ref ref)
{
    uint32_t idx = (uint32_t)ref, gen = (uint32_t)(ref >> 32);
    if (idx == 0 || idx > p->nslots) return NULL;
    sp_slot *s = &p->slots[idx - 1];
    return s->obj && s->gen == gen ? s->obj : NULL;
}

static sp_status sp_bad_ref(sp_ref ref)
{
    return sp__fail(SP_ERR_BAD_REF, "ref %#llx: released, or not from this pool", (unsigned long long)ref);
}

static sp_status sp_slot_alloc(sp_pool *p, sp_obj *o, sp_ref *ref)
{
    if (p->free_head == 0) {
        if (p->nslots == p->cap) {
            uint32_t cap = p->cap ? p->cap * 2 : 64;
            SP_RETURN_IF(cap <= p->cap, SP_ERR_NOMEM, "pool: too many objects");
            sp_slot *s = sp__realloc(p->slots, (size_t)cap * sizeof *s);
            SP_RETURN_IF(s == NULL, SP_ERR_NOMEM, "pool: out of memory for the object table");
            p->slots = s;
            p->cap = cap;
        }
        p->slots[p->nslots] = (sp_slot){NULL, 1, 0};
        p->free_head = ++p->nslots;
    }
    uint32_t idx = p->free_head;
    sp_slot *s = &p->slots[idx - 1];
    p->free_head = s->next_free;
    s->obj = o;
    o->slot = idx;
    *ref = ((uint64_t)s->gen << 32) | idx;
    return SP_OK;
}

static void sp_slot_free(sp_pool *p, sp_obj *o)
{
    sp_slot *s = &p->slots[o->slot - 1];
    s->obj = NULL;
    if (++s->gen == 0) s->gen = 1;
    s->next_free = p->free_head;
    p->free_head = o->slot;
}

/* ---- files ---- */

static void sp_obj_name(sp_pool *p, const sp_obj *o, char *buf, sp_place *place)
{
    if (o->tag) {
        snprintf(buf, SP_NAME_CAP, "%s", o->tag);
        *place = SP_PLACE_KEEP;
    } else if (o->retain) {
        snprintf(buf, SP_NAME_CAP, "retained-%016llx-%llx.sp", (unsigned long long)p->id,
                 (unsigned long long)o->serial);
        *place = SP_PLACE_KEEP;
    } else {
        snprintf(buf, SP_NAME_CAP, "%llx.sp", (unsigned long long)o->serial);
        *place = SP_PLACE_SESSION;
    }
}

/* Remove o's file (no lock held: store I/O). */
static void sp_remove_file(sp_pool *p, const sp_obj *o)
{
    char name[SP_NAME_CAP];
    sp_place place;
    sp_obj_name(p, o, name, &place);
    p->m->remove(p->sctx, name, place);
}

/* o has no file any more: its bytes leave the disk bound (lock held). */
static void sp_forget_file(sp_pool *p, sp_obj *o)
{
    atomic_fetch_sub(&p->disk_used, o->disk_bytes);
    o->disk_bytes = 0;
    o->has_file = 0;
}

static sp_status sp_charge_disk(void *ctx, uint64_t n)
{
    sp_pool *p = ctx;
    uint64_t prev = atomic_fetch_add(&p->disk_used, n);
    if (prev + n > p->cfg.disk_bound) {
        atomic_fetch_sub(&p->disk_used, n);
        char b1[32], b2[32];
        return sp__fail(SP_ERR_DISK_FULL, "disk bound %s reached (%s in use)",
                        sp_format_size(p->cfg.disk_bound, b1, sizeof b1), sp_format_size(prev, b2, sizeof b2));
    }
    return SP_OK;
}

/* A copy of the pool's key for one file's I/O (set_key may replace it meanwhile);
 * the caller wipes it. Returns NULL when the pool has none. */
static unsigned char *sp_key_copy(sp_pool *p, unsigned char key[SP_KEY_BYTES])
{
    pthread_mutex_lock(&p->lock);
    unsigned char *k = p->key ? key : NULL;
    if (k) memcpy(key, p->key, SP_KEY_BYTES);
    pthread_mutex_unlock(&p->lock);
    return k;
}

/* Whether o's next file is a tagged object's first: it must not take the place of
 * a file the pool did not write (the caller's, or another pool's), unless the caller
 * said to replace it. */
static int sp_tag_first(const sp_obj *o) { return o->tag && !o->has_file && !o->replace; }

static sp_status sp_tag_taken(sp_pool *p, const sp_obj *o)
{
    char where[600];
    p->m->describe(p->sctx, o->tag, SP_PLACE_KEEP, where, sizeof where);
    return sp__fail(SP_ERR_BUSY,
                    "tag '%s': %s is already there, a file this pool did not write (sp_put_options.replace "
                    "replaces it)",
                    o->tag, where);
}

/* Checked at put and before the write, for an early answer; the store's commit_new
 * makes the final step atomic (without it, a file created between this check and the
 * commit is replaced). */
static sp_status sp_tag_free(sp_pool *p, const sp_obj *o)
{
    if (!sp_tag_first(o)) return SP_OK;
    void *f;
    uint64_t size;
    if (p->m->open(p->sctx, o->tag, SP_PLACE_KEEP, &f, &size) != SP_OK)
        return SP_OK; /* nothing there (or nothing readable: the write will say) */
    p->m->close(f);
    return sp_tag_taken(p, o);
}

/* Encode o into its file. Called without the lock; o is owned by this thread. */
static sp_status sp_write_object(sp_pool *p, sp_obj *o, uint64_t *stored, uint64_t *enc)
{
    char name[SP_NAME_CAP];
    sp_place place;
    sp_obj_name(p, o, name, &place);
    SP_FORWARD(sp_tag_free(p, o));
    sp_chain *chain = o->chain ? o->chain : atomic_load(&p->chain);
    unsigned char keybuf[SP_KEY_BYTES], *key = NULL;
    if (chain && chain->encrypted) key = sp_key_copy(p, keybuf);
    void *f;
    sp_status st = p->m->create(p->sctx, name, place, &f);
    if (st != SP_OK) {
        sodium_memzero(keybuf, sizeof keybuf);
        return sp__wrap(st, "spilling object %llu", (unsigned long long)o->serial);
    }
    sp_writer w;
    st = sp__writer_begin(&w, p->m, f, sp_charge_disk, p, chain, key);
    sodium_memzero(keybuf, sizeof keybuf);
    if (st == SP_OK) st = o->type->encode(o->data, &w);
    if (st == SP_OK) st = sp__writer_finish(&w);
    unsigned char id[SP_FILE_ID_BYTES];
    memcpy(id, w.file_id, sizeof id);
    sp__writer_cleanup(&w);
    if (st == SP_OK && sp_tag_first(o) && p->m->version >= 2 && p->m->commit_new) {
        if ((st = p->m->commit_new(f)) == SP_ERR_BUSY) st = sp_tag_taken(p, o);
    } else if (st == SP_OK) {
        st = p->m->commit(f);
    } else {
        p->m->abort(f);
    }
    if (st != SP_OK) {
        atomic_fetch_sub(&p->disk_used, w.stored_total);
        return sp__wrap(st, "spilling object %llu (%s)", (unsigned long long)o->serial, o->type->name);
    }
    *stored = w.stored_total;
    *enc = w.raw_total;
    o->file_chain = chain;
    memcpy(o->file_id, id, sizeof id);
    return SP_OK;
}

/* The bookkeeping of a file just written for o (lock held, or nothing else running):
 * it replaces any file o had. */
static void sp_file_written(sp_pool *p, sp_obj *o, uint64_t stored, uint64_t enc)
{
    if (o->has_file) atomic_fetch_sub(&p->disk_used, o->disk_bytes);
    o->has_file = 1;
    o->dirty = 0; /* the file is its copy now */
    o->disk_bytes = stored;
    o->enc_len = enc;
    p->files_written++;
    p->bytes_before_filters += enc;
    p->bytes_after_filters += stored;
}

/* Opens o's file through the store and reads its header with the current key, so the
 * header's id, chain and key check say whether it is still o's file as written. */
static sp_status sp_open_checked(sp_pool *p, sp_obj *o, const char *what, void **f, sp_reader *r)
{
    char name[SP_NAME_CAP];
    sp_place place;
    sp_obj_name(p, o, name, &place);
    uint64_t fsize = 0;
    sp_status st = p->m->open(p->sctx, name, place, f, &fsize);
    if (st != SP_OK) return st;
    unsigned char keybuf[SP_KEY_BYTES], *key = NULL;
    if (o->file_chain && o->file_chain->encrypted) key = sp_key_copy(p, keybuf);
    st = sp__reader_begin(r, p->m, *f, fsize, what, o->file_chain, key);
    sodium_memzero(keybuf, sizeof keybuf);
    if (st == SP_OK && (fsize != o->disk_bytes || memcmp(r->file_id, o->file_id, SP_FILE_ID_BYTES) != 0))
        st = sp__fail(SP_ERR_CORRUPT,
                      "%s: not the file written for this object (another file, or an older one, is in its place)",
                      what);
    if (st != SP_OK) {
        sp__reader_cleanup(r);
        p->m->close(*f);
    }
    return st;
}

/* Whether o's clean copy on disk is still there as written, readable with the
 * current key: before the copy in memory is dropped on the strength of it. Called
 * without the lock; o is owned by this thread. */
static int sp_file_intact(sp_pool *p, sp_obj *o)
{
    void *f;
    sp_reader r;
    if (sp_open_checked(p, o, "clean copy", &f, &r) != SP_OK) return 0;
    sp__reader_cleanup(&r);
    p->m->close(f);
    return 1;
}

/* Decode o from its file. Called without the lock; o is owned by this thread. */
static sp_status sp_read_object(sp_pool *p, sp_obj *o, void **data)
{
    char name[SP_NAME_CAP], what[SP_NAME_CAP + 600];
    sp_place place;
    sp_obj_name(p, o, name, &place);
    int n = snprintf(what, sizeof what, "object %llu (", (unsigned long long)o->serial);
    p->m->describe(p->sctx, name, place, what + n, sizeof what - (size_t)n - 1);
    strcat(what, ")");
    void *f;
    sp_reader r;
    sp_status st = sp_open_checked(p, o, what, &f, &r);
    if (st != SP_OK) return sp__wrap(st, "restoring object %llu", (unsigned long long)o->serial);
    void *d = NULL;
    r.arg = o->type->arg;
    st = o->type->decode(&r, o->enc_len, &d);
    if (st == SP_OK) {
        st = sp__reader_finish(&r);
        if (st != SP_OK) o->type->free(d);
    }
    sp__reader_cleanup(&r);
    p->m->close(f);
    if (st != SP_OK) return sp__wrap(st, "restoring");
    *data = d;
    return SP_OK;
}

/* ---- eviction ---- */

static void sp_flusher_poke(sp_pool *p)
{
    if (p->flusher_running && p->mem_used > p->cfg.memory_bound - p->cfg.spill_ahead)
        pthread_cond_signal(&p->flush_cv);
}

/* The bookkeeping of a victim whose memory was freed, by a write or a clean drop
 * (lock held; its bytes already out of mem_leaving). */
static void sp_left_memory(sp_pool *p, sp_obj *v)
{
    v->data = NULL;
    v->state = SP_ST_DISK;
    p->mem_used -= v->size;
    p->n_mem--;
    p->n_disk++;
    p->evictions++;
}

/* Write one victim (state SPILLING, counted in mem_leaving) to disk and free it.
 * Lock held on entry and exit; released around the I/O. On failure the object is
 * back in memory, unchanged. */
static sp_status sp_spill_one(sp_pool *p, sp_obj *v)
{
    if (!v->dirty && v->has_file) {
        /* Dropping a clean copy trusts its file: check it is still there, as written
         * and readable with today's key; if not, write it again. */
        pthread_mutex_unlock(&p->lock);
        int intact = sp_file_intact(p, v);
        pthread_mutex_lock(&p->lock);
        if (!intact) v->dirty = 1;
    }
    if (!v->dirty && (v->has_file || (v->lazy && !v->src_cache))) {
        /* A clean copy of its spill file or of its source: drop it, nothing to write. */
        pthread_mutex_unlock(&p->lock);
        v->type->free(v->data);
        pthread_mutex_lock(&p->lock);
        p->mem_leaving -= v->size;
        sp_left_memory(p, v);
        p->clean_drops++;
        pthread_cond_broadcast(&p->io_cv);
        return SP_OK;
    }
    uint64_t stored = 0, enc = 0;
    pthread_mutex_unlock(&p->lock);
    uint64_t t0 = sp__now_ns();
    sp_status st = sp_write_object(p, v, &stored, &enc);
    if (st == SP_OK) v->type->free(v->data); /* before accounting: never under-report */
    uint64_t dt = sp__now_ns() - t0;
    pthread_mutex_lock(&p->lock);
    p->mem_leaving -= v->size;
    if (st == SP_OK) {
        sp_file_written(p, v, stored, enc);
        sp_left_memory(p, v);
        p->bytes_spilled += v->size;
        p->spill_ns += dt;
    } else if (v->lazy && v->src_cache && v->src_known && !v->changed) {
        /* Its parsed copy could not be written, but the copy is only a cache: the
         * source is still its home, so it leaves memory as a clean copy of that. */
        p->spill_failures++;
        int had_file = v->has_file; /* an old copy that failed its check: gone too */
        if (had_file) sp_forget_file(p, v);
        v->dirty = 0;
        pthread_mutex_unlock(&p->lock);
        if (had_file) sp_remove_file(p, v);
        v->type->free(v->data);
        pthread_mutex_lock(&p->lock);
        sp_left_memory(p, v);
        p->clean_drops++;
        st = SP_OK;
    } else {
        v->state = SP_ST_MEM;
        sp_list_push_last_victim(p, v);
        p->spill_failures++;
    }
    pthread_cond_broadcast(&p->io_cv);
    return st;
}

/* Spill victims until mem_used + need <= limit. Lock held; released around I/O.
 * Other threads' spills in flight are not counted as room: the bytes they free are
 * already spoken for by their own puts, so each caller picks victims for its own
 * need and the writes of independent callers overlap. With wait set and nothing
 * left to pick, waits for those spills to finish. */
static sp_status sp_evict_until(sp_pool *p, uint64_t need, uint64_t limit, int wait)
{
    for (;;) {
        if (p->mem_used + need <= limit) return SP_OK;
        sp_obj *victims = NULL;
        uint64_t freeing = 0;
        while (p->mem_used - freeing + need > limit) {
            sp_obj *v = sp_pick_victim(p);
            if (!v) break;
            sp_list_remove(v);
            v->state = SP_ST_SPILLING;
            v->vnext = victims;
            victims = v;
            freeing += v->size;
        }
        p->mem_leaving += freeing;
        if (victims) {
            sp_status first = SP_OK;
            while (victims) {
                sp_obj *v = victims;
                victims = v->vnext;
                if (first == SP_OK) {
                    first = sp_spill_one(p, v);
                } else { /* give the rest back untouched */
                    p->mem_leaving -= v->size;
                    v->state = SP_ST_MEM;
                    sp_list_push_last_victim(p, v);
                }
            }
            if (first != SP_OK) {
                pthread_cond_broadcast(&p->io_cv);
                return first;
            }
            continue;
        }
        if (wait && (p->mem_leaving > 0 || p->mem_arriving > 0)) {
            /* Other threads' spills will free memory, or their restores will end and
             * their objects become evictable once unpinned: wait, it is transient. */
            pthread_cond_wait(&p->io_cv, &p->lock);
            continue;
        }
        char b1[32], b2[32], b3[32];
        return sp__fail(SP_ERR_MEMORY_FULL,
                        "memory bound %s: %s in use by %llu pinned or in-flight objects, %s more needed",
                        sp_format_size(limit, b1, sizeof b1), sp_format_size(p->mem_used, b2, sizeof b2),
                        (unsigned long long)p->n_pinned, sp_format_size(need, b3, sizeof b3));
    }
}

/* The write-back thread: keeps spill_ahead bytes of the memory bound free so that a
 * put finds room without waiting for a write. */
static void *sp_flusher_main(void *arg)
{
    sp_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        uint64_t limit = p->cfg.memory_bound - p->cfg.spill_ahead;
        if (p->mem_used - p->mem_leaving > limit && sp_pick_victim(p)) {
            sp_status st = sp_evict_until(p, 0, limit, 0);
            if (st != SP_OK && st != SP_ERR_MEMORY_FULL && !p->stopping) {
                /* A failing disk: retry later, not in a hot loop; demand spills
                 * report the error to their callers meanwhile. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&p->flush_cv, &p->lock, &ts);
            }
            continue;
        }
        pthread_cond_wait(&p->flush_cv, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static sp_status sp_flusher_start(sp_pool *p)
{
    p->stopping = 0;
    int err = pthread_create(&p->flusher, NULL, sp_flusher_main, p);
    if (err) return sp__fail_errno(SP_ERR_IO, err, "pool: starting the write-back thread");
    p->flusher_running = 1;
    return SP_OK;
}

static void sp_flusher_stop(sp_pool *p)
{
    if (!p->flusher_running) return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_signal(&p->flush_cv);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->flusher, NULL);
    p->flusher_running = 0;
}

/* ---- filters and keys ---- */

/* The interned chain for text (lock held, or the pool not yet shared). */
static sp_status sp_chain_intern(sp_pool *p, const char *text, sp_chain **out)
{
    sp_chain_node *n = sp__malloc(sizeof *n);
    SP_RETURN_IF(!n, SP_ERR_NOMEM, "filter chain: out of memory");
    sp_status st = sp__chain_parse(text, p->custom, p->ncustom, &n->chain);
    if (st == SP_OK && n->chain.encrypted && !p->key)
        st = sp__fail(SP_ERR_INVALID,
                      "filter chain \"%s\" encrypts, but the pool has no key: set SPILLPOOL_KEY_FILE, "
                      "sp_config.key_file or sp_config.key",
                      text);
    if (st != SP_OK) {
        sp__free(n);
        return st;
    }
    for (sp_chain_node *x = p->chains; x; x = x->next)
        if (strcmp(x->chain.text, n->chain.text) == 0) {
            sp__free(n);
            *out = &x->chain;
            return SP_OK;
        }
    n->next = p->chains;
    p->chains = n;
    *out = &n->chain;
    return SP_OK;
}

static sp_status sp_filters_open(sp_pool *p, const sp_config *c)
{
    if (c->key || c->key_file) {
        SP_FORWARD(sp__crypto_init());
        p->key = sp__key_alloc();
        SP_RETURN_IF(!p->key, SP_ERR_NOMEM, "key: out of locked memory");
        if (c->key) memcpy(p->key, c->key, SP_KEY_BYTES);
        else SP_FORWARD(sp__key_load_file(c->key_file, p->key));
    }
    sp_chain *ch;
    SP_FORWARD(sp_chain_intern(p, c->filters, &ch));
    atomic_store(&p->chain, ch);
    return SP_OK;
}

static void sp_filters_close(sp_pool *p)
{
    while (p->chains) {
        sp_chain_node *n = p->chains;
        p->chains = n->next;
        sp__free(n);
    }
    if (p->key) sp__key_free(p->key); /* wipes it */
    p->key = NULL;
}

sp_status sp_pool_add_filter(sp_pool *p, const sp_filter_def *def)
{
    SP_RETURN_IF(!p, SP_ERR_INVALID, "sp_pool_add_filter: NULL pool");
    SP_FORWARD(sp__filter_def_check(def));
    pthread_mutex_lock(&p->lock);
    sp_status st = SP_OK;
    for (unsigned i = 0; i < p->ncustom && st == SP_OK; i++)
        if (strcmp(p->custom[i].name, def->name) == 0)
            st = sp__fail(SP_ERR_INVALID, "filter %s: already added", def->name);
    if (st == SP_OK && p->ncustom == SP_CUSTOM_MAX)
        st = sp__fail(SP_ERR_INVALID, "filter %s: a pool takes at most %d filters of its own", def->name,
                      SP_CUSTOM_MAX);
    if (st == SP_OK) p->custom[p->ncustom++] = *def;
    pthread_mutex_unlock(&p->lock);
    return st;
}

sp_status sp_pool_set_filters(sp_pool *p, const char *text)
{
    SP_RETURN_IF(!p, SP_ERR_INVALID, "sp_pool_set_filters: NULL pool");
    pthread_mutex_lock(&p->lock);
    sp_chain *ch;
    sp_status st = sp_chain_intern(p, text, &ch);
    if (st == SP_OK) atomic_store(&p->chain, ch);
    pthread_mutex_unlock(&p->lock);
    return st;
}

sp_status sp_pool_get_filters(sp_pool *p, char *buf, size_t cap)
{
    SP_RETURN_IF(!p || !buf, SP_ERR_INVALID, "sp_pool_get_filters: NULL argument");
    const char *t = atomic_load(&p->chain)->text;
    SP_RETURN_IF(strlen(t) >= cap, SP_ERR_INVALID, "sp_pool_get_filters: %zu bytes needed", strlen(t) + 1);
    strcpy(buf, t);
    return SP_OK;
}

sp_status sp_filters_check(const char *text)
{
    sp_chain *tmp = sp__malloc(sizeof *tmp);
    SP_RETURN_IF(!tmp, SP_ERR_NOMEM, "filter chain: out of memory");
    sp_status st = sp__chain_parse(text, NULL, 0, tmp);
    sp__free(tmp);
    return st;
}

sp_status sp_pool_set_key(sp_pool *p, const unsigned char key[SP_KEY_BYTES])
{
    SP_RETURN_IF(!p || !key, SP_ERR_INVALID, "sp_pool_set_key: NULL argument");
    SP_FORWARD(sp__crypto_init());
    pthread_mutex_lock(&p->lock);
    if (!p->key) p->key = sp__key_alloc();
    if (p->key) memcpy(p->key, key, SP_KEY_BYTES);
    sp_status st = p->key ? SP_OK : sp__fail(SP_ERR_NOMEM, "key: out of locked memory");
    pthread_mutex_unlock(&p->lock);
    return st;
}

/* ---- open / close ---- */

sp_status sp__default_dir(char **out)
{
    const char *home = getenv("HOME");
    char buf[4096];
    struct passwd pw, *res = NULL;
    if ((home == NULL || home[0] == '\0') && getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res)
        home = pw.pw_dir;
    SP_RETURN_IF(home == NULL || home[0] == '\0', SP_ERR_INVALID,
                 "spill directory: HOME is not set; set SPILLPOOL_DIR or sp_config.dir");
    size_t n = strlen(home) + sizeof "/.spillpool";
    *out = sp__malloc(n);
    SP_RETURN_IF(*out == NULL, SP_ERR_NOMEM, "pool: out of memory");
    snprintf(*out, n, "%s/.spillpool", home);
    return SP_OK;
}

static sp_status sp_check_config(const sp_config *c)
{
    SP_RETURN_IF(c->memory_bound == 0, SP_ERR_INVALID, "memory bound: must be greater than zero");
    SP_RETURN_IF(c->disk_bound == 0, SP_ERR_INVALID, "disk bound: must be greater than zero");
    SP_RETURN_IF(c->policy != SP_POLICY_MRU && c->policy != SP_POLICY_LRU, SP_ERR_INVALID,
                 "policy: unknown value %d", (int)c->policy);
    SP_RETURN_IF(c->page_cache != SP_CACHE_KEEP && c->page_cache != SP_CACHE_DROP, SP_ERR_INVALID,
                 "page cache: unknown value %d", (int)c->page_cache);
    SP_RETURN_IF(c->spill_ahead >= c->memory_bound, SP_ERR_INVALID,
                 "spill-ahead %llu: must be smaller than the memory bound %llu",
                 (unsigned long long)c->spill_ahead, (unsigned long long)c->memory_bound);
    if (c->store) {
        const sp_store_methods *m = c->store;
        SP_RETURN_IF(m->version < 1 || !m->create || !m->write || !m->commit || !m->abort || !m->open ||
                         !m->read || !m->close || !m->remove || !m->describe,
                     SP_ERR_INVALID, "store: version %d table with a missing method", m->version);
    }
    return SP_OK;
}

sp_status sp_config_check(const sp_config *cfg)
{
    SP_RETURN_IF(cfg == NULL, SP_ERR_INVALID, "sp_config_check: NULL config");
    SP_FORWARD(sp_check_config(cfg));
    sp_chain ch;
    SP_FORWARD(sp__chain_parse(cfg->filters, NULL, 0, &ch));
    int have_key = cfg->key != NULL;
    if (!have_key && cfg->key_file) { /* read as open reads it, into locked memory, wiped */
        SP_FORWARD(sp__crypto_init());
        unsigned char *k = sp__key_alloc();
        SP_RETURN_IF(!k, SP_ERR_NOMEM, "key: out of locked memory");
        sp_status st = sp__key_load_file(cfg->key_file, k);
        sp__key_free(k);
        SP_FORWARD(st);
        have_key = 1;
    }
    SP_RETURN_IF(ch.encrypted && !have_key, SP_ERR_INVALID,
                 "filter chain \"%s\" encrypts, but there is no key: set SPILLPOOL_KEY_FILE, sp_config.key_file or "
                 "sp_config.key", ch.text);
    return SP_OK;
}

sp_status sp_pool_open(sp_pool **out, const sp_config *cfg)
{
    SP_RETURN_IF(out == NULL, SP_ERR_INVALID, "sp_pool_open: NULL pool pointer");
    *out = NULL;
    sp_config c;
    if (cfg) c = *cfg;
    else SP_FORWARD(sp_config_from_env(&c));
    SP_FORWARD(sp_check_config(&c));
    sp_pool *p = sp__calloc(1, sizeof *p);
    SP_RETURN_IF(p == NULL, SP_ERR_NOMEM, "pool: out of memory");
    sp_status st = c.dir ? ((p->dir = sp__strdup(c.dir)) ? SP_OK : sp__fail(SP_ERR_NOMEM, "pool: out of memory"))
                         : sp__default_dir(&p->dir);
    c.dir = p->dir;
    p->cfg = c;
    if (st == SP_OK) {
        if (c.store) {
            p->m = c.store;
            p->sctx = c.store_ctx;
        } else {
            p->m = &sp_dir_store_methods;
            p->own_store = 1;
            st = sp_dir_store_open(p->dir, &p->sctx);
            if (st == SP_OK) sp_dir_store_set_page_cache(p->sctx, c.page_cache);
        }
    }
    if (st != SP_OK) {
        sp__free(p->dir);
        sp__free(p);
        return st;
    }
    if (getrandom(&p->id, sizeof p->id, GRND_NONBLOCK) != (ssize_t)sizeof p->id)
        p->id = sp__now_ns() ^ ((uint64_t)getpid() << 32);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->io_cv, NULL);
    pthread_cond_init(&p->flush_cv, NULL);
    p->lru.next = p->lru.prev = &p->lru;
    st = sp_filters_open(p, &c);
    p->cfg.filters = NULL; /* the caller's strings and key are not kept */
    p->cfg.key = NULL;
    p->cfg.key_file = NULL;
    if (st != SP_OK || (c.spill_ahead > 0 && (st = sp_flusher_start(p)) != SP_OK)) {
        sp_filters_close(p);
        if (p->own_store) sp_dir_store_close(p->sctx);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->io_cv);
        pthread_cond_destroy(&p->flush_cv);
        sp__free(p->dir);
        sp__free(p);
        return st;
    }
    *out = p;
    return SP_OK;
}

#define SP_SLAB_BYTES SP_HUGE_PAGE

static void sp_slab_unref(sp_slab *sl)
{
    if (atomic_fetch_sub(&sl->live, 1) == 1) sp__free_large(sl, SP_SLAB_BYTES);
}

/* n bytes (a multiple of 16) from the pool's slab, or NULL; lock held. */
static void *sp_slab_take(sp_pool *p, size_t n)
{
    if (n > SP_SLAB_BYTES / 16) return NULL; /* a long path: malloc does it */
    if (!p->slab || p->slab->used + n > SP_SLAB_BYTES) {
        sp_slab *sl = sp__malloc_large(SP_SLAB_BYTES);
        if (!sl) return NULL;
        atomic_init(&sl->live, 1);
        sl->used = 64; /* the header, rounded */
        if (p->slab) sp_slab_unref(p->slab);
        p->slab = sl;
    }
    void *o = (char *)p->slab + p->slab->used;
    p->slab->used += n;
    atomic_fetch_add(&p->slab->live, 1);
    return o;
}

static void sp_obj_destroy(sp_obj *o)
{
    sp__free(o->tag);
    if (o->in_slab) sp_slab_unref((sp_slab *)((uintptr_t)o & ~(uintptr_t)(SP_SLAB_BYTES - 1)));
    else sp__free(o);
}

sp_status sp_pool_close(sp_pool *p)
{
    if (!p) return SP_OK;
    sp_flusher_stop(p);
    /* Nothing else may run now: write retained objects first, so that a failure
     * leaves everything in place. */
    for (uint32_t i = 0; i < p->nslots; i++) {
        sp_obj *o = p->slots[i].obj;
        /* retained objects in memory get their file, unless it is a clean copy still intact */
        if (!o || !o->retain || o->state != SP_ST_MEM || (o->has_file && !o->dirty && sp_file_intact(p, o)))
            continue;
        uint64_t stored, enc;
        sp_status st = sp_write_object(p, o, &stored, &enc);
        if (st != SP_OK) {
            if (p->cfg.spill_ahead > 0) sp_flusher_start(p);
            return sp__wrap(st, "closing pool");
        }
        sp_file_written(p, o, stored, enc);
    }
    for (uint32_t i = 0; i < p->nslots; i++) {
        sp_obj *o = p->slots[i].obj;
        if (!o) continue;
        if (o->data) o->type->free(o->data);
        if (o->has_file && !o->retain) {
            char name[SP_NAME_CAP];
            sp_place place;
            sp_obj_name(p, o, name, &place);
            /* The directory store drops session files with the session directory. */
            if (place == SP_PLACE_KEEP || !p->own_store) p->m->remove(p->sctx, name, place);
        }
        sp_obj_destroy(o);
    }
    if (p->slab) sp_slab_unref(p->slab);
    if (p->own_store) sp_dir_store_close(p->sctx);
    sp_filters_close(p);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->io_cv);
    pthread_cond_destroy(&p->flush_cv);
    sp__free(p->slots);
    sp__free(p->dir);
    sp__free(p);
    return SP_OK;
}

const char *sp_pool_session_dir(sp_pool *p) { return p && p->own_store ? sp_dir_store_session(p->sctx) : NULL; }

/* ---- objects ---- */

static int sp_tag_ok(const char *t)
{
    size_t n = strlen(t);
    return n > 0 && n < 200 && strchr(t, '/') == NULL && strcmp(t, ".") != 0 && strcmp(t, "..") != 0 &&
           strncmp(t, "session-", 8) != 0 && strncmp(t, "retained-", 9) != 0;
}

/* 0: no object has the tag; 1: a live object has it; 2: a released object's file
 * under it is being removed (wait on io_cv). Lock held. */
static int sp_tag_state(const sp_pool *p, const char *tag)
{
    for (const sp_obj *x = p->tags_leaving; x; x = x->tag_next)
        if (strcmp(x->tag, tag) == 0) return 2;
    for (uint32_t i = 0; i < p->nslots; i++) {
        const sp_obj *x = p->slots[i].obj;
        if (x && x->tag && strcmp(x->tag, tag) == 0) return 1;
    }
    return 0;
}

sp_status sp_put(sp_pool *p, void *obj, const sp_type *type, const sp_put_options *opt, sp_ref *ref)
{
    SP_RETURN_IF(!p || !obj || !type || !ref, SP_ERR_INVALID, "sp_put: NULL argument");
    SP_RETURN_IF(!type->size || !type->encode || !type->decode || !type->free, SP_ERR_INVALID,
                 "sp_put: type '%s' lacks a method", type->name ? type->name : "?");
    const char *tag = opt ? opt->tag : NULL;
    SP_RETURN_IF(tag && !sp_tag_ok(tag), SP_ERR_INVALID,
                 "tag '%s': must be a plain file name (no '/', not '.' or '..', not starting "
                 "'session-' or 'retained-', under 200 bytes)",
                 tag);
    uint64_t size = type->size(obj);
    char b1[32], b2[32];
    SP_RETURN_IF(size > p->cfg.memory_bound, SP_ERR_TOO_BIG, "object of %s: larger than the memory bound %s",
                 sp_format_size(size, b1, sizeof b1), sp_format_size(p->cfg.memory_bound, b2, sizeof b2));
    sp_obj *o = sp__calloc(1, sizeof *o);
    SP_RETURN_IF(o == NULL, SP_ERR_NOMEM, "sp_put: out of memory");
    if (tag && (o->tag = sp__strdup(tag)) == NULL) {
        sp__free(o);
        return sp__fail(SP_ERR_NOMEM, "sp_put: out of memory");
    }
    o->data = obj;
    o->type = type;
    o->size = size;
    o->refs = 1;
    o->retain = opt && opt->retain;
    o->replace = opt && opt->replace;
    o->state = SP_ST_MEM;

    pthread_mutex_lock(&p->lock);
    sp_status st = SP_OK;
    if (opt && opt->filters) st = sp_chain_intern(p, opt->filters, &o->chain);
    /* Too big for the disk, unless a filter might shrink it (checked as it is written). */
    sp_chain *ch = o->chain ? o->chain : atomic_load(&p->chain);
    if (st == SP_OK && size > p->cfg.disk_bound && !ch->may_shrink)
        st = sp__fail(SP_ERR_TOO_BIG, "object of %s: larger than the disk bound %s",
                      sp_format_size(size, b1, sizeof b1), sp_format_size(p->cfg.disk_bound, b2, sizeof b2));
    /* The tag is checked again after making room, since eviction drops the lock: from
     * that check to the slot below the lock is held, so two puts cannot both take it. */
    for (int ready = 0, on_disk_checked = 0; st == SP_OK && !ready;) {
        int ts = tag ? sp_tag_state(p, tag) : 0;
        if (ts == 1) st = sp__fail(SP_ERR_INVALID, "tag '%s': already names a live object", tag);
        else if (ts == 2) pthread_cond_wait(&p->io_cv, &p->lock); /* its old file is going */
        else if (tag && !on_disk_checked++ && (st = sp_tag_free(p, o)) != SP_OK) /* a file not ours */
            break;
        else if ((st = sp_evict_until(p, size, p->cfg.memory_bound, 1)) != SP_OK)
            st = sp__wrap(st, "put of a %s object", type->name);
        else ready = !tag || sp_tag_state(p, tag) == 0;
    }
    if (st == SP_OK) {
        p->mem_used += size;
        st = sp_slot_alloc(p, o, ref);
        if (st != SP_OK) p->mem_used -= size;
    }
    if (st == SP_OK) {
        o->serial = ++p->serial;
        p->n_mem++;
        if (opt && opt->pin) { /* pinned from the start: no victim pick can see it */
            o->pins = 1;
            p->n_pinned++;
        } else sp_list_push_front(p, o);
        sp_flusher_poke(p);
    }
    pthread_mutex_unlock(&p->lock);
    if (st != SP_OK) sp_obj_destroy(o);
    return st;
}

/* ---- registered sources ---- */

/* One allocation holds the object and its path: registration is a malloc, a copy
 * and a slot under the lock. */
static sp_obj *sp_lazy_obj(sp_pool *p, const char *path, const sp_type *loader, const sp_lazy_options *opt)
{
    size_t n = strlen(path) + 1, bytes = (sizeof(sp_obj) + n + 15) & ~(size_t)15;
    sp_obj *o = sp_slab_take(p, bytes);
    int in_slab = o != NULL;
    if (!o && !(o = sp__malloc(bytes))) return NULL;
    memset(o, 0, sizeof *o);
    o->in_slab = (uint8_t)in_slab;
    char *src = (char *)(o + 1);
    memcpy(src, path, n);
    o->source = src;
    o->type = loader;
    o->refs = 1;
    o->state = SP_ST_DISK;
    o->lazy = 1;
    o->src_reload = opt && opt->reload;
    o->src_cache = opt && opt->cache_parsed;
    o->src_m = opt ? opt->source : NULL;
    return o;
}

sp_status sp_put_lazy_many(sp_pool *p, size_t n, const char *const *paths, const sp_type *loader,
                           const sp_lazy_options *opt, sp_ref *refs)
{
    SP_RETURN_IF(!p || !loader || (n && (!paths || !refs)), SP_ERR_INVALID, "sp_put_lazy: NULL argument");
    SP_RETURN_IF(!loader->size || !loader->encode || !loader->decode || !loader->free, SP_ERR_INVALID,
                 "sp_put_lazy: loader '%s' lacks a method", loader->name ? loader->name : "?");
    for (size_t i = 0; i < n; i++)
        SP_RETURN_IF(!paths[i] || !paths[i][0], SP_ERR_INVALID, "sp_put_lazy: path %zu is empty", i);
    const sp_source_methods *sm = opt ? opt->source : NULL;
    SP_RETURN_IF(sm && (sm->version != 1 || !sm->open || !sm->read || !sm->close), SP_ERR_INVALID,
                 "sp_put_lazy: source methods of version %d%s (this library reads version 1, with open, read "
                 "and close)", sm ? sm->version : 0, sm && sm->version == 1 ? " lack a method" : "");
    sp_obj *one[1], **objs = n == 1 ? one : sp__malloc(n * sizeof *objs);
    SP_RETURN_IF(n && !objs, SP_ERR_NOMEM, "sp_put_lazy: out of memory");
    pthread_mutex_lock(&p->lock); /* the slab is the pool's */
    size_t made = 0;
    for (; made < n; made++)
        if (!(objs[made] = sp_lazy_obj(p, paths[made], loader, opt))) break;
    sp_status st = made == n ? SP_OK : sp__fail(SP_ERR_NOMEM, "sp_put_lazy: out of memory");
    size_t done = 0;
    for (; st == SP_OK && done < n; done++)
        if ((st = sp_slot_alloc(p, objs[done], &refs[done])) != SP_OK) break; /* done: the ones that have a slot */
    if (st == SP_OK) {
        for (size_t i = 0; i < n; i++) objs[i]->serial = ++p->serial;
        p->n_disk += n;
    } else {
        while (done-- > 0) sp_slot_free(p, objs[done]); /* undo: none registered */
    }
    pthread_mutex_unlock(&p->lock);
    if (st != SP_OK)
        for (size_t i = 0; i < made; i++) sp_obj_destroy(objs[i]);
    if (objs != one) sp__free(objs);
    return st;
}

sp_status sp_put_lazy(sp_pool *p, const char *path, const sp_type *loader, const sp_lazy_options *opt, sp_ref *ref)
{
    return sp_put_lazy_many(p, 1, &path, loader, opt, ref);
}

/* Read a spilled object back (state DISK). Lock held; released around the I/O. */
/* A registered source is loaded before its size is known: charge what it turned
 * out to be (lock held, object RESTORING and owned by this thread). On failure the
 * data is freed and nothing stays charged. */
static sp_status sp_charge_loaded(sp_pool *p, sp_obj *o, void *data, uint64_t reserved)
{
    uint64_t actual = o->type->size(data);
    p->mem_used -= reserved;
    sp_status st = actual > p->cfg.memory_bound
                       ? sp__fail(SP_ERR_TOO_BIG, "object %llu (source %s): loaded to %llu bytes, over the memory "
                                  "bound %llu", (unsigned long long)o->serial, o->source,
                                  (unsigned long long)actual, (unsigned long long)p->cfg.memory_bound)
                       : sp_evict_until(p, actual, p->cfg.memory_bound, 1);
    if (st != SP_OK) {
        pthread_mutex_unlock(&p->lock);
        o->type->free(data);
        pthread_mutex_lock(&p->lock);
        return st;
    }
    p->mem_used += actual;
    o->size = actual;
    return SP_OK;
}

static sp_status sp_restore(sp_pool *p, sp_obj *o, void **out, int mutable)
{
    if (o->size > p->cfg.memory_bound) { /* it grew past the bound while pinned */
        char b1[32], b2[32];
        return sp__fail(SP_ERR_TOO_BIG, "pin of object %llu: %s, larger than the memory bound %s",
                        (unsigned long long)o->serial, sp_format_size(o->size, b1, sizeof b1),
                        sp_format_size(p->cfg.memory_bound, b2, sizeof b2));
    }
    o->state = SP_ST_RESTORING;
    int from_source = o->lazy && !o->has_file; /* else its spill file */
    /* A spill file that is a parsed copy of an unchanged source (cache_parsed) is
     * only as good as the source: checked first, replaced by a reload if asked. */
    int copy_of_source = o->lazy && o->has_file && !o->changed && o->src_known, drop_copy = 0;
    sp_status st = sp_evict_until(p, o->size, p->cfg.memory_bound, 1);
    if (st != SP_OK) {
        o->state = SP_ST_DISK;
        pthread_cond_broadcast(&p->io_cv);
        return sp__wrap(st, "pin of object %llu", (unsigned long long)o->serial);
    }
    uint64_t reserved = o->size; /* before the read: the size it had (0 before a first load) */
    p->mem_used += reserved;
    p->mem_arriving += reserved;
    sp_flusher_poke(p);
    pthread_mutex_unlock(&p->lock);
    uint64_t t0 = sp__now_ns();
    void *data = NULL;
    if (copy_of_source && (st = sp__source_check(o->source, o->src_m, o->serial, &o->stamp)) == SP_ERR_STALE &&
        o->src_reload) {
        st = SP_OK;
        from_source = drop_copy = 1;
    }
    /* What this load finds is the object's stamp only once the pin succeeds: a load
     * that does not fit must not stand for what the caller was given. */
    sp_stamp stamp = o->stamp;
    if (st == SP_OK && from_source)
        st = sp__source_load(o->source, o->src_m, o->serial, o->type, &stamp, o->src_known, o->src_reload, &data);
    else if (st == SP_OK) st = sp_read_object(p, o, &data);
    /* A parsed copy that is gone or damaged is only a cache: the source, checked
     * unchanged above, is loaded again and the copy dropped. */
    if (copy_of_source && !from_source &&
        (st == SP_ERR_NOT_FOUND || st == SP_ERR_CORRUPT || st == SP_ERR_IO || st == SP_ERR_AUTH ||
         st == SP_ERR_PERMISSION)) {
        from_source = drop_copy = 1;
        st = sp__source_load(o->source, o->src_m, o->serial, o->type, &stamp, o->src_known, o->src_reload, &data);
    }
    int removed = 0;
    if (st == SP_OK && (drop_copy || (!o->retain && !from_source && mutable))) {
        /* Exclusive tiers: the file goes once the object is back in memory (a pin
         * for reading keeps it as a clean copy instead). It is removed before the
         * state is published, so a later spill under the same name can never be
         * deleted by this. */
        sp_remove_file(p, o);
        removed = 1;
    }
    uint64_t dt = sp__now_ns() - t0;
    pthread_mutex_lock(&p->lock);
    p->mem_arriving -= reserved;
    if (st == SP_OK && from_source) {
        p->lazy_loads++;
        st = sp_charge_loaded(p, o, data, reserved);
        reserved = 0; /* released or replaced by the real size */
        if (st == SP_OK) {
            o->stamp = stamp;
            o->src_known = 1;
        }
    }
    if (removed) sp_forget_file(p, o); /* gone even when the load then failed (a reload over the bound) */
    if (st == SP_OK) {
        o->data = data;
        o->state = SP_ST_MEM;
        o->pins = 1;
        p->n_pinned++;
        p->n_disk--;
        p->n_mem++;
        p->misses++;
        p->bytes_restored += o->size;
        if (!from_source) p->files_read++;
        p->restore_ns += dt;
        *out = data;
    } else {
        o->state = SP_ST_DISK;
        p->mem_used -= reserved;
    }
    pthread_cond_broadcast(&p->io_cv);
    return st;
}

static sp_status sp_pin_as(sp_pool *p, sp_ref ref, void **out, int mutable)
{
    SP_RETURN_IF(!p || !out, SP_ERR_INVALID, "sp_pin: NULL argument");
    pthread_mutex_lock(&p->lock);
    sp_status st;
    for (;;) {
        sp_obj *o = sp_lookup(p, ref);
        if (!o) {
            st = sp_bad_ref(ref);
            break;
        }
        if (o->state == SP_ST_MEM) {
            if (mutable) o->dirty = o->changed = 1; /* it may change: a file or source is no longer its copy */
            if (o->pins++ == 0) {
                sp_list_remove(o);
                p->n_pinned++;
            }
            p->hits++;
            *out = o->data;
            st = SP_OK;
            if (mutable && o->has_file && !o->retain) {
                /* Exclusive tiers, as a mutable pin of a spilled object: the clean copy
                 * left by a read pin goes, and its bytes leave the disk bound. Unlocked
                 * for the remove: this pin keeps the object from being spilled again
                 * under the same name before it returns. */
                sp_forget_file(p, o);
                pthread_mutex_unlock(&p->lock);
                sp_remove_file(p, o);
                pthread_mutex_lock(&p->lock);
            }
            break;
        }
        if (o->state == SP_ST_DISK) {
            st = sp_restore(p, o, out, mutable);
            if (st == SP_OK && mutable) o->dirty = o->changed = 1; /* not on failure: the source stays its home */
            break;
        }
        pthread_cond_wait(&p->io_cv, &p->lock); /* someone else's I/O on it */
    }
    pthread_mutex_unlock(&p->lock);
    return st;
}

sp_status sp_pin(sp_pool *p, sp_ref ref, void **out) { return sp_pin_as(p, ref, out, 1); }

sp_status sp_pin_read(sp_pool *p, sp_ref ref, const void **out)
{
    void *o = NULL;
    sp_status st = sp_pin_as(p, ref, out ? &o : NULL, 0);
    if (st == SP_OK) *out = o;
    return st;
}

sp_status sp_unpin(sp_pool *p, sp_ref ref)
{
    SP_RETURN_IF(!p, SP_ERR_INVALID, "sp_unpin: NULL pool");
    pthread_mutex_lock(&p->lock);
    sp_status st = SP_OK;
    sp_obj *o = sp_lookup(p, ref);
    if (!o) st = sp_bad_ref(ref);
    else if (o->pins == 0)
        st = sp__fail(SP_ERR_NOT_PINNED, "unpin of object %llu: it is not pinned", (unsigned long long)o->serial);
    else if (--o->pins == 0) {
        /* The caller may have changed the object: charge what it holds now. */
        uint64_t now = o->type->size(o->data);
        p->mem_used = p->mem_used - o->size + now;
        o->size = now;
        sp_list_push_front(p, o);
        p->n_pinned--;
        if (p->mem_used > p->cfg.memory_bound) (void)sp_evict_until(p, 0, p->cfg.memory_bound, 0);
        sp_flusher_poke(p);
    }
    pthread_mutex_unlock(&p->lock);
    return st;
}

sp_status sp_addref(sp_pool *p, sp_ref ref)
{
    SP_RETURN_IF(!p, SP_ERR_INVALID, "sp_addref: NULL pool");
    pthread_mutex_lock(&p->lock);
    sp_status st = SP_OK;
    sp_obj *o = sp_lookup(p, ref);
    if (!o) st = sp_bad_ref(ref);
    else if (o->refs == UINT32_MAX) st = sp__fail(SP_ERR_INVALID, "addref: object %llu has too many references",
                                                  (unsigned long long)o->serial);
    else o->refs++;
    pthread_mutex_unlock(&p->lock);
    return st;
}

sp_status sp_release(sp_pool *p, sp_ref ref)
{
    SP_RETURN_IF(!p, SP_ERR_INVALID, "sp_release: NULL pool");
    pthread_mutex_lock(&p->lock);
    sp_obj *o;
    for (;;) {
        o = sp_lookup(p, ref);
        if (!o) {
            pthread_mutex_unlock(&p->lock);
            return sp_bad_ref(ref);
        }
        if (o->state == SP_ST_MEM || o->state == SP_ST_DISK) break;
        pthread_cond_wait(&p->io_cv, &p->lock);
    }
    if (o->refs > 1) {
        o->refs--;
        pthread_mutex_unlock(&p->lock);
        return SP_OK;
    }
    if (o->pins > 0) {
        pthread_mutex_unlock(&p->lock);
        return sp__fail(SP_ERR_BUSY, "release of object %llu: its last reference, but it is pinned %u time(s)",
                        (unsigned long long)o->serial, o->pins);
    }
    if (o->retain && o->state == SP_ST_MEM) {
        /* Its file must outlive the release: write it, unless it is a clean copy still
         * intact; on failure nothing changes. */
        sp_list_remove(o);
        o->state = SP_ST_SPILLING;
        p->mem_leaving += o->size;
        int clean = o->has_file && !o->dirty;
        uint64_t stored = 0, enc = 0;
        pthread_mutex_unlock(&p->lock);
        int write = !clean || !sp_file_intact(p, o);
        sp_status st = write ? sp_write_object(p, o, &stored, &enc) : SP_OK;
        pthread_mutex_lock(&p->lock);
        p->mem_leaving -= o->size;
        o->state = SP_ST_MEM;
        if (st != SP_OK) {
            sp_list_push_front(p, o);
            pthread_cond_broadcast(&p->io_cv);
            pthread_mutex_unlock(&p->lock);
            return sp__wrap(st, "release of retained object %llu", (unsigned long long)o->serial);
        }
        if (write) sp_file_written(p, o, stored, enc);
        pthread_cond_broadcast(&p->io_cv);
    }
    sp_slot_free(p, o);
    if (o->state == SP_ST_MEM) {
        if (o->prev) sp_list_remove(o);
        p->mem_used -= o->size;
        p->n_mem--;
    } else {
        p->n_disk--;
    }
    /* A retained file is no longer the pool's; any other file is about to go. */
    if (o->has_file) atomic_fetch_sub(&p->disk_used, o->disk_bytes);
    int tag_held = o->has_file && !o->retain && o->tag;
    if (tag_held) {
        o->tag_next = p->tags_leaving;
        p->tags_leaving = o;
    }
    pthread_mutex_unlock(&p->lock);
    if (o->data) o->type->free(o->data);
    if (o->has_file && !o->retain) sp_remove_file(p, o);
    if (tag_held) { /* the tag is free now */
        pthread_mutex_lock(&p->lock);
        sp_obj **at = &p->tags_leaving;
        while (*at != o) at = &(*at)->tag_next;
        *at = o->tag_next;
        pthread_cond_broadcast(&p->io_cv);
        pthread_mutex_unlock(&p->lock);
    }
    sp_obj_destroy(o);
    return SP_OK;
}

sp_status sp_ref_query(sp_pool *p, sp_ref ref, sp_ref_info *info)
{
    SP_RETURN_IF(!p || !info, SP_ERR_INVALID, "sp_ref_query: NULL argument");
    pthread_mutex_lock(&p->lock);
    sp_obj *o = sp_lookup(p, ref);
    if (!o) {
        pthread_mutex_unlock(&p->lock);
        return sp_bad_ref(ref);
    }
    info->tier = (o->state == SP_ST_DISK || o->state == SP_ST_RESTORING) ? SP_TIER_DISK : SP_TIER_MEMORY;
    info->size = o->size;
    info->disk_bytes = o->has_file ? o->disk_bytes : 0;
    info->refs = o->refs;
    info->pins = o->pins;
    info->retain = o->retain;
    char name[SP_NAME_CAP];
    sp_place place;
    sp_obj_name(p, o, name, &place);
    int source = o->lazy && !o->has_file;
    if (source) snprintf(info->path, sizeof info->path, "%s", o->source);
    pthread_mutex_unlock(&p->lock);
    if (!source) p->m->describe(p->sctx, name, place, info->path, sizeof info->path);
    return SP_OK;
}
