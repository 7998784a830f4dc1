/* Segmentation metrics (core/eval/metrics.c) and the EDT (core/eval/edt.c):
 * hand-worked cases, the four emptiness cases, the JSON shape, and every value of
 * the scipy/medpy fixtures (tests/reference/make_metric_fixtures.py, whose header
 * documents the file formats; read here as little-endian, like the host). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dacl/error.h"
#include "dacl/eval.h"

#define FIXTURE_DIR DACL_SOURCE_DIR "/tests/reference/"

/* ---- helpers ---- */

/* cmocka's assert_float_equal compares in float; these checks need double. */
#define assert_near(got, want, tol)                                                          \
    do {                                                                                     \
        double got_ = (got), want_ = (want);                                                 \
        if (!(fabs(got_ - want_) <= (tol)))                                                  \
            fail_msg("%s = %.17g, want %.17g", #got, got_, want_);                           \
    } while (0)

/* Agreement to 1e-6, relative for values above 1 and absolute below; NaN only
 * matches NaN. Returns the difference measured that way (0 for two NaNs). */
static double rel_diff(double got, double want) {
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0.0 : INFINITY;
    double scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
    return fabs(got - want) / scale;
}

static void expect_close(double got, double want, double *worst, const char *what,
                         const char *name, int cls) {
    double d = rel_diff(got, want);
    if (d > *worst) *worst = d;
    if (d > 1e-6)
        fail_msg("%s class %d %s: got %.17g, want %.17g", name, cls, what, got, want);
}

/* The whole file in one malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            }
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

/* A bounds-checked reader over a fixture file; a short file fails the test. */
typedef struct Cursor {
    const uint8_t *p, *end;
} Cursor;

static const void *take(Cursor *c, size_t n) {
    assert_true((size_t)(c->end - c->p) >= n);
    const void *r = c->p;
    c->p += n;
    return r;
}

static int32_t take_i32(Cursor *c) {
    int32_t v;
    memcpy(&v, take(c, sizeof v), sizeof v);
    return v;
}

static double take_f64(Cursor *c) {
    double v;
    memcpy(&v, take(c, sizeof v), sizeof v);
    return v;
}

static Cursor open_fixture(const char *name, const char *magic, uint8_t **buf,
                           uint32_t *ncases) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", FIXTURE_DIR, name);
    size_t len = 0;
    *buf = slurp(path, &len);
    if (!*buf) fail_msg("cannot read %s (regenerate with make_metric_fixtures.py)", path);
    Cursor c = {*buf, *buf + len};
    assert_memory_equal(take(&c, 8), magic, 8);
    memcpy(ncases, take(&c, 4), 4);
    return c;
}

/* Dims and spacing of a fixture case; returns the spacing pointer to pass (NULL
 * for voxels). */
static const double *take_shape(Cursor *c, int dims[3], int with_classes, int *num_classes,
                                double spacing[3]) {
    for (int a = 0; a < 3; a++) dims[a] = take_i32(c);
    if (with_classes) *num_classes = take_i32(c);
    int has_sp = take_i32(c);
    for (int a = 0; a < 3; a++) spacing[a] = take_f64(c);
    return has_sp ? spacing : NULL;
}

/* ---- hand-worked cases ---- */

static void test_single_voxels_three_apart(void **state) {
    (void)state;
    uint8_t pred[1 * 1 * 8] = {0}, gt[8] = {0};
    pred[1] = 1;
    gt[4] = 1;
    DaclClassMetrics m;
    assert_int_equal(dacl_metrics_binary(pred, gt, 1, 1, 8, NULL, &m), DACL_OK);
    assert_true(m.distances_defined);
    assert_near(m.dice, 0.0, 0.0);
    assert_near(m.jaccard, 0.0, 0.0);
    assert_near(m.hd95, 3.0, 1e-12);
    assert_near(m.asd, 3.0, 1e-12);
    assert_near(m.assd, 3.0, 1e-12);

    /* the same pair three apart along z, 2.5 mm slices: 7.5 mm */
    uint8_t pz[4 * 2 * 2] = {0}, gz[16] = {0};
    pz[0 * 4 + 3] = 1;
    gz[3 * 4 + 3] = 1;
    const double sp[3] = {2.5, 0.9, 0.9};
    assert_int_equal(dacl_metrics_binary(pz, gz, 4, 2, 2, sp, &m), DACL_OK);
    assert_near(m.hd95, 7.5, 1e-12);
    assert_near(m.asd, 7.5, 1e-12);
}

static void test_identical_masks(void **state) {
    (void)state;
    enum { NZ = 5, NY = 9, NX = 10, N = NZ * NY * NX };
    uint8_t lab[N];
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)((i * 7 / 11) % 3);
    DaclClassMetrics m[2];
    assert_int_equal(dacl_metrics_volume(lab, lab, NZ, NY, NX, NULL, 3, m), DACL_OK);
    for (int c = 0; c < 2; c++) {
        assert_true(m[c].distances_defined);
        assert_near(m[c].dice, 1.0, 0.0);
        assert_near(m[c].jaccard, 1.0, 0.0);
        assert_near(m[c].hd95, 0.0, 0.0);
        assert_near(m[c].asd, 0.0, 0.0);
        assert_near(m[c].assd, 0.0, 0.0);
    }
}

/* Z = 1: the array border above and below makes every voxel surface, so a row
 * of 5 against its first voxel gives d(A→B) = 0,1,2,3,4 and d(B→A) = 0. Pooled
 * and sorted 0,0,1,2,3,4: numpy's 95th percentile sits at 4.75 → 3.75. */
static void test_flat_row_percentile(void **state) {
    (void)state;
    uint8_t pred[5] = {1, 1, 1, 1, 1}, gt[5] = {1, 0, 0, 0, 0};
    DaclClassMetrics m;
    assert_int_equal(dacl_metrics_binary(pred, gt, 1, 1, 5, NULL, &m), DACL_OK);
    assert_near(m.dice, 2.0 / 6.0, 1e-15);
    assert_near(m.jaccard, 1.0 / 5.0, 1e-15);
    assert_near(m.asd, 2.0, 1e-12);
    assert_near(m.assd, 1.0, 1e-12);
    assert_near(m.hd95, 3.75, 1e-12);
}

/* The four cases of eval.h, plus the mean that skips undefined distances. */
static void test_empty_cases(void **state) {
    (void)state;
    /* class 1: in both; 2: truth only; 3: prediction only; 4: neither */
    uint8_t pred[1 * 2 * 4] = {1, 1, 0, 0, 3, 0, 0, 0};
    uint8_t gt[8] = {1, 0, 0, 0, 0, 2, 2, 0};
    DaclClassMetrics m[4];
    assert_int_equal(dacl_metrics_volume(pred, gt, 1, 2, 4, NULL, 5, m), DACL_OK);
    assert_true(m[0].distances_defined);
    assert_near(m[0].dice, 2.0 / 3.0, 1e-15);
    /* pooled 0, 1 | 0 → sorted 0, 0, 1, index 1.9 → 0.9 */
    assert_near(m[0].hd95, 0.9, 1e-12);
    const double want_overlap[4] = {2.0 / 3.0, 0.0, 0.0, 1.0};
    for (int c = 1; c < 4; c++) {
        assert_false(m[c].distances_defined);
        assert_true(isnan(m[c].hd95) && isnan(m[c].asd) && isnan(m[c].assd));
        assert_near(m[c].dice, want_overlap[c], 0.0);
        assert_near(m[c].jaccard, want_overlap[c], 0.0);
    }
    assert_int_equal(m[3].pred_voxels + m[3].gt_voxels, 0);
    assert_int_equal(m[1].gt_voxels, 2);

    DaclMetricsMean mean;
    assert_int_equal(dacl_metrics_mean(m, 4, &mean), DACL_OK);
    assert_int_equal(mean.classes, 4);
    assert_int_equal(mean.distances_defined, 1);
    assert_int_equal(mean.distances_undefined, 3);
    assert_near(mean.dice, (2.0 / 3.0 + 1.0) / 4.0, 1e-15);
    assert_near(mean.hd95, m[0].hd95, 0.0);

    assert_int_equal(dacl_metrics_mean(m + 1, 3, &mean), DACL_OK);
    assert_int_equal(mean.distances_undefined, 3);
    assert_true(isnan(mean.hd95) && isnan(mean.asd));
}

static void test_bad_arguments(void **state) {
    (void)state;
    uint8_t a[8] = {0, 1, 2, 0, 0, 0, 0, 0}, b[8] = {0};
    DaclClassMetrics m[2];
    assert_int_equal(dacl_metrics_volume(a, b, 2, 2, 2, NULL, 2, m), DACL_EINVAL);
    assert_non_null(strstr(dacl_error_message(), "label 2"));
    assert_int_equal(dacl_metrics_volume(a, b, 2, 2, 2, NULL, 1, m), DACL_EINVAL);
    assert_int_equal(dacl_metrics_volume(a, b, 0, 2, 2, NULL, 3, m), DACL_EINVAL);
    const double bad[3] = {1.0, 0.0, 1.0};
    assert_int_equal(dacl_metrics_volume(a, b, 2, 2, 2, bad, 3, m), DACL_EINVAL);
    const double nan_sp[3] = {NAN, 1.0, 1.0};
    assert_int_equal(dacl_metrics_binary(a, b, 2, 2, 2, nan_sp, m), DACL_EINVAL);
    assert_int_equal(dacl_metrics_binary(NULL, b, 2, 2, 2, NULL, m), DACL_EINVAL);
    assert_int_equal(dacl_metrics_mean(m, 0, NULL), DACL_EINVAL);
}

static void test_json_shape(void **state) {
    (void)state;
    DaclClassMetrics m[2] = {
        {.dice = 0.5, .jaccard = 0.25, .hd95 = 3.0, .asd = 1.5, .assd = 2.0,
         .distances_defined = 1},
        {.dice = 0.0, .jaccard = 0.0, .hd95 = NAN, .asd = NAN, .assd = NAN},
    };
    cJSON *root = NULL;
    assert_int_equal(dacl_metrics_to_json(m, 2, NULL, &root), DACL_OK);
    char *s = cJSON_PrintUnformatted(root);
    assert_non_null(s);
    assert_string_equal(s, "{\"classes\":{"
                           "\"1\":{\"dice\":0.5,\"jaccard\":0.25,\"hd95\":3,\"asd\":1.5},"
                           "\"2\":{\"dice\":0,\"jaccard\":0,\"hd95\":null,\"asd\":null}},"
                           "\"mean\":{\"dice\":0.25,\"jaccard\":0.125,\"hd95\":3,\"asd\":1.5,"
                           "\"distances_missing\":1}}");
    cJSON_free(s);
    cJSON_Delete(root);
}

/* ---- the scipy/medpy fixtures ---- */

/* Class c of a label volume as a binary mask with assorted non-zero bytes, so
 * dacl_metrics_binary sees "any non-zero is foreground". */
static void binary_mask(const uint8_t *lab, size_t n, int c, uint8_t *mask) {
    for (size_t i = 0; i < n; i++) mask[i] = lab[i] == c ? (uint8_t)(1 + i % 255) : 0;
}

/* dice, jaccard, hd95, asd, assd against the fixture's five values */
static void expect_five(const double got[5], const double want[5], double *worst,
                        const char *name, int cls) {
    static const char *what[5] = {"dice", "jaccard", "hd95", "asd", "assd"};
    for (int j = 0; j < 5; j++) expect_close(got[j], want[j], worst, what[j], name, cls);
}

static void expect_class(const DaclClassMetrics *m, const double want[5], int defined,
                         double *worst, const char *name, int cls) {
    assert_int_equal(m->distances_defined, defined);
    const double got[5] = {m->dice, m->jaccard, m->hd95, m->asd, m->assd};
    expect_five(got, want, worst, name, cls);
}

static void test_metric_fixtures(void **state) {
    (void)state;
    uint8_t *buf;
    uint32_t ncases;
    Cursor c = open_fixture("metric_fixtures.bin", "DACLMF01", &buf, &ncases);
    double worst = 0.0;
    int values = 0;
    for (uint32_t k = 0; k < ncases; k++) {
        char name[33] = {0};
        memcpy(name, take(&c, 32), 32);
        int dims[3], num_classes;
        double spacing[3];
        const double *sp = take_shape(&c, dims, 1, &num_classes, spacing);
        size_t n = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
        const uint8_t *pred = take(&c, n), *gt = take(&c, n);

        DaclClassMetrics m[255];
        assert_int_equal(dacl_metrics_volume(pred, gt, dims[0], dims[1], dims[2], sp,
                                             num_classes, m),
                         DACL_OK);
        uint8_t *pm = malloc(n), *gm = malloc(n);
        assert_non_null(pm);
        assert_non_null(gm);
        for (int cls = 1; cls <= num_classes; cls++) {
            int count = take_i32(&c);
            (void)take_i32(&c);
            double want[5];
            for (int j = 0; j < 5; j++) want[j] = take_f64(&c);
            values += 5;
            if (cls == num_classes) { /* the mean record */
                DaclMetricsMean mean;
                assert_int_equal(dacl_metrics_mean(m, num_classes - 1, &mean), DACL_OK);
                assert_int_equal(mean.distances_undefined, count);
                const double got[5] = {mean.dice, mean.jaccard, mean.hd95, mean.asd,
                                       mean.assd};
                expect_five(got, want, &worst, name, 0);
                continue;
            }
            expect_class(&m[cls - 1], want, count, &worst, name, cls);
            DaclClassMetrics b;
            binary_mask(pred, n, cls, pm);
            binary_mask(gt, n, cls, gm);
            assert_int_equal(dacl_metrics_binary(pm, gm, dims[0], dims[1], dims[2], sp, &b),
                             DACL_OK);
            expect_class(&b, want, count, &worst, name, cls);
        }
        free(pm);
        free(gm);
    }
    assert_ptr_equal(c.p, c.end);
    printf("metric fixtures: %u cases, %d reference values, worst difference %.3g\n", ncases,
           values, worst);
    free(buf);
}

static void test_edt_fixtures(void **state) {
    (void)state;
    uint8_t *buf;
    uint32_t ncases;
    Cursor c = open_fixture("edt_fixtures.bin", "DACLED01", &buf, &ncases);
    double worst = 0.0;
    for (uint32_t k = 0; k < ncases; k++) {
        int dims[3];
        double spacing[3];
        const double *sp = take_shape(&c, dims, 0, NULL, spacing);
        size_t n = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
        const uint8_t *feature = take(&c, n);
        double *f = malloc(n * sizeof *f);
        void *scratch = malloc(dacl_edt_scratch_bytes(dims[0], dims[1], dims[2]));
        assert_non_null(f);
        assert_non_null(scratch);
        for (size_t i = 0; i < n; i++) f[i] = feature[i] ? 0.0 : INFINITY;
        assert_int_equal(dacl_edt_sq(f, dims[0], dims[1], dims[2], sp, scratch), DACL_OK);
        for (size_t i = 0; i < n; i++) {
            char what[64];
            snprintf(what, sizeof what, "edt voxel %zu", i);
            expect_close(sqrt(f[i]), take_f64(&c), &worst, what, "edt", (int)k);
        }
        free(f);
        free(scratch);
    }
    assert_ptr_equal(c.p, c.end);
    printf("edt fixtures: %u cases, worst difference %.3g\n", ncases, worst);
    free(buf);
}

/* ---- timing (printed, not asserted: sanitizer builds are slow) ---- */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* A 256x256x20 cardiac-like pair: a ring (class 2) around a disc (class 1) that
 * shrink towards the apex, the prediction shifted and wobbling. */
static void test_hd95_timing(void **state) {
    (void)state;
    enum { NZ = 20, NY = 256, NX = 256 };
    size_t n = (size_t)NZ * NY * NX;
    uint8_t *pred = malloc(n), *gt = malloc(n);
    assert_non_null(pred);
    assert_non_null(gt);
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                size_t i = ((size_t)z * NY + (size_t)y) * NX + (size_t)x;
                double r0 = 60.0 - 2.0 * z;
                double rg = hypot(y - 128.0, x - 120.0);
                double rp = hypot(y - 131.0, x - 118.0) + 3.0 * sin(0.3 * x + z);
                gt[i] = rg < r0 ? 1 : rg < r0 + 12.0 ? 2 : 0;
                pred[i] = rp < r0 ? 1 : rp < r0 + 10.0 ? 2 : 0;
            }
    DaclClassMetrics m[2];
    const double sp[3] = {10.0, 1.5, 1.5};
    double best_bin = INFINITY, best_vol = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_ms();
        assert_int_equal(dacl_metrics_binary(pred, gt, NZ, NY, NX, sp, m), DACL_OK);
        double t1 = now_ms();
        assert_int_equal(dacl_metrics_volume(pred, gt, NZ, NY, NX, sp, 3, m), DACL_OK);
        double t2 = now_ms();
        if (t1 - t0 < best_bin) best_bin = t1 - t0;
        if (t2 - t1 < best_vol) best_vol = t2 - t1;
    }
    assert_true(m[0].distances_defined && m[1].distances_defined);
    printf("timing 256x256x20: binary (1 class, 2 EDTs) %.1f ms; volume (2 classes) %.1f ms;"
           " hd95 = %.3f, %.3f mm\n",
           best_bin, best_vol, m[0].hd95, m[1].hd95);
    free(pred);
    free(gt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_voxels_three_apart),
        cmocka_unit_test(test_identical_masks),
        cmocka_unit_test(test_flat_row_percentile),
        cmocka_unit_test(test_empty_cases),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_metric_fixtures),
        cmocka_unit_test(test_edt_fixtures),
        cmocka_unit_test(test_hd95_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
