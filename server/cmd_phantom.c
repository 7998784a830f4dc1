/* dacld phantom: write a synthetic dataset (NIfTI volumes and its manifest) to a folder. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dacl/data.h"
#include "dacl/error.h"

static void phantom_usage(FILE *f) {
    fprintf(f,
            "usage: dacld phantom --kind cardiac|abdomen --cases N --out DIR [--seed S] [--size P] [--force]\n"
            "\n"
            "Writes a synthetic MRI dataset that needs no download: DIR/images/caseNNN.nii.gz,\n"
            "DIR/labels/caseNNN.nii.gz and DIR/dataset.json (the last fifth of the cases, at\n"
            "least one, in val, the rest in train), ready for training and 'dacld dataset show'.\n"
            "\n"
            "  cardiac  short-axis cine stacks like ACDC: 1 RV, 2 myocardium, 3 LV\n"
            "  abdomen  axial T2 volumes like CHAOS: 1 liver, 2 right kidney, 3 left kidney, 4 spleen\n"
            "\n"
            "Shapes, sizes, positions, intensities, bias field and Rician noise vary per case.\n"
            "The same seed gives the same files, byte for byte, and case k does not depend on N.\n"
            "\n"
            "  --kind K    cardiac or abdomen\n"
            "  --cases N   number of cases, 2..10000\n"
            "  --out DIR   output folder (created if missing; must be empty unless --force)\n"
            "  --seed S    random seed, a non-negative integer (default 0)\n"
            "  --size P    in-plane pixels, 16..1024 (default 128); the field of view stays the\n"
            "              same in mm, so this sets the resolution\n"
            "  --force     write into a non-empty DIR, replacing files of the same names\n"
            "              (nothing is deleted)\n"
            "\n"
            "Exit status: 0 written, 1 failed, 2 bad usage.\n");
}

/* A seed: a decimal integer 0..2^64-1. */
static int parse_seed(const char *val, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end || val[0] == '-') {
        fprintf(stderr, "dacld phantom: --seed expects a non-negative integer, got '%s'\n", val);
        return 2;
    }
    *out = (uint64_t)v;
    return 0;
}

int cmd_phantom(int argc, char **argv) {
    const char *kind_name = NULL, *out = NULL;
    long cases = -1, size = 128;
    uint64_t seed = 0;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            phantom_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (!strcmp(a, "--kind") && v)
            kind_name = v;
        else if (!strcmp(a, "--out") && v)
            out = v;
        else if (!strcmp(a, "--cases") && v)
            rc = cli_parse_long(a, v, 2, 10000, &cases);
        else if (!strcmp(a, "--size") && v)
            rc = cli_parse_long(a, v, 16, 1024, &size);
        else if (!strcmp(a, "--seed") && v)
            rc = parse_seed(v, &seed);
        else {
            fprintf(stderr, "dacld phantom: unknown option or missing value: %s\n", a);
            phantom_usage(stderr);
            return 2;
        }
        if (rc) return 2;
        i++;
    }
    if (!kind_name || cases < 0 || !out) {
        fprintf(stderr, "dacld phantom: needs --kind, --cases and --out\n");
        phantom_usage(stderr);
        return 2;
    }
    DaclPhantomKind kind;
    if (!dacl_phantom_kind_parse(kind_name, &kind)) {
        fprintf(stderr, "dacld phantom: unknown kind '%s' (known: cardiac, abdomen)\n", kind_name);
        return 2;
    }
    DaclPhantomOptions opt = {.size = (int)size, .force = force};
    if (dacl_phantom_write(out, kind, (int)cases, seed, &opt) != DACL_OK) {
        fprintf(stderr, "dacld phantom: %s%s\n", dacl_error_message(),
                dacl_error_code() == DACL_EEXIST ? " (--force writes into it; nothing is deleted)" : "");
        return 1;
    }
    /* report what a reader of the folder will see */
    DaclDataset ds = {0};
    if (dacl_dataset_load(out, &ds) != DACL_OK) {
        fprintf(stderr, "dacld phantom: wrote %s but cannot load it back: %s\n", out, dacl_error_message());
        return 1;
    }
    printf("wrote %s: %d train and %d val cases of the %s phantom, %ldx%ld in-plane, seed %" PRIu64 "\n", out,
           ds.train.n, ds.val.n, kind_name, size, size, seed);
    dacl_dataset_free(&ds);
    return 0;
}
