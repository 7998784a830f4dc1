/* NIfTI reader and label writer. Test files are built byte by byte here (the header structs of
 * nifti1.h/nifti2.h, zlib for .gz), not with the code under test, so the reader is checked
 * against the format rather than against itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <nifti2_io.h>
#include <zlib.h>
/* nifti1.h and <dirent.h> (in test_data_util.h) both name something DT_UNKNOWN; we use neither */
#undef DT_UNKNOWN

#include "test_data_util.h"

/* What a test file holds: (i, j, k) = (nx, ny, nz) voxels of `dt`, dim[4] = nt. */
typedef struct {
    int version; /* 1 or 2 */
    int dt, nbyper;
    int nx, ny, nz, nt;
    double slope, inter;
    int units;
    int big_endian; /* header and data byte-swapped (int16 data only) */
} Spec;

/* The orientation every test file carries, to check it survives a label write. */
static const float QUAT[6] = {0.0f, 1.0f, 0.0f, 12.5f, -20.25f, 7.0f};
static const float SROW[12] = {-0.5f, 0, 0, 12.5f, 0, 0.75f, 0, -20.25f, 0, 0, 3.0f, 7.0f};
static const float PIXDIM[4] = {-1.0f, 0.5f, 0.75f, 3.0f};

static int is_gz(const char *path) {
    size_t n = strlen(path);
    return n > 3 && strcmp(path + n - 3, ".gz") == 0;
}

/* Write header + 4-byte extension flag + data, gzip'd if the name says so. */
static void put_nifti(const char *path, const void *hdr, size_t hsize, const void *data, size_t nbytes) {
    const char ext[4] = {0, 0, 0, 0};
    if (is_gz(path)) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, hdr, (unsigned)hsize), (int)hsize);
        assert_int_equal(gzwrite(g, ext, 4), 4);
        if (nbytes) assert_int_equal(gzwrite(g, data, (unsigned)nbytes), (int)nbytes);
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(hdr, 1, hsize, f), hsize);
        assert_int_equal(fwrite(ext, 1, 4, f), 4);
        if (nbytes) assert_int_equal(fwrite(data, 1, nbytes, f), nbytes);
        fclose(f);
    }
}

static void write_nifti(const char *path, const Spec *s, const void *data) {
    size_t nbytes = (size_t)s->nx * s->ny * s->nz * (s->nt ? s->nt : 1) * s->nbyper;
    int ndim = s->nt > 1 ? 4 : 3;
    if (s->version == 2) {
        nifti_2_header h;
        memset(&h, 0, sizeof h);
        h.sizeof_hdr = 540;
        memcpy(h.magic, "n+2\0\r\n\032\n", 8);
        h.datatype = (int16_t)s->dt, h.bitpix = (int16_t)(8 * s->nbyper);
        int64_t dim[8] = {ndim, s->nx, s->ny, s->nz, s->nt ? s->nt : 1, 1, 1, 1};
        memcpy(h.dim, dim, sizeof dim);
        for (int d = 0; d < 4; d++) h.pixdim[d] = PIXDIM[d];
        h.vox_offset = 544, h.scl_slope = s->slope, h.scl_inter = s->inter;
        h.qform_code = h.sform_code = 1;
        h.quatern_b = QUAT[0], h.quatern_c = QUAT[1], h.quatern_d = QUAT[2];
        h.qoffset_x = QUAT[3], h.qoffset_y = QUAT[4], h.qoffset_z = QUAT[5];
        for (int c = 0; c < 4; c++) h.srow_x[c] = SROW[c], h.srow_y[c] = SROW[4 + c], h.srow_z[c] = SROW[8 + c];
        h.xyzt_units = s->units;
        put_nifti(path, &h, sizeof h, data, nbytes);
        return;
    }
    nifti_1_header h;
    memset(&h, 0, sizeof h);
    h.sizeof_hdr = 348;
    memcpy(h.magic, "n+1", 4);
    h.datatype = (short)s->dt, h.bitpix = (short)(8 * s->nbyper);
    short dim[8] = {(short)ndim, (short)s->nx, (short)s->ny, (short)s->nz, (short)(s->nt ? s->nt : 1), 1, 1, 1};
    memcpy(h.dim, dim, sizeof dim);
    for (int d = 0; d < 4; d++) h.pixdim[d] = PIXDIM[d];
    h.vox_offset = 352, h.scl_slope = (float)s->slope, h.scl_inter = (float)s->inter;
    h.qform_code = h.sform_code = 1;
    h.quatern_b = QUAT[0], h.quatern_c = QUAT[1], h.quatern_d = QUAT[2];
    h.qoffset_x = QUAT[3], h.qoffset_y = QUAT[4], h.qoffset_z = QUAT[5];
    memcpy(h.srow_x, SROW, 16), memcpy(h.srow_y, SROW + 4, 16), memcpy(h.srow_z, SROW + 8, 16);
    h.xyzt_units = (char)s->units;
    if (!s->big_endian) {
        put_nifti(path, &h, sizeof h, data, nbytes);
        return;
    }
    /* byte-swap header and int16 data: what a big-endian machine writes */
    swap_nifti_header(&h, 1);
    unsigned char *sw = malloc(nbytes);
    assert_non_null(sw);
    for (size_t i = 0; i < nbytes; i += 2) sw[i] = ((const unsigned char *)data)[i + 1], sw[i + 1] = ((const unsigned char *)data)[i];
    put_nifti(path, &h, sizeof h, sw, nbytes);
    free(sw);
}

/* Voxel (i, j, k) holds i + 10 j + 100 k (fits every type), stored in disk order (i fastest). */
static void *ramp(const Spec *s) {
    size_t n = (size_t)s->nx * s->ny * s->nz;
    unsigned char *buf = malloc(n * (size_t)s->nbyper);
    assert_non_null(buf);
    for (int k = 0; k < s->nz; k++)
        for (int j = 0; j < s->ny; j++)
            for (int i = 0; i < s->nx; i++) {
                size_t at = ((size_t)k * s->ny + j) * s->nx + i;
                double v = i + 10 * j + 100 * k;
                void *p = buf + at * (size_t)s->nbyper;
                switch (s->dt) {
                case DT_UINT8: *(uint8_t *)p = (uint8_t)v; break;
                case DT_INT8: *(int8_t *)p = (int8_t)v; break;
                case DT_INT16: *(int16_t *)p = (int16_t)v; break;
                case DT_UINT16: *(uint16_t *)p = (uint16_t)v; break;
                case DT_INT32: *(int32_t *)p = (int32_t)v; break;
                case DT_UINT32: *(uint32_t *)p = (uint32_t)v; break;
                case DT_INT64: *(int64_t *)p = (int64_t)v; break;
                case DT_UINT64: *(uint64_t *)p = (uint64_t)v; break;
                case DT_FLOAT32: *(float *)p = (float)v; break;
                case DT_FLOAT64: *(double *)p = v; break;
                default: fail();
                }
            }
    return buf;
}

/* Our (z, y, x) is NIfTI's (k, j, i): check every voxel and the spacing. */
static void check_ramp(const DaclVolume *v, const Spec *s, double mm) {
    assert_int_equal(v->nz, s->nz), assert_int_equal(v->ny, s->ny), assert_int_equal(v->nx, s->nx);
    double slope = s->slope != 0 ? s->slope : 1, inter = s->slope != 0 ? s->inter : 0;
    for (int z = 0; z < v->nz; z++)
        for (int y = 0; y < v->ny; y++)
            for (int x = 0; x < v->nx; x++)
                assert_float_equal(v->data[((size_t)z * v->ny + y) * v->nx + x], (x + 10 * y + 100 * z) * slope + inter, 1e-4);
    assert_true(v->has_spacing);
    assert_float_equal(v->spacing[0], 3.0 * mm, 1e-6);
    assert_float_equal(v->spacing[1], 0.75 * mm, 1e-6);
    assert_float_equal(v->spacing[2], 0.5 * mm, 1e-6);
    assert_int_equal(v->format, DACL_FMT_NIFTI);
    assert_non_null(v->nifti);
}

static void test_every_type(void **state) {
    TmpFx *fx = *state;
    const int types[10][2] = {{DT_UINT8, 1}, {DT_INT8, 1}, {DT_INT16, 2}, {DT_UINT16, 2}, {DT_INT32, 4},
                              {DT_UINT32, 4}, {DT_INT64, 8}, {DT_UINT64, 8}, {DT_FLOAT32, 4}, {DT_FLOAT64, 8}};
    char p[256];
    for (int t = 0; t < 10; t++)
        for (int variant = 0; variant < 2; variant++) {
            /* variant 1: gzip, NIfTI-2, scaled, sizes in metres; it sits next to variant 0's
             * v.nii, which must not be mistaken for it */
            Spec s = {.version = 1 + variant, .dt = types[t][0], .nbyper = types[t][1], .nx = 4, .ny = 3, .nz = 2,
                      .slope = variant ? 2.0 : 0.0, .inter = variant ? -1.5 : 7.0,
                      .units = variant ? NIFTI_UNITS_METER : NIFTI_UNITS_MM};
            PATH(p, fx->dir, variant ? "v.nii.gz" : "v.nii");
            void *data = ramp(&s);
            write_nifti(p, &s, data);
            free(data);
            DaclVolume v = {0};
            if (dacl_nifti_read(p, &v) != DACL_OK) fail_msg("type %d: %s", s.dt, dacl_error_message());
            check_ramp(&v, &s, variant ? 1000.0 : 1.0);
            dacl_volume_free(&v);
        }
}

static void test_big_endian(void **state) {
    TmpFx *fx = *state;
    char p[256];
    PATH(p, fx->dir, "be.nii");
    Spec s = {.version = 1, .dt = DT_INT16, .nbyper = 2, .nx = 5, .ny = 4, .nz = 3, .units = NIFTI_UNITS_MM,
              .big_endian = 1};
    void *data = ramp(&s);
    write_nifti(p, &s, data);
    free(data);
    DaclVolume v = {0};
    assert_int_equal(dacl_volume_load(p, &v), DACL_OK);
    check_ramp(&v, &s, 1.0);
    dacl_volume_free(&v);
}

static void test_labels(void **state) {
    TmpFx *fx = *state;
    char p[256];
    PATH(p, fx->dir, "lab.nii.gz");
    DaclLabelVolume l = {0};
    /* float64 holding integers: CHAOS stores its labels this way */
    double good[8] = {0, 1, 2, 3, 4, 0, 255, 1};
    Spec s = {.version = 1, .dt = DT_FLOAT64, .nbyper = 8, .nx = 2, .ny = 2, .nz = 2};
    write_nifti(p, &s, good);
    assert_int_equal(dacl_label_load(p, &l), DACL_OK);
    for (int i = 0; i < 8; i++) assert_int_equal(l.data[i], (int)good[i]);
    assert_int_equal(l.format, DACL_FMT_NIFTI);
    uint8_t *keep = l.data;
    const double bad[3] = {1.5, 256, -1};
    for (int b = 0; b < 3; b++) {
        double d[8] = {0, 1, 2, 3, 0, 0, 0, 0};
        d[5] = bad[b];
        write_nifti(p, &s, d);
        assert_fails(dacl_nifti_read_label(p, &l), DACL_EFORMAT, p);
        assert_non_null(strstr(dacl_error_message(), "not an integer in 0..255"));
        assert_ptr_equal(l.data, keep);
    }
    dacl_label_free(&l);
}

static void test_broken_files(void **state) {
    TmpFx *fx = *state;
    char good[256], p[256];
    DaclVolume v = {0};
    assert_int_equal(dacl_volume_alloc(&v, 1, 1, 3), DACL_OK);
    float *keep = v.data;
    Spec s = {.version = 1, .dt = DT_FLOAT32, .nbyper = 4, .nx = 16, .ny = 16, .nz = 8};
    void *data = ramp(&s);
    PATH(good, fx->dir, "good.nii");
    write_nifti(good, &s, data);

    check_junk_files(fx->dir, "nii", dacl_nifti_read, &v);
    check_junk_files(fx->dir, "nii.gz", dacl_nifti_read, &v);
    PATH(p, fx->dir, "cut.nii");
    truncate_copy(good, p, -100); /* header fine, voxel data short */
    assert_fails(dacl_nifti_read(p, &v), DACL_EFORMAT, p);
    truncate_copy(good, p, 200); /* header cut */
    assert_fails(dacl_nifti_read(p, &v), DACL_EFORMAT, p);
    PATH(p, fx->dir, "cut.nii.gz");
    write_nifti(p, &s, data);
    char full[256];
    PATH(full, fx->dir, "full.nii.gz");
    rename(p, full);
    truncate_copy(full, p, -300); /* gzip stream cut inside the data */
    assert_fails(dacl_nifti_read(p, &v), DACL_EFORMAT, p);

    /* valid files we do not take: two volumes in dim[4], complex voxels */
    PATH(p, fx->dir, "4d.nii");
    Spec s4 = s;
    s4.nt = 2, s4.nz = 4;
    write_nifti(p, &s4, data);
    assert_fails(dacl_nifti_read(p, &v), DACL_EFORMAT, "2 volumes");
    PATH(p, fx->dir, "complex.nii");
    Spec sc = s;
    sc.dt = DT_COMPLEX64, sc.nbyper = 8, sc.nz = 4;
    write_nifti(p, &sc, data);
    assert_fails(dacl_nifti_read(p, &v), DACL_EFORMAT, "unsupported NIfTI datatype");
    assert_non_null(strstr(dacl_error_message(), p));
    assert_ptr_equal(v.data, keep);
    assert_int_equal(v.nx, 3);
    assert_null(v.nifti);
    free(data);
    dacl_volume_free(&v);
}

/* Read the raw NIfTI-1 or -2 header of a written file (gzip or not). */
static void read_header(const char *path, void *hdr, size_t n) {
    gzFile g = gzopen(path, "rb");
    assert_non_null(g);
    assert_int_equal(gzread(g, hdr, (unsigned)n), (int)n);
    gzclose(g);
}

static void test_write_like_source(void **state) {
    TmpFx *fx = *state;
    char src[256], out[256];
    for (int version = 1; version <= 2; version++) {
        Spec s = {.version = version, .dt = DT_INT16, .nbyper = 2, .nx = 6, .ny = 5, .nz = 4, .slope = 0.5,
                  .units = NIFTI_UNITS_MM};
        void *data = ramp(&s);
        PATH(src, fx->dir, version == 1 ? "img1.nii" : "img2.nii.gz");
        write_nifti(src, &s, data);
        free(data);
        DaclVolume img = {0};
        DaclLabelVolume lab = {0}, back = {0};
        assert_int_equal(dacl_nifti_read(src, &img), DACL_OK);
        assert_int_equal(dacl_label_alloc(&lab, img.nz, img.ny, img.nx), DACL_OK);
        for (size_t i = 0; i < dacl_label_numel(&lab); i++) lab.data[i] = (uint8_t)(i % 7);
        PATH(out, fx->dir, version == 1 ? "pred1.nii.gz" : "pred2.nii");
        int before = count_entries(fx->dir);
        assert_int_equal(dacl_label_write(out, &lab, &img), DACL_OK);
        assert_int_equal(count_entries(fx->dir), before + 1);

        /* same grid and orientation, uint8, unscaled */
        if (version == 1) {
            nifti_1_header h;
            read_header(out, &h, sizeof h);
            assert_int_equal(h.sizeof_hdr, 348);
            assert_string_equal(h.magic, "n+1");
            assert_int_equal(h.datatype, DT_UINT8), assert_int_equal(h.bitpix, 8);
            assert_int_equal(h.dim[1], 6), assert_int_equal(h.dim[2], 5), assert_int_equal(h.dim[3], 4);
            assert_memory_equal(h.srow_x, SROW, 16), assert_memory_equal(h.srow_y, SROW + 4, 16);
            assert_memory_equal(h.srow_z, SROW + 8, 16);
            assert_float_equal(h.qoffset_y, QUAT[4], 0), assert_float_equal(h.quatern_c, QUAT[1], 0);
            assert_int_equal(h.qform_code, 1), assert_int_equal(h.sform_code, 1);
            for (int d = 1; d < 4; d++) assert_float_equal(h.pixdim[d], PIXDIM[d], 0);
            assert_float_equal(h.scl_slope, 0, 0);
            assert_float_equal(h.vox_offset, 352, 0);
        } else {
            nifti_2_header h;
            read_header(out, &h, sizeof h);
            assert_int_equal(h.sizeof_hdr, 540);
            assert_int_equal(h.datatype, DT_UINT8);
            assert_int_equal(h.dim[1], 6), assert_int_equal(h.dim[3], 4);
            for (int c = 0; c < 4; c++) assert_float_equal(h.srow_z[c], SROW[8 + c], 0);
            assert_int_equal(h.vox_offset, 544);
        }
        assert_int_equal(dacl_label_load(out, &back), DACL_OK);
        assert_memory_equal(back.data, lab.data, dacl_label_numel(&lab));
        assert_float_equal(back.spacing[0], 3.0, 1e-6);
        assert_float_equal(back.spacing[2], 0.5, 1e-6);

        /* a label map of another shape does not fit the header */
        DaclLabelVolume other = {0};
        assert_int_equal(dacl_label_alloc(&other, img.nz, img.ny, img.nx + 1), DACL_OK);
        assert_fails(dacl_nifti_write_label(out, &other, img.nifti), DACL_EINVAL, out);
        dacl_label_free(&other);
        dacl_volume_free(&img), dacl_label_free(&lab), dacl_label_free(&back);
    }
}

/* With no source header the writer makes one from the spacing. */
static void test_write_fresh(void **state) {
    TmpFx *fx = *state;
    char p[256];
    DaclLabelVolume lab = {0}, back = {0};
    assert_int_equal(dacl_label_alloc(&lab, 3, 4, 5), DACL_OK);
    lab.data[17] = 3;
    lab.spacing[0] = 5, lab.spacing[1] = 1.5, lab.spacing[2] = 1.25, lab.has_spacing = 1;
    PATH(p, fx->dir, "fresh.nii.gz");
    assert_int_equal(dacl_label_write(p, &lab, NULL), DACL_OK);
    assert_int_equal(dacl_label_load(p, &back), DACL_OK);
    assert_int_equal(back.nz, 3), assert_int_equal(back.ny, 4), assert_int_equal(back.nx, 5);
    assert_int_equal(back.data[17], 3);
    assert_float_equal(back.spacing[0], 5, 1e-6), assert_float_equal(back.spacing[2], 1.25, 1e-6);
    PATH(p, fx->dir, "no/dir/x.nii");
    assert_fails(dacl_label_write(p, &lab, NULL), DACL_EIO, p);
    dacl_label_free(&lab), dacl_label_free(&back);
}

/* CHAOS stores (H, W, Z) = (256, 256, Z) float64 with 1.25 x 1.25 x 7.7 mm voxels. */
static void test_chaos(void **state) {
    TmpFx *fx = *state;
    char img_p[512], lab_p[512], out[256];
    snprintf(img_p, sizeof img_p, "%s/chaos-t2/images/case_01.nii.gz", DACL_SHARED_DATA);
    snprintf(lab_p, sizeof lab_p, "%s/chaos-t2/labels/case_01.nii.gz", DACL_SHARED_DATA);
    if (access(img_p, R_OK) != 0) skip();
    DaclVolume img = {0};
    DaclLabelVolume lab = {0}, back = {0};
    assert_int_equal(dacl_volume_load(img_p, &img), DACL_OK);
    assert_int_equal(dacl_label_load(lab_p, &lab), DACL_OK);
    assert_int_equal(dacl_volume_check_pair(&img, &lab, img_p, lab_p), DACL_OK);
    assert_int_equal(img.nz, 37), assert_int_equal(img.ny, 256), assert_int_equal(img.nx, 256);
    assert_float_equal(img.spacing[0], 7.7, 1e-5), assert_float_equal(img.spacing[1], 1.25, 1e-6);
    int counts[256] = {0};
    for (size_t i = 0; i < dacl_label_numel(&lab); i++) counts[lab.data[i]]++;
    for (int v = 1; v <= 4; v++) assert_true(counts[v] > 0);
    for (int v = 5; v < 256; v++) assert_int_equal(counts[v], 0);
    PATH(out, fx->dir, "case_01_pred.nii.gz");
    assert_int_equal(dacl_label_write(out, &lab, &img), DACL_OK);
    assert_int_equal(dacl_label_load(out, &back), DACL_OK);
    assert_memory_equal(back.data, lab.data, dacl_label_numel(&lab));
    dacl_volume_free(&img), dacl_label_free(&lab), dacl_label_free(&back);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_type, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_big_endian, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_labels, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_broken_files, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_write_like_source, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_write_fresh, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_chaos, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
