/* dacld serve: the daemon. Reads its configuration (defaults < config file <
 * environment < flags), opens the store, recovers jobs cut off by a crash,
 * starts the event hub, the HTTP server and the workers, then sleeps until a
 * signal.
 *
 * Shutdown, on the first SIGTERM/SIGINT: stop accepting connections, let the
 * running jobs checkpoint at their next iteration (they are marked
 * interrupted and resume at the next start), end the event streams, stop
 * HTTP, close the database. A second signal kills the process at once. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "cli.h"
#include "dacl/error.h"
#include "dacl/version.h"
#include "events.h"
#include "http.h"
#include "scheduler.h"
#include "server.h"

/* The signal handler's only state: how many signals came, and where it writes. */
static volatile sig_atomic_t signals_seen;
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    if (signals_seen++) { /* the second one: no more waiting */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    int saved = errno;
    if (write(signal_pipe[1], "", 1) < 0) { /* nothing to do: the pipe is never full */
    }
    errno = saved;
}

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: dacld serve [--config FILE] [--listen ADDR:PORT] [--state DIR] [--data-root DIR]\n"
            "                   [--workers N] [--token-file F] [--http-threads N] [--max-body BYTES]\n"
            "                   [--max-upload BYTES] [--web-root DIR] [--connection-timeout S]\n"
            "                   [--request-timeout S] [--max-connections N] [--max-connections-per-ip N]\n"
            "                   [--train-nice N]\n"
            "\n"
            "Runs the REST daemon: jobs are submitted over HTTP, trained by N workers, and kept\n"
            "with every metric in DIR/dacld.db (SQLite). Settings come from the defaults, then\n"
            "FILE (lines 'key = value', see deploy/dacld.conf.example), then DACLD_<KEY>\n"
            "environment variables (DACLD_LISTEN, DACLD_DATA_ROOT, ...), then flags.\n"
            "\n"
            "  --listen ADDR:PORT  where to listen (default 127.0.0.1:8080; port 0: any free one)\n"
            "  --state DIR         database and job folders (default ./var)\n"
            "  --data-root DIR     where dataset paths of jobs are looked up (default ./data)\n"
            "  --workers N         jobs trained at once (default 1); each gets cores/N threads at most\n"
            "  --token-file F      mutating routes need 'Authorization: Bearer <F's content>'\n"
            "  --http-threads N    HTTP thread pool (default 4)\n"
            "  --max-body BYTES    larger request bodies get 413 (default 1048576)\n"
            "  --max-upload BYTES  the same for volumes sent to predict (default 268435456)\n"
            "  --web-root DIR      the dashboard's files, served at / (default: web/ of the source\n"
            "                      tree for a dacld in its build tree, else the installed copy)\n"
            "  --connection-timeout S  close a connection silent for S seconds (default 60)\n"
            "  --request-timeout S     close a connection whose request, body included, takes\n"
            "                          longer than S seconds to arrive (default 300)\n"
            "  --max-connections N     open connections at most (default 1000)\n"
            "  --max-connections-per-ip N  the same per client address (default 64)\n"
            "  --train-nice N      training threads run at nice N (0..19, default 5) so that\n"
            "                      answers never queue behind training for a core; 0: none\n"
            "\n"
            "SIGTERM or SIGINT stops it cleanly (running jobs checkpoint and resume at the next\n"
            "start); a second signal stops it at once.\n");
}

/* ------------------------------------------------------------ options -- */

typedef enum { OPT_STR, OPT_INT, OPT_SIZE } OptType;

typedef struct {
    const char *key; /* file key; flag --key with '-', environment DACLD_KEY */
    OptType type;
    size_t off, size;
    long lo, hi;
} Option;

#define STR_OPT(k, f) {k, OPT_STR, offsetof(ServeConfig, f), sizeof(((ServeConfig *)0)->f), 0, 0}
static const Option options[] = {
    STR_OPT("listen", listen),
    STR_OPT("state", state),
    STR_OPT("data_root", data_root),
    STR_OPT("token_file", token_file),
    STR_OPT("web_root", web_root),
    {"workers", OPT_INT, offsetof(ServeConfig, workers), 0, 1, 64},
    {"http_threads", OPT_INT, offsetof(ServeConfig, http_threads), 0, 1, 64},
    {"max_body", OPT_SIZE, offsetof(ServeConfig, max_body), 0, 1024, 1L << 30},
    {"max_upload", OPT_SIZE, offsetof(ServeConfig, max_upload), 0, 1024, 4L << 30},
    {"connection_timeout", OPT_INT, offsetof(ServeConfig, connection_timeout), 0, 1, 86400},
    {"request_timeout", OPT_INT, offsetof(ServeConfig, request_timeout), 0, 1, 86400},
    {"max_connections", OPT_INT, offsetof(ServeConfig, max_connections), 0, 4, 100000},
    {"max_connections_per_ip", OPT_INT, offsetof(ServeConfig, max_connections_per_ip), 0, 1, 100000},
    {"train_nice", OPT_INT, offsetof(ServeConfig, train_nice), 0, 0, 19},
};
#define NOPTIONS ((int)(sizeof options / sizeof options[0]))

/* Sets option `key` from `val`; `from` names the source in messages. */
static int set_option(ServeConfig *c, const char *key, const char *val, const char *from) {
    for (int i = 0; i < NOPTIONS; i++) {
        const Option *o = &options[i];
        if (strcmp(o->key, key)) continue;
        char *dst = (char *)c + o->off;
        if (o->type == OPT_STR) {
            if (strlen(val) >= o->size) {
                fprintf(stderr, "dacld serve: %s: %s is too long\n", from, key);
                return 2;
            }
            memcpy(dst, val, strlen(val) + 1);
            return 0;
        }
        long v;
        if (cli_parse_long(from, val, o->lo, o->hi, &v)) return 2;
        if (o->type == OPT_INT)
            *(int *)(void *)dst = (int)v;
        else
            *(size_t *)(void *)dst = (size_t)v;
        return 0;
    }
    fprintf(stderr, "dacld serve: %s: unknown setting '%s'\n", from, key);
    return 2;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && strchr(" \t\r\n", e[-1])) *--e = '\0';
    return s;
}

/* "key = value" lines; '#' starts a comment line. */
static int read_config_file(ServeConfig *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dacld serve: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    char line[PATH_MAX + 64];
    int no = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        char *s = trim(line), *eq = strchr(s, '=');
        if (!*s || *s == '#') continue;
        char from[PATH_MAX + 32];
        snprintf(from, sizeof from, "%s:%d", path, no);
        if (!eq) {
            fprintf(stderr, "dacld serve: %s: expected 'key = value'\n", from);
            rc = 2;
            break;
        }
        *eq = '\0';
        rc = set_option(c, trim(s), trim(eq + 1), from);
    }
    fclose(f);
    return rc;
}

static int read_environment(ServeConfig *c) {
    for (int i = 0; i < NOPTIONS; i++) {
        char name[64] = "DACLD_";
        for (size_t k = 0; options[i].key[k] && k + 7 < sizeof name; k++)
            name[6 + k] = (char)(options[i].key[k] >= 'a' && options[i].key[k] <= 'z' ? options[i].key[k] - 32
                                                                                      : options[i].key[k]);
        const char *v = getenv(name);
        if (v && *v && set_option(c, options[i].key, v, name)) return 2;
    }
    return 0;
}

/* Flags, in two passes: --config is read first so the other flags win over it. */
static int parse_flags(ServeConfig *c, int argc, char **argv, int config_only) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(a, "--", 2) || !v) {
            fprintf(stderr, "dacld serve: unknown option or missing value: %s\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--config")) {
            if (config_only && read_config_file(c, v)) return 2;
            continue;
        }
        if (config_only) continue;
        char key[64];
        snprintf(key, sizeof key, "%s", a + 2);
        for (char *p = key; *p; p++) *p = *p == '-' ? '_' : *p;
        if (set_option(c, key, v, a)) return 2;
    }
    return 0;
}

static int load_token(Server *s) {
    if (!s->cfg.token_file[0]) return 0;
    FILE *f = fopen(s->cfg.token_file, "r");
    if (!f) {
        fprintf(stderr, "dacld serve: cannot read the token file %s: %s\n", s->cfg.token_file, strerror(errno));
        return 1;
    }
    char buf[sizeof s->token + 2] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *t = trim(buf);
    if (!*t || strlen(t) >= sizeof s->token || strpbrk(t, " \t\r\n")) {
        fprintf(stderr, "dacld serve: %s must hold one token of 1 to %zu characters\n", s->cfg.token_file,
                sizeof s->token - 1);
        return 1;
    }
    snprintf(s->token, sizeof s->token, "%s", t);
    return 0;
}

/* -------------------------------------------------------------- run -- */

static int wait_for_signal(void) {
    struct pollfd p = {.fd = signal_pipe[0], .events = POLLIN};
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR) return 1;
    return 0;
}

static int start(Server *s) {
    char jobs[PATH_MAX + 8];
    int applied = 0, interrupted = 0, canceled = 0, port = 0;
    /* HTTP threads and workers each hold a connection at most, plus one spare */
    if (store_open_state(&s->store, s->cfg.state, s->cfg.http_threads + s->cfg.workers + 1, &applied))
        return 1;
    if (applied) fprintf(stderr, "dacld: database schema upgraded (%d migrations)\n", applied);
    snprintf(jobs, sizeof jobs, "%s/jobs", s->cfg.state);
    if (mkdir(jobs, 0750) != 0 && errno != EEXIST)
        return DACL_FAIL(DACL_EIO, "%s: cannot create: %s", jobs, strerror(errno));
    if (store_recover(s->store, &interrupted, &canceled)) return 1;
    if (interrupted || canceled)
        fprintf(stderr, "dacld: recovered: %d job(s) cut off will resume, %d canceled\n", interrupted, canceled);
    if (api_cache_create(s) || api_job_cache_create(s) || events_start(&s->events, 15) || http_start(s, &s->http, &port)) return 1;
    fprintf(stderr, "dacld: listening on http://%.*s:%d\n", (int)(strrchr(s->cfg.listen, ':') - s->cfg.listen),
            s->cfg.listen, port);
    return scheduler_start(s, &s->sched) ? 1 : 0;
}

static void stop(Server *s) {
    http_quiesce(s->http);        /* no new connections */
    scheduler_stop(s->sched);     /* jobs checkpoint and are marked interrupted */
    events_close(s->events);      /* streams end */
    http_stop(s->http);           /* requests in flight finish */
    events_free(s->events);
    api_cache_free(s);
    api_job_cache_free(s);
    store_close(s->store);
}

int cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            return 0;
        }
    Server s;
    memset(&s, 0, sizeof s);
    ServeConfig *c = &s.cfg;
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:8080");
    snprintf(c->state, sizeof c->state, "./var");
    snprintf(c->data_root, sizeof c->data_root, "./data");
    c->workers = 1;
    c->http_threads = 4;
    c->max_body = 1 << 20;
    c->max_upload = 256 << 20;
    c->connection_timeout = 60;
    c->request_timeout = 300;
    c->max_connections = 1000;
    c->max_connections_per_ip = 64;
    c->train_nice = 5;
    const char *env_config = getenv("DACLD_CONFIG");
    if ((env_config && *env_config && read_config_file(c, env_config)) || parse_flags(c, argc, argv, 1) ||
        read_environment(c) || parse_flags(c, argc, argv, 0)) {
        serve_usage(stderr);
        return 2;
    }
    if (load_token(&s)) return 1;
    if (!realpath(c->data_root, s.data_root_real)) s.data_root_real[0] = '\0';
    api_web_root_resolve(&s);
    fprintf(stderr,
            "dacld %s: serve listen=%s state=%s data_root=%s%s web_root=%s%s workers=%d http_threads=%d "
            "max_body=%zu max_upload=%zu connection_timeout=%d request_timeout=%d max_connections=%d "
            "max_connections_per_ip=%d train_nice=%d token=%s\n",
            DACL_VERSION, c->listen, c->state, c->data_root, s.data_root_real[0] ? "" : " (missing)", c->web_root,
            s.web_root_real[0] ? "" : " (missing: no dashboard)", c->workers, c->http_threads, c->max_body,
            c->max_upload, c->connection_timeout, c->request_timeout, c->max_connections,
            c->max_connections_per_ip, c->train_nice, s.token[0] ? "required" : "none");
    if (pipe(signal_pipe) != 0) {
        fprintf(stderr, "dacld serve: pipe: %s\n", strerror(errno));
        return 1;
    }
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an error return, not a death */
    s.started_ms = store_now_ms();
    int rc = start(&s);
    if (rc)
        fprintf(stderr, "dacld serve: %s\n", dacl_error_message());
    else if (wait_for_signal() == 0)
        fprintf(stderr, "dacld: shutting down: running jobs checkpoint (a second signal stops at once)\n");
    stop(&s);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    if (!rc) fprintf(stderr, "dacld: stopped\n");
    return rc;
}
