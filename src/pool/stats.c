/* Stats: the struct, the printed pool (MemPool's show) and JSON. */
#include <string.h>

#include "pool_internal.h"

sp_status sp_pool_stats(sp_pool *p, sp_stats *s)
{
    SP_RETURN_IF(!p || !s, SP_ERR_INVALID, "sp_pool_stats: NULL argument");
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&p->lock);
    s->memory_used = p->mem_used;
    s->memory_bound = p->cfg.memory_bound;
    s->disk_used = atomic_load(&p->disk_used);
    s->disk_bound = p->cfg.disk_bound;
    s->policy = p->cfg.policy;
    s->objects_in_memory = p->n_mem;
    s->objects_on_disk = p->n_disk;
    s->objects_pinned = p->n_pinned;
    s->hits = p->hits;
    s->misses = p->misses;
    s->evictions = p->evictions;
    s->bytes_spilled = p->bytes_spilled;
    s->bytes_restored = p->bytes_restored;
    s->files_written = p->files_written;
    s->files_read = p->files_read;
    s->spill_failures = p->spill_failures;
    s->spill_seconds = (double)p->spill_ns / 1e9;
    s->restore_seconds = (double)p->restore_ns / 1e9;
    pthread_mutex_unlock(&p->lock);
    s->spill_mb_s = s->spill_seconds > 0 ? (double)s->bytes_spilled / 1e6 / s->spill_seconds : 0;
    s->restore_mb_s = s->restore_seconds > 0 ? (double)s->bytes_restored / 1e6 / s->restore_seconds : 0;
    return SP_OK;
}

sp_status sp_pool_fprint(sp_pool *p, FILE *f)
{
    sp_stats s;
    SP_FORWARD(sp_pool_stats(p, &s));
    sp_stats_fprint(&s, f);
    return SP_OK;
}

void sp_stats_fprint(const sp_stats *sp, FILE *f)
{
    const sp_stats s = *sp;
    char a[32], b[32], c[32], d[32], e[32], g[32];
    fprintf(f,
            "spillpool(policy=%s)\n"
            "  memory: %s used of %s (%llu objects, %llu pinned)\n"
            "  disk:   %s used of %s (%llu objects)\n"
            "  hits %llu, misses %llu, evictions %llu, failed spills %llu\n"
            "  spilled %s in %.3f s (%.1f MB/s), restored %s in %.3f s (%.1f MB/s)\n",
            sp_policy_name(s.policy), sp_format_size(s.memory_used, a, sizeof a),
            sp_format_size(s.memory_bound, b, sizeof b), (unsigned long long)s.objects_in_memory,
            (unsigned long long)s.objects_pinned, sp_format_size(s.disk_used, c, sizeof c),
            sp_format_size(s.disk_bound, d, sizeof d), (unsigned long long)s.objects_on_disk,
            (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.evictions,
            (unsigned long long)s.spill_failures, sp_format_size(s.bytes_spilled, e, sizeof e), s.spill_seconds,
            s.spill_mb_s, sp_format_size(s.bytes_restored, g, sizeof g), s.restore_seconds, s.restore_mb_s);
}

void sp_stats_fprint_json(const sp_stats *s, FILE *f, const char *extra)
{
    fprintf(f, "{%s%s", extra ? extra : "", extra && extra[0] ? "," : "");
    fprintf(f,
            "\"memory\":{\"used\":%llu,\"bound\":%llu,\"objects\":%llu,\"pinned\":%llu},"
            "\"disk\":{\"used\":%llu,\"bound\":%llu,\"objects\":%llu},"
            "\"policy\":\"%s\",\"hits\":%llu,\"misses\":%llu,\"evictions\":%llu,\"spill_failures\":%llu,"
            "\"bytes_spilled\":%llu,\"bytes_restored\":%llu,\"files_written\":%llu,\"files_read\":%llu,"
            "\"spill_seconds\":%.6f,\"restore_seconds\":%.6f,\"spill_mb_s\":%.1f,\"restore_mb_s\":%.1f}",
            (unsigned long long)s->memory_used, (unsigned long long)s->memory_bound,
            (unsigned long long)s->objects_in_memory, (unsigned long long)s->objects_pinned,
            (unsigned long long)s->disk_used, (unsigned long long)s->disk_bound,
            (unsigned long long)s->objects_on_disk, sp_policy_name(s->policy), (unsigned long long)s->hits,
            (unsigned long long)s->misses, (unsigned long long)s->evictions,
            (unsigned long long)s->spill_failures, (unsigned long long)s->bytes_spilled,
            (unsigned long long)s->bytes_restored, (unsigned long long)s->files_written,
            (unsigned long long)s->files_read, s->spill_seconds, s->restore_seconds, s->spill_mb_s,
            s->restore_mb_s);
}
