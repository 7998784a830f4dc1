/* A job's results: metric series (JSON, bucketed on request, and CSV),
 * validation rounds and checkpoint downloads. All read the store or the
 * job's folder; none waits for training. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dacl/error.h"

#define MAX_POINTS_CAP 100000

typedef struct {
    long *step;
    double *value;
    size_t n, cap;
    int oom;
} Series;

static int series_add(void *ctx, const char *name, long step, double value) {
    (void)name;
    Series *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        long *ns = realloc(s->step, cap * sizeof *ns);
        if (ns) s->step = ns;
        double *nv = ns ? realloc(s->value, cap * sizeof *nv) : NULL;
        if (nv) s->value = nv;
        if (!ns || !nv) {
            s->oom = 1;
            return 1;
        }
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->value[s->n++] = value;
    return 0;
}

/* Folds the series into at most max_points points: per bucket of
 * consecutive steps, its minimum and its maximum, in step order, so spikes
 * survive the down-sampling. */
static void series_bucket(Series *s, size_t max_points) {
    if (max_points < 2 || s->n <= max_points) return;
    size_t nb = max_points / 2, out = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * s->n / nb, hi = (b + 1) * s->n / nb;
        if (lo >= hi) continue;
        size_t mn = lo, mx = lo;
        for (size_t i = lo + 1; i < hi; i++) {
            if (s->value[i] < s->value[mn]) mn = i;
            if (s->value[i] > s->value[mx]) mx = i;
        }
        size_t first = mn < mx ? mn : mx, second = mn < mx ? mx : mn;
        /* out <= lo <= first, so the in-place compaction never overwrites a point still to be read */
        s->step[out] = s->step[first], s->value[out++] = s->value[first];
        if (second != first) s->step[out] = s->step[second], s->value[out++] = s->value[second];
    }
    s->n = out;
}

/* "name":{"step":[...],"value":[...],"points":N,"folded":M}, printed
 * directly: on a long job this is tens of thousands of numbers, and
 * building a cJSON tree for them costs more than reading them. */
static void series_print(HttpBuf *b, const char *name, const Series *s, size_t raw) {
    buf_printf(b, "\"%s\":{\"step\":[", name);
    for (size_t i = 0; i < s->n; i++) buf_printf(b, i ? ",%ld" : "%ld", s->step[i]);
    buf_printf(b, "],\"value\":[");
    for (size_t i = 0; i < s->n; i++) {
        if (i) buf_append(b, ",", 1);
        char num[32];
        /* the shortest of 15 or 17 digits that reads back as the same double */
        snprintf(num, sizeof num, "%.15g", s->value[i]);
        if (strtod(num, NULL) != s->value[i]) snprintf(num, sizeof num, "%.17g", s->value[i]);
        if (isfinite(s->value[i]))
            buf_append(b, num, strlen(num));
        else
            buf_append(b, "null", 4); /* JSON has no NaN */
    }
    buf_printf(b, "],\"points\":%zu,\"folded\":%zu}", raw, raw - s->n);
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* ?names=a,b into a malloc'd array of strings */
static int split_names(const char *list, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    char **arr = calloc((size_t)cap, sizeof *arr);
    if (!arr) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    int k = 0;
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if (l && !(arr[k] = strndup(p, l))) {
            free_names(arr, k);
            return DACL_FAIL(DACL_ENOMEM, "out of memory");
        }
        k += l > 0;
        p += l + (p[l] == ',');
    }
    *out = arr;
    *n = k;
    return DACL_OK;
}

/* ------------------------------------------------------------ cache -- */

/* Answers of /metrics by (job, query), valid while the job's flushed
 * iteration and status are what they were: a dashboard polling a long job
 * costs one store scan per flush, not one per request. */
#define CACHE_SLOTS 16

typedef struct {
    long job, iteration;
    int status;
    char key[192];
    char *json;
    size_t n;
    unsigned long used;
} CacheSlot;

struct MetricsCache {
    pthread_mutex_t mu;
    unsigned long tick;
    CacheSlot slot[CACHE_SLOTS];
};

int api_cache_create(Server *s) {
    s->mcache = calloc(1, sizeof *s->mcache);
    if (!s->mcache) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mcache->mu, NULL);
    return DACL_OK;
}

void api_cache_free(Server *s) {
    if (!s->mcache) return;
    for (int i = 0; i < CACHE_SLOTS; i++) free(s->mcache->slot[i].json);
    pthread_mutex_destroy(&s->mcache->mu);
    free(s->mcache);
    s->mcache = NULL;
}

/* a copy of the cached answer, or NULL */
static char *cache_get(MetricsCache *c, const StoreJob *j, const char *key, size_t *n) {
    char *out = NULL;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CACHE_SLOTS && !out; i++) {
        CacheSlot *e = &c->slot[i];
        if (!e->json || e->job != j->id || e->iteration != j->iteration || e->status != (int)j->status ||
            strcmp(e->key, key))
            continue;
        if ((out = malloc(e->n + 1))) {
            memcpy(out, e->json, e->n + 1);
            *n = e->n;
            e->used = ++c->tick;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

static void cache_put(MetricsCache *c, const StoreJob *j, const char *key, const char *json, size_t n) {
    char *copy = malloc(n + 1);
    if (!copy || strlen(key) >= sizeof c->slot[0].key) {
        free(copy);
        return;
    }
    memcpy(copy, json, n + 1);
    pthread_mutex_lock(&c->mu);
    CacheSlot *victim = &c->slot[0];
    for (int i = 0; i < CACHE_SLOTS; i++) {
        CacheSlot *e = &c->slot[i];
        if (e->json && e->job == j->id && !strcmp(e->key, key)) { /* an older version of it */
            victim = e;
            break;
        }
        if (e->used < victim->used) victim = e;
    }
    free(victim->json);
    *victim = (CacheSlot){.job = j->id, .iteration = j->iteration, .status = (int)j->status, .json = copy,
                          .n = n, .used = ++c->tick};
    snprintf(victim->key, sizeof victim->key, "%s", key);
    pthread_mutex_unlock(&c->mu);
}

void api_job_metrics(Server *s, Request *r) {
    long since, max_points;
    StoreJob j;
    if (!http_query_long(r, "since", -1, 1L << 40, -1, &since) ||
        !http_query_long(r, "max_points", 0, MAX_POINTS_CAP, 0, &max_points) || !api_load_job(s, r, &j))
        return;
    long job = j.id;
    const char *list = http_query(r, "names");
    int bad = 1;
    if (max_points == 1)
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "max_points",
                   "max_points: 0 (all) or at least 2 (a minimum and a maximum per bucket)");
    else if (list && list[strspn(list, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-,")])
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "names",
                   "names: series names separated by commas (letters, digits, _ . -)");
    else
        bad = 0;
    char key[192];
    size_t len;
    /* a query too long for a key is not cached: a truncated key could match another */
    if (snprintf(key, sizeof key, "%ld|%ld|%s", since, max_points, list ? list : "*") >= (int)sizeof key)
        key[0] = '\0';
    char *text = bad || !key[0] ? NULL : cache_get(s->mcache, &j, key, &len);
    if (bad || text) {
        if (text) http_bytes(r, MHD_HTTP_OK, "application/json", text, len);
        store_job_clear(&j);
        return;
    }
    char **names;
    int n;
    int rc = list ? split_names(list, &names, &n) : store_metric_names(s->store, job, &names, &n);
    HttpBuf b = {0};
    buf_append(&b, "{", 1);
    for (int i = 0; rc == DACL_OK && i < n; i++) {
        Series se = {0};
        rc = store_metric_points(s->store, job, names[i], since, series_add, &se);
        if (rc == DACL_OK && se.oom) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
        size_t raw = se.n;
        series_bucket(&se, (size_t)max_points);
        if (i) buf_append(&b, ",", 1);
        series_print(&b, names[i], &se, raw);
        free(se.step);
        free(se.value);
    }
    buf_append(&b, "}", 1);
    free_names(names, n);
    text = buf_take(&b, &len);
    if (rc || !text) {
        free(text);
        http_internal(r);
    } else {
        if (key[0]) cache_put(s->mcache, &j, key, text, len);
        http_bytes(r, MHD_HTTP_OK, "application/json", text, len);
    }
    store_job_clear(&j);
}

/* ---------------------------------------------------------------- CSV -- */

typedef struct {
    HttpBuf b;
    char **names;
    int n;
    long step; /* of the row being filled, -1 before the first */
    double *row;
    int *has;
} CsvCtx;

static void csv_flush_row(CsvCtx *c) {
    if (c->step < 0) return;
    buf_printf(&c->b, "%ld", c->step);
    for (int i = 0; i < c->n; i++) {
        if (c->has[i])
            buf_printf(&c->b, ",%.9g", c->row[i]);
        else
            buf_append(&c->b, ",", 1);
        c->has[i] = 0;
    }
    buf_append(&c->b, "\n", 1);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int csv_point(void *ctx, const char *name, long step, double value) {
    CsvCtx *c = ctx;
    if (step != c->step) {
        csv_flush_row(c);
        c->step = step;
    }
    char **hit = bsearch(&name, c->names, (size_t)c->n, sizeof *c->names, cmp_name);
    if (hit) {
        c->row[hit - c->names] = value;
        c->has[hit - c->names] = 1;
    }
    return c->b.oom;
}

/* One row per iteration, one column per series (sorted by name), every point. */
void api_job_metrics_csv(Server *s, Request *r) {
    StoreJob j;
    if (!api_load_job(s, r, &j)) return;
    CsvCtx c = {.step = -1};
    int rc = store_metric_names(s->store, j.id, &c.names, &c.n);
    if (rc == DACL_OK) {
        qsort(c.names, (size_t)c.n, sizeof *c.names, cmp_name); /* bsearch's order, whatever SQL's */
        c.row = calloc((size_t)c.n + 1, sizeof *c.row);
        c.has = calloc((size_t)c.n + 1, sizeof *c.has);
        if (!c.row || !c.has) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    if (rc == DACL_OK) {
        buf_printf(&c.b, "step");
        for (int i = 0; i < c.n; i++) buf_printf(&c.b, ",%s", c.names[i]);
        buf_append(&c.b, "\n", 1);
        rc = store_metric_points(s->store, j.id, NULL, -1, csv_point, &c);
        csv_flush_row(&c);
    }
    free_names(c.names, c.n);
    free(c.row);
    free(c.has);
    size_t n;
    char *text = buf_take(&c.b, &n);
    if (rc || !text) {
        free(text);
        http_internal(r);
    } else {
        http_bytes(r, MHD_HTTP_OK, "text/csv; charset=utf-8", text, n);
    }
    store_job_clear(&j);
}

/* -------------------------------------------------------- evaluation -- */

static int eval_add(void *ctx, long iteration, int model, const char *detail) {
    (void)iteration, (void)model;
    cJSON *d = cJSON_Parse(detail);
    if (d) cJSON_AddItemToArray(ctx, d);
    return 0;
}

void api_job_evaluation(Server *s, Request *r) {
    long since;
    StoreJob j;
    if (!http_query_long(r, "since", -1, 1L << 40, -1, &since) || !api_load_job(s, r, &j)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "job", (double)j.id);
    cJSON *best = j.best ? cJSON_Parse(j.best) : NULL;
    cJSON_AddItemToObject(o, "best", best ? best : cJSON_CreateNull());
    cJSON *rounds = cJSON_AddArrayToObject(o, "rounds");
    int rc = store_evaluations(s->store, j.id, since, eval_add, rounds);
    store_job_clear(&j);
    if (rc) {
        cJSON_Delete(o);
        http_internal(r);
        return;
    }
    http_json(r, MHD_HTTP_OK, o);
}

/* -------------------------------------------------------- checkpoint -- */

void api_job_checkpoint(Server *s, Request *r) {
    const char *which = http_query(r, "which");
    if (!which) which = "last";
    if (strcmp(which, "best") && strcmp(which, "last")) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "which", "which: best or last, got '%s'",
                   which);
        return;
    }
    StoreJob j;
    if (!api_load_job(s, r, &j)) return;
    char path[PATH_MAX + 64], name[96];
    snprintf(path, sizeof path, "%s/checkpoint-%s.bin", j.work_dir ? j.work_dir : "", which);
    snprintf(name, sizeof name, "job-%ld-checkpoint-%s.bin", j.id, which);
    http_file(r, path, "application/octet-stream", name);
    store_job_clear(&j);
}
