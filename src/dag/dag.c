/* The task graph: spawn, dependencies, workers, a read-ahead stager, memory-aware
 * admission, failure propagation and cancellation (see dag.h).
 *
 * Locking: one mutex per dag guards every task's state and the queues. Pool calls
 * that may do I/O (pinning inputs, putting results, releasing refs) run outside it;
 * only sp_unpin (no I/O) is called under it, when a staged task is cancelled.
 *
 * A task's life: WAITING (a dependency has not ended) -> READY (in the ready queue)
 * -> STAGING (its bytes reserved, inputs being pinned) -> STAGED (in the staged
 * queue) -> RUNNING -> DONE. Cancellation or a failed dependency moves a task that
 * has not started straight to DONE.
 *
 * Lifetime: a task is freed when nothing refers to it: refs counts one for "not
 * ended", one for the caller's handle, one per dependent that has not ended, and
 * one per dependency that has not ended (whose list of dependents points to it). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/clock.h"
#include "../common/error.h"
#include "spillpool/dag.h"

/* T_FAILING: a waiting task whose input failed, queued to end (see sp_end). */
typedef enum { T_WAITING, T_READY, T_STAGING, T_STAGED, T_RUNNING, T_FAILING, T_DONE } sp_tstate;

struct sp_task {
    sp_dag *dag;
    sp_task_fn fn;
    void *user;
    unsigned nargs;
    sp_arg *args;
    const void **inputs; /* per argument: the pinned object, or NULL */
    sp_ref *pinned;      /* per argument: the ref pinned for it, or SP_REF_NULL */
    char name[64];
    sp_tstate state;
    unsigned waiting; /* dependencies not yet ended */
    unsigned refs;
    sp_task **dependents;
    unsigned ndependents, capdependents;
    sp_task *prev, *next;         /* in the ready or the staged queue */
    sp_task *all_prev, *all_next; /* every live task, for close */
    sp_task *fail_next;           /* in the queue of tasks to fail, while T_FAILING */
    sp_status status;
    char *msg;
    sp_ref result;
    uint64_t expected, result_bytes, ref_bytes, need;
    int cancel;   /* set under the lock; read by the task through sp_task_cancelled */
    int result_pinned; /* from its put until its end hands the result to dependents */
    unsigned origin_off; /* where in msg the failure it passes on begins */
    int by_stager;
};

typedef struct {
    sp_task *head, *tail;
    unsigned n;
} sp_tqueue;

struct sp_dag {
    sp_pool *pool;
    pthread_mutex_t lock;
    pthread_cond_t work;  /* workers: a task is staged or ready */
    pthread_cond_t stage; /* the stager: room to read ahead */
    pthread_cond_t done;  /* fetchers and memory waiters: a task ended */
    unsigned nworkers, readahead;
    pthread_t *threads;
    pthread_t stager;
    int has_stager;
    unsigned started;
    sp_tqueue ready, staged;
    sp_task *all;
    uint64_t bound, reserved;
    uint64_t live, next_id, ended;
    unsigned idle_workers, stager_idle, done_waiters;
    unsigned running;      /* tasks in sp_run (and stagers waiting for room, counted alike) */
    unsigned room_waiters; /* of those, waiting for memory in sp_wait_for_room */
    uint64_t stager_hold;  /* `ended` when read-ahead last found no room; -1: none */
    unsigned staging;      /* tasks whose inputs are being pinned, the lock dropped */
    uint64_t progress;     /* tasks ended plus stagings finished */
    int closing;
    sp_dag_stats st;
};

struct sp_task_ctx {
    sp_task *t;
    void *obj;
    const sp_type *type;
    int has_msg;
};

/* ---- queues ---- */

static void sp_q_push(sp_tqueue *q, sp_task *t, int front)
{
    t->prev = t->next = NULL;
    if (!q->head) q->head = q->tail = t;
    else if (front) {
        t->next = q->head;
        q->head->prev = t;
        q->head = t;
    } else {
        t->prev = q->tail;
        q->tail->next = t;
        q->tail = t;
    }
    q->n++;
}

static void sp_q_remove(sp_tqueue *q, sp_task *t)
{
    if (t->prev) t->prev->next = t->next;
    else q->head = t->next;
    if (t->next) t->next->prev = t->prev;
    else q->tail = t->prev;
    t->prev = t->next = NULL;
    q->n--;
}

/* ---- freeing and ending (lock held) ---- */

static void sp_task_unref(sp_dag *d, sp_task *t);

static void sp_task_free(sp_dag *d, sp_task *t)
{
    if (t->all_prev) t->all_prev->all_next = t->all_next;
    else d->all = t->all_next;
    if (t->all_next) t->all_next->all_prev = t->all_prev;
    if (t->result != SP_REF_NULL) (void)sp_release(d->pool, t->result);
    sp__free(t->msg);
    sp__free(t->dependents);
    sp__free(t->args);
    sp__free(t);
}

static void sp_task_unref(sp_dag *d, sp_task *t)
{
    if (--t->refs == 0) sp_task_free(d, t);
}

static char *sp_vformat(const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    return sp__strdup(buf);
}

static char *sp_format(const char *fmt, ...) SP_PRINTF(1, 2);
static char *sp_format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sp_vformat(fmt, ap);
    va_end(ap);
    return s;
}

static void sp_wake_workers(sp_dag *d)
{
    if (d->idle_workers) pthread_cond_signal(&d->work);
    if (d->has_stager && d->stager_idle) pthread_cond_signal(&d->stage);
}

static void sp_end(sp_dag *d, sp_task *t, sp_status st, char *msg);

static void sp_unpin_inputs(sp_dag *d, sp_task *t)
{
    for (unsigned i = 0; i < t->nargs; i++)
        if (t->pinned[i] != SP_REF_NULL) {
            (void)sp_unpin(d->pool, t->pinned[i]);
            t->pinned[i] = SP_REF_NULL;
            t->inputs[i] = NULL;
        }
}

/* "task 't' not run: <origin>", noting where origin begins in it (passed on as is). */
static char *sp_unrun_msg(sp_task *t, const char *origin)
{
    char *msg = sp_format("task '%s' not run: %s", t->name, origin);
    size_t ml = msg ? strlen(msg) : 0, ol = strlen(origin);
    t->origin_off = ml > ol ? (unsigned)(ml - ol) : 0; /* 0 if the message was cut short */
    return msg;
}

/* A task that never ran: its dependents end with the same status. */
static void sp_end_unrun(sp_dag *d, sp_task *t, sp_status st, const char *origin)
{
    if (t->state == T_READY) sp_q_remove(&d->ready, t);
    sp_end(d, t, st, sp_unrun_msg(t, origin));
}

static void sp_end_one(sp_dag *d, sp_task *t, sp_status st, char *msg, sp_task **failing);

/* End t: release its reservation, its hold on its dependencies and (for a task that
 * never ran) its ref arguments; then let dependents go or fail them. Dependents that
 * fail are queued and ended in turn, not recursively: a chain of thousands of tasks
 * would otherwise take a stack frame each. */
static void sp_end(sp_dag *d, sp_task *t, sp_status st, char *msg)
{
    sp_task *failing = NULL;
    sp_end_one(d, t, st, msg, &failing);
    while (failing) {
        sp_task *x = failing;
        failing = x->fail_next;
        sp_end_one(d, x, x->status, x->msg, &failing);
    }
}

static void sp_end_one(sp_dag *d, sp_task *t, sp_status st, char *msg, sp_task **failing)
{
    int ran = t->state == T_RUNNING;
    if (t->state == T_STAGING || t->state == T_STAGED || ran) d->reserved -= t->need;
    if (ran) d->running--;
    if (t->state == T_READY) sp_unpin_inputs(d, t); /* inputs handed over at its dependency's end */
    t->state = T_DONE;
    t->status = st;
    t->msg = msg;
    d->live--;
    d->ended++;
    d->progress++;
    if (st == SP_OK) d->st.completed++;
    else if (st == SP_ERR_CANCELLED) d->st.cancelled++;
    else d->st.failed++;
    for (unsigned i = 0; i < t->nargs; i++) {
        if (t->args[i].kind == SP_ARG_TASK) sp_task_unref(d, t->args[i].v.task);
        else if (t->args[i].kind == SP_ARG_REF && !ran) (void)sp_release(d->pool, t->args[i].v.ref);
    }
    /* A task that never ran passes on the first failure's message, not its own. */
    const char *origin = msg ? msg + t->origin_off : sp_strerror(st);
    for (unsigned k = 0; k < t->ndependents; k++) {
        sp_task *x = t->dependents[k];
        if (x->state != T_WAITING) continue; /* already failed through another input */
        if (st != SP_OK) { /* its message now: origin points into t, which may go first */
            x->msg = sp_unrun_msg(x, origin);
            x->status = st;
            x->state = T_FAILING;
            x->fail_next = *failing;
            *failing = x;
        }
        else if (--x->waiting == 0) {
            x->state = T_READY;
            x->need += t->result_bytes;
            /* Hand it the result while it is surely in memory (t holds a pin), so a
             * policy that evicts the newest object (MRU) cannot spill it first. */
            for (unsigned i = 0; t->result_pinned && i < x->nargs; i++)
                if (x->args[i].kind == SP_ARG_TASK && x->args[i].v.task == t && x->pinned[i] == SP_REF_NULL &&
                    sp_pin_read(d->pool, t->result, &x->inputs[i]) == SP_OK) {
                    x->pinned[i] = t->result;
                    d->st.handed_over++;
                }
            /* Ahead of the queue: its input was just made and is still in memory. */
            sp_q_push(&d->ready, x, 1);
            sp_wake_workers(d);
        } else x->need += t->result_bytes;
    }
    if (t->result_pinned) {
        (void)sp_unpin(d->pool, t->result);
        t->result_pinned = 0;
    }
    for (unsigned k = 0; k < t->ndependents; k++) sp_task_unref(d, t->dependents[k]);
    t->ndependents = 0;
    if (d->ready.head) sp_wake_workers(d); /* bytes were freed: a waiting task may fit now */
    if (d->done_waiters) pthread_cond_broadcast(&d->done);
    sp_task_unref(d, t);
}

/* ---- staging: reserve bytes, pin inputs ---- */

/* The first ready task whose bytes fit beside what is reserved (any task fits when
 * nothing is). Looks a bounded way down the queue so a pick stays cheap. */
static sp_task *sp_pick(sp_dag *d)
{
    unsigned looked = 0;
    for (sp_task *t = d->ready.head; t && looked < 256; t = t->next, looked++)
        if (d->reserved == 0 || d->reserved + t->need <= d->bound) return t;
    if (d->ready.head) d->st.memory_waits++;
    return NULL;
}

/* Pins held ahead of need (staged tasks' inputs, results handed to ready tasks)
 * are read-ahead, not commitments: when a put or a pin of a task about to run finds
 * the bound held, they are let go first (lock held; unpinning does no I/O). Staged
 * tasks go back to the front of the ready queue in their order. Returns how many
 * pins were dropped. */
static unsigned sp_yield_ahead(sp_dag *d)
{
    unsigned n = 0;
    while (d->staged.tail) {
        sp_task *t = d->staged.tail;
        sp_q_remove(&d->staged, t);
        for (unsigned i = 0; i < t->nargs; i++) n += t->pinned[i] != SP_REF_NULL;
        sp_unpin_inputs(d, t);
        d->reserved -= t->need;
        t->state = T_READY;
        sp_q_push(&d->ready, t, 1);
    }
    for (sp_task *t = d->ready.head; t; t = t->next)
        for (unsigned i = 0; i < t->nargs; i++)
            if (t->pinned[i] != SP_REF_NULL) {
                (void)sp_unpin(d->pool, t->pinned[i]);
                t->pinned[i] = SP_REF_NULL;
                t->inputs[i] = NULL;
                n++;
            }
    /* Read-ahead waits for a task to end before it pins again, or it could take
     * back the room just given up before the task that needed it retries. */
    if (n) d->stager_hold = d->ended;
    d->st.pins_dropped += n;
    return n;
}

/* After SP_ERR_MEMORY_FULL (lock held): 1 when it is worth trying again (read-ahead
 * pins were dropped, or a task ended or finished pinning meanwhile), 0 when nothing
 * can free memory (every other running task is itself waiting). */
static int sp_wait_for_room(sp_dag *d)
{
    if (sp_yield_ahead(d)) return 1;
    if (d->running + d->staging <= d->room_waiters + 1) return 0;
    uint64_t seen = d->progress;
    d->room_waiters++;
    d->done_waiters++;
    d->st.memory_waits++;
    while (d->progress == seen && d->running + d->staging > d->room_waiters) pthread_cond_wait(&d->done, &d->lock);
    d->done_waiters--;
    d->room_waiters--;
    return d->progress != seen;
}

/* Stage t (taken from the ready queue, lock held; dropped while pinning).
 * Returns 1 when staged, 0 when it ended or went back to wait for memory. */
static int sp_stage(sp_dag *d, sp_task *t, int ahead)
{
    sp_q_remove(&d->ready, t);
    if (d->reserved == 0 && t->need > d->bound) {
        char *msg = sp_format("task '%s' needs %llu bytes (inputs and expected result) but the memory bound "
                              "is %llu", t->name, (unsigned long long)t->need, (unsigned long long)d->bound);
        sp_end(d, t, SP_ERR_TOO_BIG, msg);
        return 0;
    }
    t->state = T_STAGING;
    d->reserved += t->need;
    if (d->reserved > d->st.peak_reserved) d->st.peak_reserved = d->reserved;
    int any = 0;
    for (unsigned i = 0; i < t->nargs && !any; i++)
        any = t->pinned[i] == SP_REF_NULL &&
              (t->args[i].kind == SP_ARG_REF || (t->args[i].kind == SP_ARG_TASK && t->args[i].v.task->result));
    if (!any) {
        t->state = T_STAGED;
        return 1;
    }
    d->staging++;
    pthread_mutex_unlock(&d->lock);
    sp_status st = SP_OK;
    unsigned bad = 0;
    for (unsigned i = 0; i < t->nargs && st == SP_OK; i++) {
        sp_ref r = t->args[i].kind == SP_ARG_REF ? t->args[i].v.ref
                   : t->args[i].kind == SP_ARG_TASK ? t->args[i].v.task->result : SP_REF_NULL;
        if (r == SP_REF_NULL || t->pinned[i] != SP_REF_NULL) continue;
        st = sp_pin_read(d->pool, r, &t->inputs[i]);
        if (st == SP_OK) t->pinned[i] = r;
        else bad = i;
    }
    char *msg = NULL;
    if (st != SP_OK) {
        sp_unpin_inputs(d, t);
        if (st != SP_ERR_MEMORY_FULL) msg = sp_format("task '%s' failed: input %u: %s", t->name, bad, sp_last_error());
    }
    pthread_mutex_lock(&d->lock);
    d->staging--;
    d->progress++; /* pins taken or let go: a task waiting for room may look again */
    if (d->done_waiters) pthread_cond_broadcast(&d->done);
    if (st == SP_ERR_MEMORY_FULL && ahead) {
        /* Reading ahead does not fit now: leave the task to a worker, and read
         * ahead again once some task ended. */
        d->reserved -= t->need;
        t->state = T_READY;
        sp_q_push(&d->ready, t, 1);
        d->stager_hold = d->ended;
        sp_wake_workers(d); /* they may all have gone idle while it was staged */
        return 0;
    }
    if (st == SP_ERR_MEMORY_FULL) {
        /* Pins outside our reservation (read-ahead, or an object larger than it was
         * guessed) hold the bound: drop read-ahead or wait for a running task to
         * end, then try again from the front of the queue. */
        d->reserved -= t->need;
        t->state = T_READY;
        sp_q_push(&d->ready, t, 1);
        d->running++; /* counted while it waits, so others wait for it too */
        int again = sp_wait_for_room(d);
        d->running--;
        if (again) return 0;
        sp_q_remove(&d->ready, t);
        t->state = T_STAGING;
        d->reserved += t->need;
    }
    if (st == SP_ERR_MEMORY_FULL)
        msg = sp_format("task '%s' failed: its inputs do not fit in memory: %s", t->name, sp_last_error());
    if (st != SP_OK) {
        sp_end(d, t, st, msg);
        return 0;
    }
    if (t->cancel) {
        sp_unpin_inputs(d, t);
        sp_end(d, t, SP_ERR_CANCELLED, sp_format("task '%s' was cancelled", t->name));
        return 0;
    }
    t->state = T_STAGED;
    return 1;
}

/* ---- running ---- */

static void sp_run(sp_dag *d, sp_task *t)
{
    t->state = T_RUNNING;
    d->running++;
    pthread_mutex_unlock(&d->lock);
    sp_task_ctx ctx = {t, NULL, NULL, 0};
    sp__clear_error(); /* a function that fails without a message must not get an older one */
    sp_status st = t->fn(&ctx, t->user);
    char *msg = NULL;
    if (st != SP_OK) {
        const char *why = ctx.has_msg ? t->msg : sp_last_error();
        msg = sp_format("task '%s' failed: %s", t->name, why[0] ? why : sp_strerror(st));
    }
    if (ctx.has_msg) {
        sp__free(t->msg);
        t->msg = NULL;
    }
    /* The inputs are not needed once the function returned: unpinning them first
     * leaves more room for the result. */
    sp_unpin_inputs(d, t);
    for (unsigned i = 0; i < t->nargs; i++)
        if (t->args[i].kind == SP_ARG_REF) (void)sp_release(d->pool, t->args[i].v.ref);
    uint64_t bytes = 0;
    if (st == SP_OK && ctx.obj) {
        bytes = ctx.type->size(ctx.obj);
        for (;;) {
            /* Put pinned: it is handed to the dependents it makes ready at the end. */
            sp_put_options po = {.pin = 1};
            st = sp_put(d->pool, ctx.obj, ctx.type, &po, &t->result);
            if (st == SP_OK) t->result_pinned = 1;
            if (st != SP_ERR_MEMORY_FULL) break;
            /* Other tasks' pins hold the bound: drop read-ahead, or wait for a task
             * that is still computing to end; fail only when no one can free room. */
            pthread_mutex_lock(&d->lock);
            int again = sp_wait_for_room(d);
            pthread_mutex_unlock(&d->lock);
            if (!again) break;
        }
        if (st != SP_OK) {
            msg = sp_format("task '%s' failed: storing its result: %s", t->name, sp_last_error());
            ctx.type->free(ctx.obj);
            t->result = SP_REF_NULL;
        }
    } else if (ctx.obj) ctx.type->free(ctx.obj);
    pthread_mutex_lock(&d->lock);
    t->result_bytes = bytes;
    sp_end(d, t, st, msg);
}

static void *sp_worker(void *arg)
{
    sp_dag *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        sp_task *t = d->staged.head;
        if (t) {
            sp_q_remove(&d->staged, t);
            if (d->has_stager && d->stager_idle) pthread_cond_signal(&d->stage);
            sp_run(d, t);
            continue;
        }
        if ((t = sp_pick(d)) != NULL) {
            uint64_t t0 = sp__now_ns();
            int ok = sp_stage(d, t, 0);
            d->st.input_wait_seconds += (double)(sp__now_ns() - t0) / 1e9;
            if (ok) sp_run(d, t);
            continue;
        }
        if (d->closing) break;
        d->idle_workers++;
        pthread_cond_wait(&d->work, &d->lock);
        d->idle_workers--;
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Pins the inputs of the next ready tasks while the workers compute. */
static void *sp_stager(void *arg)
{
    sp_dag *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->closing) {
        sp_task *t = d->staged.n < d->readahead && d->stager_hold != d->ended ? sp_pick(d) : NULL;
        if (!t) {
            d->stager_idle = 1;
            pthread_cond_wait(&d->stage, &d->lock);
            d->stager_idle = 0;
            continue;
        }
        if (sp_stage(d, t, 1)) {
            d->st.staged_ahead++;
            sp_q_push(&d->staged, t, 0);
            if (d->idle_workers) pthread_cond_signal(&d->work);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* ---- the API ---- */

unsigned sp_task_nargs(const sp_task_ctx *ctx) { return ctx->t->nargs; }
const sp_arg *sp_task_arg(const sp_task_ctx *ctx, unsigned i) { return i < ctx->t->nargs ? &ctx->t->args[i] : NULL; }
const void *sp_task_input(const sp_task_ctx *ctx, unsigned i) { return i < ctx->t->nargs ? ctx->t->inputs[i] : NULL; }
sp_pool *sp_task_pool(const sp_task_ctx *ctx) { return ctx->t->dag->pool; }
sp_dag *sp_task_dag(const sp_task_ctx *ctx) { return ctx->t->dag; }

void sp_task_set_result(sp_task_ctx *ctx, void *obj, const sp_type *type)
{
    if (ctx->obj) ctx->type->free(ctx->obj);
    ctx->obj = obj;
    ctx->type = type;
}

sp_status sp_task_fail(sp_task_ctx *ctx, sp_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sp__free(ctx->t->msg);
    ctx->t->msg = sp_vformat(fmt, ap);
    va_end(ap);
    ctx->has_msg = ctx->t->msg != NULL;
    return st;
}

int sp_task_cancelled(const sp_task_ctx *ctx)
{
    sp_dag *d = ctx->t->dag;
    pthread_mutex_lock(&d->lock);
    int c = ctx->t->cancel;
    pthread_mutex_unlock(&d->lock);
    return c;
}

sp_pool *sp_dag_pool(sp_dag *d) { return d ? d->pool : NULL; }

sp_status sp_dag_open(sp_dag **out, sp_pool *pool, const sp_dag_options *opt)
{
    SP_RETURN_IF(!out || !pool, SP_ERR_INVALID, "sp_dag_open: NULL argument");
    sp_stats ps;
    SP_FORWARD(sp_pool_stats(pool, &ps));
    sp_dag *d = sp__calloc(1, sizeof *d);
    SP_RETURN_IF(!d, SP_ERR_NOMEM, "sp_dag_open: out of memory");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    d->pool = pool;
    d->bound = ps.memory_bound;
    d->stager_hold = UINT64_MAX;
    d->nworkers = opt && opt->workers ? opt->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    d->readahead = opt && opt->readahead ? (opt->readahead == -1u ? 0 : opt->readahead) : d->nworkers;
    d->st.workers = d->nworkers;
    d->st.readahead = d->readahead;
    d->threads = sp__calloc(d->nworkers, sizeof *d->threads);
    if (!d->threads) {
        sp__free(d);
        return sp__fail(SP_ERR_NOMEM, "sp_dag_open: out of memory");
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->stage, NULL);
    pthread_cond_init(&d->done, NULL);
    sp_status st = SP_OK;
    for (; d->started < d->nworkers; d->started++)
        if (pthread_create(&d->threads[d->started], NULL, sp_worker, d) != 0) {
            st = sp__fail(SP_ERR_IO, "sp_dag_open: cannot start worker thread %u", d->started);
            break;
        }
    if (st == SP_OK && d->readahead) {
        if (pthread_create(&d->stager, NULL, sp_stager, d) != 0)
            st = sp__fail(SP_ERR_IO, "sp_dag_open: cannot start the read-ahead thread");
        else d->has_stager = 1;
    }
    if (st != SP_OK) {
        sp_dag_close(d);
        return st;
    }
    *out = d;
    return SP_OK;
}

sp_status sp_spawn(sp_dag *d, sp_task_fn fn, void *user, unsigned nargs, const sp_arg *args,
                   const sp_spawn_options *opt, sp_task **out)
{
    SP_RETURN_IF(!d || !fn || (nargs && !args), SP_ERR_INVALID, "sp_spawn: NULL argument");
    uint64_t ref_bytes = 0;
    for (unsigned i = 0; i < nargs; i++) {
        if (args[i].kind == SP_ARG_TASK)
            SP_RETURN_IF(!args[i].v.task || args[i].v.task->dag != d, SP_ERR_INVALID,
                         "sp_spawn: argument %u is not a task of this dag", i);
        else if (args[i].kind == SP_ARG_REF) {
            sp_ref_info info;
            if (sp_ref_query(d->pool, args[i].v.ref, &info) != SP_OK)
                return sp__wrap(SP_ERR_BAD_REF, "sp_spawn: argument %u", i);
            ref_bytes += info.size;
        } else SP_RETURN_IF(args[i].kind != SP_ARG_VALUE, SP_ERR_INVALID, "sp_spawn: argument %u has kind %d", i,
                            (int)args[i].kind);
    }
    sp_task *t = sp__calloc(1, sizeof *t);
    if (t && nargs) {
        /* args, inputs and pinned in one block */
        t->args = sp__malloc(nargs * (sizeof *t->args + sizeof *t->inputs + sizeof *t->pinned));
        if (t->args) {
            t->inputs = (const void **)(void *)(t->args + nargs);
            t->pinned = (sp_ref *)(void *)(t->inputs + nargs);
        }
    }
    if (!t || (nargs && !t->args)) {
        sp__free(t);
        return sp__fail(SP_ERR_NOMEM, "sp_spawn: out of memory");
    }
    for (unsigned i = 0; i < nargs; i++) {
        t->args[i] = args[i];
        t->inputs[i] = NULL;
        t->pinned[i] = SP_REF_NULL;
    }
    t->dag = d;
    t->fn = fn;
    t->user = user;
    t->nargs = nargs;
    t->expected = opt ? opt->expected_bytes : 0;
    t->ref_bytes = ref_bytes;
    t->need = t->expected + ref_bytes;
    t->refs = 1 + (out != NULL);
    pthread_mutex_lock(&d->lock);
    if (d->closing) {
        pthread_mutex_unlock(&d->lock);
        sp__free(t->args);
        sp__free(t);
        return sp__fail(SP_ERR_INVALID, "sp_spawn: the dag is closing");
    }
    /* The dag keeps each ref argument alive until the task ends. */
    sp_status st = SP_OK;
    unsigned held = 0;
    for (; held < nargs && st == SP_OK; held++)
        if (args[held].kind == SP_ARG_REF) st = sp_addref(d->pool, args[held].v.ref);
    if (st != SP_OK) {
        for (unsigned i = 0; i + 1 < held; i++)
            if (args[i].kind == SP_ARG_REF) (void)sp_release(d->pool, args[i].v.ref);
        pthread_mutex_unlock(&d->lock);
        sp__free(t->args);
        sp__free(t);
        return sp__wrap(SP_ERR_BAD_REF, "sp_spawn");
    }
    uint64_t id = ++d->next_id;
    if (opt && opt->name) snprintf(t->name, sizeof t->name, "%s", opt->name);
    else snprintf(t->name, sizeof t->name, "task %llu", (unsigned long long)id);
    t->all_next = d->all;
    if (d->all) d->all->all_prev = t;
    d->all = t;
    d->live++;
    d->st.spawned++;
    t->state = T_WAITING;
    const sp_task *failed = NULL;
    for (unsigned i = 0; i < nargs; i++) {
        if (args[i].kind != SP_ARG_TASK) continue;
        sp_task *dep = args[i].v.task;
        dep->refs++;
        if (dep->state == T_DONE) {
            if (dep->status != SP_OK && !failed) failed = dep;
            t->need += dep->result_bytes;
            continue;
        }
        if (dep->ndependents == dep->capdependents) {
            unsigned cap = dep->capdependents ? dep->capdependents * 2 : 4;
            sp_task **v = sp__realloc(dep->dependents, cap * sizeof *v);
            if (!v) {
                /* Undo: as if the dependency had failed, so nothing waits on it. Ending
                 * the task lets go of every task argument: hold the ones not reached. */
                for (unsigned j = i + 1; j < nargs; j++)
                    if (args[j].kind == SP_ARG_TASK) args[j].v.task->refs++;
                failed = dep;
                break;
            }
            dep->dependents = v;
            dep->capdependents = cap;
        }
        dep->dependents[dep->ndependents++] = t;
        t->refs++; /* held by dep's list until dep ends */
        t->waiting++;
    }
    if (failed) {
        sp_end_unrun(d, t, failed->state == T_DONE ? failed->status : SP_ERR_NOMEM,
                     failed->msg ? failed->msg : "out of memory");
    } else if (t->waiting == 0) {
        t->state = T_READY;
        sp_q_push(&d->ready, t, 0);
        sp_wake_workers(d);
    }
    pthread_mutex_unlock(&d->lock);
    if (out) *out = t;
    return SP_OK;
}

sp_status sp_fetch(sp_dag *d, sp_task *t, sp_ref *result)
{
    SP_RETURN_IF(!d || !t || t->dag != d, SP_ERR_INVALID, "sp_fetch: not a task of this dag");
    if (result) *result = SP_REF_NULL;
    pthread_mutex_lock(&d->lock);
    d->done_waiters++;
    while (t->state != T_DONE) pthread_cond_wait(&d->done, &d->lock);
    d->done_waiters--;
    sp_status st = t->status;
    if (st != SP_OK) sp__fail(st, "%s", t->msg ? t->msg : sp_strerror(st));
    else if (result && t->result != SP_REF_NULL) {
        st = sp_addref(d->pool, t->result);
        if (st == SP_OK) *result = t->result;
    }
    pthread_mutex_unlock(&d->lock);
    return st;
}

void sp_task_release(sp_dag *d, sp_task *t)
{
    if (!d || !t) return;
    pthread_mutex_lock(&d->lock);
    sp_task_unref(d, t);
    pthread_mutex_unlock(&d->lock);
}

/* Cancel t if it has not started (lock held); flag it if it runs. */
static void sp_cancel_locked(sp_dag *d, sp_task *t)
{
    t->cancel = 1;
    if (t->state == T_STAGED) {
        sp_q_remove(&d->staged, t);
        sp_unpin_inputs(d, t);
        if (d->has_stager && d->stager_idle) pthread_cond_signal(&d->stage);
    }
    if (t->state == T_WAITING || t->state == T_READY || t->state == T_STAGED) {
        if (t->state == T_READY) sp_q_remove(&d->ready, t);
        sp_end(d, t, SP_ERR_CANCELLED, sp_format("task '%s' was cancelled", t->name));
    }
}

void sp_task_cancel(sp_dag *d, sp_task *t)
{
    if (!d || !t || t->dag != d) return;
    pthread_mutex_lock(&d->lock);
    t->refs++; /* keep t while its dependents end */
    sp_cancel_locked(d, t);
    /* Dependents of a task that keeps running are cancelled too. */
    for (unsigned k = 0; t->state != T_DONE && k < t->ndependents; k++) sp_cancel_locked(d, t->dependents[k]);
    sp_task_unref(d, t);
    pthread_mutex_unlock(&d->lock);
}

void sp_dag_cancel(sp_dag *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->lock);
    /* Ending a task can free others (and their successors in the list), so start
     * over after each one that ends. */
    for (int again = 1; again;) {
        again = 0;
        for (sp_task *t = d->all; t; t = t->all_next) {
            if (t->state == T_DONE || t->cancel) continue;
            int ends = t->state == T_WAITING || t->state == T_READY || t->state == T_STAGED;
            sp_cancel_locked(d, t);
            if (ends) {
                again = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&d->lock);
}

void sp_dag_wait(sp_dag *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->lock);
    d->done_waiters++;
    while (d->live > 0) pthread_cond_wait(&d->done, &d->lock);
    d->done_waiters--;
    pthread_mutex_unlock(&d->lock);
}

sp_status sp_dag_close(sp_dag *d)
{
    if (!d) return SP_OK;
    sp_dag_cancel(d);
    sp_dag_wait(d);
    pthread_mutex_lock(&d->lock);
    d->closing = 1;
    pthread_cond_broadcast(&d->work);
    pthread_cond_broadcast(&d->stage);
    pthread_cond_broadcast(&d->done);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < d->started; i++) pthread_join(d->threads[i], NULL);
    if (d->has_stager) pthread_join(d->stager, NULL);
    while (d->all) sp_task_free(d, d->all); /* handles the caller never released */
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->stage);
    pthread_cond_destroy(&d->done);
    sp__free(d->threads);
    sp__free(d);
    return SP_OK;
}

void sp_dag_stats_get(sp_dag *d, sp_dag_stats *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->st;
    pthread_mutex_unlock(&d->lock);
}
