/* Shared by the contrastive module's tests (test_method_contrast*.c):
 * buffers, random unit rows, a small job config and the small module's
 * shapes. Include after <cmocka.h>. */
#ifndef TEST_CONTRAST_UTIL_H
#define TEST_CONTRAST_UTIL_H

#include <math.h>
#include <stdlib.h>

#include "dacl/config.h"
#include "dacl/method.h"
#include "dacl/nn.h"

#define HID DACL_HEAD_HIDDEN

/* the small module: 2 images of 6 x 6 x 6 features, classes 0 (ignored), 1, 2 */
enum { MN = 2, MCF = 6, MFH = 6, MFW = 6, MHW = MFH * MFW, MK = 3 };

static inline float *fnew(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static inline void fill_normal(DaclRng *r, float *v, size_t n, double sd) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(sd * dacl_rng_normal(r));
}

static inline void normalize_rows(float *v, int n, int d) {
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += (double)v[i * d + k] * v[i * d + k];
        for (int k = 0; k < d; k++) v[i * d + k] = (float)(v[i * d + k] / sqrt(s));
    }
}

static inline void random_units(DaclRng *r, float *v, int n, int d) {
    fill_normal(r, v, (size_t)n * d, 1.0);
    normalize_rows(v, n, d);
}

/* A config for small tests: two foreground classes and a background. */
static inline DaclJobConfig small_config(DaclPositiveness mode) {
    DaclJobConfig c;
    dacl_config_defaults(&c);
    c.method.anchors = 5, c.method.pos_keys = 6, c.method.neg_keys = 1000;
    c.method.bank_size = 10, c.method.bank_insert = 4;
    c.method.knn[0] = 2, c.method.knn[1] = 4, c.method.nknn = 2;
    c.method.proj_dim = 8;
    c.method.positiveness = mode;
    c.method.max_pixels = 100000;
    c.train.seed = 42;
    return c;
}

#endif
