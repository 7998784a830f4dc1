/* Volume inference against a per-slice computation written out here (resize
 * to the patch, forward, argmax, resize back), its independence of the thread
 * count, intensity handling, geometry through a NIfTI round trip, scoring a
 * dataset case, the model metadata, and the predict / evaluate commands on
 * model files and training checkpoints. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <nifti2_io.h>
/* nifti1.h and <dirent.h> (in test_data_util.h) both name DT_UNKNOWN; we use neither */
#undef DT_UNKNOWN

#include "dacl/eval.h"
#include "dacl/train.h"
#include "test_data_util.h"
#include "test_unet_util.h"

#define NC 4
#define P 32 /* the tiny model's patch */
#define NZ 5
#define NY 37
#define NX 29

/* ------------------------------------------------------------ helpers -- */

#define assert_ok(expr)                                                                   \
    do {                                                                                  \
        int rc_ = (expr);                                                                 \
        if (rc_ != DACL_OK) fail_msg("%s: %s", #expr, dacl_error_message());              \
    } while (0)

/* scipy.ndimage.zoom(order=0) source index for output o, or -1 where the
 * coordinate overshoots in - 1 by rounding and scipy fills with 0. */
static int src_index(int o, int out, int in) {
    double z = out > 1 ? (double)(in - 1) / (double)(out - 1) : 1.0;
    double c = o * z;
    return c > in - 1 ? -1 : (int)floor(c + 0.5);
}

/* row-major (ih, iw) -> (oh, ow) through src_index */
#define ZOOM(dst, oh, ow, src, ih, iw)                                                     \
    for (int i_ = 0; i_ < (oh); i_++)                                                     \
        for (int j_ = 0; j_ < (ow); j_++) {                                               \
            int si_ = src_index(i_, (oh), (ih)), sj_ = src_index(j_, (ow), (iw));         \
            (dst)[i_ * (ow) + j_] = si_ < 0 || sj_ < 0 ? 0 : (src)[si_ * (iw) + sj_];      \
        }

/* A smooth volume in [0, 1] with structure at several scales. */
static void make_volume(DaclVolume *v, int nz, int ny, int nx) {
    assert_ok(dacl_volume_alloc(v, nz, ny, nx));
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                v->data[((size_t)z * ny + y) * nx + x] =
                    (float)(0.5 + 0.5 * sin(0.31 * y + 0.7 * z) * cos(0.23 * x - 0.11 * y));
}

/* The reference: one slice at a time, each step spelled out. */
static void manual_predict(DaclUNet *m, const DaclVolume *v, uint8_t *out) {
    float x[P * P];
    uint8_t lab[P * P];
    for (int z = 0; z < v->nz; z++) {
        const float *s = v->data + (size_t)z * v->ny * v->nx;
        ZOOM(x, P, P, s, v->ny, v->nx);
        assert_ok(dacl_unet_forward(m, x, 1, 0, 0));
        const float *lg = dacl_unet_logits(m);
        for (int p = 0; p < P * P; p++) {
            int best = 0;
            for (int c = 1; c < NC; c++)
                if (lg[c * P * P + p] > lg[best * P * P + p]) best = c;
            lab[p] = (uint8_t)best;
        }
        uint8_t *o = out + (size_t)z * v->ny * v->nx;
        ZOOM(o, v->ny, v->nx, lab, P, P);
    }
}

/* Field by field: the structs have padding. NaN == NaN here. */
static void assert_same_metrics(const DaclClassMetrics *a, const DaclClassMetrics *b) {
    const double x[5] = {a->dice, a->jaccard, a->hd95, a->asd, a->assd};
    const double y[5] = {b->dice, b->jaccard, b->hd95, b->asd, b->assd};
    for (int i = 0; i < 5; i++) assert_true(x[i] == y[i] || (isnan(x[i]) && isnan(y[i])));
    assert_int_equal(a->distances_defined, b->distances_defined);
    assert_int_equal(a->pred_voxels, b->pred_voxels);
    assert_int_equal(a->gt_voxels, b->gt_voxels);
}

static int distinct_labels(const DaclLabelVolume *l) {
    int seen[256] = {0}, n = 0;
    for (size_t i = 0; i < dacl_label_numel(l); i++) n += !seen[l->data[i]]++;
    return n;
}

/* -------------------------------------------------------------- tests -- */

static void test_zoom_index(void **state) {
    (void)state;
    /* scipy.ndimage.zoom(np.arange(n), m / n, order=0) by hand: 3 -> 5 maps
     * o to o/2 with halves up, 5 -> 3 to 2o, 1 -> 4 to 0, 4 -> 1 to 0 */
    const int up[5] = {0, 1, 1, 2, 2}, down[3] = {0, 2, 4};
    for (int o = 0; o < 5; o++) assert_int_equal(src_index(o, 5, 3), up[o]);
    for (int o = 0; o < 3; o++) assert_int_equal(src_index(o, 3, 5), down[o]);
    for (int o = 0; o < 4; o++) assert_int_equal(src_index(o, 4, 1), 0);
    assert_int_equal(src_index(0, 1, 4), 0);
}

static void test_matches_manual(void **state) {
    (void)state;
    DaclUNet *m = tiny_unet(3, 1, NC, 2, P, P); /* 5 slices: batches of 2, 2, 1 */
    DaclVolume v = {0};
    make_volume(&v, NZ, NY, NX);
    v.spacing[0] = 5.0, v.spacing[1] = 1.25, v.spacing[2] = 1.5, v.has_spacing = 1;
    DaclLabelVolume pred = {0};
    assert_ok(dacl_infer_volume(m, &v, NULL, &pred));
    assert_int_equal(pred.nz, NZ);
    assert_int_equal(pred.ny, NY);
    assert_int_equal(pred.nx, NX);
    assert_int_equal(pred.has_spacing, 1);
    assert_memory_equal(pred.spacing, v.spacing, sizeof v.spacing);
    for (size_t i = 0; i < dacl_label_numel(&pred); i++) assert_true(pred.data[i] < NC);
    assert_true(distinct_labels(&pred) >= 2); /* the comparison below means something */

    uint8_t *want = malloc(dacl_label_numel(&pred));
    assert_non_null(want);
    manual_predict(m, &v, want);
    assert_memory_equal(pred.data, want, dacl_label_numel(&pred));

    /* a slice already at the patch size is not resampled at all */
    DaclVolume sq = {0};
    DaclLabelVolume sp = {0};
    make_volume(&sq, 1, P, P);
    assert_ok(dacl_infer_volume(m, &sq, NULL, &sp));
    manual_predict(m, &sq, want);
    assert_memory_equal(sp.data, want, P * P);
    free(want);
    dacl_volume_free(&sq);
    dacl_label_free(&sp);
    dacl_volume_free(&v);
    dacl_label_free(&pred);
    dacl_unet_free(m);
}

static void test_threads_and_repeats(void **state) {
    (void)state;
    DaclUNet *m = tiny_unet(5, 1, NC, 3, P, P);
    DaclVolume v = {0};
    make_volume(&v, NZ, NY, NX);
    DaclLabelVolume a = {0}, b = {0};
    assert_ok(dacl_infer_volume(m, &v, NULL, &a));
    assert_ok(dacl_infer_volume(m, &v, NULL, &b)); /* reuses b's shape */
    assert_memory_equal(a.data, b.data, dacl_label_numel(&a));
    for (int t = 2; t <= 3; t++) {
        DaclPool *pool;
        assert_ok(dacl_pool_create(&pool, t));
        assert_ok(dacl_unet_set_pool(m, pool));
        assert_ok(dacl_infer_volume(m, &v, NULL, &b));
        assert_memory_equal(a.data, b.data, dacl_label_numel(&a));
        assert_ok(dacl_unet_set_pool(m, NULL));
        dacl_pool_free(pool);
    }
    dacl_volume_free(&v);
    dacl_label_free(&a);
    dacl_label_free(&b);
    dacl_unet_free(m);
}

static void test_intensity(void **state) {
    (void)state;
    DaclUNet *m = tiny_unet(7, 1, NC, 2, P, P);
    DaclVolume raw = {0}, norm = {0};
    make_volume(&raw, NZ, NY, NX);
    for (size_t i = 0; i < dacl_volume_numel(&raw); i++) raw.data[i] = raw.data[i] * 400.0f - 150.0f;
    make_volume(&norm, NZ, NY, NX);
    memcpy(norm.data, raw.data, dacl_volume_numel(&raw) * sizeof(float));
    DaclIntensity ct = {.clip = 1, .clip_lo = -75.0, .clip_hi = 275.0, .minmax = 1};
    assert_ok(dacl_volume_normalize(&norm, &ct));

    DaclLabelVolume a = {0}, b = {0};
    assert_ok(dacl_infer_volume(m, &raw, &ct, &a));
    assert_ok(dacl_infer_volume(m, &norm, NULL, &b));
    assert_memory_equal(a.data, b.data, dacl_label_numel(&a));
    assert_true(raw.data[0] == (float)(0.5 + 0.5 * sin(0.0) * cos(0.0)) * 400.0f - 150.0f);

    /* a NaN is refused and the output kept */
    raw.data[17] = NAN;
    DaclLabelVolume before = a;
    assert_int_equal(dacl_infer_volume(m, &raw, &ct, &a), DACL_ENUMERIC);
    assert_memory_equal(&a, &before, sizeof a);
    dacl_volume_free(&raw);
    dacl_volume_free(&norm);
    dacl_label_free(&a);
    dacl_label_free(&b);
    dacl_unet_free(m);
}

static void test_refusals(void **state) {
    (void)state;
    DaclUNet *m2 = tiny_unet(9, 2, NC, 1, P, P);
    DaclVolume v = {0};
    make_volume(&v, 2, 20, 20);
    DaclLabelVolume pred = {0};
    assert_ok(dacl_label_alloc(&pred, 1, 2, 3));
    DaclLabelVolume before = pred;
    assert_fails(dacl_infer_volume(m2, &v, NULL, &pred), DACL_EINVAL, "input channels");
    assert_memory_equal(&pred, &before, sizeof pred);
    assert_fails(dacl_infer_volume(m2, NULL, NULL, &pred), DACL_EINVAL, "");
    dacl_label_free(&pred);
    dacl_volume_free(&v);
    dacl_unet_free(m2);
}

/* A scanner-like NIfTI-1 input as nibabel writes one: int16 (NZ, NY, NX),
 * values 0..200, dim[4..7] = 1, spacing (3, 0.75, 0.5) mm, an sform. */
static const float SROW[12] = {-0.5f, 0, 0, 12.5f, 0, 0.75f, 0, -20.25f, 0, 0, 3.0f, 7.0f};

static void write_nifti_input(const char *path) {
    nifti_1_header h;
    memset(&h, 0, sizeof h);
    h.sizeof_hdr = 348;
    memcpy(h.magic, "n+1", 4);
    h.datatype = DT_INT16, h.bitpix = 16;
    const short dim[8] = {3, NX, NY, NZ, 1, 1, 1, 1};
    memcpy(h.dim, dim, sizeof dim);
    h.pixdim[0] = 1.0f, h.pixdim[1] = 0.5f, h.pixdim[2] = 0.75f, h.pixdim[3] = 3.0f;
    h.vox_offset = 352;
    h.sform_code = 1;
    memcpy(h.srow_x, SROW, 16), memcpy(h.srow_y, SROW + 4, 16), memcpy(h.srow_z, SROW + 8, 16);
    h.xyzt_units = NIFTI_UNITS_MM;
    const size_t n = (size_t)NZ * NY * NX;
    unsigned char *buf = calloc(352 + 2 * n, 1);
    assert_non_null(buf);
    memcpy(buf, &h, sizeof h); /* then 4 zero bytes: no extensions */
    int16_t *px = (int16_t *)(buf + 352);
    for (size_t i = 0; i < n; i++) px[i] = (int16_t)(100.0 + 100.0 * sin(0.05 * (double)i));
    write_file(path, buf, 352 + 2 * n);
    free(buf);
}

static void test_nifti_geometry(void **state) {
    TmpFx *fx = *state;
    char in[256], out[256];
    PATH(in, fx->dir, "in.nii");
    PATH(out, fx->dir, "out.nii.gz");
    write_nifti_input(in);
    DaclVolume img = {0};
    assert_ok(dacl_volume_load(in, &img));
    assert_non_null(img.nifti);
    DaclUNet *m = tiny_unet(11, 1, NC, 4, P, P);
    DaclIntensity mm = {.minmax = 1};
    DaclLabelVolume pred = {0}, back = {0};
    assert_ok(dacl_infer_volume(m, &img, &mm, &pred));
    assert_int_equal(pred.format, DACL_FMT_NIFTI);
    assert_non_null(pred.nifti);
    assert_ok(dacl_label_write(out, &pred, &img));
    assert_ok(dacl_label_load(out, &back));
    assert_int_equal(back.nz, NZ);
    assert_int_equal(back.ny, NY);
    assert_int_equal(back.nx, NX);
    assert_memory_equal(back.data, pred.data, dacl_label_numel(&pred));
    assert_int_equal(back.has_spacing, 1);
    const double want[3] = {3.0, 0.75, 0.5};
    for (int i = 0; i < 3; i++) assert_float_equal(back.spacing[i], want[i], 1e-6);
    /* the orientation too: the output lines up with the input in world space */
    nifti_image *nim = nifti_image_read(out, 0);
    assert_non_null(nim);
    assert_int_equal(nim->sform_code, 1);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) assert_float_equal(nim->sto_xyz.m[r][c], SROW[4 * r + c], 1e-6);
    nifti_image_free(nim);
    dacl_volume_free(&img);
    dacl_label_free(&pred);
    dacl_label_free(&back);
    dacl_unet_free(m);
}

/* A dataset folder: manifest + c1 (val) and c0 (train), NIfTI, 4 labels. */
static void write_dataset(const char *dir) {
    char p[256];
    const char *names[4] = {"img0.nii", "lab0.nii.gz", "img1.nii", "lab1.nii.gz"};
    for (int k = 0; k < 4; k++) {
        PATH(p, dir, names[k]);
        if (k % 2 == 0) {
            write_nifti_input(p);
            continue;
        }
        DaclLabelVolume l = {0};
        assert_ok(dacl_label_alloc(&l, NZ, NY, NX));
        for (int z = 0; z < NZ; z++)
            for (int y = 0; y < NY; y++)
                for (int x = 0; x < NX; x++)
                    l.data[((size_t)z * NY + y) * NX + x] =
                        (uint8_t)((y - 18) * (y - 18) + (x - 14) * (x - 14) < 100 - 10 * z
                                      ? 1 + (x + z) % 3
                                      : 0);
        l.spacing[0] = 3.0, l.spacing[1] = 0.75, l.spacing[2] = 0.5, l.has_spacing = 1;
        assert_ok(dacl_nifti_write_label(p, &l, NULL));
        dacl_label_free(&l);
    }
    PATH(p, dir, DACL_MANIFEST);
    const char *json =
        "{\"name\": \"tiny\", \"modality\": \"MRI\", \"format\": \"nifti\",\n"
        " \"labels\": {\"background\": 0, \"RV\": 1, \"Myo\": 2, \"LV\": 3},\n"
        " \"splits\": {\"train\": [{\"id\": \"c0\", \"image\": \"img0.nii\", \"label\": \"lab0.nii.gz\"}],\n"
        "            \"val\": [{\"id\": \"c1\", \"image\": \"img1.nii\", \"label\": \"lab1.nii.gz\"}],\n"
        "            \"test\": [{\"id\": \"c2\", \"image\": \"img1.nii\"}]}}\n";
    write_file(p, json, strlen(json));
}

static void test_eval_case(void **state) {
    TmpFx *fx = *state;
    write_dataset(fx->dir);
    DaclDataset ds = {0};
    assert_ok(dacl_dataset_load(fx->dir, &ds));
    DaclUNet *m = tiny_unet(13, 1, NC, 2, P, P);
    DaclClassMetrics got[NC - 1], want[NC - 1];
    DaclLabelVolume pred = {0};
    for (int mm = 0; mm <= 1; mm++) {
        assert_ok(dacl_eval_case(m, &ds, &ds.val.cases[0], mm, got, &pred));
        /* the same by hand: the dataset's loading, inference, metrics */
        DaclVolume img = {0};
        DaclLabelVolume gt = {0}, p2 = {0};
        assert_ok(dacl_dataset_load_case(&ds, &ds.val.cases[0], &img, &gt));
        assert_ok(dacl_infer_volume(m, &img, NULL, &p2));
        assert_memory_equal(pred.data, p2.data, dacl_label_numel(&p2));
        assert_int_equal(dacl_metrics_volume(p2.data, gt.data, NZ, NY, NX, mm ? img.spacing : NULL,
                                             NC, want),
                         DACL_OK);
        for (int k = 0; k < NC - 1; k++) assert_same_metrics(&got[k], &want[k]);
        dacl_volume_free(&img);
        dacl_label_free(&gt);
        dacl_label_free(&p2);
    }
    /* an unlabeled case cannot be scored */
    assert_fails(dacl_eval_case(m, &ds, &ds.test.cases[0], 0, got, NULL), DACL_EINVAL, "c2");
    dacl_label_free(&pred);
    dacl_unet_free(m);
    dacl_dataset_free(&ds);
}

static void test_meta(void **state) {
    (void)state;
    DaclIntensity in;
    assert_ok(dacl_model_meta_intensity(NULL, "m", &in));
    assert_int_equal(in.clip, 0);
    assert_int_equal(in.minmax, 1);

    const char *manifest = "{\"name\": \"abd\", \"modality\": \"CT\", \"format\": \"nifti\","
                           " \"labels\": {\"background\": 0, \"liver\": 1},"
                           " \"splits\": {\"test\": [{\"id\": \"a\", \"image\": \"a.nii\"}]}}";
    DaclDataset ds = {0};
    assert_ok(dacl_dataset_parse(manifest, "/tmp", "t", &ds));
    char *json = NULL;
    assert_ok(dacl_model_meta_from_dataset(&ds, &json));
    assert_ok(dacl_model_meta_intensity(json, "m", &in));
    assert_int_equal(in.clip, 1);
    assert_true(in.clip_lo == -75.0 && in.clip_hi == 275.0);
    assert_int_equal(in.minmax, 1);
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "dataset")->valuestring, "abd");
    assert_string_equal(cJSON_GetObjectItem(o, "modality")->valuestring, "CT");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "labels"), "liver")->valueint, 1);
    cJSON_Delete(o);
    free(json);
    dacl_dataset_free(&ds);

    assert_int_equal(dacl_model_meta_intensity("{\"intensity\": {\"clip\": null, \"minmax\": false},"
                                               " \"iteration\": 5}",
                                               "m", &in),
                     DACL_OK);
    assert_int_equal(in.clip, 0);
    assert_int_equal(in.minmax, 0);
    const char *bad[] = {"[1]", "{", "{\"intensity\": 3}", "{\"intensity\": {\"clip\": [5, 1]}}",
                         "{\"intensity\": {\"clip\": [1]}}", "{\"intensity\": {\"minmax\": 1}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        DaclIntensity keep = {.clip = 7};
        assert_fails(dacl_model_meta_intensity(bad[i], "model.dacl", &keep), DACL_EFORMAT,
                     "model.dacl");
        assert_int_equal(keep.clip, 7);
    }
}

/* ---------------------------------------------------------- the CLI -- */

#ifdef DACLD_PATH
/* Run dacld with `args`, stdout to `out` (may be NULL); its exit status. */
static int dacld(const char *args, const char *out) {
    char cmd[2048];
    assert_true(snprintf(cmd, sizeof cmd, "%s %s >%s 2>/dev/null", DACLD_PATH, args,
                         out ? out : "/dev/null") < (int)sizeof cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state) {
    TmpFx *fx = *state;
    if (access(DACLD_PATH, X_OK) != 0) skip();
    char model[256], in[256], out[256], js[256], args[1024];
    PATH(model, fx->dir, "model.dacl");
    PATH(in, fx->dir, "img1.nii");
    PATH(out, fx->dir, "pred.nii.gz");
    PATH(js, fx->dir, "eval.json");
    write_dataset(fx->dir);
    DaclUNet *m = tiny_unet(17, 1, NC, 2, P, P);
    const char *meta = "{\"intensity\": {\"clip\": [20, 180], \"minmax\": true}}";
    assert_ok(dacl_unet_save(m, model, meta));

    /* predict: the file holds what the library predicts with the model's intensity */
    snprintf(args, sizeof args, "predict --checkpoint %s --threads 2 %s %s", model, in, out);
    assert_int_equal(dacld(args, NULL), 0);
    DaclVolume img = {0};
    DaclLabelVolume pred = {0}, got = {0};
    DaclIntensity it = {.clip = 1, .clip_lo = 20, .clip_hi = 180, .minmax = 1};
    assert_ok(dacl_volume_load(in, &img));
    assert_ok(dacl_infer_volume(m, &img, &it, &pred));
    assert_ok(dacl_label_load(out, &got));
    assert_memory_equal(got.data, pred.data, dacl_label_numel(&pred));
    assert_true(got.has_spacing && got.spacing[0] == 3.0);

    /* a training checkpoint: its best model, per-volume min-max */
    char ckpt[256];
    PATH(ckpt, fx->dir, "checkpoint-best.bin");
    DaclUNet *b = tiny_unet(19, 1, NC, 2, P, P);
    DaclUNet *pair[2] = {m, b};
    DaclCheckpoint ck = {.models = 2, .iteration = 7, .best_iteration = 5, .best_dice = 0.5,
                         .best_model = 1, .config_hash = "0123456789abcdef",
                         .config_json = (char *)"{}"};
    assert_ok(dacl_checkpoint_write(ckpt, &ck, pair));
    snprintf(args, sizeof args, "predict --checkpoint %s %s %s", ckpt, in, out);
    assert_int_equal(dacld(args, NULL), 0);
    DaclIntensity mm = {.minmax = 1};
    assert_ok(dacl_infer_volume(b, &img, &mm, &pred));
    assert_ok(dacl_label_load(out, &got));
    assert_memory_equal(got.data, pred.data, dacl_label_numel(&pred));
    dacl_unet_free(b);

    /* usage errors are 2, failures 1 */
    assert_int_equal(dacld("predict --help", NULL), 0);
    assert_int_equal(dacld("predict", NULL), 2);
    snprintf(args, sizeof args, "predict --checkpoint %s %s", model, in);
    assert_int_equal(dacld(args, NULL), 2);
    snprintf(args, sizeof args, "predict --checkpoint %s/missing.dacl %s %s", fx->dir, in, out);
    assert_int_equal(dacld(args, NULL), 1);
    snprintf(args, sizeof args, "predict --checkpoint %s %s %s", in, in, out); /* not a model */
    assert_int_equal(dacld(args, NULL), 1);

    /* evaluate --json: the library's numbers for the one val case */
    snprintf(args, sizeof args, "evaluate --checkpoint %s --dataset %s --split val --json --mm",
             model, fx->dir);
    assert_int_equal(dacld(args, js), 0);
    DaclDataset ds = {0};
    assert_ok(dacl_dataset_load(fx->dir, &ds));
    DaclClassMetrics want[NC - 1];
    assert_ok(dacl_eval_case(m, &ds, &ds.val.cases[0], 1, want, NULL));
    size_t n;
    char *text = (char *)read_file(js, &n);
    text[n] = '\0';
    cJSON *o = cJSON_Parse(text);
    assert_non_null(o);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "cases"), 0);
    assert_string_equal(cJSON_GetObjectItem(c0, "id")->valuestring, "c1");
    assert_string_equal(cJSON_GetObjectItem(o, "units")->valuestring, "mm");
    for (int k = 0; k < NC - 1; k++) {
        char key[4];
        snprintf(key, sizeof key, "%d", k + 1);
        cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "classes"), key);
        assert_float_equal(cJSON_GetObjectItem(c, "dice")->valuedouble, want[k].dice, 1e-12);
        cJSON *hd = cJSON_GetObjectItem(c, "hd95");
        if (want[k].distances_defined)
            assert_float_equal(hd->valuedouble, want[k].hd95, 1e-9);
        else
            assert_true(cJSON_IsNull(hd));
        /* one case: the overall per-class mean is that case's */
        cJSON *mc = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "mean"), "classes"), key);
        assert_float_equal(cJSON_GetObjectItem(mc, "dice")->valuedouble, want[k].dice, 1e-12);
        assert_int_equal(cJSON_GetObjectItem(mc, "distances_missing")->valueint,
                         !want[k].distances_defined);
    }
    cJSON_Delete(o);
    free(text);

    snprintf(args, sizeof args, "evaluate --checkpoint %s --dataset %s --split val", model, fx->dir);
    assert_int_equal(dacld(args, NULL), 0);
    snprintf(args, sizeof args, "evaluate --checkpoint %s --dataset %s --split train", model, fx->dir);
    assert_int_equal(dacld(args, NULL), 2);
    snprintf(args, sizeof args, "evaluate --checkpoint %s --dataset %s --split test", model, fx->dir);
    assert_int_equal(dacld(args, NULL), 1); /* c2 has no label */
    assert_int_equal(dacld("evaluate --help", NULL), 0);

    dacl_dataset_free(&ds);
    dacl_volume_free(&img);
    dacl_label_free(&pred);
    dacl_label_free(&got);
    dacl_unet_free(m);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zoom_index),
        cmocka_unit_test(test_matches_manual),
        cmocka_unit_test(test_threads_and_repeats),
        cmocka_unit_test(test_intensity),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test_setup_teardown(test_nifti_geometry, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_eval_case, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_meta),
#ifdef DACLD_PATH
        cmocka_unit_test_setup_teardown(test_cli, tmp_setup, tmp_teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
