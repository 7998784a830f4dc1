/* DACL co-training through the trainer (method.md §3 wired into §2's loop):
 * with lambda_CL = 0 it computes exactly what CPS computes; with lambda_CL > 0
 * the contrastive gradient reaches both U-Nets; its internals are reported as
 * metrics; a run stopped and resumed from its checkpoint (which now carries
 * the heads and the memory bank) ends bit-identical to an uninterrupted one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/fileio.h"
#include "dacl/train.h"

/* One work folder for the whole file: the trainers share the phantom it
 * generates there once (a run's files are moved aside where a test keeps them). */
static char work[256];

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/dacl-test-dacl-XXXXXX");
    return mkdtemp(work) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    return system(cmd) == 0 ? 0 : -1;
}

/* 32x32 patches: the up2 feature map is 8x8, so a batch of 4 has 256 feature
 * pixels; small k, anchors and bank so every part runs within a few steps. */
static void job_threads(DaclJobConfig *c, const char *method, double lambda_cl, int iterations,
                        int val_every, int threads) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"method\": {\"name\": \"%s\", \"lambda_cl\": %g, \"cl_warmup\": 0, \"knn\": [2, 4], "
             "\"anchors\": 16, \"pos_keys\": 16, \"neg_keys\": 32, \"bank_size\": 24, "
             "\"bank_insert\": 8, \"phi\": 0.3, \"lambda_cross\": 0.1}, "
             "\"train\": {\"iterations\": %d, \"batch\": 4, \"labeled_batch\": 2, \"patch\": [32, 32], "
             "\"val_every\": %d, \"checkpoint_every\": 1000, \"threads\": %d}}",
             method, lambda_cl, iterations, val_every, threads);
    dacl_config_defaults(c);
    if (dacl_config_parse(json, c, NULL, 0)) fail_msg("%s", dacl_error_message());
}

static void job(DaclJobConfig *c, const char *method, double lambda_cl, int iterations) {
    job_threads(c, method, lambda_cl, iterations, 1000, 1);
}

static void weights(DaclTrainer *t, char out[65]) {
    DaclUNet *m[2] = {dacl_trainer_model(t, 0), dacl_trainer_model(t, 1)};
    assert_non_null(m[1]);
    dacl_checkpoint_weights_sha256(m, 2, out);
}

static void run_to_end(const DaclJobConfig *c, const char *dir, char out[65]) {
    DaclTrainer *t;
    if (dacl_trainer_create(&t, c, NULL, dir)) fail_msg("%s", dacl_error_message());
    if (dacl_trainer_run(t, 0, NULL, NULL)) fail_msg("%s", dacl_error_message());
    weights(t, out);
    dacl_trainer_free(t);
}

static void test_zero_weight_is_cps_and_positive_weight_is_not(void **state) {
    (void)state;
    DaclJobConfig cps, d0, d1;
    job(&cps, "cps", 0.0, 3);
    job(&d0, "dacl", 0.0, 3);
    job(&d1, "dacl", 1.0, 3);
    char a[65], b[65], c[65];
    run_to_end(&cps, work, a);
    run_to_end(&d0, work, b);
    run_to_end(&d1, work, c);
    /* the module draws from its own seeds and adds nothing at lambda 0 */
    assert_string_equal(a, b);
    assert_string_not_equal(b, c);
}

typedef struct {
    int cl_a, cl_b, lambda, anchors, bank, dens;
    double max_loss, bank_first, bank_last, max_anchors;
} Seen;

static void on_metrics(void *ctx, long it, int n, const char *const *names, const double *values) {
    Seen *s = ctx;
    for (int i = 0; i < n; i++) {
        const char *k = names[i];
        double v = values[i];
        if (!isfinite(v)) fail_msg("iteration %ld: %s = %g", it, k, v);
        if (!strcmp(k, "loss_cl_a")) s->cl_a++, s->max_loss = fmax(s->max_loss, v);
        if (!strcmp(k, "loss_cl_b")) s->cl_b++;
        if (!strcmp(k, "lambda_cl")) s->lambda++;
        if (!strcmp(k, "cl_anchor_density_a") && v != 0.0) s->dens++;
        if (!strncmp(k, "cl_anchors_a.", 13)) s->anchors++, s->max_anchors = fmax(s->max_anchors, v);
        if (!strcmp(k, "cl_bank.LV")) {
            if (!s->bank++) s->bank_first = v;
            s->bank_last = v;
        }
    }
}

static void test_internals_are_reported(void **state) {
    (void)state;
    DaclJobConfig c;
    job(&c, "dacl", 0.5, 6);
    DaclTrainer *t;
    assert_int_equal(dacl_trainer_create(&t, &c, NULL, work), DACL_OK);
    Seen s = {0};
    DaclSink sink = {.ctx = &s, .metrics = on_metrics};
    assert_int_equal(dacl_trainer_run(t, 0, NULL, &sink), DACL_OK);
    dacl_trainer_free(t);
    assert_int_equal(s.cl_a, 6);
    assert_int_equal(s.cl_b, 6);
    assert_int_equal(s.lambda, 6);
    assert_int_equal(s.anchors, 6 * 3); /* RV, Myo, LV: no background by default */
    assert_int_equal(s.bank, 6);
    assert_true(s.max_loss > 0.0);       /* some class had anchors and negatives */
    assert_true(s.max_anchors > 0.0 && s.max_anchors <= 16.0);
    assert_true(s.dens > 0);             /* density sampling reports anchor densities */
    assert_true(s.bank_first == 0.0);    /* reported when the loss ran: before the first push */
    assert_true(s.bank_last > 0.0 && s.bank_last <= 24.0);
}

static int read_file(const char *dir, const char *name, unsigned char **buf, size_t *n) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return dacl_file_read_all(path, buf, n);
}

static void test_resume_is_exact(void **state) {
    (void)state;
    DaclJobConfig c;
    job(&c, "dacl", 0.5, 6);
    char ck[400], whole_ck[400];
    snprintf(ck, sizeof ck, "%s/checkpoint-last.bin", work);
    snprintf(whole_ck, sizeof whole_ck, "%s/whole.bin", work);
    char whole[65], split[65];
    run_to_end(&c, work, whole);
    assert_int_equal(rename(ck, whole_ck), 0);
    DaclTrainer *t;
    assert_int_equal(dacl_trainer_create(&t, &c, NULL, work), DACL_OK);
    assert_int_equal(dacl_trainer_run(t, 4, NULL, NULL), DACL_OK);
    dacl_trainer_free(t);
    DaclCheckpoint h;
    assert_int_equal(dacl_checkpoint_read(ck, &h, NULL, 0, 0, 0), DACL_OK);
    assert_int_equal(h.iteration, 4);
    assert_true(h.contrast_bytes > 0); /* heads and bank travel with the models */
    dacl_checkpoint_free(&h);
    assert_int_equal(dacl_trainer_create(&t, &c, NULL, work), DACL_OK);
    assert_int_equal(dacl_trainer_resume(t, ck), DACL_OK);
    assert_int_equal(dacl_trainer_run(t, 0, NULL, NULL), DACL_OK);
    weights(t, split);
    dacl_trainer_free(t);
    assert_string_equal(whole, split);
    /* the whole checkpoint, heads and bank included, is byte-identical */
    unsigned char *a, *b;
    size_t na, nb;
    assert_int_equal(read_file(work, "whole.bin", &a, &na), DACL_OK);
    assert_int_equal(read_file(work, "checkpoint-last.bin", &b, &nb), DACL_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    /* a CPS trainer cannot take it, with the reason named */
    DaclJobConfig cps;
    job(&cps, "cps", 0.5, 6);
    assert_int_equal(dacl_trainer_create(&t, &cps, NULL, work), DACL_OK);
    assert_int_not_equal(dacl_trainer_resume(t, ck), DACL_OK);
    assert_non_null(strstr(dacl_error_message(), "checkpoint-last.bin"));
    dacl_trainer_free(t);
}

static void test_unsupported_granularity_is_refused_by_name(void **state) {
    (void)state;
    DaclJobConfig c;
    char field[64];
    dacl_config_defaults(&c);
    assert_int_equal(dacl_config_parse("{\"method\": {\"granularity\": \"prototype\"}}", &c, field,
                                       sizeof field),
                     DACL_EINVAL);
    assert_string_equal(field, "method.granularity");
}

/* What a run reported: every metric value and validation Dice, folded into
 * one 64-bit hash of their bits, and how many there were. */
typedef struct {
    uint64_t h;
    int metrics, rounds;
} Trace;

static void fold(Trace *tr, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    tr->h = (tr->h ^ bits) * 0x100000001b3ULL;
}

static void trace_metrics(void *ctx, long it, int n, const char *const *names, const double *values) {
    Trace *tr = ctx;
    (void)names;
    fold(tr, (double)it);
    for (int i = 0; i < n; i++) fold(tr, values[i]), tr->metrics++;
}

static void trace_eval(void *ctx, const DaclEvalRound *r) {
    Trace *tr = ctx;
    fold(tr, r->mean_fg_dice);
    for (int i = 0; i < r->cases * r->classes; i++) fold(tr, r->dice[i]), fold(tr, r->hd95[i]);
    tr->rounds++;
}

/* CPS and DACL on an even thread count train the two models side by side,
 * each on half the threads: the weights, every reported loss and every
 * validation figure are those of one thread, bit for bit. */
static void test_side_by_side_equals_one_thread(void **state) {
    (void)state;
    const char *methods[2] = {"cps", "dacl"};
    for (int k = 0; k < 2; k++) {
        char ref[65] = "";
        Trace first = {0};
        const int threads[3] = {1, 2, 4};
        for (int q = 0; q < 3; q++) {
            DaclJobConfig c;
            job_threads(&c, methods[k], 0.5, 4, 2, threads[q]);
            char dir[300];
            snprintf(dir, sizeof dir, "%s/%s-%d", work, methods[k], threads[q]);
            assert_int_equal(mkdir(dir, 0755), 0);
            DaclTrainer *t;
            if (dacl_trainer_create(&t, &c, NULL, dir)) fail_msg("%s", dacl_error_message());
            Trace tr = {.h = 0xcbf29ce484222325ULL};
            DaclSink sink = {.ctx = &tr, .metrics = trace_metrics, .evaluation = trace_eval};
            if (dacl_trainer_run(t, 0, NULL, &sink)) fail_msg("%s", dacl_error_message());
            char w[65];
            weights(t, w);
            dacl_trainer_free(t);
            assert_int_equal(tr.rounds, 2 * 2); /* at iterations 2 and 4, both models */
            assert_true(tr.metrics > 4 * 10);
            if (q == 0) {
                memcpy(ref, w, sizeof ref);
                first = tr;
                continue;
            }
            if (strcmp(ref, w)) fail_msg("%s, %d threads: weights %s, one thread %s", methods[k], threads[q], w, ref);
            if (tr.h != first.h || tr.metrics != first.metrics)
                fail_msg("%s, %d threads: the reported losses or validation differ from one thread's",
                         methods[k], threads[q]);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_weight_is_cps_and_positive_weight_is_not),
        cmocka_unit_test(test_internals_are_reported),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_unsupported_granularity_is_refused_by_name),
        cmocka_unit_test(test_side_by_side_equals_one_thread),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
