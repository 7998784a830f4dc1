/* The HTTP API's handlers (server/api_*.c), named in http.c's route table.
 * Each answers its request exactly once through the http_* helpers. */
#ifndef DACLD_API_H
#define DACLD_API_H

#include "dacl/config.h"
#include "http.h"

/* api_jobs.c */

/* Why a job submission's body was refused: the JSON error's code, field
 * ("" for none) and message. */
typedef struct {
    const char *code;
    char field[128];
    char message[1024];
} ApiBodyError;

/* The body of POST /api/v1/jobs (n bytes, not necessarily NUL-terminated)
 * as a validated config and a queue priority ("priority", taken out before
 * the config parser). 0 when it is one; else the status to answer: 400 with
 * *err filled, or 500 when memory ran out. Pure: no store, no files. */
int api_job_parse_body(const char *body, size_t n, DaclJobConfig *cfg, int *priority, ApiBodyError *err);

void api_job_submit(Server *s, Request *r);
void api_job_list(Server *s, Request *r);
/* The cache of GET /jobs/{id} answers lives in s->jcache */
int api_job_cache_create(Server *s);
void api_job_cache_free(Server *s);
void api_job_get(Server *s, Request *r);
void api_job_cancel(Server *s, Request *r);
void api_job_delete(Server *s, Request *r);

/* api_metrics.c; the cache of /metrics answers lives in s->mcache */
int api_cache_create(Server *s);
void api_cache_free(Server *s);
void api_job_metrics(Server *s, Request *r);
void api_job_metrics_csv(Server *s, Request *r);
void api_job_evaluation(Server *s, Request *r);
void api_job_checkpoint(Server *s, Request *r);

/* api_predict.c */
void api_job_predict(Server *s, Request *r);
void api_job_sample(Server *s, Request *r);

/* api_events.c */
void api_job_events(Server *s, Request *r);

/* api_meta.c */
void api_datasets(Server *s, Request *r);
void api_version(Server *s, Request *r);
void api_openapi(Server *s, Request *r);
void api_healthz(Server *s, Request *r);
void api_prometheus(Server *s, Request *r);

/* api_static.c: the dashboard's files from the web root */
void api_web_index(Server *s, Request *r);
void api_web_file(Server *s, Request *r);
void api_web_vendor(Server *s, Request *r);
/* Sets s->web_root_real ("" when there is no usable one) from cfg.web_root,
 * or, when that is unset, from the build tree's or the installed web/ (and
 * names the one chosen in cfg.web_root). */
void api_web_root_resolve(Server *s);

/* Loads job {id} (param 0) into *j; answers 404 or 500 and returns 0 when it
 * cannot. */
int api_load_job(Server *s, Request *r, StoreJob *j);

/* Whether a job's dataset.path may be used: a phantom spec, or a relative
 * path that resolves (symlinks included) to a folder inside the data root.
 * On refusal writes the reason into why. */
int api_dataset_allowed(const Server *s, const char *path, char *why, size_t n);

/* "2025-01-31T12:00:00.000Z" for milliseconds since the epoch */
void api_iso_time(int64_t ms, char out[32]);

#endif
