/* Exact squared Euclidean distance transform with per-axis spacing.
 *
 * Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions"
 * (Theory of Computing 8, 2012): the 3D squared EDT is three 1D passes, one per
 * axis, each the lower envelope of parabolas rooted at the samples. O(n) per
 * axis and exact, so HD95 needs no search over pairs of surface voxels.
 *
 * Dims: nz, ny, nx (x fastest). Spacing (z, y, x); a pass along an axis of
 * spacing h uses the parabola h^2 (p - q)^2 + f(q). */
#include <math.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/eval.h"

/* Scratch of one 1D pass, carved from the caller's block. */
typedef struct EdtLine {
    double *in;  /* [m] the line's samples, copied out (strided axes) */
    double *out; /* [m] the line's result */
    double *z;   /* [m+1] boundaries between envelope parabolas */
    int *v;      /* [m] roots of the envelope parabolas */
} EdtLine;

static int max3(int a, int b, int c) {
    int m = a > b ? a : b;
    return m > c ? m : c;
}

size_t dacl_edt_scratch_bytes(int nz, int ny, int nx) {
    size_t m = (size_t)max3(nz, ny, nx);
    return (3 * m + 1) * sizeof(double) + m * sizeof(int);
}

static EdtLine edt_line_carve(void *scratch, int m) {
    EdtLine l;
    l.in = scratch;
    l.out = l.in + m;
    l.z = l.out + m;
    l.v = (int *)(l.z + m + 1);
    return l;
}

/* out[p] = min_q in[q] + h2 (p - q)^2 over the m samples of one line.
 * Infinite samples root no parabola: they can never be a minimum, and skipping
 * them keeps inf - inf out of the intersection formula. A line without a finite
 * sample is copied through as it is (all infinite). */
static void edt_1d(const double *in, double *out, int m, double h2, double *z, int *v) {
    int k = -1;
    for (int q = 0; q < m; q++) {
        if (isinf(in[q])) continue;
        double fq = in[q] + h2 * (double)q * (double)q;
        double s = -INFINITY;
        while (k >= 0) {
            int r = v[k];
            double fr = in[r] + h2 * (double)r * (double)r;
            /* where parabola q overtakes parabola r, in sample units */
            s = (fq - fr) / (2.0 * h2 * (double)(q - r));
            if (s > z[k]) break;
            k--;
            s = -INFINITY;
        }
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = INFINITY;
    }
    if (k < 0) {
        memcpy(out, in, (size_t)m * sizeof(double));
        return;
    }
    k = 0;
    for (int p = 0; p < m; p++) {
        while (z[k + 1] < (double)p) k++;
        double d = (double)(p - v[k]);
        out[p] = in[v[k]] + h2 * d * d;
    }
}

/* One pass along an axis of length m whose samples are `stride` apart, over
 * `count` lines; line j starts at base(j) = (j / inner) * inner * m + j % inner
 * where inner = stride (the lines of one outer block are neighbours in memory). */
static void edt_pass(double *f, int m, size_t stride, size_t count, double h2, EdtLine *l) {
    if (m == 1) return; /* a single sample is its own envelope */
    size_t inner = stride;
    for (size_t j = 0; j < count; j++) {
        double *base = f + (j / inner) * inner * (size_t)m + j % inner;
        if (stride == 1) {
            edt_1d(base, l->out, m, h2, l->z, l->v);
            memcpy(base, l->out, (size_t)m * sizeof(double));
            continue;
        }
        for (int p = 0; p < m; p++) l->in[p] = base[(size_t)p * stride];
        edt_1d(l->in, l->out, m, h2, l->z, l->v);
        for (int p = 0; p < m; p++) base[(size_t)p * stride] = l->out[p];
    }
}

int dacl_edt_sq(double *f, int nz, int ny, int nx, const double spacing[3], void *scratch) {
    if (!f || !scratch) return DACL_FAIL(DACL_EINVAL, "edt: NULL buffer");
    if (nz < 1 || ny < 1 || nx < 1)
        return DACL_FAIL(DACL_EINVAL, "edt: bad shape %dx%dx%d", nz, ny, nx);
    double h[3] = {1.0, 1.0, 1.0};
    if (spacing) {
        for (int a = 0; a < 3; a++) {
            if (!(spacing[a] > 0.0) || !isfinite(spacing[a]))
                return DACL_FAIL(DACL_EINVAL, "edt: spacing[%d] = %g must be > 0 and finite",
                                 a, spacing[a]);
            h[a] = spacing[a];
        }
    }
    EdtLine l = edt_line_carve(scratch, max3(nz, ny, nx));
    size_t plane = (size_t)ny * (size_t)nx;
    size_t n = (size_t)nz * plane;
    /* x first: contiguous lines, and it turns the 0/inf seeds into finite values
     * on every row with a feature, so later passes skip fewer lines. */
    edt_pass(f, nx, 1, n / (size_t)nx, h[2] * h[2], &l);
    edt_pass(f, ny, (size_t)nx, n / (size_t)ny, h[1] * h[1], &l);
    edt_pass(f, nz, plane, plane, h[0] * h[0], &l);
    return DACL_OK;
}
