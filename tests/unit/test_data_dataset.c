/* The dataset manifest: parsing and validation (every rejection names its field), writing,
 * the labeled split by patient, loading a case ready for training, and `dataset init` on small
 * synthetic SSL4MIS, nnU-Net and flat NIfTI folders. The real ACDC and CHAOS folders are in
 * test_data_real.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hdf5.h>

#include "test_data_util.h"

/* Patients p1 (two frames), p2, p3 (no label), p4; p5 in val. */
static const char *MANIFEST =
    "{\"name\": \"toy\", \"modality\": \"CT\", \"format\": \"h5\",\n"
    " \"labels\": {\"tumour\": 2, \"background\": 0, \"organ\": 1},\n"
    " \"label_remap\": {\"200\": 1, \"500\": 2},\n"
    " \"spacing\": [5, 1.5, 1.25],\n"
    " \"splits\": {\n"
    "  \"train\": [{\"id\": \"p1_frame01\", \"image\": \"v/p1_frame01.h5\", \"label\": \"v/p1_frame01.h5\"},\n"
    "            {\"id\": \"p1_frame09\", \"image\": \"v/p1_frame09.h5\", \"label\": \"v/p1_frame09.h5\"},\n"
    "            {\"id\": \"p2_frame01\", \"image\": \"v/p2_frame01.h5\", \"label\": \"v/p2_frame01.h5\"},\n"
    "            {\"id\": \"p3\", \"image\": \"v/p3.h5\", \"label\": null},\n"
    "            {\"id\": \"p4\", \"patient\": \"P-four\", \"image\": \"v/p4.h5\", \"label\": \"v/p4.h5\"}],\n"
    "  \"val\": [{\"id\": \"p5\", \"image\": \"v/p5.h5\", \"label\": \"v/p5.h5\"}]},\n"
    " \"label_order\": [\"p2_frame01\", \"p4\"]}\n";

/* MANIFEST with the first occurrence of `from` replaced by `to`. */
static char *edit(const char *from, const char *to) {
    const char *at = strstr(MANIFEST, from);
    assert_non_null(at);
    size_t n = strlen(MANIFEST) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(at - MANIFEST), MANIFEST, to, at + strlen(from));
    return s;
}

static void test_parse(void **state) {
    (void)state;
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_parse(MANIFEST, "/data/toy", "toy.json", &ds), DACL_OK);
    assert_string_equal(ds.name, "toy");
    assert_int_equal(ds.modality, DACL_CT);
    assert_int_equal(ds.format, DACL_FMT_H5);
    assert_true(ds.intensity.clip && ds.intensity.minmax); /* CT: the HU window by default */
    assert_float_equal(ds.intensity.clip_lo, -75, 0), assert_float_equal(ds.intensity.clip_hi, 275, 0);
    assert_int_equal(ds.n_labels, 3);
    assert_string_equal(ds.labels[0].name, "background"), assert_string_equal(ds.labels[2].name, "tumour");
    assert_int_equal(ds.remap.n, 2);
    assert_int_equal(ds.remap.pairs[0].from, 200), assert_int_equal(ds.remap.pairs[0].to, 1);
    assert_int_equal(ds.remap.pairs[1].from, 500), assert_int_equal(ds.remap.pairs[1].to, 2);
    assert_true(ds.has_spacing);
    assert_float_equal(ds.spacing[2], 1.25, 0);
    assert_string_equal(ds.root, "/data/toy");
    assert_int_equal(ds.train.n, 5), assert_int_equal(ds.val.n, 1), assert_int_equal(ds.test.n, 0);
    assert_string_equal(ds.train.cases[1].patient, "p1");
    assert_string_equal(ds.train.cases[3].patient, "p3");
    assert_null(ds.train.cases[3].label);
    assert_string_equal(ds.train.cases[4].patient, "P-four");
    assert_int_equal(ds.n_label_order, 2);
    assert_int_equal(dacl_dataset_train_patients(&ds), 4);
    char p[256];
    assert_int_equal(dacl_dataset_path(&ds, ds.val.cases[0].image, p, sizeof p), DACL_OK);
    assert_string_equal(p, "/data/toy/v/p5.h5");
    dacl_dataset_free(&ds);

    /* "root" relative to the manifest's folder; MRI: no clip */
    char *s = edit("\"modality\": \"CT\"", "\"modality\": \"MRI\", \"root\": \"../elsewhere\"");
    assert_int_equal(dacl_dataset_parse(s, "/m", "m.json", &ds), DACL_OK);
    assert_string_equal(ds.root, "/m/../elsewhere");
    assert_false(ds.intensity.clip);
    free(s);
    dacl_dataset_free(&ds);

    /* "_frame2" has no patient before its frame: it is its own patient, and prints and parses
     * back as such (the manifest fuzzer found it printed as an empty patient) */
    s = edit("\"id\": \"p3\"", "\"id\": \"_frame2\"");
    assert_int_equal(dacl_dataset_parse(s, "/m", "m.json", &ds), DACL_OK);
    assert_string_equal(ds.train.cases[3].patient, "_frame2");
    char *printed = dacl_dataset_to_json(&ds);
    assert_non_null(printed);
    DaclDataset again = {0};
    assert_int_equal(dacl_dataset_parse(printed, "/m", "m.json", &again), DACL_OK);
    assert_string_equal(again.train.cases[3].patient, "_frame2");
    dacl_dataset_free(&again);
    free(printed);
    free(s);
    dacl_dataset_free(&ds);
}

/* Each broken manifest fails with DACL_EFORMAT and a message naming the problem. */
static void test_rejections(void **state) {
    (void)state;
    static const struct {
        const char *from, *to, *needle;
    } cases[] = {
        {"\"name\": \"toy\"", "\"nmae\": \"toy\"", "unknown field 'nmae'"},
        {"\"name\": \"toy\"", "\"name\": \"toy\", \"name\": \"x\"", "'name' appears twice"},
        {"\"name\": \"toy\", ", "", "'name' is missing"},
        {"\"CT\"", "\"PET\"", "'modality'"},
        {"\"h5\"", "\"dicom\"", "'format'"},
        {"\"background\": 0", "\"background\": 3", "value 0"},
        {"\"organ\": 1", "\"organ\": 2", "same value 2"},
        {"\"organ\": 1", "\"organ\": 1.5", "'labels.organ'"},
        {"\"200\": 1", "\"200\": 7", "'label_remap.200' maps to 7"},
        {"\"200\": 1", "\"2x\": 1", "label_remap key '2x'"},
        {"\"spacing\": [5, 1.5, 1.25]", "\"spacing\": [5, -1.5, 1.25]", "'spacing'"},
        {"\"spacing\"", "\"intensity\": {\"window\": 1}, \"spacing\"", "unknown field 'intensity.window'"},
        {"\"spacing\"", "\"intensity\": {\"clip\": [3, 1]}, \"spacing\"", "'intensity.clip'"},
        {"\"image\": \"v/p3.h5\"", "\"image\": \"v/p3.h5\", \"lable\": 1", "unknown field 'splits.train[3].lable'"},
        {"\"val\":", "\"valid\":", "unknown field 'splits.valid'"},
        {"\"id\": \"p4\"", "\"id\": \"p2_frame01\"", "case id 'p2_frame01' appears twice"},
        {"\"id\": \"p5\"", "\"id\": \"p4\"", "case id 'p4' appears twice"},
        {"\"image\": \"v/p3.h5\"", "\"image\": \"../p3.h5\"", "'splits.train[3].image' must not leave"},
        {"\"image\": \"v/p3.h5\"", "\"image\": \"/abs/p3.h5\"", "'splits.train[3].image' must be a path relative"},
        {"\"image\": \"v/p3.h5\"", "\"image\": \"v/p3.nii.gz\"", "is not a h5 file"},
        {"\"label\": \"v/p5.h5\"", "\"label\": null", "validation cases need a label"},
        {"\"id\": \"p3\", ", "", "'splits.train[3].id'"},
        {"[\"p2_frame01\", \"p4\"]", "[\"p9\"]", "'label_order[0]' = 'p9' is not a case of the train split"},
        {"[\"p2_frame01\", \"p4\"]", "[\"p5\"]", "'p5' is not a case of the train split"},
        {"[\"p2_frame01\", \"p4\"]", "[\"p4\", \"p4\"]", "lists 'p4' twice"},
        {"\"splits\": {", "\"splits\": {}, \"x\": {", "unknown field 'x'"},
        {"{\"tumour\": 2, \"background\": 0, \"organ\": 1}", "[0, 1, 2]", "'labels' must be"},
        {"\"spacing\": [5, 1.5, 1.25],", "\"spacing\": [5, 1.5, 1.25]", "not valid JSON (line 5)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = edit(cases[i].from, cases[i].to);
        DaclDataset ds = {0};
        int rc = dacl_dataset_parse(s, "/d", "/d/dataset.json", &ds);
        if (rc != DACL_EFORMAT || !strstr(dacl_error_message(), cases[i].needle) ||
            !strstr(dacl_error_message(), "/d/dataset.json"))
            fail_msg("case %zu: expected '%s', got %d: %s", i, cases[i].needle, rc, dacl_error_message());
        assert_null(ds.name); /* nothing half-parsed */
        free(s);
    }
    DaclDataset ds = {0};
    assert_fails(dacl_dataset_parse("[1, 2]", "/d", "m.json", &ds), DACL_EFORMAT, "must be a JSON object");
    assert_fails(dacl_dataset_parse("{\"name\": \"x\", \"format\": \"png\", \"labels\": {\"bg\": 0}, \"splits\": {}}",
                                    "/d", "m.json", &ds),
                 DACL_EFORMAT, "no cases");
}

static void test_labeled_by_patient(void **state) {
    (void)state;
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_parse(MANIFEST, "/d", "m.json", &ds), DACL_OK);
    uint8_t lab[5];
    int n;
    /* patients: p2, P-four (label_order), then p1 (train order); p3 has no label */
    const uint8_t want[4][5] = {{0, 0, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, 1, 0, 1}, {1, 1, 1, 0, 1}};
    for (int k = 0; k <= 3; k++) {
        assert_int_equal(dacl_dataset_labeled(&ds, k, lab, &n), DACL_OK);
        assert_memory_equal(lab, want[k], 5);
        assert_int_equal(n, k == 3 ? 4 : k);
    }
    assert_fails(dacl_dataset_labeled(&ds, 4, lab, &n), DACL_EINVAL, "has 3 with labels");
    assert_fails(dacl_dataset_labeled(&ds, -1, lab, NULL), DACL_EINVAL, "toy");
    dacl_dataset_free(&ds);
    /* without label_order: train order */
    char *s = edit(",\n \"label_order\": [\"p2_frame01\", \"p4\"]", "");
    assert_int_equal(dacl_dataset_parse(s, "/d", "m.json", &ds), DACL_OK);
    assert_int_equal(dacl_dataset_labeled(&ds, 1, lab, &n), DACL_OK);
    assert_int_equal(n, 2);
    assert_true(lab[0] && lab[1] && !lab[2]);
    free(s);
    dacl_dataset_free(&ds);
}

static void test_write_and_load(void **state) {
    TmpFx *fx = *state;
    char p[256];
    DaclDataset ds = {0}, back = {0};
    assert_int_equal(dacl_dataset_parse(MANIFEST, fx->dir, "m.json", &ds), DACL_OK);
    PATH(p, fx->dir, DACL_MANIFEST);
    assert_int_equal(dacl_dataset_write(&ds, p, 0), DACL_OK);
    assert_fails(dacl_dataset_write(&ds, p, 0), DACL_EEXIST, p);
    assert_int_equal(dacl_dataset_write(&ds, p, 1), DACL_OK);
    assert_int_equal(count_entries(fx->dir), 1);
    assert_int_equal(dacl_dataset_load(fx->dir, &back), DACL_OK);
    char *a = dacl_dataset_to_json(&ds), *b = dacl_dataset_to_json(&back);
    assert_string_equal(a, b); /* nothing lost on the way through the file */
    assert_string_equal(back.root, fx->dir);
    free(a), free(b);
    dacl_dataset_free(&back);

    /* dacl-dataset.json wins over dataset.json; nnU-Net's own is recognised */
    const char *nnunet = "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0}, "
                         "\"numTraining\": 1, \"file_ending\": \".nii.gz\"}";
    write_file(p, nnunet, strlen(nnunet));
    assert_fails(dacl_dataset_load(fx->dir, &back), DACL_EFORMAT, "dataset init");
    PATH(p, fx->dir, DACL_MANIFEST_ALT);
    assert_int_equal(dacl_dataset_write(&ds, p, 0), DACL_OK);
    assert_int_equal(dacl_dataset_load(fx->dir, &back), DACL_OK);
    assert_int_equal(back.train.n, 5);
    dacl_dataset_free(&back);
    PATH(p, fx->dir, "none");
    assert_fails(dacl_dataset_load(p, &back), DACL_ENOTFOUND, p);
    dacl_dataset_free(&ds);
}

/* An h5 case (one 1 x n slice) whose uint16 label holds `stored` and whose image -1000..1000. */
static void put_case(const char *dir, const char *id, const uint16_t *stored, int n, int nan) {
    char p[256], name[64];
    snprintf(name, sizeof name, "v/%s.h5", id);
    PATH(p, dir, name);
    float img[16];
    for (int i = 0; i < n; i++) img[i] = -1000.0f + 2000.0f * (float)i / (float)(n - 1);
    if (nan) img[1] = NAN;
    hsize_t dims[2] = {1, (hsize_t)n};
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), s = H5Screate_simple(2, dims, NULL);
    hid_t di = H5Dcreate2(f, "image", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dl = H5Dcreate2(f, "label", H5T_STD_U16LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(di, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, img) >= 0);
    assert_true(H5Dwrite(dl, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, stored) >= 0);
    H5Dclose(di), H5Dclose(dl), H5Sclose(s), H5Fclose(f);
}

static void test_load_case(void **state) {
    TmpFx *fx = *state;
    char p[256];
    PATH(p, fx->dir, "v");
    mkdir(p, 0755);
    /* MS-CMR style: 200 and 500 are stored, 1 and 2 are the classes */
    const uint16_t good[5] = {0, 200, 500, 1, 0}, bad[5] = {0, 7, 0, 0, 0}, wide[5] = {0, 600, 0, 0, 0};
    put_case(fx->dir, "p1_frame01", good, 5, 0);
    put_case(fx->dir, "p1_frame09", bad, 5, 0);
    put_case(fx->dir, "p2_frame01", good, 5, 1);
    put_case(fx->dir, "p3", good, 5, 0);
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_parse(MANIFEST, fx->dir, "m.json", &ds), DACL_OK);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_dataset_load_case(&ds, &ds.train.cases[0], &img, &lab), DACL_OK);
    const uint8_t want[5] = {0, 1, 2, 1, 0};
    assert_memory_equal(lab.data, want, 5);
    /* CT: -1000, -500, 0, 500, 1000 clipped to [-75, 275], then to [0, 1] */
    const float want_img[5] = {0, 0, 75.0f / 350.0f, 1, 1};
    for (int i = 0; i < 5; i++) assert_float_equal(img.data[i], want_img[i], 1e-6);
    assert_true(img.has_spacing && lab.has_spacing);
    assert_float_equal(img.spacing[0], 5, 0);
    assert_fails(dacl_dataset_load_case(&ds, &ds.train.cases[1], &img, &lab), DACL_EFORMAT,
                 "label value 7 at voxel 1 is not one of the manifest's labels");
    assert_non_null(strstr(dacl_error_message(), "p1_frame09.h5"));
    assert_fails(dacl_dataset_load_case(&ds, &ds.train.cases[2], &img, &lab), DACL_ENUMERIC, "p2_frame01.h5");
    put_case(fx->dir, "p1_frame09", wide, 5, 0); /* 600: no pair, not a uint8 */
    assert_fails(dacl_dataset_load_case(&ds, &ds.train.cases[1], &img, &lab), DACL_EFORMAT,
                 "label value 600 at voxel 1 is not an integer in 0..255 nor a remapped value");
    assert_memory_equal(lab.data, want, 5); /* the failures left the outputs alone */
    /* an unlabeled case loads its image only */
    assert_int_equal(dacl_dataset_load_case(&ds, &ds.train.cases[3], &img, &lab), DACL_OK);
    assert_null(lab.data);
    assert_fails(dacl_dataset_load_case(&ds, &ds.train.cases[4], &img, &lab), DACL_ENOTFOUND, "p4.h5");
    dacl_volume_free(&img), dacl_label_free(&lab);
    dacl_dataset_free(&ds);
}

/* ---- dataset init on synthetic folders ---- */

static void mkdirs(const char *dir, const char *sub) {
    char p[256];
    PATH(p, dir, sub);
    assert_int_equal(mkdir(p, 0755), 0);
}

/* A 2 x 3 x 4 NIfTI holding `v` in every voxel but one 0. */
static void put_nifti(const char *dir, const char *rel, int v) {
    char p[256];
    PATH(p, dir, rel);
    DaclLabelVolume l = {0};
    assert_int_equal(dacl_label_alloc(&l, 2, 3, 4), DACL_OK);
    memset(l.data + 1, v, 23);
    assert_int_equal(dacl_nifti_write_label(p, &l, NULL), DACL_OK);
    dacl_label_free(&l);
}

static void test_init_ssl4mis(void **state) {
    TmpFx *fx = *state;
    char p[256], msg[512];
    mkdirs(fx->dir, "v");
    const uint16_t lab[5] = {0, 1, 3, 0, 0};
    const char *ids[4] = {"b_frame01", "b_frame07", "a_frame01", "c"};
    for (int i = 0; i < 4; i++) put_case(fx->dir, ids[i], lab, 5, 0);
    PATH(p, fx->dir, "v");
    char vol[256];
    PATH(vol, fx->dir, "volumes");
    rename(p, vol);
    PATH(p, fx->dir, "train.list");
    write_file(p, "b_frame01\nb_frame07\r\na_frame01.h5\n\nmissing\n", 44);
    PATH(p, fx->dir, "val.list");
    write_file(p, "c\n", 2);
    assert_fails(dacl_dataset_init(fx->dir, NULL, 0, msg, sizeof msg), DACL_ENOTFOUND, "train.list line 5");
    assert_non_null(strstr(msg, "missing"));
    PATH(p, fx->dir, "train.list");
    write_file(p, "b_frame01\nb_frame07\r\na_frame01.h5\n", 34);
    assert_int_equal(dacl_dataset_init(fx->dir, NULL, 0, msg, sizeof msg), DACL_OK);
    assert_non_null(strstr(msg, "3 train / 1 val / 0 test"));
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(fx->dir, &ds), DACL_OK);
    assert_int_equal(ds.format, DACL_FMT_H5);
    assert_int_equal(ds.n_label_order, 3);
    assert_string_equal(ds.label_order[2], "a_frame01");
    assert_string_equal(ds.train.cases[1].patient, "b");
    assert_string_equal(ds.train.cases[0].image, "volumes/b_frame01.h5");
    assert_int_equal(ds.n_labels, 3); /* values found: 0, 1, 3 */
    assert_string_equal(ds.labels[2].name, "class3");
    assert_null(ds.root_field);
    uint8_t l[3];
    assert_int_equal(dacl_dataset_labeled(&ds, 1, l, NULL), DACL_OK);
    assert_true(l[0] && l[1] && !l[2]);
    dacl_dataset_free(&ds);
    /* an existing manifest is kept unless forced */
    assert_fails(dacl_dataset_init(fx->dir, NULL, 0, msg, sizeof msg), DACL_EEXIST, "dataset.json");
    assert_int_equal(dacl_dataset_init(fx->dir, NULL, 1, msg, sizeof msg), DACL_OK);
}

static void test_init_nnunet(void **state) {
    TmpFx *fx = *state;
    char p[256], msg[512];
    mkdirs(fx->dir, "imagesTr"), mkdirs(fx->dir, "labelsTr"), mkdirs(fx->dir, "imagesTs");
    char rel[64];
    for (int i = 1; i <= 6; i++) {
        snprintf(rel, sizeof rel, "imagesTr/liver_%03d_0000.nii.gz", i);
        put_nifti(fx->dir, rel, 9);
        snprintf(rel, sizeof rel, "labelsTr/liver_%03d.nii.gz", i);
        if (i != 3) put_nifti(fx->dir, rel, 1); /* liver_003 has no label */
    }
    put_nifti(fx->dir, "imagesTs/liver_100_0000.nii.gz", 9);
    const char *theirs = "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0, \"liver\": 1}, "
                         "\"numTraining\": 5, \"file_ending\": \".nii.gz\"}";
    PATH(p, fx->dir, DACL_MANIFEST);
    write_file(p, theirs, strlen(theirs));
    assert_fails(dacl_dataset_init(fx->dir, p, 1, msg, sizeof msg), DACL_EEXIST, "nnU-Net's own");
    assert_int_equal(dacl_dataset_init(fx->dir, NULL, 0, msg, sizeof msg), DACL_OK);
    assert_non_null(strstr(msg, DACL_MANIFEST_ALT));
    size_t n;
    unsigned char *now = read_file(p, &n);
    assert_int_equal(n, strlen(theirs));
    assert_memory_equal(now, theirs, n); /* theirs untouched */
    free(now);
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(fx->dir, &ds), DACL_OK);
    assert_int_equal(ds.modality, DACL_CT);
    assert_int_equal(ds.format, DACL_FMT_NIFTI);
    assert_int_equal(ds.n_labels, 2);
    assert_string_equal(ds.labels[1].name, "liver");
    /* labeled 001 002 004 005 006: the 5th (006) to val; 003 unlabeled in train; 100 in test */
    assert_int_equal(ds.train.n, 5), assert_int_equal(ds.val.n, 1), assert_int_equal(ds.test.n, 1);
    assert_string_equal(ds.val.cases[0].id, "liver_006");
    assert_string_equal(ds.train.cases[2].id, "liver_003");
    assert_null(ds.train.cases[2].label);
    assert_string_equal(ds.train.cases[0].image, "imagesTr/liver_001_0000.nii.gz");
    assert_string_equal(ds.train.cases[0].label, "labelsTr/liver_001.nii.gz");
    assert_null(ds.test.cases[0].label);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_dataset_load_case(&ds, &ds.val.cases[0], &img, &lab), DACL_OK);
    assert_int_equal(lab.data[5], 1);
    dacl_volume_free(&img), dacl_label_free(&lab);
    dacl_dataset_free(&ds);

    /* nnU-Net v1 labels {"value": name}; a second channel is refused */
    const char *v1 = "{\"modality\": {\"0\": \"MRI\"}, \"labels\": {\"0\": \"background\", \"1\": \"organ\"}, "
                     "\"numTraining\": 5}";
    write_file(p, v1, strlen(v1));
    assert_int_equal(dacl_dataset_init(fx->dir, NULL, 1, msg, sizeof msg), DACL_OK);
    assert_int_equal(dacl_dataset_load(fx->dir, &ds), DACL_OK);
    assert_int_equal(ds.modality, DACL_MRI);
    assert_string_equal(ds.labels[1].name, "organ");
    dacl_dataset_free(&ds);
    put_nifti(fx->dir, "imagesTr/liver_001_0001.nii.gz", 9);
    assert_fails(dacl_dataset_init(fx->dir, NULL, 1, msg, sizeof msg), DACL_EFORMAT, "several channels");
}

static void test_init_flat_and_elsewhere(void **state) {
    TmpFx *fx = *state;
    char data[256], out[256], msg[512], rel[64];
    PATH(data, fx->dir, "chaos");
    assert_int_equal(mkdir(data, 0755), 0);
    mkdirs(data, "images"), mkdirs(data, "labels");
    for (int i = 1; i <= 5; i++) {
        snprintf(rel, sizeof rel, "images/case_%02d.nii.gz", i);
        put_nifti(data, rel, 50);
        snprintf(rel, sizeof rel, "labels/case_%02d.nii.gz", i);
        put_nifti(data, rel, i % 2 ? 1 : 4);
    }
    /* the data folder is read-only in real life: write the manifest next to it */
    PATH(out, fx->dir, "chaos.json");
    assert_int_equal(dacl_dataset_init(data, out, 0, msg, sizeof msg), DACL_OK);
    assert_fails(dacl_dataset_init(data, out, 0, msg, sizeof msg), DACL_EEXIST, out);
    assert_non_null(strstr(msg, out));
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(out, &ds), DACL_OK);
    assert_non_null(ds.root_field);
    assert_non_null(strstr(ds.root, "/chaos"));
    assert_int_equal(ds.train.n, 4), assert_int_equal(ds.val.n, 1);
    assert_string_equal(ds.val.cases[0].id, "case_05");
    assert_int_equal(ds.n_labels, 3); /* 0, 1, 4 */
    assert_int_equal(ds.labels[2].value, 4);
    assert_int_equal(ds.modality, DACL_MRI);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_dataset_load_case(&ds, &ds.train.cases[1], &img, &lab), DACL_OK);
    assert_int_equal(lab.data[3], 4);
    assert_float_equal(img.data[3], 1, 0); /* min-max: 0 -> 0, 50 -> 1 */
    dacl_volume_free(&img), dacl_label_free(&lab);
    dacl_dataset_free(&ds);

    PATH(out, fx->dir, "nowhere/x.json");
    assert_fails(dacl_dataset_init(data, out, 0, msg, sizeof msg), DACL_ENOTFOUND, "nowhere");
    PATH(out, fx->dir, "empty");
    assert_int_equal(mkdir(out, 0755), 0);
    assert_fails(dacl_dataset_init(out, NULL, 0, msg, sizeof msg), DACL_EFORMAT, "unrecognised layout");
    assert_non_null(strstr(msg, "unrecognised layout"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_labeled_by_patient),
        cmocka_unit_test_setup_teardown(test_write_and_load, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_load_case, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_init_ssl4mis, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_init_nnunet, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_init_flat_and_elsewhere, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
