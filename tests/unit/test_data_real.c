/* The real datasets in ../shared/data: `dataset init` on ACDC (SSL4MIS HDF5) and CHAOS (flat
 * NIfTI), the paper's 3- and 7-patient labeled sets, and loading every volume. The data folders
 * are read-only, so manifests go to a temporary folder. Skips (77) when the data is absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "test_data_util.h"

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The patients (as "patientNNN") of the cases marked in labeled[], in train order, deduplicated. */
static int labeled_patients(const DaclDataset *ds, const uint8_t *labeled, char out[][16]) {
    int n = 0;
    for (int i = 0; i < ds->train.n; i++) {
        if (!labeled[i]) continue;
        int seen = 0;
        for (int j = 0; j < n; j++) seen |= strcmp(out[j], ds->train.cases[i].patient) == 0;
        if (!seen) snprintf(out[n++], 16, "%s", ds->train.cases[i].patient);
    }
    return n;
}

static int has(char list[][16], int n, const char *p) {
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], p) == 0) return 1;
    return 0;
}

static void test_acdc(void **state) {
    TmpFx *fx = *state;
    char src[512], out[256], msg[512];
    snprintf(src, sizeof src, "%s/acdc", DACL_SHARED_DATA);
    PATH(out, fx->dir, "acdc.json");
    assert_int_equal(dacl_dataset_init(src, out, 0, msg, sizeof msg), DACL_OK);
    print_message("%s\n", msg);
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(out, &ds), DACL_OK);
    assert_int_equal(ds.format, DACL_FMT_H5);
    assert_int_equal(ds.modality, DACL_MRI);
    assert_int_equal(ds.train.n, 140), assert_int_equal(ds.val.n, 20), assert_int_equal(ds.test.n, 0);
    assert_int_equal(dacl_dataset_train_patients(&ds), 70);
    assert_int_equal(ds.n_labels, 4);
    const char *names[4] = {"background", "RV", "Myo", "LV"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(ds.labels[i].name, names[i]);
        assert_int_equal(ds.labels[i].value, i);
    }
    assert_int_equal(ds.n_label_order, 140);
    assert_string_equal(ds.label_order[0], "patient099_frame01");

    /* SSL4MIS's 5 % and 10 % sets: both frames of the first 3 / 7 patients of train.list */
    uint8_t lab[140];
    char pats[70][16];
    int n;
    assert_int_equal(dacl_dataset_labeled(&ds, 3, lab, &n), DACL_OK);
    assert_int_equal(n, 6);
    assert_int_equal(labeled_patients(&ds, lab, pats), 3);
    const char *first7[7] = {"patient099", "patient038", "patient050", "patient100", "patient058", "patient021",
                             "patient049"};
    for (int i = 0; i < 3; i++) assert_true(has(pats, 3, first7[i]));
    assert_int_equal(dacl_dataset_labeled(&ds, 7, lab, &n), DACL_OK);
    assert_int_equal(n, 14);
    assert_int_equal(labeled_patients(&ds, lab, pats), 7);
    for (int i = 0; i < 7; i++) assert_true(has(pats, 7, first7[i]));
    assert_int_equal(dacl_dataset_labeled(&ds, 70, lab, &n), DACL_OK);
    assert_int_equal(n, 140);
    assert_int_equal(dacl_dataset_labeled(&ds, 71, lab, &n), DACL_EINVAL);

    /* every volume loads, in shape, normalised, with labels 0..3 */
    double t0 = seconds();
    size_t voxels = 0;
    const DaclSplit *sp[2] = {&ds.train, &ds.val};
    DaclVolume img = {0};
    DaclLabelVolume l = {0};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < sp[s]->n; i++) {
            if (dacl_dataset_load_case(&ds, &sp[s]->cases[i], &img, &l) != DACL_OK) fail_msg("%s", dacl_error_message());
            assert_true(img.nz >= 6 && img.nz <= 18);
            assert_int_equal(img.ny, l.ny), assert_int_equal(img.nx, l.nx);
            assert_false(img.has_spacing);
            float mn = 1, mx = 0;
            for (size_t k = 0; k < dacl_volume_numel(&img); k++) {
                mn = img.data[k] < mn ? img.data[k] : mn;
                mx = img.data[k] > mx ? img.data[k] : mx;
                assert_true(l.data[k] <= 3);
            }
            assert_float_equal(mn, 0, 1e-6), assert_float_equal(mx, 1, 1e-6);
            voxels += dacl_volume_numel(&img);
        }
    print_message("loaded 160 ACDC volumes (%zu voxels) in %.2f s\n", voxels, seconds() - t0);
    dacl_volume_free(&img), dacl_label_free(&l);
    dacl_dataset_free(&ds);
}

static void test_chaos(void **state) {
    TmpFx *fx = *state;
    char src[512], out[256], pred[256], msg[512];
    snprintf(src, sizeof src, "%s/chaos-t2", DACL_SHARED_DATA);
    if (access(src, R_OK) != 0) skip();
    PATH(out, fx->dir, "chaos.json");
    assert_int_equal(dacl_dataset_init(src, out, 0, msg, sizeof msg), DACL_OK);
    print_message("%s\n", msg);
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(out, &ds), DACL_OK);
    assert_int_equal(ds.format, DACL_FMT_NIFTI);
    assert_int_equal(ds.train.n, 16), assert_int_equal(ds.val.n, 4);
    assert_int_equal(ds.n_labels, 5); /* background, liver, kidneys, spleen */
    DaclVolume img = {0};
    DaclLabelVolume lab = {0}, back = {0};
    assert_int_equal(dacl_dataset_load_case(&ds, &ds.val.cases[0], &img, &lab), DACL_OK);
    assert_int_equal(img.ny, 256), assert_int_equal(img.nx, 256);
    assert_true(img.nz >= 31 && img.nz <= 40);
    assert_true(img.has_spacing);
    assert_float_equal(img.spacing[0], 7.7, 1e-5);
    assert_float_equal(img.spacing[1], 1.25, 1e-6), assert_float_equal(img.spacing[2], 1.25, 1e-6);
    /* a prediction written like its input carries the input's grid */
    PATH(pred, fx->dir, "pred.nii.gz");
    assert_int_equal(dacl_label_write(pred, &lab, &img), DACL_OK);
    assert_int_equal(dacl_label_load(pred, &back), DACL_OK);
    assert_memory_equal(back.data, lab.data, dacl_label_numel(&lab));
    assert_float_equal(back.spacing[0], 7.7, 1e-5);
    dacl_volume_free(&img), dacl_label_free(&lab), dacl_label_free(&back);
    dacl_dataset_free(&ds);
}

int main(void) {
    char probe[512];
    snprintf(probe, sizeof probe, "%s/acdc/train.list", DACL_SHARED_DATA);
    if (access(probe, R_OK) != 0) {
        printf("skipping: %s/acdc not found (the shared data is absent)\n", DACL_SHARED_DATA);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acdc, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_chaos, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
