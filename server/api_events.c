/* GET /api/v1/jobs/{id}/events: a job's server-sent events.
 *
 * The stream opens with a `status` event. With Last-Event-ID it first
 * replays, from the store, the metric and evaluation events after that id,
 * in commit order; live events that arrive meanwhile are held by the hub and
 * released after the replay without repeats (events.h). A finished job's
 * stream ends after its history. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dacl/error.h"
#include "events.h"

typedef struct {
    EventKey key;
    char *text;
} Ev;

typedef struct {
    Ev *v;
    size_t n, cap;
    int oom;
    EventKey after;   /* replay what is newer */
    long step;        /* of the metric event being built, -1 none */
    cJSON *values;
} Replay;

static void replay_event(Replay *rp, const char *name, EventKey key, cJSON *data) {
    char *json = cJSON_PrintUnformatted(data);
    HttpBuf t = {0};
    if (json) buf_printf(&t, "event: %s\nid: %ld.%d\ndata: %s\n\n", name, key.it, key.n, json);
    free(json);
    char *text = json ? buf_take(&t, NULL) : NULL;
    if (text && rp->n == rp->cap) {
        size_t cap = rp->cap ? 2 * rp->cap : 256;
        Ev *nv = realloc(rp->v, cap * sizeof *nv);
        if (nv) rp->v = nv, rp->cap = cap;
    }
    if (!text || rp->n == rp->cap) {
        free(text);
        rp->oom = 1;
        return;
    }
    rp->v[rp->n++] = (Ev){key, text};
}

static void metric_flush(Replay *rp) {
    if (rp->step < 0) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iteration", (double)rp->step);
    cJSON_AddItemToObject(o, "values", rp->values);
    replay_event(rp, "metric", (EventKey){rp->step, 0}, o);
    cJSON_Delete(o);
    rp->values = NULL;
    rp->step = -1;
}

static int replay_point(void *ctx, const char *name, long step, double value) {
    Replay *rp = ctx;
    if (step != rp->step) {
        metric_flush(rp);
        rp->step = step;
        rp->values = cJSON_CreateObject();
    }
    cJSON_AddNumberToObject(rp->values, name, value);
    return rp->oom;
}

static int replay_eval(void *ctx, long iteration, int model, const char *detail) {
    Replay *rp = ctx;
    EventKey k = {iteration, 1 + model};
    if (events_key_cmp(k, rp->after) <= 0) return 0;
    cJSON *d = cJSON_Parse(detail);
    if (d) replay_event(rp, "evaluation", k, d);
    cJSON_Delete(d);
    return rp->oom;
}

static int ev_cmp(const void *a, const void *b) {
    return events_key_cmp(((const Ev *)a)->key, ((const Ev *)b)->key);
}

/* The metric and evaluation events after rp->after, in id order (an
 * iteration's validation rounds follow its metrics), appended to out;
 * *through receives the newest id replayed. */
static int replay(Server *s, long job, Replay *rp, HttpBuf *out, EventKey *through) {
    int rc = store_metric_points(s->store, job, NULL, rp->after.it, replay_point, rp);
    metric_flush(rp);
    if (rc == DACL_OK) rc = store_evaluations(s->store, job, rp->after.it - 1, replay_eval, rp);
    if (rc == DACL_OK && rp->oom) rc = DACL_FAIL(DACL_ENOMEM, "out of memory replaying events");
    if (rp->n) qsort(rp->v, rp->n, sizeof *rp->v, ev_cmp); /* qsort(NULL, 0) is undefined */
    for (size_t i = 0; i < rp->n; i++) {
        buf_append(out, rp->v[i].text, strlen(rp->v[i].text));
        if (events_key_cmp(rp->v[i].key, *through) > 0) *through = rp->v[i].key;
        free(rp->v[i].text);
    }
    cJSON_Delete(rp->values);
    free(rp->v);
    return rc;
}

void api_job_events(Server *s, Request *r) {
    long id;
    if (!http_param_id(r, 0, &id)) return;
    const char *last = http_header(r, "Last-Event-ID");
    EventKey after = {-1, -1};
    if (last && !events_key_parse(last, &after)) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "Last-Event-ID",
                   "Last-Event-ID: an id of this stream (\"12.0\"), got '%s'", last);
        return;
    }
    /* subscribe before reading the store, so nothing committed meanwhile is missed */
    Subscriber *sub = events_subscribe(s->events, id, http_connection(r));
    if (!sub) {
        http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", NULL, "the daemon is shutting down");
        return;
    }
    StoreJob j;
    int rc = store_job_get(s->store, id, &j);
    if (rc) {
        events_unsubscribe(sub);
        if (rc == DACL_ENOTFOUND)
            http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no job %ld", id);
        else
            http_internal(r);
        return;
    }
    HttpBuf out = {0};
    EventKey through = after;
    buf_printf(&out, "retry: 3000\n\n");
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "status", store_status_name(j.status));
    cJSON_AddNumberToObject(st, "iteration", (double)j.iteration);
    cJSON_AddNumberToObject(st, "total", (double)j.total);
    char *stj = cJSON_PrintUnformatted(st);
    cJSON_Delete(st);
    if (stj) buf_printf(&out, "event: status\ndata: %s\n\n", stj);
    free(stj);
    if (last) {
        Replay rp = {.after = after, .step = -1};
        rc = replay(s, id, &rp, &out, &through);
    }
    int final = store_status_final(j.status);
    store_job_clear(&j);
    size_t n;
    char *history = buf_take(&out, &n);
    if (rc == DACL_OK && !history) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    if (rc == DACL_OK) rc = events_subscribe_ready(sub, history, n, through, final);
    free(history);
    struct MHD_Response *resp = rc ? NULL : events_response(sub);
    if (!resp) {
        events_unsubscribe(sub);
        http_internal(r);
        return;
    }
    http_respond(r, MHD_HTTP_OK, resp);
}
