/* The job config parser: defaults, every kind of rejection naming its field,
 * round trip through JSON, and the hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/nn.h"

static void test_defaults_are_the_papers(void **state) {
    (void)state;
    DaclJobConfig c;
    char field[64];
    assert_int_equal(dacl_config_parse("{}", &c, field, sizeof field), DACL_OK);
    assert_int_equal(c.method.name, DACL_METHOD_DACL);
    assert_true(c.method.tau == 0.4 && c.method.phi == 0.8 && c.method.lambda_cross == 1.0);
    assert_int_equal(c.method.anchors, 256);
    assert_int_equal(c.method.bank_size, 1000);
    assert_int_equal(c.method.nknn, 3);
    assert_int_equal(c.method.knn[2], 32);
    assert_int_equal(c.method.feature_layer, DACL_FEAT_UP2);
    assert_int_equal(c.method.cl_warmup, 1000);
    assert_int_equal(c.train.iterations, 30000);
    assert_int_equal(c.train.batch, 24);
    assert_int_equal(c.train.labeled_batch, 12);
    assert_int_equal(c.train.patch[0], 256);
    assert_true(c.train.lr == 0.01 && c.train.momentum == 0.9 && c.train.weight_decay == 1e-4);
    assert_string_equal(c.dataset.path, "phantom:cardiac");
}

static void test_values_are_read(void **state) {
    (void)state;
    DaclJobConfig c;
    const char *j = "{\"name\": \"acdc-7\", \"dataset\": {\"path\": \"acdc\", \"labeled\": 7},"
                    " \"method\": {\"name\": \"cps\", \"cross_schedule\": \"ramp\", \"knn\": [4, 9],"
                    " \"cross_on_labeled\": true, \"feature_layer\": \"bottleneck\"},"
                    " \"train\": {\"patch\": [128, 96], \"batch\": 8, \"labeled_batch\": 4,"
                    " \"seed\": 42, \"lr\": 0.02}}";
    assert_int_equal(dacl_config_parse(j, &c, NULL, 0), DACL_OK);
    assert_string_equal(c.name, "acdc-7");
    assert_string_equal(c.dataset.path, "acdc");
    assert_int_equal(c.dataset.labeled, 7);
    assert_int_equal(c.method.name, DACL_METHOD_CPS);
    assert_int_equal(c.method.cross_schedule, DACL_SCHED_RAMP);
    assert_int_equal(c.method.cross_on_labeled, 1);
    assert_int_equal(c.method.nknn, 2);
    assert_int_equal(c.method.knn[1], 9);
    assert_int_equal(c.method.feature_layer, DACL_FEAT_BOTTLENECK);
    assert_int_equal(c.train.patch[0], 128);
    assert_int_equal(c.train.patch[1], 96);
    assert_int_equal((int)c.train.seed, 42);
    assert_true(c.train.lr == 0.02);
}

/* Each bad config must fail with DACL_EINVAL and name the field. */
static void test_rejections_name_the_field(void **state) {
    (void)state;
    static const struct {
        const char *json, *field, *words;
    } cases[] = {
        {"{\"method\": {\"tua\": 0.4}}", "method.tua", "unknown field"},
        {"{\"bogus\": 1}", "bogus", "unknown field"},
        {"{\"method\": {\"tau\": -1}}", "method.tau", "must be in"},
        {"{\"method\": {\"tau\": \"0.4\"}}", "method.tau", "expected a number"},
        {"{\"method\": {\"name\": \"fixmatch\"}}", "method.name", "supervised, cps, dacl"},
        {"{\"method\": {\"knn\": [16, 8]}}", "method.knn[1]", "increase"},
        {"{\"method\": {\"knn\": []}}", "method.knn", "list"},
        {"{\"method\": {\"bank\": 1}}", "method.bank", "true or false"},
        {"{\"train\": {\"patch\": [100, 128]}}", "train.patch", "multiples of 16"},
        {"{\"train\": {\"batch\": 2.5}}", "train.batch", "fraction"},
        {"{\"train\": {\"batch\": 0}}", "train.batch", "must be in"},
        {"{\"train\": {\"labeled_batch\": 30}}", "train.labeled_batch", "cannot exceed"},
        {"{\"train\": {\"labeled_batch\": 24}}", "train.labeled_batch", "unlabeled"},
        {"{\"train\": \"fast\"}", "train", "expected an object"},
        {"{\"name\": \"\"}", "name", "1 to 255"},
        {"{\"method\": {\"bank_size\": 16}}", "method.bank_size", "largest k"},
        {"[1, 2]", "", "JSON object"},
        {"{\"train\": {", "", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        DaclJobConfig c;
        memset(&c, 0x5a, sizeof c);
        DaclJobConfig before = c;
        char field[64];
        int rc = dacl_config_parse(cases[i].json, &c, field, sizeof field);
        if (rc != DACL_EINVAL || strcmp(field, cases[i].field) ||
            !strstr(dacl_error_message(), cases[i].words))
            fail_msg("config %s: rc %d field '%s' message '%s'", cases[i].json, rc, field,
                     dacl_error_message());
        assert_memory_equal(&c, &before, sizeof c); /* nothing half-written */
    }
}

static void test_supervised_may_use_only_labeled(void **state) {
    (void)state;
    DaclJobConfig c;
    assert_int_equal(dacl_config_parse("{\"method\": {\"name\": \"supervised\"}, \"train\": "
                                       "{\"batch\": 12, \"labeled_batch\": 12}}",
                                       &c, NULL, 0),
                     DACL_OK);
}

static void test_round_trip_and_hash(void **state) {
    (void)state;
    DaclJobConfig a, b;
    assert_int_equal(dacl_config_parse("{\"method\": {\"positiveness\": \"literal\", \"knn\": [8]},"
                                       " \"train\": {\"iterations\": 500, \"seed\": 7}}",
                                       &a, NULL, 0),
                     DACL_OK);
    char *js = dacl_config_to_json(&a);
    assert_non_null(js);
    assert_int_equal(dacl_config_parse(js, &b, NULL, 0), DACL_OK);
    free(js);
    assert_memory_equal(&a, &b, sizeof a);
    char ha[17], hb[17];
    dacl_config_hash(&a, ha);
    dacl_config_hash(&b, hb);
    assert_string_equal(ha, hb);
    assert_int_equal(strlen(ha), 16);
    /* threads, name and the reporting cadence do not change what is computed */
    b.train.threads = 7;
    b.train.val_every = 3;
    strcpy(b.name, "other");
    dacl_config_hash(&b, hb);
    assert_string_equal(ha, hb);
    /* anything that changes the weights does */
    b.train.seed = 8;
    dacl_config_hash(&b, hb);
    assert_string_not_equal(ha, hb);
    b = a;
    b.method.positiveness = DACL_POS_WEIGHTED;
    dacl_config_hash(&b, hb);
    assert_string_not_equal(ha, hb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_papers),
        cmocka_unit_test(test_values_are_read),
        cmocka_unit_test(test_rejections_name_the_field),
        cmocka_unit_test(test_supervised_may_use_only_labeled),
        cmocka_unit_test(test_round_trip_and_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
