/* SHA-256 against the FIPS 180-4 / NIST example vectors and sha256sum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/hash.h"

static void hex_of(const void *data, size_t n, size_t chunk, char out[65]) {
    DaclSha256 s;
    uint8_t d[32];
    dacl_sha256_init(&s);
    for (size_t i = 0; i < n; i += chunk)
        dacl_sha256_update(&s, (const char *)data + i, n - i < chunk ? n - i : chunk);
    dacl_sha256_final(&s, d);
    dacl_sha256_hex(d, out);
}

static void test_nist_vectors(void **state) {
    (void)state;
    char h[65];
    hex_of("", 0, 1, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t chunk = 1; chunk <= 64; chunk *= 4) { /* block boundaries at every split */
        hex_of(two, strlen(two), chunk, h);
        assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    static char million[1000000];
    memset(million, 'a', sizeof million);
    hex_of(million, sizeof million, 4096, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_nist_vectors)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
