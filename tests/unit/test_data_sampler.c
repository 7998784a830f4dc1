/* The slice store, the SSL4MIS geometry (core/data/augment.c) and the two-stream sampler
 * (core/data/sampler.c): every resize and augmentation of the scipy fixture bit for bit
 * (tests/reference/make_resize_fixtures.py), rot90/flip and rotation properties, the sampler on
 * slice sets built in memory (epochs, batch composition, determinism, threads, save/restore),
 * the time to fill a 12 + 12 batch, and the labeled set of 3 ACDC patients when the shared data
 * is there (skipped otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "refload.h"
#include "test_data_util.h"

#define FIXTURE DACL_SOURCE_DIR "/tests/reference/resize_fixtures.bin"

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the scipy fixture ---- */

/* Case c's input, as make_resize_fixtures.py computes it: exact float32 in (0, 1]. */
static void fixture_image(float *x, int c, int h, int w) {
    for (uint64_t i = 0; i < (uint64_t)h * w; i++) {
        uint32_t u = (uint32_t)((i + 7919u * (uint64_t)c) * 2654435761u);
        x[i] = (float)((double)((u >> 8) + 1) * 0x1p-24);
    }
}

/* The label the script derives from an image: (x * 4) cast to uint8. */
static void derive_labels(uint8_t *l, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) l[i] = (uint8_t)(x[i] * 4.0f);
}

static void test_scipy_fixture(void **state) {
    (void)state;
    RefFile ref;
    if (ref_load(&ref, FIXTURE) != 0) fail_msg("cannot read %s", FIXTURE);
    int cases = 0, resizes = 0, zero_filled = 0;
    for (int c = 0;; c++) {
        char name[64];
        snprintf(name, sizeof name, "case%02d/params", c);
        const RefTensor *p = ref_find(&ref, name);
        if (!p) break;
        snprintf(name, sizeof name, "case%02d/out", c);
        const RefTensor *want = ref_find(&ref, name);
        assert_non_null(want);
        DaclAug a = {(int)p->data[0], (int)p->data[1], (int)p->data[2], (int)p->data[3]};
        int h = (int)p->data[4], w = (int)p->data[5], ph = (int)p->data[6], pw = (int)p->data[7];
        assert_int_equal(want->numel, (size_t)ph * pw);
        size_t n = (size_t)h * w, m = (size_t)ph * pw;
        float *img = malloc(n * sizeof *img), *out = malloc(m * sizeof *out);
        uint8_t *lab = malloc(n), *olab = malloc(m), *want_lab = malloc(m);
        assert_true(img && out && lab && olab && want_lab);
        fixture_image(img, c, h, w);
        derive_labels(lab, img, n);
        derive_labels(want_lab, want->data, m);
        assert_int_equal(dacl_aug_apply(&a, out, olab, ph, pw, img, lab, h, w), DACL_OK);
        for (size_t i = 0; i < m; i++)
            if (out[i] != want->data[i] || olab[i] != want_lab[i])
                fail_msg("case %d (kind %d k %d axis %d angle %d, %dx%d -> %dx%d): pixel (%zu, %zu) is %a / %d, "
                         "scipy %a / %d",
                         c, a.kind, a.k, a.axis, a.angle, h, w, ph, pw, i / pw, i % pw, out[i], olab[i],
                         want->data[i], want_lab[i]);
        if (a.kind == DACL_AUG_NONE) { /* the plain resize entry points give the same */
            memset(out, 0xff, m * sizeof *out), memset(olab, 0xff, m);
            dacl_resize_nearest_f32(out, ph, pw, img, h, w);
            dacl_resize_nearest_u8(olab, ph, pw, lab, h, w);
            assert_memory_equal(out, want->data, m * sizeof *out);
            assert_memory_equal(olab, want_lab, m);
            for (size_t i = 0; i < m; i++) zero_filled += want->data[i] == 0.0f;
            resizes++;
        }
        free(img), free(out), free(lab), free(olab), free(want_lab);
        cases++;
    }
    print_message("%d scipy cases (%d plain resizes, %d zero-filled pixels among them) match bit for bit\n", cases,
                  resizes, zero_filled);
    assert_true(cases >= 60);
    assert_true(zero_filled > 0); /* the overshoot cases are really exercised */
    ref_free(&ref);
}

/* ---- properties ---- */

/* out = a applied to x (h, w) with no resize: the augmented size is (h1, w1). */
static void augment_native(const DaclAug *a, float *out, const float *x, int h, int w) {
    int odd = a->kind == DACL_AUG_ROT_FLIP && (a->k & 1);
    assert_int_equal(dacl_aug_apply(a, out, NULL, odd ? w : h, odd ? h : w, x, NULL, h, w), DACL_OK);
}

static void test_rot90_flip(void **state) {
    (void)state;
    enum { H = 7, W = 4, N = H * W };
    float x[N], a[N], b[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i + 1);
    /* rot90 once: shape (W, H), out[i][j] = x[j][W-1-i] */
    DaclAug r1 = {DACL_AUG_ROT_FLIP, 1, -1, 0};
    augment_native(&r1, a, x, H, W);
    for (int i = 0; i < W; i++)
        for (int j = 0; j < H; j++) assert_true(a[i * H + j] == x[j * W + (W - 1 - i)]);
    /* four quarter turns are the identity */
    memcpy(a, x, sizeof x);
    int h = H, w = W;
    for (int t = 0; t < 4; t++) {
        augment_native(&r1, b, a, h, w);
        int s = h;
        h = w, w = s;
        memcpy(a, b, sizeof b);
    }
    assert_memory_equal(a, x, sizeof x);
    /* a flip twice is the identity; k = 2 is both flips */
    for (int axis = 0; axis < 2; axis++) {
        DaclAug f = {DACL_AUG_ROT_FLIP, 0, axis, 0};
        augment_native(&f, a, x, H, W);
        assert_memory_not_equal(a, x, sizeof x);
        augment_native(&f, b, a, H, W);
        assert_memory_equal(b, x, sizeof x);
    }
    DaclAug f0 = {DACL_AUG_ROT_FLIP, 0, 0, 0}, f1 = {DACL_AUG_ROT_FLIP, 0, 1, 0};
    DaclAug r2 = {DACL_AUG_ROT_FLIP, 2, -1, 0};
    augment_native(&f0, a, x, H, W);
    augment_native(&f1, b, a, H, W);
    augment_native(&r2, a, x, H, W);
    assert_memory_equal(a, b, sizeof x);
    /* rot90 and flip only move pixels: the multiset of values is kept (here: a permutation) */
    for (int k = 0; k < 4; k++)
        for (int axis = 0; axis < 2; axis++) {
            DaclAug rf = {DACL_AUG_ROT_FLIP, k, axis, 0};
            augment_native(&rf, a, x, H, W);
            double sum = 0;
            for (int i = 0; i < N; i++) sum += a[i];
            assert_true(sum == N * (N + 1) / 2);
        }
    /* bad draws are refused */
    DaclAug bad[] = {{DACL_AUG_ROT_FLIP, 4, 0, 0}, {DACL_AUG_ROT_FLIP, 0, 2, 0}, {DACL_AUG_ROTATE, 0, 0, 91},
                     {7, 0, 0, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(dacl_aug_apply(&bad[i], a, NULL, H, W, x, NULL, H, W), DACL_EINVAL);
    assert_int_equal(dacl_aug_apply(&f0, a, NULL, 0, W, x, NULL, H, W), DACL_EINVAL);
}

static void test_rotation(void **state) {
    (void)state;
    enum { S = 64, N = S * S };
    float x[N], a[N], b[N];
    uint8_t l[N], la[N];
    /* a disk of class 1 with a ring of class 2 around it, off centre, on a textured image */
    int area1 = 0;
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++) {
            double r2 = (i - 30.0) * (i - 30.0) + (j - 34.0) * (j - 34.0);
            l[i * S + j] = r2 < 100 ? 1 : r2 < 225 ? 2 : 3;
            area1 += r2 < 100;
            x[i * S + j] = (float)(i * S + j + 1);
        }
    DaclAug r0 = {DACL_AUG_ROTATE, 0, 0, 0};
    assert_int_equal(dacl_aug_apply(&r0, a, la, S, S, x, l, S, S), DACL_OK);
    assert_memory_equal(a, x, sizeof x);
    assert_memory_equal(la, l, sizeof l);
    /* on a square, 90 degrees is exactly np.rot90 (cosdg(90) = 0, sindg(90) = 1) */
    DaclAug r90 = {DACL_AUG_ROTATE, 0, 0, 90}, q1 = {DACL_AUG_ROT_FLIP, 1, -1, 0};
    augment_native(&r90, a, x, S, S);
    augment_native(&q1, b, x, S, S);
    assert_memory_equal(a, b, sizeof x);
    for (int angle = -20; angle < 20; angle++) {
        DaclAug r = {DACL_AUG_ROTATE, 0, 0, angle};
        assert_int_equal(dacl_aug_apply(&r, a, la, S, S, x, l, S, S), DACL_OK);
        int n1 = 0;
        for (int i = 0; i < N; i++) {
            /* labels stay in their set (0 = the fill); every pixel is an input pixel or the fill,
             * and image and label come from the same place */
            assert_true(la[i] <= 3);
            assert_true(a[i] == 0.0f ? la[i] == 0 : a[i] >= 1 && a[i] <= N && la[i] == l[(int)a[i] - 1]);
            n1 += la[i] == 1;
        }
        assert_true(abs(n1 - area1) <= area1 / 20); /* nearest keeps the area within 5 % */
        /* the disk turns about the image centre (31.5, 31.5) */
        double ci = 0, cj = 0;
        for (int i = 0; i < N; i++)
            if (la[i] == 1) ci += i / S, cj += i % S;
        ci /= n1, cj /= n1;
        double th = angle * M_PI / 180, ei = 31.5 + (30 - 31.5) * cos(th) - (34 - 31.5) * sin(th),
               ej = 31.5 + (30 - 31.5) * sin(th) + (34 - 31.5) * cos(th);
        assert_true(fabs(ci - ei) < 0.6 && fabs(cj - ej) < 0.6);
        /* corners of a square turned by a non-zero angle fall outside: filled */
        if (angle) assert_true(a[0] == 0.0f || a[S - 1] == 0.0f || a[N - S] == 0.0f || a[N - 1] == 0.0f);
    }
}

/* ---- sampler on slice sets built in memory ---- */

/* A volume whose every pixel says where it is from: image = base + slice*1000 + pixel index
 * (below 2^24: exact), label = 1 + (pixel % 3) (0 only as the fill). */
static void add_volume(DaclSliceSet *set, int nz, int ny, int nx, float base, int labeled, int case_index) {
    DaclVolume v = {0};
    DaclLabelVolume l = {0};
    assert_int_equal(dacl_volume_alloc(&v, nz, ny, nx), DACL_OK);
    assert_int_equal(dacl_label_alloc(&l, nz, ny, nx), DACL_OK);
    for (int z = 0; z < nz; z++)
        for (int i = 0; i < ny * nx; i++) {
            v.data[(size_t)z * ny * nx + i] = base + (float)(set->n + z) * 1000.0f + (float)i;
            l.data[(size_t)z * ny * nx + i] = (uint8_t)(1 + i % 3);
        }
    assert_int_equal(dacl_slices_add_volume(set, &v, labeled ? &l : NULL, case_index), DACL_OK);
    dacl_volume_free(&v), dacl_label_free(&l);
}

typedef struct {
    DaclSliceSet lab, unl;
} Sets;

/* 12 labeled slices in 3 cases of different sizes; 9 unlabeled in 2 cases, one without labels. */
static int sets_setup(void **state) {
    Sets *s = calloc(1, sizeof *s);
    if (!s) return -1;
    add_volume(&s->lab, 4, 20, 16, 0.5f, 1, 0);
    add_volume(&s->lab, 3, 17, 23, 0.5f, 1, 1);
    add_volume(&s->lab, 5, 16, 16, 0.5f, 1, 2);
    add_volume(&s->unl, 6, 18, 18, 1e6f, 1, 3);
    add_volume(&s->unl, 3, 16, 20, 1e6f, 0, 4);
    *state = s;
    return 0;
}

static int sets_teardown(void **state) {
    Sets *s = *state;
    dacl_slices_free(&s->lab), dacl_slices_free(&s->unl);
    free(s);
    return 0;
}

static void test_slice_set(void **state) {
    Sets *s = *state;
    assert_int_equal(s->lab.n, 12), assert_int_equal(s->unl.n, 9);
    assert_int_equal(s->lab.max_h, 20), assert_int_equal(s->lab.max_w, 23);
    assert_int_equal(s->lab.numel, 4 * 320 + 3 * 391 + 5 * 256);
    const DaclSlice *sl = &s->lab.slices[5]; /* case 1, z 1 */
    assert_int_equal(sl->case_index, 1), assert_int_equal(sl->z, 1);
    assert_int_equal(sl->h, 17), assert_int_equal(sl->w, 23), assert_true(sl->has_label);
    assert_int_equal(sl->offset, 4 * 320 + 391);
    assert_true(s->lab.image[sl->offset + 7] == 0.5f + 5000.0f + 7.0f);
    assert_int_equal(s->lab.label[sl->offset + 7], 1 + 7 % 3);
    sl = &s->unl.slices[7];
    assert_false(sl->has_label);
    assert_int_equal(s->unl.label[sl->offset + 3], DACL_LABEL_NONE);
    /* a label of another shape is refused and leaves the set as it was */
    DaclVolume v = {0};
    DaclLabelVolume l = {0};
    assert_int_equal(dacl_volume_alloc(&v, 2, 8, 8), DACL_OK);
    assert_int_equal(dacl_label_alloc(&l, 2, 8, 9), DACL_OK);
    assert_int_equal(dacl_slices_add_volume(&s->lab, &v, &l, 9), DACL_EINVAL);
    assert_int_equal(s->lab.n, 12);
    dacl_volume_free(&v), dacl_label_free(&l);
}

typedef struct {
    float *x;
    uint8_t *y;
    int32_t *idx;
} Batch;

static Batch batch_alloc(const DaclSamplerConfig *c) {
    size_t m = (size_t)c->batch * c->ph * c->pw;
    Batch b = {malloc(m * sizeof(float)), malloc(m), malloc((size_t)c->batch * sizeof(int32_t))};
    assert_true(b.x && b.y && b.idx);
    return b;
}

static void batch_free(Batch *b) { free(b->x), free(b->y), free(b->idx); }

static void draw(DaclSampler *s, Batch *b) { assert_int_equal(dacl_sampler_next(s, b->x, b->y, b->idx), DACL_OK); }

static int batch_equal(const DaclSamplerConfig *c, const Batch *a, const Batch *b) {
    size_t m = (size_t)c->batch * c->ph * c->pw;
    return memcmp(a->x, b->x, m * sizeof(float)) == 0 && memcmp(a->y, b->y, m) == 0 &&
           memcmp(a->idx, b->idx, (size_t)c->batch * sizeof(int32_t)) == 0;
}

static const DaclSamplerConfig base_cfg = {.batch = 6, .labeled_batch = 4, .ph = 24, .pw = 20, .seed = 42};

/* Every sample of batch t is its slice, augmented by dacl_sampler_aug(seed, t, b) and resized:
 * labeled slots from the labeled set, the rest from the unlabeled one, labels or NONE. */
static void check_batch(const Sets *s, const DaclSamplerConfig *c, const Batch *b, uint64_t t) {
    size_t m = (size_t)c->ph * c->pw;
    float *x = malloc(m * sizeof *x);
    uint8_t *y = malloc(m);
    assert_true(x && y);
    for (int k = 0; k < c->batch; k++) {
        const DaclSliceSet *set = k < c->labeled_batch ? &s->lab : &s->unl;
        assert_true(b->idx[k] >= 0 && b->idx[k] < set->n);
        const DaclSlice *sl = &set->slices[b->idx[k]];
        DaclAug a;
        dacl_sampler_aug(c->seed, t, k, &a);
        if (c->no_augment) a = (DaclAug){DACL_AUG_NONE, 0, 0, 0};
        assert_int_equal(dacl_aug_apply(&a, x, y, c->ph, c->pw, set->image + sl->offset, set->label + sl->offset,
                                        sl->h, sl->w),
                         DACL_OK);
        if (!sl->has_label) memset(y, DACL_LABEL_NONE, m);
        assert_memory_equal(b->x + k * m, x, m * sizeof *x);
        assert_memory_equal(b->y + k * m, y, m);
        for (size_t i = 0; i < m; i++) /* labeled slots hold labeled pixels (< 1e6) or the fill */
            assert_true((k < c->labeled_batch) == (b->x[k * m + i] < 1e6f) || b->x[k * m + i] == 0.0f);
    }
    free(x), free(y);
}

static void test_sampler_batches(void **state) {
    Sets *s = *state;
    DaclSamplerConfig c = base_cfg;
    DaclSampler sm;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_OK);
    Batch b = batch_alloc(&c);
    int kinds[3] = {0};
    for (uint64_t t = 0; t < 12; t++) {
        draw(&sm, &b);
        check_batch(s, &c, &b, t);
        for (int k = 0; k < c.batch; k++) {
            DaclAug a;
            dacl_sampler_aug(c.seed, t, k, &a);
            kinds[a.kind]++;
        }
    }
    /* 72 draws: p = .5, .25, .25 */
    assert_true(kinds[DACL_AUG_ROT_FLIP] > 20 && kinds[DACL_AUG_ROTATE] > 8 && kinds[DACL_AUG_NONE] > 8);
    dacl_sampler_free(&sm);
    /* no augmentation: resize only */
    c.no_augment = 1;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_OK);
    draw(&sm, &b);
    check_batch(s, &c, &b, 0);
    dacl_sampler_free(&sm);
    batch_free(&b);
}

/* The labeled stream, SSL4MIS epochs: floor(12 / 5) = 2 batches per epoch, 10 distinct slices,
 * and the unlabeled stream restarts with each labeled epoch. Continuous: every 12 consecutive
 * labeled draws (and every 9 unlabeled) are a permutation. */
static void test_sampler_epochs(void **state) {
    Sets *s = *state;
    DaclSamplerConfig c = base_cfg;
    c.labeled_batch = 5, c.batch = 8;
    DaclSampler sm;
    Batch b = batch_alloc(&c);
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_OK);
    for (int e = 0; e < 4; e++) {
        int seen[12] = {0};
        for (int t = 0; t < 2; t++) {
            draw(&sm, &b);
            for (int k = 0; k < 5; k++) seen[b.idx[k]]++;
            assert_int_equal(sm.st.epoch[0], e), assert_int_equal(sm.st.epoch[1], e);
        }
        int distinct = 0;
        for (int i = 0; i < 12; i++) assert_true(seen[i] <= 1), distinct += seen[i];
        assert_int_equal(distinct, 10);
    }
    dacl_sampler_free(&sm);

    c.continuous = 1;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_OK);
    enum { T = 36 };
    int32_t lab_seq[T * 5], unl_seq[T * 3];
    for (int t = 0; t < T; t++) {
        draw(&sm, &b);
        memcpy(lab_seq + t * 5, b.idx, 5 * sizeof(int32_t));
        memcpy(unl_seq + t * 3, b.idx + 5, 3 * sizeof(int32_t));
    }
    for (int e = 0; e < T * 5 / 12; e++) {
        int seen[12] = {0};
        for (int i = 0; i < 12; i++) seen[lab_seq[e * 12 + i]]++;
        for (int i = 0; i < 12; i++) assert_int_equal(seen[i], 1);
    }
    for (int e = 0; e < T * 3 / 9; e++) {
        int seen[9] = {0};
        for (int i = 0; i < 9; i++) seen[unl_seq[e * 9 + i]]++;
        for (int i = 0; i < 9; i++) assert_int_equal(seen[i], 1);
    }
    /* and the permutations differ from epoch to epoch */
    assert_memory_not_equal(lab_seq, lab_seq + 12, 12 * sizeof(int32_t));
    dacl_sampler_free(&sm);
    batch_free(&b);
}

static void test_sampler_determinism(void **state) {
    Sets *s = *state;
    DaclSamplerConfig c = base_cfg;
    DaclSampler a, b, other, threaded;
    DaclPool *pool;
    assert_int_equal(dacl_pool_create(&pool, 3), DACL_OK);
    assert_int_equal(dacl_sampler_init(&a, &s->lab, &s->unl, &c), DACL_OK);
    assert_int_equal(dacl_sampler_init(&b, &s->lab, &s->unl, &c), DACL_OK);
    assert_int_equal(dacl_sampler_init(&threaded, &s->lab, &s->unl, &c), DACL_OK);
    threaded.pool = pool;
    c.seed = 43;
    assert_int_equal(dacl_sampler_init(&other, &s->lab, &s->unl, &c), DACL_OK);
    Batch ba = batch_alloc(&c), bb = batch_alloc(&c), bo = batch_alloc(&c), bt = batch_alloc(&c);
    for (int t = 0; t < 8; t++) {
        draw(&a, &ba), draw(&b, &bb), draw(&other, &bo), draw(&threaded, &bt);
        assert_true(batch_equal(&c, &ba, &bb));
        assert_true(batch_equal(&c, &ba, &bt)); /* the number of threads does not matter */
        assert_false(batch_equal(&c, &ba, &bo));
    }
    dacl_sampler_free(&a), dacl_sampler_free(&b), dacl_sampler_free(&other), dacl_sampler_free(&threaded);
    batch_free(&ba), batch_free(&bb), batch_free(&bo), batch_free(&bt);
    dacl_pool_free(pool);
}

/* Save after k batches, restore into a fresh sampler: the next batches are those of an
 * uninterrupted run, in both epoch modes and across epoch boundaries. */
static void test_sampler_resume(void **state) {
    Sets *s = *state;
    for (int continuous = 0; continuous < 2; continuous++)
        for (int k = 0; k < 7; k += 3) {
            DaclSamplerConfig c = base_cfg;
            c.continuous = continuous;
            DaclSampler run, fresh;
            assert_int_equal(dacl_sampler_init(&run, &s->lab, &s->unl, &c), DACL_OK);
            Batch b1 = batch_alloc(&c), b2 = batch_alloc(&c);
            for (int t = 0; t < k; t++) draw(&run, &b1);
            DaclSamplerState saved;
            memcpy(&saved, &run.st, sizeof saved); /* what a checkpoint stores */
            assert_int_equal(dacl_sampler_init(&fresh, &s->lab, &s->unl, &c), DACL_OK);
            assert_int_equal(dacl_sampler_restore(&fresh, &saved), DACL_OK);
            for (int t = 0; t < 9; t++) {
                draw(&run, &b1), draw(&fresh, &b2);
                assert_true(batch_equal(&c, &b1, &b2));
            }
            assert_memory_equal(&run.st, &fresh.st, sizeof saved);
            dacl_sampler_free(&fresh);
            /* a state from another configuration or other sets is refused, naming the field */
            c.labeled_batch = 3;
            assert_int_equal(dacl_sampler_init(&fresh, &s->lab, &s->unl, &c), DACL_OK);
            DaclSamplerState before = fresh.st;
            assert_fails(dacl_sampler_restore(&fresh, &saved), DACL_EINVAL, "labeled_batch");
            assert_memory_equal(&fresh.st, &before, sizeof before);
            dacl_sampler_free(&fresh);
            c.labeled_batch = base_cfg.labeled_batch;
            assert_int_equal(dacl_sampler_init(&fresh, &s->lab, &s->lab, &c), DACL_OK);
            assert_fails(dacl_sampler_restore(&fresh, &saved), DACL_EINVAL, "unlabeled slices");
            dacl_sampler_free(&fresh);
            assert_int_equal(dacl_sampler_init(&fresh, &s->lab, &s->unl, &c), DACL_OK);
            saved.pos[0] = 13;
            assert_fails(dacl_sampler_restore(&fresh, &saved), DACL_EINVAL, "position");
            dacl_sampler_free(&fresh), dacl_sampler_free(&run);
            batch_free(&b1), batch_free(&b2);
        }
}

static void test_sampler_config(void **state) {
    Sets *s = *state;
    DaclSampler sm;
    DaclSamplerConfig c = base_cfg;
    /* fully supervised: no unlabeled set, so the whole batch must be labeled */
    assert_fails(dacl_sampler_init(&sm, &s->lab, NULL, &c), DACL_EINVAL, "unlabeled");
    DaclSliceSet empty = {0};
    assert_fails(dacl_sampler_init(&sm, &s->lab, &empty, &c), DACL_EINVAL, "unlabeled");
    c.labeled_batch = c.batch;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, NULL, &c), DACL_OK);
    Batch b = batch_alloc(&c);
    draw(&sm, &b);
    check_batch(s, &c, &b, 0);
    dacl_sampler_free(&sm);
    batch_free(&b);
    /* bad sizes; a labeled set with an unlabeled slice; too few labeled slices for SSL4MIS epochs */
    c = base_cfg, c.labeled_batch = 0;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_EINVAL);
    c = base_cfg, c.labeled_batch = 7;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_EINVAL);
    c = base_cfg, c.ph = 0;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_EINVAL);
    c = base_cfg;
    assert_fails(dacl_sampler_init(&sm, &s->unl, &s->lab, &c), DACL_EINVAL, "has no label");
    c.batch = 16, c.labeled_batch = 13;
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_EINVAL);
    c.continuous = 1; /* wraps within a batch instead */
    assert_int_equal(dacl_sampler_init(&sm, &s->lab, &s->unl, &c), DACL_OK);
    dacl_sampler_free(&sm);
}

/* The SSL4MIS batch, 12 labeled + 12 unlabeled at 256x256, from ACDC-sized slices. */
static void test_sampler_timing(void **state) {
    (void)state;
    DaclSliceSet lab = {0}, unl = {0};
    add_volume(&lab, 8, 256, 232, 0.5f, 1, 0);
    add_volume(&lab, 8, 216, 256, 0.5f, 1, 1);
    add_volume(&unl, 8, 154, 224, 0.5f, 1, 2);
    add_volume(&unl, 8, 512, 428, 0.5f, 1, 3);
    DaclSamplerConfig c = {.batch = 24, .labeled_batch = 12, .ph = 256, .pw = 256, .seed = 7};
    DaclSampler sm;
    assert_int_equal(dacl_sampler_init(&sm, &lab, &unl, &c), DACL_OK);
    Batch b = batch_alloc(&c);
    DaclPool *pool;
    assert_int_equal(dacl_pool_create(&pool, 2), DACL_OK);
    for (int threads = 1; threads <= 2; threads++) {
        sm.pool = threads > 1 ? pool : NULL;
        draw(&sm, &b); /* warm the pages */
        double t0 = seconds();
        enum { REPS = 10 };
        for (int r = 0; r < REPS; r++) draw(&sm, &b);
        double per = (seconds() - t0) / REPS;
        print_message("12 + 12 batch at 256x256, %d thread%s: %.2f ms\n", threads, threads > 1 ? "s" : "",
                      1e3 * per);
        assert_true(per < 0.5); /* a small fraction of a ~3 s step, even under the sanitizers */
    }
    dacl_pool_free(pool);
    dacl_sampler_free(&sm);
    batch_free(&b);
    dacl_slices_free(&lab), dacl_slices_free(&unl);
}

/* ---- real data: ACDC's 5 % labeled set ---- */

static void test_acdc_slices(void **state) {
    TmpFx *fx = *state;
    char src[512], out[256], msg[512];
    snprintf(src, sizeof src, "%s/acdc", DACL_SHARED_DATA);
    snprintf(msg, sizeof msg, "%s/acdc/train.list", DACL_SHARED_DATA);
    if (access(msg, R_OK) != 0) {
        print_message("skipping: %s not found (the shared data is absent)\n", src);
        skip();
    }
    PATH(out, fx->dir, "acdc.json");
    assert_int_equal(dacl_dataset_init(src, out, 0, msg, sizeof msg), DACL_OK);
    DaclDataset ds = {0};
    assert_int_equal(dacl_dataset_load(out, &ds), DACL_OK);
    uint8_t mask[140];
    int n_cases;
    assert_int_equal(dacl_dataset_labeled(&ds, 3, mask, &n_cases), DACL_OK);
    assert_int_equal(n_cases, 6);
    DaclSliceSet set = {0};
    double t0 = seconds();
    assert_int_equal(dacl_slices_load(&set, &ds, &ds.train, mask, 1), DACL_OK);
    double dt = seconds() - t0;
    /* the slices are the cases' Z slices, in order, with their own pixels */
    int z_total = 0, at = 0;
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    for (int i = 0; i < ds.train.n; i++) {
        if (!mask[i]) continue;
        assert_int_equal(dacl_dataset_load_case(&ds, &ds.train.cases[i], &img, &lab), DACL_OK);
        for (int z = 0; z < img.nz; z++, at++) {
            const DaclSlice *sl = &set.slices[at];
            assert_int_equal(sl->case_index, i), assert_int_equal(sl->z, z);
            assert_int_equal(sl->h, img.ny), assert_int_equal(sl->w, img.nx), assert_true(sl->has_label);
            size_t plane = (size_t)img.ny * img.nx;
            assert_memory_equal(set.image + sl->offset, img.data + z * plane, plane * sizeof(float));
            assert_memory_equal(set.label + sl->offset, lab.data + z * plane, plane);
        }
        z_total += img.nz;
    }
    assert_int_equal(set.n, z_total);
    assert_true(set.n >= 36 && set.n <= 108); /* 6 volumes of 6..18 slices */
    print_message("ACDC 3 patients: %d labeled slices (%zu pixels, max %dx%d) loaded in %.2f s\n", set.n,
                  set.numel, set.max_h, set.max_w, dt);
    dacl_volume_free(&img), dacl_label_free(&lab);
    dacl_slices_free(&set);
    dacl_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scipy_fixture),
        cmocka_unit_test(test_rot90_flip),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test_setup_teardown(test_slice_set, sets_setup, sets_teardown),
        cmocka_unit_test_setup_teardown(test_sampler_batches, sets_setup, sets_teardown),
        cmocka_unit_test_setup_teardown(test_sampler_epochs, sets_setup, sets_teardown),
        cmocka_unit_test_setup_teardown(test_sampler_determinism, sets_setup, sets_teardown),
        cmocka_unit_test_setup_teardown(test_sampler_resume, sets_setup, sets_teardown),
        cmocka_unit_test_setup_teardown(test_sampler_config, sets_setup, sets_teardown),
        cmocka_unit_test(test_sampler_timing),
        cmocka_unit_test_setup_teardown(test_acdc_slices, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
