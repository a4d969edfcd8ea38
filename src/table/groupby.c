/* Reductions and group-by over partitions: one task per partition folds its rows
 * into per-group accumulators (a small pool object), and the caller merges them in
 * partition order as they arrive. Also the key map both use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../common/alloc.h"
#include "dtable.h"

/* ---- the key map ---- */

void sp__keymap_init(sp__keymap *m) { memset(m, 0, sizeof *m); }

void sp__keymap_free(sp__keymap *m)
{
    sp__free(m->slots);
    sp__free(m->blob);
    sp__free(m->off);
    sp__free(m->len);
    memset(m, 0, sizeof *m);
}

const char *sp__keymap_key(const sp__keymap *m, uint32_t idx, uint32_t *len)
{
    *len = m->len[idx];
    return m->blob + m->off[idx];
}

static sp_status sp_keymap_rehash(sp__keymap *m, uint32_t cap)
{
    uint32_t *slots = sp__calloc(cap, sizeof *slots);
    SP_RETURN_IF(!slots, SP_ERR_NOMEM, "table: out of memory");
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t h = XXH3_64bits(m->blob + m->off[i], m->len[i]);
        uint32_t s = (uint32_t)h & (cap - 1);
        while (slots[s]) s = (s + 1) & (cap - 1);
        slots[s] = i + 1;
    }
    sp__free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return SP_OK;
}

sp_status sp__keymap_get(sp__keymap *m, const void *key, uint32_t len, int insert, uint32_t *idx)
{
    if (m->cap == 0) SP_FORWARD(sp_keymap_rehash(m, 64));
    uint64_t h = XXH3_64bits(key, len);
    uint32_t s = (uint32_t)h & (m->cap - 1);
    for (; m->slots[s]; s = (s + 1) & (m->cap - 1)) {
        uint32_t i = m->slots[s] - 1;
        if (m->len[i] == len && memcmp(m->blob + m->off[i], key, len) == 0) {
            *idx = i;
            return SP_OK;
        }
    }
    if (!insert) return SP_ERR_NOT_FOUND;
    if (m->n == m->nalloc) {
        uint32_t na = m->nalloc ? m->nalloc * 2 : 16;
        uint64_t *off = sp__realloc(m->off, na * sizeof *off);
        if (off) m->off = off;
        uint32_t *l = off ? sp__realloc(m->len, na * sizeof *l) : NULL;
        if (l) m->len = l;
        SP_RETURN_IF(!off || !l, SP_ERR_NOMEM, "table: out of memory");
        m->nalloc = na;
    }
    if (m->blob_len + len + 1 > m->blob_cap) {
        size_t cap = m->blob_cap ? m->blob_cap : 256;
        while (cap < m->blob_len + len + 1) cap *= 2;
        char *b = sp__realloc(m->blob, cap);
        SP_RETURN_IF(!b, SP_ERR_NOMEM, "table: out of memory");
        m->blob = b;
        m->blob_cap = cap;
    }
    memcpy(m->blob + m->blob_len, key, len);
    m->blob[m->blob_len + len] = '\0';
    m->off[m->n] = m->blob_len;
    m->len[m->n] = len;
    m->blob_len += len + 1;
    m->slots[s] = m->n + 1;
    *idx = m->n++;
    if ((uint64_t)m->n * 4 > (uint64_t)m->cap * 3) SP_FORWARD(sp_keymap_rehash(m, m->cap * 2));
    return SP_OK;
}

sp_status sp__keymap_to_dict(const sp__keymap *m, sp_column *col)
{
    const char **s = sp__malloc((m->n ? m->n : 1) * sizeof *s);
    SP_RETURN_IF(!s, SP_ERR_NOMEM, "table: out of memory");
    for (uint32_t i = 0; i < m->n; i++) s[i] = m->blob + m->off[i];
    sp_status st = sp__column_set_dict(col, m->n, s, m->len);
    sp__free(s);
    return st;
}

/* ---- aggregates ---- */

static const char *const sp_agg_names[] = {"count", "sum", "min", "max", "mean"};

const char *sp_agg_name(sp_agg_fn fn) { return (unsigned)fn < 5 ? sp_agg_names[fn] : "unknown"; }

sp_status sp_agg_parse(const char *text, sp_agg *out)
{
    SP_RETURN_IF(!text || !out, SP_ERR_INVALID, "aggregate: NULL argument");
    const char *colon = strchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : strlen(text);
    for (unsigned f = 0; f < 5; f++)
        if (strlen(sp_agg_names[f]) == n && strncmp(text, sp_agg_names[f], n) == 0) {
            out->fn = (sp_agg_fn)f;
            out->column = colon ? colon + 1 : NULL;
            SP_RETURN_IF(f != SP_AGG_COUNT && (!colon || !colon[1]), SP_ERR_INVALID,
                         "aggregate '%s': %s needs a column, as in %s:price", text, sp_agg_names[f], sp_agg_names[f]);
            return SP_OK;
        }
    return sp__fail(SP_ERR_INVALID, "aggregate '%s': unknown function (count, sum, min, max, mean)", text);
}

/* An integral sum is kept exactly in two words (ihi * 2^64 + ilo), so a partial sum
 * past int64 that comes back in range is not an error, whatever the partitioning:
 * only a final sum outside int64 is. */
typedef struct {
    uint64_t n;      /* rows */
    uint64_t nnum;   /* values that are numbers (not NaN) */
    uint64_t ilo;
    int64_t ihi, imin, imax;
    double sum, min, max;
} sp_acc;

/* Add hi * 2^64 + lo to x's integral sum. ihi cannot overflow: fewer than 2^64 rows
 * of at most 2^63 each stay within 2^127. */
static void sp_acc_add(sp_acc *x, int64_t hi, uint64_t lo)
{
    x->ihi += hi + __builtin_add_overflow(x->ilo, lo, &x->ilo);
}

/* The integral sum in *out; returns 0 if it does not fit in int64. */
static int sp_acc_isum(const sp_acc *x, int64_t *out)
{
    if (x->ilo <= INT64_MAX) {
        *out = (int64_t)x->ilo;
        return x->ihi == 0;
    }
    *out = -(int64_t)~x->ilo - 1; /* two's complement, without an out-of-range conversion */
    return x->ihi == -1;
}

/* The mean of x's numbers. An integral column's comes from the exact sum, divided
 * with one rounding: the double sum of values that cancel can lose everything
 * (2^62 + 1 - 2^62 gave 0), and quotient plus remainder/n rounds twice. */
static double sp_acc_mean(const sp_acc *x, int is_int)
{
    if (!x->nnum) return NAN;
    if (!is_int) return x->sum / (double)x->nnum;
    __int128 s = (__int128)(((unsigned __int128)(uint64_t)x->ihi << 64) | x->ilo);
    if (s == 0) return 0.0;
    unsigned __int128 a = s < 0 ? -(unsigned __int128)s : (unsigned __int128)s; /* below 2^127 */
    uint64_t hi = (uint64_t)(a >> 64), lo = (uint64_t)a;
    int lead = hi ? __builtin_clzll(hi) : 64 + __builtin_clzll(lo);
    int k = lead - 1; /* a << k stays below 2^127: its quotient by n keeps 62 bits or more */
    unsigned __int128 num = a << k, t = num / x->nnum;
    if (num % x->nnum) t |= 1; /* round to odd: the conversion below then rounds once, right */
    double d = ldexp((double)t, -k);
    return s < 0 ? -d : d;
}

static void sp_acc_init(sp_acc *a)
{
    memset(a, 0, sizeof *a);
    a->imin = INT64_MAX;
    a->imax = INT64_MIN;
    a->min = INFINITY;
    a->max = -INFINITY;
}

static void sp_acc_merge(sp_acc *a, const sp_acc *b)
{
    a->n += b->n;
    a->nnum += b->nnum;
    sp_acc_add(a, b->ihi, b->ilo);
    a->sum += b->sum;
    if (b->imin < a->imin) a->imin = b->imin;
    if (b->imax > a->imax) a->imax = b->imax;
    if (b->min < a->min) a->min = b->min;
    if (b->max > a->max) a->max = b->max;
}

/* What every partial task needs: the key column (-1: one group), the aggregates'
 * columns (-1 for count) and whether each is integral. */
typedef struct {
    int key;
    sp_col_type key_type;
    uint32_t naggs;
    int col[16];
    int is_int[16];
    int count_only;
} sp_gb;

static int64_t sp_i64_of(const sp_column *col, uint64_t r)
{
    return col->type == SP_COL_INT64 ? col->i64[r] : col->codes ? col->u8[col->codes[r]] : col->u8[r];
}

/* The key of row r as bytes: the string, or 8 bytes of the int64 / double. Keys
 * are compared as bytes, so a double's -0.0 becomes 0.0 and every NaN one NaN:
 * values that compare equal (and all NaNs) make one group. */
static const void *sp_key_of(const sp_column *col, uint64_t r, uint64_t *tmp, uint32_t *len)
{
    if (col->type == SP_COL_STRING) {
        *len = col->dict_len[col->codes[r]];
        return col->dict[col->codes[r]];
    }
    if (col->type == SP_COL_DOUBLE) {
        double d = col->f64[r];
        if (d == 0) d = 0.0;
        else if (isnan(d)) d = NAN;
        memcpy(tmp, &d, 8);
    } else {
        int64_t v = sp_i64_of(col, r);
        memcpy(tmp, &v, 8);
    }
    *len = 8;
    return tmp;
}

/* Room for n groups' accumulators (new ones initialised). */
static sp_status sp_accs_reserve(const sp_gb *gb, uint32_t n, sp_acc **accs, uint32_t *cap)
{
    if (n <= *cap) return SP_OK;
    uint32_t nc = n * 2;
    sp_acc *a = sp__realloc(*accs, (size_t)nc * gb->naggs * sizeof *a);
    SP_RETURN_IF(!a, SP_ERR_NOMEM, "group-by: out of memory");
    for (size_t i = (size_t)*cap * gb->naggs; i < (size_t)nc * gb->naggs; i++) sp_acc_init(&a[i]);
    *accs = a;
    *cap = nc;
    return SP_OK;
}

/* Fold one partition: keys in km, accumulators in *accs (ngroups x naggs). */
static sp_status sp_fold(const sp_gb *gb, const sp_table *p, sp__keymap *km, sp_acc **accs, uint32_t *cap)
{
    uint32_t *g = sp__malloc((p->nrows ? p->nrows : 1) * sizeof *g);
    SP_RETURN_IF(!g, SP_ERR_NOMEM, "group-by: out of memory");
    sp_status st = SP_OK;
    const sp_column *kc = gb->key >= 0 ? &p->cols[gb->key] : NULL;
    uint64_t tmp;
    uint32_t len;
    if (!kc) {
        uint32_t i;
        st = sp__keymap_get(km, "", 0, 1, &i);
        memset(g, 0, p->nrows * sizeof *g);
    } else if (kc->codes) {
        /* Dictionary-coded: look each value that occurs up once (a filtered
         * partition keeps its whole dictionary, so some may not). */
        uint32_t *map = sp__calloc(kc->ndict ? kc->ndict : 1, sizeof *map);
        if (!map) st = sp__fail(SP_ERR_NOMEM, "group-by: out of memory");
        for (uint64_t r = 0; map && r < p->nrows; r++) map[kc->codes[r]] = 1;
        for (uint32_t k = 0; k < kc->ndict && st == SP_OK; k++) {
            if (!map[k]) continue;
            const void *key = kc->type == SP_COL_STRING ? (const void *)kc->dict[k] : (const void *)&tmp;
            len = kc->type == SP_COL_STRING ? kc->dict_len[k] : 8;
            if (kc->type != SP_COL_STRING) {
                int64_t v = kc->u8[k];
                memcpy(&tmp, &v, 8);
            }
            st = sp__keymap_get(km, key, len, 1, &map[k]);
        }
        for (uint64_t r = 0; r < p->nrows && st == SP_OK; r++) g[r] = map[kc->codes[r]];
        sp__free(map);
    } else
        for (uint64_t r = 0; r < p->nrows && st == SP_OK; r++) {
            const void *key = sp_key_of(kc, r, &tmp, &len);
            st = sp__keymap_get(km, key, len, 1, &g[r]);
        }
    if (st == SP_OK) st = sp_accs_reserve(gb, km->n, accs, cap);
    if (st != SP_OK) {
        sp__free(g);
        return st;
    }
    sp_acc *acc = *accs;
    uint32_t na = gb->naggs;
    if (gb->count_only) {
        for (uint64_t r = 0; r < p->nrows; r++) acc[(size_t)g[r] * na].n++;
        for (uint32_t i = 0; i < km->n; i++)
            for (uint32_t a = 1; a < na; a++) acc[(size_t)i * na + a].n = acc[(size_t)i * na].n;
    } else
        for (uint32_t a = 0; a < na; a++) {
            const sp_column *c = gb->col[a] >= 0 ? &p->cols[gb->col[a]] : NULL;
            for (uint64_t r = 0; r < p->nrows; r++) {
                sp_acc *x = &acc[(size_t)g[r] * na + a];
                x->n++;
                if (!c) continue;
                if (gb->is_int[a]) {
                    int64_t v = sp_i64_of(c, r);
                    sp_acc_add(x, v < 0 ? -1 : 0, (uint64_t)v);
                    if (v < x->imin) x->imin = v;
                    if (v > x->imax) x->imax = v;
                    x->sum += (double)v;
                    x->nnum++;
                    continue;
                }
                double v = c->f64[r];
                if (isnan(v)) continue;
                x->sum += v;
                if (v < x->min) x->min = v;
                if (v > x->max) x->max = v;
                x->nnum++;
            }
        }
    /* Integral columns keep min/max in both forms, so merging needs no type. */
    for (uint32_t i = 0; i < km->n; i++)
        for (uint32_t a = 0; a < na; a++) {
            sp_acc *x = &acc[(size_t)i * na + a];
            if (gb->is_int[a] && x->nnum) {
                x->min = (double)x->imin;
                x->max = (double)x->imax;
            }
        }
    sp__free(g);
    return SP_OK;
}

/* A partial: u32 ngroups, u32 naggs, accumulators, then (u32 len, key bytes) each. */
static sp_status sp_task_partial(sp_task_ctx *ctx, void *user)
{
    const sp_gb *gb = user;
    const sp_table *p = sp_task_input(ctx, 0);
    sp__keymap km;
    sp__keymap_init(&km);
    sp_acc *accs = NULL;
    uint32_t cap = 0;
    sp_status st = sp_fold(gb, p, &km, &accs, &cap);
    size_t accb = (size_t)km.n * gb->naggs * sizeof(sp_acc);
    sp_bytes *b = st == SP_OK ? sp_bytes_new(8 + accb + (size_t)km.n * 4 + km.blob_len) : NULL;
    if (st == SP_OK && !b) st = sp__fail(SP_ERR_NOMEM, "group-by: out of memory");
    if (st == SP_OK) {
        uint32_t hdr[2] = {km.n, gb->naggs};
        unsigned char *at = b->data;
        memcpy(at, hdr, 8);
        if (accb) memcpy(at + 8, accs, accb);
        at += 8 + accb;
        for (uint32_t i = 0; i < km.n; i++) {
            uint32_t len;
            const char *k = sp__keymap_key(&km, i, &len);
            memcpy(at, &len, 4);
            memcpy(at + 4, k, len);
            at += 4 + len;
        }
        b->len = (size_t)(at - b->data);
        sp_task_set_result(ctx, b, &sp_bytes_type);
    }
    sp__keymap_free(&km);
    sp__free(accs);
    return st;
}

/* Merge a partial into the totals. */
static sp_status sp_merge(const sp_gb *gb, const sp_bytes *b, sp__keymap *km, sp_acc **accs, uint32_t *cap)
{
    uint32_t hdr[2];
    memcpy(hdr, b->data, 8);
    const unsigned char *ap = b->data + 8, *kp = ap + (size_t)hdr[0] * hdr[1] * sizeof(sp_acc);
    for (uint32_t i = 0; i < hdr[0]; i++) {
        uint32_t len, g;
        memcpy(&len, kp, 4);
        SP_FORWARD(sp__keymap_get(km, kp + 4, len, 1, &g));
        kp += 4 + len;
        SP_FORWARD(sp_accs_reserve(gb, g + 1, accs, cap));
        for (uint32_t a = 0; a < gb->naggs; a++) {
            sp_acc x;
            memcpy(&x, ap + ((size_t)i * hdr[1] + a) * sizeof x, sizeof x);
            sp_acc_merge(&(*accs)[(size_t)g * gb->naggs + a], &x);
        }
    }
    return SP_OK;
}

static sp_status sp_gb_setup(sp_dtable *t, const char *key, uint32_t naggs, const sp_agg *aggs, const char *what,
                             sp_gb *gb)
{
    SP_RETURN_IF(!t || (naggs && !aggs), SP_ERR_INVALID, "%s: NULL argument", what);
    SP_RETURN_IF(naggs > 16, SP_ERR_INVALID, "%s: %u aggregates (at most 16)", what, naggs);
    memset(gb, 0, sizeof *gb);
    gb->key = -1;
    if (key) {
        SP_FORWARD(sp__dtable_column(t, key, what, &gb->key));
        gb->key_type = t->schema->cols[gb->key].type;
    }
    gb->naggs = naggs ? naggs : 1; /* no aggregates: count */
    gb->count_only = 1;
    for (uint32_t a = 0; a < gb->naggs; a++) {
        gb->col[a] = -1;
        if (!naggs || aggs[a].fn == SP_AGG_COUNT) continue;
        SP_RETURN_IF((unsigned)aggs[a].fn > SP_AGG_MEAN, SP_ERR_INVALID, "%s: unknown aggregate %d", what, (int)aggs[a].fn);
        gb->count_only = 0;
        SP_FORWARD(sp__dtable_column(t, aggs[a].column, what, &gb->col[a]));
        const sp_column *c = &t->schema->cols[gb->col[a]];
        SP_RETURN_IF(c->type == SP_COL_STRING, SP_ERR_INVALID, "%s: %s of column '%s', which holds strings (only count "
                     "applies to strings)", what, sp_agg_name(aggs[a].fn), c->name);
        gb->is_int[a] = c->type != SP_COL_DOUBLE;
    }
    return SP_OK;
}

/* Spawn the partial tasks, then merge them in order as they end: keys in km (set up
 * here), accumulators in *accs (the caller frees both, whatever the status). */
static sp_status sp_gb_run(sp_dtable *t, const sp_gb *gb, sp__keymap *km, sp_acc **accs, uint32_t *cap)
{
    sp__keymap_init(km);
    *accs = NULL;
    *cap = 0;
    sp_task **tasks = sp__calloc(t->nparts ? t->nparts : 1, sizeof *tasks);
    SP_RETURN_IF(!tasks, SP_ERR_NOMEM, "group-by: out of memory");
    sp_status st = SP_OK;
    uint32_t spawned = 0;
    for (; spawned < t->nparts && st == SP_OK; spawned++) {
        char name[32];
        snprintf(name, sizeof name, "%s %u", gb->key >= 0 ? "group-by" : "reduce", spawned);
        sp_spawn_options o = {name, 4096};
        st = sp_spawn(t->dag, sp_task_partial, (void *)gb, 1, &t->parts[spawned], &o, &tasks[spawned]);
        if (st != SP_OK) break;
    }
    char why[1024] = "";
    for (uint32_t i = 0; i < spawned; i++) {
        if (st != SP_OK) { /* stop the rest; each must end before gb goes away */
            if (!why[0]) snprintf(why, sizeof why, "%s", sp_last_error());
            sp_task_cancel(t->dag, tasks[i]);
            (void)sp_fetch(t->dag, tasks[i], NULL);
            sp_task_release(t->dag, tasks[i]);
            continue;
        }
        sp_ref r = SP_REF_NULL;
        st = sp_fetch(t->dag, tasks[i], &r);
        const void *obj;
        if (st == SP_OK && (st = sp_pin_read(t->pool, r, &obj)) == SP_OK) {
            st = sp_merge(gb, obj, km, accs, cap);
            (void)sp_unpin(t->pool, r);
        }
        if (r != SP_REF_NULL) (void)sp_release(t->pool, r);
        sp_task_release(t->dag, tasks[i]);
    }
    sp__free(tasks);
    if (st != SP_OK && why[0]) return sp__fail(st, "%s", why); /* the first failure, not a cancellation's */
    return st;
}

sp_status sp_dtable_reduce(sp_dtable *t, uint32_t naggs, const sp_agg *aggs, sp_agg_value *out)
{
    SP_RETURN_IF(!out || naggs == 0, SP_ERR_INVALID, "reduce: no aggregates");
    sp_gb gb;
    SP_FORWARD(sp_gb_setup(t, NULL, naggs, aggs, "reduce", &gb));
    sp__keymap km;
    sp_acc *accs;
    uint32_t cap;
    sp_status st = sp_gb_run(t, &gb, &km, &accs, &cap);
    for (uint32_t a = 0; a < naggs && st == SP_OK; a++) {
        sp_acc x;
        sp_acc_init(&x);
        if (km.n) x = accs[a];
        sp_agg_value *v = &out[a];
        memset(v, 0, sizeof *v);
        switch (aggs[a].fn) {
        case SP_AGG_COUNT: v->is_int = 1; v->i = (int64_t)x.n; v->d = (double)x.n; break;
        case SP_AGG_SUM: /* of no values: NaN, as group-by gives */
            if (!x.nnum) v->d = NAN;
            else if (!gb.is_int[a]) v->d = x.sum;
            else if (!sp_acc_isum(&x, &v->i))
                st = sp__fail(SP_ERR_INVALID, "reduce: sum of column '%s' overflows int64",
                              t->schema->cols[gb.col[a]].name);
            else {
                v->is_int = 1;
                v->d = (double)v->i;
            }
            break;
        case SP_AGG_MIN:
        case SP_AGG_MAX: {
            int mn = aggs[a].fn == SP_AGG_MIN;
            v->is_int = gb.is_int[a] && x.nnum;
            v->i = mn ? x.imin : x.imax;
            v->d = x.nnum ? (mn ? x.min : x.max) : NAN;
            break;
        }
        case SP_AGG_MEAN: v->d = sp_acc_mean(&x, gb.is_int[a]); break;
        }
    }
    sp__keymap_free(&km);
    sp__free(accs);
    return st;
}

/* A group's key for a message: col = 'text' or col = number. */
static void sp_key_text(const char *col, sp_col_type type, const char *kb, uint32_t len, char *buf, size_t n)
{
    int64_t i;
    double d;
    switch (type) {
    case SP_COL_STRING:
        snprintf(buf, n, "%s = '%.*s%s'", col, (int)(len > 64 ? 64 : len), kb, len > 64 ? "..." : "");
        break;
    case SP_COL_DOUBLE:
        memcpy(&d, kb, 8);
        snprintf(buf, n, "%s = %.17g", col, d);
        break;
    default:
        memcpy(&i, kb, 8);
        snprintf(buf, n, "%s = %lld", col, (long long)i);
        break;
    }
}

/* Output names: "count" or "fn(col)"; an aggregate whose name the key or an earlier
 * aggregate already has is numbered "#k" (k its position, from 1). The key keeps its
 * name, being the caller's column. Numbered names cannot repeat a default name, but
 * the key may be named like one: then say what clashes and what to rename. */
sp_status sp__agg_names(const char *key, uint32_t naggs, const sp_agg *aggs, uint32_t na, char **names)
{
    sp_status st = SP_OK;
    memset(names, 0, na * sizeof *names);
    for (uint32_t a = 0; a < na && st == SP_OK; a++) {
        sp_agg_fn fn = naggs ? aggs[a].fn : SP_AGG_COUNT;
        const char *col = fn == SP_AGG_COUNT ? "" : aggs[a].column;
        size_t cap = strlen(col) + 32;
        if (!(names[a] = sp__malloc(cap))) {
            st = sp__fail(SP_ERR_NOMEM, "aggregate names: out of memory");
            break;
        }
        if (fn == SP_AGG_COUNT) snprintf(names[a], cap, "count");
        else snprintf(names[a], cap, "%s(%s)", sp_agg_name(fn), col);
        int seen = key && strcmp(names[a], key) == 0;
        for (uint32_t b = 0; b < a && !seen; b++) seen = strcmp(names[a], names[b]) == 0;
        if (seen) {
            size_t l = strlen(names[a]);
            snprintf(names[a] + l, cap - l, "#%u", a + 1);
        }
    }
    for (uint32_t a = 0; a < na && st == SP_OK; a++) {
        if (key && strcmp(names[a], key) == 0)
            st = sp__fail(SP_ERR_INVALID, "group-by: the key column '%s' and aggregate %u would both be named '%s' in "
                          "the result; rename the key column", key, a + 1, names[a]);
        for (uint32_t b = 0; b < a && st == SP_OK; b++)
            if (strcmp(names[a], names[b]) == 0)
                st = sp__fail(SP_ERR_INVALID, "group-by: aggregates %u and %u would both be named '%s' in the result; "
                              "rename the column they aggregate", b + 1, a + 1, names[a]);
    }
    if (st != SP_OK) sp__agg_names_free(na, names);
    return st;
}

void sp__agg_names_free(uint32_t na, char **names)
{
    for (uint32_t a = 0; a < na; a++) {
        sp__free(names[a]);
        names[a] = NULL;
    }
}

/* Sorting group indices by key, for a deterministic result. */
typedef struct {
    const sp__keymap *km;
    sp_col_type type;
} sp_sort_ctx;
static _Thread_local sp_sort_ctx sp_sort;

static int sp_cmp_groups(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb, la, lb;
    const char *ka = sp__keymap_key(sp_sort.km, a, &la), *kb = sp__keymap_key(sp_sort.km, b, &lb);
    if (sp_sort.type == SP_COL_STRING) {
        int c = memcmp(ka, kb, la < lb ? la : lb);
        return c ? c : (la > lb) - (la < lb);
    }
    if (sp_sort.type == SP_COL_DOUBLE) { /* NaN (one group) last: a consistent order for qsort */
        double x, y;
        memcpy(&x, ka, 8);
        memcpy(&y, kb, 8);
        if (isnan(x) || isnan(y)) return isnan(x) - isnan(y);
        return (x > y) - (x < y);
    }
    int64_t x, y;
    memcpy(&x, ka, 8);
    memcpy(&y, kb, 8);
    return (x > y) - (x < y);
}

sp_status sp_dtable_group_by(sp_dtable *t, const char *key, uint32_t naggs, const sp_agg *aggs, sp_table **out)
{
    SP_RETURN_IF(!out || !key, SP_ERR_INVALID, "group-by: NULL argument");
    sp_gb gb;
    SP_FORWARD(sp_gb_setup(t, key, naggs, aggs, "group-by", &gb));
    const sp_column *kc = &t->schema->cols[gb.key];
    char *names[16];
    SP_FORWARD(sp__agg_names(kc->name, naggs, aggs, gb.naggs, names)); /* before any work */
    sp__keymap km;
    sp_acc *accs;
    uint32_t cap;
    sp_status st = sp_gb_run(t, &gb, &km, &accs, &cap);
    uint32_t n = km.n, na = gb.naggs;
    uint32_t *order = st == SP_OK ? sp__malloc((n ? n : 1) * sizeof *order) : NULL;
    if (st == SP_OK && !order) st = sp__fail(SP_ERR_NOMEM, "group-by: out of memory");
    sp_table *o = NULL;
    if (st == SP_OK) {
        for (uint32_t i = 0; i < n; i++) order[i] = i;
        sp_sort = (sp_sort_ctx){&km, gb.key_type};
        qsort(order, n, sizeof *order, sp_cmp_groups);
        sp_col_spec spec[17];
        spec[0] = (sp_col_spec){kc->name, kc->type, 0};
        for (uint32_t a = 0; a < na; a++) {
            sp_agg_fn fn = naggs ? aggs[a].fn : SP_AGG_COUNT;
            sp_col_type ty = fn == SP_AGG_COUNT ? SP_COL_INT64 : fn == SP_AGG_MEAN ? SP_COL_DOUBLE
                             : gb.is_int[a] ? SP_COL_INT64 : SP_COL_DOUBLE;
            spec[a + 1] = (sp_col_spec){names[a], ty, 0};
        }
        st = sp_table_new(na + 1, spec, n, &o);
    }
    if (st == SP_OK) {
        sp_column *k = &o->cols[0];
        const char **strs = gb.key_type == SP_COL_STRING ? sp__malloc((n ? n : 1) * sizeof *strs) : NULL;
        uint32_t *lens = strs ? sp__malloc((n ? n : 1) * sizeof *lens) : NULL;
        if (gb.key_type == SP_COL_STRING && (!strs || !lens)) st = sp__fail(SP_ERR_NOMEM, "group-by: out of memory");
        for (uint32_t r = 0; r < n && st == SP_OK; r++) {
            uint32_t len;
            const char *kb = sp__keymap_key(&km, order[r], &len);
            int64_t iv;
            switch (gb.key_type) {
            case SP_COL_STRING: strs[r] = kb; lens[r] = len; k->codes[r] = r; break;
            case SP_COL_DOUBLE: memcpy(&k->f64[r], kb, 8); break;
            case SP_COL_INT64: memcpy(&k->i64[r], kb, 8); break;
            case SP_COL_UINT8: memcpy(&iv, kb, 8); k->u8[r] = (uint8_t)iv; break;
            }
            for (uint32_t a = 0; a < na && st == SP_OK; a++) {
                const sp_acc *x = &accs[(size_t)order[r] * na + a];
                sp_column *c = &o->cols[a + 1];
                sp_agg_fn fn = naggs ? aggs[a].fn : SP_AGG_COUNT;
                if (fn == SP_AGG_COUNT) c->i64[r] = (int64_t)x->n;
                else if (fn == SP_AGG_MEAN) c->f64[r] = sp_acc_mean(x, gb.is_int[a]);
                else if (c->type == SP_COL_INT64 && fn == SP_AGG_SUM) {
                    if (!sp_acc_isum(x, &c->i64[r])) {
                        char kt[200];
                        sp_key_text(kc->name, gb.key_type, kb, len, kt, sizeof kt);
                        st = sp__fail(SP_ERR_INVALID, "group-by: sum of column '%s' in the group %s overflows int64",
                                      t->schema->cols[gb.col[a]].name, kt);
                    }
                } else if (c->type == SP_COL_INT64) c->i64[r] = fn == SP_AGG_MIN ? x->imin : x->imax;
                else c->f64[r] = !x->nnum ? NAN : fn == SP_AGG_SUM ? x->sum : fn == SP_AGG_MIN ? x->min : x->max;
            }
        }
        if (st == SP_OK && strs) st = sp__column_set_dict(k, n, strs, lens);
        sp__free(strs);
        sp__free(lens);
    }
    sp__free(order);
    sp__keymap_free(&km);
    sp__free(accs);
    sp__agg_names_free(gb.naggs, names);
    if (st != SP_OK) {
        sp_table_free(o);
        return st;
    }
    sp_table_recount(o);
    *out = o;
    return SP_OK;
}
