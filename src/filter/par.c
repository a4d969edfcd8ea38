/* Frames on several cores: see par.h. Hand-written because the job is tiny (a
 * counter per batch under one mutex); a general thread-pool library would add a
 * dependency for forty lines. */
#include <pthread.h>
#include <unistd.h>

#include "par.h"

typedef struct sp_batch {
    struct sp_batch *next;
    void (*fn)(void *, unsigned);
    void *arg;
    unsigned n, next_job, done;
    pthread_cond_t done_cv;
} sp_batch;

static pthread_mutex_t sp_par_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sp_par_cv = PTHREAD_COND_INITIALIZER; /* a batch has jobs left */
static sp_batch *sp_par_list;                               /* batches with jobs left */
static unsigned sp_par_helpers;
static pthread_once_t sp_par_once = PTHREAD_ONCE_INIT;

/* Take the next job of the first batch that has one (lock held). */
static sp_batch *sp_par_claim(unsigned *job)
{
    sp_batch *b = sp_par_list;
    if (!b) return NULL;
    *job = b->next_job++;
    if (b->next_job == b->n) sp_par_list = b->next; /* all handed out */
    return b;
}

static void sp_par_finish(sp_batch *b)
{
    if (++b->done == b->n) pthread_cond_signal(&b->done_cv);
}

static void *sp_par_helper(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&sp_par_lock);
    for (;;) {
        unsigned job;
        sp_batch *b = sp_par_claim(&job);
        if (!b) {
            pthread_cond_wait(&sp_par_cv, &sp_par_lock);
            continue;
        }
        pthread_mutex_unlock(&sp_par_lock);
        b->fn(b->arg, job);
        pthread_mutex_lock(&sp_par_lock);
        sp_par_finish(b);
    }
    return NULL;
}

static void sp_par_start(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = cpus > 1 ? (unsigned)(cpus - 1) : 0;
    if (want > SP_PAR_MAX - 1) want = SP_PAR_MAX - 1;
    for (unsigned i = 0; i < want; i++) {
        pthread_attr_t at;
        pthread_t t;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, sp_par_helper, NULL) == 0) sp_par_helpers++;
        pthread_attr_destroy(&at);
    }
}

unsigned sp__par_width(void)
{
    pthread_once(&sp_par_once, sp_par_start);
    return 1 + sp_par_helpers;
}

void sp__par_run(unsigned n, void (*fn)(void *arg, unsigned i), void *arg)
{
    if (n == 0) return;
    if (n == 1 || sp__par_width() == 1) {
        for (unsigned i = 0; i < n; i++) fn(arg, i);
        return;
    }
    sp_batch b = {.fn = fn, .arg = arg, .n = n};
    pthread_cond_init(&b.done_cv, NULL);
    pthread_mutex_lock(&sp_par_lock);
    sp_batch **tail = &sp_par_list;
    while (*tail) tail = &(*tail)->next;
    *tail = &b;
    pthread_cond_broadcast(&sp_par_cv);
    /* Work on our own batch until every job is handed out, then wait for the rest. */
    while (b.next_job < b.n) {
        unsigned job = b.next_job++;
        if (b.next_job == b.n) { /* unlink: it may not be first in the list */
            sp_batch **pp = &sp_par_list;
            while (*pp != &b) pp = &(*pp)->next;
            *pp = b.next;
        }
        pthread_mutex_unlock(&sp_par_lock);
        fn(arg, job);
        pthread_mutex_lock(&sp_par_lock);
        sp_par_finish(&b);
    }
    while (b.done < b.n) pthread_cond_wait(&b.done_cv, &sp_par_lock);
    pthread_mutex_unlock(&sp_par_lock);
    pthread_cond_destroy(&b.done_cv);
}
