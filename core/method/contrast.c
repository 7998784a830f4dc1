/* The DACL contrastive module (method.md §3): per-pixel classes, the
 * projection head, density-guided sampling, the soft contrastive loss and
 * its gradient into the U-Net's feature map, the shared class memory bank
 * and its checkpoint bytes.
 *
 * Dims: N images, Cf feature channels, h x w feature map, HW = h*w,
 * P = N*HW feature pixels, K classes, D = proj_dim, R embedded rows (the
 * pixels the loss reads, at most max_pixels a class, grouped by class),
 * q anchors, j negatives, L bank entries of a class.
 *
 * One loss per model: classes -> rows -> head forward (R rows) -> per class
 * densities, anchors, keys, centre -> negatives -> per class loss and
 * anchor gradients -> head backward (anchors only) -> dfeat [N,Cf,HW].
 * Every random draw comes from a generator keyed by (train.seed, iteration,
 * model, class, purpose), so nothing random is state and a resumed run draws
 * the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contrast_internal.h"
#include "dacl/error.h"
#include "dacl/method.h"

enum { RNG_SAMPLE = 1, RNG_ANCHORS, RNG_KEYS, RNG_BANK_KEYS, RNG_NEG, RNG_INSERT };
#define BANK_MODEL 255 /* the "model" of the bank's draw, which takes from both */

typedef struct {
    float d;
    int32_t i;
} Ranked;

/* One model's head and its last loss: what the backward, the bank and the
 * inspection read. Class k's anchors and keys sit at off[k] in their
 * arrays (a class has at most as many as rows). */
typedef struct {
    DaclHead *head;
    float *dfeat;        /* [N,Cf,HW] */
    int has_grad, pending, nrows;
    int32_t *rows;       /* [rmax] pixel index of each row */
    int *off;            /* [K+1] */
    int *npix;           /* [K] class pixels before max_pixels */
    float *dens;         /* [rmax] NaN: not computed */
    int32_t *anchors, *keys; /* [rmax] rows */
    int *na, *nkeys, *nbk, *nneg, *active;
    int32_t *bkeys;      /* [K, kg_cap] bank slots */
    int32_t *neg;        /* [K, j_cap] rows */
    float *centre;       /* [K, D] */
    double *loss;        /* [K] */
} Model;

struct DaclContrast {
    int models, classes, first, D, cf, fh, fw, HW, max_n, P, rmax;
    int nq, kb, kg, jneg, insert, max_px, density, use_bank, neg_anchors;
    int knn[DACL_MAX_KNN], nk, kmax, kg_cap, j_cap, bank_size;
    double tau;
    DaclPositiveness mode;
    uint64_t seed;
    DaclPool *pool;
    DaclBank *bank;
    Model m[2];
    float *bdens;        /* [K, bank_size] bank densities against the bank */
    uint64_t *bver;      /* [K] the bank version bdens was computed at */
    int *bvalid;         /* [K] */
    int32_t *bucket;     /* [P] pixels by class */
    int32_t *perm;       /* [max(P, models * rmax)] draws */
    Ranked *ranked;      /* [max(rmax, bank_size)] */
    float *dws, *lws;    /* density and class-loss workspaces */
    float *gm, *gn;      /* [nq_cap, D] anchors, [j_cap, D] negatives, gathered */
    float *gdm;          /* [rmax, D] anchor gradients, compacted */
    int32_t *back;       /* [rmax] their rows */
    double *cacc;        /* [D] the centre's sum */
};

static int imin(int a, int b) { return a < b ? a : b; }

static void rng_for(DaclRng *r, const DaclContrast *c, long iter, int model, int cls, int purpose) {
    uint64_t h = dacl_hash64(c->seed ^ 0x6461636c636f6e74ULL); /* "daclcont" */
    h = dacl_hash64(h ^ (uint64_t)iter);
    h = dacl_hash64(h ^ ((uint64_t)model << 32 | (uint64_t)cls << 8 | (uint64_t)purpose));
    dacl_rng_seed(r, h);
}

/* a[0..n) becomes a uniform draw of n of a[0..total) (partial Fisher-Yates) */
static void draw(int32_t *a, int total, int n, DaclRng *r) {
    for (int i = 0; i < n; i++) {
        int j = i + (int)dacl_rng_below(r, (uint32_t)(total - i));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* ascending density, ties by row: the anchors' order */
static int cmp_low(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* descending density, ties by row: the keys' order */
static int cmp_high(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* ------------------------------------------------------------ classes -- */

void dacl_contrast_classes(uint8_t *cls, const uint8_t *labels, int L, const float *probs_other, int N,
                           int NC, int H, int W, int fh, int fw, double phi, int background) {
    const size_t HWin = (size_t)H * W;
    for (int n = 0; n < N; n++)
        for (int y = 0; y < fh; y++) {
            int sy = (int)((long)y * H / fh);
            for (int x = 0; x < fw; x++) {
                size_t src = (size_t)sy * W + (size_t)((long)x * W / fw);
                int k = 255;
                if (n < L) {
                    uint8_t v = labels[(size_t)n * HWin + src];
                    if (v < NC) k = v;
                } else {
                    const float *p = probs_other + (size_t)n * NC * HWin + src;
                    int best = 0;
                    for (int c = 1; c < NC; c++)
                        if (p[c * HWin] > p[best * HWin]) best = c;
                    if (p[best * HWin] > phi) k = best;
                }
                if (k == 0 && !background) k = 255;
                cls[((size_t)n * fh + y) * fw + x] = (uint8_t)k;
            }
        }
}

/* --------------------------------------------------------- set-up -- */

int dacl_contrast_feature_shape(const DaclUNetConfig *net, int layer, int H, int W, int *c, int *h,
                                int *w) {
    if (layer < DACL_FEAT_BOTTLENECK || layer > DACL_FEAT_UP4)
        return DACL_FAIL(DACL_EINVAL, "method.feature_layer: unknown layer %d", layer);
    /* bottleneck: level 4; up1..up4: levels 3..0 */
    int level = layer == DACL_FEAT_BOTTLENECK ? 4 : 4 - (layer - DACL_FEAT_BOTTLENECK);
    *c = net->widths[level];
    *h = H >> level;
    *w = W >> level;
    return DACL_OK;
}

int dacl_contrast_check_config(const DaclJobConfig *cfg) {
    if (cfg->method.name != DACL_METHOD_DACL) return DACL_OK;
    if (cfg->method.granularity == DACL_GRAN_PROTOTYPE)
        return DACL_FAIL(DACL_EINVAL, "method.granularity: \"prototype\" is not supported yet; use "
                                      "\"pixel\"");
    if (cfg->method.nknn < 1) return DACL_FAIL(DACL_EINVAL, "method.knn: needs at least one k");
    return DACL_OK;
}

static void model_free(Model *md) {
    dacl_head_free(md->head);
    free(md->dfeat), free(md->rows), free(md->off), free(md->npix), free(md->dens);
    free(md->anchors), free(md->keys), free(md->na), free(md->nkeys), free(md->nbk);
    free(md->nneg), free(md->active), free(md->bkeys), free(md->neg), free(md->centre), free(md->loss);
}

void dacl_contrast_free(DaclContrast *c) {
    if (!c) return;
    for (int m = 0; m < c->models; m++) model_free(&c->m[m]);
    dacl_bank_free(c->bank);
    free(c->bdens), free(c->bver), free(c->bvalid), free(c->bucket), free(c->perm), free(c->ranked);
    free(c->dws), free(c->lws), free(c->gm), free(c->gn), free(c->gdm), free(c->back), free(c->cacc);
    free(c);
}

static int model_alloc(DaclContrast *c, Model *md) {
    const size_t K = (size_t)c->classes, R = (size_t)c->rmax;
    DACL_TRY(dacl_head_create(&md->head, c->cf, c->D, c->max_n, c->HW, c->rmax, c->rmax,
                              dacl_pool_threads(c->pool)));
    md->dfeat = malloc((size_t)c->P * c->cf * sizeof(float));
    md->rows = malloc(R * sizeof(int32_t));
    md->off = calloc(K + 1, sizeof(int));
    md->npix = calloc(K, sizeof(int));
    md->dens = malloc(R * sizeof(float));
    md->anchors = malloc(R * sizeof(int32_t));
    md->keys = malloc(R * sizeof(int32_t));
    md->na = calloc(K, sizeof(int));
    md->nkeys = calloc(K, sizeof(int));
    md->nbk = calloc(K, sizeof(int));
    md->nneg = calloc(K, sizeof(int));
    md->active = calloc(K, sizeof(int));
    md->bkeys = malloc(K * (size_t)(c->kg_cap > 0 ? c->kg_cap : 1) * sizeof(int32_t));
    md->neg = malloc(K * (size_t)c->j_cap * sizeof(int32_t));
    md->centre = calloc(K * c->D, sizeof(float));
    md->loss = calloc(K, sizeof(double));
    if (!md->dfeat || !md->rows || !md->off || !md->npix || !md->dens || !md->anchors || !md->keys ||
        !md->na || !md->nkeys || !md->nbk || !md->nneg || !md->active || !md->bkeys || !md->neg ||
        !md->centre || !md->loss)
        return DACL_FAIL(DACL_ENOMEM, "out of memory for the contrastive module");
    return DACL_OK;
}

int dacl_contrast_create(DaclContrast **out, const DaclJobConfig *cfg, int models, int classes,
                         int feat_c, int max_n, int fh, int fw, DaclPool *pool) {
    *out = NULL;
    DACL_TRY(dacl_contrast_check_config(cfg));
    if (models < 1 || models > 2 || classes < 2 || classes > DACL_CL_MAX_CLASSES - 1 || feat_c < 1 ||
        max_n < 1 || fh < 1 || fw < 1 || (long)max_n * fh * fw > INT32_MAX / 2)
        return DACL_FAIL(DACL_EINVAL, "contrastive module: bad plan (%d models, %d classes, %d x %d x %d x %d)",
                         models, classes, max_n, feat_c, fh, fw);
    DaclContrast *c = calloc(1, sizeof *c);
    if (!c) return DACL_FAIL(DACL_ENOMEM, "out of memory for the contrastive module");
    c->models = models, c->classes = classes, c->first = cfg->method.cl_background ? 0 : 1;
    c->D = cfg->method.proj_dim, c->cf = feat_c, c->fh = fh, c->fw = fw, c->HW = fh * fw, c->max_n = max_n;
    c->P = max_n * c->HW;
    c->nq = cfg->method.anchors, c->kb = (cfg->method.pos_keys + 1) / 2, c->kg = cfg->method.bank ? cfg->method.pos_keys / 2 : 0;
    c->jneg = cfg->method.neg_keys, c->insert = cfg->method.bank_insert, c->max_px = cfg->method.max_pixels;
    c->density = cfg->method.sampling == DACL_SAMPLING_DENSITY, c->use_bank = cfg->method.bank;
    c->neg_anchors = cfg->method.neg_source == DACL_NEG_ANCHORS;
    c->nk = cfg->method.multiscale ? cfg->method.nknn : 1;
    for (int i = 0; i < c->nk; i++) c->knn[i] = cfg->method.knn[i];
    c->kmax = c->knn[c->nk - 1];
    c->tau = cfg->method.tau, c->mode = cfg->method.positiveness, c->seed = cfg->train.seed;
    c->bank_size = cfg->method.bank_size;
    c->pool = pool;
    int per_class = imin(c->max_px, c->P);
    c->rmax = (int)((long)per_class * (classes - c->first) < c->P ? per_class * (classes - c->first) : c->P);
    c->kg_cap = imin(c->kg, c->bank_size);
    c->j_cap = imin(c->jneg, c->rmax);
    int nq_cap = imin(c->nq, per_class), threads = dacl_pool_threads(pool);
    int set_max = per_class + c->bank_size;
    size_t perm = (size_t)c->P > (size_t)models * c->rmax ? (size_t)c->P : (size_t)models * c->rmax;
    size_t ranked = (size_t)(c->rmax > c->bank_size ? c->rmax : c->bank_size);
    int rc = dacl_bank_create(&c->bank, classes, c->bank_size, c->D);
    for (int m = 0; m < models && rc == DACL_OK; m++) rc = model_alloc(c, &c->m[m]);
    if (rc != DACL_OK) {
        dacl_contrast_free(c);
        return rc;
    }
    c->bdens = malloc((size_t)classes * c->bank_size * sizeof(float));
    c->bver = calloc((size_t)classes, sizeof(uint64_t));
    c->bvalid = calloc((size_t)classes, sizeof(int));
    c->bucket = malloc((size_t)c->P * sizeof(int32_t));
    c->perm = malloc(perm * sizeof(int32_t));
    c->ranked = malloc(ranked * sizeof(Ranked));
    c->dws = malloc(dacl_density_ws(set_max, c->kmax, threads) * sizeof(float));
    c->lws = malloc(dacl_class_loss_ws(nq_cap, c->j_cap) * sizeof(float));
    c->gm = malloc((size_t)nq_cap * c->D * sizeof(float));
    c->gn = malloc((size_t)c->j_cap * c->D * sizeof(float));
    c->gdm = malloc((size_t)c->rmax * c->D * sizeof(float));
    c->back = malloc((size_t)c->rmax * sizeof(int32_t));
    c->cacc = malloc((size_t)c->D * sizeof(double));
    if (!c->bdens || !c->bver || !c->bvalid || !c->bucket || !c->perm || !c->ranked || !c->dws ||
        !c->lws || !c->gm || !c->gn || !c->gdm || !c->back || !c->cacc) {
        dacl_contrast_free(c);
        return DACL_FAIL(DACL_ENOMEM, "out of memory for the contrastive module");
    }
    *out = c;
    return DACL_OK;
}

void dacl_contrast_init(DaclContrast *c, DaclRng *rng) {
    for (int m = 0; m < c->models; m++) {
        dacl_head_init(c->m[m].head, rng);
        c->m[m].pending = c->m[m].has_grad = 0;
    }
    dacl_bank_clear(c->bank);
}

DaclHead *dacl_contrast_head(DaclContrast *c, int m) {
    return m >= 0 && m < c->models ? c->m[m].head : NULL;
}
DaclBank *dacl_contrast_bank(DaclContrast *c) { return c->bank; }

/* ------------------------------------------------------------ the loss -- */

/* rows, off, npix: each class's pixels in ascending order, at most max_pixels
 * of them drawn at random (then sorted, so rows read the map in order). */
static void gather_rows(DaclContrast *c, Model *md, const uint8_t *cls, int N, long iter, int m) {
    const int P = N * c->HW, K = c->classes;
    int cnt[DACL_CL_MAX_CLASSES] = {0}, start[DACL_CL_MAX_CLASSES + 1];
    for (int p = 0; p < P; p++)
        if (cls[p] < K && cls[p] >= c->first) cnt[cls[p]]++;
    start[0] = 0;
    for (int k = 0; k < K; k++) start[k + 1] = start[k] + cnt[k];
    int fill[DACL_CL_MAX_CLASSES];
    memcpy(fill, start, sizeof(int) * (size_t)K);
    for (int p = 0; p < P; p++)
        if (cls[p] < K && cls[p] >= c->first) c->bucket[fill[cls[p]]++] = p;
    int R = 0;
    for (int k = 0; k < K; k++) {
        md->off[k] = R;
        md->npix[k] = cnt[k];
        int n = cnt[k];
        int32_t *dst = md->rows + R;
        if (n > c->max_px) { /* drawn in the scratch: rows holds max_pixels a class */
            DaclRng r;
            memcpy(c->perm, c->bucket + start[k], (size_t)n * sizeof(int32_t));
            rng_for(&r, c, iter, m, k, RNG_SAMPLE);
            draw(c->perm, n, c->max_px, &r);
            n = c->max_px;
            memcpy(dst, c->perm, (size_t)n * sizeof(int32_t));
            qsort(dst, (size_t)n, sizeof(int32_t), cmp_i32);
        } else {
            memcpy(dst, c->bucket + start[k], (size_t)n * sizeof(int32_t));
        }
        R += n;
    }
    md->off[K] = R;
    md->nrows = R;
}

/* Densities of class k's bank entries against the bank, cached per version
 * (both models read the same bank in one iteration). */
static const float *bank_density(DaclContrast *c, int k) {
    float *bd = c->bdens + (size_t)k * c->bank_size;
    uint64_t v = dacl_bank_version(c->bank, k);
    if (!c->bvalid[k] || c->bver[k] != v) {
        const float *G = dacl_bank_data(c->bank, k);
        int L = dacl_bank_count(c->bank, k);
        dacl_density(bd, G, L, G, L, NULL, 0, 0, c->D, c->knn, c->nk, c->dws, c->pool);
        c->bver[k] = v, c->bvalid[k] = 1;
    }
    return bd;
}

/* Class k's densities, anchors, keys and centre. */
static void select_class(DaclContrast *c, Model *md, int k, const float *E, long iter, int m) {
    const int D = c->D, r0 = md->off[k], nb = md->off[k + 1] - r0;
    const int L = c->use_bank ? dacl_bank_count(c->bank, k) : 0;
    const float *G = dacl_bank_data(c->bank, k);
    int32_t *anc = md->anchors + r0, *key = md->keys + r0, *bkey = md->bkeys + (size_t)k * c->kg_cap;
    md->na[k] = md->nkeys[k] = md->nbk[k] = 0;
    for (int i = 0; i < nb; i++) md->dens[r0 + i] = NAN;
    if (nb == 0) return;
    int q = imin(c->nq, nb), kb = imin(c->kb, nb), kg = 0;
    if (c->density) {
        if (nb + L <= c->kmax) return; /* densities undefined: the class sits out */
        const float *V = E + (size_t)r0 * D;
        dacl_density(md->dens + r0, V, nb, G, L, V, nb, L, D, c->knn, c->nk, c->dws, c->pool);
        for (int i = 0; i < nb; i++) c->ranked[i] = (Ranked){md->dens[r0 + i], r0 + i};
        qsort(c->ranked, (size_t)nb, sizeof(Ranked), cmp_low);
        for (int i = 0; i < q; i++) anc[i] = c->ranked[i].i;
        qsort(c->ranked, (size_t)nb, sizeof(Ranked), cmp_high);
        for (int i = 0; i < kb; i++) key[i] = c->ranked[i].i;
        if (L > c->kmax && c->kg_cap > 0) {
            const float *bd = bank_density(c, k);
            for (int i = 0; i < L; i++) c->ranked[i] = (Ranked){bd[i], i};
            qsort(c->ranked, (size_t)L, sizeof(Ranked), cmp_high);
            kg = imin(c->kg_cap, L);
            for (int i = 0; i < kg; i++) bkey[i] = c->ranked[i].i;
        }
    } else {
        DaclRng r;
        for (int i = 0; i < nb; i++) c->perm[i] = r0 + i;
        rng_for(&r, c, iter, m, k, RNG_ANCHORS);
        draw(c->perm, nb, q, &r);
        memcpy(anc, c->perm, (size_t)q * sizeof(int32_t));
        rng_for(&r, c, iter, m, k, RNG_KEYS);
        draw(c->perm, nb, kb, &r);
        memcpy(key, c->perm, (size_t)kb * sizeof(int32_t));
        if (L > 0 && c->kg_cap > 0) {
            kg = imin(c->kg_cap, L);
            for (int i = 0; i < L; i++) c->perm[i] = i;
            rng_for(&r, c, iter, m, k, RNG_BANK_KEYS);
            draw(c->perm, L, kg, &r);
            memcpy(bkey, c->perm, (size_t)kg * sizeof(int32_t));
        }
    }
    /* centre = normalize(mean of the keys) (Eq. 8) */
    double *acc = c->cacc;
    memset(acc, 0, (size_t)D * sizeof(double));
    for (int i = 0; i < kb; i++)
        for (int t = 0; t < D; t++) acc[t] += E[(size_t)key[i] * D + t];
    for (int i = 0; i < kg; i++)
        for (int t = 0; t < D; t++) acc[t] += G[(size_t)bkey[i] * D + t];
    double nrm = 0.0;
    for (int t = 0; t < D; t++) nrm += acc[t] * acc[t];
    nrm = sqrt(nrm);
    float *ctr = md->centre + (size_t)k * D;
    for (int t = 0; t < D; t++) ctr[t] = (float)(acc[t] / (nrm > 1e-12 ? nrm : 1e-12));
    md->na[k] = q, md->nkeys[k] = kb, md->nbk[k] = kg;
}

/* Class k's negatives: neg_keys drawn from the other classes' rows (or their
 * anchors), all of them when there are no more. */
static void pick_negatives(DaclContrast *c, Model *md, int k, long iter, int m) {
    md->nneg[k] = 0, md->active[k] = 0;
    if (md->na[k] == 0) return;
    int n = 0;
    for (int o = c->first; o < c->classes; o++) {
        if (o == k) continue;
        if (c->neg_anchors) {
            memcpy(c->perm + n, md->anchors + md->off[o], (size_t)md->na[o] * sizeof(int32_t));
            n += md->na[o];
        } else {
            for (int r = md->off[o]; r < md->off[o + 1]; r++) c->perm[n++] = r;
        }
    }
    int j = imin(c->jneg, n);
    if (j < n) {
        DaclRng r;
        rng_for(&r, c, iter, m, k, RNG_NEG);
        draw(c->perm, n, j, &r);
    }
    memcpy(md->neg + (size_t)k * c->j_cap, c->perm, (size_t)j * sizeof(int32_t));
    md->nneg[k] = j;
    md->active[k] = j > 0;
}

static void gather(float *dst, const float *E, const int32_t *rows, int n, int D) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * D, E + (size_t)rows[i] * D, (size_t)D * sizeof(float));
}

static void fill_stats(const DaclContrast *c, const Model *md, double loss, int nactive,
                       DaclContrastStats *st) {
    memset(st, 0, sizeof *st);
    st->loss = loss;
    st->classes_used = nactive;
    double sa = 0.0, sk = 0.0;
    long na = 0, nk = 0;
    for (int k = 0; k < c->classes; k++) {
        st->pixels[k] = md->npix[k];
        st->bank_fill[k] = dacl_bank_count(c->bank, k);
        if (!md->active[k]) continue;
        st->anchors[k] = md->na[k];
        if (!c->density) continue;
        for (int i = 0; i < md->na[k]; i++) sa += md->dens[md->anchors[md->off[k] + i]], na++;
        for (int i = 0; i < md->nkeys[k]; i++) sk += md->dens[md->keys[md->off[k] + i]], nk++;
        const float *bd = c->bdens + (size_t)k * c->bank_size;
        for (int i = 0; i < md->nbk[k]; i++) sk += bd[md->bkeys[(size_t)k * c->kg_cap + i]], nk++;
    }
    st->anchor_density = na ? sa / na : 0.0;
    st->key_density = nk ? sk / nk : 0.0;
}

int dacl_contrast_loss(DaclContrast *c, int m, const float *feat, const uint8_t *cls, int N, long iter,
                       float scale, DaclContrastStats *st) {
    if (m < 0 || m >= c->models || N < 1 || N > c->max_n)
        return DACL_FAIL(DACL_EINVAL, "contrastive loss: model %d of %d, %d images of at most %d", m,
                         c->models, N, c->max_n);
    Model *md = &c->m[m];
    const int D = c->D;
    md->pending = md->has_grad = 0;
    dacl_head_zero_grad(md->head);
    gather_rows(c, md, cls, N, iter, m);
    DACL_TRY(dacl_head_forward(md->head, feat, N, c->HW, md->rows, md->nrows, 1, c->pool));
    const float *E = dacl_head_embeddings(md->head);
    for (int k = 0; k < c->classes; k++) select_class(c, md, k, E, iter, m);
    int nactive = 0;
    for (int k = 0; k < c->classes; k++) {
        pick_negatives(c, md, k, iter, m);
        nactive += md->active[k];
    }
    double total = 0.0;
    int nback = 0;
    const int grad = scale != 0.0f && nactive > 0;
    for (int k = 0; k < c->classes; k++) {
        md->loss[k] = 0.0;
        if (!md->active[k]) continue;
        const int q = md->na[k], j = md->nneg[k];
        const int32_t *anc = md->anchors + md->off[k];
        gather(c->gm, E, anc, q, D);
        gather(c->gn, E, md->neg + (size_t)k * c->j_cap, j, D);
        md->loss[k] = dacl_class_loss(grad ? c->gdm + (size_t)nback * D : NULL, c->gm, q,
                                      md->centre + (size_t)k * D, c->gn, j, D, c->tau, c->mode,
                                      scale / (float)nactive, c->lws);
        total += md->loss[k];
        if (grad) {
            memcpy(c->back + nback, anc, (size_t)q * sizeof(int32_t));
            nback += q;
        }
    }
    total = nactive ? total / nactive : 0.0;
    if (grad) {
        DACL_TRY(dacl_head_backward(md->head, md->dfeat, c->back, c->gdm, nback, c->pool));
        md->has_grad = 1;
    }
    md->pending = 1;
    if (st) fill_stats(c, md, total, nactive, st);
    return DACL_OK;
}

const float *dacl_contrast_dfeat(const DaclContrast *c, int m) {
    return m >= 0 && m < c->models && c->m[m].has_grad ? c->m[m].dfeat : NULL;
}

void dacl_contrast_sgd_step(DaclContrast *c, float lr, float momentum, float wd) {
    /* a head without gradient this iteration is left alone, as torch.optim.SGD
     * leaves a parameter whose .grad is None */
    for (int m = 0; m < c->models; m++)
        if (c->m[m].has_grad) dacl_head_sgd_step(c->m[m].head, lr, momentum, wd);
}

void dacl_contrast_bank_update(DaclContrast *c, long iter) {
    for (int k = c->first; k < c->classes; k++) {
        int total = 0;
        for (int m = 0; m < c->models; m++)
            if (c->m[m].pending) total += c->m[m].off[k + 1] - c->m[m].off[k];
        int n = imin(c->insert, total);
        if (n == 0) continue;
        for (int i = 0; i < total; i++) c->perm[i] = i;
        DaclRng r;
        rng_for(&r, c, iter, BANK_MODEL, k, RNG_INSERT);
        draw(c->perm, total, n, &r);
        for (int i = 0; i < n; i++) {
            int t = c->perm[i], m = 0;
            for (; m < c->models; m++) {
                if (!c->m[m].pending) continue;
                int nb = c->m[m].off[k + 1] - c->m[m].off[k];
                if (t < nb) break;
                t -= nb;
            }
            const Model *md = &c->m[m];
            int row = md->off[k] + t;
            dacl_bank_push(c->bank, k, dacl_head_embeddings(md->head) + (size_t)row * c->D,
                           &md->dens[row], 1);
        }
    }
    for (int m = 0; m < c->models; m++) c->m[m].pending = 0;
}

/* -------------------------------------------------------------- state -- */

#define STATE_HEADER (4 * 6 + 8 * 2)

size_t dacl_contrast_state_bytes(const DaclContrast *c) {
    DaclHead *h = c->m[0].head;
    size_t per = (2 * dacl_head_num_params(h) + dacl_head_bn_stats_count(h)) * sizeof(float);
    return STATE_HEADER + (size_t)c->models * per + dacl_bank_state_bytes(c->bank);
}

int dacl_contrast_state_write(DaclContrast *c, void *buf, size_t n) {
    if (n < dacl_contrast_state_bytes(c))
        return DACL_FAIL(DACL_EINVAL, "contrastive state: %zu bytes, needs %zu", n,
                         dacl_contrast_state_bytes(c));
    unsigned char *p = buf;
    DaclHead *h0 = c->m[0].head;
    uint64_t np = dacl_head_num_params(h0), nbn = dacl_head_bn_stats_count(h0);
    le_put_u32(&p, DACL_CONTRAST_STATE_VERSION);
    le_put_u32(&p, (uint32_t)c->models);
    le_put_u32(&p, (uint32_t)c->classes);
    le_put_u32(&p, (uint32_t)c->bank_size);
    le_put_u32(&p, (uint32_t)c->D);
    le_put_u32(&p, (uint32_t)c->cf);
    le_put_u32(&p, (uint32_t)np), le_put_u32(&p, (uint32_t)(np >> 32));
    le_put_u32(&p, (uint32_t)nbn), le_put_u32(&p, (uint32_t)(nbn >> 32));
    for (int m = 0; m < c->models; m++) {
        DaclHead *h = c->m[m].head;
        le_put_f32s(&p, dacl_head_params(h), np);
        le_put_f32s(&p, dacl_head_momentum(h), np);
        le_put_f32s(&p, dacl_head_bn_stats(h), nbn);
    }
    dacl_bank_state_write(c->bank, &p);
    return DACL_OK;
}

int dacl_contrast_state_read(DaclContrast *c, const void *buf, size_t n) {
    if (n < STATE_HEADER) return DACL_FAIL(DACL_EFORMAT, "contrastive state: truncated (%zu bytes)", n);
    const unsigned char *p = buf;
    DaclHead *h0 = c->m[0].head;
    uint32_t want[6] = {DACL_CONTRAST_STATE_VERSION, (uint32_t)c->models, (uint32_t)c->classes,
                        (uint32_t)c->bank_size, (uint32_t)c->D, (uint32_t)c->cf};
    static const char *const names[6] = {"version", "models", "classes", "bank size", "proj_dim",
                                         "feature channels"};
    for (int i = 0; i < 6; i++) {
        uint32_t v = le_get_u32(&p);
        if (v != want[i])
            return DACL_FAIL(DACL_EFORMAT, "contrastive state: %s is %u, this job has %u", names[i], v,
                             want[i]);
    }
    uint64_t np = le_get_u32(&p), nbn;
    np |= (uint64_t)le_get_u32(&p) << 32;
    nbn = le_get_u32(&p);
    nbn |= (uint64_t)le_get_u32(&p) << 32;
    if (np != dacl_head_num_params(h0) || nbn != dacl_head_bn_stats_count(h0))
        return DACL_FAIL(DACL_EFORMAT, "contrastive state: heads of %llu parameters, this job's have %zu",
                         (unsigned long long)np, dacl_head_num_params(h0));
    if (n < dacl_contrast_state_bytes(c))
        return DACL_FAIL(DACL_EFORMAT, "contrastive state: truncated (%zu of %zu bytes)", n,
                         dacl_contrast_state_bytes(c));
    /* the bank's counters are checked before anything is overwritten */
    const unsigned char *bank = p + (size_t)c->models * (2 * np + nbn) * sizeof(float);
    DACL_TRY(dacl_bank_state_read(c->bank, &bank));
    for (int m = 0; m < c->models; m++) {
        DaclHead *h = c->m[m].head;
        le_get_f32s(&p, dacl_head_params(h), np);
        le_get_f32s(&p, dacl_head_momentum(h), np);
        le_get_f32s(&p, dacl_head_bn_stats(h), nbn);
        c->m[m].pending = c->m[m].has_grad = 0;
    }
    return DACL_OK;
}

/* --------------------------------------------------------- inspection -- */

const int32_t *dacl_contrast_rows(const DaclContrast *c, int m, int *nrows) {
    if (nrows) *nrows = c->m[m].nrows;
    return c->m[m].rows;
}

const float *dacl_contrast_embeddings(const DaclContrast *c, int m) {
    return dacl_head_embeddings(c->m[m].head);
}

const float *dacl_contrast_densities(const DaclContrast *c, int m) { return c->m[m].dens; }

int dacl_contrast_class_info(const DaclContrast *c, int m, int cls, DaclContrastClass *out) {
    if (m < 0 || m >= c->models || cls < 0 || cls >= c->classes)
        return DACL_FAIL(DACL_EINVAL, "contrastive module: no model %d class %d", m, cls);
    const Model *md = &c->m[m];
    const int r0 = md->off[cls];
    *out = (DaclContrastClass){
        .active = md->active[cls],
        .row0 = r0,
        .nrows = md->off[cls + 1] - r0,
        .anchors = md->anchors + r0,
        .nanchors = md->na[cls],
        .keys = md->keys + r0,
        .nkeys = md->nkeys[cls],
        .bank_keys = md->bkeys + (size_t)cls * c->kg_cap,
        .nbank_keys = md->nbk[cls],
        .bank_density = c->bvalid[cls] && c->bver[cls] == dacl_bank_version(c->bank, cls)
                            ? c->bdens + (size_t)cls * c->bank_size
                            : NULL,
        .centre = md->centre + (size_t)cls * c->D,
        .negatives = md->neg + (size_t)cls * c->j_cap,
        .nneg = md->nneg[cls],
        .loss = md->loss[cls],
    };
    return DACL_OK;
}
