/* Segmentation metrics with medpy.metric.binary's definitions (see eval.h).
 *
 * Dims: nz, ny, nx (x fastest), n = nz*ny*nx voxels; C classes.
 * One call does:
 *   1. one pass over both label volumes: a byte map of surface voxels (bit 0:
 *      prediction, bit 1: truth; a voxel is surface when a 6-neighbour has
 *      another class or lies outside the array) and per-class counts;
 *   2. one allocation: the EDT buffer [n] doubles plus room for the largest
 *      class's pooled surface distances;
 *   3. per class with both masks non-empty: EDT seeded at the truth surface,
 *      read at the prediction surface (A→B), then the other way round (B→A);
 *      HD95 by selection, not a sort.
 * A class surface is the voxels of the class whose flag is set: for a voxel of
 * class c, "some 6-neighbour is not c" is exactly "the erosion by the cross
 * removed it", so one map serves every class. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/eval.h"

enum { SURF_PRED = 1, SURF_GT = 2 };

/* Per-class voxel counts from the single pass. */
typedef struct ClassCounts {
    int64_t pred, gt, both;     /* |A|, |B|, |A∩B| */
    int64_t pred_surf, gt_surf; /* surface voxels of A, of B */
} ClassCounts;

/* Everything one call shares across classes. lut maps a raw byte to its class
 * (the identity for label volumes, nonzero → 1 for binary masks). */
typedef struct MetricsCtx {
    const uint8_t *pred, *gt; /* [n] */
    const uint8_t *lut;       /* [256] */
    const double *spacing;    /* (z, y, x) or NULL */
    int nz, ny, nx;
    size_t n;
    uint8_t *surf;   /* [n] SURF_PRED | SURF_GT */
    double *edt;     /* [n] */
    double *dist;    /* [cap] pooled surface distances of one class */
    void *scratch;   /* dacl_edt_scratch_bytes */
} MetricsCtx;

static int check_shape(const void *pred, const void *gt, int nz, int ny, int nx,
                       const double spacing[3], size_t *n) {
    if (!pred || !gt) return DACL_FAIL(DACL_EINVAL, "metrics: NULL volume");
    if (nz < 1 || ny < 1 || nx < 1)
        return DACL_FAIL(DACL_EINVAL, "metrics: bad shape %dx%dx%d", nz, ny, nx);
    size_t plane = (size_t)ny * (size_t)nx;
    /* the workspace holds 9 bytes a voxel and up to 16 more for distances */
    if ((size_t)nz > SIZE_MAX / 32 / plane)
        return DACL_FAIL(DACL_EINVAL, "metrics: volume %dx%dx%d too large", nz, ny, nx);
    if (spacing) {
        for (int a = 0; a < 3; a++)
            if (!(spacing[a] > 0.0) || !isfinite(spacing[a]))
                return DACL_FAIL(DACL_EINVAL,
                                 "metrics: spacing[%d] = %g must be > 0 and finite", a,
                                 spacing[a]);
    }
    *n = (size_t)nz * plane;
    return DACL_OK;
}

/* 1 when voxel (z, y, x) of class c has a 6-neighbour outside the array or of
 * another class: what binary_erosion(border_value=0) with the cross removes. */
static int on_surface(const uint8_t *lab, const uint8_t *lut, int z, int y, int x, int nz,
                      int ny, int nx, size_t i) {
    if (z == 0 || y == 0 || x == 0 || z == nz - 1 || y == ny - 1 || x == nx - 1) return 1;
    size_t row = (size_t)nx, plane = (size_t)ny * (size_t)nx;
    uint8_t c = lut[lab[i]];
    return lut[lab[i - 1]] != c || lut[lab[i + 1]] != c || lut[lab[i - row]] != c ||
           lut[lab[i + row]] != c || lut[lab[i - plane]] != c || lut[lab[i + plane]] != c;
}

/* Step 1: the surface map and the counts of every class (counts: [256]). */
static void scan_volumes(MetricsCtx *ctx, ClassCounts *counts) {
    const uint8_t *lut = ctx->lut;
    size_t i = 0;
    for (int z = 0; z < ctx->nz; z++)
        for (int y = 0; y < ctx->ny; y++)
            for (int x = 0; x < ctx->nx; x++, i++) {
                uint8_t a = lut[ctx->pred[i]], b = lut[ctx->gt[i]];
                uint8_t s = 0;
                if (on_surface(ctx->pred, lut, z, y, x, ctx->nz, ctx->ny, ctx->nx, i)) {
                    s |= SURF_PRED;
                    counts[a].pred_surf++;
                }
                if (on_surface(ctx->gt, lut, z, y, x, ctx->nz, ctx->ny, ctx->nx, i)) {
                    s |= SURF_GT;
                    counts[b].gt_surf++;
                }
                ctx->surf[i] = s;
                counts[a].pred++;
                counts[b].gt++;
                if (a == b) counts[a].both++;
            }
}

/* EDT buffer <- 0 on the surface of class c of `lab` (flag `bit`), inf elsewhere. */
static void seed_surface(MetricsCtx *ctx, const uint8_t *lab, uint8_t bit, uint8_t c) {
    for (size_t i = 0; i < ctx->n; i++)
        ctx->edt[i] = (ctx->lut[lab[i]] == c && (ctx->surf[i] & bit)) ? 0.0 : INFINITY;
}

/* Append sqrt(edt) at the surface voxels of class c of `lab` to dist[*k...];
 * returns their sum. */
static double gather_surface(MetricsCtx *ctx, const uint8_t *lab, uint8_t bit, uint8_t c,
                             size_t *k) {
    double sum = 0.0;
    for (size_t i = 0; i < ctx->n; i++) {
        if (ctx->lut[lab[i]] != c || !(ctx->surf[i] & bit)) continue;
        double d = sqrt(ctx->edt[i]);
        ctx->dist[(*k)++] = d;
        sum += d;
    }
    return sum;
}

/* The k-th smallest of a[0..n-1] (Wirth's selection, Hoare partition, so runs of
 * equal distances -- common on a voxel grid -- split evenly). Reorders a so that
 * a[k] is in place and a[k+1..] >= a[k]. */
static double select_kth(double *a, ptrdiff_t n, ptrdiff_t k) {
    ptrdiff_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = a[k];
        ptrdiff_t i = lo, j = hi;
        do {
            while (a[i] < pivot) i++;
            while (pivot < a[j]) j--;
            if (i <= j) {
                double t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k) lo = i;
        if (k < i) hi = j;
    }
    return a[k];
}

/* numpy.percentile(a, q), method "linear", with numpy's own arithmetic for the
 * virtual index and its two-sided lerp, so results agree to the last bits. */
static double percentile_linear(double *a, size_t n, double q) {
    double quantile = q / 100.0;
    double vi = (double)n * quantile + (1.0 + quantile * (1.0 - 1.0 - 1.0)) - 1.0;
    if (vi >= (double)(n - 1)) return select_kth(a, (ptrdiff_t)n, (ptrdiff_t)n - 1);
    if (vi < 0.0) return select_kth(a, (ptrdiff_t)n, 0);
    ptrdiff_t lo = (ptrdiff_t)floor(vi);
    double gamma = vi - (double)lo;
    double below = select_kth(a, (ptrdiff_t)n, lo);
    double above = a[lo + 1];
    for (size_t i = (size_t)lo + 2; i < n; i++)
        if (a[i] < above) above = a[i];
    double diff = above - below;
    return gamma >= 0.5 ? above - diff * (1.0 - gamma) : below + diff * gamma;
}

static void set_overlap(const ClassCounts *k, DaclClassMetrics *m) {
    m->pred_voxels = k->pred;
    m->gt_voxels = k->gt;
    if (k->pred == 0 && k->gt == 0) {
        m->dice = m->jaccard = 1.0; /* eval.h: an absent class correctly absent */
    } else {
        m->dice = 2.0 * (double)k->both / (double)(k->pred + k->gt);
        m->jaccard = (double)k->both / (double)(k->pred + k->gt - k->both);
    }
    m->hd95 = m->asd = m->assd = NAN;
    m->distances_defined = 0;
}

/* Step 3 for class c (both masks non-empty, hence both surfaces non-empty). */
static int class_distances(MetricsCtx *ctx, uint8_t c, const ClassCounts *k,
                           DaclClassMetrics *m) {
    size_t count = 0;
    seed_surface(ctx, ctx->gt, SURF_GT, c);
    DACL_TRY(dacl_edt_sq(ctx->edt, ctx->nz, ctx->ny, ctx->nx, ctx->spacing, ctx->scratch));
    double sum_ab = gather_surface(ctx, ctx->pred, SURF_PRED, c, &count);
    seed_surface(ctx, ctx->pred, SURF_PRED, c);
    DACL_TRY(dacl_edt_sq(ctx->edt, ctx->nz, ctx->ny, ctx->nx, ctx->spacing, ctx->scratch));
    double sum_ba = gather_surface(ctx, ctx->gt, SURF_GT, c, &count);
    if (count != (size_t)(k->pred_surf + k->gt_surf))
        return DACL_FAIL(DACL_EINTERNAL, "metrics: class %d gathered %zu surface voxels of %lld",
                         c, count, (long long)(k->pred_surf + k->gt_surf));
    double asd_ab = sum_ab / (double)k->pred_surf;
    double asd_ba = sum_ba / (double)k->gt_surf;
    m->asd = asd_ab;
    m->assd = 0.5 * (asd_ab + asd_ba);
    m->hd95 = percentile_linear(ctx->dist, count, 95.0);
    m->distances_defined = 1;
    return DACL_OK;
}

/* Classes 1..num_classes-1 of the bytes mapped through ctx->lut into out[c-1]. */
static int metrics_run(MetricsCtx *ctx, int num_classes, DaclClassMetrics *out) {
    ClassCounts counts[256];
    memset(counts, 0, sizeof counts);
    ctx->surf = malloc(ctx->n);
    if (!ctx->surf) return DACL_FAIL(DACL_ENOMEM, "metrics: surface map of %zu bytes", ctx->n);
    scan_volumes(ctx, counts);

    size_t cap = 0;
    for (int c = 1; c < num_classes; c++) {
        set_overlap(&counts[c], &out[c - 1]);
        size_t s = (size_t)(counts[c].pred_surf + counts[c].gt_surf);
        if (counts[c].pred > 0 && counts[c].gt > 0 && s > cap) cap = s;
    }
    int rc = DACL_OK;
    if (cap > 0) {
        size_t bytes = (ctx->n + cap) * sizeof(double) +
                       dacl_edt_scratch_bytes(ctx->nz, ctx->ny, ctx->nx);
        ctx->edt = malloc(bytes);
        if (!ctx->edt) {
            free(ctx->surf);
            return DACL_FAIL(DACL_ENOMEM, "metrics: workspace of %zu bytes", bytes);
        }
        ctx->dist = ctx->edt + ctx->n;
        ctx->scratch = ctx->dist + cap;
        for (int c = 1; c < num_classes && rc == DACL_OK; c++)
            if (counts[c].pred > 0 && counts[c].gt > 0)
                rc = class_distances(ctx, (uint8_t)c, &counts[c], &out[c - 1]);
        free(ctx->edt);
    }
    free(ctx->surf);
    return rc;
}

int dacl_metrics_volume(const uint8_t *pred, const uint8_t *gt, int nz, int ny, int nx,
                        const double spacing[3], int num_classes, DaclClassMetrics *out) {
    size_t n;
    DACL_TRY(check_shape(pred, gt, nz, ny, nx, spacing, &n));
    if (num_classes < 2 || num_classes > 256 || !out)
        return DACL_FAIL(DACL_EINVAL, "metrics: num_classes = %d must be in 2..256",
                         num_classes);
    for (size_t i = 0; i < n; i++) {
        if (pred[i] >= num_classes || gt[i] >= num_classes)
            return DACL_FAIL(DACL_EINVAL,
                             "metrics: label %d at voxel %zu not below num_classes = %d",
                             pred[i] >= num_classes ? pred[i] : gt[i], i, num_classes);
    }
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (uint8_t)v;
    MetricsCtx ctx = {.pred = pred, .gt = gt, .lut = lut, .spacing = spacing,
                      .nz = nz, .ny = ny, .nx = nx, .n = n};
    return metrics_run(&ctx, num_classes, out);
}

int dacl_metrics_binary(const uint8_t *pred, const uint8_t *gt, int nz, int ny, int nx,
                        const double spacing[3], DaclClassMetrics *out) {
    size_t n;
    DACL_TRY(check_shape(pred, gt, nz, ny, nx, spacing, &n));
    if (!out) return DACL_FAIL(DACL_EINVAL, "metrics: NULL output");
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = v != 0;
    MetricsCtx ctx = {.pred = pred, .gt = gt, .lut = lut, .spacing = spacing,
                      .nz = nz, .ny = ny, .nx = nx, .n = n};
    return metrics_run(&ctx, 2, out);
}

int dacl_metrics_mean(const DaclClassMetrics *m, int n, DaclMetricsMean *out) {
    if (!m || !out || n < 1) return DACL_FAIL(DACL_EINVAL, "metrics mean: %d classes", n);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        out->dice += m[i].dice;
        out->jaccard += m[i].jaccard;
        if (!m[i].distances_defined) continue;
        out->hd95 += m[i].hd95;
        out->asd += m[i].asd;
        out->assd += m[i].assd;
        out->distances_defined++;
    }
    out->classes = n;
    out->distances_undefined = n - out->distances_defined;
    out->dice /= n;
    out->jaccard /= n;
    if (out->distances_defined > 0) {
        out->hd95 /= out->distances_defined;
        out->asd /= out->distances_defined;
        out->assd /= out->distances_defined;
    } else {
        out->hd95 = out->asd = out->assd = NAN;
    }
    return DACL_OK;
}

/* {"dice", "jaccard", "hd95", "asd"} with the distances null when undefined;
 * NULL when cJSON runs out of memory. */
static cJSON *json_scores(double dice, double jaccard, double hd95, double asd, int defined) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddNumberToObject(o, "dice", dice) &&
             cJSON_AddNumberToObject(o, "jaccard", jaccard);
    if (ok && defined)
        ok = cJSON_AddNumberToObject(o, "hd95", hd95) && cJSON_AddNumberToObject(o, "asd", asd);
    else if (ok)
        ok = cJSON_AddNullToObject(o, "hd95") && cJSON_AddNullToObject(o, "asd");
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int dacl_metrics_to_json(const DaclClassMetrics *m, int n, const DaclMetricsMean *mean,
                         cJSON **out) {
    if (!m || !out || n < 1) return DACL_FAIL(DACL_EINVAL, "metrics json: %d classes", n);
    DaclMetricsMean own;
    if (!mean) {
        DACL_TRY(dacl_metrics_mean(m, n, &own));
        mean = &own;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *classes = root ? cJSON_AddObjectToObject(root, "classes") : NULL;
    int ok = classes != NULL;
    for (int i = 0; i < n && ok; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i + 1);
        cJSON *c = json_scores(m[i].dice, m[i].jaccard, m[i].hd95, m[i].asd,
                               m[i].distances_defined);
        ok = c && cJSON_AddItemToObject(classes, key, c);
        if (c && !ok) cJSON_Delete(c);
    }
    cJSON *avg = ok ? json_scores(mean->dice, mean->jaccard, mean->hd95, mean->asd,
                                  mean->distances_defined > 0)
                    : NULL;
    ok = avg && cJSON_AddNumberToObject(avg, "distances_missing", mean->distances_undefined);
    if (ok) ok = cJSON_AddItemToObject(root, "mean", avg);
    if (avg && !ok) cJSON_Delete(avg);
    if (!ok) {
        cJSON_Delete(root);
        return DACL_FAIL(DACL_ENOMEM, "metrics json: out of memory");
    }
    *out = root;
    return DACL_OK;
}
