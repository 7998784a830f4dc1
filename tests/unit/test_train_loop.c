/* The training loop's failure paths through the C API: a non-finite loss
 * stops with the term and iteration named and leaves a valid checkpoint of
 * the last good state; a cancel before the first iteration checkpoints at 0. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/train.h"

static char work[256];

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/dacl-test-loop-XXXXXX");
    return mkdtemp(work) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    return system(cmd) == 0 ? 0 : -1;
}

static void small_job(DaclJobConfig *c) {
    dacl_config_defaults(c);
    assert_int_equal(dacl_config_parse("{\"method\": {\"name\": \"supervised\"}, \"train\": "
                                       "{\"iterations\": 6, \"batch\": 2, \"labeled_batch\": 2, "
                                       "\"patch\": [32, 32], \"val_every\": 3, \"threads\": 1}}",
                                       c, NULL, 0),
                     DACL_OK);
}

static void test_nonfinite_loss_stops_with_last_good_state(void **state) {
    (void)state;
    DaclJobConfig c;
    small_job(&c);
    DaclTrainer *t;
    assert_int_equal(dacl_trainer_create(&t, &c, NULL, work), DACL_OK);
    DaclUNet *m = dacl_trainer_model(t, 0);
    assert_non_null(m);
    assert_null(dacl_trainer_model(t, 1));
    /* two good iterations, then poison the output conv's bias */
    assert_int_equal(dacl_trainer_run(t, 2, NULL, NULL), DACL_OK);
    char good[65];
    dacl_checkpoint_weights_sha256(&m, 1, good);
    const DaclParamInfo *out_b = dacl_unet_tensor(m, dacl_unet_num_tensors(m) - 1);
    float saved = dacl_unet_params(m)[out_b->offset];
    dacl_unet_params(m)[out_b->offset] = NAN;
    int rc = dacl_trainer_run(t, 0, NULL, NULL);
    assert_int_equal(rc, DACL_ENUMERIC);
    assert_non_null(strstr(dacl_error_message(), "iteration 3"));
    if (!strstr(dacl_error_message(), "loss_ce_a")) fail_msg("message: %s", dacl_error_message());
    assert_int_equal(dacl_trainer_iteration(t), 2); /* the bad iteration did not count */
    /* the checkpoint holds iteration 2, readable, with the (poisoned) live weights
     * untouched by an SGD step: restoring the one value gives the good hash */
    char path[300];
    snprintf(path, sizeof path, "%s/checkpoint-last.bin", work);
    DaclCheckpoint ck;
    DaclUNet *loaded[DACL_CKPT_MAX_MODELS] = {0};
    assert_int_equal(dacl_checkpoint_read(path, &ck, loaded, 2, 0, 0), DACL_OK);
    assert_int_equal(ck.iteration, 2);
    dacl_unet_params(loaded[0])[out_b->offset] = saved;
    char back[65];
    dacl_checkpoint_weights_sha256(loaded, 1, back);
    assert_string_equal(back, good);
    dacl_unet_free(loaded[0]);
    dacl_checkpoint_free(&ck);
    dacl_trainer_free(t);
}

static void test_cancel_checkpoints_and_stops(void **state) {
    (void)state;
    DaclJobConfig c;
    small_job(&c);
    DaclTrainer *t;
    assert_int_equal(dacl_trainer_create(&t, &c, NULL, work), DACL_OK);
    atomic_int cancel = 1;
    assert_int_equal(dacl_trainer_run(t, 0, &cancel, NULL), DACL_ECANCELED);
    assert_int_equal(dacl_trainer_iteration(t), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/checkpoint-last.bin", work);
    DaclCheckpoint ck;
    assert_int_equal(dacl_checkpoint_read(path, &ck, NULL, 0, 0, 0), DACL_OK);
    assert_int_equal(ck.iteration, 0);
    dacl_checkpoint_free(&ck);
    /* damaged copies are refused by name, and the original still reads */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    char bad_path[320];
    snprintf(bad_path, sizeof bad_path, "%s/bad.bin", work);
    const struct {
        long at;
        long len;
        const char *words;
    } damage[] = {{size / 2, size, "checksum"}, {0, size, "magic"}, {-1, size / 3, "checksum"}};
    for (int i = 0; i < 3; i++) {
        if (damage[i].at >= 0) buf[damage[i].at] ^= 0x5a; /* -1: truncation alone */
        f = fopen(bad_path, "wb");
        fwrite(buf, 1, (size_t)damage[i].len, f);
        fclose(f);
        if (damage[i].at >= 0) buf[damage[i].at] ^= 0x5a;
        DaclCheckpoint bad;
        assert_int_equal(dacl_checkpoint_read(bad_path, &bad, NULL, 0, 0, 0), DACL_EFORMAT);
        assert_non_null(strstr(dacl_error_message(), "bad.bin"));
        if (!strstr(dacl_error_message(), damage[i].words)) fail_msg("%s", dacl_error_message());
        assert_int_equal(dacl_trainer_resume(t, bad_path), DACL_EFORMAT);
    }
    free(buf);
    /* a checkpoint of this job resumes; then it runs to its end */
    assert_int_equal(dacl_trainer_resume(t, path), DACL_OK);
    assert_int_equal(dacl_trainer_run(t, 0, NULL, NULL), DACL_OK);
    assert_int_equal(dacl_trainer_iteration(t), 6);
    dacl_trainer_free(t);
}

static void test_missing_dataset_is_a_clear_error(void **state) {
    (void)state;
    DaclJobConfig c;
    small_job(&c);
    snprintf(c.dataset.path, sizeof c.dataset.path, "no-such-dataset");
    DaclTrainer *t = (DaclTrainer *)&c; /* must be reset to NULL */
    int rc = dacl_trainer_create(&t, &c, work, work);
    assert_int_not_equal(rc, DACL_OK);
    assert_null(t);
    assert_non_null(strstr(dacl_error_message(), "no-such-dataset"));
    snprintf(c.dataset.path, sizeof c.dataset.path, "phantom:brain");
    rc = dacl_trainer_create(&t, &c, work, work);
    assert_int_equal(rc, DACL_EINVAL);
    assert_non_null(strstr(dacl_error_message(), "cardiac"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nonfinite_loss_stops_with_last_good_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_checkpoints_and_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dataset_is_a_clear_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
