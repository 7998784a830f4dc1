/* Jobs: submit, list, get, cancel, delete. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "dacl/config.h"
#include "dacl/data.h"
#include "dacl/error.h"
#include "scheduler.h"

#define PRIORITY_MAX 1000

void api_iso_time(int64_t ms, char out[32]) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, 32 - k, ".%03dZ", (int)(ms % 1000));
}

static void add_time(cJSON *o, const char *key, int64_t ms) {
    char t[32];
    if (!ms) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    api_iso_time(ms, t);
    cJSON_AddStringToObject(o, key, t);
}

/* a stored JSON text as a JSON value (null if absent or unreadable) */
/* JSON syntax (RFC 8259) of one value from *p, skipping what follows it;
 * 0 when malformed. Checks without converting: no number is parsed. */
static int skip_ws(const char **p) {
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++;
    return 1;
}

static int json_value_ok(const char **p, int depth) {
    const char *c = *p;
    if (depth > 64) return 0;
    skip_ws(&c);
    if (*c == '{' || *c == '[') {
        char close = *c == '{' ? '}' : ']';
        int obj = *c == '{';
        c++;
        skip_ws(&c);
        if (*c == close) {
            *p = c + 1;
            return 1;
        }
        for (;;) {
            if (obj) {
                skip_ws(&c);
                if (*c != '"' || !json_value_ok(&c, depth + 1)) return 0;
                skip_ws(&c);
                if (*c++ != ':') return 0;
            }
            if (!json_value_ok(&c, depth + 1)) return 0;
            skip_ws(&c);
            if (*c == ',') {
                c++;
                continue;
            }
            if (*c != close) return 0;
            *p = c + 1;
            return 1;
        }
    }
    if (*c == '"') {
        for (c++; *c != '"'; c++) {
            if ((unsigned char)*c < 0x20) return 0; /* the end of the text included */
            if (*c == '\\') {
                c++;
                if (*c == 'u') {
                    for (int k = 1; k <= 4; k++)
                        if (!((c[k] >= '0' && c[k] <= '9') || ((c[k] | 32) >= 'a' && (c[k] | 32) <= 'f')))
                            return 0;
                    c += 4;
                } else if (!*c || !strchr("\"\\/bfnrt", *c)) {
                    return 0;
                }
            }
        }
        *p = c + 1;
        return 1;
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++)
        if (!strncmp(c, words[k], strlen(words[k]))) {
            *p = c + strlen(words[k]);
            return 1;
        }
    if (*c == '-') c++;
    if (*c == '0') c++;
    else if (*c >= '1' && *c <= '9') while (*c >= '0' && *c <= '9') c++;
    else return 0;
    if (*c == '.') {
        if (*++c < '0' || *c > '9') return 0;
        while (*c >= '0' && *c <= '9') c++;
    }
    if (*c == 'e' || *c == 'E') {
        c++;
        if (*c == '+' || *c == '-') c++;
        if (*c < '0' || *c > '9') return 0;
        while (*c >= '0' && *c <= '9') c++;
    }
    *p = c;
    return 1;
}

/* 1 if text is exactly one JSON value (surrounding whitespace allowed) */
static int json_text_ok(const char *text) {
    const char *p = text;
    return text && json_value_ok(&p, 0) && skip_ws(&p) && *p == '\0';
}

/* A JSON text the daemon stored (a config, a metrics record) goes into the
 * answer as it is: parsing and printing it again cost most of a job answer
 * (every number through strtod and printf). Checked first unless the caller
 * has parsed it already (valid), so a database edited by hand still gives
 * valid JSON: null where its text is not. */
static void add_raw_json(cJSON *o, const char *key, const char *text, int valid) {
    cJSON *v = text && (valid || json_text_ok(text)) ? cJSON_CreateRaw(text) : NULL;
    if (v) cJSON_Minify(v->valuestring); /* the config is stored indented */
    cJSON_AddItemToObject(o, key, v ? v : cJSON_CreateNull());
}

/* What a job list shows of the config c (parsed; may be NULL): "method" and
 * "dataset" {path, labeled}. */
static void add_summary(cJSON *o, const cJSON *c) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "method"), "name");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "dataset");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(d, "path");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(d, "labeled");
    if (cJSON_IsString(m))
        cJSON_AddStringToObject(o, "method", m->valuestring);
    else
        cJSON_AddNullToObject(o, "method");
    cJSON *ds = cJSON_AddObjectToObject(o, "dataset");
    if (cJSON_IsString(path))
        cJSON_AddStringToObject(ds, "path", path->valuestring);
    else
        cJSON_AddNullToObject(ds, "path");
    if (cJSON_IsNumber(lab))
        cJSON_AddNumberToObject(ds, "labeled", lab->valuedouble);
    else
        cJSON_AddNullToObject(ds, "labeled");
}

/* What the scheduler adds to a running job's answer: its progress snapshot
 * (live: it had one) and why its metrics are not being saved ("" when they
 * are). All zero for a job that is not running. */
typedef struct {
    int live;
    DaclProgress p;
    char warning[640];
} Live;

static void live_read(Server *s, long id, JobStatus status, Live *lv) {
    memset(lv, 0, sizeof *lv);
    if (status != JOB_RUNNING) return;
    lv->live = scheduler_progress(s->sched, id, &lv->p);
    if (!scheduler_warning(s->sched, id, lv->warning, sizeof lv->warning)) lv->warning[0] = '\0';
}

/* The job as the API shows it; full adds the config. Progress of a running
 * job comes from the scheduler's snapshot (lv: as read by live_read; NULL:
 * read here), which is fresher than the store. */
static cJSON *job_json(Server *s, const StoreJob *j, int full, const Live *lv) {
    Live own;
    if (!lv) live_read(s, j->id, j->status, &own), lv = &own;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)j->id);
    cJSON_AddStringToObject(o, "name", j->name ? j->name : "");
    cJSON_AddStringToObject(o, "status", store_status_name(j->status));
    cJSON_AddNumberToObject(o, "priority", j->priority);
    cJSON *config = j->config ? cJSON_Parse(j->config) : NULL; /* parsed once for both uses */
    add_summary(o, config);
    add_time(o, "submitted_at", j->submitted_ms);
    add_time(o, "started_at", j->started_ms);
    add_time(o, "finished_at", j->finished_ms);
    const DaclProgress *p = &lv->p;
    int live = lv->live;
    long it = live && p->iteration > j->iteration ? p->iteration : j->iteration;
    cJSON_AddNumberToObject(o, "iteration", (double)it);
    cJSON_AddNumberToObject(o, "total", (double)j->total);
    cJSON_AddNumberToObject(o, "progress", j->total > 0 ? (double)it / (double)j->total : 0.0);
    if (live && p->img_per_s > 0) {
        cJSON_AddNumberToObject(o, "images_per_s", p->img_per_s);
        cJSON_AddNumberToObject(o, "eta_s", p->eta_s);
    } else {
        cJSON_AddNullToObject(o, "images_per_s");
        cJSON_AddNullToObject(o, "eta_s");
    }
    long pos;
    if ((j->status == JOB_QUEUED || j->status == JOB_INTERRUPTED) && !j->cancel_requested &&
        store_job_queue_position(s->store, j->id, &pos) == DACL_OK)
        cJSON_AddNumberToObject(o, "queue_position", (double)pos);
    else
        cJSON_AddNullToObject(o, "queue_position");
    cJSON_AddBoolToObject(o, "cancel_requested", j->cancel_requested);
    if (j->error)
        cJSON_AddStringToObject(o, "error", j->error);
    else
        cJSON_AddNullToObject(o, "error");
    if (lv->warning[0]) /* a running job whose metrics the database refuses, say so */
        cJSON_AddStringToObject(o, "warning", lv->warning);
    else
        cJSON_AddNullToObject(o, "warning");
    add_raw_json(o, "latest", j->latest, 0);
    add_raw_json(o, "best", j->best, 0);
    if (full) add_raw_json(o, "config", config ? j->config : NULL, 1); /* parsed above */
    cJSON_Delete(config);
    return o;
}

int api_load_job(Server *s, Request *r, StoreJob *j) {
    long id;
    if (!http_param_id(r, 0, &id)) return 0;
    int rc = store_job_get(s->store, id, j);
    if (rc == DACL_ENOTFOUND) {
        http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no job %ld", id);
        return 0;
    }
    if (rc) {
        http_internal(r);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------- datasets -- */

int api_dataset_allowed(const Server *s, const char *path, char *why, size_t n) {
    DaclPhantomKind kind;
    int ph = dacl_phantom_parse_spec(path, &kind);
    if (ph == 1) return 1;
    if (ph < 0) {
        snprintf(why, n, "%s", dacl_error_message());
        return 0;
    }
    if (path[0] == '/') {
        snprintf(why, n, "'%s': absolute paths are refused; give a folder under the data root", path);
        return 0;
    }
    for (const char *p = path; *p;) { /* any ".." segment, wherever it is */
        size_t l = strcspn(p, "/");
        if (l == 2 && p[0] == '.' && p[1] == '.') {
            snprintf(why, n, "'%s': '..' is refused; give a folder under the data root", path);
            return 0;
        }
        p += l + (p[l] == '/');
    }
    /* symlinks are followed, then the result must still be inside the root */
    char joined[PATH_MAX * 2], real[PATH_MAX];
    snprintf(joined, sizeof joined, "%s/%s", s->cfg.data_root, path);
    if (!s->data_root_real[0] || !realpath(joined, real)) {
        snprintf(why, n, "'%s': no such dataset under the data root", path);
        return 0;
    }
    size_t rl = strlen(s->data_root_real);
    if (strncmp(real, s->data_root_real, rl) || (real[rl] != '/' && real[rl] != '\0')) {
        snprintf(why, n, "'%s' leads outside the data root", path);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ routes -- */

int api_job_parse_body(const char *body, size_t n, DaclJobConfig *cfg, int *priority, ApiBodyError *err) {
    err->code = "invalid_config";
    err->field[0] = err->message[0] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, n, &end, 0);
    if (!root) {
        err->code = "invalid_json";
        snprintf(err->message, sizeof err->message,
                 "the body is not valid JSON (at byte %ld); send a job config, {} for the defaults",
                 end ? (long)(end - body) : 0L);
        return 400;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(err->message, sizeof err->message, "the job config must be a JSON object");
        return 400;
    }
    /* priority is the queue's, not the engine's: take it out before the config parser */
    *priority = 0;
    cJSON *pr = cJSON_DetachItemFromObjectCaseSensitive(root, "priority");
    if (pr) {
        double v = cJSON_IsNumber(pr) ? pr->valuedouble : NAN;
        cJSON_Delete(pr);
        if (!(v >= -PRIORITY_MAX && v <= PRIORITY_MAX) || v != floor(v)) {
            cJSON_Delete(root);
            snprintf(err->field, sizeof err->field, "priority");
            snprintf(err->message, sizeof err->message, "priority: must be an integer in %d..%d",
                     -PRIORITY_MAX, PRIORITY_MAX);
            return 400;
        }
        *priority = (int)v;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return 500;
    int rc = dacl_config_parse(text, cfg, err->field, sizeof err->field);
    free(text);
    if (rc) {
        snprintf(err->message, sizeof err->message, "%s", dacl_error_message());
        return 400;
    }
    return 0;
}

void api_job_submit(Server *s, Request *r) {
    size_t n;
    const char *body = http_body(r, &n);
    DaclJobConfig cfg;
    int priority;
    ApiBodyError err;
    int status = api_job_parse_body(body, n, &cfg, &priority, &err);
    if (status == 500) {
        http_respond(r, 500, NULL);
        return;
    }
    if (status) {
        http_error(r, status, err.code, err.field, "%s", err.message);
        return;
    }
    char why[PATH_MAX + 128];
    if (!api_dataset_allowed(s, cfg.dataset.path, why, sizeof why)) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_config", "dataset.path", "dataset.path: %s", why);
        return;
    }
    char *full = dacl_config_to_json(&cfg);
    long id = 0;
    int rc = full ? store_job_insert(s->store, cfg.name, full, priority, cfg.train.iterations, s->cfg.state, &id)
              : DACL_FAIL(DACL_ENOMEM, "out of memory");
    free(full);
    StoreJob j;
    /* read back before waking a worker, so the answer shows the job as submitted */
    if (rc || (rc = store_job_get(s->store, id, &j))) {
        http_internal(r);
        return;
    }
    scheduler_wake(s->sched);
    fprintf(stderr, "dacld: job %ld '%s' queued (priority %d)\n", id, cfg.name, priority);
    http_json(r, MHD_HTTP_CREATED, job_json(s, &j, 1, NULL));
    store_job_clear(&j);
}

void api_job_list(Server *s, Request *r) {
    long limit, offset;
    if (!http_query_long(r, "limit", 1, 1000, 100, &limit) ||
        !http_query_long(r, "offset", 0, 1L << 40, 0, &offset))
        return;
    const char *st = http_query(r, "status");
    int status = -1;
    if (st && (status = store_status_parse(st)) < 0) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "status",
                   "status: one of queued, running, succeeded, failed, canceled, interrupted; got '%s'", st);
        return;
    }
    StoreJob *jobs;
    int n;
    long total;
    if (store_job_list(s->store, status, limit, offset, &jobs, &n, &total)) {
        http_internal(r);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "jobs");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, job_json(s, &jobs[i], 0, NULL));
    cJSON_AddNumberToObject(o, "total", (double)total);
    cJSON_AddNumberToObject(o, "limit", (double)limit);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    store_jobs_free(jobs, n);
    http_json(r, MHD_HTTP_OK, o);
}

/* ------------------------------------------------------ job answers -- */

/* Answers of GET /jobs/{id}, kept while nothing they were built from has
 * moved: the store (store_generation: any write, the job's or another's,
 * which moves queue positions) and, for a running job, the scheduler's
 * progress snapshot and warning. A dashboard or script polling a running
 * job then costs a comparison per request, not a database read, a parse of
 * the job's config and a print (a quarter of the HTTP threads' CPU under
 * tests/bench/serve_load.sh); the answer changes once an iteration. */
#define JOB_SLOTS 8

typedef struct {
    long id;             /* 0: free */
    uint64_t gen;        /* the store's generation before the job was read */
    JobStatus status;    /* as read then (the generation keeps it so) */
    Live lv;             /* the scheduler's part, read for that status */
    HttpShared *json;
    unsigned long used;
} JobSlot;

struct JobCache {
    pthread_mutex_t mu;
    unsigned long tick;
    JobSlot slot[JOB_SLOTS];
};

int api_job_cache_create(Server *s) {
    s->jcache = calloc(1, sizeof *s->jcache);
    if (!s->jcache) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    pthread_mutex_init(&s->jcache->mu, NULL);
    return DACL_OK;
}

void api_job_cache_free(Server *s) {
    if (!s->jcache) return;
    for (int i = 0; i < JOB_SLOTS; i++) http_shared_unref(s->jcache->slot[i].json);
    pthread_mutex_destroy(&s->jcache->mu);
    free(s->jcache);
    s->jcache = NULL;
}

static int same_live(const Live *a, const Live *b) {
    return a->live == b->live && a->p.iteration == b->p.iteration && a->p.total == b->p.total &&
           a->p.img_per_s == b->p.img_per_s && a->p.eta_s == b->p.eta_s && !strcmp(a->warning, b->warning);
}

/* The cached answer for job id at generation gen (a reference), or NULL. */
static HttpShared *job_cache_get(Server *s, long id, uint64_t gen) {
    JobCache *c = s->jcache;
    int idx = -1;
    JobStatus status = JOB_QUEUED;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < JOB_SLOTS && idx < 0; i++)
        if (c->slot[i].json && c->slot[i].id == id && c->slot[i].gen == gen) idx = i, status = c->slot[i].status;
    pthread_mutex_unlock(&c->mu);
    if (idx < 0) return NULL;
    /* the same generation: the job's row, its status included, is as it was */
    Live lv;
    live_read(s, id, status, &lv); /* outside the cache's lock */
    HttpShared *out = NULL;
    pthread_mutex_lock(&c->mu);
    JobSlot *e = &c->slot[idx];
    if (e->json && e->id == id && e->gen == gen && same_live(&e->lv, &lv)) {
        out = http_shared_ref(e->json);
        e->used = ++c->tick;
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

static void job_cache_put(Server *s, const StoreJob *j, uint64_t gen, const Live *lv, HttpShared *json) {
    JobCache *c = s->jcache;
    pthread_mutex_lock(&c->mu);
    JobSlot *victim = &c->slot[0];
    for (int i = 0; i < JOB_SLOTS; i++) {
        JobSlot *e = &c->slot[i];
        if (e->json && e->id == j->id) { /* an older answer */
            victim = e;
            break;
        }
        if (e->used < victim->used) victim = e;
    }
    http_shared_unref(victim->json);
    *victim = (JobSlot){.id = j->id, .gen = gen, .status = j->status, .lv = *lv,
                        .json = http_shared_ref(json), .used = ++c->tick};
    pthread_mutex_unlock(&c->mu);
}

void api_job_get(Server *s, Request *r) {
    long id;
    if (!http_param_id(r, 0, &id)) return;
    uint64_t gen = store_generation(s->store); /* before anything is read */
    HttpShared *hit = job_cache_get(s, id, gen);
    if (hit) {
        http_shared(r, MHD_HTTP_OK, "application/json", 0, hit);
        http_shared_unref(hit);
        return;
    }
    StoreJob j;
    if (!api_load_job(s, r, &j)) return;
    Live lv; /* read once: the answer is built from what its slot is keyed on */
    live_read(s, j.id, j.status, &lv);
    cJSON *o = job_json(s, &j, 1, &lv);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    HttpShared *body = text ? http_shared_new(text, strlen(text)) : NULL;
    if (body) job_cache_put(s, &j, gen, &lv, body);
    store_job_clear(&j);
    if (!body) {
        http_internal(r);
        return;
    }
    http_shared(r, MHD_HTTP_OK, "application/json", 0, body);
    http_shared_unref(body);
}

void api_job_cancel(Server *s, Request *r) {
    long id;
    if (!http_param_id(r, 0, &id)) return;
    CancelOutcome out;
    int rc = store_job_cancel(s->store, id, &out);
    if (rc == DACL_ENOTFOUND) {
        http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no job %ld", id);
        return;
    }
    if (rc) {
        http_internal(r);
        return;
    }
    if (out == CANCEL_REQUESTED) scheduler_cancel(s->sched, id);
    StoreJob j;
    if (store_job_get(s->store, id, &j)) {
        http_internal(r);
        return;
    }
    if (out == CANCEL_FINAL) {
        http_error(r, MHD_HTTP_CONFLICT, "conflict", NULL, "job %ld has already ended (%s)", id,
                   store_status_name(j.status));
    } else {
        fprintf(stderr, "dacld: job %ld: cancel %s\n", id, out == CANCEL_DONE ? "done" : "requested");
        /* 202: a running job stops at its next iteration, not yet */
        http_json(r, out == CANCEL_DONE ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED, job_json(s, &j, 0, NULL));
    }
    store_job_clear(&j);
}

static int unlink_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path) && errno != ENOENT ? -1 : 0;
}

void api_job_delete(Server *s, Request *r) {
    StoreJob j;
    if (!api_load_job(s, r, &j)) return;
    int rc = store_job_delete(s->store, j.id);
    if (rc == DACL_EEXIST) {
        http_error(r, MHD_HTTP_CONFLICT, "conflict", NULL, "%s", dacl_error_message());
    } else if (rc) {
        http_internal(r);
    } else {
        /* the row is gone first: a crash half-way leaves stray files, never a job without them */
        if (j.work_dir && nftw(j.work_dir, unlink_entry, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
            fprintf(stderr, "dacld: job %ld: could not remove all of %s: %s\n", j.id, j.work_dir,
                    strerror(errno));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)j.id);
        cJSON_AddBoolToObject(o, "deleted", 1);
        http_json(r, MHD_HTTP_OK, o);
    }
    store_job_clear(&j);
}
