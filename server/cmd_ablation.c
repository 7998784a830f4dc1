/* dacld ablation: the paper's Table 2 ladder (rows I-VI, method.md §3) as six
 * job configs, optionally trained one after another with a results table.
 *
 * Each row adds one piece to the one before: I CPS; II + a contrastive loss
 * with random anchors and keys; III density-guided sampling (one k, no bank);
 * IV every k (multi-scale); V the memory bank; VI soft positiveness = DACL.
 * Rows differ only in `method`, so their differences are the pieces'. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/fileio.h"

typedef struct {
    const char *row, *file, *what;
    const char *method; /* the `method` object of the job */
} Row;

static const Row rows[] = {
    {"I", "I-cps", "CPS (cross pseudo supervision)", "{\"name\": \"cps\"}"},
    {"II", "II-random", "+ contrastive loss, random anchors and keys",
     "{\"name\": \"dacl\", \"sampling\": \"random\", \"multiscale\": false, \"bank\": false, "
     "\"positiveness\": \"none\"}"},
    {"III", "III-density", "+ density-guided sampling (one k, no bank)",
     "{\"name\": \"dacl\", \"sampling\": \"density\", \"multiscale\": false, \"bank\": false, "
     "\"positiveness\": \"none\"}"},
    {"IV", "IV-multiscale", "+ multi-scale density (every k)",
     "{\"name\": \"dacl\", \"sampling\": \"density\", \"multiscale\": true, \"bank\": false, "
     "\"positiveness\": \"none\"}"},
    {"V", "V-bank", "+ memory bank",
     "{\"name\": \"dacl\", \"sampling\": \"density\", \"multiscale\": true, \"bank\": true, "
     "\"positiveness\": \"none\"}"},
    {"VI", "VI-dacl", "+ soft positiveness (DACL)",
     "{\"name\": \"dacl\", \"sampling\": \"density\", \"multiscale\": true, \"bank\": true, "
     "\"positiveness\": \"weighted\"}"},
};
#define NROWS ((int)(sizeof rows / sizeof rows[0]))

static void ablation_usage(FILE *f) {
    fprintf(f,
            "usage: dacld ablation --dataset D --labeled N --out DIR [--quick] [--seed S]\n"
            "                      [--iterations N] [--rows I,V,VI] [--run] [--threads N]\n"
            "                      [--data-root DIR]\n"
            "\n"
            "Writes the paper's ablation ladder (its Table 2) as six jobs, DIR/<row>.json:\n");
    for (int i = 0; i < NROWS; i++) fprintf(f, "  %-4s %-15s %s\n", rows[i].row, rows[i].file, rows[i].what);
    fprintf(f,
            "Each row adds one piece to the row before; everything else is the same job.\n"
            "\n"
            "  --dataset D      a dataset folder (under --data-root unless absolute) or\n"
            "                   phantom:cardiac | phantom:abdomen\n"
            "  --labeled N      labeled patients (cases), as dataset.labeled\n"
            "  --out DIR        where the jobs (and, with --run, each row's DIR/<row>/) go\n"
            "  --quick          the quick protocol: 4000 iterations, 128x128, batch 4 + 4,\n"
            "                   validation every 500 (default: the paper's, 30000 at 256x256,\n"
            "                   batch 12 + 12)\n"
            "  --seed S         train.seed (default 1337)\n"
            "  --iterations N   train.iterations for every row (a shorter or longer schedule)\n"
            "  --rows LIST      only these rows, e.g. I,V,VI (default: all six)\n"
            "  --run            train the rows one after another with 'dacld train' (a row\n"
            "                   already finished is skipped, a stopped one resumes), then print\n"
            "                   the table of the best validation round of each finished row\n"
            "  --threads N      train.threads for every row (default 2)\n"
            "  --data-root DIR  as for 'dacld train' (default: .)\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 usage, 3 stopped by a signal (--run again resumes).\n");
}

/* --rows "I,V,VI" -> want[] */
static int parse_rows(const char *list, int *want) {
    for (int i = 0; i < NROWS; i++) want[i] = 0;
    char buf[64];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) return -1;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < NROWS; i++)
            if (!strcmp(tok, rows[i].row)) want[i] = found = 1;
        if (!found) return -1;
    }
    return 0;
}

/* The row's job, checked by the job parser (so a file written is a file the
 * daemon and 'dacld train' accept). */
static char *row_job(const Row *r, const char *dataset, long labeled, long seed, int quick, long threads,
                     long iterations, const char *tag) {
    char name[160], *json = NULL;
    snprintf(name, sizeof name, "ablation-%s-%s", tag, r->file);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON *d = cJSON_AddObjectToObject(o, "dataset");
    cJSON_AddStringToObject(d, "path", dataset);
    cJSON_AddNumberToObject(d, "labeled", (double)labeled);
    cJSON_AddItemToObject(o, "method", cJSON_Parse(r->method));
    cJSON *t = cJSON_AddObjectToObject(o, "train");
    cJSON_AddNumberToObject(t, "seed", (double)seed);
    cJSON_AddNumberToObject(t, "threads", (double)threads);
    if (quick) {
        cJSON_AddNumberToObject(t, "iterations", 4000);
        cJSON_AddNumberToObject(t, "batch", 8);
        cJSON_AddNumberToObject(t, "labeled_batch", 4);
        cJSON *p = cJSON_AddArrayToObject(t, "patch");
        cJSON_AddItemToArray(p, cJSON_CreateNumber(128));
        cJSON_AddItemToArray(p, cJSON_CreateNumber(128));
        cJSON_AddNumberToObject(t, "val_every", 500);
        cJSON_AddNumberToObject(t, "checkpoint_every", 500);
    }
    if (iterations > 0) {
        cJSON_DeleteItemFromObject(t, "iterations");
        cJSON_AddNumberToObject(t, "iterations", (double)iterations);
    }
    json = cJSON_Print(o);
    cJSON_Delete(o);
    if (!json) return NULL;
    DaclJobConfig cfg;
    char field[128];
    if (dacl_config_parse(json, &cfg, field, sizeof field)) {
        fprintf(stderr, "dacld ablation: row %s: %s\n", r->row, dacl_error_message());
        free(json);
        return NULL;
    }
    return json;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* One line of the table from DIR/<row>/summary.json; prints the header
 * (class names) before the first. */
static void table_row(const char *out, const Row *r, int *header) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/summary.json", out, r->file);
    unsigned char *buf;
    size_t n;
    if (dacl_file_read_all(path, &buf, &n)) {
        printf("%-4s %-46s (not run or not finished)\n", r->row, r->what);
        return;
    }
    cJSON *s = cJSON_ParseWithLength((const char *)buf, n);
    free(buf);
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(s, "best");
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(best, "classes");
    if (!cJSON_IsObject(cls)) {
        printf("%-4s %-46s (no validation round in %s)\n", r->row, r->what, path);
        cJSON_Delete(s);
        return;
    }
    if (!*header) {
        printf("%-4s %-46s %6s %6s", "row", "", "best@", "Dice");
        const cJSON *c;
        cJSON_ArrayForEach(c, cls) printf(" %8.8s", c->string);
        printf(" %6s %6s\n", "HD95", "ASD");
        *header = 1;
    }
    printf("%-4s %-46s %6.0f %6.4f", r->row, r->what, num(best, "iteration"), num(best, "mean_dice"));
    double hd = 0, asd = 0;
    int nh = 0, na = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cls) {
        printf(" %8.4f", num(c, "dice"));
        double h = num(c, "hd95"), a = num(c, "asd");
        if (!isnan(h)) hd += h, nh++;
        if (!isnan(a)) asd += a, na++;
    }
    printf(" %6.2f %6.2f\n", nh ? hd / nh : NAN, na ? asd / na : NAN);
    cJSON_Delete(s);
}

int cmd_ablation(int argc, char **argv) {
    const char *dataset = NULL, *out = NULL, *data_root = ".", *row_list = NULL;
    long labeled = -1, seed = 1337, threads = 2, iterations = 0;
    int quick = 0, run = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ablation_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
            continue;
        } else if (!strcmp(a, "--run")) {
            run = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "dacld ablation: unknown option or missing value: %s\n", a);
            ablation_usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--dataset"))
            dataset = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--data-root"))
            data_root = v;
        else if (!strcmp(a, "--rows"))
            row_list = v;
        else if (!strcmp(a, "--labeled"))
            rc = cli_parse_long(a, v, 1, 100000, &labeled);
        else if (!strcmp(a, "--seed"))
            rc = cli_parse_long(a, v, 0, 2147483647L, &seed);
        else if (!strcmp(a, "--iterations"))
            rc = cli_parse_long(a, v, 1, 100000000, &iterations);
        else if (!strcmp(a, "--threads"))
            rc = cli_parse_long(a, v, 1, 1024, &threads);
        else {
            fprintf(stderr, "dacld ablation: unknown option: %s\n", a);
            ablation_usage(stderr);
            return 2;
        }
        if (rc) return rc;
        i++;
    }
    if (!dataset || labeled < 0 || !out) {
        fprintf(stderr, "dacld ablation: give --dataset, --labeled and --out\n");
        ablation_usage(stderr);
        return 2;
    }
    int want[NROWS];
    for (int i = 0; i < NROWS; i++) want[i] = 1;
    if (row_list && parse_rows(row_list, want)) {
        fprintf(stderr, "dacld ablation: --rows: a comma-separated list of I, II, III, IV, V, VI; got '%s'\n",
                row_list);
        return 2;
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dacld ablation: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    char tag[64];
    snprintf(tag, sizeof tag, "%ld-labeled%s", labeled, quick ? "-quick" : "");
    char jobs[NROWS][4200];
    for (int i = 0; i < NROWS; i++) {
        if (!want[i]) continue;
        char *json = row_job(&rows[i], dataset, labeled, seed, quick, threads, iterations, tag);
        if (!json) return 1;
        snprintf(jobs[i], sizeof jobs[i], "%s/%s.json", out, rows[i].file);
        int rc = dacl_file_write_atomic(jobs[i], json, strlen(json));
        free(json);
        if (rc) {
            fprintf(stderr, "dacld ablation: %s\n", dacl_error_message());
            return 1;
        }
        fprintf(stderr, "wrote %s (row %s: %s)\n", jobs[i], rows[i].row, rows[i].what);
    }
    if (!run) return 0;
    for (int i = 0; i < NROWS; i++) {
        if (!want[i]) continue;
        char dir[4200], sum[4300], ck[4300];
        snprintf(dir, sizeof dir, "%s/%s", out, rows[i].file);
        snprintf(sum, sizeof sum, "%s/summary.json", dir);
        snprintf(ck, sizeof ck, "%s/checkpoint-last.bin", dir);
        if (exists(sum)) {
            fprintf(stderr, "row %s: finished before (%s), skipped\n", rows[i].row, sum);
            continue;
        }
        int resume = exists(ck);
        fprintf(stderr, "row %s: %s %s\n", rows[i].row, resume ? "resuming" : "training", dir);
        char threads_s[24];
        snprintf(threads_s, sizeof threads_s, "%ld", threads);
        char *targv[] = {"train", jobs[i], "--out", dir, "--data-root", (char *)data_root,
                         "--threads", threads_s, resume ? "--resume" : NULL, NULL};
        int targc = resume ? 9 : 8;
        int rc = cmd_train(targc, targv);
        if (rc) {
            fprintf(stderr, "dacld ablation: row %s stopped (status %d); run again to resume\n", rows[i].row, rc);
            return rc == 3 ? 3 : 1;
        }
    }
    printf("%s, %ld labeled, seed %ld%s: the best validation round of each row (mean over classes;\n"
           "HD95 and ASD averaged over the classes where defined)\n",
           dataset, labeled, seed, quick ? ", quick protocol" : "");
    int header = 0;
    for (int i = 0; i < NROWS; i++)
        if (want[i]) table_row(out, &rows[i], &header);
    return 0;
}
