/* A fixed team of threads that runs one function on every member and waits
 * for all of them (fork-join). The engine parallelises over images, bands
 * and channels itself; BLAS runs single-threaded inside each member, so
 * OpenBLAS's own threads never spin against ours. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

#include "dacl/error.h"
#include "dacl/nn.h"

struct DaclPool {
    int n;                 /* members, the caller included */
    int own;               /* members [0, own) are the caller and the pool's threads; the rest
                              are lent: other threads that run jobs through dacl_pool_help */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;     /* bumped for each job */
    int pending;           /* workers still running the current job */
    int dynamic;           /* the job of generation gen is dacl_pool_run_dynamic's */
    int open;              /* ... and workers may still join it */
    int quit;
    void (*fn)(void *, int, int);
    void *ctx;
};

typedef struct {
    DaclPool *p;
    int tid;
} Member;

/* Runs the pool's current job as member tid, counted in pending when it
 * joined on its own (a dynamic job); called and returns with p->mu held. */
static void run_job(DaclPool *p, int tid, int joined) {
    if (joined) p->pending++;
    void (*fn)(void *, int, int) = p->fn;
    void *ctx = p->ctx;
    pthread_mutex_unlock(&p->mu);
    fn(ctx, tid, p->n);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
}

static void *worker(void *arg) {
    Member *me = arg;
    DaclPool *p = me->p;
    int tid = me->tid;
    free(me);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (;;) {
            if (p->quit) {
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
            if (p->gen != seen && p->dynamic && !p->open) seen = p->gen; /* over without us */
            if (p->gen != seen) break;
            pthread_cond_wait(&p->go, &p->mu);
        }
        seen = p->gen;
        run_job(p, tid, p->dynamic);
    }
}

int dacl_pool_create_lent(DaclPool **out, int threads, int lent) {
    *out = NULL;
    if (threads < 1 || threads > 1024 || lent < 0 || lent > 1024)
        return DACL_FAIL(DACL_EINVAL, "thread count %d (+%d lent) is outside 1..1024", threads, lent);
    DaclPool *p = calloc(1, sizeof *p);
    if (!p) return DACL_FAIL(DACL_ENOMEM, "out of memory creating a thread pool");
    p->n = threads + lent;
    p->own = threads;
    p->th = calloc((size_t)threads, sizeof *p->th);
    if (!p->th) {
        free(p);
        return DACL_FAIL(DACL_ENOMEM, "out of memory creating a thread pool");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    /* BLAS calls are made from inside the members: keep OpenBLAS on one thread */
    openblas_set_num_threads(1);
    for (int t = 1; t < threads; t++) {
        Member *me = malloc(sizeof *me);
        if (!me || (me->p = p, me->tid = t, pthread_create(&p->th[t], NULL, worker, me))) {
            free(me);
            p->own = t; /* join the ones that started */
            dacl_pool_free(p);
            return DACL_FAIL(DACL_ENOMEM, "could not start thread %d of %d", t, threads);
        }
    }
    *out = p;
    return DACL_OK;
}

int dacl_pool_create(DaclPool **out, int threads) { return dacl_pool_create_lent(out, threads, 0); }

void dacl_pool_free(DaclPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->own; t++) pthread_join(p->th[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int dacl_pool_threads(const DaclPool *p) { return p ? p->n : 1; }

/* Hand fn to the workers, run it as member 0, wait. dynamic: workers join
 * when they wake and only those that joined are waited for; one that the
 * system has not run yet (its core busy with another thread) finds the job
 * over when it wakes, fn's work having been taken by the others meanwhile. */
static void pool_run(DaclPool *p, void (*fn)(void *, int, int), void *ctx, int dynamic) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (p->own == 1 && !dynamic) { /* nobody to hand it to: every share here */
        for (int t = 0; t < p->n; t++) fn(ctx, t, p->n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->pending = dynamic ? 0 : p->own - 1;
    p->dynamic = dynamic;
    p->open = 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    if (!dynamic) /* the lent members' shares, which no one else is sure to run */
        for (int t = p->own; t < p->n; t++) fn(ctx, t, p->n);
    pthread_mutex_lock(&p->mu);
    p->open = 0; /* dynamic stays set: a worker waking later skips this generation */
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void dacl_pool_run(DaclPool *p, void (*fn)(void *ctx, int tid, int nthreads), void *ctx) {
    pool_run(p, fn, ctx, 0);
}

void dacl_pool_run_dynamic(DaclPool *p, void (*fn)(void *ctx, int tid, int nthreads), void *ctx) {
    pool_run(p, fn, ctx, 1);
}

void dacl_pool_help(DaclPool *p, int tid, const atomic_int *stop) {
    pthread_mutex_lock(&p->mu);
    /* a job open now is joined: it is what the owner is waiting on */
    unsigned long seen = p->open ? p->gen - 1 : p->gen;
    for (;;) {
        while (!atomic_load(stop) && !(p->gen != seen && p->dynamic && p->open)) {
            seen = p->gen; /* a job over, or not for lent members (static): skipped */
            pthread_cond_wait(&p->go, &p->mu);
        }
        if (atomic_load(stop)) break;
        seen = p->gen;
        run_job(p, tid, 1);
    }
    pthread_mutex_unlock(&p->mu);
}

void dacl_pool_wake(DaclPool *p) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
}

void dacl_split(int total, int tid, int nthreads, int *begin, int *end) {
    int base = total / nthreads, extra = total % nthreads;
    *begin = tid * base + (tid < extra ? tid : extra);
    *end = *begin + base + (tid < extra ? 1 : 0);
}
