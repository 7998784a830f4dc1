/* SSL4MIS's per-sample geometry, bit for bit: nearest resize as scipy.ndimage.zoom(order=0),
 * np.rot90 + np.flip, and scipy.ndimage.rotate(order=0, reshape=False), composed into one gather.
 *
 * Dims: (h, w) a native slice, (h1, w1) the slice after rot90 (swapped for odd k), (ph, pw) the
 * patch. Every transform here only moves pixels (nearest neighbour, zero fill), so a whole sample
 * is one map "patch pixel -> native pixel or none": each patch pixel goes back through the
 * resize to the augmented grid and through the augmentation to the native grid, and image and
 * label are gathered with the same index. No intermediate image, no workspace.
 *
 * The reference is scipy 1.10.1 / numpy 1.24.2 on Debian 12 (tests/reference/
 * make_resize_fixtures.py); every coordinate is computed in double in scipy's order of
 * operations, which is why this file must not be compiled with floating-point contraction (the
 * project builds as ISO C11, where GCC's default is -ffp-contract=off). */
#include <math.h>
#include <stdint.h>

#include "dacl/data.h"
#include "dacl/error.h"

/* scipy.special.cosdg / sindg of 0..90 degrees, printed by make_resize_fixtures.py --table.
 * ndimage.rotate builds its matrix from these; libm's cos(a * pi / 180) differs from them in the
 * last bit for about half of the integer angles. cosdg(-a) = cosdg(a), sindg(-a) = -sindg(a)
 * exactly (cephes reduces |a|). */
static const double cos_sin_deg[91][2] = {
    {0x1.0000000000000p+0, 0x0.0p+0}, {0x1.ffec097f5af8ap-1, 0x1.1df0b2b89dd1ep-6},
    {0x1.ffb0278bf0567p-1, 0x1.1de58c9f7dc27p-5}, {0x1.ff4c5ed12e61dp-1, 0x1.acbc748efc90ep-5},
    {0x1.fec0b7170fff6p-1, 0x1.1db8f6d6a5128p-4}, {0x1.fe0d3b41815a2p-1, 0x1.64fd6b8c28102p-4},
    {0x1.fd31f94f867c6p-1, 0x1.ac2609b3c576cp-4}, {0x1.fc2f025a23e8bp-1, 0x1.f32d44c4f62d3p-4},
    {0x1.fb046a930947ap-1, 0x1.1d06c968d9e19p-3}, {0x1.f9b24942fe45cp-1, 0x1.4060b67a85375p-3},
    {0x1.f838b8c811c17p-1, 0x1.63a1a7e0b7389p-3}, {0x1.f697d6938b6c2p-1, 0x1.86c6ddd76624fp-3},
    {0x1.f4cfc327a0080p-1, 0x1.a9cd9ac4258f6p-3}, {0x1.f2e0a214e870fp-1, 0x1.ccb3236cdc675p-3},
    {0x1.f0ca99f79ba25p-1, 0x1.ef74bf2e4b91dp-3}, {0x1.ee8dd4748bf15p-1, 0x1.0907dc1930690p-2},
    {0x1.ec2a7e35e7b80p-1, 0x1.1a40add328e29p-2}, {0x1.e9a0c6e7bdb1fp-1, 0x1.2b637cf83d5c8p-2},
    {0x1.e6f0e134454ffp-1, 0x1.3c6ef372fe94fp-2}, {0x1.e41b02bfeb4cbp-1, 0x1.4d61bd000cddcp-2},
    {0x1.e11f642522d1cp-1, 0x1.5e3a8748a0bf5p-2}, {0x1.ddfe40effb805p-1, 0x1.6ef801fced33cp-2},
    {0x1.dab7d7997cb58p-1, 0x1.7f98deee59681p-2}, {0x1.d74c6982c666fp-1, 0x1.901bd2298ffabp-2},
    {0x1.d3bc3aeff7f95p-1, 0x1.a07f921061ad1p-2}, {0x1.d0079302dd767p-1, 0x1.b0c2d77379853p-2},
    {0x1.cc2ebbb5638cap-1, 0x1.c0e45dabe05c8p-2}, {0x1.c83201d3d2c6dp-1, 0x1.d0e2e2b44de00p-2},
    {0x1.c411b4f6d2708p-1, 0x1.e0bd274245079p-2}, {0x1.bfce277d339c6p-1, 0x1.f071eedefa0edp-2},
    {0x1.bb67ae8584cabp-1, 0x1.fffffffffffffp-2}, {0x1.b6dea1e76eadep-1, 0x1.07b3120fddf13p-1},
    {0x1.b2335c2cda945p-1, 0x1.0f5193eacdd2ap-1}, {0x1.ad663a8ae2fdcp-1, 0x1.16daed770771dp-1},
    {0x1.a8779cda8eea4p-1, 0x1.1e4e88411fd13p-1}, {0x1.a367e59158747p-1, 0x1.25abcf87c4978p-1},
    {0x1.9e3779b97f4a8p-1, 0x1.2cf2304755a5ep-1}, {0x1.98e6c0ea27a14p-1, 0x1.342119455beb6p-1},
    {0x1.9376253f463d1p-1, 0x1.3b37fb1bdc939p-1}, {0x1.8de613515a328p-1, 0x1.4236484487abdp-1},
    {0x1.8836fa2cf503ap-1, 0x1.491b7523c161cp-1}, {0x1.82694b4a11c37p-1, 0x1.4fe6f81384fd4p-1},
    {0x1.7c7d7a833bec2p-1, 0x1.5698496e20bd8p-1}, {0x1.7673fe0c86982p-1, 0x1.5d2ee398c9c2bp-1},
    {0x1.704d4e6a54d39p-1, 0x1.63aa430e07310p-1}, {0x1.6a09e667f3bccp-1, 0x1.6a09e667f3bcdp-1},
    {0x1.63aa430e07310p-1, 0x1.704d4e6a54d39p-1}, {0x1.5d2ee398c9c2bp-1, 0x1.7673fe0c86982p-1},
    {0x1.5698496e20bd8p-1, 0x1.7c7d7a833bec2p-1}, {0x1.4fe6f81384fd4p-1, 0x1.82694b4a11c37p-1},
    {0x1.491b7523c161cp-1, 0x1.8836fa2cf503ap-1}, {0x1.4236484487abdp-1, 0x1.8de613515a328p-1},
    {0x1.3b37fb1bdc939p-1, 0x1.9376253f463d1p-1}, {0x1.342119455beb6p-1, 0x1.98e6c0ea27a14p-1},
    {0x1.2cf2304755a5ep-1, 0x1.9e3779b97f4a8p-1}, {0x1.25abcf87c4978p-1, 0x1.a367e59158747p-1},
    {0x1.1e4e88411fd13p-1, 0x1.a8779cda8eea4p-1}, {0x1.16daed770771dp-1, 0x1.ad663a8ae2fdcp-1},
    {0x1.0f5193eacdd2ap-1, 0x1.b2335c2cda945p-1}, {0x1.07b3120fddf13p-1, 0x1.b6dea1e76eadep-1},
    {0x1.fffffffffffffp-2, 0x1.bb67ae8584cabp-1}, {0x1.f071eedefa0edp-2, 0x1.bfce277d339c6p-1},
    {0x1.e0bd274245079p-2, 0x1.c411b4f6d2708p-1}, {0x1.d0e2e2b44de00p-2, 0x1.c83201d3d2c6dp-1},
    {0x1.c0e45dabe05c8p-2, 0x1.cc2ebbb5638cap-1}, {0x1.b0c2d77379853p-2, 0x1.d0079302dd767p-1},
    {0x1.a07f921061ad1p-2, 0x1.d3bc3aeff7f95p-1}, {0x1.901bd2298ffabp-2, 0x1.d74c6982c666fp-1},
    {0x1.7f98deee59681p-2, 0x1.dab7d7997cb58p-1}, {0x1.6ef801fced33cp-2, 0x1.ddfe40effb805p-1},
    {0x1.5e3a8748a0bf5p-2, 0x1.e11f642522d1cp-1}, {0x1.4d61bd000cddcp-2, 0x1.e41b02bfeb4cbp-1},
    {0x1.3c6ef372fe94fp-2, 0x1.e6f0e134454ffp-1}, {0x1.2b637cf83d5c8p-2, 0x1.e9a0c6e7bdb1fp-1},
    {0x1.1a40add328e29p-2, 0x1.ec2a7e35e7b80p-1}, {0x1.0907dc1930690p-2, 0x1.ee8dd4748bf15p-1},
    {0x1.ef74bf2e4b91dp-3, 0x1.f0ca99f79ba25p-1}, {0x1.ccb3236cdc675p-3, 0x1.f2e0a214e870fp-1},
    {0x1.a9cd9ac4258f6p-3, 0x1.f4cfc327a0080p-1}, {0x1.86c6ddd76624fp-3, 0x1.f697d6938b6c2p-1},
    {0x1.63a1a7e0b7389p-3, 0x1.f838b8c811c17p-1}, {0x1.4060b67a85375p-3, 0x1.f9b24942fe45cp-1},
    {0x1.1d06c968d9e19p-3, 0x1.fb046a930947ap-1}, {0x1.f32d44c4f62d3p-4, 0x1.fc2f025a23e8bp-1},
    {0x1.ac2609b3c576cp-4, 0x1.fd31f94f867c6p-1}, {0x1.64fd6b8c28102p-4, 0x1.fe0d3b41815a2p-1},
    {0x1.1db8f6d6a5128p-4, 0x1.fec0b7170fff6p-1}, {0x1.acbc748efc90ep-5, 0x1.ff4c5ed12e61dp-1},
    {0x1.1de58c9f7dc27p-5, 0x1.ffb0278bf0567p-1}, {0x1.1df0b2b89dd1ep-6, 0x1.ffec097f5af8ap-1},
    {-0x0.0p+0, 0x1.0000000000000p+0},
};

/* ---- resize (scipy.ndimage.zoom, order 0) ---- */

/* zoom's per-axis factor with grid_mode=False: (in-1)/(out-1), and 1 when out = 1. */
static double zoom_factor(int in, int out) { return out > 1 ? (double)(in - 1) / (double)(out - 1) : 1.0; }

/* The input index output index k reads: floor(k * z + 0.5). scipy's mode 'constant' treats a
 * coordinate above in-1 as outside and fills it; k * z overshoots in-1 by an ulp for some sizes
 * (22 -> 154, 256 -> 12), so the last row or column of such a zoom is 0. -1 marks the fill. */
static inline int zoom_src(int k, double z, int in) {
    double cc = (double)k * z;
    if (cc > (double)(in - 1)) return -1;
    return (int)floor(cc + 0.5);
}

/* ---- the augmentations as index maps ---- */

/* ndimage.rotate(x, angle, order=0, reshape=False) on an (h, w) slice: output (i, j) reads input
 * (floor(y + .5), floor(x + .5)) where (y, x) = M (i, j) + offset, M = [[c, s], [-s, c]], and
 * offset = centre - M centre, centre = ((h-1)/2, (w-1)/2); coordinates outside [0, h-1] x [0, w-1]
 * are filled. numpy computes M @ centre through BLAS: Debian 12's OpenBLAS on an FMA machine
 * rounds c*cy + s*cx as fma(c, cy, s*cx), and so do we (plain arithmetic moves pixels that sit on
 * rounding boundaries, e.g. at -45 degrees; the fixture has such cases). */
typedef struct {
    double c, s, ms; /* M = [[c, s], [ms, c]], ms = -s */
    double off0, off1;
    int h, w;
} Rotation;

static void rotation_init(Rotation *r, int angle, int h, int w) {
    int a = angle < 0 ? -angle : angle;
    r->c = cos_sin_deg[a][0];
    r->s = angle < 0 ? -cos_sin_deg[a][1] : cos_sin_deg[a][1];
    r->ms = -r->s;
    double cy = (double)(h - 1) / 2, cx = (double)(w - 1) / 2;
    r->off0 = cy - fma(r->c, cy, r->s * cx);
    r->off1 = cx - fma(r->ms, cy, r->c * cx);
    r->h = h, r->w = w;
}

/* geometric_transform's affine branch in scipy 1.10: the matrix row term by term, then the
 * shift (later versions add the shift first, which moves pixels at e.g. -45 degrees). */
static inline int64_t rotation_src(const Rotation *r, int i, int j) {
    double y = (double)i * r->c;
    y += (double)j * r->s;
    y += r->off0;
    double x = (double)i * r->ms;
    x += (double)j * r->c;
    x += r->off1;
    if (y < 0 || y > (double)(r->h - 1) || x < 0 || x > (double)(r->w - 1)) return -1;
    return (int64_t)floor(y + 0.5) * r->w + (int64_t)floor(x + 0.5);
}

/* np.flip(np.rot90(x, k), axis) as a map: (i, j) of the (h1, w1) result -> index in (h, w).
 * rot90 turns counter-clockwise: k = 1 reads x[j][w-1-i], k = 3 reads x[h-1-j][i]. */
static inline int64_t rotflip_src(int k, int axis, int h, int w, int i, int j) {
    int h1 = (k & 1) ? w : h, w1 = (k & 1) ? h : w;
    if (axis == 0) i = h1 - 1 - i;
    if (axis == 1) j = w1 - 1 - j;
    int r, q;
    switch (k) {
    case 0: r = i, q = j; break;
    case 1: r = j, q = w - 1 - i; break;
    case 2: r = h - 1 - i, q = w - 1 - j; break;
    default: r = h - 1 - j, q = i; break;
    }
    return (int64_t)r * w + q;
}

/* The whole sample: oimg/olab (ph, pw) <- augmentation a of img/lab (h, w), then resized.
 * Either output (with its input) may be NULL. a is valid. */
static void gather(const DaclAug *a, float *oimg, uint8_t *olab, int ph, int pw, const float *img,
                   const uint8_t *lab, int h, int w) {
    int odd = a->kind == DACL_AUG_ROT_FLIP && (a->k & 1);
    int h1 = odd ? w : h, w1 = odd ? h : w;
    double zh = zoom_factor(h1, ph), zw = zoom_factor(w1, pw);
    Rotation rot;
    rotation_init(&rot, a->kind == DACL_AUG_ROTATE ? a->angle : 0, h, w);
    for (int i = 0; i < ph; i++) {
        int si = zoom_src(i, zh, h1);
        for (int j = 0; j < pw; j++) {
            int sj = zoom_src(j, zw, w1);
            int64_t src = -1;
            if (si >= 0 && sj >= 0) {
                if (a->kind == DACL_AUG_ROT_FLIP) src = rotflip_src(a->k, a->axis, h, w, si, sj);
                else if (a->kind == DACL_AUG_ROTATE) src = rotation_src(&rot, si, sj);
                else src = (int64_t)si * w + sj;
            }
            size_t o = (size_t)i * pw + j;
            if (oimg) oimg[o] = src < 0 ? 0.0f : img[src];
            if (olab) olab[o] = src < 0 ? 0 : lab[src];
        }
    }
}

static const DaclAug no_aug = {DACL_AUG_NONE, 0, 0, 0};

void dacl_resize_nearest_f32(float *out, int oh, int ow, const float *in, int ih, int iw) {
    gather(&no_aug, out, NULL, oh, ow, in, NULL, ih, iw);
}

void dacl_resize_nearest_u8(uint8_t *out, int oh, int ow, const uint8_t *in, int ih, int iw) {
    gather(&no_aug, NULL, out, oh, ow, NULL, in, ih, iw);
}

/* ---- SSL4MIS RandomGenerator ---- */

void dacl_aug_draw(DaclAug *a, DaclRng *r) {
    /* random.random() > 0.5, then np.random.randint(0, 4) and randint(0, 2); else
     * random.random() > 0.5 and np.random.randint(-20, 20) */
    *a = no_aug;
    if (dacl_rng_uniform_double(r) > 0.5) {
        a->kind = DACL_AUG_ROT_FLIP;
        a->k = (int)dacl_rng_below(r, 4);
        a->axis = (int)dacl_rng_below(r, 2);
    } else if (dacl_rng_uniform_double(r) > 0.5) {
        a->kind = DACL_AUG_ROTATE;
        a->angle = (int)dacl_rng_below(r, 40) - 20;
    }
}

static int aug_check(const DaclAug *a) {
    switch (a->kind) {
    case DACL_AUG_NONE: return DACL_OK;
    case DACL_AUG_ROT_FLIP:
        if (a->k < 0 || a->k > 3 || a->axis < -1 || a->axis > 1)
            return DACL_FAIL(DACL_EINVAL, "rot90/flip augmentation: k %d must be in 0..3, axis %d in -1..1", a->k,
                             a->axis);
        return DACL_OK;
    case DACL_AUG_ROTATE:
        if (a->angle < -90 || a->angle > 90)
            return DACL_FAIL(DACL_EINVAL, "rotation by %d degrees: only -90..90 are supported", a->angle);
        return DACL_OK;
    default: return DACL_FAIL(DACL_EINVAL, "unknown augmentation kind %d", a->kind);
    }
}

int dacl_aug_apply(const DaclAug *a, float *oimg, uint8_t *olab, int ph, int pw, const float *img,
                   const uint8_t *lab, int h, int w) {
    if (h < 1 || w < 1 || ph < 1 || pw < 1)
        return DACL_FAIL(DACL_EINVAL, "augmentation from %dx%d to %dx%d: sizes must be >= 1", h, w, ph, pw);
    if ((oimg && !img) || (olab && !lab))
        return DACL_FAIL(DACL_EINVAL, "augmentation: an output without its input");
    DACL_TRY(aug_check(a));
    gather(a, oimg, olab, ph, pw, img, lab, h, w);
    return DACL_OK;
}
