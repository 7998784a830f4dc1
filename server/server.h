/* The daemon's context: one struct, built by cmd_serve.c and handed to every
 * handler, the scheduler and the event hub. Nothing about jobs lives in
 * globals, so a test could run two daemons in one process. */
#ifndef DACLD_SERVER_H
#define DACLD_SERVER_H

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct Scheduler Scheduler;
typedef struct Events Events;
typedef struct Http Http;
typedef struct MetricsCache MetricsCache;
typedef struct JobCache JobCache;

/* The effective configuration: defaults, then the config file, then the
 * environment, then flags (cmd_serve.c). */
typedef struct {
    char listen[128];      /* ADDR:PORT; port 0 picks a free one */
    char state[PATH_MAX];  /* dacld.db and jobs/<id>/ */
    char data_root[PATH_MAX];
    char token_file[PATH_MAX];
    char web_root[PATH_MAX];  /* the dashboard's files; "" = the built-in default */
    int workers;           /* jobs trained at once */
    int http_threads;      /* libmicrohttpd's pool */
    size_t max_body;       /* bytes; larger requests get 413 */
    size_t max_upload;     /* the same for routes that take a file (predict) */
    int connection_timeout;    /* seconds a connection may stay silent before it is closed */
    int request_timeout;       /* seconds a request may take to arrive, body included */
    int max_connections;       /* open connections, all clients together */
    int max_connections_per_ip;
    int train_nice;            /* nice value of the training threads, above the HTTP threads' */
} ServeConfig;

typedef struct {
    ServeConfig cfg;
    char token[256];                /* "" when mutating routes are open */
    char data_root_real[PATH_MAX];  /* realpath of cfg.data_root, "" if it does not exist */
    char web_root_real[PATH_MAX];   /* realpath of the dashboard's folder, "" if there is none */
    int64_t started_ms;
    atomic_int inferring;           /* a predict or sample render is running (one at a time) */
    Store *store;
    Scheduler *sched;
    Events *events;
    Http *http;
    MetricsCache *mcache; /* api_metrics.c */
    JobCache *jcache;     /* api_jobs.c */
} Server;

#endif
