/* Stats: the struct, the printed pool (MemPool's show) and JSON. */
#include <stdio.h>
#include <string.h>

#include "pool_internal.h"

/* Per-filter figures summed by name over every chain the pool has used. */
static void sp_filter_totals(sp_pool *p, sp_stats *s)
{
    const unsigned cap = sizeof s->filters / sizeof s->filters[0];
    for (sp_chain_node *n = p->chains; n; n = n->next)
        for (unsigned i = 0; i < n->chain.n; i++) {
            sp_stage *st = &n->chain.st[i];
            unsigned k = 0;
            while (k < s->n_filters && strcmp(s->filters[k].name, st->name) != 0) k++;
            if (k == cap) continue; /* more distinct filters than the struct holds */
            struct sp_filter_stats *t = &s->filters[k];
            if (k == s->n_filters) {
                s->n_filters++;
                snprintf(t->name, sizeof t->name, "%s", st->name);
            }
            t->frames += atomic_load_explicit(&st->frames, memory_order_relaxed);
            t->skipped += atomic_load_explicit(&st->skipped, memory_order_relaxed);
            t->shuffled += atomic_load_explicit(&st->shuffled, memory_order_relaxed);
            t->bytes_in += atomic_load_explicit(&st->bytes_in, memory_order_relaxed);
            t->bytes_out += atomic_load_explicit(&st->bytes_out, memory_order_relaxed);
            t->encode_seconds += (double)atomic_load_explicit(&st->encode_ns, memory_order_relaxed) / 1e9;
            t->decode_seconds += (double)atomic_load_explicit(&st->decode_ns, memory_order_relaxed) / 1e9;
        }
}

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
    s->lazy_loads = p->lazy_loads;
    s->clean_drops = p->clean_drops;
    s->bytes_before_filters = p->bytes_before_filters;
    s->bytes_after_filters = p->bytes_after_filters;
    s->compression_ratio =
        p->bytes_after_filters ? (double)p->bytes_before_filters / (double)p->bytes_after_filters : 0;
    sp_filter_totals(p, s);
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
            "  hits %llu, misses %llu, evictions %llu (%llu of clean copies, not written), failed spills %llu\n"
            "  spilled %s in %.3f s (%.1f MB/s), restored %s in %.3f s (%.1f MB/s)\n",
            sp_policy_name(s.policy), sp_format_size(s.memory_used, a, sizeof a),
            sp_format_size(s.memory_bound, b, sizeof b), (unsigned long long)s.objects_in_memory,
            (unsigned long long)s.objects_pinned, sp_format_size(s.disk_used, c, sizeof c),
            sp_format_size(s.disk_bound, d, sizeof d), (unsigned long long)s.objects_on_disk,
            (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.evictions,
            (unsigned long long)s.clean_drops, (unsigned long long)s.spill_failures, sp_format_size(s.bytes_spilled, e, sizeof e), s.spill_seconds,
            s.spill_mb_s, sp_format_size(s.bytes_restored, g, sizeof g), s.restore_seconds, s.restore_mb_s);
    if (s.lazy_loads) fprintf(f, "  registered sources: %llu loads\n", (unsigned long long)s.lazy_loads);
    if (s.n_filters == 0) return;
    fprintf(f, "  filters: %s before, %s after (ratio %.2f)\n", sp_format_size(s.bytes_before_filters, a, sizeof a),
            sp_format_size(s.bytes_after_filters, b, sizeof b), s.compression_ratio);
    for (unsigned i = 0; i < s.n_filters; i++) {
        const struct sp_filter_stats *t = &s.filters[i];
        fprintf(f, "    %-18s %s -> %s, %llu frames (%llu skipped, %llu shuffled), encode %.3f s, decode %.3f s\n",
                t->name, sp_format_size(t->bytes_in, a, sizeof a), sp_format_size(t->bytes_out, b, sizeof b),
                (unsigned long long)t->frames, (unsigned long long)t->skipped, (unsigned long long)t->shuffled,
                t->encode_seconds, t->decode_seconds);
    }
}

void sp_stats_fprint_json(const sp_stats *s, FILE *f, const char *extra)
{
    fprintf(f, "{%s%s", extra ? extra : "", extra && extra[0] ? "," : "");
    fprintf(f,
            "\"memory\":{\"used\":%llu,\"bound\":%llu,\"objects\":%llu,\"pinned\":%llu},"
            "\"disk\":{\"used\":%llu,\"bound\":%llu,\"objects\":%llu},"
            "\"policy\":\"%s\",\"hits\":%llu,\"misses\":%llu,\"evictions\":%llu,\"spill_failures\":%llu,"
            "\"bytes_spilled\":%llu,\"bytes_restored\":%llu,\"files_written\":%llu,\"files_read\":%llu,"
            "\"spill_seconds\":%.6f,\"restore_seconds\":%.6f,\"spill_mb_s\":%.1f,\"restore_mb_s\":%.1f",
            (unsigned long long)s->memory_used, (unsigned long long)s->memory_bound,
            (unsigned long long)s->objects_in_memory, (unsigned long long)s->objects_pinned,
            (unsigned long long)s->disk_used, (unsigned long long)s->disk_bound,
            (unsigned long long)s->objects_on_disk, sp_policy_name(s->policy), (unsigned long long)s->hits,
            (unsigned long long)s->misses, (unsigned long long)s->evictions,
            (unsigned long long)s->spill_failures, (unsigned long long)s->bytes_spilled,
            (unsigned long long)s->bytes_restored, (unsigned long long)s->files_written,
            (unsigned long long)s->files_read, s->spill_seconds, s->restore_seconds, s->spill_mb_s,
            s->restore_mb_s);
    fprintf(f, ",\"lazy_loads\":%llu,\"clean_drops\":%llu", (unsigned long long)s->lazy_loads,
            (unsigned long long)s->clean_drops);
    fprintf(f, ",\"bytes_before_filters\":%llu,\"bytes_after_filters\":%llu,\"compression_ratio\":%.4f,\"filters\":[",
            (unsigned long long)s->bytes_before_filters, (unsigned long long)s->bytes_after_filters,
            s->compression_ratio);
    for (unsigned i = 0; i < s->n_filters; i++) {
        const struct sp_filter_stats *t = &s->filters[i];
        fprintf(f,
                "%s{\"name\":\"%s\",\"frames\":%llu,\"skipped\":%llu,\"shuffled\":%llu,\"bytes_in\":%llu,"
                "\"bytes_out\":%llu,\"encode_seconds\":%.6f,\"decode_seconds\":%.6f}",
                i ? "," : "", t->name, (unsigned long long)t->frames, (unsigned long long)t->skipped,
                (unsigned long long)t->shuffled, (unsigned long long)t->bytes_in, (unsigned long long)t->bytes_out, t->encode_seconds,
                t->decode_seconds);
    }
    fputs("]}", f);
}
