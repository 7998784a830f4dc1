/* libmicrohttpd set-up, the route table, request bodies and responses.
 *
 * A request arrives in up to three calls of on_request: the headers (we
 * check the URL length, the declared body size and match nothing yet), the
 * body in pieces (collected up to the cap), and the final call, which
 * dispatches through the route table. on_completed logs the request and
 * counts it for /metrics. */
#include "http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "api.h"
#include "dacl/error.h"

#define MAX_URL 1024   /* a path longer than any route, with room for ids */

/* The API. Order matters for the OpenAPI document, and for the dashboard's
 * /{file}, which also matches /healthz and /metrics: the first route that
 * matches wins, so it comes after them. Otherwise a path matches at most one
 * pattern per method. */
const Route http_routes[] = {
    {"POST", "/api/v1/jobs", api_job_submit, 1, "Submit a training job (the body is its config)",
     NULL, "application/json", 0},
    {"GET", "/api/v1/jobs", api_job_list, 0, "List jobs, newest first", "status,limit,offset",
     "application/json", 0},
    {"GET", "/api/v1/jobs/{id}", api_job_get, 0,
     "A job: status, iteration, total, ETA, config, best and latest metrics", NULL, "application/json", 0},
    {"POST", "/api/v1/jobs/{id}/cancel", api_job_cancel, 1,
     "Cancel a queued or running job (a running one checkpoints and stops)", NULL, "application/json", 0},
    {"DELETE", "/api/v1/jobs/{id}", api_job_delete, 1, "Remove a finished job and its files", NULL,
     "application/json", 0},
    {"GET", "/api/v1/jobs/{id}/metrics", api_job_metrics, 0,
     "Metric series as {name: {step: [...], value: [...]}}, optionally min/max bucketed",
     "names,since,max_points", "application/json", 0},
    {"GET", "/api/v1/jobs/{id}/metrics.csv", api_job_metrics_csv, 0,
     "Every metric point, one row per iteration", NULL, "text/csv", 0},
    {"GET", "/api/v1/jobs/{id}/evaluation", api_job_evaluation, 0,
     "Validation rounds: per-class Dice, Jaccard, HD95 and ASD, per case", "since",
     "application/json", 0},
    {"GET", "/api/v1/jobs/{id}/events", api_job_events, 0,
     "Server-sent events: progress, metric, evaluation, status (Last-Event-ID resumes)", NULL,
     "text/event-stream", 0},
    {"GET", "/api/v1/jobs/{id}/checkpoint", api_job_checkpoint, 0, "Download a checkpoint",
     "which", "application/octet-stream", 0},
    {"GET", "/api/v1/jobs/{id}/samples/{k}.png", api_job_sample, 0,
     "Validation case k's most foreground slice: image | ground truth | prediction", NULL, "image/png", 0},
    {"POST", "/api/v1/jobs/{id}/predict", api_job_predict, 1,
     "Segment a volume or slice (NIfTI, HDF5 or PNG body) with the job's best model; the label map "
     "comes back in the same format", NULL, "application/octet-stream", 1},
    {"GET", "/api/v1/datasets", api_datasets, 0, "Datasets under the data root, with their manifests",
     NULL, "application/json", 0},
    {"GET", "/api/v1/version", api_version, 0, "The daemon's version", NULL, "application/json", 0},
    {"GET", "/api/v1/openapi.json", api_openapi, 0, "This document", NULL, "application/json", 0},
    {"GET", "/healthz", api_healthz, 0, "Liveness: the database answers", NULL, "application/json", 0},
    {"GET", "/metrics", api_prometheus, 0, "Prometheus metrics: jobs by state, requests", NULL,
     "text/plain", 0},
    {"GET", "/", api_web_index, 0, "The dashboard (index.html of the web root)", NULL, "text/html", 0},
    {"GET", "/vendor/{lib}/{file}", api_web_vendor, 0, "The dashboard's vendored libraries (uPlot)", NULL,
     "application/octet-stream", 0},
    {"GET", "/{file}", api_web_file, 0, "The dashboard's scripts, styles and images", NULL,
     "application/octet-stream", 0},
};
const int http_route_count = (int)(sizeof http_routes / sizeof http_routes[0]);

/* latency histogram bounds, seconds (Prometheus `le`) */
static const double buckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0};
#define NBUCKETS ((int)(sizeof buckets / sizeof buckets[0]))

/* per route (+1: unmatched), atomic because the pool's threads all count */
typedef struct {
    atomic_ulong by_class[6]; /* [status / 100] */
    atomic_ulong le[NBUCKETS];
    atomic_ulong usec;
} RouteStats;

struct Http {
    Server *s;
    struct MHD_Daemon *d;
    MHD_socket quiesced; /* the listening socket once quiesced, closed after stop */
    RouteStats *stats;   /* [http_route_count + 1] */
};

struct Request {
    Http *h;
    struct MHD_Connection *conn;
    char method[16];
    char path[MAX_URL + 1];
    char params[HTTP_MAX_PARAMS][HTTP_MAX_PARAM_LEN];
    int route; /* index in http_routes, -1 none */
    HttpBuf body;
    int too_large;
    int responded;
    enum MHD_Result result;
    unsigned status;
    const char *allow; /* for 405 */
    int challenge;     /* 401: add WWW-Authenticate */
    int retry_after;   /* 503: add Retry-After (seconds) */
    struct timespec t0;
    void (*after)(void *); /* http_after */
    void *after_arg;
};

/* ------------------------------------------------------------- text -- */

/* room for n more bytes and a NUL; 0 (and oom set) when memory ran out */
static int buf_reserve(HttpBuf *b, size_t n) {
    if (b->oom) return 0;
    if (b->p && b->n + n < b->cap) return 1;
    size_t want = b->cap ? 2 * b->cap : 256;
    while (want <= b->n + n) want *= 2;
    char *np = realloc(b->p, want);
    if (!np) {
        b->oom = 1;
        return 0;
    }
    b->p = np;
    b->cap = want;
    return 1;
}

void buf_vprintf(HttpBuf *b, const char *fmt, va_list ap) {
    va_list cp;
    va_copy(cp, ap);
    int k = b->oom ? -1 : vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, cp);
    va_end(cp);
    if (k < 0) return;
    if (!(b->p && b->n + (size_t)k < b->cap)) { /* it did not fit: grow, then print again */
        if (!buf_reserve(b, (size_t)k)) return;
        vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    }
    b->n += (size_t)k;
}

void buf_printf(HttpBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_append(HttpBuf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

char *buf_take(HttpBuf *b, size_t *n) {
    char *p = b->p;
    if (b->oom) {
        free(p);
        p = NULL;
    } else if (!p) {
        p = calloc(1, 1);
    }
    if (n) *n = p ? b->n : 0;
    memset(b, 0, sizeof *b);
    return p;
}

/* --------------------------------------------------------- requests -- */

const char *http_param(const Request *r, int i) {
    return i >= 0 && i < HTTP_MAX_PARAMS ? r->params[i] : "";
}

const char *http_query(const Request *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(const Request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_body(const Request *r, size_t *n) {
    if (n) *n = r->body.n;
    return r->body.p ? r->body.p : "";
}

struct MHD_Connection *http_connection(const Request *r) {
    return r->conn;
}

int http_parse_long(const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return 0;
    *out = x;
    return 1;
}

int http_parse_id(const char *v, long *id) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 1 || v[0] == '+') return 0;
    *id = x;
    return 1;
}

int http_query_long(Request *r, const char *key, long lo, long hi, long def, long *out) {
    const char *v = http_query(r, key);
    if (!v) {
        *out = def;
        return 1;
    }
    if (!http_parse_long(v, lo, hi, out)) {
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", key,
                   "%s: expected an integer in %ld..%ld, got '%s'", key, lo, hi, v);
        return 0;
    }
    return 1;
}

int http_param_id(Request *r, int i, long *id) {
    const char *v = http_param(r, i);
    if (!http_parse_id(v, id)) {
        http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no job '%s'", v);
        return 0;
    }
    return 1;
}

/* -------------------------------------------------------- responses -- */

void http_respond(Request *r, unsigned status, struct MHD_Response *resp) {
    if (r->responded) {
        if (resp) MHD_destroy_response(resp);
        return;
    }
    r->responded = 1;
    if (!resp) {
        r->status = 500;
        r->result = MHD_NO; /* out of memory: drop the connection */
        return;
    }
    if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->challenge) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->retry_after) {
        char v[16];
        snprintf(v, sizeof v, "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    /* API answers are live state; the dashboard's files set their own */
    if (!MHD_get_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    r->status = status;
    r->result = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
}

void http_bytes(Request *r, unsigned status, const char *type, char *buf, size_t n) {
    if (!buf) {
        http_respond(r, 500, NULL);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(buf);
    if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    http_respond(r, status, resp);
}

struct HttpShared {
    atomic_int refs;
    size_t n;
    char *data;
};

HttpShared *http_shared_new(char *buf, size_t n) {
    HttpShared *b = buf ? malloc(sizeof *b) : NULL;
    if (!b) {
        free(buf);
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->n = n;
    b->data = buf;
    return b;
}

HttpShared *http_shared_ref(HttpShared *b) {
    atomic_fetch_add(&b->refs, 1);
    return b;
}

void http_shared_unref(HttpShared *b) {
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
    free(b->data);
    free(b);
}

const char *http_shared_data(const HttpShared *b, size_t *n) {
    *n = b->n;
    return b->data;
}

static void shared_release(void *cls) { http_shared_unref(cls); }

void http_shared(Request *r, unsigned status, const char *type, int gz, HttpShared *b) {
    http_shared_ref(b);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(b->n, b->data, shared_release, b);
    if (!resp) {
        http_shared_unref(b);
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING);
        if (gz) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    }
    http_respond(r, status, resp);
}

/* Accept-Encoding: a list of tokens, each with an optional ;q=weight. gzip (or the old x-gzip)
 * named with a weight above 0 is taken; named with q=0 it is refused even if * is listed too;
 * not named, * decides. */
int http_accepts_gzip(const Request *r) {
    const char *h = http_header(r, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    double gzip_w = -1, star_w = -1; /* -1: not named */
    while (h && *h) {
        h += strspn(h, " \t,");
        size_t tok = strcspn(h, " \t;,");
        int gz = (tok == 4 && !strncasecmp(h, "gzip", 4)) || (tok == 6 && !strncasecmp(h, "x-gzip", 6));
        int star = tok == 1 && h[0] == '*';
        const char *end = h + strcspn(h, ",");
        double weight = 1;
        for (const char *q = h + tok; q < end; q++) { /* ;q= among the parameters */
            if ((*q == 'q' || *q == 'Q') && q[1] == '=' && (q[-1] == ';' || q[-1] == ' ' || q[-1] == '\t')) {
                weight = strtod(q + 2, NULL);
                break;
            }
        }
        if (gz) gzip_w = weight;
        if (star) star_w = weight;
        h = end;
    }
    return gzip_w >= 0 ? gzip_w > 0 : star_w > 0;
}

int http_gzip(const char *buf, size_t n, char **out, size_t *out_n) {
    z_stream z = {0};
    *out = NULL;
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    uLong cap = deflateBound(&z, (uLong)n);
    char *dst = malloc(cap);
    int rc = DACL_OK;
    if (!dst) {
        rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    } else {
        z.next_in = (Bytef *)(uintptr_t)buf;
        z.avail_in = (uInt)n;
        z.next_out = (Bytef *)dst;
        z.avail_out = (uInt)cap;
        if (n > UINT32_MAX || deflate(&z, Z_FINISH) != Z_STREAM_END) {
            rc = DACL_FAIL(DACL_EINVAL, "cannot compress %zu bytes", n);
            free(dst);
        } else {
            *out = dst;
            *out_n = z.total_out;
        }
    }
    deflateEnd(&z);
    return rc;
}

void http_after(Request *r, void (*fn)(void *), void *arg) {
    r->after = fn;
    r->after_arg = arg;
}

void http_json(Request *r, unsigned status, cJSON *body) {
    char *s = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!s) {
        http_respond(r, 500, NULL);
        return;
    }
    http_bytes(r, status, "application/json", s, strlen(s));
}

void http_error(Request *r, unsigned status, const char *code, const char *field, const char *fmt,
                ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    if (field && field[0])
        cJSON_AddStringToObject(e, "field", field);
    else
        cJSON_AddNullToObject(e, "field");
    http_json(r, status, o);
}

void http_internal(Request *r) {
    const char *m = dacl_error_message();
    if (dacl_error_code() == DACL_EBUSY) { /* not a bug of ours: the storage refuses for now */
        fprintf(stderr, "dacld: unavailable on %s %s: %s\n", r->method, r->path, m);
        r->retry_after = 5;
        http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", NULL, "%s; try again later", m);
        return;
    }
    fprintf(stderr, "dacld: internal error on %s %s: %s\n", r->method, r->path, m);
    http_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "%s", m[0] ? m : "internal error");
}

void http_file(Request *r, const char *path, const char *type, const char *download_name) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        const char *base = strrchr(path, '/');
        http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "%s does not exist yet",
                   download_name ? download_name : base ? base + 1 : path);
        return;
    }
    /* the fd pins this version: a checkpoint renamed over it meanwhile does not tear it */
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (download_name) {
            char disp[512];
            snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", download_name);
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disp);
        }
    }
    http_respond(r, MHD_HTTP_OK, resp);
}

/* --------------------------------------------------------- dispatch -- */

/* Matches path against pattern segment by segment; a {name} segment (with an
 * optional literal suffix, "{k}.png") captures into params. */
static int match(const char *pattern, const char *path, char params[HTTP_MAX_PARAMS][HTTP_MAX_PARAM_LEN]) {
    int np = 0;
    const char *p = pattern, *u = path;
    while (*p && *u) {
        if (*p != '/' || *u != '/') return 0;
        p++, u++;
        const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), ul = ue ? (size_t)(ue - u) : strlen(u);
        if (*p == '{') {
            const char *close = memchr(p, '}', pl);
            if (!close || np == HTTP_MAX_PARAMS) return 0;
            size_t sl = pl - (size_t)(close + 1 - p); /* literal suffix after } */
            if (ul <= sl || ul - sl >= HTTP_MAX_PARAM_LEN || memcmp(u + ul - sl, close + 1, sl)) return 0;
            memcpy(params[np], u, ul - sl);
            params[np++][ul - sl] = '\0';
        } else if (pl != ul || memcmp(p, u, pl)) {
            return 0;
        }
        p += pl, u += ul;
    }
    return !*p && !*u;
}

int http_route_lookup(const char *method, const char *path, char params[HTTP_MAX_PARAMS][HTTP_MAX_PARAM_LEN],
                      char allow[HTTP_ALLOW_LEN]) {
    const char *m = strcmp(method, "HEAD") ? method : "GET";
    allow[0] = '\0';
    for (int i = 0; i < http_route_count; i++) {
        const Route *rt = &http_routes[i];
        if (!match(rt->pattern, path, params)) continue;
        if (strcmp(rt->method, m)) {
            if (!strstr(allow, rt->method) && strlen(allow) + strlen(rt->method) + 3 < HTTP_ALLOW_LEN)
                strcat(strcat(allow, allow[0] ? ", " : ""), rt->method);
            continue;
        }
        return i;
    }
    return -1;
}

int http_token_ok(const char *authorization, const char *token) {
    const char *h = authorization;
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(token);
    /* constant time in the token's content: no early exit on the first difference */
    unsigned char diff = a != b;
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)(h[i] ^ token[i % (b ? b : 1)]);
    return diff == 0;
}

static int has_body(const char *method) {
    return !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
}

size_t http_body_cap(const char *method, int route, size_t max_body, size_t max_upload) {
    if (!has_body(method)) return 0;
    return http_routes[route].upload ? max_upload : max_body;
}

int http_content_length_ok(const char *content_length, size_t cap) {
    return !content_length || strtoull(content_length, NULL, 10) <= cap;
}

/* Matches the request against the table at its first call, before any
 * body is read, so an unknown route, a wrong method or a missing token is
 * answered without reading (or buffering) what the client sends. Returns 1
 * when a route matched and may run; otherwise the request is answered. */
static int route_find(Http *h, Request *r) {
    char allow[HTTP_ALLOW_LEN];
    int i = http_route_lookup(r->method, r->path, r->params, allow);
    if (i >= 0) {
        r->route = i;
        if (http_routes[i].needs_auth && h->s->token[0] &&
            !http_token_ok(http_header(r, MHD_HTTP_HEADER_AUTHORIZATION), h->s->token)) {
            r->challenge = 1;
            http_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                       "this route needs 'Authorization: Bearer <token>'");
            return 0;
        }
        return 1;
    }
    if (allow[0]) {
        r->allow = allow; /* read by http_respond before we return */
        http_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", NULL, "%s is not allowed on %s",
                   r->method, r->path);
        r->allow = NULL;
        return 0;
    }
    http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no route %s %s", r->method, r->path);
    return 0;
}

static void route_run(Http *h, Request *r) {
    const Route *rt = &http_routes[r->route];
    dacl_error_clear();
    rt->handler(h->s, r);
    if (!r->responded) {
        dacl_error_set(DACL_EINTERNAL, __FILE__, __LINE__, "%s %s gave no response", rt->method, rt->pattern);
        http_internal(r);
    }
}

/* the body cap of the matched route */
static size_t body_cap(const Http *h, const Request *r) {
    return http_body_cap(r->method, r->route, h->s->cfg.max_body, h->s->cfg.max_upload);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    Http *h = cls;
    Request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->h = h;
        r->conn = conn;
        r->route = -1;
        clock_gettime(CLOCK_MONOTONIC, &r->t0);
        snprintf(r->method, sizeof r->method, "%s", method);
        *con_cls = r;
        size_t ul = strlen(url);
        snprintf(r->path, sizeof r->path, "%s", url);
        if (ul > MAX_URL) {
            http_error(r, MHD_HTTP_URI_TOO_LONG, "uri_too_long", NULL, "the path is %zu bytes; at most %d",
                       ul, MAX_URL);
            return r->result;
        }
        if (!route_find(h, r)) return r->result;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!http_content_length_ok(cl, body_cap(h, r))) {
            /* refuse before reading a byte of it */
            http_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", NULL,
                       "the body is %s bytes; at most %zu", cl, body_cap(h, r));
            return r->result;
        }
        return MHD_YES;
    }
    if (r->responded) { /* answered early: discard what still comes */
        *upload_size = 0;
        return r->result;
    }
    if (*upload_size) {
        /* connection_timeout closes a silent client; this one closes a client
         * that sends a byte now and then to hold the connection (slowloris) */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - r->t0.tv_sec > h->s->cfg.request_timeout) {
            fprintf(stderr, "http: %s %s: the body took over %d s to arrive: connection closed\n", r->method,
                    r->path, h->s->cfg.request_timeout);
            r->status = 408;
            return MHD_NO;
        }
        if (r->body.n + *upload_size > body_cap(h, r))
            r->too_large = 1;
        else
            buf_append(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large)
        http_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", NULL, "the body is larger than %zu bytes",
                   body_cap(h, r));
    else if (r->body.oom)
        http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory", NULL, "out of memory for the body");
    else
        route_run(h, r);
    return r->result;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    Http *h = cls;
    Request *r = *con_cls;
    if (!r) return;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - r->t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - r->t0.tv_nsec);
    RouteStats *st = &h->stats[r->route >= 0 ? r->route : http_route_count];
    unsigned cls_i = r->status / 100 < 6 ? r->status / 100 : 5;
    atomic_fetch_add(&st->by_class[cls_i], 1);
    for (int b = 0; b < NBUCKETS; b++)
        if (sec <= buckets[b]) atomic_fetch_add(&st->le[b], 1);
    atomic_fetch_add(&st->usec, (unsigned long)(sec * 1e6));
    fprintf(stderr, "http: %s %s %u %.1f ms%s\n", r->method, r->path, r->status, sec * 1e3,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection dropped)");
    if (r->after) r->after(r->after_arg);
    free(r->body.p);
    free(r);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ daemon -- */

/* "127.0.0.1:8080", "[::1]:8080" */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *v6) {
    char host[128];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host)
        return DACL_FAIL(DACL_EINVAL, "--listen: expected ADDR:PORT, got '%s'", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return DACL_FAIL(DACL_EINVAL, "--listen: bad port in '%s'", spec);
    memset(ss, 0, sizeof *ss);
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1) return DACL_OK;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        *v6 = 0;
        if (inet_pton(AF_INET, host, &a->sin_addr) == 1) return DACL_OK;
    }
    return DACL_FAIL(DACL_EINVAL, "--listen: '%s' is not a numeric IPv4 or [IPv6] address", host);
}

int http_start(Server *s, Http **out, int *port) {
    *out = NULL;
    struct sockaddr_storage ss;
    int v6 = 0;
    DACL_TRY(parse_listen(s->cfg.listen, &ss, &v6));
    Http *h = calloc(1, sizeof *h);
    if (!h || !(h->stats = calloc((size_t)http_route_count + 1, sizeof *h->stats))) {
        free(h);
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    h->s = s;
    h->quiesced = MHD_INVALID_SOCKET;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                            (unsigned)s->cfg.http_threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                            h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.connection_timeout,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections_per_ip,
                            MHD_OPTION_END);
    if (!h->d) {
        free(h->stats);
        free(h);
        return DACL_FAIL(DACL_EIO, "cannot listen on %s: %s", s->cfg.listen,
                         errno ? strerror(errno) : "libmicrohttpd refused");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? (int)info->port : 0;
    *out = h;
    return DACL_OK;
}

void http_quiesce(Http *h) {
    if (h && h->d && h->quiesced == MHD_INVALID_SOCKET) h->quiesced = MHD_quiesce_daemon(h->d);
}

void http_stop(Http *h) {
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d);
    if (h->quiesced != MHD_INVALID_SOCKET) close(h->quiesced);
    free(h->stats);
    free(h);
}

int http_metrics_text(Http *h, char **text) {
    HttpBuf b = {0};
    buf_printf(&b, "# HELP dacld_http_requests_total HTTP requests answered, by route and status class.\n"
                   "# TYPE dacld_http_requests_total counter\n");
    for (int i = 0; i <= http_route_count; i++) {
        const char *m = i < http_route_count ? http_routes[i].method : "",
                   *p = i < http_route_count ? http_routes[i].pattern : "unmatched";
        for (int c = 1; c < 6; c++) {
            unsigned long v = atomic_load(&h->stats[i].by_class[c]);
            if (v) buf_printf(&b, "dacld_http_requests_total{method=\"%s\",route=\"%s\",code=\"%dxx\"} %lu\n", m, p, c, v);
        }
    }
    buf_printf(&b, "# HELP dacld_http_request_duration_seconds Time from the request line to the last "
                   "byte queued.\n# TYPE dacld_http_request_duration_seconds histogram\n");
    for (int i = 0; i <= http_route_count; i++) {
        const char *m = i < http_route_count ? http_routes[i].method : "",
                   *p = i < http_route_count ? http_routes[i].pattern : "unmatched";
        unsigned long n = 0;
        for (int c = 0; c < 6; c++) n += atomic_load(&h->stats[i].by_class[c]);
        if (!n) continue;
        for (int k = 0; k < NBUCKETS; k++)
            buf_printf(&b, "dacld_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%g\"} %lu\n",
                       m, p, buckets[k], atomic_load(&h->stats[i].le[k]));
        buf_printf(&b, "dacld_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %lu\n"
                       "dacld_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
                       "dacld_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %lu\n",
                   m, p, n, m, p, 1e-6 * (double)atomic_load(&h->stats[i].usec), m, p, n);
    }
    *text = buf_take(&b, NULL);
    return *text ? DACL_OK : DACL_FAIL(DACL_ENOMEM, "out of memory");
}
