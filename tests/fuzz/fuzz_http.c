/* Fuzz target: the HTTP request path of `dacld serve`, without sockets.
 *
 * The input is a raw HTTP/1.1 request ("POST /api/v1/jobs?x=1 HTTP/1.1\r\n
 * headers \r\n\r\n body"). A small parser here splits it the way
 * libmicrohttpd hands it to on_request (path %-decoded, query arguments
 * split and decoded, headers by name), then it goes through exactly what
 * server/http.c and the handlers decide from those strings: the URL cap,
 * route lookup with {param} capture and the 405 Allow list, the bearer token,
 * the Content-Length and body caps, {id} parsing, the query integers and
 * names each route takes, Last-Event-ID, and for POST /api/v1/jobs the whole
 * body validation (JSON, priority, job config, dataset path rules). Only the
 * store and the scheduler are left out. libmicrohttpd's own parser is not
 * what is fuzzed here. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "dacl/config.h"
#include "events.h"
#include "fuzz_util.h"
#include "http.h"
#include "store.h"

#define MAX_URL 1024 /* http.c */

/* %XX decoding in place (and '+' as space in query arguments), as libmicrohttpd does */
static void unescape(char *s, int plus) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            *o++ = plus && *p == '+' ? ' ' : *p;
        }
    }
    *o = '\0';
}

/* The next line of s (CRLF or LF), NUL-terminated in place; *s moves past it. */
static char *next_line(char **s) {
    char *b = *s, *e = strchr(b, '\n');
    if (e) {
        *e = '\0';
        *s = e + 1;
    } else {
        *s = b + strlen(b);
    }
    size_t l = strlen(b);
    if (l && b[l - 1] == '\r') b[l - 1] = '\0';
    return b;
}

/* the bounds the handlers use (api_jobs.c, api_metrics.c) */
static void query_arg(const char *key, const char *value) {
    long v;
    if (!strcmp(key, "limit")) http_parse_long(value, 1, 1000, &v);
    else if (!strcmp(key, "offset")) http_parse_long(value, 0, 1L << 40, &v);
    else if (!strcmp(key, "since")) http_parse_long(value, -1, 1L << 40, &v);
    else if (!strcmp(key, "max_points")) http_parse_long(value, 0, 100000, &v);
    else if (!strcmp(key, "status")) (void)store_status_parse(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    /* the body is whatever follows the blank line, NULs included */
    const char *body = "";
    size_t body_n = 0;
    char *sep = strstr(text, "\r\n\r\n");
    size_t skip = 4;
    if (!sep) sep = strstr(text, "\n\n"), skip = 2;
    if (sep) {
        *sep = '\0';
        body = (const char *)data + (size_t)(sep - text) + skip;
        body_n = size - (size_t)(sep - text) - skip;
    }
    char *cur = text;
    char *line = next_line(&cur);
    char *sp1 = strchr(line, ' ');
    if (!sp1) goto out;
    *sp1 = '\0';
    char *target = sp1 + 1, *sp2 = strchr(target, ' ');
    if (sp2) *sp2 = '\0';
    const char *auth = NULL, *clen = NULL, *last_event = NULL;
    while (*cur) {
        char *h = next_line(&cur), *colon = strchr(h, ':');
        if (!colon) continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        if (!strcasecmp(h, "Authorization")) auth = v;
        else if (!strcasecmp(h, "Content-Length")) clen = v;
        else if (!strcasecmp(h, "Last-Event-ID")) last_event = v;
    }
    char *query = strchr(target, '?');
    if (query) *query++ = '\0';
    unescape(target, 0);

    /* on_request's first call */
    char method[16];
    snprintf(method, sizeof method, "%s", line);
    if (strlen(target) > MAX_URL) goto out; /* 414 */
    char params[HTTP_MAX_PARAMS][HTTP_MAX_PARAM_LEN], allow[HTTP_ALLOW_LEN];
    int route = http_route_lookup(method, target, params, allow);
    if (route < 0) {
        if (strlen(allow) >= sizeof allow) abort();
        goto out; /* 404 or 405 */
    }
    if (http_routes[route].needs_auth && !http_token_ok(auth, "a-token-of-the-fuzzer")) goto out;
    size_t cap = http_body_cap(method, route, (size_t)1 << 20, (size_t)256 << 20);
    if (!http_content_length_ok(clen, cap) || body_n > cap) goto out; /* 413 */

    /* the handler's parsing of what the request line and headers carry */
    long id;
    if (strstr(http_routes[route].pattern, "{id}")) http_parse_id(params[0], &id);
    for (char *arg = query; arg && *arg;) {
        char *amp = strchr(arg, '&');
        if (amp) *amp = '\0';
        char *eq = strchr(arg, '=');
        if (eq) *eq = '\0';
        unescape(arg, 1);
        if (eq) {
            unescape(eq + 1, 1);
            query_arg(arg, eq + 1);
        }
        arg = amp ? amp + 1 : NULL;
    }
    EventKey key;
    if (last_event) events_key_parse(last_event, &key);
    if (http_routes[route].handler == api_job_submit) {
        DaclJobConfig cfg;
        int priority;
        ApiBodyError err;
        int status = api_job_parse_body(body, body_n, &cfg, &priority, &err);
        if (status == 0) {
            /* a data root that does not exist: every real path is refused, after the checks */
            static Server s = {.cfg = {.data_root = "/nonexistent-dacl-fuzz"}};
            char why[PATH_MAX + 128];
            api_dataset_allowed(&s, cfg.dataset.path, why, sizeof why);
        } else if (status != 400 && status != 500) {
            abort();
        }
    }
out:
    free(text);
    return 0;
}
