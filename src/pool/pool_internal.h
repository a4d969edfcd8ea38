/* The pool's private state, shared by pool.c and stats.c.
 *
 * Locking: `lock` guards every field below except disk_used (atomic: charged by
 * writers outside the lock as bytes are written). An object in a transitional
 * state (SPILLING, RESTORING) belongs to the one thread doing its I/O; every other
 * thread that needs it waits on io_cv, which is broadcast whenever a transition
 * ends. Memory is reserved (mem_used) before a restore or a put, so two threads can
 * never both take the last free bytes.
 */
#ifndef SP_POOL_INTERNAL_H
#define SP_POOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include "../common/error.h"
#include "../filter/chain.h"
#include "lazy.h"
#include "spillpool/pool.h"

/* The spill directory when the configuration names none: $HOME/.spillpool, HOME
 * from the password database when unset or empty (malloc'd into *out). */
SP_HIDDEN sp_status sp__default_dir(char **out);

/* The memory limit the cgroups of this process set (v2 memory.max, v1
 * memory.limit_in_bytes, the smallest along the path up to the root), read from the
 * hierarchy mounted at sysfs and the process's proc_cgroup file; UINT64_MAX if none.
 * Parameters for tests; the pool passes /sys/fs/cgroup and /proc/self/cgroup. */
SP_HIDDEN uint64_t sp__cgroup_memory_limit(const char *sysfs, const char *proc_cgroup);

enum sp_state { SP_ST_MEM, SP_ST_DISK, SP_ST_SPILLING, SP_ST_RESTORING };

typedef struct sp_obj {
    struct sp_obj *prev, *next; /* recency list: unpinned in-memory objects only */
    struct sp_obj *vnext;       /* a thread's private list of victims being spilled */
    struct sp_obj *tag_next;    /* in sp_pool.tags_leaving */
    void *data;                 /* NULL while on disk */
    const sp_type *type;
    char *tag;                  /* the caller's file name, or NULL */
    uint64_t serial;            /* names the spill file of an untagged object */
    uint64_t size;              /* charged memory bytes */
    uint64_t enc_len;           /* bytes encode wrote (what decode will read) */
    uint64_t disk_bytes;        /* bytes of its file; 0 when it has none */
    sp_chain *chain;            /* its own chain (sp_put_options.filters), or NULL */
    sp_chain *file_chain;       /* the chain that wrote its file */
    unsigned char file_id[SP_FILE_ID_BYTES]; /* the random id in its file's header */
    uint32_t refs, pins, slot;
    uint8_t state, retain, has_file, replace;
    /* A registered source (sp_put_lazy): while the object is clean its home is the
     * source file, so eviction drops it; a mutable pin makes it dirty for good. */
    uint8_t lazy, dirty, src_known, src_reload, src_cache, in_slab;
    uint8_t changed; /* a registered object pinned mutably: its own data from then on, never the source's */
    const char *source; /* stored after the object, in the same allocation */
    const sp_source_methods *src_m; /* how to read it; NULL: a file path */
    sp_stamp stamp;
} sp_obj;

typedef struct sp_chain_node {
    struct sp_chain_node *next;
    sp_chain chain;
} sp_chain_node;

/* Registered sources are many and small: they are cut from 2 MiB slabs (one page
 * fault each with huge pages, instead of one per 4 KiB of objects), each freed when
 * its last object goes. The current slab holds a reference of its own. */
typedef struct sp_slab {
    _Atomic uint64_t live;
    size_t used;
} sp_slab;

typedef struct sp_slot {
    sp_obj *obj;
    uint32_t gen;
    uint32_t next_free;
} sp_slot;

struct sp_pool {
    pthread_mutex_t lock;
    pthread_cond_t io_cv;
    sp_config cfg;
    char *dir;
    const sp_store_methods *m;
    void *sctx;
    int own_store;
    uint64_t id; /* names retained files */

    sp_slot *slots;
    uint32_t nslots, cap, free_head;
    sp_obj lru; /* sentinel: lru.next is the most recently used */
    /* Released tagged objects whose file is being removed: their tag is not free for
     * a new object until then, or the late remove would delete the new one's file. */
    sp_obj *tags_leaving;

    uint64_t mem_used;    /* in memory, in flight and reserved */
    uint64_t mem_leaving; /* of mem_used: objects being spilled right now */
    uint64_t mem_arriving; /* of mem_used: reserved by restores in flight */
    _Atomic uint64_t disk_used;
    uint64_t serial;

    uint64_t n_mem, n_disk, n_pinned;
    uint64_t hits, misses, evictions, bytes_spilled, bytes_restored, files_written, files_read;
    uint64_t spill_ns, restore_ns, spill_failures;
    uint64_t bytes_before_filters, bytes_after_filters;
    uint64_t lazy_loads, clean_drops;

    /* filters: every chain used stays until close, since files point at them */
    sp_chain_node *chains;
    sp_chain *_Atomic chain; /* the pool's chain for spills from now on */
    sp_filter_def custom[SP_CUSTOM_MAX];
    unsigned ncustom;
    unsigned char *key; /* SP_KEY_BYTES in locked memory, or NULL */
    sp_slab *slab;      /* where registrations are cut from now, or NULL */

    /* write-back thread (cfg.spill_ahead > 0) */
    pthread_t flusher;
    pthread_cond_t flush_cv;
    int flusher_running, stopping;
};

#endif
