/* dacld metrics: compare a predicted label map with the ground truth (Dice, Jaccard, HD95, ASD per
 * class and their means), as a table or as JSON. Definitions are eval.h's (medpy's). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dacl/data.h"
#include "dacl/error.h"
#include "dacl/eval.h"

static void metrics_usage(FILE *f) {
    fprintf(f,
            "usage: dacld metrics --pred P --gt G [--classes N] [--mm] [--json]\n"
            "\n"
            "Compares the label map P (a prediction) with G (the ground truth), voxel for voxel:\n"
            "per foreground class Dice, Jaccard, HD95 (95th percentile of the surface distances,\n"
            "both ways) and ASD (mean distance from P's surface to G's), then their means.\n"
            "Files may be NIfTI (.nii, .nii.gz), HDF5 (.h5, its `label` dataset) or PNG, chosen\n"
            "by extension; both must have the same shape.\n"
            "\n"
            "A class missing from P or from G has Dice 0 and no distances; a class missing from\n"
            "both has Dice 1 and no distances. Missing distances print as '-' (null in JSON)\n"
            "and are left out of the mean distances, which say how many were missing.\n"
            "\n"
            "  --pred P     the predicted label map\n"
            "  --gt G       the ground-truth label map\n"
            "  --classes N  number of classes including background, 2..256 (default: the\n"
            "               largest label in either file, plus one)\n"
            "  --mm         distances in mm, from G's voxel spacing (P's if G has none);\n"
            "               without it, distances are in voxels\n"
            "  --json       print {\"classes\": {\"1\": {\"dice\", \"jaccard\", \"hd95\", \"asd\"}, ...},\n"
            "               \"mean\": {...}} instead of a table\n"
            "\n"
            "Exit status: 0 done, 1 a file is missing, unreadable or does not match, 2 bad usage.\n");
}

static int max_label(const DaclLabelVolume *l) {
    int m = 0;
    size_t n = dacl_label_numel(l);
    for (size_t i = 0; i < n; i++)
        if (l->data[i] > m) m = l->data[i];
    return m;
}

/* The spacing distances are measured in: G's, else P's; a mismatch is reported, not fatal (a
 * prediction written without its input's header loses only its spacing, not its voxels). */
static int pick_spacing(const char *pp, const DaclLabelVolume *p, const char *gp, const DaclLabelVolume *g,
                        const double **sp) {
    if (!g->has_spacing && !p->has_spacing) {
        fprintf(stderr, "dacld metrics: --mm: neither %s nor %s records a voxel spacing; drop --mm for voxels\n",
                gp, pp);
        return 1;
    }
    *sp = g->has_spacing ? g->spacing : p->spacing;
    if (g->has_spacing && p->has_spacing)
        for (int a = 0; a < 3; a++)
            if (fabs(p->spacing[a] - g->spacing[a]) > 1e-4 * g->spacing[a]) {
                fprintf(stderr,
                        "dacld metrics: warning: spacings differ: %s %g x %g x %g mm, %s %g x %g x %g mm; using %s's\n",
                        pp, p->spacing[0], p->spacing[1], p->spacing[2], gp, g->spacing[0], g->spacing[1],
                        g->spacing[2], gp);
                break;
            }
    return 0;
}

static void print_distance(double v, int defined) {
    if (defined)
        printf(" %9.3f", v);
    else
        printf(" %9s", "-");
}

static void print_table(const char *pp, const char *gp, const DaclLabelVolume *g, const double *sp,
                        const DaclClassMetrics *m, int n, const DaclMetricsMean *mean) {
    printf("pred  %s\ngt    %s\nshape (Z, H, W) = (%d, %d, %d)\n", pp, gp, g->nz, g->ny, g->nx);
    if (sp)
        printf("distances in mm (spacing %g x %g x %g, z y x)\n\n", sp[0], sp[1], sp[2]);
    else
        printf("distances in voxels\n\n");
    printf("%-6s %8s %8s %9s %9s %12s %12s\n", "class", "dice", "jaccard", "hd95", "asd", "pred voxels",
           "gt voxels");
    for (int i = 0; i < n; i++) {
        printf("%-6d %8.4f %8.4f", i + 1, m[i].dice, m[i].jaccard);
        print_distance(m[i].hd95, m[i].distances_defined);
        print_distance(m[i].asd, m[i].distances_defined);
        printf(" %12lld %12lld\n", (long long)m[i].pred_voxels, (long long)m[i].gt_voxels);
    }
    printf("%-6s %8.4f %8.4f", "mean", mean->dice, mean->jaccard);
    print_distance(mean->hd95, mean->distances_defined > 0);
    print_distance(mean->asd, mean->distances_defined > 0);
    printf("   distances of %d of %d classes", mean->distances_defined, mean->classes);
    if (mean->distances_undefined) printf(", %d missing", mean->distances_undefined);
    printf("\n");
}

static int metrics_run(const char *pp, const char *gp, long classes, int mm, int json) {
    DaclLabelVolume p = {0}, g = {0};
    DaclClassMetrics *m = NULL;
    cJSON *o = NULL;
    const double *sp = NULL;
    int rc = 1;
    if (dacl_label_load(pp, &p) != DACL_OK || dacl_label_load(gp, &g) != DACL_OK) {
        fprintf(stderr, "dacld metrics: %s\n", dacl_error_message());
        goto done;
    }
    if (p.nz != g.nz || p.ny != g.ny || p.nx != g.nx) {
        fprintf(stderr, "dacld metrics: shapes differ: %s is (Z, H, W) = (%d, %d, %d), %s is (%d, %d, %d)\n", pp, p.nz,
                p.ny, p.nx, gp, g.nz, g.ny, g.nx);
        goto done;
    }
    int mp = max_label(&p), mg = max_label(&g);
    if (classes > 0 && (mp >= classes || mg >= classes)) {
        fprintf(stderr, "dacld metrics: %s holds label %d, which --classes %ld does not allow (0..%ld)\n",
                mp >= classes ? pp : gp, mp >= classes ? mp : mg, classes, classes - 1);
        goto done;
    }
    int n = classes > 0 ? (int)classes : (mp > mg ? mp : mg) + 1;
    if (n < 2) n = 2; /* all background: class 1 is reported as absent from both */
    if (mm && pick_spacing(pp, &p, gp, &g, &sp)) goto done;
    DaclMetricsMean mean;
    if (!(m = calloc((size_t)n - 1, sizeof *m))) {
        fprintf(stderr, "dacld metrics: out of memory\n");
        goto done;
    }
    if (dacl_metrics_volume(p.data, g.data, g.nz, g.ny, g.nx, sp, n, m) != DACL_OK ||
        dacl_metrics_mean(m, n - 1, &mean) != DACL_OK ||
        (json && dacl_metrics_to_json(m, n - 1, &mean, &o) != DACL_OK)) {
        fprintf(stderr, "dacld metrics: %s\n", dacl_error_message());
        goto done;
    }
    if (json) {
        char *text = cJSON_Print(o);
        if (!text) {
            fprintf(stderr, "dacld metrics: out of memory\n");
            goto done;
        }
        puts(text);
        free(text);
    } else {
        print_table(pp, gp, &g, sp, m, n - 1, &mean);
    }
    rc = 0;
done:
    cJSON_Delete(o);
    free(m);
    dacl_label_free(&p);
    dacl_label_free(&g);
    return rc;
}

int cmd_metrics(int argc, char **argv) {
    const char *pred = NULL, *gt = NULL;
    long classes = 0;
    int mm = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            metrics_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--mm")) {
            mm = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--pred") && v) {
            pred = argv[++i];
        } else if (!strcmp(a, "--gt") && v) {
            gt = argv[++i];
        } else if (!strcmp(a, "--classes") && v) {
            if (cli_parse_long(a, v, 2, 256, &classes)) return 2;
            i++;
        } else {
            fprintf(stderr, "dacld metrics: unknown option or missing value: %s\n", a);
            metrics_usage(stderr);
            return 2;
        }
    }
    if (!pred || !gt) {
        fprintf(stderr, "dacld metrics: needs --pred P and --gt G\n");
        metrics_usage(stderr);
        return 2;
    }
    return metrics_run(pred, gt, classes, mm, json);
}
