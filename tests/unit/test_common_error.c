#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/error.h"

static int fails_with_einval(int x) {
    if (x < 0) return DACL_FAIL(DACL_EINVAL, "x must be >= 0, got %d", x);
    return DACL_OK;
}

static int propagates(int x) {
    DACL_TRY(fails_with_einval(x));
    return DACL_OK;
}

static void test_error_message_and_propagation(void **state) {
    (void)state;
    dacl_error_clear();
    assert_int_equal(propagates(1), DACL_OK);
    assert_string_equal(dacl_error_message(), "");
    assert_int_equal(propagates(-3), DACL_EINVAL);
    assert_int_equal(dacl_error_code(), DACL_EINVAL);
    assert_non_null(strstr(dacl_error_message(), "x must be >= 0, got -3"));
    assert_string_equal(dacl_strerror(DACL_EFORMAT), "bad file format");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_error_message_and_propagation)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
