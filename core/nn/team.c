/* Ops on a thread team: see team.h for how work is split. */
#include "team.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops_internal.h"

/* A member's run of chunks [front, back), both in one word so that the
 * owner (front) and a thief (back) never take the same chunk; one cache
 * line each. */
struct TeamRun {
    _Alignas(64) _Atomic uint64_t v;
};

int team_alloc_runs(Team *t) {
    t->runs = aligned_alloc(64, sizeof(struct TeamRun) * (size_t)t->n);
    t->ximg = malloc(sizeof(int) * (size_t)t->n);
    return t->runs && t->ximg ? 0 : -1;
}

void team_free_runs(Team *t) {
    free(t->runs);
    free(t->ximg);
    t->runs = NULL;
    t->ximg = NULL;
}

/* before an op of n chunks: member m owns the m-th of n split n ways, and no
 * member's xbuf holds an image of this op yet */
static void runs_init(Team *t, int n) {
    for (int m = 0; m < t->n; m++) {
        int a, e;
        dacl_split(n, m, t->n, &a, &e);
        atomic_store_explicit(&t->runs[m].v, (uint64_t)a << 32 | (uint32_t)e, memory_order_relaxed);
        t->ximg[m] = -1;
    }
}

static int take(struct TeamRun *r, int back) {
    uint64_t v = atomic_load_explicit(&r->v, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)(v >> 32), b = (uint32_t)v;
        if (f >= b) return -1;
        uint64_t w = back ? (uint64_t)f << 32 | (b - 1) : (uint64_t)(f + 1) << 32 | b;
        if (atomic_compare_exchange_weak_explicit(&r->v, &v, w, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (int)(back ? b - 1 : f);
    }
}

/* the next chunk for member tid: its own front, else another's back; -1 when
 * every chunk is taken */
static int next_chunk(Team *t, int tid) {
    int k = take(&t->runs[tid], 0);
    for (int i = 1; k < 0 && i < t->n; i++) k = take(&t->runs[(tid + i) % t->n], 1);
    return k;
}

/* Weight-gradient slots: the batch's images in at most this many groups, a
 * slot of the layer's parameters each, so the slots of any layer fit in
 * GSLOT_BUDGET floats (16 MiB) or one slot an image, whichever is smaller. */
#define GSLOT_BUDGET ((size_t)4 << 20)

static int grad_groups(size_t len, int N) {
    size_t g = GSLOT_BUDGET / (len ? len : 1);
    if (g < 1) g = 1;
    return g < (size_t)N ? (int)g : N;
}

size_t team_grad_slot_floats(size_t len, int N) { return (size_t)grad_groups(len, N) * len; }

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

typedef struct {
    Team *t;
    int groups; /* weight-gradient groups of a convolution's backward */
    size_t wlen; /* its weight gradient's floats (the bias follows in a slot) */
    float *y, *dx, *dx2;
    const float *x, *w, *b, *dy;
    const XForm *xf;
    int N, C, H, W, OC, csplit, train, wino, wino_dw;
    int fold; /* a forward reads xf through the kernels' DaclXIn (team.h) */
    int nobias; /* a convolution's bias gradient is summed elsewhere (TEAM_BIAS_DONE) */
    size_t nstride, dw, db, dbias, n;
    float *rowstats, *mean, *rstd, *scale, *shift, *rmean, *rvar;
    const float *gamma, *beta, *cscale, *cshift;
    float slope, p, lr, momentum, wd;
    float *pool; /* a max-pool's output, with idx */
    uint8_t *idx;
    const uint8_t *cidx;
    const uint64_t *mask;
    float *buf;
    const float *g;
    double *bnsums; /* a convolution's backward: BN's per-image sums of dx (DaclBnSums) */
    const float *bnmean;
} Job;

static float *member_ws(const Team *t, int tid) { return t->ws + (size_t)tid * t->ws_floats; }

/* run fn on every member over nchunks chunks */
static void run(Team *t, void (*fn)(void *, int, int), Job *j, int nchunks) {
    j->t = t;
    runs_init(t, nchunks);
    dacl_pool_run_dynamic(t->pool, fn, j);
}

/* element-wise ops: 64 chunks a member; chunk k of K is [i0, i1) of n */
static int range_chunks(const Team *t) { return 64 * t->n; }
static void chunk_range(size_t n, int k, int K, size_t *i0, size_t *i1) {
    *i0 = n * (size_t)k / (size_t)K;
    *i1 = n * (size_t)(k + 1) / (size_t)K;
}

static uint64_t *member_mask(const Team *t, int tid) {
    return t->xmask + (size_t)tid * t->xmask_words;
}

/* d = act(s * sc + sh) on a plane of HW, then with mb (its dropout bits)
 * times ks where kept and 0 where dropped: the same float operations as
 * the activation followed by dacl_dropout_range, in one pass */
static void xform_plane(float *restrict d, const float *restrict s, size_t HW, float sc, float sh,
                        float slope, const uint64_t *mb, float ks) {
    if (!mb) {
        for (size_t i = 0; i < HW; i++) {
            float z = s[i] * sc + sh;
            d[i] = z > 0.0f ? z : z * slope;
        }
        return;
    }
    /* 32 at a time: GCC vectorises this inner loop, where with 16 it
     * unrolls it and vectorises the outer one with shuffles */
    size_t i = 0;
    for (; i + 32 <= HW; i += 32) {
        const uint32_t m = (uint32_t)(mb[i >> 6] >> (i & 63));
        for (uint32_t l = 0; l < 32; l++) {
            float z = s[i + l] * sc + sh;
            float a = z > 0.0f ? z : z * slope;
            d[i + l] = m >> l & 1 ? a * ks : 0.0f;
        }
    }
    for (; i < HW; i++) {
        float z = s[i] * sc + sh;
        float a = z > 0.0f ? z : z * slope;
        d[i] = mb[i >> 6] >> (i & 63) & 1 ? a * ks : 0.0f;
    }
}

/* The input of image n as the convolution sees it: raw, or xform applied
 * into the member's buffer; with dropout its bits are the stored mask's
 * (mask_ready) or drawn into the member's xmask. */
static const float *conv_input(const Job *j, int tid, int n) {
    const size_t chw = (size_t)j->C * j->H * j->W;
    const float *x = j->x + n * chw;
    const XForm *xf = j->xf;
    if (!xf) return x;
    float *out = j->t->xbuf + (size_t)tid * j->t->xbuf_floats;
    if (j->t->ximg[tid] == n) return out; /* the previous chunk's image */
    j->t->ximg[tid] = n;
    const size_t HW = (size_t)j->H * j->W, mw = dacl_mask_words(HW);
    const int drop = xf->p > 0.0f;
    const uint32_t thresh = dacl_dropout_threshold(xf->p);
    const float ks = drop ? dacl_dropout_scale(xf->p) : 1.0f;
    for (int c = 0; c < j->C; c++) {
        const uint64_t *mb = NULL;
        if (drop && xf->mask_ready) {
            mb = xf->mask + ((size_t)n * j->C + c) * mw;
        } else if (drop) {
            uint64_t *bits = member_mask(j->t, tid) + c * mw;
            dacl_dropout_bits(bits, HW, xf->key, n * chw + c * HW, thresh);
            mb = bits;
        }
        xform_plane(out + c * HW, x + c * HW, HW, xf->scale[c], xf->shift[c], xf->slope, mb, ks);
    }
    return out;
}

/* After a forward chunk of image n from row h0 read conv_input: the chunk
 * of the image's first rows (one per image whoever runs it) stores the bits
 * the member drew into the XForm's mask, for the backward. */
static void store_mask(const Job *j, int tid, int n, int h0) {
    const XForm *xf = j->xf;
    if (h0 != 0 || !xf || !(xf->p > 0.0f) || xf->mask_ready || !xf->mask) return;
    const size_t words = (size_t)j->C * dacl_mask_words((size_t)j->H * j->W);
    memcpy(xf->mask + n * words, member_mask(j->t, tid), sizeof(uint64_t) * words);
}

/* image n's input read through the XForm by the kernels, in a ring of
 * `rows` rows a channel at the start of member tid's buffer; with dropout
 * the bits are the XForm's mask (drawn for the layer before) */
static DaclXIn xin_image(const Job *j, int tid, int n, int rows) {
    const XForm *xf = j->xf;
    const int drop = xf->p > 0.0f;
    const size_t HW = (size_t)j->H * j->W;
    DaclXIn in = {.x = j->x + n * j->C * HW, .scale = xf->scale, .shift = xf->shift,
                  .slope = xf->slope, .ks = drop ? dacl_dropout_scale(xf->p) : 1.0f,
                  .mask = drop ? xf->mask + (size_t)n * j->C * dacl_mask_words(HW) : NULL,
                  .ring = j->t->xbuf + (size_t)tid * j->t->xbuf_floats, .rows = rows};
    j->t->ximg[tid] = -1; /* the ring overwrites whatever image the buffer held */
    return in;
}

/* ------------------------------------------------------- convolutions -- */

static void job_wino_u(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    for (int k; (k = next_chunk(j->t, tid)) >= 0;) dacl_wino_weights(j->t->wu, j->w, j->C, j->OC, k, k + 1);
}

/* 1 if the layer takes Winograd in this direction and the team's buffers
 * were planned for it; then its weights are transformed into t->wu */
static int wino_prepare(Team *t, const float *w, int C, int H, int W, int OC, int backward) {
    if (!dacl_conv3x3_use_wino(C, H, W, OC, backward)) return 0;
    if (!t->wu || t->wu_floats < dacl_wino_u_floats(C, OC) ||
        t->ws_floats < dacl_wino_scratch_floats(backward ? OC : C))
        return 0;
    Job u = {.w = w, .C = C, .OC = OC};
    run(t, job_wino_u, &u, OC);
    return 1;
}

/* rows a chunk of a convolution's forward: a multiple of the direct
 * kernel's 4 and Winograd's 6, so chunks start on their bands */
#define FWD_ROWS 12

static void job_conv_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const size_t HW = (size_t)j->H * j->W;
    const int nb = (j->H + FWD_ROWS - 1) / FWD_ROWS;
    for (int k; (k = next_chunk(j->t, tid)) >= 0;) {
        int n = k / nb, h0 = k % nb * FWD_ROWS, h1 = h0 + FWD_ROWS < j->H ? h0 + FWD_ROWS : j->H;
        float *y = j->y + n * j->OC * HW;
        float *st = j->rowstats ? j->rowstats + (size_t)n * j->OC * j->H * 2 : NULL;
        if (j->fold) {
            DaclXIn in = xin_image(j, tid, n, j->wino ? DACL_XIN_ROWS_WINO : DACL_XIN_ROWS_DIRECT);
            if (j->wino)
                dacl_conv_image_forward_rows_wino_xin(y, &in, j->t->wu, j->b, j->C, j->H, j->W, j->OC,
                                                      h0, h1, member_ws(j->t, tid), st);
            else
                dacl_conv_image_forward_rows_xin(y, &in, j->w, j->b, j->C, j->H, j->W, j->OC, h0, h1,
                                                 st);
            continue;
        }
        const float *x = conv_input(j, tid, n);
        store_mask(j, tid, n, h0);
        if (j->wino)
            dacl_conv_image_forward_rows_wino(y, x, j->t->wu, j->b, j->C, j->H, j->W, j->OC, h0, h1,
                                              member_ws(j->t, tid), st);
        else
            dacl_conv_image_forward_rows_stats(y, x, j->w, j->b, j->C, j->H, j->W, j->OC, 3, h0, h1,
                                               member_ws(j->t, tid), st);
    }
}

/* a layer's dropout bits into the XForm's mask, one [C] plane a chunk,
 * as conv_input draws them */
static void job_mask(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const XForm *xf = j->xf;
    const size_t HW = (size_t)j->H * j->W, mw = dacl_mask_words(HW);
    const uint32_t thresh = dacl_dropout_threshold(xf->p);
    for (int k; (k = next_chunk(j->t, tid)) >= 0;)
        dacl_dropout_bits(xf->mask + (size_t)k * mw, HW, xf->key, (size_t)k * HW, thresh);
}

/* 1 if the forward reads xf through the kernels (DaclXIn): a 3x3 layer
 * that takes the direct or Winograd kernels, a ring that fits the member's
 * buffer, and with dropout a mask to draw the layer's bits into first */
static int fold_xform(const Team *t, const XForm *xf, int wino, int C, int H, int W, int OC) {
    if (!xf || t->no_fold || (xf->p > 0.0f && !xf->mask)) return 0;
    if (!wino && !dacl_conv3x3_use_direct(C, H, W, OC, 0)) return 0;
    size_t rows = wino ? DACL_XIN_ROWS_WINO : DACL_XIN_ROWS_DIRECT;
    return rows * (size_t)C * W <= t->xbuf_floats;
}

void team_conv_fwd(Team *t, float *y, const float *x, const XForm *xf, const float *w,
                   const float *b, int N, int C, int H, int W, int OC, float *rowstats) {
    Job j = {.y = y, .x = x, .xf = xf, .w = w, .b = b, .N = N, .C = C, .H = H, .W = W, .OC = OC,
             .rowstats = rowstats};
    j.wino = wino_prepare(t, w, C, H, W, OC, 0);
    j.fold = fold_xform(t, xf, j.wino, C, H, W, OC);
    if (j.fold && xf->p > 0.0f && !xf->mask_ready) run(t, job_mask, &j, N * C);
    run(t, job_conv_fwd, &j, N * ((H + FWD_ROWS - 1) / FWD_ROWS));
}

/* the slot of group g: its weight gradient, then its bias gradient */
static float *group_slot(const Job *j, int g) {
    return j->t->gslots + (size_t)g * (j->wlen + (size_t)j->OC);
}

/* where group g's image gradients go: its slot, which the group's first
 * image overwrites and the others add to (not zeroed first: that was a
 * pass over up to 16 MiB a layer), or with no slots (groups = 0: the team
 * was not planned for this layer, which the U-Net's planning rules out) the
 * model's gradient itself, one member, every image adding; db NULL where
 * the bias gradient is summed elsewhere */
static void group_grads(const Job *j, int g, float **dw, float **db) {
    if (j->groups == 0) {
        *dw = j->t->grads + j->dw, *db = j->nobias ? NULL : j->t->grads + j->db;
        return;
    }
    *dw = group_slot(j, g), *db = j->nobias ? NULL : *dw + j->wlen;
}

/* image n of a group from image a: 1 if it adds to the group's gradients,
 * 0 if it writes them (see group_grads) */
static int group_acc(const Job *j, int n, int a) { return j->groups == 0 || n > a; }

/* grads[dw..] and grads[db..] += the slots, in group order */
static void job_sum_slots(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const size_t len = j->wlen + (j->nobias ? 0 : (size_t)j->OC);
    const int K = range_chunks(j->t);
    for (int k; (k = next_chunk(j->t, tid)) >= 0;) {
        size_t i0, i1;
        chunk_range(len, k, K, &i0, &i1);
        /* the weight part [i0, iw), then the bias part [iw, i1); each
         * element gets the groups added one after the other, slot by slot */
        size_t iw = i1 < j->wlen ? i1 : i0 > j->wlen ? i0 : j->wlen;
        float *gw = j->t->grads + j->dw, *gb = j->t->grads + j->db;
        for (int q = 0; q < j->groups; q++) {
            const float *sl = group_slot(j, q);
            for (size_t i = i0; i < iw; i++) gw[i] += sl[i];
            for (size_t i = iw; i < i1; i++) gb[i - j->wlen] += sl[i];
        }
    }
}

/* a convolution backward's gradient groups (0: no room, see group_grads)
 * and the chunks its op has; grad_end sums the slots afterwards */
static int grad_begin(Team *t, Job *j, size_t wlen) {
    j->wlen = wlen;
    j->groups = grad_groups(wlen + (size_t)j->OC, j->N);
    if ((size_t)j->groups * (wlen + (size_t)j->OC) > t->gslot_floats) j->groups = 0;
    return j->groups ? j->groups : 1;
}

static void grad_end(Team *t, Job *j) {
    if (j->groups) run(t, job_sum_slots, j, range_chunks(t));
}

/* the images of chunk g */
static void group_images(const Job *j, int g, int *a, int *e) {
    if (j->groups == 0) *a = 0, *e = j->N;
    else dacl_split(j->N, g, j->groups, a, e);
}

static void job_conv_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const size_t HW = (size_t)j->H * j->W;
    for (int g; (g = next_chunk(j->t, tid)) >= 0;) {
        float *dw, *db;
        group_grads(j, g, &dw, &db);
        int a, e;
        group_images(j, g, &a, &e);
        for (int n = a; n < e; n++) {
            float *dx = j->dx ? j->dx + n * j->csplit * HW : NULL;
            float *dx2 = j->dx2 ? j->dx2 + n * (j->C - j->csplit) * HW : NULL;
            if (j->bnsums) {
                /* the sums also write the transformed input into the member's
                 * buffer, as they read x, for the weight gradient after them:
                 * no pass of conv_input over x */
                const XForm *xf = j->xf;
                const size_t words = (size_t)j->C * dacl_mask_words(HW);
                DaclBnSums bs = {.x = j->x + n * j->C * HW,
                                 .mask = xf->p > 0.0f ? xf->mask + n * words : NULL,
                                 .scale = xf->scale, .shift = xf->shift, .mean = j->bnmean,
                                 .ks = xf->p > 0.0f ? dacl_dropout_scale(xf->p) : 1.0f,
                                 .slope = xf->slope, .sums = j->bnsums + (size_t)n * j->C * 2,
                                 .xout = j->t->xbuf + (size_t)tid * j->t->xbuf_floats};
                j->t->ximg[tid] = -1;
                dacl_conv_image_backward_wino(dx, dx2, j->csplit, dw, db, j->dy + n * j->OC * HW,
                                              bs.xout, j->t->wu, j->C, j->H, j->W, j->OC, j->wino_dw,
                                              member_ws(j->t, tid), group_acc(j, n, a), &bs);
                j->t->ximg[tid] = n;
            } else if (j->wino)
                dacl_conv_image_backward_wino(dx, dx2, j->csplit, dw, db, j->dy + n * j->OC * HW,
                                              conv_input(j, tid, n), j->t->wu, j->C, j->H, j->W, j->OC,
                                              j->wino_dw, member_ws(j->t, tid), group_acc(j, n, a), NULL);
            else
                dacl_conv_image_backward_split(dx, dx2, j->csplit, dw, db, j->dy + n * j->OC * HW,
                                               conv_input(j, tid, n), j->w, j->C, j->H, j->W, j->OC,
                                               member_ws(j->t, tid), group_acc(j, n, a));
        }
    }
}

/* bnsums, bnmean (may be NULL): BN's sums of dx as team_conv_bwd_bnsums
 * takes them, where the layer's input gradient is Winograd's; 1 if taken */
static int conv_bwd(Team *t, float *dx, float *dx2, int csplit, size_t dw, size_t db,
                    const float *dy, const float *x, const XForm *xf, const float *w, int N, int C,
                    int H, int W, int OC, double *bnsums, const float *bnmean) {
    Job j = {.dx = dx, .dx2 = dx2, .csplit = csplit, .dw = dw, .db = db, .dy = dy, .x = x, .xf = xf,
             .w = w, .N = N, .C = C, .H = H, .W = W, .OC = OC, .nobias = db == TEAM_BIAS_DONE};
    int chunks = grad_begin(t, &j, (size_t)OC * C * 9);
    j.wino = dx && wino_prepare(t, w, C, H, W, OC, 1);
    j.wino_dw = j.wino && dacl_conv3x3_use_wino_dw(C, H, W, OC) &&
                t->ws_floats >= dacl_wino_dw_scratch_floats(C, OC);
    if (bnsums && j.wino && !dx2 && csplit == C && xf &&
        (!(xf->p > 0.0f) || (xf->mask_ready && xf->mask)) &&
        t->ws_floats >= dacl_wino_bn_scratch_floats(C, OC) &&
        t->xbuf_floats >= (size_t)C * H * W)
        j.bnsums = bnsums, j.bnmean = bnmean;
    run(t, job_conv_bwd, &j, chunks);
    grad_end(t, &j);
    return j.bnsums != NULL;
}

void team_conv_bwd(Team *t, float *dx, float *dx2, int csplit, size_t dw, size_t db, const float *dy,
                   const float *x, const XForm *xf, const float *w, int N, int C, int H, int W,
                   int OC) {
    conv_bwd(t, dx, dx2, csplit, dw, db, dy, x, xf, w, N, C, H, W, OC, NULL, NULL);
}

int team_conv_bwd_bnsums(Team *t, float *dx, size_t dw, size_t db, const float *dy, const float *x,
                         const XForm *xf, const float *w, int N, int C, int H, int W, int OC,
                         double *sums, const float *mean) {
    return conv_bwd(t, dx, NULL, C, dw, db, dy, x, xf, w, N, C, H, W, OC, sums, mean);
}

static void job_convt_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const size_t HW = (size_t)j->H * j->W;
    for (int n; (n = next_chunk(j->t, tid)) >= 0;)
        dacl_convt_image_forward(j->y + n * j->nstride, j->x + n * j->C * HW, j->w, j->b, j->C, j->H,
                                 j->W, j->OC, member_ws(j->t, tid));
}

void team_convt_fwd(Team *t, float *y, size_t y_nstride, const float *x, const float *w,
                    const float *b, int N, int C, int H, int W, int OC) {
    Job j = {.y = y, .nstride = y_nstride, .x = x, .w = w, .b = b, .N = N, .C = C, .H = H, .W = W,
             .OC = OC};
    run(t, job_convt_fwd, &j, N);
}

static void job_convt_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const size_t HW = (size_t)j->H * j->W;
    for (int g; (g = next_chunk(j->t, tid)) >= 0;) {
        float *dw, *db;
        group_grads(j, g, &dw, &db);
        int a, e;
        group_images(j, g, &a, &e);
        for (int n = a; n < e; n++)
            dacl_convt_image_backward(j->dx ? j->dx + n * j->C * HW : NULL, dw, db,
                                      j->dy + n * j->OC * 4 * HW, j->x + n * j->C * HW, j->w, j->C,
                                      j->H, j->W, j->OC, member_ws(j->t, tid), group_acc(j, n, a));
    }
}

void team_convt_bwd(Team *t, float *dx, size_t dw, size_t db, const float *dy, const float *x,
                    const float *w, int N, int C, int H, int W, int OC) {
    Job j = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .N = N, .C = C, .H = H, .W = W,
             .OC = OC};
    run(t, job_convt_bwd, &j, grad_begin(t, &j, (size_t)C * OC * 4));
    grad_end(t, &j);
}

/* ---------------------------------------------------------- batchnorm -- */

static void job_bn_prepare(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    if (j->train)
        dacl_bn_prepare_rows(j->mean, j->rstd, j->scale, j->shift, j->rowstats, j->gamma, j->beta,
                             j->rmean, j->rvar, j->N, j->C, j->H, j->W, BN_MOMENTUM, BN_EPS, a, e);
    else
        dacl_bn_prepare_eval(j->scale, j->shift, j->gamma, j->beta, j->rmean, j->rvar, BN_EPS, a, e);
}

void team_bn_prepare(Team *t, int train, float *mean, float *rstd, float *scale, float *shift,
                     const float *rowstats, const float *gamma, const float *beta, float *rmean,
                     float *rvar, int N, int C, int H, int W) {
    Job j = {.train = train, .mean = mean, .rstd = rstd, .scale = scale, .shift = shift,
             .rowstats = (float *)rowstats, .gamma = gamma, .beta = beta, .rmean = rmean,
             .rvar = rvar, .N = N, .C = C, .H = H, .W = W};
    /* per channel the work is a few thousand row merges: not worth a fork */
    j.t = t;
    job_bn_prepare(&j, 0, 1);
}

static void job_bn_apply(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    const size_t HW = (size_t)j->H * j->W, out_plane = HW / 4;
    for (int c; (c = next_chunk(j->t, tid)) >= 0;) {
        if (!j->pool) {
            dacl_bn_apply(j->y, j->nstride, j->x, j->cscale, j->cshift, j->N, j->C, (int)HW, j->slope,
                          c, c + 1);
            continue;
        }
        /* plane by plane, each pooled while it is still in cache */
        for (int n = 0; n < j->N; n++) {
            float *y = j->y + n * j->nstride;
            size_t k = (size_t)n * j->C + c;
            dacl_bn_apply(y, 0, j->x + n * j->C * HW, j->cscale, j->cshift, 1, j->C, (int)HW,
                          j->slope, c, c + 1);
            dacl_maxpool2x2_forward(j->pool + k * out_plane, j->idx + k * out_plane, y + c * HW,
                                    1, 1, j->H, j->W);
        }
    }
}

void team_bn_apply(Team *t, float *out, size_t out_nstride, const float *in, const float *scale,
                   const float *shift, int N, int C, int H, int W, float slope, float *pool,
                   uint8_t *idx) {
    Job j = {.y = out, .nstride = out_nstride, .x = in, .cscale = scale, .cshift = shift, .N = N,
             .C = C, .H = H, .W = W, .slope = slope, .pool = pool, .idx = idx};
    run(t, job_bn_apply, &j, C);
}

static void job_bn_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    float *g = j->t->grads; /* channels are disjoint: no per-member copy needed */
    float *dbias = j->dbias == TEAM_BIAS_DONE ? NULL : g + j->dbias;
    for (int c; (c = next_chunk(j->t, tid)) >= 0;) {
        if (j->g)
            dacl_bn_act_backward_pool_ch(j->y, g + j->dw, g + j->db, dbias, j->g, j->cidx, j->x,
                                         j->beta, j->mean, j->rstd, j->gamma, j->N, j->C, j->H / j->W,
                                         j->W, j->slope, c, c + 1);
        else
            dacl_bn_act_backward_sums_ch(j->y, g + j->dw, g + j->db, dbias, j->y, j->mask, j->p,
                                         j->x, j->beta, j->mean, j->rstd, j->gamma, j->N, j->C, j->H,
                                         j->slope, j->bnsums, c, c + 1);
    }
}

void team_bn_bwd(Team *t, float *g, size_t dgamma, size_t dbeta, size_t dbias, const uint64_t *mask,
                 float p, const float *c, const float *beta, const float *mean, const float *rstd,
                 const float *gamma, int N, int C, int HW, float slope, const float *pool_dy,
                 const uint8_t *pool_idx, int W, const double *sums) {
    Job j = {.y = g, .dw = dgamma, .db = dbeta, .dbias = dbias, .mask = mask, .p = p, .x = c,
             .beta = beta, .mean = (float *)mean, .rstd = (float *)rstd, .gamma = gamma, .N = N,
             .C = C, .H = HW, .W = W, .slope = slope, .g = pool_dy, .cidx = pool_idx,
             .bnsums = (double *)sums};
    run(t, job_bn_bwd, &j, C);
}

/* -------------------------------------------------------- element-wise -- */

static void job_add(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    for (int k; (k = next_chunk(j->t, tid)) >= 0;) {
        size_t i0, i1;
        chunk_range(j->n, k, range_chunks(j->t), &i0, &i1);
        for (size_t i = i0; i < i1; i++) j->y[i] += j->x[i];
    }
}

void team_add(Team *t, float *y, const float *x, size_t n) {
    Job j = {.y = y, .x = x, .n = n};
    run(t, job_add, &j, range_chunks(t));
}

/* ---------------------------------------------------------- optimiser -- */

static void job_sgd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    (void)nt;
    for (int k; (k = next_chunk(j->t, tid)) >= 0;) {
        size_t i0, i1;
        chunk_range(j->n, k, range_chunks(j->t), &i0, &i1);
        dacl_sgd_step(j->y + i0, j->g + i0, j->buf + i0, i1 - i0, j->lr, j->momentum, j->wd);
    }
}

void team_sgd(Team *t, float *w, const float *g, float *buf, size_t n, float lr, float momentum,
              float wd) {
    Job j = {.y = w, .g = g, .buf = buf, .n = n, .lr = lr, .momentum = momentum, .wd = wd};
    run(t, job_sgd, &j, range_chunks(t));
}
