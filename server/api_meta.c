/* The daemon about itself: version, health, Prometheus metrics, the OpenAPI
 * document (built from the route table, so it cannot drift from it) and the
 * datasets it can train on. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "dacl/data.h"
#include "dacl/error.h"
#include "dacl/version.h"
#include "scheduler.h"

void api_version(Server *s, Request *r) {
    int schema = 0;
    if (store_schema_version(s->store, &schema)) {
        http_internal(r);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", "dacld");
    cJSON_AddStringToObject(o, "version", DACL_VERSION);
    cJSON_AddStringToObject(o, "api", "v1");
    cJSON_AddNumberToObject(o, "schema", schema);
    cJSON_AddStringToObject(o, "libmicrohttpd", MHD_get_version());
    http_json(r, MHD_HTTP_OK, o);
}

void api_healthz(Server *s, Request *r) {
    int schema;
    if (store_schema_version(s->store, &schema)) {
        http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", NULL, "the database does not answer: %s",
                   dacl_error_message());
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddNumberToObject(o, "uptime_s", (double)(store_now_ms() - s->started_ms) / 1000.0);
    http_json(r, MHD_HTTP_OK, o);
}

void api_prometheus(Server *s, Request *r) {
    long counts[JOB_NSTATUS];
    char *http_text = NULL;
    if (store_status_counts(s->store, counts) || http_metrics_text(s->http, &http_text)) {
        http_internal(r);
        return;
    }
    HttpBuf b = {0};
    buf_printf(&b, "# HELP dacld_jobs Jobs in the store, by status.\n# TYPE dacld_jobs gauge\n");
    for (int i = 0; i < JOB_NSTATUS; i++)
        buf_printf(&b, "dacld_jobs{status=\"%s\"} %ld\n", store_status_name((JobStatus)i), counts[i]);
    long ids[64];
    DaclProgress p[64];
    int n = scheduler_running(s->sched, ids, p, 64);
    buf_printf(&b, "# HELP dacld_job_images_per_second Training speed of each running job.\n"
                   "# TYPE dacld_job_images_per_second gauge\n");
    for (int i = 0; i < n; i++) buf_printf(&b, "dacld_job_images_per_second{job=\"%ld\"} %g\n", ids[i], p[i].img_per_s);
    buf_printf(&b, "# HELP dacld_job_iteration Iterations done by each running job.\n"
                   "# TYPE dacld_job_iteration gauge\n");
    for (int i = 0; i < n; i++) buf_printf(&b, "dacld_job_iteration{job=\"%ld\"} %ld\n", ids[i], p[i].iteration);
    buf_printf(&b, "# HELP dacld_uptime_seconds Seconds since the daemon started.\n"
                   "# TYPE dacld_uptime_seconds gauge\ndacld_uptime_seconds %.3f\n",
               (double)(store_now_ms() - s->started_ms) / 1000.0);
    buf_printf(&b, "%s", http_text);
    free(http_text);
    size_t len;
    char *text = buf_take(&b, &len);
    http_bytes(r, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len);
}

/* ----------------------------------------------------------- OpenAPI -- */

static cJSON *ref(const char *to) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "$ref", to);
    return o;
}

static cJSON *schema_of(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void add_param(cJSON *params, const char *name, const char *in, int required) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", name);
    cJSON_AddStringToObject(p, "in", in);
    cJSON_AddBoolToObject(p, "required", required);
    int numeric = !strcmp(name, "id") || !strcmp(name, "limit") || !strcmp(name, "offset") ||
                  !strcmp(name, "since") || !strcmp(name, "max_points") || !strcmp(name, "k");
    cJSON_AddItemToObject(p, "schema", schema_of(numeric ? "integer" : "string"));
    cJSON_AddItemToArray(params, p);
}

static cJSON *operation(const Route *rt) {
    cJSON *op = cJSON_CreateObject();
    cJSON_AddStringToObject(op, "summary", rt->summary);
    char id[128];
    size_t k = (size_t)snprintf(id, sizeof id, "%s", rt->method);
    for (const char *p = rt->pattern; *p && k + 1 < sizeof id; p++)
        id[k++] = isalnum((unsigned char)*p) ? *p : '_';
    id[k] = '\0';
    for (char *p = id; *p; p++) *p = (char)tolower((unsigned char)*p);
    cJSON_AddStringToObject(op, "operationId", id);
    cJSON *params = cJSON_AddArrayToObject(op, "parameters");
    for (const char *p = strchr(rt->pattern, '{'); p; p = strchr(p + 1, '{')) {
        char name[32];
        size_t l = strcspn(p + 1, "}");
        snprintf(name, sizeof name, "%.*s", (int)(l < sizeof name ? l : sizeof name - 1), p + 1);
        add_param(params, name, "path", 1);
    }
    for (const char *q = rt->query; q && *q;) {
        char name[32];
        size_t l = strcspn(q, ",");
        snprintf(name, sizeof name, "%.*s", (int)(l < sizeof name ? l : sizeof name - 1), q);
        add_param(params, name, "query", 0);
        q += l + (q[l] == ',');
    }
    if (!strcmp(rt->method, "POST") && !strcmp(rt->pattern, "/api/v1/jobs")) {
        cJSON *body = cJSON_AddObjectToObject(op, "requestBody");
        cJSON_AddBoolToObject(body, "required", 1);
        cJSON *c = cJSON_AddObjectToObject(cJSON_AddObjectToObject(body, "content"), "application/json");
        cJSON_AddItemToObject(c, "schema", ref("#/components/schemas/JobConfig"));
    }
    if (rt->upload) {
        cJSON *body = cJSON_AddObjectToObject(op, "requestBody");
        cJSON_AddBoolToObject(body, "required", 1);
        cJSON *c = cJSON_AddObjectToObject(cJSON_AddObjectToObject(body, "content"), "application/octet-stream");
        cJSON *sch = cJSON_AddObjectToObject(c, "schema");
        cJSON_AddStringToObject(sch, "type", "string");
        cJSON_AddStringToObject(sch, "format", "binary");
    }
    cJSON *resp = cJSON_AddObjectToObject(op, "responses");
    cJSON *ok = cJSON_AddObjectToObject(resp, !strcmp(rt->pattern, "/api/v1/jobs") && !strcmp(rt->method, "POST")
                                                  ? "201" : "200");
    cJSON_AddStringToObject(ok, "description", "success");
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(ok, "content"), rt->type);
    cJSON *err = cJSON_AddObjectToObject(resp, "default");
    cJSON_AddStringToObject(err, "description", "an error, in the one error shape");
    cJSON *ec = cJSON_AddObjectToObject(cJSON_AddObjectToObject(err, "content"), "application/json");
    cJSON_AddItemToObject(ec, "schema", ref("#/components/schemas/Error"));
    if (rt->needs_auth) {
        cJSON *sec = cJSON_AddArrayToObject(op, "security"), *req = cJSON_CreateObject();
        cJSON_AddArrayToObject(req, "bearer");
        cJSON_AddItemToArray(sec, req);
    }
    return op;
}

static cJSON *components(void) {
    cJSON *c = cJSON_CreateObject();
    cJSON *bearer = cJSON_AddObjectToObject(cJSON_AddObjectToObject(c, "securitySchemes"), "bearer");
    cJSON_AddStringToObject(bearer, "type", "http");
    cJSON_AddStringToObject(bearer, "scheme", "bearer");
    cJSON *schemas = cJSON_AddObjectToObject(c, "schemas");
    cJSON *cfg = cJSON_AddObjectToObject(schemas, "JobConfig");
    cJSON_AddStringToObject(cfg, "type", "object");
    cJSON_AddStringToObject(cfg, "description",
                            "name, dataset, method and train sections (every field has a default; "
                            "unknown fields are refused), plus the queue's priority (integer, "
                            "higher runs first)");
    cJSON *e = cJSON_AddObjectToObject(schemas, "Error");
    cJSON_AddStringToObject(e, "type", "object");
    cJSON *inner = cJSON_AddObjectToObject(cJSON_AddObjectToObject(e, "properties"), "error");
    cJSON_AddStringToObject(inner, "type", "object");
    cJSON *props = cJSON_AddObjectToObject(inner, "properties");
    cJSON_AddItemToObject(props, "code", schema_of("string"));
    cJSON_AddItemToObject(props, "message", schema_of("string"));
    cJSON *field = cJSON_AddObjectToObject(props, "field");
    cJSON *types = cJSON_AddArrayToObject(field, "type");
    cJSON_AddItemToArray(types, cJSON_CreateString("string"));
    cJSON_AddItemToArray(types, cJSON_CreateString("null"));
    return c;
}

void api_openapi(Server *s, Request *r) {
    (void)s;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "openapi", "3.1.0");
    cJSON *info = cJSON_AddObjectToObject(o, "info");
    cJSON_AddStringToObject(info, "title", "dacld");
    cJSON_AddStringToObject(info, "version", DACL_VERSION);
    cJSON_AddStringToObject(info, "description", "Semi-supervised medical image segmentation training daemon");
    cJSON *paths = cJSON_AddObjectToObject(o, "paths");
    for (int i = 0; i < http_route_count; i++) {
        const Route *rt = &http_routes[i];
        cJSON *item = cJSON_GetObjectItemCaseSensitive(paths, rt->pattern);
        if (!item) item = cJSON_AddObjectToObject(paths, rt->pattern);
        char m[16];
        size_t k = 0;
        for (; rt->method[k] && k + 1 < sizeof m; k++) m[k] = (char)tolower((unsigned char)rt->method[k]);
        m[k] = '\0';
        cJSON_AddItemToObject(item, m, operation(rt));
    }
    cJSON_AddItemToObject(o, "components", components());
    http_json(r, MHD_HTTP_OK, o);
}

/* ---------------------------------------------------------- datasets -- */

static void add_dataset(cJSON *arr, const char *path, const char *dir) {
    DaclDataset ds;
    memset(&ds, 0, sizeof ds);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    if (dacl_dataset_load(dir, &ds) == DACL_OK) {
        char *m = dacl_dataset_to_json(&ds);
        cJSON *manifest = m ? cJSON_Parse(m) : NULL;
        free(m);
        cJSON_AddItemToObject(o, "manifest", manifest ? manifest : cJSON_CreateNull());
    } else {
        cJSON_AddStringToObject(o, "error", dacl_error_message());
    }
    dacl_dataset_free(&ds);
    cJSON_AddItemToArray(arr, o);
}

void api_datasets(Server *s, Request *r) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "datasets");
    static const char *const phantoms[] = {"phantom:cardiac", "phantom:abdomen"};
    for (int i = 0; i < 2; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "path", phantoms[i]);
        cJSON_AddBoolToObject(p, "builtin", 1);
        cJSON_AddItemToArray(arr, p);
    }
    DIR *d = s->data_root_real[0] ? opendir(s->data_root_real) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char dir[PATH_MAX * 2], man[PATH_MAX * 2 + 32], man2[PATH_MAX * 2 + 32], why[PATH_MAX + 128];
        snprintf(dir, sizeof dir, "%s/%s", s->data_root_real, e->d_name);
        snprintf(man, sizeof man, "%s/%s", dir, DACL_MANIFEST);
        snprintf(man2, sizeof man2, "%s/%s", dir, DACL_MANIFEST_ALT);
        struct stat st;
        if ((stat(man, &st) && stat(man2, &st)) || !api_dataset_allowed(s, e->d_name, why, sizeof why))
            continue;
        add_dataset(arr, e->d_name, dir);
    }
    if (d) closedir(d);
    cJSON_AddStringToObject(o, "data_root", s->cfg.data_root);
    http_json(r, MHD_HTTP_OK, o);
}
