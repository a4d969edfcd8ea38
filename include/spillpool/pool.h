/* spillpool pool layer: objects, references, pins, placement and stats.
 *
 * Threading contract: every function here may be called from any thread at any
 * time on the same pool, except sp_pool_close, which must not race with other calls
 * on that pool. The pool's lock is never held during disk I/O or during a type's
 * encode/decode/free, so independent objects spill and restore in parallel.
 *
 * Placement: an object lives either in memory or on disk (its spill file), not
 * both, with two exceptions that are copies, not second homes: a retained object
 * that was restored keeps its file, and an object restored by sp_pin_read keeps its
 * file until it is pinned with sp_pin (it may then change) or released. Evicting an
 * object whose file is a current copy writes nothing. Files count against the disk
 * bound as long as they exist. When a put or
 * a restore would pass the memory bound, the policy picks unpinned in-memory
 * objects and writes them to disk until the new bytes fit. A pinned object is never
 * chosen. Choosing a victim, touching an object and moving it are O(1).
 *
 * Caveats
 * - A ref is a number, not a pointer: using a released ref gives SP_ERR_BAD_REF.
 * - The pointer from sp_pin is valid until the matching sp_unpin; after that the
 *   object may be written to disk and freed at any moment.
 * - An object may be changed while pinned; its size is re-read at unpin.
 */
#ifndef SPILLPOOL_POOL_H
#define SPILLPOOL_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "status.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_pool sp_pool;
typedef uint64_t sp_ref; /* 0 is never a valid ref */
#define SP_REF_NULL ((sp_ref)0)

/* ---- Types: how the pool sizes, writes, reads and frees an object ---- */

typedef struct sp_writer sp_writer;
typedef struct sp_reader sp_reader;

/* Append len bytes to the object's stored form. Errors: whatever the store or the
 * disk bound says (SP_ERR_DISK_FULL, SP_ERR_IO). */
sp_status sp_write(sp_writer *w, const void *buf, size_t len);
/* Read exactly len bytes of the object's stored form. Reading past its end, or a
 * frame whose checksum does not match, is SP_ERR_CORRUPT. */
sp_status sp_read(sp_reader *r, void *buf, size_t len);

typedef struct sp_type {
    const char *name;
    /* Bytes the object holds in memory: charged against the memory bound. */
    size_t (*size)(const void *obj);
    /* Write the object's stored form. Must not change the object. */
    sp_status (*encode)(const void *obj, sp_writer *w);
    /* Rebuild an object from `len` bytes of stored form (what encode wrote). The bytes
     * come frame by frame, each checked before it is handed over: a frame found
     * damaged later fails that sp_read, after earlier bytes were read, so decode must
     * free what it built and return the error (the pin then returns nothing). */
    sp_status (*decode)(sp_reader *r, uint64_t len, void **obj);
    void (*free)(void *obj);
    /* Anything decode needs (options of a loader); it reads it with sp_reader_arg. */
    const void *arg;
} sp_type;

/* The type's arg, for decode. */
const void *sp_reader_arg(const sp_reader *r);
/* Nonzero when decode reads a registered source file (sp_put_lazy), zero when it
 * reads back what encode wrote. */
int sp_reader_is_source(const sp_reader *r);

/* Built-in byte buffers. The charged size is `len` (the header is not counted, so a
 * test can reason in exact bytes). */
typedef struct sp_bytes {
    size_t len;
    unsigned char data[];
} sp_bytes;
extern const sp_type sp_bytes_type;
/* A buffer of len uninitialised bytes, or NULL when out of memory. */
sp_bytes *sp_bytes_new(size_t len);
sp_bytes *sp_bytes_from(const void *data, size_t len);
void sp_bytes_free(sp_bytes *b);

/* ---- Configuration ---- */

typedef enum sp_policy {
    SP_POLICY_MRU = 0, /* evict the most recently used object (MemPool's default) */
    SP_POLICY_LRU = 1  /* evict the least recently used object */
} sp_policy;

typedef struct sp_config {
    uint64_t memory_bound; /* bytes of objects kept in memory; > 0 */
    uint64_t disk_bound;   /* bytes of spill files on disk (as stored); > 0 */
    const char *dir;       /* spill directory; NULL: $HOME/.spillpool */
    sp_policy policy;
    /* Background write-back: a writer thread keeps this many bytes of the memory
     * bound free, spilling victims before a put has to wait for them. 0: spill only
     * on demand, exactly when a bound would be passed. */
    uint64_t spill_ahead;
    /* A custom store (e.g. one that wraps the directory store); NULL: the pool opens
     * the directory store on `dir` itself. The caller keeps ownership of store_ctx
     * and must keep it alive until sp_pool_close returns. */
    const sp_store_methods *store;
    void *store_ctx;
    /* Filters for spilled bytes, e.g. "zstd:3,encrypt" (see filter.h); NULL: none. */
    const char *filters;
    /* The encryption key: 32 bytes (copied at open), or a file holding 32 raw bytes or
     * 64 hex characters, readable by its owner only (32 bytes that are all text are
     * refused: a passphrase or a short hex key, not a raw key). key wins over key_file. */
    const unsigned char *key;
    const char *key_file;
    /* The spill files' pages in the kernel's cache (see sp_page_cache in store.h);
     * applies to the directory store the pool opens itself. Default: keep. */
    sp_page_cache page_cache;
} sp_config;

/* The defaults: memory bound min(8 GiB, half of the machine's memory or of the cgroup
 * limit: the smallest of the process's cgroup and those above it, v1 or v2),
 * disk bound 32 GiB, dir NULL, policy MRU, spill_ahead min(memory_bound/16, 64 MiB). */
void sp_config_default(sp_config *cfg);

/* The defaults overridden by SPILLPOOL_MEMORY_BOUND, SPILLPOOL_DISK_BOUND,
 * SPILLPOOL_DIR, SPILLPOOL_POLICY, SPILLPOOL_SPILL_AHEAD, SPILLPOOL_FILTERS,
 * SPILLPOOL_KEY_FILE and SPILLPOOL_PAGE_CACHE. Sizes take plain bytes or units (see sp_parse_size). Strings
 * read from the environment point into it and are valid while it is unchanged.
 * Errors: SP_ERR_INVALID naming the variable and its value. */
sp_status sp_config_from_env(sp_config *cfg);

/* The checks sp_pool_open makes before it touches the spill directory: bounds,
 * spill-ahead below the memory bound, policy, page cache, the filter chain (custom
 * filters are added after open, so their names are unknown here), and a key when
 * the chain encrypts (a key file is read as open reads it, and wiped). Errors: as
 * sp_pool_open's for these. */
sp_status sp_config_check(const sp_config *cfg);

/* Parse "1073741824", "1GiB", "512M", "1.5G", "64KB". K, M, G, T, KiB, MiB, GiB,
 * TiB are powers of 1024; KB, MB, GB, TB are powers of 1000; B or no unit is bytes;
 * case-insensitive. Errors: SP_ERR_INVALID (empty, junk, negative, overflow). */
sp_status sp_parse_size(const char *text, uint64_t *out);
/* "1.50 GiB": writes at most cap bytes into buf; returns buf. */
char *sp_format_size(uint64_t bytes, char *buf, size_t cap);
const char *sp_policy_name(sp_policy p);
sp_status sp_parse_policy(const char *text, sp_policy *out);

/* ---- The pool ---- */

/* Open a pool. cfg NULL: sp_config_from_env(). Errors: SP_ERR_INVALID (a zero bound,
 * an unknown policy, a bad filter chain, encrypt without a key), the key file's
 * errors (SP_ERR_NOT_FOUND, SP_ERR_PERMISSION when others may read it, SP_ERR_INVALID
 * for a wrong length), the directory store's errors, SP_ERR_NOMEM. */
sp_status sp_pool_open(sp_pool **pool, const sp_config *cfg);

/* Free every object and the session directory; retained objects still in memory are
 * written to their files first. On failure (a retained object could not be written)
 * nothing is freed and the pool stays open and usable. */
sp_status sp_pool_close(sp_pool *pool);

typedef struct sp_put_options {
    const char *tag; /* the file name to store the object under (kept place), or NULL */
    int retain;      /* nonzero: the file outlives the release and the pool */
    /* This object's filter chain, e.g. "lz4" or "" for none; NULL: the pool's chain
     * at the time the object is spilled. */
    const char *filters;
    /* Nonzero: the object comes back pinned for reading (as by sp_pin_read), so it
     * cannot be spilled before the caller's sp_unpin; with MRU the object just put
     * is otherwise the first victim. */
    int pin;
    /* Nonzero: a file already named tag in the directory, one this pool did not write
     * (a retained file of an earlier run, say), is replaced when the object is first
     * written. By default the put fails with SP_ERR_BUSY naming it, and a spill that
     * finds one there later fails the same way (the object stays in memory), even one
     * made while the object is being written (the built-in store puts a tag's first
     * file in place with link(), which never replaces). */
    int replace;
} sp_put_options;

/* Hand obj to the pool; on success the pool owns it and *ref has one reference.
 * May spill other objects to make room (outside the lock).
 * Errors: SP_ERR_INVALID (NULL args, a tag that is not a plain file name),
 * SP_ERR_TOO_BIG (larger than a bound), SP_ERR_MEMORY_FULL (pinned objects hold the
 * bound), SP_ERR_DISK_FULL / SP_ERR_IO (a victim could not be written: it stays in
 * memory), SP_ERR_NOMEM. On any error the caller still owns obj. */
sp_status sp_put(sp_pool *pool, void *obj, const sp_type *type, const sp_put_options *opt,
                 sp_ref *ref);

/* Pin: bring the object into memory (reading it back if it was spilled) and keep it
 * there until sp_unpin. Pins nest. If two threads pin the same spilled object, one
 * reads it and the other waits for that read. The object may change while pinned, so
 * a file it had stops being its copy and is removed (unless it is retained).
 * Errors: SP_ERR_BAD_REF, SP_ERR_MEMORY_FULL, SP_ERR_TOO_BIG (it grew past the memory
 * bound while pinned before: it stays on disk until released), SP_ERR_NOT_FOUND
 * (spill file gone), SP_ERR_CORRUPT (file truncated or altered: checksum),
 * SP_ERR_IO, SP_ERR_NOMEM. On error the object stays where it was; nothing partial
 * is ever returned. */
sp_status sp_pin(sp_pool *pool, sp_ref ref, void **obj);
/* Pin for reading only: the same as sp_pin, but the caller promises not to change
 * the object, so its spill file (or registered source) stays a valid copy and its
 * next eviction costs no write. */
sp_status sp_pin_read(sp_pool *pool, sp_ref ref, const void **obj);
/* The object's size is read again here (it may have changed while pinned). One that
 * grew past the memory bound is spilled and cannot be pinned again (SP_ERR_TOO_BIG).
 * Errors: SP_ERR_BAD_REF, SP_ERR_NOT_PINNED. */
sp_status sp_unpin(sp_pool *pool, sp_ref ref);

/* ---- Registered source files: data already on disk, read when first used ---- */

/* A source that is not a local file path (a key in an object store, a file on a
 * network service, a blob in a database), read through the caller's methods. The
 * caller keeps the struct and ctx alive while objects registered with it live; the
 * methods may be called from any thread, several at once. */
typedef struct sp_source_methods {
    int version; /* 1 */
    void *ctx;
    /* Open `handle` for reading: *file goes to read and close; *size is its length in
     * bytes; *version is a value that changes whenever its content does (an mtime, a
     * hash of an etag). Errors: SP_ERR_NOT_FOUND, SP_ERR_PERMISSION, SP_ERR_IO, with a
     * detail message (sp_last_error) set through the caller's own means or left "". */
    sp_status (*open)(void *ctx, const char *handle, void **file, uint64_t *size, uint64_t *version);
    /* Read up to len bytes at offset into buf; *got is how many (0 only at the end). */
    sp_status (*read)(void *file, uint64_t offset, void *buf, size_t len, size_t *got);
    void (*close)(void *file);
} sp_source_methods;

typedef struct sp_lazy_options {
    /* A source that changed since its last load is loaded again (0: SP_ERR_STALE). */
    int reload;
    /* Eviction writes the loaded (parsed) object to the spill directory, for loaders
     * whose parse costs more than reading the source again (0: drop it, re-read).
     * The source is still checked (stat, or the methods' open) before the copy is
     * read back: stale, reloaded or not found as without it. A copy that is gone or
     * fails its checks is a cache miss: the unchanged source is loaded again. One
     * that cannot be written (a full disk bound, say) is skipped: the object leaves
     * memory as a clean copy of its source (counted in spill_failures). */
    int cache_parsed;
    /* Handles are read through these methods; NULL: handles are file paths. */
    const sp_source_methods *source;
} sp_lazy_options;

/* Register the file at path (or, with opt->source, any handle those methods open)
 * as an object whose stored form is the file's bytes, read
 * by loader->decode(reader, file size, &obj) on the first pin. Registration does no
 * I/O at all (no open, no stat): a missing or unreadable file is reported by the pin
 * that needs it, for that object only. The file is never written or deleted by the
 * pool. While the object was only pinned with sp_pin_read, evicting it frees its
 * memory without writing anything; after an sp_pin it is an ordinary object. Its
 * memory size is known after the first load: that load reads first, then makes room
 * (so the pool's memory can pass the bound by one object for the moment between).
 * At each load the file's size, times and identity are recorded; a file that
 * changed by the next load gives SP_ERR_STALE (or is reloaded, with opt->reload);
 * one that changes during a load is refused, never half old and half new.
 * With opt->source the version the methods give stands for the times and identity;
 * a load opens the handle a second time after the read, to see the version unchanged.
 * A load that fails, or that does not fit under the memory bound, records nothing.
 * Errors: SP_ERR_INVALID (NULL or empty path, a loader lacking methods, source methods
 * of another version or lacking one), SP_ERR_NOMEM. */
sp_status sp_put_lazy(sp_pool *pool, const char *path, const sp_type *loader, const sp_lazy_options *opt,
                      sp_ref *ref);
/* Register n files under one lock: refs[i] for paths[i]. On error none is registered. */
sp_status sp_put_lazy_many(sp_pool *pool, size_t n, const char *const *paths, const sp_type *loader,
                           const sp_lazy_options *opt, sp_ref *refs);

/* Add a reference. Errors: SP_ERR_BAD_REF. */
sp_status sp_addref(sp_pool *pool, sp_ref ref);
/* Drop a reference. The last one frees the object and its file; a retained object's
 * file is written if needed and kept. Errors: SP_ERR_BAD_REF, SP_ERR_BUSY (the last
 * reference of a pinned object), and for a retained object the write's errors (then
 * the reference is not dropped). */
sp_status sp_release(sp_pool *pool, sp_ref ref);

typedef enum sp_tier { SP_TIER_MEMORY = 0, SP_TIER_DISK = 1 } sp_tier;

typedef struct sp_ref_info {
    sp_tier tier;
    uint64_t size;       /* charged memory size */
    uint64_t disk_bytes; /* bytes of its file, 0 if none */
    uint32_t refs, pins;
    int retain;
    char path[512];      /* where its file is or would be */
} sp_ref_info;
sp_status sp_ref_query(sp_pool *pool, sp_ref ref, sp_ref_info *info);

/* ---- Stats ---- */

typedef struct sp_stats {
    uint64_t memory_used, memory_bound;
    uint64_t disk_used, disk_bound;
    sp_policy policy;
    uint64_t objects_in_memory, objects_on_disk, objects_pinned;
    uint64_t hits;       /* pins of objects already in memory */
    uint64_t misses;     /* pins that read the object back from disk */
    uint64_t evictions;  /* objects written to disk to make room */
    uint64_t bytes_spilled, bytes_restored; /* object bytes (charged sizes) moved */
    uint64_t files_written, files_read;
    uint64_t spill_failures; /* spills that failed (the object stayed in memory) */
    double spill_seconds, restore_seconds;  /* summed over threads */
    double spill_mb_s, restore_mb_s;        /* bytes / seconds above, 0 if none */
    /* Spill files written: the objects' stored form before filters, and the bytes
     * that reached the disk after them (headers included). */
    uint64_t bytes_before_filters, bytes_after_filters;
    double compression_ratio; /* before / after; 0 if nothing written */
    /* Registered sources: loads run (each opens the file once); and evictions that
     * wrote nothing because the object was a clean copy of its spill file or source
     * (also counted in evictions). */
    uint64_t lazy_loads, clean_drops;
    /* Per filter (by canonical name, over every chain used; the first 8 names): frames
     * run, frames it skipped (compression that did not pay), frames it byte-shuffled
     * before compressing (of those run), bytes in and out, time. */
    unsigned n_filters;
    struct sp_filter_stats {
        char name[32];
        uint64_t frames, skipped, shuffled, bytes_in, bytes_out;
        double encode_seconds, decode_seconds;
    } filters[8];
} sp_stats;

sp_status sp_pool_stats(sp_pool *pool, sp_stats *out);
/* The pool as text: memory used/bound, disk used/bound, policy, objects, hits,
 * misses, evictions, bytes and throughput. */
sp_status sp_pool_fprint(sp_pool *pool, FILE *f);
/* The same text for stats taken earlier. */
void sp_stats_fprint(const sp_stats *s, FILE *f);
/* The stats as one JSON object: {"memory":{"used":..,"bound":..},"disk":{..},
 * "policy":..,"hits":..}. `extra`, if not NULL, is inserted first: members already in
 * JSON form, e.g. "\"checksum\":\"0x12\",\"seconds\":1.5". No newline is printed. */
void sp_stats_fprint_json(const sp_stats *s, FILE *f, const char *extra);

/* The session directory (for `du`), or NULL with a custom store. */
const char *sp_pool_session_dir(sp_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
