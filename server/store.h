/* The daemon's durable state: jobs, metric series and validation rounds in
 * SQLite (WAL). All SQL of dacld lives in store.c; everything else calls
 * these functions.
 *
 * A Store is a small pool of connections, each with its own prepared
 * statements, so HTTP threads reading and worker threads writing never share
 * a statement; WAL lets the readers run while a writer commits. Functions
 * return DACL_OK or a DACL_* code with the message in dacl_error_message(). */
#ifndef DACLD_STORE_H
#define DACLD_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct Store Store;

/* migrations/NNNN_name.sql, embedded at build time (migrations/embed.cmake) */
typedef struct {
    int version; /* NNNN */
    const char *name;
    const char *sql;
} StoreMigration;
extern const StoreMigration store_migrations[];
extern const int store_migration_count;

typedef enum {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELED,
    JOB_INTERRUPTED,
    JOB_NSTATUS
} JobStatus;

const char *store_status_name(JobStatus s);
/* -1 when `name` is not a status */
int store_status_parse(const char *name);
/* succeeded, failed, canceled: the job will not run again */
int store_status_final(JobStatus s);

typedef struct {
    long id;
    char *name;
    char *config; /* JSON */
    JobStatus status;
    int priority;
    int64_t submitted_ms, started_ms, finished_ms; /* 0: not yet */
    long iteration, total;
    char *error;    /* NULL if none */
    char *work_dir; /* NULL until set */
    int cancel_requested;
    char *latest; /* JSON object or NULL */
    char *best;   /* JSON object or NULL */
} StoreJob;

void store_job_clear(StoreJob *j);
int64_t store_now_ms(void);

/* Opens (creating) the database at `path` with `conns` connections and
 * applies every pending migration in one transaction. A database newer than
 * this binary is refused. *applied (may be NULL) receives how many ran. */
int store_open(Store **out, const char *path, int conns, int *applied);
/* The same for `state_dir`/dacld.db, creating state_dir (mode 0750) first. */
int store_open_state(Store **out, const char *state_dir, int conns, int *applied);
void store_close(Store *s);
/* A number that moves on after every write to the database (any table, any
 * connection, this process's or another's) once its transaction has ended:
 * an answer built from reads made after the generation was g is current
 * while it is still g. Costs a PRAGMA on a pooled connection. */
uint64_t store_generation(Store *s);
/* PRAGMA user_version: the last migration applied */
int store_schema_version(Store *s, int *version);

/* -------------------------------------------------------------- jobs -- */

/* A new queued job; its work dir is `state_dir`/jobs/<id>. */
int store_job_insert(Store *s, const char *name, const char *config, int priority, long total,
                     const char *state_dir, long *id);
/* DACL_ENOTFOUND when there is no such job */
int store_job_get(Store *s, long id, StoreJob *j);
/* Newest first; `status` < 0 for every status. *total (may be NULL) counts
 * every match, ignoring limit and offset. Free with store_jobs_free. */
int store_job_list(Store *s, int status, long limit, long offset, StoreJob **jobs, int *n,
                   long *total);
void store_jobs_free(StoreJob *jobs, int n);
/* How many waiting jobs run before job `id` (priority, then submission). */
int store_job_queue_position(Store *s, long id, long *pos);
/* Atomically moves the first waiting job (queued or interrupted) to running.
 * *id = 0 when none waits. */
int store_job_claim(Store *s, long *id);
/* Records a transition; terminal states set finished_at. `error` may be NULL. */
int store_job_set_status(Store *s, long id, JobStatus st, const char *error);

typedef enum {
    CANCEL_DONE,      /* it was waiting: now canceled */
    CANCEL_REQUESTED, /* it is running: flagged, the worker stops it */
    CANCEL_FINAL      /* it had already ended: nothing to do */
} CancelOutcome;
int store_job_cancel(Store *s, long id, CancelOutcome *out);
/* Deletes a job that has ended, with its metrics and evaluations.
 * DACL_EEXIST when it is still queued, running or interrupted. */
int store_job_delete(Store *s, long id);
/* At start-up: running jobs were cut off and become interrupted (they resume);
 * interrupted jobs whose cancel was requested become canceled. */
int store_recover(Store *s, int *interrupted, int *canceled);
int store_status_counts(Store *s, long counts[JOB_NSTATUS]);

/* ----------------------------------------------------------- metrics -- */

typedef struct {
    const char *name;
    long step;
    double value;
} StoreMetric;

/* One transaction: every row (insert or replace, so repeated steps after a
 * resume never duplicate), the series names, and the job's iteration and
 * `latest` JSON (may be NULL). */
int store_metrics_put(Store *s, long job, const StoreMetric *rows, size_t n, long iteration,
                      const char *latest);
/* The job's series names, sorted; free each and the array. */
int store_metric_names(Store *s, long job, char ***names, int *n);
typedef int (*StorePointFn)(void *ctx, const char *name, long step, double value);
/* Points of one series with step > since, in step order (name NULL: every
 * series, in step then name order). A non-zero return of fn stops. */
int store_metric_points(Store *s, long job, const char *name, long since, StorePointFn fn, void *ctx);

/* --------------------------------------------------------- evaluations -- */

/* Insert or replace one round; best (may be NULL) replaces the job's best. */
int store_evaluation_put(Store *s, long job, long iteration, int model, double mean_dice,
                         const char *detail, const char *best);
typedef int (*StoreEvalFn)(void *ctx, long iteration, int model, const char *detail);
/* Rounds with iteration > since, in iteration then model order. */
int store_evaluations(Store *s, long job, long since, StoreEvalFn fn, void *ctx);

#endif
