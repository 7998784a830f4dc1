/* The HTTP side of the daemon: libmicrohttpd with its internal thread pool,
 * the static route table, request bodies with a size cap, and the response
 * helpers every handler uses, so every error has the one JSON shape
 *   {"error": {"code": "...", "message": "...", "field": "..." | null}}.
 *
 * Handlers run on libmicrohttpd's threads: they read the store or copy a
 * snapshot under a short lock, never wait for training. */
#ifndef DACLD_HTTP_H
#define DACLD_HTTP_H

#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>

#include "server.h"

typedef struct cJSON cJSON;
typedef struct Request Request;

typedef void (*RouteHandler)(Server *s, Request *r);

typedef struct {
    const char *method;
    const char *pattern; /* "/api/v1/jobs/{id}": a {name} matches one path segment */
    RouteHandler handler;
    int needs_auth;      /* mutating: needs the bearer token when one is configured */
    const char *summary; /* for the OpenAPI document */
    const char *query;   /* its query parameters, comma-separated, or NULL */
    const char *type;    /* the success response's media type */
    int upload;          /* takes a file: the body may be up to max_upload, not max_body */
} Route;

extern const Route http_routes[];
extern const int http_route_count;

/* ------------------------------------------ the request line, pure -- */

/* What on_request decides before a body is read, as functions of strings
 * alone (no connection), so tests/fuzz can drive them without sockets. */

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_PARAM_LEN 128
#define HTTP_ALLOW_LEN 64

/* The route (index in http_routes) that `method` (HEAD as GET) and the
 * unescaped `path` match, its {params} captured; -1 when none does, and
 * then allow[] lists the methods the path has ("" for an unknown path: 404,
 * else 405 with Allow). */
int http_route_lookup(const char *method, const char *path, char params[HTTP_MAX_PARAMS][HTTP_MAX_PARAM_LEN],
                      char allow[HTTP_ALLOW_LEN]);
/* Whether an Authorization header value (may be NULL) is "Bearer <token>";
 * constant time in the token's content. */
int http_token_ok(const char *authorization, const char *token);
/* The largest body `method` may send to route (0 for methods without one). */
size_t http_body_cap(const char *method, int route, size_t max_body, size_t max_upload);
/* Whether a Content-Length header value (may be NULL) is within cap. */
int http_content_length_ok(const char *content_length, size_t cap);
/* A query value as an integer in [lo, hi]: 1 and *out, else 0. */
int http_parse_long(const char *v, long lo, long hi, long *out);
/* A path {id} as a positive integer written without a sign: 1 and *id, else 0. */
int http_parse_id(const char *v, long *id);

/* Starts listening on s->cfg.listen; *port receives the bound port. */
int http_start(Server *s, Http **out, int *port);
/* Stops accepting new connections; requests in flight finish. */
void http_quiesce(Http *h);
void http_stop(Http *h);
/* Prometheus lines for the request counters and latencies. */
int http_metrics_text(Http *h, char **text);

/* --------------------------------------------------------- requests -- */

/* The i-th {param} of the matched pattern. */
const char *http_param(const Request *r, int i);
/* A query-string value or NULL. */
const char *http_query(const Request *r, const char *key);
const char *http_header(const Request *r, const char *name);
/* The request body, NUL-terminated; *n (may be NULL) its length. */
const char *http_body(const Request *r, size_t *n);
struct MHD_Connection *http_connection(const Request *r);

/* Parses ?key= as an integer in [lo, hi] (def when absent). On a bad value
 * answers 400 naming the parameter and returns 0: the handler returns. */
int http_query_long(Request *r, const char *key, long lo, long hi, long def, long *out);
/* {id} as a positive integer; answers 404 and returns 0 otherwise. */
int http_param_id(Request *r, int i, long *id);

/* -------------------------------------------------------- responses -- */

/* Each answers the request once; later calls are ignored. */
void http_json(Request *r, unsigned status, cJSON *body); /* takes body */
void http_error(Request *r, unsigned status, const char *code, const char *field, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
/* 500 with the engine's last error message (an invariant of ours failed). */
void http_internal(Request *r);
void http_bytes(Request *r, unsigned status, const char *type, char *buf, size_t n); /* takes buf */
/* An immutable body shared by the answers that send it (a cached /metrics
 * answer): counted references, freed with the last. */
typedef struct HttpShared HttpShared;
HttpShared *http_shared_new(char *buf, size_t n); /* takes buf (freed on failure); NULL: out of memory */
HttpShared *http_shared_ref(HttpShared *b);
void http_shared_unref(HttpShared *b); /* NULL is fine */
const char *http_shared_data(const HttpShared *b, size_t *n);
/* Answers with b (no copy), Content-Encoding: gzip when gz; adds Vary: Accept-Encoding. */
void http_shared(Request *r, unsigned status, const char *type, int gz, HttpShared *b);
/* Whether the client takes a gzip body (Accept-Encoding names gzip or *, without q=0). */
int http_accepts_gzip(const Request *r);
/* Runs fn(arg) once the answer has been sent (or the connection dropped): work the client
 * need not wait for. One per request. */
void http_after(Request *r, void (*fn)(void *), void *arg);
/* buf as a gzip stream (fastest level: numbers in JSON shrink about 3-4 times even so). */
int http_gzip(const char *buf, size_t n, char **out, size_t *out_n);
/* A file streamed from disk; 404 when it does not exist. download_name (may
 * be NULL: shown inline) makes it an attachment of that name. */
void http_file(Request *r, const char *path, const char *type, const char *download_name);
/* A response built by the caller (SSE): adds the common headers, queues, destroys. */
void http_respond(Request *r, unsigned status, struct MHD_Response *resp);

/* ------------------------------------------------------------- text -- */

/* A growable string for building response bodies. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} HttpBuf;
void buf_printf(HttpBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(HttpBuf *b, const char *fmt, va_list ap);
void buf_append(HttpBuf *b, const char *s, size_t n);
/* the text, handed to the caller; NULL (and the buffer freed) if memory ran out */
char *buf_take(HttpBuf *b, size_t *n);

#endif
