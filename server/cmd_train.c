/* dacld train: one job in the foreground, the same engine the daemon runs.
 *
 * Writes into --out: metrics.jsonl (one JSON object per metric or evaluation
 * event; deterministic, so two runs can be diffed), checkpoint-last.bin,
 * checkpoint-best.bin and, at the end, summary.json (the best model's
 * validation metrics per class). Prints a progress line a second. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/fileio.h"
#include "dacl/train.h"

/* set by SIGINT/SIGTERM; the trainer checks it between iterations */
static atomic_int stop_requested;

static void on_signal(int sig) {
    (void)sig;
    atomic_store(&stop_requested, 1);
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: dacld train JOB.json --out DIR [--resume] [--stop-at N] [--data-root DIR]\n"
            "                   [--threads N]\n"
            "\n"
            "Trains the job described by JOB.json (the body of POST /api/v1/jobs; every field\n"
            "has a default, so {} trains DACL on the built-in cardiac phantom) in the foreground.\n"
            "\n"
            "  --out DIR        where checkpoints, metrics.jsonl and summary.json go (created)\n"
            "  --resume         continue from DIR/checkpoint-last.bin, bit-identically\n"
            "  --stop-at N      checkpoint and exit after iteration N (to split a long run)\n"
            "  --data-root DIR  where relative dataset paths are looked up (default: .)\n"
            "  --threads N      override train.threads (results depend on the thread count)\n"
            "\n"
            "Ctrl-C or SIGTERM writes a checkpoint at the next iteration and exits with status 3;\n"
            "--resume continues from there. Exit status: 0 done, 1 failed, 2 usage, 3 stopped.\n");
}

typedef struct {
    FILE *metrics;       /* metrics.jsonl */
    double last_print;   /* progress lines at most once a second */
} TrainCtx;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void emit(TrainCtx *c, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fprintf(c->metrics, "%s\n", s);
        fflush(c->metrics);
    }
    free(s);
    cJSON_Delete(o);
}

static void on_metrics(void *ctx, long it, int n, const char *const *names, const double *values) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "metrics");
    cJSON_AddNumberToObject(o, "iteration", (double)it);
    for (int i = 0; i < n; i++) cJSON_AddNumberToObject(o, names[i], values[i]);
    emit(ctx, o);
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isnan(v))
        cJSON_AddNullToObject(o, k); /* undefined distances are null, never 0 */
    else
        cJSON_AddNumberToObject(o, k, v);
}

static cJSON *round_json(const DaclEvalRound *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "evaluation");
    cJSON_AddNumberToObject(o, "iteration", (double)r->iteration);
    cJSON_AddStringToObject(o, "model", r->model ? "b" : "a");
    cJSON_AddNumberToObject(o, "mean_dice", r->mean_fg_dice);
    cJSON *cls = cJSON_AddObjectToObject(o, "classes");
    for (int k = 0; k < r->classes; k++) {
        cJSON *c = cJSON_AddObjectToObject(cls, r->class_names[k]);
        add_num(c, "dice", r->mean_dice[k]);
        add_num(c, "jaccard", r->mean_jaccard[k]);
        add_num(c, "hd95", r->mean_hd95[k]);
        add_num(c, "asd", r->mean_asd[k]);
    }
    cJSON *cases = cJSON_AddObjectToObject(o, "cases");
    for (int i = 0; i < r->cases; i++) {
        cJSON *c = cJSON_AddObjectToObject(cases, r->case_ids[i]);
        for (int k = 0; k < r->classes; k++) add_num(c, r->class_names[k], r->dice[i * r->classes + k]);
    }
    return o;
}

static void on_evaluation(void *ctx, const DaclEvalRound *r) {
    emit(ctx, round_json(r));
    fprintf(stderr, "validation at %ld, model %c: mean Dice %.4f%s\n", r->iteration, r->model ? 'b' : 'a',
            r->mean_fg_dice, r->is_best ? " (best so far)" : "");
}

static void on_progress(void *ctx, const DaclProgress *p) {
    TrainCtx *c = ctx;
    double t = now_s();
    if (t - c->last_print < 1.0 && p->iteration < p->total) return;
    c->last_print = t;
    fprintf(stderr, "iteration %ld/%ld  %.2f img/s  eta %.0f s\n", p->iteration, p->total, p->img_per_s,
            p->eta_s);
}

static void on_log(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "%s\n", msg);
}

/* On resume, metric lines past the checkpoint would be written again:
 * keep only events up to `iteration`, so the file reads as one run. */
static int trim_metrics(const char *path, long iteration) {
    unsigned char *buf;
    size_t n;
    int rc = dacl_file_read_all(path, &buf, &n);
    if (rc == DACL_ENOTFOUND) return DACL_OK;
    DACL_TRY(rc);
    size_t keep = 0;
    for (size_t a = 0; a < n;) {
        unsigned char *nl = memchr(buf + a, '\n', n - a);
        size_t b = nl ? (size_t)(nl - buf) + 1 : n;
        const char *it = strstr((const char *)buf + a, "\"iteration\":");
        long v = it && (unsigned char *)it < buf + b ? strtol(it + 12, NULL, 10) : -1;
        if (!nl || v < 0 || v > iteration) break;
        keep = b;
        a = b;
    }
    rc = dacl_file_write_atomic(path, buf, keep);
    free(buf);
    return rc;
}

/* summary.json: the evaluation event with the highest mean Dice in
 * metrics.jsonl (the first of equals, as the trainer picks the best), which
 * also covers rounds from before a resume. */
static int write_summary(const char *dir, const char *metrics_path, const DaclJobConfig *cfg,
                         long iteration) {
    unsigned char *buf;
    size_t n;
    DACL_TRY(dacl_file_read_all(metrics_path, &buf, &n));
    cJSON *best = NULL;
    double best_dice = -1.0;
    for (char *line = strtok((char *)buf, "\n"); line && (unsigned char *)line < buf + n;
         line = strtok(NULL, "\n")) {
        if (!strstr(line, "\"evaluation\"")) continue;
        cJSON *e = cJSON_Parse(line);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "mean_dice");
        if (cJSON_IsNumber(d) && d->valuedouble > best_dice) {
            best_dice = d->valuedouble;
            cJSON_Delete(best);
            best = e;
        } else {
            cJSON_Delete(e);
        }
    }
    free(buf);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", cfg->name);
    cJSON_AddStringToObject(o, "method", dacl_method_name(cfg->method.name));
    cJSON_AddNumberToObject(o, "iterations", (double)iteration);
    if (best) {
        cJSON_DeleteItemFromObject(best, "event");
        cJSON_AddItemToObject(o, "best", best);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    int rc = s ? dacl_file_write_atomic(path, s, strlen(s)) : DACL_FAIL(DACL_ENOMEM, "out of memory");
    free(s);
    return rc;
}

/* One line on where an iteration's time went, for finding what to speed up
 * (the contrastive module's share is the number DACL is judged on). */
static void print_timing(const DaclTrainer *t) {
    DaclTiming tm;
    dacl_trainer_timing(t, &tm);
    if (tm.iterations < 1) return;
    double step = tm.data + tm.forward + tm.losses + tm.contrast + tm.backward, n = (double)tm.iterations;
    if (step <= 0) return;
    fprintf(stderr,
            "time per iteration: %.3f s = data %.1f %% + forward %.1f %% + losses %.1f %% + "
            "contrastive %.1f %% + backward and SGD %.1f %% (%ld iterations)\n",
            step / n, 100 * tm.data / step, 100 * tm.forward / step, 100 * tm.losses / step,
            100 * tm.contrast / step, 100 * tm.backward / step, tm.iterations);
}

int cmd_train(int argc, char **argv) {
    const char *job = NULL, *out = NULL, *data_root = ".";
    long stop_at = 0, threads = 0;
    int resume = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--resume")) {
            resume = 1;
        } else if (!strcmp(a, "--out") && v) {
            out = v, i++;
        } else if (!strcmp(a, "--data-root") && v) {
            data_root = v, i++;
        } else if (!strcmp(a, "--stop-at") && v) {
            if (cli_parse_long(a, v, 1, 100000000, &stop_at)) return 2;
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            if (cli_parse_long(a, v, 1, 1024, &threads)) return 2;
            i++;
        } else if (a[0] != '-' && !job) {
            job = a;
        } else {
            fprintf(stderr, "dacld train: unknown option or missing value: %s\n", a);
            train_usage(stderr);
            return 2;
        }
    }
    if (!job || !out) {
        fprintf(stderr, "dacld train: give a job file and --out DIR\n");
        train_usage(stderr);
        return 2;
    }
    unsigned char *text;
    size_t n;
    if (dacl_file_read_all(job, &text, &n)) {
        fprintf(stderr, "dacld train: %s\n", dacl_error_message());
        return 1;
    }
    char *json = realloc(text, n + 1);
    if (!json) {
        free(text);
        return 1;
    }
    json[n] = '\0';
    DaclJobConfig cfg;
    char field[128];
    int rc = dacl_config_parse(json, &cfg, field, sizeof field);
    free(json);
    if (rc) {
        fprintf(stderr, "dacld train: %s: %s\n", job, dacl_error_message());
        return 1;
    }
    if (threads) cfg.train.threads = (int)threads;
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dacld train: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    DaclTrainer *t;
    if (dacl_trainer_create(&t, &cfg, data_root, out)) {
        fprintf(stderr, "dacld train: %s\n", dacl_error_message());
        return 1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    if (resume) {
        char ck[4200];
        snprintf(ck, sizeof ck, "%s/checkpoint-last.bin", out);
        if (dacl_trainer_resume(t, ck) || trim_metrics(path, dacl_trainer_iteration(t))) {
            fprintf(stderr, "dacld train: cannot resume: %s\n", dacl_error_message());
            dacl_trainer_free(t);
            return 1;
        }
    }
    TrainCtx ctx = {.metrics = fopen(path, resume ? "a" : "w")};
    if (!ctx.metrics) {
        fprintf(stderr, "dacld train: cannot write %s: %s\n", path, strerror(errno));
        dacl_trainer_free(t);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    DaclSink sink = {&ctx, on_progress, on_metrics, on_evaluation, on_log, NULL};
    rc = dacl_trainer_run(t, stop_at, &stop_requested, &sink);
    long done = dacl_trainer_iteration(t);
    fclose(ctx.metrics);
    int status = 0;
    if (rc == DACL_ECANCELED) {
        fprintf(stderr, "stopped at iteration %ld; continue with --resume\n", done);
        status = 3;
    } else if (rc) {
        fprintf(stderr, "dacld train: %s\n", dacl_error_message());
        status = 1;
    } else if (done >= cfg.train.iterations && write_summary(out, path, &cfg, done)) {
        fprintf(stderr, "dacld train: %s\n", dacl_error_message());
        status = 1;
    } else if (done >= cfg.train.iterations) {
        fprintf(stderr, "done: %ld iterations; %s/summary.json has the best model's metrics\n", done, out);
    } else {
        fprintf(stderr, "stopped at iteration %ld as asked; continue with --resume\n", done);
    }
    print_timing(t);
    dacl_trainer_free(t);
    return status;
}
