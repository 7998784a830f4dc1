/* Phantoms: written as a NIfTI dataset with a manifest that loads; every class in every case;
 * anatomy that behaves (RV only beside the LV, the heart shrinking towards the apex, blood brighter
 * than muscle); noise present; same seed, same bytes; no overwriting without force. Small
 * volumes (48 x 48 in-plane) keep the whole file under a second. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_data_util.h"

#define SIZE 48

/* voxels of each class in slice z (or the whole volume with z < 0); cnt[256] */
static void count_classes(const DaclLabelVolume *l, int z, long *cnt) {
    memset(cnt, 0, 256 * sizeof *cnt);
    size_t plane = (size_t)l->ny * l->nx, lo = z < 0 ? 0 : (size_t)z * plane;
    size_t hi = z < 0 ? dacl_label_numel(l) : lo + plane;
    for (size_t i = lo; i < hi; i++) cnt[l->data[i]]++;
}

/* mean raw intensity of class c (NaN if absent) */
static double class_mean(const DaclVolume *v, const DaclLabelVolume *l, int c) {
    double s = 0;
    long n = 0;
    for (size_t i = 0; i < dacl_volume_numel(v); i++)
        if (l->data[i] == c) s += v->data[i], n++;
    return n ? s / (double)n : NAN;
}

/* Write `cases` small phantoms into dir and load them back through the manifest: shapes, labels,
 * normalisation and spacing are what the manifest promises. */
static void check_written(const char *dir, DaclPhantomKind kind, int cases, int n_classes) {
    DaclPhantomOptions opt = {.size = SIZE};
    assert_int_equal(dacl_phantom_write(dir, kind, cases, 5, &opt), DACL_OK);
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(dir, &ds), DACL_OK);
    assert_int_equal(ds.format, DACL_FMT_NIFTI);
    assert_int_equal(ds.modality, DACL_MRI);
    assert_int_equal(ds.n_labels, n_classes);
    assert_int_equal(ds.val.n, 1); /* max(1, cases / 5) */
    assert_int_equal(ds.train.n, cases - 1);
    assert_int_equal(ds.n_label_order, ds.train.n);
    assert_int_equal(dacl_dataset_train_patients(&ds), ds.train.n);
    const DaclSplit *sp[2] = {&ds.train, &ds.val};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < sp[s]->n; i++) {
            DaclVolume img = {0};
            DaclLabelVolume lab = {0};
            /* load_case checks image and label shapes match and every label is declared */
            assert_int_equal(dacl_dataset_load_case(&ds, &sp[s]->cases[i], &img, &lab), DACL_OK);
            assert_int_equal(img.ny, SIZE), assert_int_equal(img.nx, SIZE);
            assert_true(img.has_spacing && img.spacing[0] > 5 && img.spacing[1] > 200.0 / SIZE);
            float lo = INFINITY, hi = -INFINITY;
            for (size_t k = 0; k < dacl_volume_numel(&img); k++) {
                lo = fminf(lo, img.data[k]);
                hi = fmaxf(hi, img.data[k]);
            }
            assert_float_equal(lo, 0.0, 1e-6), assert_float_equal(hi, 1.0, 1e-6); /* min-max */
            long cnt[256];
            count_classes(&lab, -1, cnt);
            for (int c = 0; c < n_classes; c++) assert_true(cnt[c] > 0); /* every class, every case */
            dacl_volume_free(&img), dacl_label_free(&lab);
        }
    dacl_dataset_free(&ds);
}

static void test_cardiac_files(void **state) {
    TmpFx *fx = *state;
    check_written(fx->dir, DACL_PHANTOM_CARDIAC, 4, 4);
    char p[256];
    PATH(p, fx->dir, "images/case003.nii.gz");
    assert_int_equal(access(p, R_OK), 0);
}

static void test_abdomen_files(void **state) {
    TmpFx *fx = *state;
    check_written(fx->dir, DACL_PHANTOM_ABDOMEN, 3, 5);
}

/* Raw volumes in memory: MR magnitudes (>= 0, integers, noisy background), and anatomy. */
static void test_cardiac_anatomy(void **state) {
    (void)state;
    for (int i = 0; i < 6; i++) {
        DaclVolume v = {0};
        DaclLabelVolume l = {0};
        assert_int_equal(dacl_phantom_case(DACL_PHANTOM_CARDIAC, 11, i, SIZE, &v, &l), DACL_OK);
        assert_true(v.nz >= 8 && v.nz <= 12);
        assert_int_equal(l.nz, v.nz), assert_int_equal(l.ny, v.ny), assert_int_equal(l.nx, v.nx);
        long zeros = 0;
        for (size_t k = 0; k < dacl_volume_numel(&v); k++) {
            assert_true(v.data[k] >= 0 && v.data[k] < 1e5 && v.data[k] == floorf(v.data[k]));
            zeros += v.data[k] == 0;
        }
        assert_true(zeros < (long)dacl_volume_numel(&v) / 20); /* Rician: even air is not 0 */
        long cnt[256], base[256], apex[256];
        count_classes(&l, 0, base);
        assert_true(base[1] && base[2] && base[3]); /* the base shows RV, myocardium, LV */
        int last = 0; /* the last slice with heart */
        for (int z = 0; z < l.nz; z++) {
            count_classes(&l, z, cnt);
            assert_true(!cnt[1] || cnt[2]); /* no RV without the LV's wall beside it */
            if (cnt[2]) last = z;
        }
        count_classes(&l, last, apex);
        assert_true(apex[2] + apex[3] < base[2] + base[3]); /* smaller at the apex */
        assert_true(apex[1] < base[1]);
        assert_true(class_mean(&v, &l, 3) > 1.5 * class_mean(&v, &l, 2)); /* blood over muscle */
        dacl_volume_free(&v), dacl_label_free(&l);
    }
}

static void test_abdomen_anatomy(void **state) {
    (void)state;
    double liver = 0, kidney = 0, spleen = 0;
    for (int i = 0; i < 4; i++) {
        DaclVolume v = {0};
        DaclLabelVolume l = {0};
        assert_int_equal(dacl_phantom_case(DACL_PHANTOM_ABDOMEN, 11, i, SIZE, &v, &l), DACL_OK);
        long cnt[256];
        count_classes(&l, -1, cnt);
        /* very different sizes: the liver dwarfs the spleen and each kidney */
        assert_true(cnt[1] > 2 * cnt[4] && cnt[1] > 3 * cnt[2] && cnt[1] > 3 * cnt[3]);
        assert_int_equal(cnt[5], 0);
        /* the kidneys sit on their own sides: right kidney (2) in the image's left half */
        double xr = 0, xl = 0;
        for (size_t k = 0; k < dacl_label_numel(&l); k++) {
            if (l.data[k] == 2) xr += (double)(k % (size_t)l.nx);
            if (l.data[k] == 3) xl += (double)(k % (size_t)l.nx);
        }
        assert_true(xr / cnt[2] < l.nx / 2.0 && xl / cnt[3] > l.nx / 2.0);
        liver += class_mean(&v, &l, 1);
        kidney += (class_mean(&v, &l, 2) + class_mean(&v, &l, 3)) / 2;
        spleen += class_mean(&v, &l, 4);
        dacl_volume_free(&v), dacl_label_free(&l);
    }
    assert_true(kidney > 1.3 * liver && spleen > 1.3 * liver); /* T2: liver the darkest organ */
}

/* Same seed, same bytes; another seed, other images; a file holds exactly the case in memory. */
static void test_determinism(void **state) {
    TmpFx *fx = *state;
    char a[256], b[256], c[256];
    PATH(a, fx->dir, "a");
    PATH(b, fx->dir, "b");
    PATH(c, fx->dir, "c");
    DaclPhantomOptions opt = {.size = 32};
    assert_int_equal(dacl_phantom_write(a, DACL_PHANTOM_CARDIAC, 3, 42, &opt), DACL_OK);
    assert_int_equal(dacl_phantom_write(b, DACL_PHANTOM_CARDIAC, 3, 42, &opt), DACL_OK);
    assert_int_equal(dacl_phantom_write(c, DACL_PHANTOM_CARDIAC, 2, 43, &opt), DACL_OK);
    const char *files[] = {"dataset.json", "images/case000.nii.gz", "labels/case000.nii.gz", "images/case002.nii.gz",
                           "labels/case002.nii.gz"};
    for (int i = 0; i < 5; i++) {
        char pa[512], pb[512];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        size_t na, nb;
        unsigned char *da = read_file(pa, &na), *db = read_file(pb, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(da, db, na);
        free(da), free(db);
    }
    DaclVolume v1 = {0}, v2 = {0};
    DaclLabelVolume l1 = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/images/case000.nii.gz", a);
    assert_int_equal(dacl_volume_load(p, &v1), DACL_OK);
    snprintf(p, sizeof p, "%s/images/case000.nii.gz", c);
    assert_int_equal(dacl_volume_load(p, &v2), DACL_OK);
    assert_true(v1.nz != v2.nz || memcmp(v1.data, v2.data, dacl_volume_numel(&v1) * sizeof(float)) != 0);
    /* a file holds exactly the case in memory, which depends on (kind, seed, index, size) only */
    dacl_volume_free(&v2);
    assert_int_equal(dacl_phantom_case(DACL_PHANTOM_CARDIAC, 42, 1, 32, &v2, &l1), DACL_OK);
    snprintf(p, sizeof p, "%s/images/case001.nii.gz", a);
    assert_int_equal(dacl_volume_load(p, &v1), DACL_OK);
    assert_int_equal(dacl_volume_numel(&v1), dacl_volume_numel(&v2));
    assert_memory_equal(v1.data, v2.data, dacl_volume_numel(&v1) * sizeof(float));
    dacl_volume_free(&v1), dacl_volume_free(&v2), dacl_label_free(&l1);
}

static void test_refusals(void **state) {
    TmpFx *fx = *state;
    DaclPhantomOptions opt = {.size = 16};
    char f[256], d[256], junk[256];
    /* a non-empty folder is refused, naming it, and left alone */
    PATH(junk, fx->dir, "notes.txt");
    write_file(junk, "mine", 4);
    assert_fails(dacl_phantom_write(fx->dir, DACL_PHANTOM_CARDIAC, 2, 0, &opt), DACL_EEXIST, fx->dir);
    assert_int_equal(count_entries(fx->dir), 1);
    opt.force = 1; /* with force it writes next to what is there and deletes nothing */
    assert_int_equal(dacl_phantom_write(fx->dir, DACL_PHANTOM_CARDIAC, 2, 0, &opt), DACL_OK);
    assert_int_equal(count_entries(fx->dir), 4);
    opt.force = 0;
    /* a file where the folder should be; nested missing folders are created */
    PATH(f, fx->dir, "notes.txt");
    assert_fails(dacl_phantom_write(f, DACL_PHANTOM_CARDIAC, 2, 0, &opt), DACL_EEXIST, f);
    PATH(d, fx->dir, "x/y/z");
    assert_int_equal(dacl_phantom_write(d, DACL_PHANTOM_ABDOMEN, 2, 0, &opt), DACL_OK);
    /* bad arguments */
    assert_fails(dacl_phantom_write(d, DACL_PHANTOM_ABDOMEN, 1, 0, &opt), DACL_EINVAL, "cases");
    opt.size = 8;
    assert_fails(dacl_phantom_write(d, DACL_PHANTOM_ABDOMEN, 2, 0, &opt), DACL_EINVAL, "size");
    assert_fails(dacl_phantom_write(d, (DaclPhantomKind)7, 2, 0, NULL), DACL_EINVAL, "kind");
    DaclVolume v = {0};
    DaclLabelVolume l = {0};
    assert_fails(dacl_phantom_case(DACL_PHANTOM_CARDIAC, 0, -1, 32, &v, &l), DACL_EINVAL, "index");
    assert_null(v.data), assert_null(l.data);
}

static void test_specs(void **state) {
    (void)state;
    DaclPhantomKind k = DACL_PHANTOM_ABDOMEN;
    assert_int_equal(dacl_phantom_parse_spec("phantom:cardiac", &k), 1);
    assert_int_equal(k, DACL_PHANTOM_CARDIAC);
    assert_int_equal(dacl_phantom_parse_spec("phantom:abdomen", &k), 1);
    assert_int_equal(k, DACL_PHANTOM_ABDOMEN);
    assert_int_equal(dacl_phantom_parse_spec("/data/acdc", &k), 0);
    assert_int_equal(dacl_phantom_parse_spec("phantoms/cardiac", &k), 0);
    assert_int_equal(dacl_phantom_parse_spec(NULL, &k), 0);
    assert_int_equal(dacl_phantom_parse_spec("phantom:liver", &k), -1);
    assert_non_null(strstr(dacl_error_message(), "phantom:liver"));
    assert_int_equal(dacl_phantom_parse_spec("phantom:", &k), -1);
    assert_string_equal(dacl_phantom_kind_name(DACL_PHANTOM_CARDIAC), "cardiac");
    assert_string_equal(dacl_phantom_kind_name(DACL_PHANTOM_ABDOMEN), "abdomen");
    assert_int_equal(dacl_phantom_kind_parse("Cardiac", &k), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cardiac_files, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_abdomen_files, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_cardiac_anatomy),
        cmocka_unit_test(test_abdomen_anatomy),
        cmocka_unit_test_setup_teardown(test_determinism, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
