/* HDF5 (SSL4MIS) reader and writer: round trips, type conversion, 2D files, and every kind of
 * broken file giving an error that names the file, with outputs untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hdf5.h>

#include "test_data_util.h"

/* Write one dataset of `rank` dims with memory type `mt` stored as file type `ft`. */
static void put(hid_t f, const char *name, hid_t ft, hid_t mt, int rank, const hsize_t *dims, const void *data) {
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ft, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(s);
}

static void test_round_trip(void **state) {
    TmpFx *fx = *state;
    char p[256];
    PATH(p, fx->dir, "case.h5");
    DaclVolume img = {0}, img2 = {0};
    DaclLabelVolume lab = {0}, lab2 = {0};
    make_pair(&img, &lab, 3, 5, 7);
    assert_int_equal(dacl_h5_write(p, &img, &lab), DACL_OK);
    assert_int_equal(count_entries(fx->dir), 1); /* no temporary file left */
    assert_int_equal(dacl_h5_read(p, &img2, &lab2), DACL_OK);
    assert_int_equal(img2.nz, 3), assert_int_equal(img2.ny, 5), assert_int_equal(img2.nx, 7);
    assert_int_equal(img2.format, DACL_FMT_H5);
    assert_int_equal(img2.has_spacing, 0);
    assert_memory_equal(img2.data, img.data, dacl_volume_numel(&img) * sizeof(float));
    assert_memory_equal(lab2.data, lab.data, dacl_label_numel(&lab));
    /* the generic entry points dispatch here */
    DaclLabelVolume lab3 = {0};
    assert_int_equal(dacl_label_load(p, &lab3), DACL_OK);
    assert_memory_equal(lab3.data, lab.data, dacl_label_numel(&lab));
    /* label only, as `dacld predict` writes it */
    PATH(p, fx->dir, "pred.h5");
    assert_int_equal(dacl_label_write(p, &lab, NULL), DACL_OK);
    assert_fails(dacl_volume_load(p, &img2), DACL_EFORMAT, "no dataset 'image'");
    assert_int_equal(dacl_h5_read(p, NULL, &lab3), DACL_OK);
    dacl_volume_free(&img), dacl_volume_free(&img2);
    dacl_label_free(&lab), dacl_label_free(&lab2), dacl_label_free(&lab3);
}

/* A 2D file is one slice; integer images and wider integer labels are converted. */
static void test_2d_and_conversions(void **state) {
    TmpFx *fx = *state;
    char p[256];
    PATH(p, fx->dir, "slice.h5");
    int16_t im[2][3] = {{-5, 0, 7}, {100, 200, -300}};
    int32_t lb[2][3] = {{0, 1, 2}, {3, 255, 0}};
    hsize_t dims[2] = {2, 3};
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put(f, "image", H5T_STD_I16BE, H5T_NATIVE_INT16, 2, dims, im);
    put(f, "label", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, dims, lb);
    H5Fclose(f);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_h5_read(p, &img, &lab), DACL_OK);
    assert_int_equal(img.nz, 1), assert_int_equal(img.ny, 2), assert_int_equal(img.nx, 3);
    for (int i = 0; i < 6; i++) {
        assert_float_equal(img.data[i], (&im[0][0])[i], 0);
        assert_int_equal(lab.data[i], (&lb[0][0])[i]);
    }
    dacl_volume_free(&img), dacl_label_free(&lab);
}

/* Outputs keep what they held when a read fails. */
static void assert_untouched(const DaclVolume *img, const float *data) {
    assert_ptr_equal(img->data, data);
    assert_int_equal(img->nz, 1), assert_int_equal(img->ny, 1), assert_int_equal(img->nx, 2);
}

static void test_wrong_content(void **state) {
    TmpFx *fx = *state;
    char p[256];
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_volume_alloc(&img, 1, 1, 2), DACL_OK);
    float *keep = img.data;

    /* label and image of different shapes */
    PATH(p, fx->dir, "mismatch.h5");
    float im[2 * 3 * 4] = {0};
    uint8_t lb[2 * 3 * 5] = {0};
    hsize_t di[3] = {2, 3, 4}, dl[3] = {2, 3, 5};
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put(f, "image", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, di, im);
    put(f, "label", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, dl, lb);
    H5Fclose(f);
    assert_fails(dacl_h5_read(p, &img, &lab), DACL_EFORMAT, p);
    assert_non_null(strstr(dacl_error_message(), "differ in shape"));
    assert_untouched(&img, keep);
    assert_null(lab.data);

    /* labels that are not integers in 0..255 */
    PATH(p, fx->dir, "badlabel.h5");
    float fl[4] = {0, 1, 1.5f, 2};
    int16_t il[4] = {0, 1, 256, 2};
    int8_t nl[4] = {0, -1, 0, 0};
    hsize_t d2[2] = {2, 2};
    const struct { hid_t ft, mt; const void *data; } bad[3] = {
        {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, fl}, {H5T_STD_I16LE, H5T_NATIVE_INT16, il}, {H5T_STD_I8LE, H5T_NATIVE_INT8, nl}};
    for (int k = 0; k < 3; k++) {
        f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        put(f, "label", bad[k].ft, bad[k].mt, 2, d2, bad[k].data);
        H5Fclose(f);
        assert_fails(dacl_label_load(p, &lab), DACL_EFORMAT, p);
        assert_non_null(strstr(dacl_error_message(), "not an integer in 0..255"));
        assert_null(lab.data);
    }

    /* a string dataset, a 4D dataset, a missing dataset */
    PATH(p, fx->dir, "types.h5");
    f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 4);
    char strs[4][4] = {"abc", "def", "ghi", "jkl"};
    put(f, "image", st, st, 2, d2, strs);
    H5Tclose(st);
    hsize_t d4[4] = {1, 2, 2, 2};
    uint8_t z8[8] = {0};
    put(f, "label", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, d4, z8);
    H5Fclose(f);
    assert_fails(dacl_h5_read(p, &img, NULL), DACL_EFORMAT, "not numeric");
    assert_non_null(strstr(dacl_error_message(), p));
    assert_fails(dacl_h5_read(p, NULL, &lab), DACL_EFORMAT, "4 dimensions");
    PATH(p, fx->dir, "empty.h5");
    H5Fclose(H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    assert_fails(dacl_h5_read(p, &img, &lab), DACL_EFORMAT, "no dataset 'image'");
    assert_untouched(&img, keep);
    dacl_volume_free(&img);
}

static void test_broken_files(void **state) {
    TmpFx *fx = *state;
    char good[256], p[256];
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    make_pair(&img, &lab, 4, 32, 32);
    PATH(good, fx->dir, "good.h5");
    assert_int_equal(dacl_h5_write(good, &img, &lab), DACL_OK);
    dacl_volume_free(&img), dacl_label_free(&lab);

    check_junk_files(fx->dir, "h5", dacl_volume_load, &img);
    /* cut at several points: superblock, metadata, chunk data */
    const long keep[4] = {100, 1000, 3000, -200};
    for (int k = 0; k < 4; k++) {
        PATH(p, fx->dir, "trunc.h5");
        truncate_copy(good, p, keep[k]);
        assert_fails(dacl_h5_read(p, &img, &lab), DACL_EFORMAT, p);
        assert_null(img.data);
        assert_null(lab.data);
    }
    /* a folder is not a file */
    assert_fails(dacl_h5_read(fx->dir, &img, NULL), DACL_EFORMAT, fx->dir);
}

static void test_write_errors(void **state) {
    TmpFx *fx = *state;
    char p[256];
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    make_pair(&img, &lab, 2, 3, 4);
    PATH(p, fx->dir, "no/such/dir/out.h5");
    assert_fails(dacl_h5_write(p, &img, &lab), DACL_EIO, p);
    DaclLabelVolume other = {0};
    assert_int_equal(dacl_label_alloc(&other, 2, 3, 5), DACL_OK);
    PATH(p, fx->dir, "out.h5");
    assert_fails(dacl_h5_write(p, &img, &other), DACL_EINVAL, p);
    assert_fails(dacl_label_write(p, &other, &img), DACL_EINVAL, p);
    assert_int_equal(count_entries(fx->dir), 0);
    dacl_volume_free(&img), dacl_label_free(&lab), dacl_label_free(&other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_2d_and_conversions, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_content, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_broken_files, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
