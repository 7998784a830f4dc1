/* dacld info: a model's size and memory plan. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dacl/error.h"
#include "dacl/nn.h"
#include "dacl/train.h"

/* ------------------------------------------------------------- info -- */

static void info_usage(FILE *f) {
    fprintf(f,
            "usage: dacld info --model unet [--in-channels N] [--classes N] [--batch N] [--patch P|HxW]\n"
            "       dacld info --checkpoint FILE\n"
            "\n"
            "With --checkpoint: the iteration, method, config hash, best validation Dice and a\n"
            "SHA-256 of every model's parameters and BN statistics (weights_sha256: equal hashes\n"
            "mean bit-identical weights).\n"
            "\n"
            "Prints, as JSON, the U-Net's parameter count and the memory a training step\n"
            "allocates (parameters, gradients, momentum, activations, workspace) for the\n"
            "given batch and patch. Defaults: 1 input channel, 4 classes, batch 24, patch 256.\n");
}

static int checkpoint_info(const char *path) {
    DaclCheckpoint ck;
    DaclUNet *models[DACL_CKPT_MAX_MODELS] = {0};
    if (dacl_checkpoint_read(path, &ck, models, 1, 0, 0)) {
        fprintf(stderr, "dacld info: %s\n", dacl_error_message());
        return 1;
    }
    char sha[65];
    dacl_checkpoint_weights_sha256(models, ck.models, sha);
    cJSON *cfg = cJSON_Parse(ck.config_json);
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "method"), "name");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "checkpoint", path);
    cJSON_AddNumberToObject(o, "iteration", (double)ck.iteration);
    cJSON_AddStringToObject(o, "method", cJSON_IsString(method) ? method->valuestring : "?");
    cJSON_AddNumberToObject(o, "models", ck.models);
    cJSON_AddStringToObject(o, "config_hash", ck.config_hash);
    cJSON_AddStringToObject(o, "weights_sha256", sha);
    if (ck.best_iteration >= 0) {
        cJSON_AddNumberToObject(o, "best_dice", ck.best_dice);
        cJSON_AddNumberToObject(o, "best_iteration", (double)ck.best_iteration);
        cJSON_AddStringToObject(o, "best_model", ck.best_model ? "b" : "a");
    } else {
        cJSON_AddNullToObject(o, "best_dice");
    }
    if (cfg) cJSON_AddItemToObject(o, "config", cfg);
    char *s = cJSON_Print(o);
    puts(s ? s : "{}");
    free(s);
    cJSON_Delete(o);
    for (int i = 0; i < ck.models; i++) dacl_unet_free(models[i]);
    dacl_checkpoint_free(&ck);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *checkpoint = NULL;
    long in_ch = 1, classes = 4, batch = 24, ph = 256, pw = 256;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            info_usage(stdout);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--model") && v)
            model = v;
        else if (!strcmp(a, "--checkpoint") && v)
            checkpoint = v;
        else if (!strcmp(a, "--in-channels") && v)
            rc = cli_parse_long(a, v, 1, 64, &in_ch);
        else if (!strcmp(a, "--classes") && v)
            rc = cli_parse_long(a, v, 2, 255, &classes);
        else if (!strcmp(a, "--batch") && v)
            rc = cli_parse_long(a, v, 1, 4096, &batch);
        else if (!strcmp(a, "--patch") && v)
            rc = cli_parse_patch(a, v, &ph, &pw);
        else {
            fprintf(stderr, "dacld info: unknown option or missing value: %s\n", a);
            info_usage(stderr);
            return 2;
        }
        if (rc) return 2;
    }
    if (checkpoint) return checkpoint_info(checkpoint);
    if (!model) {
        fprintf(stderr, "dacld info: say what to describe: --model unet or --checkpoint FILE\n");
        info_usage(stderr);
        return 2;
    }
    if (strcmp(model, "unet")) {
        fprintf(stderr, "dacld info: unknown model '%s' (known: unet)\n", model);
        return 2;
    }
    DaclUNetConfig cfg = dacl_unet_default_config((int)in_ch, (int)classes);
    DaclUNetSize sz;
    if (dacl_unet_size(&cfg, (int)batch, (int)ph, (int)pw, &sz)) {
        fprintf(stderr, "dacld info: %s\n", dacl_error_message());
        return 1;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", "unet");
    cJSON_AddNumberToObject(o, "in_channels", (double)in_ch);
    cJSON_AddNumberToObject(o, "classes", (double)classes);
    cJSON *wd = cJSON_AddArrayToObject(o, "widths");
    for (int l = 0; l < DACL_UNET_LEVELS; l++) cJSON_AddItemToArray(wd, cJSON_CreateNumber(cfg.widths[l]));
    cJSON_AddNumberToObject(o, "parameters", (double)sz.parameters);
    cJSON_AddNumberToObject(o, "batch", (double)batch);
    cJSON *p = cJSON_AddArrayToObject(o, "patch");
    cJSON_AddItemToArray(p, cJSON_CreateNumber((double)ph));
    cJSON_AddItemToArray(p, cJSON_CreateNumber((double)pw));
    cJSON *b = cJSON_AddObjectToObject(o, "bytes");
    cJSON_AddNumberToObject(b, "parameters_gradients_momentum_stats", (double)sz.param_bytes);
    cJSON_AddNumberToObject(b, "activations", (double)sz.act_bytes);
    cJSON_AddNumberToObject(b, "workspace", (double)sz.ws_bytes);
    cJSON_AddNumberToObject(b, "total", (double)sz.total_bytes);
    char *s = cJSON_Print(o);
    puts(s ? s : "{}");
    free(s);
    cJSON_Delete(o);
    return 0;
}

