/* Phantoms: synthetic MRI datasets with exact labels, so that a fresh install trains out of the
 * box and tests have data that looks like the real thing without shipping any.
 *
 * A phantom case is a list of "organs": 3D blobs whose cross-section at height z is an ellipse
 * with a wobbly outline (radial harmonics k = 2..4 whose phases drift along z). Each slice is
 * painted organ by organ in list order (painter's algorithm: later organs cover earlier ones),
 * each organ with one intensity and one class (or KEEP: texture inside an organ, label unchanged).
 * Then, as an MR scanner would: partial volume (4 sub-pixel samples per pixel and a small blur),
 * a smooth tissue texture, a multiplicative bias field and a per-slice gain, and Rician noise
 * (the magnitude of complex Gaussian noise added to the signal).
 *
 * What makes them hard enough to be worth training on: shapes, sizes, positions and rotations vary
 * per case; intensities of labelled and unlabelled tissues overlap (fat as bright as blood,
 * muscle as dark as myocardium, bowel as bright as kidney); some structures appear only in some
 * slices; slices are misregistered a little (separate breath-holds).
 *
 * Coordinates are in mm from the centre of the slice, x to the right (the patient's left, as
 * radiology displays it), y down (posterior), z down the stack from the first slice. The field of
 * view is drawn in mm, so the in-plane size only sets the resolution.
 *
 * Everything comes from one xoshiro stream per case, seeded from (kind, seed, index): a case is the
 * same whatever the number of cases generated, and the files are byte-for-byte reproducible
 * (gzip writes no timestamp). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dacl/error.h"
#include "dacl/nn.h"
#include "data_internal.h"

#define MAX_ORGANS 48
#define KEEP (-1)       /* paints intensity only: the class underneath stays */
#define TUBE 1e6        /* half height of a structure that runs through every slice */
#define TWO_PI 6.283185307179586
#define N_WAVES 6       /* plane waves of the tissue texture */
#define N_BIAS 9        /* terms of the log bias field: a quadratic in (X, Y, Z) */

/* ------------------------------------------------------------ shapes -- */

/* Radial harmonics of an outline: r(θ) = 1 + Σ_k amp_k cos(kθ + phase_k + drift_k d), k = 2..4,
 * d in [-1, 1] the height within the organ. */
typedef struct {
    double amp[3], phase[3], drift[3];
} Wobble;

/* One ellipse of one slice, ready to test points against. */
typedef struct {
    double cx, cy, ax, ay;  /* mm */
    double cos_t, sin_t;    /* rotation of the ax axis */
    double hc[3], hs[3];    /* r(θ) = 1 + Σ hc_k cos kθ + hs_k sin kθ */
    double rin2, rout2;     /* squared radii (unit circle) surely inside / surely outside */
    float value;
    int label;
} Shape;

typedef struct {
    double cx, cy, cz;  /* centre (mm); cx, cy unused with a host */
    double ax, ay, hz;  /* in-plane semi-axes at the widest section, half height (mm) */
    double angle;       /* in-plane rotation of ax */
    double tx, ty;      /* drift of the centre per mm of z: an oblique long axis */
    double alpha;       /* the section at d = (z - cz) / hz has semi-axes scaled by (1 - d^2)^alpha */
    Wobble w;
    float value;
    int label;          /* class, or KEEP */
    int host;           /* -1, or an earlier organ this one is placed on: */
    double dir, dist;   /* centre = host's centre + dist * host's mean radius * (cos dir, sin dir) */
    int moves;          /* follows the per-slice breathing offset */
    int paint;          /* 0: a guide, placed but not painted (a host for others) */
} Organ;

/* Where an organ cuts one slice. */
typedef struct {
    int present;
    double cx, cy, r; /* centre and mean radius sqrt(ax * ay), mm */
} Section;

typedef struct {
    int nz, ny, nx;
    double sp[3];       /* (z, y, x) mm */
    Organ o[MAX_ORGANS];
    int n, overflow;
    double noise;       /* Rician sigma */
    double jitter;      /* sd of the per-slice breathing offset, mm */
    double gain_sd;     /* sd of the per-slice gain */
    double bias[N_BIAS];
    double wave[N_WAVES][5]; /* kx, ky, kz (rad/mm), phase, amplitude */
} Phantom;

static double uni(DaclRng *r, double lo, double hi) { return lo + (hi - lo) * dacl_rng_uniform_double(r); }

static void wobble_draw(DaclRng *r, double max_amp, Wobble *w) {
    for (int k = 0; k < 3; k++) {
        w->amp[k] = uni(r, 0, max_amp) / (k + 1); /* higher orders smaller: no star shapes */
        w->phase[k] = uni(r, 0, TWO_PI);
        w->drift[k] = uni(r, -1.5, 1.5);
    }
}

/* A new organ with defaults: upright, ellipsoidal profile, round outline, free, painted. */
static Organ *organ_add(Phantom *p, double cx, double cy, double cz, double ax, double ay, double hz, double value,
                        int label) {
    static const Organ none = {0};
    if (p->n == MAX_ORGANS) {
        p->overflow = 1;
        p->o[MAX_ORGANS - 1] = none; /* scribble on the last one; the case is refused anyway */
        return &p->o[MAX_ORGANS - 1];
    }
    Organ *o = &p->o[p->n++];
    *o = none;
    o->cx = cx, o->cy = cy, o->cz = cz, o->ax = ax, o->ay = ay, o->hz = hz;
    o->alpha = 0.5;
    o->value = (float)value;
    o->label = label;
    o->host = -1;
    o->moves = 1;
    o->paint = 1;
    return o;
}

/* An organ placed on an earlier one (`host`, its index): its centre follows the host's, `dist` host
 * radii away in direction `dir`, so it stays in place as the host moves and shrinks along z. */
static Organ *organ_on(Phantom *p, int host, double dir, double dist, double cz, double ax, double ay, double hz,
                       double value, int label) {
    Organ *o = organ_add(p, 0, 0, cz, ax, ay, hz, value, label);
    o->host = host, o->dir = dir, o->dist = dist;
    return o;
}

/* The section of organ o at height z (mm), with breathing offset (jx, jy); fills *s if present. */
static Section organ_section(const Organ *o, const Section *sec, double z, double jx, double jy, Shape *s) {
    Section out = {0};
    double d = (z - o->cz) / o->hz;
    if (fabs(d) >= 1.0) return out;
    double q = pow(1.0 - d * d, o->alpha);
    double ax = o->ax * q, ay = o->ay * q;
    if (ax < 0.5 || ay < 0.5) return out; /* thinner than anything a scanner resolves */
    if (o->host >= 0) {
        const Section *h = &sec[o->host];
        if (!h->present) return out;
        out.cx = h->cx + o->dist * h->r * cos(o->dir);
        out.cy = h->cy + o->dist * h->r * sin(o->dir);
    } else {
        out.cx = o->cx + o->tx * (z - o->cz) + (o->moves ? jx : 0);
        out.cy = o->cy + o->ty * (z - o->cz) + (o->moves ? jy : 0);
    }
    out.present = 1;
    out.r = sqrt(ax * ay);
    s->cx = out.cx, s->cy = out.cy, s->ax = ax, s->ay = ay;
    s->cos_t = cos(o->angle), s->sin_t = sin(o->angle);
    double sum = 0;
    for (int k = 0; k < 3; k++) {
        double ph = o->w.phase[k] + o->w.drift[k] * d;
        s->hc[k] = o->w.amp[k] * cos(ph);
        s->hs[k] = -o->w.amp[k] * sin(ph);
        sum += o->w.amp[k];
    }
    s->rin2 = (1 - sum) * (1 - sum);
    s->rout2 = (1 + sum) * (1 + sum);
    s->value = o->value;
    s->label = o->label;
    return out;
}

static int shape_inside(const Shape *s, double x, double y) {
    double dx = x - s->cx, dy = y - s->cy;
    double u = (dx * s->cos_t + dy * s->sin_t) / s->ax;
    double v = (-dx * s->sin_t + dy * s->cos_t) / s->ay;
    double q = u * u + v * v;
    if (q <= s->rin2) return 1;
    if (q >= s->rout2) return 0;
    /* cos kθ, sin kθ by complex powers of (u, v) / |(u, v)|: no trigonometry per point */
    double rho = sqrt(q), c1 = u / rho, s1 = v / rho;
    double c2 = c1 * c1 - s1 * s1, s2 = 2 * c1 * s1;
    double c3 = c2 * c1 - s2 * s1, s3 = s2 * c1 + c2 * s1;
    double c4 = c2 * c2 - s2 * s2, s4 = 2 * c2 * s2;
    double r = 1 + s->hc[0] * c2 + s->hs[0] * s2 + s->hc[1] * c3 + s->hs[1] * s3 + s->hc[2] * c4 + s->hs[2] * s4;
    return rho < r;
}

/* The scan's grid: nz in [nz_lo, nz_hi] slices of a thickness in [sz_lo, sz_hi] mm, each size x size
 * pixels over a field of view in [fov_lo, fov_hi] mm. */
static void grid_draw(DaclRng *r, int size, int nz_lo, int nz_hi, double fov_lo, double fov_hi, double sz_lo,
                      double sz_hi, Phantom *p) {
    p->nx = p->ny = size;
    p->nz = nz_lo + (int)dacl_rng_below(r, (uint32_t)(nz_hi - nz_lo + 1));
    p->sp[1] = p->sp[2] = uni(r, fov_lo, fov_hi) / size;
    p->sp[0] = uni(r, sz_lo, sz_hi);
}

/* The body: n nested layers sharing one outline, from the skin inwards (subcutaneous fat first),
 * layer i inset by inset[i] mm and of intensity value[i]. It lies on the table: no breathing. */
static void body_add(DaclRng *r, double cx, double cy, double ax, double ay, int n, const double *inset,
                     const double *value, Phantom *p) {
    Wobble skin;
    wobble_draw(r, 0.05, &skin);
    for (int i = 0; i < n; i++) {
        Organ *o = organ_add(p, cx, cy, 0, ax - inset[i], ay - inset[i], TUBE, value[i], 0);
        o->moves = 0, o->w = skin;
    }
}

/* ----------------------------------------------------------- cardiac -- */

/* A short-axis cine stack, base (slice 0) to apex: chest (fat, soft tissue, lungs, spine, aorta,
 * chest wall, liver coming in at the apex), then the heart: LV cavity (3) in a myocardial ring (2),
 * the RV cavity (1) a crescent on one side, both shrinking towards the apex, where the RV ends
 * first and the LV cavity before the myocardium. Papillary muscles and trabeculae inside the LV
 * are myocardium-dark but labelled LV, as in ACDC. */
static void cardiac_build(DaclRng *r, int size, Phantom *p) {
    grid_draw(r, size, 8, 12, 200, 250, 7, 10, p);
    double depth = p->nz * p->sp[0];
    double B = uni(r, 500, 900); /* LV blood; every other intensity is relative to it */
    double myo = B * uni(r, 0.28, 0.42), soft = B * uni(r, 0.3, 0.5), fat = B * uni(r, 0.75, 1.05);
    p->noise = B * uni(r, 0.05, 0.1);
    p->jitter = uni(r, 0.3, 1.2);
    p->gain_sd = 0.03;

    double bx = uni(r, -10, 10), by = uni(r, 0, 25), bax = uni(r, 130, 170), bay = uni(r, 100, 130);
    double fatw = uni(r, 8, 20);
    body_add(r, bx, by, bax, bay, 2, (const double[]){0, fatw}, (const double[]){fat, soft}, p);
    Organ *o;
    for (int side = -1; side <= 1; side += 2) { /* lungs, shrinking towards the diaphragm */
        o = organ_add(p, side * uni(r, 60, 85), uni(r, -10, 15), -uni(r, 0, 20), uni(r, 40, 55), uni(r, 65, 85),
                      depth * uni(r, 1.1, 1.6), B * uni(r, 0.03, 0.08), 0);
        o->angle = side * uni(r, 0.1, 0.4);
        wobble_draw(r, 0.12, &o->w);
    }
    o = organ_add(p, -uni(r, 30, 60), uni(r, 20, 50), depth * uni(r, 1.0, 1.3), uni(r, 60, 90), uni(r, 50, 70),
                  depth * uni(r, 0.4, 0.7), B * uni(r, 0.35, 0.55), 0); /* liver, below the apex */
    wobble_draw(r, 0.1, &o->w);
    double spine_y = by + bay - uni(r, 25, 40);
    double sr = uni(r, 15, 18);
    organ_add(p, bx, spine_y, 0, sr, sr, TUBE, B * uni(r, 0.3, 0.5), 0)->moves = 0;
    double ar = uni(r, 10, 14);
    organ_add(p, bx + uni(r, 10, 35), spine_y - uni(r, 25, 35), 0, ar, ar, TUBE, B * uni(r, 0.7, 1.0), 0);
    organ_add(p, bx, by - bay + fatw + uni(r, 8, 15), 0, uni(r, 50, 80), uni(r, 8, 14), TUBE,
              soft * uni(r, 0.9, 1.2), 0)->moves = 0; /* chest wall muscle */
    for (int i = (int)dacl_rng_below(r, 3); i > 0; i--) { /* stomach, bowel, vessels: distractors */
        o = organ_add(p, uni(r, -60, 60), uni(r, -40, 60), uni(r, 0, depth), uni(r, 6, 20), uni(r, 6, 20),
                      uni(r, 10, 40), B * uni(r, 0.2, 1.0), 0);
        wobble_draw(r, 0.15, &o->w);
    }

    /* the heart; g is its outline, a guide the others hang on */
    double rc = uni(r, 13, 28);                   /* LV cavity radius at the base, systole..diastole */
    double t = uni(r, 6, 9) + 0.25 * (28 - rc);   /* a contracted wall is thicker */
    double re = rc + t, e = uni(r, 0.88, 1.12);
    double len = depth * uni(r, 0.8, 1.0);        /* base to apex: apical slices may hold no heart */
    double zb = uni(r, -0.5, 0.3) * p->sp[0];     /* the base plane, at the first slice */
    double psi = M_PI + uni(r, -0.6, 0.6);        /* the RV's side: image left, as ACDC shows it */
    int g = p->n;
    o = organ_add(p, uni(r, -20, 20), uni(r, -20, 20), zb, re * e, re / e, len, 0, 0);
    o->paint = 0;
    o->angle = uni(r, 0, M_PI);
    o->tx = uni(r, -0.15, 0.15), o->ty = uni(r, -0.15, 0.15);
    o->alpha = uni(r, 0.35, 0.55);
    wobble_draw(r, 0.09, &o->w);
    const Organ heart = *o;
    for (int i = 1 + (int)dacl_rng_below(r, 2); i > 0; i--) { /* atria, aortic root, pulmonary trunk */
        double vr = uni(r, 10, 18);
        o = organ_on(p, g, uni(r, 0, TWO_PI), uni(r, 1.1, 1.5), zb, vr, vr * uni(r, 0.6, 1.0), len * uni(r, 0.15, 0.35),
                     B * uni(r, 0.7, 1.05), 0);
        wobble_draw(r, 0.1, &o->w);
    }
    for (int i = 1 + (int)dacl_rng_below(r, 3); i > 0; i--) { /* epicardial fat pads */
        o = organ_on(p, g, uni(r, 0, TWO_PI), uni(r, 0.95, 1.1), zb, uni(r, 5, 12), uni(r, 4, 8),
                     len * uni(r, 0.3, 0.8), fat, 0);
        o->angle = uni(r, 0, M_PI);
    }
    double d1 = uni(r, 0.5, 0.8), a_rv = re * uni(r, 0.75, 1.05), b_rv = re * uni(r, 1.25, 1.6);
    double wall = uni(r, 2.5, 4), len_rv = len * uni(r, 0.6, 0.85), alpha_rv = uni(r, 0.4, 0.7);
    Wobble rv_w;
    wobble_draw(r, 0.1, &rv_w);
    for (int cavity = 0; cavity <= 1; cavity++) { /* RV free wall (background), then RV cavity */
        double grow = cavity ? 0 : wall;
        o = organ_on(p, g, psi, d1, zb, a_rv + grow, b_rv + grow, len_rv,
                     cavity ? B * uni(r, 0.75, 1.0) : myo * uni(r, 0.9, 1.15), cavity ? 1 : 0);
        o->angle = psi, o->alpha = alpha_rv, o->w = rv_w;
    }
    o = organ_on(p, g, 0, 0, zb, heart.ax, heart.ay, len, myo, 2);
    o->angle = heart.angle, o->alpha = heart.alpha, o->w = heart.w;
    int cav = p->n;
    o = organ_on(p, g, 0, 0, zb, rc * e, rc / e, len - uni(r, 6, 12), B, 3);
    o->angle = heart.angle, o->alpha = heart.alpha + uni(r, 0, 0.1);
    wobble_draw(r, 0.1, &o->w);
    for (int side = -1; side <= 1; side += 2) { /* papillary muscles, on the free-wall side */
        double pr = uni(r, 2.5, 4.5);
        organ_on(p, cav, psi + M_PI + side * uni(r, 0.6, 1.2), uni(r, 0.5, 0.7), zb + len * uni(r, 0.3, 0.5), pr,
                 pr * uni(r, 0.8, 1.2), len * uni(r, 0.2, 0.35), myo * uni(r, 1.0, 1.25), KEEP);
    }
    for (int i = (int)dacl_rng_below(r, 4); i > 0; i--) { /* trabeculae along the endocardium */
        double tr = uni(r, 1.5, 2.5);
        organ_on(p, cav, uni(r, 0, TWO_PI), uni(r, 0.85, 1.0), zb + len * uni(r, 0.2, 0.7), tr, tr,
                 len * uni(r, 0.1, 0.3), (myo + B) / 2 * uni(r, 0.8, 1.1), KEEP);
    }
}

/* ----------------------------------------------------------- abdomen -- */

/* An axial T2-like stack from the liver dome down: body (fat, soft tissue), spine, paraspinal
 * muscles, aorta, IVC, stomach and bowel loops of any brightness, then the liver (1, a right and a
 * left lobe, with vessels and a bright gallbladder that is not liver), the spleen (4) and the
 * kidneys (2 right, 3 left: bean-shaped, darker medulla). Liver, soft tissue and muscle differ by
 * a few tens of percent; spleen and kidneys are about equally bright. */
static void abdomen_build(DaclRng *r, int size, Phantom *p) {
    grid_draw(r, size, 24, 32, 290, 350, 6.5, 8.5, p);
    double L = uni(r, 300, 420); /* liver; every other intensity is relative to it */
    double fat = L * uni(r, 0.35, 0.65), soft = L * uni(r, 0.65, 0.95), muscle = L * uni(r, 0.5, 0.75);
    p->noise = L * uni(r, 0.08, 0.14);
    p->jitter = uni(r, 0.5, 2.0);
    p->gain_sd = 0.04;

    double by = uni(r, -5, 10), bax = uni(r, 145, 175), bay = uni(r, 105, 135), fatw = uni(r, 10, 25);
    double wallw = uni(r, 8, 15); /* the abdominal wall's muscle, inside the fat */
    body_add(r, 0, by, bax, bay, 3, (const double[]){0, fatw, fatw + wallw}, (const double[]){fat, muscle, soft}, p);
    Organ *o;
    double vy = by + bay - uni(r, 45, 60), vr = uni(r, 16, 20); /* vertebral body */
    for (int side = -1; side <= 1; side += 2) {
        o = organ_add(p, side * uni(r, 30, 40), vy + uni(r, 25, 35), 0, uni(r, 22, 30), uni(r, 18, 26), TUBE,
                      muscle, 0);
        o->moves = 0;
        wobble_draw(r, 0.08, &o->w);
    }
    organ_add(p, 0, vy, 0, vr, vr, TUBE, L * uni(r, 0.5, 0.8), 0)->moves = 0;
    organ_add(p, 0, vy + vr + uni(r, 4, 8), 0, 7, 7, TUBE, L * uni(r, 2.5, 3.2), 0)->moves = 0; /* CSF */
    double ar = uni(r, 9, 12), ir = uni(r, 9, 13);
    organ_add(p, uni(r, 5, 15), vy - vr - uni(r, 8, 14), 0, ar, ar, TUBE, L * uni(r, 0.1, 0.3), 0); /* aorta */
    organ_add(p, -uni(r, 15, 25), vy - vr - uni(r, 8, 18), 0, ir, ir * uni(r, 0.6, 1.0), TUBE,
              L * uni(r, 0.4, 0.9), 0); /* IVC */

    double z0 = uni(r, -15, 15); /* the liver dome */
    o = organ_add(p, uni(r, 30, 70), -uni(r, 10, 40), z0 + uni(r, 30, 60), uni(r, 35, 50), uni(r, 25, 40),
                  uni(r, 40, 60), L * uni(r, 0.6, 2.5), 0); /* stomach */
    wobble_draw(r, 0.15, &o->w);
    for (int i = 4 + (int)dacl_rng_below(r, 5); i > 0; i--) { /* bowel loops */
        o = organ_add(p, uni(r, -60, 90), uni(r, -80, 10), z0 + uni(r, 60, 240), uni(r, 12, 35), uni(r, 12, 35),
                      uni(r, 20, 60), L * uni(r, 0.4, 2.5), 0);
        o->angle = uni(r, 0, M_PI);
        wobble_draw(r, 0.2, &o->w);
    }

    double lhz = uni(r, 75, 95);
    int liver = p->n;
    o = organ_add(p, -uni(r, 45, 65), uni(r, -5, 20), z0 + lhz, uni(r, 60, 80), uni(r, 65, 85), lhz, L, 1);
    /* tapering and drifting forwards and outwards on the way down, clear of the kidney below */
    o->angle = uni(r, -0.3, 0.3), o->alpha = uni(r, 0.45, 0.7);
    o->tx = -uni(r, 0, 0.15), o->ty = -uni(r, 0.05, 0.25);
    wobble_draw(r, 0.2, &o->w);
    o = organ_add(p, uni(r, 0, 30), -uni(r, 25, 45), z0 + uni(r, 40, 60), uni(r, 45, 65), uni(r, 25, 35),
                  uni(r, 40, 55), L, 1); /* left lobe, across the midline */
    o->angle = uni(r, -0.3, 0.3);
    wobble_draw(r, 0.2, &o->w);
    double gr = uni(r, 10, 18);
    o = organ_on(p, liver, uni(r, -0.8, 0.2), uni(r, 0.3, 0.6), z0 + lhz + uni(r, 20, 50), gr, gr * uni(r, 0.6, 1.0),
                 uni(r, 20, 35), L * uni(r, 2.5, 3.2), 0); /* gallbladder */
    o->angle = uni(r, 0, M_PI);
    for (int i = 3 + (int)dacl_rng_below(r, 4); i > 0; i--) { /* hepatic vessels, dark or bright */
        double vr2 = uni(r, 2, 6);
        organ_on(p, liver, uni(r, 0, TWO_PI), uni(r, 0, 0.7), z0 + lhz + uni(r, -50, 30), vr2, vr2, uni(r, 20, 60),
                 L * (dacl_rng_below(r, 2) ? uni(r, 0.3, 0.6) : uni(r, 1.4, 2.0)), KEEP);
    }
    o = organ_add(p, uni(r, 75, 100), uni(r, 20, 50), z0 + uni(r, 60, 90), uni(r, 20, 30), uni(r, 45, 60),
                  uni(r, 45, 60), L * uni(r, 1.5, 2.1), 4); /* spleen */
    o->angle = -uni(r, 0.3, 0.8);
    wobble_draw(r, 0.18, &o->w);

    double kz = z0 + uni(r, 130, 160), K = L * uni(r, 1.6, 2.3);
    for (int side = -1; side <= 1; side += 2) { /* right kidney (image left), then left, a bit higher */
        double kh = uni(r, 45, 58), kx = side * uni(r, 50, 70), ky = uni(r, 35, 60);
        double kzc = side < 0 ? kz : kz - uni(r, 5, 25), kax = uni(r, 20, 26), kay = uni(r, 26, 34);
        double pad = uni(r, 5, 15), kangle = side * uni(r, 0.2, 0.6);
        o = organ_add(p, kx, ky, kzc, kax + pad, kay + pad, kh + pad, fat, 0); /* perirenal fat */
        o->angle = kangle;
        wobble_draw(r, 0.15, &o->w);
        int k = p->n;
        o = organ_add(p, kx, ky, kzc, kax, kay, kh, K, side < 0 ? 2 : 3);
        o->angle = kangle, o->alpha = uni(r, 0.4, 0.6);
        wobble_draw(r, 0.08, &o->w);
        double medial = side < 0 ? 0 : M_PI;
        for (int i = 3; i > 0; i--) { /* medulla */
            double mr = uni(r, 4, 8);
            organ_on(p, k, uni(r, 0, TWO_PI), uni(r, 0, 0.5), kzc + uni(r, -20, 20), mr, mr, kh * uni(r, 0.3, 0.6),
                     K * uni(r, 0.55, 0.75), KEEP);
        }
        organ_on(p, k, medial, uni(r, 0.6, 0.8), kzc, uni(r, 7, 11), uni(r, 10, 14), kh * uni(r, 0.4, 0.7), fat,
                 0); /* the renal sinus: a notch on the medial side, not kidney */
    }
}

/* ---------------------------------------------------------- rendering -- */

/* Paint one shape into the slice: intensity at 4 sub-pixel samples, the class at the centre.
 * sub: [4][ny*nx], lab: [ny*nx]. */
static void shape_paint(const Shape *s, int ny, int nx, double sy, double sx, float *sub, uint8_t *lab) {
    static const double off[4][2] = {{-0.25, -0.25}, {-0.25, 0.25}, {0.25, -0.25}, {0.25, 0.25}};
    double ext = (s->ax > s->ay ? s->ax : s->ay) * sqrt(s->rout2);
    int x0 = (int)floor((s->cx - ext) / sx + nx / 2.0) - 1, x1 = (int)ceil((s->cx + ext) / sx + nx / 2.0) + 1;
    int y0 = (int)floor((s->cy - ext) / sy + ny / 2.0) - 1, y1 = (int)ceil((s->cy + ext) / sy + ny / 2.0) + 1;
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > nx ? nx : x1, y1 = y1 > ny ? ny : y1;
    size_t plane = (size_t)ny * nx;
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            size_t i = (size_t)iy * nx + ix;
            for (int k = 0; k < 4; k++)
                if (shape_inside(s, (ix + 0.5 + off[k][1] - nx / 2.0) * sx, (iy + 0.5 + off[k][0] - ny / 2.0) * sy))
                    sub[k * plane + i] = s->value;
            if (s->label != KEEP && shape_inside(s, (ix + 0.5 - nx / 2.0) * sx, (iy + 0.5 - ny / 2.0) * sy))
                lab[i] = (uint8_t)s->label;
        }
}

/* out[ny][nx] = the 4 samples averaged, then blurred by (1 2 1)/4 along x and y (the scanner's
 * point spread; edges clamp). tmp: [ny*nx]. */
static void slice_resolve(const float *sub, int ny, int nx, float *tmp, float *out) {
    size_t plane = (size_t)ny * nx;
    for (size_t i = 0; i < plane; i++)
        out[i] = 0.25f * (sub[i] + sub[plane + i] + sub[2 * plane + i] + sub[3 * plane + i]);
    for (int y = 0; y < ny; y++)
        for (int x = 0; x < nx; x++) {
            const float *row = out + (size_t)y * nx;
            tmp[(size_t)y * nx + x] = 0.25f * (row[x > 0 ? x - 1 : 0] + 2 * row[x] + row[x < nx - 1 ? x + 1 : nx - 1]);
        }
    for (int y = 0; y < ny; y++)
        for (int x = 0; x < nx; x++) {
            size_t up = (size_t)(y > 0 ? y - 1 : 0) * nx + x, dn = (size_t)(y < ny - 1 ? y + 1 : ny - 1) * nx + x;
            out[(size_t)y * nx + x] = 0.25f * (tmp[up] + 2 * tmp[(size_t)y * nx + x] + tmp[dn]);
        }
}

/* Bias field, texture and slice gains drawn after the anatomy. */
static void scanner_draw(DaclRng *r, double bias_sd, Phantom *p) {
    for (int i = 0; i < N_BIAS; i++) p->bias[i] = bias_sd * dacl_rng_normal(r);
    for (int w = 0; w < N_WAVES; w++) {
        double lambda = uni(r, 15, 50), th = uni(r, 0, TWO_PI), tilt = uni(r, -0.3, 0.3);
        double k = TWO_PI / lambda;
        p->wave[w][0] = k * cos(th) * cos(tilt);
        p->wave[w][1] = k * sin(th) * cos(tilt);
        p->wave[w][2] = k * sin(tilt);
        p->wave[w][3] = uni(r, 0, TWO_PI);
        p->wave[w][4] = uni(r, 0.01, 0.03);
    }
}

/* The smooth multiplicative field at a voxel: exp(quadratic bias) * (1 + texture). X, Y, Z are the
 * coordinates scaled to [-1, 1]; the squares are centred so the bias does not shift the mean. */
static double scanner_field(const Phantom *p, double x, double y, double z, double X, double Y, double Z) {
    const double *b = p->bias;
    double lb = b[0] * X + b[1] * Y + b[2] * Z + b[3] * (X * X - 1.0 / 3) + b[4] * (Y * Y - 1.0 / 3) + b[5] * X * Y +
                b[6] * X * Z + b[7] * Y * Z + b[8] * (Z * Z - 1.0 / 3);
    double tex = 1;
    for (int w = 0; w < N_WAVES; w++)
        tex += p->wave[w][4] * cos(p->wave[w][0] * x + p->wave[w][1] * y + p->wave[w][2] * z + p->wave[w][3]);
    return exp(lb) * tex;
}

static int phantom_render(const Phantom *p, DaclRng *r, DaclVolume *img, DaclLabelVolume *lab) {
    int nz = p->nz, ny = p->ny, nx = p->nx;
    size_t plane = (size_t)ny * nx;
    DaclVolume ti = {0};
    DaclLabelVolume tl = {0};
    float *sub = malloc(5 * plane * sizeof *sub); /* [4][plane] samples + [plane] blur scratch */
    int rc = sub ? DACL_OK : DACL_FAIL(DACL_ENOMEM, "phantom: out of memory");
    if (rc == DACL_OK) rc = dacl_volume_alloc(&ti, nz, ny, nx);
    if (rc == DACL_OK) rc = dacl_label_alloc(&tl, nz, ny, nx);
    Section sec[MAX_ORGANS];
    for (int z = 0; rc == DACL_OK && z < nz; z++) {
        double zmm = (z + 0.5) * p->sp[0];
        double jx = p->jitter * dacl_rng_normal(r), jy = p->jitter * dacl_rng_normal(r);
        memset(sub, 0, 4 * plane * sizeof *sub);
        uint8_t *ls = tl.data + z * plane;
        for (int i = 0; i < p->n; i++) {
            Shape s;
            sec[i] = organ_section(&p->o[i], sec, zmm, jx, jy, &s);
            if (sec[i].present && p->o[i].paint) shape_paint(&s, ny, nx, p->sp[1], p->sp[2], sub, ls);
        }
        float *out = ti.data + z * plane;
        slice_resolve(sub, ny, nx, sub + 4 * plane, out);
        double gain = 1 + p->gain_sd * dacl_rng_normal(r);
        double Z = nz > 1 ? 2.0 * z / (nz - 1) - 1 : 0;
        for (int y = 0; y < ny; y++) {
            double ymm = (y + 0.5 - ny / 2.0) * p->sp[1], Y = ymm / (ny * p->sp[1] / 2);
            for (int x = 0; x < nx; x++) {
                double xmm = (x + 0.5 - nx / 2.0) * p->sp[2], X = xmm / (nx * p->sp[2] / 2);
                double sgl = out[(size_t)y * nx + x] * gain * scanner_field(p, xmm, ymm, zmm, X, Y, Z);
                double re = sgl + p->noise * dacl_rng_normal(r), im = p->noise * dacl_rng_normal(r);
                out[(size_t)y * nx + x] = (float)floor(sqrt(re * re + im * im) + 0.5); /* integer, as scanners store */
            }
        }
    }
    free(sub);
    if (rc != DACL_OK) {
        dacl_volume_free(&ti);
        dacl_label_free(&tl);
        return rc;
    }
    ti.spacing[0] = tl.spacing[0] = p->sp[0];
    ti.spacing[1] = tl.spacing[1] = p->sp[1];
    ti.spacing[2] = tl.spacing[2] = p->sp[2];
    ti.has_spacing = tl.has_spacing = 1;
    dacl_volume_free(img);
    dacl_label_free(lab);
    *img = ti;
    *lab = tl;
    return DACL_OK;
}

/* -------------------------------------------------------------- API -- */

static const char *const kind_names[] = {"cardiac", "abdomen"};
#define N_KINDS 2

const char *dacl_phantom_kind_name(DaclPhantomKind kind) {
    return (unsigned)kind < N_KINDS ? kind_names[kind] : "unknown";
}

int dacl_phantom_kind_parse(const char *name, DaclPhantomKind *kind) {
    for (int k = 0; k < N_KINDS; k++)
        if (name && strcmp(name, kind_names[k]) == 0) {
            *kind = (DaclPhantomKind)k;
            return 1;
        }
    return 0;
}

int dacl_phantom_parse_spec(const char *path, DaclPhantomKind *kind) {
    static const char prefix[] = "phantom:";
    if (!path || strncmp(path, prefix, sizeof prefix - 1) != 0) return 0;
    if (dacl_phantom_kind_parse(path + sizeof prefix - 1, kind)) return 1;
    DACL_FAIL(DACL_EINVAL, "%s: unknown phantom; the phantoms are phantom:cardiac and phantom:abdomen", path);
    return -1;
}

int dacl_phantom_case(DaclPhantomKind kind, uint64_t seed, int index, int size, DaclVolume *img,
                      DaclLabelVolume *lab) {
    if ((unsigned)kind >= N_KINDS) return DACL_FAIL(DACL_EINVAL, "phantom: unknown kind %d", (int)kind);
    if (size == 0) size = 128;
    if (size < 16 || size > 1024) return DACL_FAIL(DACL_EINVAL, "phantom: size %d is not in 16..1024", size);
    if (index < 0) return DACL_FAIL(DACL_EINVAL, "phantom: case index %d is negative", index);
    Phantom *p = calloc(1, sizeof *p);
    if (!p) return DACL_FAIL(DACL_ENOMEM, "phantom: out of memory");
    DaclRng r;
    dacl_rng_seed(&r, dacl_hash64(seed ^ dacl_hash64(((uint64_t)kind << 32) | (uint64_t)index)));
    if (kind == DACL_PHANTOM_CARDIAC) {
        cardiac_build(&r, size, p);
        scanner_draw(&r, 0.2, p);
    } else {
        abdomen_build(&r, size, p);
        scanner_draw(&r, 0.3, p);
    }
    int rc = p->overflow ? DACL_FAIL(DACL_EINTERNAL, "phantom: more than %d organs", MAX_ORGANS)
                         : phantom_render(p, &r, img, lab);
    free(p);
    return rc;
}

/* ------------------------------------------------------------ files -- */

/* mkdir -p: every missing folder along `path`. */
static int make_dirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return DACL_FAIL(DACL_EINVAL, "%s: path too long", path);
    for (char *s = buf + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(buf, 0755) != 0) {
            int e = errno;
            struct stat st;
            if (e != EEXIST) return DACL_FAIL(DACL_EIO, "%s: cannot create folder: %s", buf, strerror(e));
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
                return DACL_FAIL(DACL_EEXIST, "%s: cannot create folder: a file is in the way", buf);
        }
        if (!(*s = c)) return DACL_OK;
    }
}

/* DACL_EEXIST unless `dir` is missing or empty (or force and a folder). */
static int check_out_dir(const char *dir, int force) {
    struct stat st;
    if (stat(dir, &st) != 0) return errno == ENOENT ? DACL_OK : DACL_FAIL(DACL_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return DACL_FAIL(DACL_EEXIST, "%s: exists and is not a folder", dir);
    if (force) return DACL_OK;
    DIR *d = opendir(dir);
    if (!d) return DACL_FAIL(DACL_EIO, "%s: cannot list: %s", dir, strerror(errno));
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    if (!empty) return DACL_FAIL(DACL_EEXIST, "%s: not empty; refusing to write a phantom into it without force", dir);
    return DACL_OK;
}

static int write_case(const char *out_dir, DaclPhantomKind kind, uint64_t seed, int index, int size, char *id,
                      size_t idn, char *img_rel, char *lab_rel, size_t reln) {
    char path[4096];
    snprintf(id, idn, "case%03d", index);
    snprintf(img_rel, reln, "images/%s.nii.gz", id);
    snprintf(lab_rel, reln, "labels/%s.nii.gz", id);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    int rc = dacl_phantom_case(kind, seed, index, size, &img, &lab);
    if (rc == DACL_OK) rc = dacl_path_join(path, sizeof path, out_dir, img_rel);
    if (rc == DACL_OK) rc = dacl_nifti_write_image(path, &img, NULL);
    if (rc == DACL_OK) rc = dacl_path_join(path, sizeof path, out_dir, lab_rel);
    if (rc == DACL_OK) rc = dacl_nifti_write_label(path, &lab, NULL);
    dacl_volume_free(&img);
    dacl_label_free(&lab);
    return rc;
}

static int add_labels(DaclDataset *ds, DaclPhantomKind kind) {
    static const char *const cardiac[] = {"background", "RV", "Myo", "LV"};
    static const char *const abdomen[] = {"background", "liver", "right_kidney", "left_kidney", "spleen"};
    const char *const *names = kind == DACL_PHANTOM_CARDIAC ? cardiac : abdomen;
    int n = kind == DACL_PHANTOM_CARDIAC ? 4 : 5;
    if (!(ds->labels = calloc((size_t)n, sizeof *ds->labels))) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        ds->labels[i].value = i;
        if (!(ds->labels[ds->n_labels++].name = dacl_strdup_or_null(names[i])))
            return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    return DACL_OK;
}

static int write_all(const char *out_dir, DaclPhantomKind kind, int cases, uint64_t seed, int size, int force,
                     DaclDataset *ds) {
    char name[64], path[4096];
    snprintf(name, sizeof name, "phantom-%s", dacl_phantom_kind_name(kind));
    if (!(ds->name = dacl_strdup_or_null(name))) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    ds->modality = DACL_MRI;
    ds->format = DACL_FMT_NIFTI;
    dacl_intensity_default(DACL_MRI, &ds->intensity);
    DACL_TRY(add_labels(ds, kind));
    int n_val = cases / 5 > 1 ? cases / 5 : 1;
    if (!(ds->label_order = calloc((size_t)(cases - n_val), sizeof *ds->label_order)))
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    for (int i = 0; i < cases; i++) {
        char id[32], img_rel[64], lab_rel[64];
        DACL_TRY(write_case(out_dir, kind, seed, i, size, id, sizeof id, img_rel, lab_rel, sizeof img_rel));
        int train = i < cases - n_val;
        DACL_TRY(dacl_split_add(train ? &ds->train : &ds->val, id, id, img_rel, lab_rel));
        if (train && !(ds->label_order[ds->n_label_order++] = dacl_strdup_or_null(id)))
            return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    DACL_TRY(dacl_path_join(path, sizeof path, out_dir, DACL_MANIFEST));
    return dacl_dataset_write(ds, path, force);
}

int dacl_phantom_write(const char *out_dir, DaclPhantomKind kind, int cases, uint64_t seed,
                       const DaclPhantomOptions *opt) {
    static const DaclPhantomOptions defaults = {0};
    if (!opt) opt = &defaults;
    if (!out_dir || !*out_dir) return DACL_FAIL(DACL_EINVAL, "phantom: no output folder given");
    if ((unsigned)kind >= N_KINDS) return DACL_FAIL(DACL_EINVAL, "phantom: unknown kind %d", (int)kind);
    if (cases < 2 || cases > 10000)
        return DACL_FAIL(DACL_EINVAL, "%s: %d cases asked for; a phantom has 2..10000 (train and val)", out_dir, cases);
    int size = opt->size ? opt->size : 128;
    if (size < 16 || size > 1024) return DACL_FAIL(DACL_EINVAL, "%s: size %d is not in 16..1024", out_dir, size);
    DACL_TRY(check_out_dir(out_dir, opt->force));
    char sub[4096];
    DACL_TRY(dacl_path_join(sub, sizeof sub, out_dir, "images"));
    DACL_TRY(make_dirs(sub));
    DACL_TRY(dacl_path_join(sub, sizeof sub, out_dir, "labels"));
    DACL_TRY(make_dirs(sub));
    DaclDataset ds = {0};
    int rc = write_all(out_dir, kind, cases, seed, size, opt->force, &ds);
    dacl_dataset_free(&ds);
    return rc;
}
