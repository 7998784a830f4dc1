/* A job's results: metric series (JSON, bucketed on request, and CSV),
 * validation rounds and checkpoint downloads. All read the store or the
 * job's folder; none waits for training. */
#include <cjson/cJSON.h>
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

static cJSON *series_json(const Series *s, size_t raw) {
    cJSON *o = cJSON_CreateObject();
    cJSON *st = cJSON_AddArrayToObject(o, "step"), *va = cJSON_AddArrayToObject(o, "value");
    for (size_t i = 0; i < s->n; i++) {
        cJSON_AddItemToArray(st, cJSON_CreateNumber((double)s->step[i]));
        cJSON_AddItemToArray(va, cJSON_CreateNumber(s->value[i]));
    }
    cJSON_AddNumberToObject(o, "points", (double)raw);
    cJSON_AddNumberToObject(o, "folded", (double)(raw - s->n));
    return o;
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

void api_job_metrics(Server *s, Request *r) {
    long since, max_points;
    StoreJob j;
    if (!http_query_long(r, "since", -1, 1L << 40, -1, &since) ||
        !http_query_long(r, "max_points", 0, MAX_POINTS_CAP, 0, &max_points) || !api_load_job(s, r, &j))
        return;
    long job = j.id;
    store_job_clear(&j);
    if (max_points == 1) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "max_points",
                   "max_points: 0 (all) or at least 2 (a minimum and a maximum per bucket)");
        return;
    }
    const char *list = http_query(r, "names");
    char **names;
    int n;
    int rc = list ? split_names(list, &names, &n) : store_metric_names(s->store, job, &names, &n);
    cJSON *o = rc ? NULL : cJSON_CreateObject();
    for (int i = 0; rc == DACL_OK && i < n; i++) {
        Series se = {0};
        rc = store_metric_points(s->store, job, names[i], since, series_add, &se);
        if (rc == DACL_OK && se.oom) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
        size_t raw = se.n;
        if (rc == DACL_OK) series_bucket(&se, (size_t)max_points);
        if (rc == DACL_OK) cJSON_AddItemToObject(o, names[i], series_json(&se, raw));
        free(se.step);
        free(se.value);
    }
    free_names(names, n);
    if (rc) {
        cJSON_Delete(o);
        http_internal(r);
        return;
    }
    http_json(r, MHD_HTTP_OK, o);
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
