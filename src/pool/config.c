/* Pool configuration: defaults and the SPILLPOOL_* environment variables. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/error.h"
#include "pool_internal.h"
#include "spillpool/filter.h"
#include "spillpool/pool.h"

#define SP_GIB (1024ull * 1024 * 1024)

const char *sp_policy_name(sp_policy p) { return p == SP_POLICY_LRU ? "lru" : "mru"; }

sp_status sp_parse_policy(const char *text, sp_policy *out)
{
    SP_RETURN_IF(text == NULL, SP_ERR_INVALID, "policy: NULL");
    if (strcasecmp(text, "mru") == 0) *out = SP_POLICY_MRU;
    else if (strcasecmp(text, "lru") == 0) *out = SP_POLICY_LRU;
    else return sp__fail(SP_ERR_INVALID, "policy '%s': expected 'mru' or 'lru'", text);
    return SP_OK;
}

/* The smallest limit in file `name` of the cgroup at dir and each cgroup above it,
 * up to root (a limit anywhere above bounds this process too); UINT64_MAX if none.
 * "max" (v2) and v1's near-2^63 "no limit" are not limits. */
static uint64_t sp_cgroup_walk(const char *root, const char *path, const char *name)
{
    char dir[1024];
    uint64_t best = UINT64_MAX;
    if (snprintf(dir, sizeof dir, "%s%s", root, path) >= (int)sizeof dir) return best;
    size_t keep = strlen(root);
    for (;;) {
        size_t n = strlen(dir);
        while (n > keep && dir[n - 1] == '/') dir[--n] = '\0';
        char file[1100];
        snprintf(file, sizeof file, "%s/%s", dir, name);
        FILE *f = fopen(file, "r");
        if (f) {
            char line[64];
            if (fgets(line, sizeof line, f) && line[0] >= '0' && line[0] <= '9') {
                unsigned long long lim = strtoull(line, NULL, 10);
                if (lim > 0 && lim < (1ull << 62) && lim < best) best = lim;
            }
            fclose(f);
        }
        if (n <= keep) break;
        char *slash = strrchr(dir + keep, '/');
        if (!slash) break;
        *slash = '\0';
    }
    return best;
}

uint64_t sp__cgroup_memory_limit(const char *sysfs, const char *proc_cgroup)
{
    uint64_t best = UINT64_MAX;
    FILE *f = fopen(proc_cgroup, "r");
    if (!f) return best;
    char line[1024], root[600];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        uint64_t lim = UINT64_MAX;
        if (ctrls[0] == '\0') { /* v2: "0::/path", the hierarchy at sysfs itself (or its unified/) */
            snprintf(root, sizeof root, "%s", sysfs);
            lim = sp_cgroup_walk(root, path, "memory.max");
            snprintf(root, sizeof root, "%s/unified", sysfs);
            uint64_t u = sp_cgroup_walk(root, path, "memory.max");
            if (u < lim) lim = u;
        } else { /* v1: "N:a,memory,b:/path" */
            int memory = 0;
            for (const char *p = ctrls; *p;) {
                size_t n = strcspn(p, ",");
                memory |= n == 6 && strncmp(p, "memory", 6) == 0;
                p += n + (p[n] == ',');
            }
            if (!memory) continue;
            snprintf(root, sizeof root, "%s/memory", sysfs);
            lim = sp_cgroup_walk(root, path, "memory.limit_in_bytes");
        }
        if (lim < best) best = lim;
    }
    fclose(f);
    return best;
}

/* What this process may use: physical memory, or less if its cgroup (v1 or v2, or
 * one above it) says so. */
static uint64_t sp_machine_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t mem = (pages > 0 && psz > 0) ? (uint64_t)pages * (uint64_t)psz : 8 * SP_GIB;
    uint64_t lim = sp__cgroup_memory_limit("/sys/fs/cgroup", "/proc/self/cgroup");
    return lim < mem ? lim : mem;
}

/* Write-back headroom: a sixteenth of the memory bound, at most 64 MiB. */
static uint64_t sp_default_spill_ahead(uint64_t memory_bound)
{
    uint64_t a = memory_bound / 16;
    return a < 64ull * 1024 * 1024 ? a : 64ull * 1024 * 1024;
}

void sp_config_default(sp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    uint64_t half = sp_machine_memory() / 2;
    cfg->memory_bound = half < 8 * SP_GIB ? half : 8 * SP_GIB;
    cfg->disk_bound = 32 * SP_GIB;
    cfg->policy = SP_POLICY_MRU;
    cfg->spill_ahead = sp_default_spill_ahead(cfg->memory_bound);
}

static sp_status sp_env_size(const char *name, uint64_t *out, int allow_zero)
{
    const char *v = getenv(name);
    if (v == NULL) return SP_OK;
    uint64_t n;
    sp_status st = sp_parse_size(v, &n);
    if (st != SP_OK) return sp__wrap(st, "%s", name);
    SP_RETURN_IF(!allow_zero && n == 0, SP_ERR_INVALID, "%s='%s': must be greater than zero", name, v);
    *out = n;
    return SP_OK;
}

sp_status sp_config_from_env(sp_config *cfg)
{
    SP_RETURN_IF(cfg == NULL, SP_ERR_INVALID, "config: NULL");
    sp_config c;
    sp_config_default(&c);
    int ahead_set = getenv("SPILLPOOL_SPILL_AHEAD") != NULL;
    SP_FORWARD(sp_env_size("SPILLPOOL_MEMORY_BOUND", &c.memory_bound, 0));
    SP_FORWARD(sp_env_size("SPILLPOOL_DISK_BOUND", &c.disk_bound, 0));
    SP_FORWARD(sp_env_size("SPILLPOOL_SPILL_AHEAD", &c.spill_ahead, 1));
    if (!ahead_set) c.spill_ahead = sp_default_spill_ahead(c.memory_bound);
    const char *pol = getenv("SPILLPOOL_POLICY");
    if (pol) {
        sp_status st = sp_parse_policy(pol, &c.policy);
        if (st != SP_OK) return sp__wrap(st, "SPILLPOOL_POLICY");
    }
    const char *dir = getenv("SPILLPOOL_DIR");
    if (dir) {
        SP_RETURN_IF(dir[strspn(dir, " \t\n")] == '\0', SP_ERR_INVALID,
                     "SPILLPOOL_DIR: empty or blank (unset it for the default)");
        c.dir = dir;
    }
    const char *filters = getenv("SPILLPOOL_FILTERS");
    if (filters) {
        sp_status st = sp_filters_check(filters);
        if (st != SP_OK) return sp__wrap(st, "SPILLPOOL_FILTERS");
        c.filters = filters;
    }
    const char *cache = getenv("SPILLPOOL_PAGE_CACHE");
    if (cache) {
        sp_status st = sp_parse_page_cache(cache, &c.page_cache);
        if (st != SP_OK) return sp__wrap(st, "SPILLPOOL_PAGE_CACHE");
    }
    const char *key_file = getenv("SPILLPOOL_KEY_FILE");
    if (key_file) {
        SP_RETURN_IF(key_file[0] == '\0', SP_ERR_INVALID, "SPILLPOOL_KEY_FILE: empty (unset it for no key)");
        c.key_file = key_file;
    }
    *cfg = c;
    return SP_OK;
}
