#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_parse_long(const char *opt, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        fprintf(stderr, "dacld: %s expects an integer in %ld..%ld, got '%s'\n", opt, lo, hi, val);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_parse_patch(const char *opt, const char *val, long *h, long *w) {
    char *end;
    errno = 0;
    long a = strtol(val, &end, 10), b = a;
    if (!errno && end != val && *end == 'x') {
        char *s = end + 1;
        b = strtol(s, &end, 10);
        if (end == s) b = -1;
    }
    if (errno || *end || a < 16 || b < 16 || a % 16 || b % 16 || a > 4096 || b > 4096) {
        fprintf(stderr, "dacld: %s expects P or HxW, multiples of 16 from 16 to 4096, got '%s'\n",
                opt, val);
        return 2;
    }
    *h = a;
    *w = b;
    return 0;
}
