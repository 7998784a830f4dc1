/* Volume helpers: format names, allocation, intensity normalisation, shape checks, dispatch. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_data_util.h"

static void test_formats(void **state) {
    (void)state;
    assert_int_equal(dacl_format_from_path("a/b.h5"), DACL_FMT_H5);
    assert_int_equal(dacl_format_from_path("B.HDF5"), DACL_FMT_H5);
    assert_int_equal(dacl_format_from_path("x.nii"), DACL_FMT_NIFTI);
    assert_int_equal(dacl_format_from_path("x.Nii.Gz"), DACL_FMT_NIFTI);
    assert_int_equal(dacl_format_from_path("x.png"), DACL_FMT_PNG);
    assert_int_equal(dacl_format_from_path("x.gz"), DACL_FMT_UNKNOWN);
    assert_int_equal(dacl_format_from_path("h5"), DACL_FMT_UNKNOWN);
    for (int f = DACL_FMT_H5; f <= DACL_FMT_PNG; f++)
        assert_int_equal(dacl_format_parse(dacl_format_name((DaclFormat)f)), f);
    assert_int_equal(dacl_format_parse("nii"), DACL_FMT_UNKNOWN);
}

static void test_alloc(void **state) {
    (void)state;
    DaclVolume v = {0};
    assert_int_equal(dacl_volume_alloc(&v, 2, 3, 4), DACL_OK);
    assert_int_equal(dacl_volume_numel(&v), 24);
    for (int i = 0; i < 24; i++) assert_float_equal(v.data[i], 0, 0);
    float *keep = v.data;
    assert_int_equal(dacl_volume_alloc(&v, 0, 3, 4), DACL_EINVAL);
    assert_int_equal(dacl_volume_alloc(&v, 70000, 70000, 1), DACL_EINVAL);
    assert_ptr_equal(v.data, keep); /* a failed alloc keeps what was there */
    dacl_volume_free(&v);
    dacl_volume_free(&v);
    assert_null(v.data);
    DaclLabelVolume l = {0};
    assert_int_equal(dacl_label_alloc(&l, 1, 1, 5), DACL_OK);
    assert_int_equal(dacl_label_numel(&l), 5);
    dacl_label_free(&l);
}

static void test_normalize(void **state) {
    (void)state;
    DaclVolume v = {0};
    assert_int_equal(dacl_volume_alloc(&v, 1, 1, 5), DACL_OK);
    const DaclIntensity mri = {.minmax = 1}, ct = {.clip = 1, .clip_lo = -75, .clip_hi = 275, .minmax = 1},
                        clip_only = {.clip = 1, .clip_lo = -75, .clip_hi = 275};
    const float in[5] = {-1000, -75, 100, 275, 3000};
    memcpy(v.data, in, sizeof in);
    assert_int_equal(dacl_volume_normalize(&v, &ct), DACL_OK);
    const float want_ct[5] = {0, 0, 0.5f, 1, 1};
    for (int i = 0; i < 5; i++) assert_float_equal(v.data[i], want_ct[i], 1e-6);
    memcpy(v.data, in, sizeof in);
    assert_int_equal(dacl_volume_normalize(&v, &clip_only), DACL_OK);
    assert_float_equal(v.data[0], -75, 0), assert_float_equal(v.data[4], 275, 0);
    const float mr[5] = {2, 4, 6, 4, 2};
    memcpy(v.data, mr, sizeof mr);
    assert_int_equal(dacl_volume_normalize(&v, &mri), DACL_OK);
    assert_float_equal(v.data[0], 0, 0), assert_float_equal(v.data[1], 0.5, 1e-6), assert_float_equal(v.data[2], 1, 0);
    for (int i = 0; i < 5; i++) v.data[i] = 7;
    assert_int_equal(dacl_volume_normalize(&v, &mri), DACL_OK);
    for (int i = 0; i < 5; i++) assert_float_equal(v.data[i], 0, 0);
    v.data[3] = NAN;
    assert_fails(dacl_volume_normalize(&v, &mri), DACL_ENUMERIC, "non-finite");
    dacl_volume_free(&v);
}

static void test_pairs_and_geometry(void **state) {
    (void)state;
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_volume_alloc(&img, 2, 3, 4), DACL_OK);
    assert_int_equal(dacl_label_alloc(&lab, 2, 4, 3), DACL_OK);
    assert_fails(dacl_volume_check_pair(&img, &lab, "img.nii", "lab.nii"), DACL_EFORMAT, "lab.nii");
    assert_non_null(strstr(dacl_error_message(), "img.nii"));
    assert_fails(dacl_label_copy_geometry(&lab, &img), DACL_EINVAL, "differ in shape");
    assert_int_equal(dacl_label_alloc(&lab, 2, 3, 4), DACL_OK);
    assert_int_equal(dacl_volume_check_pair(&img, &lab, "a", "b"), DACL_OK);
    img.spacing[0] = 8, img.spacing[1] = img.spacing[2] = 1.5, img.has_spacing = 1, img.format = DACL_FMT_PNG;
    assert_int_equal(dacl_label_copy_geometry(&lab, &img), DACL_OK);
    assert_true(lab.has_spacing);
    assert_float_equal(lab.spacing[0], 8, 0);
    assert_int_equal(lab.format, DACL_FMT_PNG);
    assert_null(lab.nifti);
    /* no format known: neither the path nor the volumes say which */
    lab.format = DACL_FMT_UNKNOWN;
    assert_fails(dacl_label_write("/tmp/out.bin", &lab, NULL), DACL_EFORMAT, "/tmp/out.bin");
    assert_fails(dacl_volume_load("notes.txt", &img), DACL_EFORMAT, "unknown file type");
    assert_fails(dacl_label_load("notes.txt", &lab), DACL_EFORMAT, "notes.txt");
    dacl_volume_free(&img);
    dacl_label_free(&lab);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_pairs_and_geometry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
