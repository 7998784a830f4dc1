/* dacld evaluate: a model's Dice, Jaccard, HD95 and ASD on a dataset split,
 * per case and class and averaged. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "dacl/error.h"
#include "dacl/eval.h"

static void evaluate_usage(FILE *f) {
    fprintf(f,
            "usage: dacld evaluate --checkpoint FILE --dataset DIR --split val|test\n"
            "                      [--json] [--mm] [--threads T]\n"
            "\n"
            "Predicts every case of the split (the dataset's intensity handling, slices\n"
            "resized to the model's patch and back) and scores it against its label map per\n"
            "foreground class: Dice, Jaccard, HD95 and ASD (medpy definitions, 3D). Prints a\n"
            "table, or with --json\n"
            "  {\"cases\": [{\"id\", \"classes\": {\"1\": {\"dice\", \"jaccard\", \"hd95\", \"asd\"}, ...},\n"
            "              \"mean\": {...}}, ...],\n"
            "   \"mean\": {\"classes\": {...}, \"mean\": {...}}}\n"
            "where a case's mean is over its classes, the overall per-class figures are means\n"
            "over cases, and the overall mean is over classes. HD95 and ASD are undefined\n"
            "(null, '-' in the table) when the prediction or the truth lacks the class; means\n"
            "skip them and count them in distances_missing.\n"
            "\n"
            "  --checkpoint FILE  a model file, or a training checkpoint (its best model)\n"
            "  --dataset DIR      a dataset folder (or its manifest)\n"
            "  --split S          val or test; every case in it needs a label map\n"
            "  --json             JSON on stdout instead of the table\n"
            "  --mm               distances in mm (voxel spacing from the files or manifest)\n"
            "                     instead of voxels\n"
            "  --threads T        threads for the network (default 1)\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 bad usage.\n");
}

typedef struct {
    const DaclDataset *ds;
    const DaclSplit *split;
    int nc;                   /* foreground classes: the model's classes - 1 */
    DaclClassMetrics *m;      /* [cases][nc] */
    DaclClassMetrics *cls;    /* [nc] per class, means over cases */
    int *missing;             /* [nc] cases whose distances are undefined, per class */
    DaclMetricsMean overall;  /* over classes; distances_undefined = sum of missing */
} Eval;

/* The manifest's name for class value c, or NULL. */
static const char *class_name(const DaclDataset *ds, int c) {
    for (int i = 0; i < ds->n_labels; i++)
        if (ds->labels[i].value == c) return ds->labels[i].name;
    return NULL;
}

/* The split must be scorable by this model before any case is predicted. */
static int check_split(const Eval *e, const char *split, int classes) {
    if (e->split->n == 0)
        return DACL_FAIL(DACL_EINVAL, "dataset %s has no cases in its %s split", e->ds->name, split);
    for (int i = 0; i < e->split->n; i++)
        if (!e->split->cases[i].label)
            return DACL_FAIL(DACL_EINVAL, "case %s of the %s split has no label map to score against",
                             e->split->cases[i].id, split);
    for (int i = 0; i < e->ds->n_labels; i++)
        if (e->ds->labels[i].value >= classes)
            return DACL_FAIL(DACL_EINVAL,
                             "dataset %s has label '%s' = %d; the model predicts classes 0..%d",
                             e->ds->name, e->ds->labels[i].name, e->ds->labels[i].value,
                             classes - 1);
    return DACL_OK;
}

/* Per class: the mean over cases (dacl_metrics_mean's rules, with cases in
 * place of classes); then the mean of those over classes. */
static int summarise(Eval *e) {
    int n = e->split->n;
    DaclClassMetrics *col = malloc((size_t)n * sizeof *col);
    if (!col) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    int total_missing = 0;
    for (int k = 0; k < e->nc; k++) {
        for (int i = 0; i < n; i++) col[i] = e->m[(size_t)i * e->nc + k];
        DaclMetricsMean mm;
        dacl_metrics_mean(col, n, &mm);
        e->cls[k] = (DaclClassMetrics){.dice = mm.dice, .jaccard = mm.jaccard, .hd95 = mm.hd95,
                                       .asd = mm.asd, .assd = mm.assd,
                                       .distances_defined = mm.distances_defined > 0};
        e->missing[k] = mm.distances_undefined;
        total_missing += mm.distances_undefined;
    }
    free(col);
    dacl_metrics_mean(e->cls, e->nc, &e->overall);
    e->overall.distances_undefined = total_missing;
    return DACL_OK;
}

/* ---------------------------------------------------------------- table -- */

static void print_scores(const char *who, const char *cls, double dice, double jac, double hd95,
                         double asd, int defined, int idw) {
    printf("%-*s  %-14s %7.4f  %7.4f", idw, who, cls, dice, jac);
    if (defined)
        printf("  %8.3f  %8.3f\n", hd95, asd);
    else
        printf("  %8s  %8s\n", "-", "-");
}

static void class_label(const DaclDataset *ds, int c, char *buf, size_t n) {
    const char *name = class_name(ds, c);
    snprintf(buf, n, "%d%s%.12s", c, name ? " " : "", name ? name : "");
}

static void print_table(const Eval *e, const char *ckpt, const char *split, int mm) {
    int idw = 4;
    for (int i = 0; i < e->split->n; i++) {
        int l = (int)strlen(e->split->cases[i].id);
        if (l > idw) idw = l;
    }
    printf("%s on %s (%s split, %d cases); distances in %s\n\n", ckpt, e->ds->name, split,
           e->split->n, mm ? "mm" : "voxels");
    printf("%-*s  %-14s %7s  %7s  %8s  %8s\n", idw, "case", "class", "dice", "jaccard", "hd95",
           "asd");
    char cl[32];
    for (int i = 0; i < e->split->n; i++) {
        const DaclClassMetrics *m = e->m + (size_t)i * e->nc;
        for (int k = 0; k < e->nc; k++) {
            class_label(e->ds, k + 1, cl, sizeof cl);
            print_scores(k ? "" : e->split->cases[i].id, cl, m[k].dice, m[k].jaccard, m[k].hd95,
                         m[k].asd, m[k].distances_defined, idw);
        }
        DaclMetricsMean cm;
        dacl_metrics_mean(m, e->nc, &cm);
        print_scores("", "mean", cm.dice, cm.jaccard, cm.hd95, cm.asd, cm.distances_defined > 0,
                     idw);
    }
    printf("\n");
    for (int k = 0; k < e->nc; k++) {
        class_label(e->ds, k + 1, cl, sizeof cl);
        print_scores(k ? "" : "mean", cl, e->cls[k].dice, e->cls[k].jaccard, e->cls[k].hd95,
                     e->cls[k].asd, e->cls[k].distances_defined, idw);
    }
    print_scores("", "mean", e->overall.dice, e->overall.jaccard, e->overall.hd95, e->overall.asd,
                 e->overall.distances_defined > 0, idw);
    if (e->overall.distances_undefined)
        printf("\n%d case-class pairs had no HD95/ASD (class missing in the prediction or the "
               "truth); means skip them\n",
               e->overall.distances_undefined);
}

/* ----------------------------------------------------------------- JSON -- */

static int print_json(const Eval *e, const char *ckpt, const char *split, int mm) {
    cJSON *root = cJSON_CreateObject(), *cases = NULL, *names = NULL, *mean = NULL;
    int ok = root && cJSON_AddStringToObject(root, "checkpoint", ckpt) &&
             cJSON_AddStringToObject(root, "dataset", e->ds->name) &&
             cJSON_AddStringToObject(root, "split", split) &&
             cJSON_AddStringToObject(root, "units", mm ? "mm" : "voxels") &&
             (names = cJSON_AddObjectToObject(root, "class_names")) &&
             (cases = cJSON_AddArrayToObject(root, "cases"));
    for (int k = 0; ok && k < e->nc; k++) {
        const char *name = class_name(e->ds, k + 1);
        char key[16];
        snprintf(key, sizeof key, "%d", k + 1);
        ok = !name || cJSON_AddStringToObject(names, key, name);
    }
    for (int i = 0; ok && i < e->split->n; i++) {
        /* {"id"} then the "classes" and "mean" of the metrics' own JSON */
        cJSON *c = cJSON_CreateObject(), *scores = NULL;
        ok = c && cJSON_AddStringToObject(c, "id", e->split->cases[i].id) &&
             dacl_metrics_to_json(e->m + (size_t)i * e->nc, e->nc, NULL, &scores) == DACL_OK &&
             cJSON_AddItemToObject(c, "classes", cJSON_DetachItemFromObject(scores, "classes")) &&
             cJSON_AddItemToObject(c, "mean", cJSON_DetachItemFromObject(scores, "mean")) &&
             cJSON_AddItemToArray(cases, c);
        cJSON_Delete(scores);
        if (!ok) cJSON_Delete(c);
    }
    if (ok) ok = dacl_metrics_to_json(e->cls, e->nc, &e->overall, &mean) == DACL_OK;
    if (ok && !cJSON_AddItemToObject(root, "mean", mean)) {
        cJSON_Delete(mean);
        ok = 0;
    }
    cJSON *per = ok ? cJSON_GetObjectItemCaseSensitive(mean, "classes") : NULL;
    for (int k = 0; ok && k < e->nc; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k + 1);
        ok = cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(per, key),
                                     "distances_missing", e->missing[k]) != NULL;
    }
    char *s = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!s) return DACL_FAIL(DACL_ENOMEM, "evaluate: out of memory building the JSON");
    puts(s);
    free(s);
    return DACL_OK;
}

/* ----------------------------------------------------------- evaluate -- */

int cmd_evaluate(int argc, char **argv) {
    const char *ckpt = NULL, *dir = NULL, *split = NULL;
    long threads = 1;
    int json = 0, mm = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            evaluate_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        } else if (!strcmp(a, "--mm")) {
            mm = 1;
            continue;
        } else if (!strcmp(a, "--checkpoint") && v) {
            ckpt = v;
        } else if (!strcmp(a, "--dataset") && v) {
            dir = v;
        } else if (!strcmp(a, "--split") && v) {
            split = v;
        } else if (!strcmp(a, "--threads") && v) {
            rc = cli_parse_long(a, v, 1, 1024, &threads);
        } else {
            fprintf(stderr, "dacld evaluate: unknown option or missing value: %s\n", a);
            evaluate_usage(stderr);
            return 2;
        }
        if (rc) return 2;
        i++;
    }
    if (!ckpt || !dir || !split) {
        fprintf(stderr, "dacld evaluate: needs --checkpoint, --dataset and --split\n");
        evaluate_usage(stderr);
        return 2;
    }
    if (strcmp(split, "val") && strcmp(split, "test")) {
        fprintf(stderr, "dacld evaluate: --split is val or test, not '%s'\n", split);
        return 2;
    }
    DaclDataset ds = {0};
    CliModel cm = {0};
    Eval e = {.ds = &ds};
    int progress = !json && isatty(STDERR_FILENO);
    int rc = dacl_dataset_load(dir, &ds);
    if (rc == DACL_OK) {
        e.split = strcmp(split, "val") ? &ds.test : &ds.val;
        rc = cli_model_open(ckpt, (int)threads, (int)threads, &cm);
    }
    if (rc == DACL_OK) {
        int classes = dacl_unet_config(cm.model)->classes;
        e.nc = classes - 1;
        rc = check_split(&e, split, classes);
    }
    if (rc == DACL_OK) {
        e.m = calloc((size_t)e.split->n * e.nc, sizeof *e.m);
        e.cls = calloc((size_t)e.nc, sizeof *e.cls);
        e.missing = calloc((size_t)e.nc, sizeof *e.missing);
        if (!e.m || !e.cls || !e.missing) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    for (int i = 0; rc == DACL_OK && i < e.split->n; i++) {
        rc = dacl_eval_case(cm.model, &ds, &e.split->cases[i], mm, e.m + (size_t)i * e.nc, NULL);
        if (rc == DACL_OK && progress) fprintf(stderr, "\r%d/%d cases", i + 1, e.split->n);
    }
    if (progress && e.split && e.split->n) fprintf(stderr, "\n");
    if (rc == DACL_OK) rc = summarise(&e);
    if (rc == DACL_OK && json) rc = print_json(&e, ckpt, split, mm);
    if (rc == DACL_OK && !json) print_table(&e, ckpt, split, mm);
    if (rc) fprintf(stderr, "dacld evaluate: %s\n", dacl_error_message());
    free(e.m);
    free(e.cls);
    free(e.missing);
    cli_model_close(&cm);
    dacl_dataset_free(&ds);
    return rc ? 1 : 0;
}
