/* Writes the seed corpus of every fuzz target into OUT/<target>/: real but
 * small inputs made with the project's own writers (phantom cases at 16 x 16,
 * a U-Net of width 2) plus a few variants the writers never produce (other
 * HDF5 and PNG types). tests/fuzz/corpus/ was made by
 *   build/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
 * and the hand-written JSON and HTTP seeds committed next to its output. The
 * output is deterministic except for the HDF5 files' timestamps (none: HDF5
 * stores none by default). */
#include <hdf5.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dacl/config.h"
#include "dacl/data.h"
#include "dacl/error.h"
#include "dacl/nn.h"
#include "dacl/train.h"

static const char *out_root;

static void check(int rc, const char *what) {
    if (rc) {
        fprintf(stderr, "make_corpus: %s: %s\n", what, dacl_error_message());
        exit(1);
    }
}

static const char *path_of(const char *target, const char *name) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", out_root, target);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", out_root, target, name);
    return p;
}

static void write_text(const char *target, const char *name, const char *text) {
    FILE *f = fopen(path_of(target, name), "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        perror(name);
        exit(1);
    }
}

/* HDF5 variants: a 2D (H, W) file with a float64 image and an int16 label, contiguous */
static void h5_variant(const char *name, const DaclVolume *img, const DaclLabelVolume *lab) {
    hid_t f = H5Fcreate(path_of("h5", name), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)img->ny, (hsize_t)img->nx};
    size_t n = (size_t)img->ny * (size_t)img->nx;
    double *d = malloc(n * sizeof *d);
    short *l = malloc(n * sizeof *l);
    for (size_t i = 0; i < n; i++) d[i] = img->data[i], l[i] = lab->data[i];
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t a = H5Dcreate2(f, "image", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t b = H5Dcreate2(f, "label", H5T_STD_I16LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0 || a < 0 || b < 0 || H5Dwrite(a, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d) < 0 ||
        H5Dwrite(b, H5T_NATIVE_SHORT, H5S_ALL, H5S_ALL, H5P_DEFAULT, l) < 0) {
        fprintf(stderr, "make_corpus: HDF5 variant failed\n");
        exit(1);
    }
    H5Dclose(a), H5Dclose(b), H5Sclose(sp), H5Fclose(f);
    free(d), free(l);
}

/* PNG variants through libpng's simplified API: 16-bit grey, grey+alpha, a colour-mapped one */
static void png_variant(const char *name, int w, int h, unsigned format, const void *px, const void *cmap,
                        int cmap_n) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w, im.height = (png_uint_32)h, im.format = format;
    im.colormap_entries = (png_uint_32)cmap_n;
    if (!png_image_write_to_file(&im, path_of("png", name), 0, px, 0, cmap)) {
        fprintf(stderr, "make_corpus: %s: %s\n", name, im.message);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    out_root = argv[1];
    mkdir(out_root, 0755);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    check(dacl_phantom_case(DACL_PHANTOM_CARDIAC, 7, 0, 16, &img, &lab), "phantom");
    /* one slice for the 2D formats, and a 3-slice stack to keep volumes small */
    DaclVolume s2 = {0}, v3 = {0};
    DaclLabelVolume l2 = {0}, l3 = {0};
    int mid = img.nz / 2, n2 = img.ny * img.nx;
    check(dacl_volume_alloc(&s2, 1, img.ny, img.nx) || dacl_label_alloc(&l2, 1, img.ny, img.nx) ||
              dacl_volume_alloc(&v3, 3, img.ny, img.nx) || dacl_label_alloc(&l3, 3, img.ny, img.nx),
          "alloc");
    memcpy(s2.data, img.data + (size_t)mid * n2, (size_t)n2 * sizeof(float));
    memcpy(l2.data, lab.data + (size_t)mid * n2, (size_t)n2);
    memcpy(v3.data, img.data + (size_t)(mid - 1) * n2, 3 * (size_t)n2 * sizeof(float));
    memcpy(l3.data, lab.data + (size_t)(mid - 1) * n2, 3 * (size_t)n2);
    v3.spacing[0] = 10, v3.spacing[1] = v3.spacing[2] = 1.5, v3.has_spacing = 1;
    l3.spacing[0] = 10, l3.spacing[1] = l3.spacing[2] = 1.5, l3.has_spacing = 1;

    /* h5 */
    check(dacl_h5_write(path_of("h5", "phantom-3x16x16.h5"), &v3, &l3), "h5");
    check(dacl_h5_write(path_of("h5", "image-only-1x16x16.h5"), &s2, NULL), "h5");
    check(dacl_h5_write(path_of("h5", "label-only-1x16x16.h5"), NULL, &l2), "h5");
    h5_variant("f64-i16-2d-contiguous.h5", &s2, &l2);

    /* nifti */
    check(dacl_nifti_write_image(path_of("nifti", "image-3x16x16.nii"), &v3, NULL), "nifti");
    check(dacl_nifti_write_image(path_of("nifti", "image-3x16x16.nii.gz"), &v3, NULL), "nifti");
    check(dacl_nifti_write_label(path_of("nifti", "label-3x16x16.nii.gz"), &l3, NULL), "nifti");
    check(dacl_nifti_write_label(path_of("nifti", "label-1x16x16.nii"), &l2, NULL), "nifti");

    /* png */
    uint8_t g8[256], rgb[256 * 3], rgba[256 * 2];
    uint16_t g16[256];
    for (int i = 0; i < n2; i++) {
        float v = s2.data[i] > 255 ? 255 : s2.data[i] < 0 ? 0 : s2.data[i];
        g8[i] = (uint8_t)v;
        g16[i] = (uint16_t)(v * 257);
        rgb[3 * i] = g8[i], rgb[3 * i + 1] = l2.data[i] * 60, rgb[3 * i + 2] = 255 - g8[i];
        rgba[2 * i] = g8[i], rgba[2 * i + 1] = 200;
    }
    check(dacl_png_write_gray(path_of("png", "gray8-16x16.png"), 16, 16, g8), "png");
    check(dacl_png_write_gray(path_of("png", "label8-16x16.png"), 16, 16, l2.data), "png");
    check(dacl_png_write_rgb(path_of("png", "rgb8-16x16.png"), 16, 16, rgb), "png");
    png_variant("gray16-16x16.png", 16, 16, PNG_FORMAT_LINEAR_Y, g16, NULL, 0);
    png_variant("gray-alpha-16x16.png", 16, 16, PNG_FORMAT_GA, rgba, NULL, 0);
    uint8_t cmap[4 * 3] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255};
    png_variant("palette-16x16.png", 16, 16, PNG_FORMAT_RGB_COLORMAP, l2.data, cmap, 4);

    /* manifest: a phantom's, and one with every optional field */
    DaclDataset ds;
    memset(&ds, 0, sizeof ds);
    char tmp[] = "/tmp/dacl-corpus-XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    DaclPhantomOptions po = {.size = 16, .force = 0};
    check(dacl_phantom_write(tmp, DACL_PHANTOM_ABDOMEN, 5, 3, &po), "phantom dataset");
    check(dacl_dataset_load(tmp, &ds), "manifest");
    free(ds.root_field);
    ds.root_field = NULL;
    char *json = dacl_dataset_to_json(&ds);
    if (!json) return 1;
    write_text("manifest", "phantom-abdomen.json", json);
    free(json);
    dacl_dataset_free(&ds);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -r '%s'", tmp);
    if (system(cmd)) return 1;

    /* checkpoint: a U-Net of width 2 for 16 x 16 patches, one model and two */
    DaclUNetConfig uc = dacl_unet_default_config(1, 4);
    for (int l = 0; l < DACL_UNET_LEVELS; l++) uc.widths[l] = 2;
    DaclUNet *m[2];
    check(dacl_unet_create(&m[0], &uc, 1, 16, 16) || dacl_unet_create(&m[1], &uc, 1, 16, 16), "unet");
    DaclJobConfig jc;
    dacl_config_defaults(&jc);
    jc.train.patch[0] = jc.train.patch[1] = 16;
    DaclCheckpoint ck;
    memset(&ck, 0, sizeof ck);
    ck.models = 1;
    ck.iteration = 5;
    ck.best_iteration = -1;
    dacl_config_hash(&jc, ck.config_hash);
    ck.config_json = "{\"method\":{\"name\":\"supervised\"},\"train\":{\"patch\":16,\"batch\":2,\"labeled_batch\":2}}";
    ck.sampler.version = DACL_SAMPLER_STATE_VERSION;
    check(dacl_checkpoint_write(path_of("checkpoint", "supervised-w2.bin"), &ck, m), "checkpoint");
    ck.models = 2;
    ck.best_iteration = 4;
    ck.best_dice = 0.5;
    ck.best_model = 1;
    ck.config_json = dacl_config_to_json(&jc);
    check(dacl_checkpoint_write(path_of("checkpoint", "two-models-w2.bin"), &ck, m), "checkpoint");
    free(ck.config_json);
    dacl_unet_free(m[0]);
    dacl_unet_free(m[1]);

    /* config: the defaults printed in full */
    char *cj = dacl_config_to_json(&jc);
    write_text("config", "full-defaults.json", cj);
    free(cj);

    dacl_volume_free(&img), dacl_volume_free(&s2), dacl_volume_free(&v3);
    dacl_label_free(&lab), dacl_label_free(&l2), dacl_label_free(&l3);
    printf("make_corpus: seeds written under %s\n", out_root);
    return 0;
}
