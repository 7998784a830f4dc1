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

/* One series, in step order. */
typedef struct {
    long *step;
    double *value;
    size_t n, cap;
    int oom;
} Series;

static int series_grow(Series *s) {
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
    return 0;
}

static int series_add(void *ctx, const char *name, long step, double value) {
    (void)name;
    Series *s = ctx;
    if (s->n == s->cap && series_grow(s)) return 1;
    s->step[s->n] = step;
    s->value[s->n++] = value;
    return 0;
}

/* The points to print: all of them (returns s->n, idx untouched), or, past
 * max_points, per bucket of consecutive steps its minimum and its maximum in
 * step order, so spikes survive the down-sampling (their indices in idx,
 * which holds max_points). */
static size_t series_pick(const Series *s, size_t max_points, size_t *idx) {
    if (max_points < 2 || s->n <= max_points) return s->n;
    size_t nb = max_points / 2, out = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * s->n / nb, hi = (b + 1) * s->n / nb;
        if (lo >= hi) continue;
        size_t mn = lo, mx = lo;
        for (size_t i = lo + 1; i < hi; i++) {
            if (s->value[i] < s->value[mn]) mn = i;
            if (s->value[i] > s->value[mx]) mx = i;
        }
        idx[out++] = mn < mx ? mn : mx;
        if (mx != mn) idx[out++] = mn < mx ? mx : mn;
    }
    return out;
}

/* A value as JSON: the shortest of 15 or 17 digits that reads back as the
 * same double, null for what JSON has no number for. NUM_MAX holds the
 * longest, "-1.2345678901234567e-308", and its NUL. */
#define NUM_MAX 25

static void format_value(double v, char out[NUM_MAX]) {
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return;
    }
    snprintf(out, NUM_MAX, "%.15g", v);
    if (strtod(out, NULL) != v) snprintf(out, NUM_MAX, "%.17g", v);
}

static void append_long(HttpBuf *b, long v) {
    char tmp[24], out[24];
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    size_t n = 0, k = 0;
    do tmp[n++] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    buf_append(b, out, k);
}

/* "name":{"step":[...],"value":[...],"points":N,"folded":M} of k points
 * (those of idx, or the first k when idx is NULL), printed directly: on a
 * long job this is tens of thousands of numbers, and building a cJSON tree
 * for them costs more than reading them. txt, when given, keeps each value
 * formatted the first time it is printed ("" until then; the in-memory
 * series below): formatting is most of the cost of an answer. */
static void series_print(HttpBuf *b, const char *name, const Series *s, char (*txt)[NUM_MAX], const size_t *idx,
                         size_t k) {
    buf_printf(b, "\"%s\":{\"step\":[", name);
    for (size_t i = 0; i < k; i++) {
        if (i) buf_append(b, ",", 1);
        append_long(b, s->step[idx ? idx[i] : i]);
    }
    buf_printf(b, "],\"value\":[");
    for (size_t i = 0; i < k; i++) {
        size_t at = idx ? idx[i] : i;
        char num[NUM_MAX];
        if (!txt)
            format_value(s->value[at], num);
        else if (!txt[at][0])
            format_value(s->value[at], txt[at]);
        if (i) buf_append(b, ",", 1);
        buf_append(b, txt ? txt[at] : num, strlen(txt ? txt[at] : num));
    }
    buf_printf(b, "],\"points\":%zu,\"folded\":%zu}", s->n, s->n - k);
}

/* a series as the answer shows it, folded to max_points; 0, or 1 when memory ran out */
static int series_answer(HttpBuf *b, const char *name, const Series *s, char (*txt)[NUM_MAX], size_t max_points) {
    size_t *idx = NULL;
    if (max_points >= 2 && s->n > max_points && !(idx = malloc(max_points * sizeof *idx))) return 1;
    series_print(b, name, s, txt, idx, series_pick(s, max_points, idx));
    free(idx);
    return 0;
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
 * costs one computation per flush, not one per request. While the store's
 * generation has not moved either, an answer is found without reading the
 * job (cache_get_gen). Each answer is sent
 * from the slot's own bytes (shared, no copy), and gzip'd once for the
 * clients that take it (browsers do): a 1000-point answer for a CPS job is
 * about 290 KB of JSON and a quarter of that compressed, and copying and
 * sending those bytes was most of what an answer cost once it was cached. */
#define CACHE_SLOTS 16

typedef struct {
    long job, iteration;
    int status;
    uint64_t gen; /* the store's generation before the job was read */
    char key[192];
    HttpShared *json, *gz; /* gz: NULL until a client asks for it */
    int gz_pending;        /* a request is compressing json, after its own answer */
    unsigned long used;
} CacheSlot;

/* The series of a running job, kept in memory and topped up with the steps
 * flushed since the last answer, so that an answer after a flush reads one
 * flush's rows, not the job's whole history (30000 iterations of 11 series
 * took tens of ms of CPU per flush to read, and held an HTTP thread that
 * long: tests/bench/serve_load.sh). A running job's rows for steps up to its
 * flushed iteration N are written in the flush that makes N visible, so the
 * rows that can have appeared between two answers are those of steps in
 * (N before, N now]; a job rewrites older steps only when it resumes, at
 * start-up, before anything is kept here. A slot is held until another
 * running job needs it: 16 bytes a point, about 5 MB for that job. */
#define RAW_SLOTS 4

typedef struct {
    char *name;
    Series s;
    char (*txt)[NUM_MAX]; /* s's values as printed, formatted once when first printed ("" before) */
    size_t txt_cap;
} RawSeries;

typedef struct {
    pthread_mutex_t mu;  /* held while topping up and printing from it */
    long job;            /* 0: free */
    int pins;            /* threads holding it (under the cache's mu); reused only at 0 */
    unsigned long used;
    long iteration;      /* the job's flushed iteration the rows are complete up to; -1: none read */
    RawSeries *series;
    int n, cap;
} RawSlot;

struct MetricsCache {
    pthread_mutex_t mu;
    unsigned long tick;
    CacheSlot slot[CACHE_SLOTS];
    RawSlot raw[RAW_SLOTS];
};

static void raw_clear(RawSlot *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->series[i].name);
        free(r->series[i].s.step);
        free(r->series[i].s.value);
        free(r->series[i].txt);
    }
    free(r->series);
    r->series = NULL;
    r->n = r->cap = 0;
    r->iteration = -1;
}

int api_cache_create(Server *s) {
    s->mcache = calloc(1, sizeof *s->mcache);
    if (!s->mcache) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mcache->mu, NULL);
    for (int i = 0; i < RAW_SLOTS; i++) {
        pthread_mutex_init(&s->mcache->raw[i].mu, NULL);
        s->mcache->raw[i].iteration = -1;
    }
    return DACL_OK;
}

void api_cache_free(Server *s) {
    if (!s->mcache) return;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        http_shared_unref(s->mcache->slot[i].json);
        http_shared_unref(s->mcache->slot[i].gz);
    }
    for (int i = 0; i < RAW_SLOTS; i++) {
        raw_clear(&s->mcache->raw[i]);
        pthread_mutex_destroy(&s->mcache->raw[i].mu);
    }
    pthread_mutex_destroy(&s->mcache->mu);
    free(s->mcache);
    s->mcache = NULL;
}

/* The cached answer (a reference: unref it), or NULL. stale: an answer to the
 * same query of the same running job at an earlier iteration will do. With
 * want_gz, its gzip'd form when there is one (*gz = 1), else the JSON. */
static HttpShared *cache_get(MetricsCache *c, const StoreJob *j, const char *key, int stale, int want_gz,
                             int *gz) {
    HttpShared *out = NULL;
    *gz = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CACHE_SLOTS && !out; i++) {
        CacheSlot *e = &c->slot[i];
        if (!e->json || e->job != j->id || e->status != (int)j->status || strcmp(e->key, key)) continue;
        if (e->iteration != j->iteration && !(stale && j->status == JOB_RUNNING && e->iteration < j->iteration))
            continue;
        *gz = want_gz && e->gz;
        out = http_shared_ref(*gz ? e->gz : e->json);
        e->used = ++c->tick;
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

/* The cached answer to query key of job id if nothing was written to the
 * store since it was made (a reference), with no read of the job at all:
 * what a dashboard polling a job gets between two flushes. */
static HttpShared *cache_get_gen(MetricsCache *c, long id, const char *key, uint64_t gen, int want_gz,
                                 int *gz) {
    HttpShared *out = NULL;
    *gz = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CACHE_SLOTS && !out; i++) {
        CacheSlot *e = &c->slot[i];
        if (!e->json || e->job != id || e->gen != gen || strcmp(e->key, key)) continue;
        *gz = want_gz && e->gz;
        out = http_shared_ref(*gz ? e->gz : e->json);
        e->used = ++c->tick;
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

/* The slot that holds json, or NULL; under c->mu. */
static CacheSlot *slot_holding(MetricsCache *c, const HttpShared *json) {
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (c->slot[i].json == json) return &c->slot[i];
    return NULL;
}

/* Whether the caller is to compress json for the cache (then nobody else is
 * told to until cache_put_gz): 0 when it is not cached or is being done. */
static int cache_claim_gz(MetricsCache *c, const HttpShared *json) {
    pthread_mutex_lock(&c->mu);
    CacheSlot *e = slot_holding(c, json);
    int claimed = e && !e->gz && !e->gz_pending;
    if (claimed) e->gz_pending = 1;
    pthread_mutex_unlock(&c->mu);
    return claimed;
}

/* Keeps gz (NULL: it failed) as the compressed form of json, if json is still cached. */
static void cache_put_gz(MetricsCache *c, const HttpShared *json, HttpShared *gz) {
    pthread_mutex_lock(&c->mu);
    CacheSlot *e = slot_holding(c, json);
    if (e) {
        if (!e->gz && gz) e->gz = http_shared_ref(gz);
        e->gz_pending = 0;
    }
    pthread_mutex_unlock(&c->mu);
}

static void cache_put(MetricsCache *c, const StoreJob *j, uint64_t gen, const char *key, HttpShared *json) {
    if (strlen(key) >= sizeof c->slot[0].key) return;
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
    http_shared_unref(victim->json);
    http_shared_unref(victim->gz);
    *victim = (CacheSlot){.job = j->id, .iteration = j->iteration, .status = (int)j->status, .gen = gen,
                          .json = http_shared_ref(json), .used = ++c->tick};
    snprintf(victim->key, sizeof victim->key, "%s", key);
    pthread_mutex_unlock(&c->mu);
}

/* The raw slot of `job`, pinned: its own, else the least recently used one
 * nobody holds, emptied. NULL when all are held by requests for other jobs. */
static RawSlot *raw_pin(MetricsCache *c, long job) {
    RawSlot *victim = NULL, *mine = NULL;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < RAW_SLOTS && !mine; i++) {
        RawSlot *r = &c->raw[i];
        if (r->job == job)
            mine = r;
        else if (!r->pins && (!victim || r->used < victim->used))
            victim = r;
    }
    if (!mine && victim) {
        raw_clear(victim); /* nobody holds it, so nobody is in its mutex */
        victim->job = job;
        mine = victim;
    }
    if (mine) {
        mine->pins++;
        mine->used = ++c->tick;
    }
    pthread_mutex_unlock(&c->mu);
    return mine;
}

static void raw_unpin(MetricsCache *c, RawSlot *r) {
    pthread_mutex_lock(&c->mu);
    r->pins--;
    pthread_mutex_unlock(&c->mu);
}

static RawSeries *raw_find(RawSlot *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->series[i].name, name)) return &r->series[i];
    return NULL;
}

/* Rows of one series read into a raw series: steps above `upto` stop the
 * scan (they are read at the next top-up, once the job's iteration says
 * they are complete); a step already held is replaced, a new one inserted
 * in order (the end, but for rows written out of order). */
typedef struct {
    RawSeries *rs;
    long upto;
} TopUp;

static int raw_merge(void *ctx, const char *name, long step, double value) {
    (void)name;
    TopUp *t = ctx;
    RawSeries *rs = t->rs;
    Series *s = &rs->s;
    if (t->upto >= 0 && step > t->upto) return 1;
    size_t lo = s->n;
    if (s->n && step <= s->step[s->n - 1]) { /* first index with step >= this one */
        size_t a = 0, b = s->n;
        while (a < b) {
            size_t m = a + (b - a) / 2;
            if (s->step[m] < step) a = m + 1;
            else b = m;
        }
        lo = a;
        if (s->step[lo] == step) {
            s->value[lo] = value;
            rs->txt[lo][0] = '\0';
            return 0;
        }
    }
    if (s->n == s->cap && series_grow(s)) return 1;
    if (rs->txt_cap < s->cap) {
        char(*nt)[NUM_MAX] = realloc(rs->txt, s->cap * sizeof *nt);
        if (!nt) {
            s->oom = 1;
            return 1;
        }
        rs->txt = nt;
        rs->txt_cap = s->cap;
    }
    memmove(s->step + lo + 1, s->step + lo, (s->n - lo) * sizeof *s->step);
    memmove(s->value + lo + 1, s->value + lo, (s->n - lo) * sizeof *s->value);
    memmove(rs->txt + lo + 1, rs->txt + lo, (s->n - lo) * sizeof *rs->txt);
    s->step[lo] = step;
    s->value[lo] = value;
    rs->txt[lo][0] = '\0';
    s->n++;
    return 0;
}

/* Brings a pinned, locked slot up to the job's flushed iteration `it`. */
static int raw_top_up(Store *st, RawSlot *r, long job, long it) {
    if (r->iteration >= 0 && it < r->iteration) raw_clear(r); /* cannot happen while it runs; be safe */
    char **names;
    int n;
    int rc = store_metric_names(st, job, &names, &n);
    for (int i = 0; rc == DACL_OK && i < n; i++) {
        RawSeries *rs = raw_find(r, names[i]);
        long since = r->iteration;
        if (!rs) { /* a series new since the last top-up: all of it */
            if (r->n == r->cap) {
                int cap = r->cap ? 2 * r->cap : 16;
                RawSeries *ns = realloc(r->series, (size_t)cap * sizeof *ns);
                if (!ns) {
                    rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
                    break;
                }
                r->series = ns;
                r->cap = cap;
            }
            rs = &r->series[r->n];
            *rs = (RawSeries){.name = names[i]};
            names[i] = NULL;
            r->n++;
            since = -1;
        }
        /* the first read takes every row there is; later ones (since, it] */
        TopUp t = {rs, r->iteration < 0 ? -1 : it};
        rc = store_metric_points(st, job, rs->name, since, raw_merge, &t);
        if (rc == DACL_OK && rs->s.oom) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    free_names(names, n);
    if (rc)
        raw_clear(r); /* possibly half read: start again next time */
    else
        r->iteration = it;
    return rc;
}

/* The answer from a topped-up slot: the series of `list` (NULL: all, by name) */
static int raw_answer(RawSlot *r, char **list, int nlist, size_t max_points, HttpBuf *b) {
    static const Series empty = {0};
    buf_append(b, "{", 1);
    if (!list) { /* the store lists names in order; the slot in order of appearance */
        int *order = malloc(((size_t)r->n + 1) * sizeof *order);
        if (!order) return DACL_FAIL(DACL_ENOMEM, "out of memory");
        for (int i = 0; i < r->n; i++) {
            int k = i;
            while (k > 0 && strcmp(r->series[order[k - 1]].name, r->series[i].name) > 0) {
                order[k] = order[k - 1];
                k--;
            }
            order[k] = i;
        }
        for (int i = 0; i < r->n; i++) {
            if (i) buf_append(b, ",", 1);
            RawSeries *rs = &r->series[order[i]];
            if (series_answer(b, rs->name, &rs->s, rs->txt, max_points)) {
                free(order);
                return DACL_FAIL(DACL_ENOMEM, "out of memory");
            }
        }
        free(order);
    }
    for (int i = 0; list && i < nlist; i++) {
        RawSeries *rs = raw_find(r, list[i]);
        if (i) buf_append(b, ",", 1);
        if (series_answer(b, list[i], rs ? &rs->s : &empty, rs ? rs->txt : NULL, max_points))
            return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    buf_append(b, "}", 1);
    return DACL_OK;
}

/* The answer read from the store: finished jobs (answered once, then cached
 * for good) and queries with `since` (short by nature). */
static int store_answer(Store *st, long job, char **names, int n, long since, size_t max_points, HttpBuf *b) {
    int rc = DACL_OK;
    buf_append(b, "{", 1);
    for (int i = 0; rc == DACL_OK && i < n; i++) {
        Series se = {0};
        rc = store_metric_points(st, job, names[i], since, series_add, &se);
        if (rc == DACL_OK && se.oom) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
        if (i) buf_append(b, ",", 1);
        if (rc == DACL_OK && series_answer(b, names[i], &se, NULL, max_points))
            rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
        free(se.step);
        free(se.value);
    }
    buf_append(b, "}", 1);
    return rc;
}

typedef struct {
    MetricsCache *c;
    HttpShared *json;
} GzipTask;

static void gzip_task(void *arg) {
    GzipTask *t = arg;
    size_t n, zn;
    const char *json = http_shared_data(t->json, &n);
    char *z;
    HttpShared *zb = http_gzip(json, n, &z, &zn) == DACL_OK ? http_shared_new(z, zn) : NULL;
    cache_put_gz(t->c, t->json, zb);
    http_shared_unref(zb);
    http_shared_unref(t->json);
    free(t);
}

/* Sends a cached answer in the form the client takes. An answer not yet
 * compressed goes out as JSON (also fine for a gzip client), and this request
 * compresses it for the cache once that is sent, so that neither it nor the
 * requests behind it wait for the compression. Takes the reference. */
static void send_answer(Server *s, Request *r, HttpShared *body, int gz, int want_gz) {
    if (want_gz && !gz && cache_claim_gz(s->mcache, body)) {
        GzipTask *t = malloc(sizeof *t);
        if (t) {
            *t = (GzipTask){s->mcache, http_shared_ref(body)};
            http_after(r, gzip_task, t);
        } else {
            cache_put_gz(s->mcache, body, NULL);
        }
    }
    http_shared(r, MHD_HTTP_OK, "application/json", gz, body);
    http_shared_unref(body);
}

void api_job_metrics(Server *s, Request *r) {
    long since, max_points, id;
    StoreJob j;
    if (!http_query_long(r, "since", -1, 1L << 40, -1, &since) ||
        !http_query_long(r, "max_points", 0, MAX_POINTS_CAP, 0, &max_points) || !http_param_id(r, 0, &id))
        return;
    const char *list = http_query(r, "names");
    int want_gz = http_accepts_gzip(r), gz;
    char key[192];
    /* a query too long for a key is not cached: a truncated key could match another */
    if (snprintf(key, sizeof key, "%ld|%ld|%s", since, max_points, list ? list : "*") >= (int)sizeof key)
        key[0] = '\0';
    /* only valid queries of jobs that exist are cached: a hit needs no checks */
    uint64_t gen = store_generation(s->store); /* before the job is read */
    HttpShared *hit = key[0] ? cache_get_gen(s->mcache, id, key, gen, want_gz, &gz) : NULL;
    if (hit) {
        send_answer(s, r, hit, gz, want_gz);
        return;
    }
    if (!api_load_job(s, r, &j)) return;
    long job = j.id;
    if (max_points == 1) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "max_points",
                   "max_points: 0 (all) or at least 2 (a minimum and a maximum per bucket)");
        store_job_clear(&j);
        return;
    }
    if (list && list[strspn(list, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-,")]) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "names",
                   "names: series names separated by commas (letters, digits, _ . -)");
        store_job_clear(&j);
        return;
    }
    hit = key[0] ? cache_get(s->mcache, &j, key, 0, want_gz, &gz) : NULL;
    if (hit) {
        send_answer(s, r, hit, gz, want_gz);
        store_job_clear(&j);
        return;
    }
    RawSlot *raw = since < 0 && key[0] && j.status == JOB_RUNNING ? raw_pin(s->mcache, job) : NULL;
    if (raw && pthread_mutex_trylock(&raw->mu)) {
        /* another request is reading this flush's rows: the answer before it
         * is one flush old, and better than a wait in line on a busy machine */
        if ((hit = cache_get(s->mcache, &j, key, 1, want_gz, &gz))) {
            raw_unpin(s->mcache, raw);
            send_answer(s, r, hit, gz, want_gz);
            store_job_clear(&j);
            return;
        }
        pthread_mutex_lock(&raw->mu);
    }
    /* the request that held the slot may have answered this very query */
    if (raw && (hit = cache_get(s->mcache, &j, key, 0, want_gz, &gz))) {
        pthread_mutex_unlock(&raw->mu);
        raw_unpin(s->mcache, raw);
        send_answer(s, r, hit, gz, want_gz);
        store_job_clear(&j);
        return;
    }
    char **names = NULL;
    int n = 0;
    int rc = list ? split_names(list, &names, &n) : raw ? DACL_OK : store_metric_names(s->store, job, &names, &n);
    HttpBuf b = {0};
    if (rc == DACL_OK && raw && (rc = raw_top_up(s->store, raw, job, j.iteration)) == DACL_OK)
        rc = raw_answer(raw, list ? names : NULL, n, (size_t)max_points, &b);
    else if (rc == DACL_OK && !raw)
        rc = store_answer(s->store, job, names, n, since, (size_t)max_points, &b);
    free_names(names, n);
    size_t len;
    char *text = buf_take(&b, &len);
    HttpShared *body = rc ? NULL : http_shared_new(text, len);
    if (rc) free(text);
    if (body && key[0]) cache_put(s->mcache, &j, gen, key, body); /* before a waiting request looks */
    if (raw) {
        pthread_mutex_unlock(&raw->mu);
        raw_unpin(s->mcache, raw);
    }
    if (body)
        send_answer(s, r, body, 0, want_gz);
    else
        http_internal(r);
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
