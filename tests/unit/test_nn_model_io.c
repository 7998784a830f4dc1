/* Model files: a round trip keeps every bit (configuration, parameters, BN
 * statistics, metadata, and so the logits), and every damaged or foreign file
 * fails with DACL_EFORMAT naming the file, leaving the outputs alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dacl/nn.h"
#include "test_data_util.h"
#include "test_unet_util.h"

#define MAXN 2
#define PH 32
#define PW 32
#define META "{\"dataset\": \"phantom\", \"labels\": {\"background\": 0, \"RV\": 1}}"

/* The tiny U-Net with its momentum set too (a model file must not carry it). */
static DaclUNet *tiny_model(uint64_t seed) {
    DaclUNet *m = tiny_unet(seed, 1, 4, MAXN, PH, PW);
    float *mom = dacl_unet_momentum(m);
    for (size_t i = 0; i < dacl_unet_num_params(m); i++) mom[i] = 1.0f + (float)(i % 7);
    return m;
}

static void fill_input(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 37 % 101) / 100.0);
}

static void assert_same_model(DaclUNet *a, DaclUNet *b) {
    assert_memory_equal(dacl_unet_config(a), dacl_unet_config(b), sizeof(DaclUNetConfig));
    assert_int_equal(dacl_unet_num_tensors(a), dacl_unet_num_tensors(b));
    for (int i = 0; i < dacl_unet_num_tensors(a); i++)
        assert_memory_equal(dacl_unet_tensor(a, i), dacl_unet_tensor(b, i), sizeof(DaclParamInfo));
    assert_int_equal(dacl_unet_num_params(a), dacl_unet_num_params(b));
    assert_memory_equal(dacl_unet_params(a), dacl_unet_params(b),
                        dacl_unet_num_params(a) * sizeof(float));
    assert_int_equal(dacl_unet_bn_stats_count(a), dacl_unet_bn_stats_count(b));
    assert_memory_equal(dacl_unet_bn_stats(a), dacl_unet_bn_stats(b),
                        dacl_unet_bn_stats_count(a) * sizeof(float));
    assert_true(dacl_unet_weights_hash(a) == dacl_unet_weights_hash(b));
}

/* Load must fail with `code` naming `path` and leave both outputs as they were. */
static void assert_load_fails(const char *path, int code, const char *needle) {
    DaclUNet *sentinel = (DaclUNet *)(uintptr_t)0x1234;
    DaclUNet *m = sentinel;
    char *meta = (char *)(uintptr_t)0x5678;
    assert_fails(dacl_unet_load(path, MAXN, 0, 0, &m, &meta), code, path);
    if (needle && !strstr(dacl_error_message(), needle))
        fail_msg("expected '%s' in: %s", needle, dacl_error_message());
    assert_ptr_equal(m, sentinel);
    assert_ptr_equal(meta, (char *)(uintptr_t)0x5678);
}

static void test_fnv1a64(void **state) {
    (void)state;
    /* the published FNV-1a 64 test vectors */
    assert_true(dacl_fnv1a64(DACL_FNV1A64_INIT, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(dacl_fnv1a64(DACL_FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(dacl_fnv1a64(DACL_FNV1A64_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    /* continuing a hash is hashing the concatenation */
    assert_true(dacl_fnv1a64(dacl_fnv1a64(DACL_FNV1A64_INIT, "foo", 3), "bar", 3) ==
                0x85944171f73967e8ULL);
}

static void test_round_trip(void **state) {
    TmpFx *fx = *state;
    char path[256];
    PATH(path, fx->dir, "model.dacl");
    DaclUNet *a = tiny_model(7);
    assert_int_equal(dacl_unet_save(a, path, META), DACL_OK);
    assert_int_equal(count_entries(fx->dir), 1); /* no temporary file left */

    DaclUNet *b = NULL;
    char *meta = NULL;
    assert_int_equal(dacl_unet_load(path, MAXN, 0, 0, &b, &meta), DACL_OK);
    assert_same_model(a, b);
    assert_string_equal(meta, META);
    assert_int_equal(dacl_unet_max_batch(b), MAXN);
    int h, w;
    dacl_unet_feature(b, DACL_FEAT_UP4, NULL, &h, &w);
    assert_int_equal(h, PH); /* h = w = 0: the saved patch */
    assert_int_equal(w, PW);
    /* the momentum is not part of a model file */
    for (size_t i = 0; i < dacl_unet_num_params(b); i++) assert_true(dacl_unet_momentum(b)[i] == 0.0f);

    /* bit-identical logits in eval mode */
    float x[MAXN * PH * PW];
    fill_input(x, MAXN * PH * PW);
    assert_int_equal(dacl_unet_forward(a, x, MAXN, 0, 0), DACL_OK);
    assert_int_equal(dacl_unet_forward(b, x, MAXN, 0, 0), DACL_OK);
    assert_memory_equal(dacl_unet_logits(a), dacl_unet_logits(b), sizeof(float) * MAXN * 4 * PH * PW);

    /* saving again over the file replaces it with the same bytes */
    size_t n1, n2;
    unsigned char *f1 = read_file(path, &n1);
    assert_int_equal(dacl_unet_save(b, path, META), DACL_OK);
    unsigned char *f2 = read_file(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    free(f1);
    free(f2);
    free(meta);
    dacl_unet_free(a);
    dacl_unet_free(b);
}

static void test_other_plan_and_no_meta(void **state) {
    TmpFx *fx = *state;
    char path[256];
    PATH(path, fx->dir, "model.dacl");
    DaclUNet *a = tiny_model(11);
    assert_int_equal(dacl_unet_save(a, path, NULL), DACL_OK);
    DaclUNet *b = NULL;
    char *meta = (char *)path;
    /* another batch and patch: the weights do not depend on the plan */
    assert_int_equal(dacl_unet_load(path, 3, 48, 64, &b, &meta), DACL_OK);
    assert_null(meta);
    assert_same_model(a, b);
    assert_int_equal(dacl_unet_max_batch(b), 3);
    int h, w;
    dacl_unet_feature(b, DACL_FEAT_UP4, NULL, &h, &w);
    assert_int_equal(h, 48);
    assert_int_equal(w, 64);
    dacl_unet_free(b);
    /* metadata not wanted */
    assert_int_equal(dacl_unet_load(path, 1, 0, 0, &b, NULL), DACL_OK);
    dacl_unet_free(b);
    /* a patch the U-Net cannot take is the caller's error, still naming the file */
    b = NULL;
    assert_fails(dacl_unet_load(path, 1, 40, 40, &b, NULL), DACL_EINVAL, path);
    assert_null(b);
    dacl_unet_free(a);
}

static void test_section_with_momentum(void **state) {
    (void)state;
    DaclUNet *a = tiny_model(13);
    size_t n = dacl_unet_section_bytes(a, META, DACL_MODEL_MOMENTUM);
    assert_true(n > dacl_unet_section_bytes(a, META, 0));
    unsigned char *buf = malloc(n + 16);
    assert_non_null(buf);
    memset(buf, 0xAB, n + 16);
    assert_fails(dacl_unet_section_write(a, META, DACL_MODEL_MOMENTUM, buf, n - 1), DACL_EINVAL, "");
    assert_int_equal(dacl_unet_section_write(a, META, DACL_MODEL_MOMENTUM, buf, n), DACL_OK);
    DaclUNet *b = NULL;
    char *meta = NULL;
    size_t used = 0;
    /* trailing bytes belong to whoever embeds the section */
    assert_int_equal(dacl_unet_section_read(buf, n + 16, "ckpt", MAXN, 0, 0, &b, &meta, &used),
                     DACL_OK);
    assert_int_equal(used, n);
    assert_same_model(a, b);
    assert_memory_equal(dacl_unet_momentum(a), dacl_unet_momentum(b),
                        dacl_unet_num_params(a) * sizeof(float));
    assert_string_equal(meta, META);
    free(meta);
    dacl_unet_free(b);
    /* every truncation of a section fails cleanly (strided through the weights) */
    for (size_t k = 0; k < n; k += k < 2048 ? 1 : 4093) {
        b = NULL;
        assert_fails(dacl_unet_section_read(buf, k, "ckpt", MAXN, 0, 0, &b, NULL, NULL),
                     DACL_EFORMAT, "ckpt");
        assert_null(b);
    }
    free(buf);
    dacl_unet_free(a);
}

static void test_truncated(void **state) {
    TmpFx *fx = *state;
    char path[256], cut[256];
    PATH(path, fx->dir, "model.dacl");
    PATH(cut, fx->dir, "cut.dacl");
    DaclUNet *a = tiny_model(17);
    assert_int_equal(dacl_unet_save(a, path, META), DACL_OK);
    size_t n;
    free(read_file(path, &n));
    const long keep[] = {0, 3, 8, 12, 23, 24, 30, 100, 500, (long)n / 2, (long)n - 9, (long)n - 8,
                         (long)n - 1};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        truncate_copy(path, cut, keep[i]);
        assert_load_fails(cut, DACL_EFORMAT, NULL);
    }
    dacl_unet_free(a);
}

/* Overwrite byte `at` of the file at `path` with `v`. */
static void poke(const char *path, size_t at, unsigned char v) {
    size_t n;
    unsigned char *b = read_file(path, &n);
    assert_true(at < n);
    b[at] = v;
    write_file(path, b, n);
    free(b);
}

/* Rewrite the trailing checksum, so a deliberate change gets past it. */
static void reseal(const char *path) {
    size_t n;
    unsigned char *b = read_file(path, &n);
    uint64_t h = dacl_fnv1a64(DACL_FNV1A64_INIT, b, n - 8);
    for (int i = 0; i < 8; i++) b[n - 8 + i] = (unsigned char)(h >> (8 * i));
    write_file(path, b, n);
    free(b);
}

static void test_corrupt_and_foreign(void **state) {
    TmpFx *fx = *state;
    char path[256], bad[256];
    PATH(path, fx->dir, "model.dacl");
    PATH(bad, fx->dir, "bad.dacl");
    DaclUNet *a = tiny_model(19);
    assert_int_equal(dacl_unet_save(a, path, META), DACL_OK);
    size_t n;
    unsigned char *orig = read_file(path, &n);

    /* one flipped byte anywhere past the header: the checksum says so */
    const size_t at[] = {24, 40, 200, n / 3, n / 2, n - 30, n - 9, n - 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        write_file(bad, orig, n);
        poke(bad, at[i], orig[at[i]] ^ 0x10);
        assert_load_fails(bad, DACL_EFORMAT, "checksum");
    }
    write_file(bad, orig, n);
    poke(bad, 0, 'X');
    assert_load_fails(bad, DACL_EFORMAT, "magic");
    write_file(bad, orig, n);
    poke(bad, 8, 2);
    assert_load_fails(bad, DACL_EFORMAT, "version 2");
    /* a length that disagrees with the file */
    write_file(bad, orig, n);
    poke(bad, 23, 1); /* + 2^56 */
    assert_load_fails(bad, DACL_EFORMAT, "truncated");
    unsigned char *longer = malloc(n + 1);
    assert_non_null(longer);
    memcpy(longer, orig, n);
    longer[n] = 0;
    write_file(bad, longer, n + 1);
    free(longer);
    assert_load_fails(bad, DACL_EFORMAT, "unexpected bytes");

    /* a sealed file whose content is inconsistent: the checks behind the checksum */
    write_file(bad, orig, n);
    poke(bad, 24 + 8 + 8 + 4 * 4, 17); /* widths[4]: 32 -> 17, smaller tensors */
    reseal(bad);
    assert_load_fails(bad, DACL_EFORMAT, "tensor");
    write_file(bad, orig, n);
    poke(bad, 24 + 8 + 4, 0); /* classes 4 -> 0 */
    reseal(bad);
    assert_load_fails(bad, DACL_EFORMAT, "implausible");
    write_file(bad, orig, n);
    /* the first tensor's name starts after its 7 u32 fields at 24 + 64 + 4 */
    poke(bad, 24 + 64 + 4 + 28, 'X');
    reseal(bad);
    assert_load_fails(bad, DACL_EFORMAT, "Xncoder.in_conv.conv_conv.0.weight");

    /* not model files at all */
    assert_load_fails(fx->dir, DACL_EIO, NULL); /* a folder */
    PATH(bad, fx->dir, "missing.dacl");
    assert_load_fails(bad, DACL_ENOTFOUND, NULL);
    PATH(bad, fx->dir, "empty.dacl");
    write_file(bad, "", 0);
    assert_load_fails(bad, DACL_EFORMAT, "magic");
    PATH(bad, fx->dir, "garbage.dacl");
    garbage_file(bad, 5000);
    assert_load_fails(bad, DACL_EFORMAT, "magic");
    free(orig);
    dacl_unet_free(a);
}

static void test_save_failure(void **state) {
    TmpFx *fx = *state;
    char path[256];
    PATH(path, fx->dir, "no/such/folder/model.dacl");
    DaclUNet *a = tiny_model(23);
    assert_fails(dacl_unet_save(a, path, NULL), DACL_EIO, path);
    assert_int_equal(count_entries(fx->dir), 0);
    dacl_unet_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv1a64),
        cmocka_unit_test_setup_teardown(test_round_trip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_other_plan_and_no_meta, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_section_with_momentum),
        cmocka_unit_test_setup_teardown(test_truncated, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_and_foreign, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_save_failure, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
