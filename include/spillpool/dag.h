/* spillpool dag layer: tasks, dependencies, worker threads, and a scheduler that
 * reads ahead and holds back when memory is short.
 *
 * A task is a function and its arguments. An argument is a plain value, a pool ref,
 * or another task (a dependency: the task runs after it, and sees its result). A
 * task's result is put into the pool, so it spills like any other object; fetching a
 * task gives its result ref.
 *
 * Threading contract: every function may be called from any thread, including from
 * inside a running task (a task may spawn more tasks, but must not fetch one: a
 * worker waiting on a task could hold the last worker). sp_dag_close must not race
 * with other calls on the same dag.
 *
 * Scheduling: tasks run on `workers` threads, in spawn order, except that a task made
 * ready by the end of its last dependency goes first: its input was just made and
 * is still in memory (so a pipeline runs partition by partition, not stage by stage).
 * Before a task starts, its inputs are pinned (sp_pin_read: a task must not change
 * its inputs) and stay pinned until it ends. The scheduler keeps the bytes pinned by
 * starting and running tasks, plus their expected outputs, under the pool's memory
 * bound: a task that would pass it waits while another that fits runs. A task that
 * alone needs more than the bound fails with SP_ERR_TOO_BIG instead of waiting
 * forever.
 *
 * Read-ahead: a stager thread pins the inputs of the next `readahead` ready tasks
 * while the workers compute, so spilled inputs are read back from disk in the
 * background and a worker rarely waits on I/O.
 *
 * Errors: a task that fails (its function returns an error, its result cannot be
 * stored, an input cannot be read) fails every task that depends on it, directly or
 * not, with the same status and a message naming the task that failed and why.
 * Fetch returns that status; sp_last_error() gives the message. Nothing hangs.
 *
 * Cycles cannot be built: a task can only depend on tasks that already exist.
 */
#ifndef SPILLPOOL_DAG_H
#define SPILLPOOL_DAG_H

#include <stdint.h>
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_dag sp_dag;
typedef struct sp_task sp_task;
typedef struct sp_task_ctx sp_task_ctx;

typedef enum sp_arg_kind { SP_ARG_VALUE = 0, SP_ARG_REF = 1, SP_ARG_TASK = 2 } sp_arg_kind;

typedef struct sp_arg {
    sp_arg_kind kind;
    union {
        int64_t i;
        uint64_t u;
        double d;
        const void *p; /* the caller keeps it alive until the task ends */
        sp_ref ref;    /* SP_ARG_REF: the dag holds a reference until the task ends */
        sp_task *task; /* SP_ARG_TASK: a dependency */
    } v;
} sp_arg;

static inline sp_arg sp_arg_i64(int64_t x) { sp_arg a = {SP_ARG_VALUE, {.i = x}}; return a; }
static inline sp_arg sp_arg_f64(double x) { sp_arg a = {SP_ARG_VALUE, {.d = x}}; return a; }
static inline sp_arg sp_arg_ptr(const void *x) { sp_arg a = {SP_ARG_VALUE, {.p = x}}; return a; }
static inline sp_arg sp_arg_ref(sp_ref x) { sp_arg a = {SP_ARG_REF, {.ref = x}}; return a; }
static inline sp_arg sp_arg_task(sp_task *x) { sp_arg a = {SP_ARG_TASK, {.task = x}}; return a; }

/* A task's function. It reads its arguments and pinned inputs through ctx, may set a
 * result, and returns SP_OK or an error (with a message from sp_task_fail, or else
 * the thread's sp_last_error()). */
typedef sp_status (*sp_task_fn)(sp_task_ctx *ctx, void *user);

unsigned sp_task_nargs(const sp_task_ctx *ctx);
const sp_arg *sp_task_arg(const sp_task_ctx *ctx, unsigned i);
/* The pinned object of a ref or task argument (read only), or NULL for a value
 * argument or a dependency that set no result. */
const void *sp_task_input(const sp_task_ctx *ctx, unsigned i);
sp_pool *sp_task_pool(const sp_task_ctx *ctx);
sp_dag *sp_task_dag(const sp_task_ctx *ctx);
/* Hand the task's result to the dag: it is put into the pool when the function
 * returns SP_OK (and freed with type->free otherwise). At most once per run. */
void sp_task_set_result(sp_task_ctx *ctx, void *obj, const sp_type *type);
/* Record the failure's message; returns st, so `return sp_task_fail(ctx, ...)`. */
sp_status sp_task_fail(sp_task_ctx *ctx, sp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Nonzero once the task was cancelled: a long task may stop early. */
int sp_task_cancelled(const sp_task_ctx *ctx);

typedef struct sp_dag_options {
    unsigned workers;   /* worker threads; 0: one per core */
    unsigned readahead; /* tasks whose inputs the stager pins ahead; 0: workers; -1u: none */
} sp_dag_options;

/* Start a dag on pool (which must outlive it). opt NULL: defaults.
 * Errors: SP_ERR_INVALID, SP_ERR_NOMEM, SP_ERR_IO (a thread could not start). */
sp_status sp_dag_open(sp_dag **dag, sp_pool *pool, const sp_dag_options *opt);
/* The pool the dag's results go to. */
sp_pool *sp_dag_pool(sp_dag *dag);
/* Cancel what has not started, wait for what runs, join the threads and free every
 * task and result (task handles become invalid; result refs taken by sp_fetch stay
 * the caller's). */
sp_status sp_dag_close(sp_dag *dag);

typedef struct sp_spawn_options {
    const char *name;        /* for messages; NULL: "task <n>" */
    uint64_t expected_bytes; /* the result's expected memory size, for scheduling */
} sp_spawn_options;

/* Spawn a task. *out (if out is not NULL) is a handle to fetch it with, released with
 * sp_task_release. Errors: SP_ERR_INVALID (NULL fn, a NULL or foreign task argument,
 * a closing dag), SP_ERR_BAD_REF (a ref argument), SP_ERR_NOMEM. */
sp_status sp_spawn(sp_dag *dag, sp_task_fn fn, void *user, unsigned nargs, const sp_arg *args,
                   const sp_spawn_options *opt, sp_task **out);
/* Wait for the task to end. SP_OK: *result (if not NULL) is its result ref with a
 * new reference the caller releases, or SP_REF_NULL if it set none. Otherwise the
 * task's error (SP_ERR_CANCELLED if cancelled), with the message in sp_last_error(). */
sp_status sp_fetch(sp_dag *dag, sp_task *task, sp_ref *result);
/* Drop the handle from sp_spawn. The task still runs if others depend on it. */
void sp_task_release(sp_dag *dag, sp_task *task);
/* Cancel a task that has not started, and everything that depends on it. A task
 * already running finishes (sp_task_cancelled tells it). */
void sp_task_cancel(sp_dag *dag, sp_task *task);
/* Cancel every task that has not started. */
void sp_dag_cancel(sp_dag *dag);
/* Wait until every task spawned so far has ended. */
void sp_dag_wait(sp_dag *dag);

typedef struct sp_dag_stats {
    unsigned workers, readahead;
    uint64_t spawned, completed, failed, cancelled;
    uint64_t staged_ahead;    /* tasks whose inputs the stager pinned before a worker took them */
    uint64_t memory_waits;    /* times a ready task waited because its bytes did not fit */
    uint64_t handed_over;     /* inputs passed pinned from a task that just ended to its consumer */
    uint64_t pins_dropped;    /* read-ahead pins let go because a running task needed room */
    uint64_t peak_reserved;   /* most bytes held by starting and running tasks at once */
    double input_wait_seconds; /* worker time spent pinning inputs (read-ahead lowers it) */
} sp_dag_stats;
void sp_dag_stats_get(sp_dag *dag, sp_dag_stats *out);

#ifdef __cplusplus
}
#endif
#endif
