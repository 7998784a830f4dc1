/* dacld dataset: write a manifest for a recognised folder layout (init), or summarise one (show). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "dacl/data.h"
#include "dacl/error.h"

static void dataset_usage(FILE *f) {
    fprintf(f,
            "usage: dacld dataset init DIR [--out FILE] [--force]\n"
            "       dacld dataset show DIR|FILE [--json]\n"
            "\n"
            "init  recognises the layout of DIR and writes a manifest for it:\n"
            "        SSL4MIS HDF5   volumes/<id>.h5 with train.list, val.list (, test.list)\n"
            "        nnU-Net raw    imagesTr/<case>_0000.nii.gz + labelsTr/<case>.nii.gz (+ imagesTs/)\n"
            "        flat NIfTI     images/<case>.nii.gz + labels/<case>.nii.gz\n"
            "      Layouts without a validation split get every 5th case (by name) in val.\n"
            "      Label names come from the layout or, failing that, from the label files.\n"
            "      The manifest goes to DIR/dataset.json (DIR/dacl-dataset.json for nnU-Net,\n"
            "      whose own dataset.json is left alone), or to FILE with --out (its folder must\n"
            "      exist; the manifest then points back at DIR).\n"
            "\n"
            "        --out FILE  where to write the manifest\n"
            "        --force     replace an existing manifest\n"
            "\n"
            "show  loads a manifest (a dataset folder or the file itself), checks it, and prints\n"
            "      its name, modality, format, labels and cases per split; --json prints the\n"
            "      manifest as the engine understood it.\n"
            "\n"
            "Exit status: 0 done, 1 failed (the message names the file and why), 2 bad usage.\n");
}

static int dataset_init(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    int force = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "dacld dataset init: unknown option, missing value or extra argument: %s\n", a);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "dacld dataset init: which folder? usage: dacld dataset init DIR [--out FILE] [--force]\n");
        return 2;
    }
    char msg[1024];
    if (dacl_dataset_init(dir, out, force, msg, sizeof msg) != DACL_OK) {
        fprintf(stderr, "dacld dataset init: %s%s\n", msg,
                dacl_error_code() == DACL_EEXIST && !strstr(msg, "nnU-Net") ? " (--force replaces it)" : "");
        return 1;
    }
    printf("%s\n", msg);
    return 0;
}

/* Which file dacl_dataset_load reads for `path` (see DACL_MANIFEST_ALT), for the summary. */
static void manifest_file(const char *path, char *buf, size_t n) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(buf, n, "%s", path);
        return;
    }
    snprintf(buf, n, "%s/%s", path, DACL_MANIFEST_ALT);
    if (stat(buf, &st) != 0) snprintf(buf, n, "%s/%s", path, DACL_MANIFEST);
}

static int split_labeled(const DaclSplit *s) {
    int k = 0;
    for (int i = 0; i < s->n; i++) k += s->cases[i].label != NULL;
    return k;
}

static void print_summary(const char *path, const DaclDataset *ds) {
    char file[4096];
    manifest_file(path, file, sizeof file);
    printf("dataset      %s\n", ds->name);
    printf("manifest     %s\n", file);
    printf("root         %s\n", ds->root);
    printf("modality     %s\n", ds->modality == DACL_CT ? "CT" : "MRI");
    printf("format       %s\n", dacl_format_name(ds->format));
    printf("labels      ");
    for (int i = 0; i < ds->n_labels; i++)
        printf(" %d %s%s", ds->labels[i].value, ds->labels[i].name, i + 1 < ds->n_labels ? "," : "");
    printf("\n");
    if (ds->remap.n) {
        printf("label remap ");
        for (int i = 0; i < ds->remap.n; i++) printf(" %d->%d", (int)ds->remap.pairs[i].from, ds->remap.pairs[i].to);
        printf("\n");
    }
    printf("train        %d cases, %d labeled, %d patients\n", ds->train.n, split_labeled(&ds->train),
           dacl_dataset_train_patients(ds));
    printf("val          %d cases\n", ds->val.n);
    printf("test         %d cases, %d labeled\n", ds->test.n, split_labeled(&ds->test));
    printf("label order  %d cases listed first to label\n", ds->n_label_order);
    printf("intensity    ");
    if (ds->intensity.clip) printf("clip to [%g, %g], ", ds->intensity.clip_lo, ds->intensity.clip_hi);
    printf("%s\n", ds->intensity.minmax ? "min-max to [0, 1] per volume" : "as stored");
    if (ds->has_spacing)
        printf("spacing      %g x %g x %g mm (z, y, x), overriding the files\n", ds->spacing[0], ds->spacing[1],
               ds->spacing[2]);
    else
        printf("spacing      as the files say\n");
}

static int dataset_show(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "dacld dataset show: unknown option or extra argument: %s\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "dacld dataset show: which dataset? usage: dacld dataset show DIR|FILE [--json]\n");
        return 2;
    }
    DaclDataset ds = {0};
    if (dacl_dataset_load(path, &ds) != DACL_OK) {
        fprintf(stderr, "dacld dataset show: %s\n", dacl_error_message());
        return 1;
    }
    int rc = 0;
    if (json) {
        char *text = dacl_dataset_to_json(&ds);
        if (text) {
            puts(text);
        } else {
            fprintf(stderr, "dacld dataset show: out of memory\n");
            rc = 1;
        }
        free(text);
    } else {
        print_summary(path, &ds);
    }
    dacl_dataset_free(&ds);
    return rc;
}

int cmd_dataset(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))) {
        dataset_usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            dataset_usage(stdout);
            return 0;
        }
    if (sub && !strcmp(sub, "init")) return dataset_init(argc, argv);
    if (sub && !strcmp(sub, "show")) return dataset_show(argc, argv);
    if (sub)
        fprintf(stderr, "dacld dataset: unknown action '%s' (init or show)\n", sub);
    else
        fprintf(stderr, "dacld dataset: say init or show\n");
    dataset_usage(stderr);
    return 2;
}
