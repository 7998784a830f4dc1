/* The contrastive module's primitives (method.md §3): multi-scale kNN
 * density (the paper's FDA, Eq. 3-5), the per-class soft density-guided
 * contrastive loss (SDCL, Eq. 9-10) and the class memory bank.
 *
 * Dims: D embedding size, nq query rows, ns = n1 + n2 set rows, K = the
 * largest k of knn, q anchors, j negatives. Embeddings are row-major and
 * unit-norm, so a cosine is a dot product and a block of them one GEMM. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "contrast_internal.h"
#include "dacl/method.h"

#define DRB 128  /* query rows per similarity tile */
#define DCB 1024 /* set rows per tile: a tile (512 KiB) stays in cache for the GEMM and the scan */
#define LRB 256 /* anchors per logit block in the loss */

/* ------------------------------------------------------------ density -- */

/* Per query row, across the set's tiles: a buffer of candidates, its first
 * K the K largest seen so far once it has been compacted, and thr the
 * smallest of those. Values above thr are appended; a full buffer (K + cap)
 * is compacted by quickselect. Most values fail the threshold test, which
 * runs 16 at a time in vector registers. */
static int cand_cap(int K) { return K < 32 ? 64 : 2 * K; }

size_t dacl_density_ws(int set_rows, int kmax, int threads) {
    (void)set_rows; /* tiles are fixed: the set is swept DCB rows at a time */
    return (size_t)threads * ((size_t)DRB * DCB + (size_t)DRB * (kmax + cand_cap(kmax)));
}

static float med3(float a, float b, float c) {
    if (a > b) { float t = a; a = b; b = t; }
    if (b > c) b = c;
    return a > b ? a : b;
}

/* Quickselect, descending: afterwards a[0..k) >= a[k-1] >= a[k..n). */
static void select_desc(float *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        float x = med3(a[lo], a[lo + (hi - lo) / 2], a[hi]);
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > x) i++;
            while (a[j] < x) j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return; /* a[k-1] equals the pivot, everything is in place */
    }
}

typedef struct {
    float *buf; /* [K + cap] */
    int m;      /* values in buf */
    float thr;  /* the K-th largest so far (-inf until K are known) */
} Cand;

static void cand_compact(Cand *c, int K) {
    select_desc(c->buf, c->m, K);
    c->m = K;
    float t = c->buf[0];
    for (int i = 1; i < K; i++) t = c->buf[i] < t ? c->buf[i] : t;
    c->thr = t;
}

/* v[j] is a candidate when above the threshold and not the query itself */
static inline void cand_take(Cand *c, float x, int K, int size) {
    c->buf[c->m++] = x;
    if (c->m == size) cand_compact(c, K);
}

/* Any of v[0..16) above thr: two 8-lane compares (GCC vector extensions;
 * the plain loop is left scalar by the compiler here, at 4x the cost). */
typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));

static inline int any_above16(const float *v, float thr) {
    F8 a, b;
    memcpy(&a, v, sizeof a);
    memcpy(&b, v + 8, sizeof b);
    I8 m = (a > thr) | (b > thr);
    uint64_t q[4];
    memcpy(q, &m, sizeof q);
    return (q[0] | q[1] | q[2] | q[3]) != 0;
}

/* feeds v[0..n) but v[skip]; only a block of 16 with a hit is walked */
static void cand_feed(Cand *c, const float *v, int n, int skip, int K, int size) {
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        if (!any_above16(v + j, c->thr)) continue;
        for (int l = 0; l < 16; l++)
            if (v[j + l] > c->thr && j + l != skip) cand_take(c, v[j + l], K, size);
    }
    for (; j < n; j++)
        if (v[j] > c->thr && j != skip) cand_take(c, v[j], K, size);
}

typedef struct {
    float *dens, *ws;
    const float *x, *y1, *y2;
    const int *knn;
    int nq, n1, n2, self_at, d, nk;
} DensityJob;

/* Row blocks of DRB queries; for each, the set in tiles of DCB rows (one
 * GEMM each), every row's candidates kept across the tiles. */
static void job_density(void *ctx, int tid, int nt) {
    DensityJob *j = ctx;
    const int K = j->knn[j->nk - 1], size = K + cand_cap(K), ns = j->n1 + j->n2;
    float *g = j->ws + (size_t)tid * ((size_t)DRB * DCB + (size_t)DRB * size), *bufs = g + (size_t)DRB * DCB;
    Cand cand[DRB];
    int b0, b1;
    dacl_split((j->nq + DRB - 1) / DRB, tid, nt, &b0, &b1);
    for (int b = b0; b < b1; b++) {
        int r0 = b * DRB, n = j->nq - r0 < DRB ? j->nq - r0 : DRB;
        const float *xb = j->x + (size_t)r0 * j->d;
        for (int i = 0; i < n; i++) cand[i] = (Cand){bufs + (size_t)i * size, 0, -INFINITY};
        for (int c0 = 0, c1; c0 < ns; c0 = c1) {
            /* set rows [c0, c1): from y1, then from y2; a tile never straddles them */
            int lim = c0 < j->n1 ? j->n1 : ns, w;
            c1 = c0 + DCB < lim ? c0 + DCB : lim;
            w = c1 - c0;
            const float *y = c0 < j->n1 ? j->y1 + (size_t)c0 * j->d : j->y2 + (size_t)(c0 - j->n1) * j->d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w, j->d, 1.0f, xb, j->d, y, j->d, 0.0f,
                        g, w);
            for (int i = 0; i < n; i++) {
                int self = j->self_at < 0 ? -1 : j->self_at + r0 + i - c0;
                cand_feed(&cand[i], g + (size_t)i * w, w, self, K, size);
            }
        }
        /* the K largest, then nested selections for the smaller k: sums only */
        for (int i = 0; i < n; i++) {
            Cand *c = &cand[i];
            if (c->m > K) cand_compact(c, K);
            double d = 0.0;
            for (int s = j->nk - 1, upto = K; s >= 0; s--) {
                int k = j->knn[s];
                if (k < upto) select_desc(c->buf, upto, k), upto = k;
                double sum = 0.0;
                for (int t = 0; t < k; t++) sum += c->buf[t];
                d += sum / k;
            }
            j->dens[r0 + i] = (float)(d / j->nk);
        }
    }
}

void dacl_density(float *dens, const float *x, int nq, const float *y1, int n1, const float *y2,
                  int n2, int self_at, int d, const int *knn, int nk, float *ws, DaclPool *pool) {
    if (nq <= 0) return;
    DensityJob j = {.dens = dens, .ws = ws, .x = x, .y1 = y1, .y2 = y2, .knn = knn,
                    .nq = nq, .n1 = n1, .n2 = n2, .self_at = self_at, .d = d, .nk = nk};
    dacl_pool_run(pool, job_density, &j);
}

/* --------------------------------------------------------- class loss -- */

size_t dacl_class_loss_ws(int q, int j) {
    int b = q < LRB ? q : LRB;
    return (size_t)(b > 0 ? b : 1) * (size_t)(j > 0 ? j : 1) + 2 * (size_t)(b > 0 ? b : 1) + (size_t)q;
}

/* Every mode's gradient has the form dm_i = a_i c + b_i sum_j p_ij n_j with
 * p_i. the softmax over the negatives' logits (and the positive's, for NONE
 * and WEIGHTED), so a block of anchors is two GEMMs:
 *   NONE      a_i = (p_i0 - 1) / (q tau)               b_i = 1 / (q tau)
 *   WEIGHTED  a_i = w_i (p_i0 - 1) / tau               b_i = w_i / tau
 *   LITERAL   a_i = (w_i - 1/q) - 1 / (q tau)          b_i = 1 / (q tau)
 * (LITERAL: mean_i of -log q - log w_i - s_i + lse_j(s_ij), with the
 * softmax w not detached, w the softmax of t_i = m_i.c.) */
double dacl_class_loss(float *dm, const float *m, int q, const float *c, const float *neg, int j,
                       int d, double tau, DaclPositiveness mode, float scale, float *ws) {
    if (q <= 0 || j <= 0) return 0.0;
    float *t = ws, *blk = ws + q, *acoef = blk + (size_t)(q < LRB ? q : LRB) * j;
    /* t_i = m_i.c, and the softmax over the anchors (WEIGHTED, LITERAL) */
    double tmax = -INFINITY, z = 0.0;
    for (int i = 0; i < q; i++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += (double)m[(size_t)i * d + k] * c[k];
        t[i] = (float)s;
        if (s > tmax) tmax = s;
    }
    for (int i = 0; i < q; i++) z += exp(t[i] - tmax);
    const double logz = tmax + log(z), inv_q = 1.0 / q, inv_tau = 1.0 / tau;
    const int with_pos = mode != DACL_POS_LITERAL;
    double loss = 0.0;
    for (int b0 = 0; b0 < q; b0 += LRB) {
        int n = q - b0 < LRB ? q - b0 : LRB;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, j, d, (float)inv_tau, m + (size_t)b0 * d, d,
                    neg, d, 0.0f, blk, j);
        for (int i = 0; i < n; i++) {
            float *row = blk + (size_t)i * j;
            double si = t[b0 + i] * inv_tau, mx = with_pos ? si : -INFINITY, sum = 0.0;
            for (int k = 0; k < j; k++)
                if (row[k] > mx) mx = row[k];
            for (int k = 0; k < j; k++) sum += exp(row[k] - mx);
            if (with_pos) sum += exp(si - mx);
            double lse = mx + log(sum), w = exp(t[b0 + i] - logz), a, bc;
            if (mode == DACL_POS_NONE) {
                loss += (lse - si) * inv_q;
                a = (exp(si - lse) - 1.0) * inv_q * inv_tau, bc = inv_q * inv_tau;
            } else if (mode == DACL_POS_WEIGHTED) {
                loss += w * (lse - si);
                a = w * (exp(si - lse) - 1.0) * inv_tau, bc = w * inv_tau;
            } else {
                loss += (-log((double)q) - (t[b0 + i] - logz) - si + lse) * inv_q;
                a = (w - inv_q) - inv_q * inv_tau, bc = inv_q * inv_tau;
            }
            if (!dm) continue;
            acoef[i] = (float)(a * scale);
            for (int k = 0; k < j; k++) row[k] = (float)(exp(row[k] - lse) * bc * scale);
        }
        if (!dm) continue;
        float *out = dm + (size_t)b0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, j, 1.0f, blk, j, neg, d, 0.0f, out, d);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < d; k++) out[(size_t)i * d + k] += acoef[i] * c[k];
    }
    return loss;
}

/* --------------------------------------------------------------- bank -- */

struct DaclBank {
    int classes, cap, dim;
    int32_t *count, *pos;
    uint64_t *version;
    float *data, *dens; /* [classes, cap, dim], [classes, cap] */
};

void dacl_bank_free(DaclBank *b) {
    if (!b) return;
    free(b->count), free(b->pos), free(b->version), free(b->data), free(b->dens);
    free(b);
}

int dacl_bank_create(DaclBank **out, int classes, int capacity, int dim) {
    *out = NULL;
    if (classes < 1 || classes > DACL_CL_MAX_CLASSES || capacity < 1 || dim < 1)
        return DACL_FAIL(DACL_EINVAL, "memory bank: bad shape (%d classes of %d x %d)", classes, capacity,
                         dim);
    DaclBank *b = calloc(1, sizeof *b);
    if (!b) return DACL_FAIL(DACL_ENOMEM, "out of memory for the memory bank");
    b->classes = classes, b->cap = capacity, b->dim = dim;
    size_t rows = (size_t)classes * capacity;
    b->count = calloc((size_t)classes, sizeof *b->count);
    b->pos = calloc((size_t)classes, sizeof *b->pos);
    b->version = calloc((size_t)classes, sizeof *b->version);
    b->data = calloc(rows * dim, sizeof(float));
    b->dens = calloc(rows, sizeof(float));
    if (!b->count || !b->pos || !b->version || !b->data || !b->dens) {
        dacl_bank_free(b);
        return DACL_FAIL(DACL_ENOMEM, "out of memory for the memory bank (%zu entries of %d)", rows, dim);
    }
    *out = b;
    return DACL_OK;
}

void dacl_bank_clear(DaclBank *b) {
    size_t rows = (size_t)b->classes * b->cap;
    memset(b->data, 0, rows * b->dim * sizeof(float));
    memset(b->dens, 0, rows * sizeof(float));
    for (int k = 0; k < b->classes; k++) b->count[k] = 0, b->pos[k] = 0, b->version[k]++;
}

void dacl_bank_push(DaclBank *b, int cls, const float *emb, const float *dens, int n) {
    float *data = b->data + (size_t)cls * b->cap * b->dim, *dd = b->dens + (size_t)cls * b->cap;
    for (int i = 0; i < n; i++) {
        int p = b->pos[cls];
        memcpy(data + (size_t)p * b->dim, emb + (size_t)i * b->dim, (size_t)b->dim * sizeof(float));
        dd[p] = dens ? dens[i] : NAN;
        b->pos[cls] = p + 1 == b->cap ? 0 : p + 1;
        if (b->count[cls] < b->cap) b->count[cls]++;
    }
    if (n > 0) b->version[cls]++;
}

int dacl_bank_count(const DaclBank *b, int cls) { return b->count[cls]; }
int dacl_bank_position(const DaclBank *b, int cls) { return b->pos[cls]; }
uint64_t dacl_bank_version(const DaclBank *b, int cls) { return b->version[cls]; }
const float *dacl_bank_data(const DaclBank *b, int cls) {
    return b->data + (size_t)cls * b->cap * b->dim;
}
const float *dacl_bank_density(const DaclBank *b, int cls) { return b->dens + (size_t)cls * b->cap; }
int dacl_bank_capacity(const DaclBank *b) { return b->cap; }

size_t dacl_bank_state_bytes(const DaclBank *b) {
    size_t rows = (size_t)b->classes * b->cap;
    return (size_t)b->classes * 8 + rows * ((size_t)b->dim + 1) * sizeof(float);
}

void dacl_bank_state_write(const DaclBank *b, unsigned char **p) {
    size_t rows = (size_t)b->classes * b->cap;
    for (int k = 0; k < b->classes; k++) {
        le_put_u32(p, (uint32_t)b->count[k]);
        le_put_u32(p, (uint32_t)b->pos[k]);
    }
    le_put_f32s(p, b->data, rows * b->dim);
    le_put_f32s(p, b->dens, rows);
}

int dacl_bank_state_read(DaclBank *b, const unsigned char **p) {
    size_t rows = (size_t)b->classes * b->cap;
    const unsigned char *q = *p;
    for (int k = 0; k < b->classes; k++) {
        int32_t c = (int32_t)le_get_u32(&q), at = (int32_t)le_get_u32(&q);
        /* a ring that is not full has written exactly its count */
        if (c < 0 || c > b->cap || at < 0 || at >= b->cap || (c < b->cap && at != c))
            return DACL_FAIL(DACL_EFORMAT, "memory bank: class %d holds %d entries at slot %d of %d", k,
                             c, at, b->cap);
    }
    for (int k = 0; k < b->classes; k++) {
        b->count[k] = (int32_t)le_get_u32(p);
        b->pos[k] = (int32_t)le_get_u32(p);
        b->version[k]++;
    }
    le_get_f32s(p, b->data, rows * b->dim);
    le_get_f32s(p, b->dens, rows);
    return DACL_OK;
}
