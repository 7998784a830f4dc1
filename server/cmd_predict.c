/* dacld predict: a label map for one volume or slice from a model file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dacl/error.h"
#include "dacl/eval.h"
#include "dacl/train.h"

static void predict_usage(FILE *f) {
    fprintf(f,
            "usage: dacld predict --checkpoint FILE [--threads T] IN OUT\n"
            "\n"
            "Segments IN (a NIfTI volume .nii/.nii.gz, an SSL4MIS HDF5 volume .h5 with an\n"
            "`image` dataset, or a PNG slice) slice by slice with the model in FILE and writes\n"
            "the label map to OUT, in the format OUT's extension names (normally IN's):\n"
            "NIfTI keeps IN's header (spacing, orientation), HDF5 gets `label` next to a copy\n"
            "of `image`, PNG an 8-bit map of class indices. The intensity is normalised as the\n"
            "model's metadata says (default: per-volume min-max).\n"
            "\n"
            "  --checkpoint FILE  a model file, or a training checkpoint (its best model;\n"
            "                     intensity then per-volume min-max)\n"
            "  --threads T        threads for the network (default 1)\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 bad usage, 4 IN could not be read.\n");
}

/* A training checkpoint starts "DACLCKPT" (core/train/checkpoint.c); a model
 * file "DACLMODL". Sniffed so that --checkpoint takes either. */
static int is_training_checkpoint(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[8];
    int yes = f && fread(magic, 1, 8, f) == 8 && memcmp(magic, "DACLCKPT", 8) == 0;
    if (f) fclose(f);
    return yes;
}

/* The model a training checkpoint recommends: the one that scored the best
 * validation, else the first. Checkpoints carry no model metadata, so the
 * intensity handling is the default (per-volume min-max). */
static int open_checkpoint(const char *path, int batch, DaclUNet **out) {
    DaclCheckpoint ck;
    DaclUNet *models[DACL_CKPT_MAX_MODELS] = {0};
    DACL_TRY(dacl_checkpoint_read(path, &ck, models, batch, 0, 0));
    int pick = ck.best_iteration >= 0 && ck.best_model >= 0 && ck.best_model < ck.models
                   ? ck.best_model
                   : 0;
    for (int i = 0; i < ck.models; i++)
        if (i != pick) dacl_unet_free(models[i]);
    if (ck.best_iteration >= 0)
        fprintf(stderr, "dacld: %s: training checkpoint, model %d of %d (best Dice %.4f at iteration %ld)\n",
                path, pick, ck.models, ck.best_dice, ck.best_iteration);
    else
        fprintf(stderr, "dacld: %s: training checkpoint at iteration %ld, model %d of %d\n", path,
                ck.iteration, pick, ck.models);
    dacl_checkpoint_free(&ck);
    *out = models[pick];
    return DACL_OK;
}

int cli_model_open(const char *path, int batch, int threads, CliModel *cm) {
    memset(cm, 0, sizeof *cm);
    int rc = is_training_checkpoint(path) ? open_checkpoint(path, batch, &cm->model)
                                          : dacl_unet_load(path, batch, 0, 0, &cm->model, &cm->meta);
    if (rc == DACL_OK && threads > 1) {
        rc = dacl_pool_create(&cm->pool, threads);
        if (rc == DACL_OK) rc = dacl_unet_set_pool(cm->model, cm->pool);
    }
    if (rc) cli_model_close(cm);
    return rc;
}

void cli_model_close(CliModel *cm) {
    dacl_unet_free(cm->model); /* before the pool it runs on */
    dacl_pool_free(cm->pool);
    free(cm->meta);
    memset(cm, 0, sizeof *cm);
}

int cmd_predict(int argc, char **argv) {
    const char *ckpt = NULL, *pos[2] = {NULL, NULL};
    long threads = 1;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            predict_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--checkpoint") && v) {
            ckpt = v;
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            if (cli_parse_long(a, v, 1, 1024, &threads)) return 2;
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "dacld predict: unknown option or missing value: %s\n", a);
            predict_usage(stderr);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "dacld predict: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!ckpt || npos != 2) {
        fprintf(stderr, "dacld predict: needs --checkpoint FILE, IN and OUT\n");
        predict_usage(stderr);
        return 2;
    }
    if (dacl_format_from_path(pos[0]) == DACL_FMT_UNKNOWN) {
        fprintf(stderr, "dacld predict: %s: not a format we read (.nii, .nii.gz, .h5, .png)\n",
                pos[0]);
        return 2;
    }
    DaclVolume img = {0};
    DaclLabelVolume pred = {0};
    CliModel cm = {0};
    DaclIntensity in;
    int rc = dacl_volume_load(pos[0], &img);
    int unreadable = rc != DACL_OK; /* status 4: the daemon tells a bad upload from its own failure */
    /* a batch per thread: the team splits a batch by image */
    int batch = (int)threads < img.nz ? (int)threads : img.nz;
    if (rc == DACL_OK) rc = cli_model_open(ckpt, batch, (int)threads, &cm);
    if (rc == DACL_OK) rc = dacl_model_meta_intensity(cm.meta, ckpt, &in);
    if (rc == DACL_OK) rc = dacl_infer_volume(cm.model, &img, &in, &pred);
    if (rc == DACL_OK) rc = dacl_label_write(pos[1], &pred, &img);
    if (rc == DACL_OK)
        printf("%s: %d x %d x %d labels (%s)\n", pos[1], pred.nz, pred.ny, pred.nx,
               dacl_format_name(dacl_format_from_path(pos[1]) != DACL_FMT_UNKNOWN
                                    ? dacl_format_from_path(pos[1])
                                    : img.format));
    else
        fprintf(stderr, "dacld predict: %s\n", dacl_error_message());
    cli_model_close(&cm);
    dacl_volume_free(&img);
    dacl_label_free(&pred);
    return rc ? (unreadable ? 4 : 1) : 0;
}
