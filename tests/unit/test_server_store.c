/* The store's generation (server/store.c), which the daemon's answer caches
 * (GET /jobs/{id}, /metrics) trust: it must move on after every write that
 * changes a row, whichever connection makes it, and stay put across reads,
 * or a client would be shown a job as it was before a change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "dacl/error.h"
#include "store.h"

typedef struct {
    char dir[64];
    Store *st;
} Fixture;

static int setup(void **state) {
    Fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dacl-store-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    if (store_open_state(&f->st, f->dir, 3, NULL) != DACL_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    Fixture *f = *state;
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

/* asserts that the generation moved (want 1) or did not (0) since *g, and
 * takes the new one */
#define MOVED(st, g, want)                                          \
    do {                                                            \
        uint64_t now_ = store_generation(st);                       \
        if (want)                                                   \
            assert_true(now_ != *(g));                              \
        else                                                        \
            assert_true(now_ == *(g));                              \
        *(g) = now_;                                                \
    } while (0)

static void test_reads_keep_it(void **state) {
    Fixture *f = *state;
    Store *st = f->st;
    long id;
    assert_int_equal(store_job_insert(st, "a", "{}", 0, 10, f->dir, &id), DACL_OK);
    uint64_t g = store_generation(st);
    StoreJob j;
    assert_int_equal(store_job_get(st, id, &j), DACL_OK);
    store_job_clear(&j);
    assert_int_equal(store_job_get(st, id + 100, &j), DACL_ENOTFOUND);
    StoreJob *jobs;
    int n;
    long total, pos, counts[JOB_NSTATUS];
    assert_int_equal(store_job_list(st, -1, 10, 0, &jobs, &n, &total), DACL_OK);
    store_jobs_free(jobs, n);
    assert_int_equal(store_job_queue_position(st, id, &pos), DACL_OK);
    assert_int_equal(store_status_counts(st, counts), DACL_OK);
    char **names;
    assert_int_equal(store_metric_names(st, id, &names, &n), DACL_OK);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    MOVED(st, &g, 0);
}

static void test_every_write_moves_it(void **state) {
    Fixture *f = *state;
    Store *st = f->st;
    uint64_t g = store_generation(st);
    long a, b, claimed;
    assert_int_equal(store_job_insert(st, "a", "{}", 0, 10, f->dir, &a), DACL_OK);
    MOVED(st, &g, 1);
    assert_int_equal(store_job_insert(st, "b", "{}", 5, 10, f->dir, &b), DACL_OK);
    MOVED(st, &g, 1); /* a's queue position changed with it */
    assert_int_equal(store_job_claim(st, &claimed), DACL_OK);
    assert_int_equal(claimed, b);
    MOVED(st, &g, 1);
    StoreMetric rows[2] = {{"loss", 1, 0.5}, {"lr", 1, 0.01}};
    assert_int_equal(store_metrics_put(st, b, rows, 2, 1, "{\"loss\":0.5}"), DACL_OK);
    MOVED(st, &g, 1);
    assert_int_equal(store_evaluation_put(st, b, 1, 0, 0.5, "{}", "{\"mean_dice\":0.5}"), DACL_OK);
    MOVED(st, &g, 1);
    CancelOutcome out;
    assert_int_equal(store_job_cancel(st, b, &out), DACL_OK);
    assert_int_equal(out, CANCEL_REQUESTED);
    MOVED(st, &g, 1);
    int interrupted, canceled;
    assert_int_equal(store_recover(st, &interrupted, &canceled), DACL_OK);
    assert_int_equal(interrupted, 1);
    MOVED(st, &g, 1);
    assert_int_equal(store_job_set_status(st, a, JOB_FAILED, "broken"), DACL_OK);
    MOVED(st, &g, 1);
    assert_int_equal(store_job_cancel(st, a, &out), DACL_OK); /* ended: no row changes */
    assert_int_equal(out, CANCEL_FINAL);
    MOVED(st, &g, 0);
    assert_int_equal(store_job_delete(st, a), DACL_OK);
    MOVED(st, &g, 1);
    assert_int_equal(store_job_delete(st, a), DACL_ENOTFOUND);
    MOVED(st, &g, 0);
}

/* sqlite3 by hand on the daemon's database: its answers must not stay as
 * they were */
static void test_another_process_moves_it(void **state) {
    Fixture *f = *state;
    Store *st = f->st;
    long id;
    assert_int_equal(store_job_insert(st, "a", "{}", 0, 10, f->dir, &id), DACL_OK);
    /* a connection's first answer moves it once (nothing to compare with) */
    for (int i = 0; i < 3; i++) store_generation(st);
    uint64_t g = store_generation(st);
    for (int i = 0; i < 4; i++) MOVED(st, &g, 0);
    char path[96];
    snprintf(path, sizeof path, "%s/dacld.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE jobs SET name = 'b'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    MOVED(st, &g, 1);
    StoreJob j;
    assert_int_equal(store_job_get(st, id, &j), DACL_OK);
    assert_string_equal(j.name, "b");
    store_job_clear(&j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_keep_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_write_moves_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_another_process_moves_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
