/* Workers: claim a job, train it, record how it ended.
 *
 * The trainer's sink runs on the worker's thread between iterations. It
 * gathers metric rows and writes them in one transaction every FLUSH_S (and
 * before each validation round and at the end), then publishes them to SSE
 * subscribers: an event is published only once it is committed, which is
 * what lets a reconnecting client replay exactly what it missed. */
#include "scheduler.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dacl/error.h"
#include "events.h"

#define FLUSH_S 0.5
#define PROGRESS_EVENT_S 0.5
#define MAX_SERIES 128 /* DACL adds per-class series: anchors per model, bank fill */
#define MAX_ROWS 65536 /* kept while the database refuses writes, then the job stops */
/* Attempts to commit before a checkpoint, or to record how a job ended, while
 * the database refuses writes (locked past busy_timeout, disk full): about
 * half a minute of waiting in all, then the job stops with the reason. */
#define DB_RETRIES 5

typedef struct {
    Scheduler *sc;
    pthread_t th;
    int started;
    /* guarded by sc->mu */
    long job; /* 0: idle */
    int by_user;
    DaclProgress progress;
    int has_progress;
    atomic_int cancel; /* the trainer's stop flag */
    char warning[640]; /* why the running job's metrics are not saved, "" when they are */
} Worker;

struct Scheduler {
    Server *s;
    pthread_mutex_t mu;
    pthread_cond_t kick;
    unsigned long gen; /* bumped by scheduler_wake */
    int stopping;
    int nworkers;
    int threads_per_job; /* this job's share of the cores */
    Worker *w;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------- sink -- */

typedef struct {
    Server *s;
    Worker *w;
    long job;
    char *names[MAX_SERIES]; /* interned: rows point here */
    const char *seen[MAX_SERIES]; /* the trainer's pointers for them */
    int nnames;
    StoreMetric *rows;
    size_t nrows, cap;
    long last_step;
    double last_flush, last_progress;
    int db_failing;
    size_t dropped;      /* rows given up on: the job cannot be completed faithfully */
    long unsaved_round;  /* iteration of a validation round not saved, -1: none */
    char db_error[512];  /* the database's last refusal */
} JobSink;

static const char *intern(JobSink *js, const char *name) {
    for (int i = 0; i < js->nnames; i++)
        if (js->seen[i] == name || !strcmp(js->names[i], name)) return js->names[i];
    if (js->nnames == MAX_SERIES) return NULL;
    char *c = strdup(name);
    if (!c) return NULL;
    js->seen[js->nnames] = name;
    js->names[js->nnames++] = c;
    return c;
}

/* The rows of one step as a `metric` event's data. */
static char *step_json(const StoreMetric *rows, size_t n) {
    cJSON *o = cJSON_CreateObject(), *v = cJSON_AddObjectToObject(o, "values");
    cJSON_AddNumberToObject(o, "iteration", (double)rows[0].step);
    for (size_t i = 0; i < n; i++) cJSON_AddNumberToObject(v, rows[i].name, rows[i].value);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void set_warning(JobSink *js, const char *msg) {
    pthread_mutex_lock(&js->w->sc->mu);
    snprintf(js->w->warning, sizeof js->w->warning, "%s", msg);
    pthread_mutex_unlock(&js->w->sc->mu);
}

static void flush(JobSink *js) {
    if (!js->nrows) return;
    /* `latest`: the values of the last step in the batch */
    size_t first = js->nrows;
    while (first > 0 && js->rows[first - 1].step == js->last_step) first--;
    char *latest = step_json(js->rows + first, js->nrows - first);
    int rc = store_metrics_put(js->s->store, js->job, js->rows, js->nrows, js->last_step, latest);
    free(latest);
    js->last_flush = now_s();
    if (rc) {
        snprintf(js->db_error, sizeof js->db_error, "%s", dacl_error_message());
        if (!js->db_failing) {
            fprintf(stderr, "dacld: job %ld: metrics not saved yet: %s\n", js->job, js->db_error);
            char msg[sizeof js->db_error + 64];
            snprintf(msg, sizeof msg, "metrics since iteration %ld not saved yet: %s", js->rows[0].step,
                     js->db_error);
            set_warning(js, msg);
        }
        js->db_failing = 1;
        if (js->nrows > MAX_ROWS) { /* give up on them rather than grow without end */
            js->dropped += js->nrows;
            js->nrows = 0;
        }
        return;
    }
    if (js->db_failing) set_warning(js, "");
    js->db_failing = 0;
    if (events_watched(js->s->events, js->job)) {
        for (size_t a = 0; a < js->nrows;) {
            size_t b = a;
            while (b < js->nrows && js->rows[b].step == js->rows[a].step) b++;
            char *data = step_json(js->rows + a, b - a);
            if (data) events_publish(js->s->events, js->job, "metric", (EventKey){js->rows[a].step, 0}, data, 0);
            free(data);
            a = b;
        }
    }
    js->nrows = 0;
}

static void on_metrics(void *ctx, long it, int n, const char *const *names, const double *values) {
    JobSink *js = ctx;
    if (js->nrows + (size_t)n > js->cap) {
        size_t cap = js->cap ? 2 * js->cap : 1024;
        while (cap < js->nrows + (size_t)n) cap *= 2;
        StoreMetric *nr = realloc(js->rows, cap * sizeof *nr);
        if (!nr) {
            flush(js); /* no memory to gather more: write what we have */
            if (js->nrows + (size_t)n > js->cap) return;
        } else {
            js->rows = nr;
            js->cap = cap;
        }
    }
    for (int i = 0; i < n; i++) {
        const char *name = intern(js, names[i]);
        if (name) js->rows[js->nrows++] = (StoreMetric){name, it, values[i]};
    }
    js->last_step = it;
    if (now_s() - js->last_flush >= FLUSH_S) flush(js);
}

static void on_progress(void *ctx, const DaclProgress *p) {
    JobSink *js = ctx;
    Scheduler *sc = js->w->sc;
    pthread_mutex_lock(&sc->mu);
    js->w->progress = *p;
    js->w->has_progress = 1;
    pthread_mutex_unlock(&sc->mu);
    double t = now_s();
    if ((t - js->last_progress < PROGRESS_EVENT_S && p->iteration < p->total) ||
        !events_watched(js->s->events, js->job))
        return;
    js->last_progress = t;
    char data[256];
    snprintf(data, sizeof data, "{\"iteration\":%ld,\"total\":%ld,\"images_per_s\":%.3f,\"eta_s\":%.1f}",
             p->iteration, p->total, p->img_per_s, p->eta_s);
    events_publish(js->s->events, js->job, "progress", (EventKey){p->iteration, -1}, data, 0);
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isnan(v))
        cJSON_AddNullToObject(o, k); /* undefined distances (an empty class) are null, never 0 */
    else
        cJSON_AddNumberToObject(o, k, v);
}

/* {dice, jaccard, hd95, asd} of entry i of the four arrays */
static void add_scores(cJSON *o, const double *d, const double *j, const double *h, const double *a, int i) {
    add_num(o, "dice", d[i]);
    add_num(o, "jaccard", j[i]);
    add_num(o, "hd95", h[i]);
    add_num(o, "asd", a[i]);
}

static void on_evaluation(void *ctx, const DaclEvalRound *r) {
    JobSink *js = ctx;
    flush(js); /* the round's id follows its iteration's metrics: commit those first */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iteration", (double)r->iteration);
    cJSON_AddStringToObject(o, "model", r->model ? "b" : "a");
    add_num(o, "mean_dice", r->mean_fg_dice);
    cJSON_AddBoolToObject(o, "is_best", r->is_best);
    cJSON *cls = cJSON_AddObjectToObject(o, "classes");
    for (int k = 0; k < r->classes; k++)
        add_scores(cJSON_AddObjectToObject(cls, r->class_names[k]), r->mean_dice, r->mean_jaccard,
                   r->mean_hd95, r->mean_asd, k);
    cJSON *cases = cJSON_AddObjectToObject(o, "cases");
    for (int i = 0; i < r->cases; i++) {
        cJSON *c = cJSON_AddObjectToObject(cases, r->case_ids[i]);
        for (int k = 0; k < r->classes; k++)
            add_scores(cJSON_AddObjectToObject(c, r->class_names[k]), r->dice, r->jaccard, r->hd95, r->asd,
                       i * r->classes + k);
    }
    char *detail = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char best[160];
    snprintf(best, sizeof best, "{\"iteration\":%ld,\"model\":\"%s\",\"mean_dice\":%.9g}", r->iteration,
             r->model ? "b" : "a", isnan(r->mean_fg_dice) ? 0.0 : r->mean_fg_dice);
    if (!detail ||
        store_evaluation_put(js->s->store, js->job, r->iteration, r->model, r->mean_fg_dice, detail,
                             r->is_best ? best : NULL)) {
        snprintf(js->db_error, sizeof js->db_error, "%s", detail ? dacl_error_message() : "out of memory");
        fprintf(stderr, "dacld: job %ld: validation round at %ld not saved: %s\n", js->job, r->iteration,
                js->db_error);
        js->unsaved_round = r->iteration;
    } else {
        events_publish(js->s->events, js->job, "evaluation", (EventKey){r->iteration, 1 + r->model}, detail, 0);
    }
    free(detail);
}

/* Before checkpoint-last.bin moves to `iteration`: a run resumed from it
 * repeats only later iterations, so every metric row up to it must be
 * committed first. While the database refuses, wait and try again a few
 * times; then stop the job, leaving the previous checkpoint, from which a
 * restart repeats what was not saved. */
static int on_checkpoint(void *ctx, long iteration) {
    JobSink *js = ctx;
    for (int attempt = 0;; attempt++) {
        flush(js);
        if (js->dropped || js->unsaved_round >= 0) break;
        if (!js->nrows) return DACL_OK;
        if (attempt == DB_RETRIES || atomic_load(&js->w->cancel)) break;
        if (attempt == 0)
            fprintf(stderr, "dacld: job %ld: waiting for the database before the checkpoint at iteration %ld: %s\n",
                    js->job, iteration, js->db_error);
        sleep(1u << attempt); /* 1, 2, 4, 8, 16 s, besides busy_timeout's wait in each */
    }
    if (js->unsaved_round >= 0)
        return DACL_FAIL(DACL_EIO, "the validation round at iteration %ld could not be saved: %s",
                         js->unsaved_round, js->db_error);
    if (js->dropped)
        return DACL_FAIL(DACL_EIO, "%zu metric rows could not be saved: %s", js->dropped, js->db_error);
    return DACL_FAIL(DACL_EIO, "metrics up to iteration %ld could not be saved, so no checkpoint was written: %s",
                     iteration, js->db_error);
}

static void on_log(void *ctx, const char *msg) {
    JobSink *js = ctx;
    fprintf(stderr, "dacld: job %ld: %s\n", js->job, msg);
}

/* ----------------------------------------------------------- workers -- */

static void publish_status(Server *s, long job, JobStatus st, long iteration, long total, const char *error) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", store_status_name(st));
    cJSON_AddNumberToObject(o, "iteration", (double)iteration);
    cJSON_AddNumberToObject(o, "total", (double)total);
    if (error) cJSON_AddStringToObject(o, "error", error);
    char *data = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    /* this run's stream ends with it, also on interrupted (the daemon is going down) */
    if (data) events_publish(s->events, job, "status", (EventKey){iteration, -1}, data, st != JOB_RUNNING);
    free(data);
}

static void finish(Server *s, long job, JobStatus st, long iteration, long total, const char *error) {
    /* while the database refuses, try again a while: a job left 'running' in
     * it is resumed (from its last checkpoint) only at the next start */
    for (int attempt = 0; store_job_set_status(s->store, job, st, error); attempt++) {
        fprintf(stderr, "dacld: job %ld: could not record '%s': %s\n", job, store_status_name(st),
                dacl_error_message());
        if (attempt == DB_RETRIES) break;
        sleep(1u << attempt);
    }
    fprintf(stderr, "dacld: job %ld %s at iteration %ld%s%s\n", job, store_status_name(st), iteration,
            error ? ": " : "", error ? error : "");
    publish_status(s, job, st, iteration, total, error);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A daemon killed while writing a checkpoint leaves its temporary file
 * (checkpoint-last.bin.XXXXXX, as big as a checkpoint) in the job's folder;
 * no one else writes there while the job runs, so they go before it resumes. */
static void remove_stale_temporaries(long job, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dot = strstr(e->d_name, ".bin.");
        if (strncmp(e->d_name, "checkpoint-", 11) || !dot || strlen(dot) != 5 + 6) continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) fprintf(stderr, "dacld: job %ld: removed %s, left by a crash\n", job, e->d_name);
    }
    closedir(d);
}

/* Trains job `id` (already marked running by the claim) to its end. */
static void run_job(Worker *w, long id) {
    Scheduler *sc = w->sc;
    Server *s = sc->s;
    pthread_mutex_lock(&sc->mu);
    w->job = id;
    w->by_user = 0;
    w->has_progress = 0;
    w->warning[0] = '\0';
    atomic_store(&w->cancel, sc->stopping);
    pthread_mutex_unlock(&sc->mu);

    StoreJob j;
    if (store_job_get(s->store, id, &j)) {
        fprintf(stderr, "dacld: job %ld: cannot load it: %s\n", id, dacl_error_message());
        goto out;
    }
    if (j.cancel_requested) { /* canceled between the claim and now */
        pthread_mutex_lock(&sc->mu);
        w->by_user = 1;
        pthread_mutex_unlock(&sc->mu);
        atomic_store(&w->cancel, 1);
    }
    DaclJobConfig cfg;
    char field[128];
    if (dacl_config_parse(j.config, &cfg, field, sizeof field)) {
        finish(s, id, JOB_FAILED, j.iteration, j.total, dacl_error_message());
        goto out_job;
    }
    if (atomic_load(&w->cancel)) {
        finish(s, id, w->by_user ? JOB_CANCELED : JOB_INTERRUPTED, j.iteration, j.total, NULL);
        goto out_job;
    }
    if (cfg.train.threads > sc->threads_per_job) {
        fprintf(stderr, "dacld: job %ld: %d threads asked, %d is its share of the cores\n", id,
                cfg.train.threads, sc->threads_per_job);
        cfg.train.threads = sc->threads_per_job;
    }
    publish_status(s, id, JOB_RUNNING, j.iteration, j.total, NULL);
    DaclTrainer *t = NULL;
    char ck[PATH_MAX + 32];
    snprintf(ck, sizeof ck, "%s/checkpoint-last.bin", j.work_dir);
    remove_stale_temporaries(id, j.work_dir);
    int rc = dacl_trainer_create(&t, &cfg, s->cfg.data_root, j.work_dir);
    /* a checkpoint means the job ran before (a crash or a shutdown): continue it */
    if (rc == DACL_OK && file_exists(ck)) rc = dacl_trainer_resume(t, ck);
    JobSink js = {.s = s, .w = w, .job = id, .last_step = j.iteration, .last_flush = now_s(), .unsaved_round = -1};
    if (rc == DACL_OK) {
        DaclSink sink = {&js, on_progress, on_metrics, on_evaluation, on_log, on_checkpoint};
        rc = dacl_trainer_run(t, 0, &w->cancel, &sink);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", dacl_error_message());
        flush(&js);
        dacl_error_set(rc, __FILE__, __LINE__, "%s", msg);
    }
    long it = t ? dacl_trainer_iteration(t) : j.iteration;
    pthread_mutex_lock(&sc->mu);
    int by_user = w->by_user;
    pthread_mutex_unlock(&sc->mu);
    if (rc == DACL_OK)
        finish(s, id, JOB_SUCCEEDED, it, j.total, NULL);
    else if (rc == DACL_ECANCELED || (!by_user && atomic_load(&w->cancel)))
        /* also a shutdown that found the database refusing: the next start
         * resumes from the last checkpoint that was written */
        finish(s, id, by_user ? JOB_CANCELED : JOB_INTERRUPTED, it, j.total, NULL);
    else
        finish(s, id, JOB_FAILED, it, j.total, dacl_error_message());
    dacl_trainer_free(t);
    for (int i = 0; i < js.nnames; i++) free(js.names[i]);
    free(js.rows);
    /* give the job's memory back to the system: glibc raises its mmap
     * threshold as big blocks are freed, so a job's tens of MB end up in
     * the heap and stay there after it, a job's worth more now and then
     * (the soak saw the idle daemon at 49, 78, 109 MB) */
    malloc_trim(0);
out_job:
    store_job_clear(&j);
out:
    pthread_mutex_lock(&sc->mu);
    w->job = 0;
    w->has_progress = 0;
    pthread_mutex_unlock(&sc->mu);
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    Scheduler *sc = w->sc;
    /* Training below the HTTP threads: an answer then takes a core from
     * training at once instead of queueing for a scheduler slice (p99 over
     * 10 ms under load without it). Linux keeps nice per thread, and the
     * threads a job starts inherit this one's. Raising it needs no
     * privilege; on failure training just runs at the daemon's. */
    int nice = sc->s->cfg.train_nice;
    if (nice > 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0)
        fprintf(stderr, "dacld: cannot lower the training threads' priority (nice %d): %s\n", nice,
                strerror(errno));
    for (;;) {
        pthread_mutex_lock(&sc->mu);
        unsigned long gen = sc->gen;
        int stop = sc->stopping;
        pthread_mutex_unlock(&sc->mu);
        if (stop) break;
        long id = 0;
        if (store_job_claim(sc->s->store, &id))
            fprintf(stderr, "dacld: cannot claim a job: %s\n", dacl_error_message());
        if (id) {
            run_job(w, id);
            continue;
        }
        /* nothing waits: sleep until a submit, or look again in a while anyway */
        pthread_mutex_lock(&sc->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        while (!sc->stopping && sc->gen == gen)
            if (pthread_cond_timedwait(&sc->kick, &sc->mu, &until)) break;
        pthread_mutex_unlock(&sc->mu);
    }
    return NULL;
}

int scheduler_start(Server *s, Scheduler **out) {
    *out = NULL;
    Scheduler *sc = calloc(1, sizeof *sc);
    int n = s->cfg.workers > 0 ? s->cfg.workers : 1;
    if (!sc || !(sc->w = calloc((size_t)n, sizeof *sc->w))) {
        free(sc);
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    sc->s = s;
    sc->nworkers = n;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    sc->threads_per_job = cores > n ? (int)(cores / n) : 1;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->kick, NULL);
    *out = sc;
    for (int i = 0; i < n; i++) {
        sc->w[i].sc = sc;
        if (pthread_create(&sc->w[i].th, NULL, worker_main, &sc->w[i])) {
            scheduler_stop(sc);
            *out = NULL;
            return DACL_FAIL(DACL_ENOMEM, "cannot start worker %d of %d", i + 1, n);
        }
        sc->w[i].started = 1;
    }
    return DACL_OK;
}

void scheduler_wake(Scheduler *sc) {
    if (!sc) return;
    pthread_mutex_lock(&sc->mu);
    sc->gen++;
    pthread_cond_broadcast(&sc->kick);
    pthread_mutex_unlock(&sc->mu);
}

int scheduler_cancel(Scheduler *sc, long job) {
    int found = 0;
    pthread_mutex_lock(&sc->mu);
    for (int i = 0; i < sc->nworkers; i++)
        if (sc->w[i].job == job) {
            sc->w[i].by_user = 1;
            atomic_store(&sc->w[i].cancel, 1);
            found = 1;
        }
    pthread_mutex_unlock(&sc->mu);
    return found;
}

int scheduler_progress(Scheduler *sc, long job, DaclProgress *p) {
    int found = 0;
    pthread_mutex_lock(&sc->mu);
    for (int i = 0; i < sc->nworkers && !found; i++)
        if (sc->w[i].job == job && sc->w[i].has_progress) {
            *p = sc->w[i].progress;
            found = 1;
        }
    pthread_mutex_unlock(&sc->mu);
    return found;
}

int scheduler_warning(Scheduler *sc, long job, char *buf, size_t n) {
    int found = 0;
    pthread_mutex_lock(&sc->mu);
    for (int i = 0; i < sc->nworkers && !found; i++)
        if (sc->w[i].job == job && sc->w[i].warning[0]) {
            snprintf(buf, n, "%s", sc->w[i].warning);
            found = 1;
        }
    pthread_mutex_unlock(&sc->mu);
    return found;
}

int scheduler_running(Scheduler *sc, long *jobs, DaclProgress *p, int max) {
    int n = 0;
    pthread_mutex_lock(&sc->mu);
    for (int i = 0; i < sc->nworkers && n < max; i++)
        if (sc->w[i].job && sc->w[i].has_progress) {
            jobs[n] = sc->w[i].job;
            p[n++] = sc->w[i].progress;
        }
    pthread_mutex_unlock(&sc->mu);
    return n;
}

void scheduler_stop(Scheduler *sc) {
    if (!sc) return;
    pthread_mutex_lock(&sc->mu);
    sc->stopping = 1;
    for (int i = 0; i < sc->nworkers; i++)
        if (sc->w[i].job && !sc->w[i].by_user) atomic_store(&sc->w[i].cancel, 1);
    pthread_cond_broadcast(&sc->kick);
    pthread_mutex_unlock(&sc->mu);
    for (int i = 0; i < sc->nworkers; i++)
        if (sc->w[i].started) pthread_join(sc->w[i].th, NULL);
    pthread_mutex_destroy(&sc->mu);
    pthread_cond_destroy(&sc->kick);
    free(sc->w);
    free(sc);
}
