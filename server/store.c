/* All of dacld's SQL: the schema's migrations, jobs, metrics, evaluations.
 *
 * Every query is a prepared statement from the table below, prepared once per
 * connection on first use. Writes that touch more than one row run in BEGIN
 * IMMEDIATE transactions: taking the write lock up front means a busy
 * database waits in busy_timeout instead of failing half-way. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dacl/error.h"

#define BUSY_TIMEOUT_MS 5000

#define JOB_COLS                                                                                   \
    "id, name, config, status, priority, submitted_at, started_at, finished_at, iteration, total, " \
    "error, work_dir, cancel_requested, latest, best"

enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_USER_VERSION,
    Q_DATA_VERSION,
    Q_JOB_INSERT,
    Q_JOB_WORKDIR,
    Q_JOB_GET,
    Q_JOB_LIST,
    Q_JOB_COUNT,
    Q_JOB_QUEUE_POS,
    Q_JOB_CLAIM,
    Q_JOB_STATUS,
    Q_JOB_STATUS_GET,
    Q_JOB_CANCEL_REQ,
    Q_JOB_DELETE,
    Q_RECOVER_RUNNING,
    Q_RECOVER_CANCELED,
    Q_STATUS_COUNTS,
    Q_METRIC_PUT,
    Q_METRIC_NAME_PUT,
    Q_JOB_PROGRESS,
    Q_METRIC_NAMES,
    Q_METRIC_SERIES,
    Q_METRIC_ALL,
    Q_EVAL_PUT,
    Q_JOB_BEST,
    Q_EVALS,
    Q_COUNT
};

static const char *const queries[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_USER_VERSION] = "PRAGMA user_version",
    [Q_DATA_VERSION] = "PRAGMA data_version",
    [Q_JOB_INSERT] = "INSERT INTO jobs (name, config, priority, submitted_at, total) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_JOB_WORKDIR] = "UPDATE jobs SET work_dir = ?2 || '/jobs/' || id WHERE id = ?1",
    [Q_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [Q_JOB_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE ?1 IS NULL OR status = ?1 "
                   "ORDER BY id DESC LIMIT ?2 OFFSET ?3",
    [Q_JOB_COUNT] = "SELECT COUNT(*) FROM jobs WHERE ?1 IS NULL OR status = ?1",
    [Q_JOB_QUEUE_POS] = "SELECT COUNT(*) FROM jobs j, jobs me WHERE me.id = ?1 "
                        "AND j.status IN ('queued', 'interrupted') AND j.cancel_requested = 0 "
                        "AND (j.priority > me.priority OR (j.priority = me.priority AND j.id < me.id))",
    [Q_JOB_CLAIM] = "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?1) "
                    "WHERE id = (SELECT id FROM jobs WHERE status IN ('queued', 'interrupted') "
                    "AND cancel_requested = 0 ORDER BY priority DESC, id LIMIT 1) RETURNING id",
    [Q_JOB_STATUS] = "UPDATE jobs SET status = ?2, error = ?3, "
                     "finished_at = CASE WHEN ?4 THEN ?5 ELSE finished_at END WHERE id = ?1",
    [Q_JOB_STATUS_GET] = "SELECT status FROM jobs WHERE id = ?1",
    [Q_JOB_CANCEL_REQ] = "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
    [Q_JOB_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [Q_RECOVER_RUNNING] = "UPDATE jobs SET status = 'interrupted' WHERE status = 'running'",
    [Q_RECOVER_CANCELED] = "UPDATE jobs SET status = 'canceled', finished_at = ?1 "
                           "WHERE status IN ('queued', 'interrupted') AND cancel_requested = 1",
    [Q_STATUS_COUNTS] = "SELECT status, COUNT(*) FROM jobs GROUP BY status",
    [Q_METRIC_PUT] = "INSERT OR REPLACE INTO metrics (job, name, step, value) VALUES (?1, ?2, ?3, ?4)",
    [Q_METRIC_NAME_PUT] = "INSERT OR IGNORE INTO metric_names (job, name) VALUES (?1, ?2)",
    [Q_JOB_PROGRESS] = "UPDATE jobs SET iteration = ?2, latest = COALESCE(?3, latest) WHERE id = ?1",
    [Q_METRIC_NAMES] = "SELECT name FROM metric_names WHERE job = ?1 ORDER BY name",
    [Q_METRIC_SERIES] = "SELECT name, step, value FROM metrics WHERE job = ?1 AND name = ?2 "
                        "AND step > ?3 ORDER BY step",
    [Q_METRIC_ALL] = "SELECT name, step, value FROM metrics WHERE job = ?1 AND step > ?2 "
                     "ORDER BY step, name",
    [Q_EVAL_PUT] = "INSERT OR REPLACE INTO evaluations (job, iteration, model, mean_dice, detail) "
                   "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_JOB_BEST] = "UPDATE jobs SET best = ?2 WHERE id = ?1",
    [Q_EVALS] = "SELECT iteration, model, detail FROM evaluations WHERE job = ?1 AND iteration > ?2 "
                "ORDER BY iteration, model",
};

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *st[Q_COUNT];
    sqlite3_int64 changes; /* sqlite3_total_changes64 when it left the pool */
    sqlite3_int64 data_version; /* PRAGMA data_version when store_generation last asked */
} Conn;

struct Store {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    int n;
    Conn *conns;
    int *idle; /* stack of idle connection indices */
    int nidle;
    _Atomic uint64_t gen; /* store_generation */
};

static const char *const status_names[JOB_NSTATUS] = {"queued", "running", "succeeded",
                                                      "failed", "canceled", "interrupted"};

const char *store_status_name(JobStatus s) {
    return (unsigned)s < JOB_NSTATUS ? status_names[s] : "?";
}

int store_status_parse(const char *name) {
    for (int i = 0; name && i < JOB_NSTATUS; i++)
        if (!strcmp(name, status_names[i])) return i;
    return -1;
}

int store_status_final(JobStatus s) {
    return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELED;
}

int64_t store_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ------------------------------------------------------ connections -- */

static int db_fail(Conn *c, const char *what) {
    int e = sqlite3_errcode(c->db) & 0xff;
    /* the database is fine but refuses for now: another process holds its lock
     * past busy_timeout, or the disk is full, read-only or failing */
    int busy = e == SQLITE_BUSY || e == SQLITE_LOCKED || e == SQLITE_FULL || e == SQLITE_READONLY ||
               e == SQLITE_IOERR || e == SQLITE_CANTOPEN;
    return DACL_FAIL(busy ? DACL_EBUSY : DACL_EIO, "database: %s: %s", what, sqlite3_errmsg(c->db));
}

static Conn *conn_get(Store *s) {
    pthread_mutex_lock(&s->mu);
    while (s->nidle == 0) pthread_cond_wait(&s->freed, &s->mu);
    Conn *c = &s->conns[s->idle[--s->nidle]];
    pthread_mutex_unlock(&s->mu);
    c->changes = sqlite3_total_changes64(c->db);
    return c;
}

/* Back to the pool; a connection that changed rows (committed or rolled
 * back: a needless bump costs a cache miss, nothing more) moves the
 * generation on, after its transaction has ended. */
static void conn_put(Store *s, Conn *c) {
    if (sqlite3_total_changes64(c->db) != c->changes) atomic_fetch_add(&s->gen, 1);
    pthread_mutex_lock(&s->mu);
    s->idle[s->nidle++] = (int)(c - s->conns);
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->mu);
}

/* Statement `q` of this connection, reset and unbound; NULL with the error set. */
static sqlite3_stmt *stmt(Conn *c, int q) {
    if (!c->st[q]) {
        if (sqlite3_prepare_v3(c->db, queries[q], -1, SQLITE_PREPARE_PERSISTENT, &c->st[q], NULL) !=
            SQLITE_OK) {
            db_fail(c, queries[q]);
            return NULL;
        }
        return c->st[q];
    }
    sqlite3_reset(c->st[q]);
    sqlite3_clear_bindings(c->st[q]);
    return c->st[q];
}

/* A connection from the pool and its statement q: the opening of every
 * read. *rc is DACL_OK, or why the statement could not be prepared (then
 * the result is NULL, and the connection must still go back). */
static sqlite3_stmt *conn_stmt(Store *s, int q, Conn **c, int *rc) {
    *c = conn_get(s);
    sqlite3_stmt *st = stmt(*c, q);
    *rc = st ? DACL_OK : dacl_error_code();
    return st;
}

/* Runs a statement that returns no rows. */
static int run_done(Conn *c, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? DACL_OK : db_fail(c, sqlite3_sql(st));
}

static int run_q(Conn *c, int q) {
    sqlite3_stmt *st = stmt(c, q);
    return st ? run_done(c, st) : dacl_error_code();
}

static int tx_begin(Conn *c) {
    return run_q(c, Q_BEGIN);
}

/* Commits when rc is DACL_OK, else rolls back; returns rc or the commit's failure. */
static int tx_end(Conn *c, int rc) {
    if (rc == DACL_OK) {
        rc = run_q(c, Q_COMMIT);
        if (rc == DACL_OK) return DACL_OK;
    }
    if (!sqlite3_get_autocommit(c->db)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dacl_error_message());
        run_q(c, Q_ROLLBACK);
        dacl_error_set(rc, __FILE__, __LINE__, "%s", msg); /* the reason, not the rollback's */
    }
    return rc;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v) {
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int conn_open(Conn *c, const char *path) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
        int rc = DACL_FAIL(DACL_EIO, "%s: cannot open the database: %s", path,
                           c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        c->db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    /* WAL: readers never wait for the writer; FULL: a commit the API
     * acknowledged survives a power cut, not only a crash */
    char *err = NULL;
    if (sqlite3_exec(c->db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                     NULL, NULL, &err) != SQLITE_OK) {
        int rc = DACL_FAIL(DACL_EIO, "%s: %s", path, err ? err : "cannot configure the database");
        sqlite3_free(err);
        return rc;
    }
    return DACL_OK;
}

static int user_version(Conn *c, int *v) {
    sqlite3_stmt *st = stmt(c, Q_USER_VERSION);
    if (!st) return dacl_error_code();
    if (sqlite3_step(st) != SQLITE_ROW) return db_fail(c, "PRAGMA user_version");
    *v = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return DACL_OK;
}

/* Every migration newer than the database, in one transaction: a failure
 * leaves the schema exactly as it was. */
static int migrate(Conn *c, int *applied) {
    int last = store_migrations[store_migration_count - 1].version;
    DACL_TRY(tx_begin(c));
    int have = 0, n = 0, rc = user_version(c, &have);
    if (rc == DACL_OK && have > last)
        rc = DACL_FAIL(DACL_EFORMAT,
                       "the database is at schema version %d, newer than this dacld (%d): "
                       "use a newer dacld",
                       have, last);
    for (int i = 0; rc == DACL_OK && i < store_migration_count; i++) {
        const StoreMigration *m = &store_migrations[i];
        if (m->version <= have) continue;
        char *err = NULL;
        char pragma[64];
        /* PRAGMA takes no parameters; the value is our own integer */
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", m->version);
        if (sqlite3_exec(c->db, m->sql, NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(c->db, pragma, NULL, NULL, &err) != SQLITE_OK)
            rc = DACL_FAIL(DACL_EFORMAT, "migration %s: %s", m->name, err ? err : "failed");
        sqlite3_free(err);
        n++;
    }
    rc = tx_end(c, rc);
    if (rc == DACL_OK && applied) *applied = n;
    return rc;
}

void store_close(Store *s) {
    if (!s) return;
    for (int i = 0; s->conns && i < s->n; i++) {
        for (int q = 0; q < Q_COUNT; q++) sqlite3_finalize(s->conns[i].st[q]);
        sqlite3_close(s->conns[i].db);
    }
    free(s->conns);
    free(s->idle);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->freed);
    free(s);
}

int store_open(Store **out, const char *path, int conns, int *applied) {
    *out = NULL;
    if (conns < 1) conns = 1;
    Store *s = calloc(1, sizeof *s);
    if (!s) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->freed, NULL);
    s->conns = calloc((size_t)conns, sizeof *s->conns);
    s->idle = calloc((size_t)conns, sizeof *s->idle);
    if (!s->conns || !s->idle) {
        store_close(s);
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    int rc = DACL_OK;
    for (int i = 0; rc == DACL_OK && i < conns; i++) {
        rc = conn_open(&s->conns[i], path);
        s->n = i + 1;
        /* the schema first, so the other connections see the final one */
        if (rc == DACL_OK && i == 0) rc = migrate(&s->conns[0], applied);
        s->idle[s->nidle++] = i;
    }
    if (rc) {
        store_close(s);
        return rc;
    }
    *out = s;
    return DACL_OK;
}

/* This Store's own writes move the generation in conn_put. Other processes'
 * (sqlite3 by hand, a restore) are seen through PRAGMA data_version, which
 * changes on a connection once any other connection has committed since
 * it last asked: it cannot tell them from this Store's, so each connection
 * moves the generation once more after those too, a few needless misses per
 * write. Where the database cannot answer, it moves on every call: nothing
 * cached is trusted. */
uint64_t store_generation(Store *s) {
    Conn *c = conn_get(s);
    sqlite3_stmt *st = stmt(c, Q_DATA_VERSION);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        if (v != c->data_version) {
            c->data_version = v;
            atomic_fetch_add(&s->gen, 1);
        }
    } else {
        atomic_fetch_add(&s->gen, 1);
    }
    if (st) sqlite3_reset(st);
    conn_put(s, c);
    return atomic_load(&s->gen);
}

int store_open_state(Store **out, const char *state_dir, int conns, int *applied) {
    *out = NULL;
    if (mkdir(state_dir, 0750) != 0 && errno != EEXIST)
        return DACL_FAIL(DACL_EIO, "%s: cannot create the state folder: %s", state_dir, strerror(errno));
    char path[4200];
    if (snprintf(path, sizeof path, "%s/dacld.db", state_dir) >= (int)sizeof path)
        return DACL_FAIL(DACL_EINVAL, "%s: the state folder's path is too long", state_dir);
    return store_open(out, path, conns, applied);
}

int store_schema_version(Store *s, int *version) {
    Conn *c = conn_get(s);
    int rc = user_version(c, version);
    conn_put(s, c);
    return rc;
}

/* -------------------------------------------------------------- jobs -- */

void store_job_clear(StoreJob *j) {
    free(j->name);
    free(j->config);
    free(j->error);
    free(j->work_dir);
    free(j->latest);
    free(j->best);
    memset(j, 0, sizeof *j);
}

void store_jobs_free(StoreJob *jobs, int n) {
    for (int i = 0; jobs && i < n; i++) store_job_clear(&jobs[i]);
    free(jobs);
}

/* a copy of a text column; *out = NULL for SQL NULL */
static int col_dup(sqlite3_stmt *st, int i, char **out) {
    const unsigned char *t = sqlite3_column_text(st, i);
    *out = NULL;
    if (!t) return DACL_OK;
    *out = strdup((const char *)t);
    return *out ? DACL_OK : DACL_FAIL(DACL_ENOMEM, "out of memory");
}

static int read_job(sqlite3_stmt *st, StoreJob *j) {
    memset(j, 0, sizeof *j);
    j->id = (long)sqlite3_column_int64(st, 0);
    int st_code = store_status_parse((const char *)sqlite3_column_text(st, 3));
    j->status = st_code < 0 ? JOB_FAILED : (JobStatus)st_code;
    j->priority = sqlite3_column_int(st, 4);
    j->submitted_ms = sqlite3_column_int64(st, 5);
    j->started_ms = sqlite3_column_int64(st, 6);
    j->finished_ms = sqlite3_column_int64(st, 7);
    j->iteration = (long)sqlite3_column_int64(st, 8);
    j->total = (long)sqlite3_column_int64(st, 9);
    j->cancel_requested = sqlite3_column_int(st, 12);
    int rc = DACL_OK;
    const int text_cols[] = {1, 2, 10, 11, 13, 14};
    char **dst[] = {&j->name, &j->config, &j->error, &j->work_dir, &j->latest, &j->best};
    for (int k = 0; rc == DACL_OK && k < 6; k++) rc = col_dup(st, text_cols[k], dst[k]);
    if (rc) store_job_clear(j);
    return rc;
}

int store_job_insert(Store *s, const char *name, const char *config, int priority, long total,
                     const char *state_dir, long *id) {
    Conn *c = conn_get(s);
    int rc = tx_begin(c);
    sqlite3_stmt *st = rc ? NULL : stmt(c, Q_JOB_INSERT);
    if (!rc && !st) rc = dacl_error_code();
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, config, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 3, priority);
        sqlite3_bind_int64(st, 4, store_now_ms());
        sqlite3_bind_int64(st, 5, total);
        rc = run_done(c, st);
    }
    long new_id = (long)sqlite3_last_insert_rowid(c->db);
    if (!rc && !(st = stmt(c, Q_JOB_WORKDIR))) rc = dacl_error_code();
    if (!rc) {
        sqlite3_bind_int64(st, 1, new_id);
        sqlite3_bind_text(st, 2, state_dir, -1, SQLITE_TRANSIENT);
        rc = run_done(c, st);
    }
    rc = tx_end(c, rc);
    conn_put(s, c);
    if (rc == DACL_OK) *id = new_id;
    return rc;
}

int store_job_get(Store *s, long id, StoreJob *j) {
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, Q_JOB_GET, &c, &rc);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            rc = read_job(st, j);
        else if (r == SQLITE_DONE)
            rc = DACL_FAIL(DACL_ENOTFOUND, "no job %ld", id);
        else
            rc = db_fail(c, "reading a job");
        sqlite3_reset(st);
    }
    conn_put(s, c);
    return rc;
}

/* a single integer from a one-row query whose ?1 is already bound */
static int one_int(Conn *c, sqlite3_stmt *st, long *v) {
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) *v = (long)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return r == SQLITE_ROW ? DACL_OK : db_fail(c, sqlite3_sql(st));
}

int store_job_list(Store *s, int status, long limit, long offset, StoreJob **jobs, int *n,
                   long *total) {
    *jobs = NULL;
    *n = 0;
    const char *sname = status >= 0 ? store_status_name((JobStatus)status) : NULL;
    Conn *c = conn_get(s);
    int rc = DACL_OK;
    sqlite3_stmt *st;
    if (total) {
        if (!(st = stmt(c, Q_JOB_COUNT))) {
            rc = dacl_error_code();
        } else {
            bind_text_or_null(st, 1, sname);
            rc = one_int(c, st, total);
        }
    }
    StoreJob *arr = NULL;
    int cnt = 0, cap = 0;
    if (rc == DACL_OK && !(st = stmt(c, Q_JOB_LIST))) rc = dacl_error_code();
    if (rc == DACL_OK) {
        bind_text_or_null(st, 1, sname);
        sqlite3_bind_int64(st, 2, limit);
        sqlite3_bind_int64(st, 3, offset);
        int r;
        while (rc == DACL_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
            if (cnt == cap) {
                cap = cap ? 2 * cap : 16;
                StoreJob *na = realloc(arr, sizeof *arr * (size_t)cap);
                if (!na) {
                    rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
                    break;
                }
                arr = na;
            }
            rc = read_job(st, &arr[cnt]);
            if (rc == DACL_OK) cnt++;
        }
        if (rc == DACL_OK && r != SQLITE_DONE) rc = db_fail(c, "listing jobs");
        sqlite3_reset(st);
    }
    conn_put(s, c);
    if (rc) {
        store_jobs_free(arr, cnt);
        return rc;
    }
    *jobs = arr;
    *n = cnt;
    return DACL_OK;
}

int store_job_queue_position(Store *s, long id, long *pos) {
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, Q_JOB_QUEUE_POS, &c, &rc);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        rc = one_int(c, st, pos);
    }
    conn_put(s, c);
    return rc;
}

int store_job_claim(Store *s, long *id) {
    *id = 0;
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, Q_JOB_CLAIM, &c, &rc);
    if (st) {
        sqlite3_bind_int64(st, 1, store_now_ms());
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) *id = (long)sqlite3_column_int64(st, 0);
        /* RETURNING reports its row before the update is complete: finish it */
        while (r == SQLITE_ROW) r = sqlite3_step(st);
        if (r != SQLITE_DONE) rc = db_fail(c, "claiming a job");
        sqlite3_reset(st);
    }
    conn_put(s, c);
    return rc;
}

static int set_status(Conn *c, long id, JobStatus stat, const char *error) {
    sqlite3_stmt *st = stmt(c, Q_JOB_STATUS);
    if (!st) return dacl_error_code();
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, store_status_name(stat), -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, error);
    sqlite3_bind_int(st, 4, store_status_final(stat));
    sqlite3_bind_int64(st, 5, store_now_ms());
    return run_done(c, st);
}

int store_job_set_status(Store *s, long id, JobStatus st, const char *error) {
    Conn *c = conn_get(s);
    int rc = set_status(c, id, st, error);
    conn_put(s, c);
    return rc;
}

static int get_status(Conn *c, long id, JobStatus *out) {
    sqlite3_stmt *st = stmt(c, Q_JOB_STATUS_GET);
    if (!st) return dacl_error_code();
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    int code = r == SQLITE_ROW ? store_status_parse((const char *)sqlite3_column_text(st, 0)) : -1;
    sqlite3_reset(st);
    if (r == SQLITE_DONE) return DACL_FAIL(DACL_ENOTFOUND, "no job %ld", id);
    if (r != SQLITE_ROW) return db_fail(c, "reading a job's status");
    *out = code < 0 ? JOB_FAILED : (JobStatus)code;
    return DACL_OK;
}

int store_job_cancel(Store *s, long id, CancelOutcome *out) {
    Conn *c = conn_get(s);
    JobStatus cur = JOB_QUEUED;
    int rc = tx_begin(c);
    if (rc == DACL_OK) rc = get_status(c, id, &cur);
    if (rc == DACL_OK) {
        if (cur == JOB_QUEUED || cur == JOB_INTERRUPTED) {
            *out = CANCEL_DONE;
            rc = set_status(c, id, JOB_CANCELED, NULL);
        } else if (cur == JOB_RUNNING) {
            *out = CANCEL_REQUESTED;
            sqlite3_stmt *st = stmt(c, Q_JOB_CANCEL_REQ);
            if (!st) rc = dacl_error_code();
            if (st) sqlite3_bind_int64(st, 1, id), rc = run_done(c, st);
        } else {
            *out = CANCEL_FINAL;
        }
    }
    rc = tx_end(c, rc);
    conn_put(s, c);
    return rc;
}

int store_job_delete(Store *s, long id) {
    Conn *c = conn_get(s);
    JobStatus cur = JOB_QUEUED;
    int rc = tx_begin(c);
    if (rc == DACL_OK) rc = get_status(c, id, &cur);
    if (rc == DACL_OK && !store_status_final(cur))
        rc = DACL_FAIL(DACL_EEXIST, "job %ld is %s: cancel it first", id, store_status_name(cur));
    if (rc == DACL_OK) {
        sqlite3_stmt *st = stmt(c, Q_JOB_DELETE);
        if (!st) rc = dacl_error_code();
        if (st) sqlite3_bind_int64(st, 1, id), rc = run_done(c, st);
    }
    rc = tx_end(c, rc);
    conn_put(s, c);
    return rc;
}

int store_recover(Store *s, int *interrupted, int *canceled) {
    Conn *c = conn_get(s);
    int rc = tx_begin(c);
    if (rc == DACL_OK) rc = run_q(c, Q_RECOVER_RUNNING);
    *interrupted = rc ? 0 : sqlite3_changes(c->db);
    sqlite3_stmt *st = rc ? NULL : stmt(c, Q_RECOVER_CANCELED);
    if (!rc && !st) rc = dacl_error_code();
    if (st) sqlite3_bind_int64(st, 1, store_now_ms()), rc = run_done(c, st);
    *canceled = rc ? 0 : sqlite3_changes(c->db);
    rc = tx_end(c, rc);
    conn_put(s, c);
    return rc;
}

int store_status_counts(Store *s, long counts[JOB_NSTATUS]) {
    memset(counts, 0, sizeof(long) * JOB_NSTATUS);
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, Q_STATUS_COUNTS, &c, &rc);
    int r = SQLITE_DONE;
    while (st && (r = sqlite3_step(st)) == SQLITE_ROW) {
        int k = store_status_parse((const char *)sqlite3_column_text(st, 0));
        if (k >= 0) counts[k] = (long)sqlite3_column_int64(st, 1);
    }
    if (st && r != SQLITE_DONE) rc = db_fail(c, "counting jobs");
    if (st) sqlite3_reset(st);
    conn_put(s, c);
    return rc;
}

/* ----------------------------------------------------------- metrics -- */

int store_metrics_put(Store *s, long job, const StoreMetric *rows, size_t n, long iteration,
                      const char *latest) {
    Conn *c = conn_get(s);
    int rc = tx_begin(c);
    sqlite3_stmt *put = rc ? NULL : stmt(c, Q_METRIC_PUT);
    sqlite3_stmt *name = put ? stmt(c, Q_METRIC_NAME_PUT) : NULL;
    if (!rc && !name) rc = dacl_error_code();
    /* each name once per batch: a batch holds many steps of the same few series */
    const char *seen[64];
    int nseen = 0;
    for (size_t i = 0; rc == DACL_OK && i < n; i++) {
        sqlite3_bind_int64(put, 1, job);
        sqlite3_bind_text(put, 2, rows[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 3, rows[i].step);
        sqlite3_bind_double(put, 4, rows[i].value);
        rc = run_done(c, put);
        int known = 0;
        for (int k = 0; k < nseen && !known; k++) known = !strcmp(seen[k], rows[i].name);
        if (rc == DACL_OK && !known) {
            if (nseen < 64) seen[nseen++] = rows[i].name;
            sqlite3_bind_int64(name, 1, job);
            sqlite3_bind_text(name, 2, rows[i].name, -1, SQLITE_STATIC);
            rc = run_done(c, name);
        }
    }
    sqlite3_stmt *prog = rc ? NULL : stmt(c, Q_JOB_PROGRESS);
    if (!rc && !prog) rc = dacl_error_code();
    if (prog) {
        sqlite3_bind_int64(prog, 1, job);
        sqlite3_bind_int64(prog, 2, iteration);
        bind_text_or_null(prog, 3, latest);
        rc = run_done(c, prog);
    }
    rc = tx_end(c, rc);
    conn_put(s, c);
    return rc;
}

int store_metric_names(Store *s, long job, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, Q_METRIC_NAMES, &c, &rc);
    int r = SQLITE_DONE, cnt = 0, cap = 0;
    char **arr = NULL;
    if (st) sqlite3_bind_int64(st, 1, job);
    while (st && rc == DACL_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            char **na = realloc(arr, sizeof *arr * (size_t)cap);
            if (!na) {
                rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
                break;
            }
            arr = na;
        }
        rc = col_dup(st, 0, &arr[cnt]);
        if (rc == DACL_OK) cnt++;
    }
    if (st && rc == DACL_OK && r != SQLITE_DONE) rc = db_fail(c, "listing series");
    if (st) sqlite3_reset(st);
    conn_put(s, c);
    if (rc) {
        for (int i = 0; i < cnt; i++) free(arr[i]);
        free(arr);
        return rc;
    }
    *names = arr;
    *n = cnt;
    return DACL_OK;
}

int store_metric_points(Store *s, long job, const char *name, long since, StorePointFn fn, void *ctx) {
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, name ? Q_METRIC_SERIES : Q_METRIC_ALL, &c, &rc);
    int r = SQLITE_DONE;
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        if (name) sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, name ? 3 : 2, since);
    }
    while (st && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0), (long)sqlite3_column_int64(st, 1),
               sqlite3_column_double(st, 2)))
            break;
    if (st && r != SQLITE_DONE && r != SQLITE_ROW) rc = db_fail(c, "reading metrics");
    if (st) sqlite3_reset(st);
    conn_put(s, c);
    return rc;
}

/* --------------------------------------------------------- evaluations -- */

int store_evaluation_put(Store *s, long job, long iteration, int model, double mean_dice,
                         const char *detail, const char *best) {
    Conn *c = conn_get(s);
    int rc = tx_begin(c);
    sqlite3_stmt *st = rc ? NULL : stmt(c, Q_EVAL_PUT);
    if (!rc && !st) rc = dacl_error_code();
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int64(st, 2, iteration);
        sqlite3_bind_int(st, 3, model);
        sqlite3_bind_double(st, 4, mean_dice);
        sqlite3_bind_text(st, 5, detail, -1, SQLITE_STATIC);
        rc = run_done(c, st);
    }
    if (rc == DACL_OK && best) {
        if (!(st = stmt(c, Q_JOB_BEST))) rc = dacl_error_code();
        if (st) {
            sqlite3_bind_int64(st, 1, job);
            sqlite3_bind_text(st, 2, best, -1, SQLITE_STATIC);
            rc = run_done(c, st);
        }
    }
    rc = tx_end(c, rc);
    conn_put(s, c);
    return rc;
}

int store_evaluations(Store *s, long job, long since, StoreEvalFn fn, void *ctx) {
    Conn *c;
    int rc;
    sqlite3_stmt *st = conn_stmt(s, Q_EVALS, &c, &rc);
    int r = SQLITE_DONE;
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int64(st, 2, since);
    }
    while (st && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (long)sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
               (const char *)sqlite3_column_text(st, 2)))
            break;
    if (st && r != SQLITE_DONE && r != SQLITE_ROW) rc = db_fail(c, "reading evaluations");
    if (st) sqlite3_reset(st);
    conn_put(s, c);
    return rc;
}
