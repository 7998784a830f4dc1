/* Evaluation: segmentation metrics and volume inference.
 *
 * Shapes: a volume is (Z, H, W) = (nz, ny, nx), row-major, x fastest, one uint8
 * label per voxel. Spacing, where given, is in the same (z, y, x) order. */
#ifndef DACL_EVAL_H
#define DACL_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "dacl/data.h"
#include "dacl/nn.h"

struct cJSON;

/* ======================================================================== */
/* Metrics                                                                  */
/* ======================================================================== */
/*
 * medpy.metric.binary definitions, per foreground class c on a 3D volume,
 * A = (pred == c), B = (gt == c):
 *   dice    = 2|A∩B| / (|A| + |B|)          jaccard = |A∩B| / |A∪B|
 *   surface(M) = M XOR erosion(M, 6-connected cross), the array border counted as
 *                outside (so with nz = 1 every foreground voxel is surface).
 *   d(A→B)  = for each surface voxel of A, the Euclidean distance (scaled by the
 *             spacing) to the nearest surface voxel of B.
 *   hd95    = numpy.percentile(d(A→B) ∪ d(B→A), 95), linear interpolation.
 *   asd     = mean d(A→B)   (directed: prediction surface to truth surface,
 *             medpy asd(result=pred, reference=gt)).
 *   assd    = (mean d(A→B) + mean d(B→A)) / 2   (medpy assd).
 *
 * The four cases of emptiness (distances need two surfaces, so they are
 * defined only in the first; "undefined" = NaN with distances_defined = 0,
 * printed as JSON null, never a silent 0):
 *   |A| > 0, |B| > 0 : everything defined.
 *   |A| = 0, |B| > 0 : dice = jaccard = 0 (missed class); distances undefined.
 *   |A| > 0, |B| = 0 : dice = jaccard = 0 (false alarm);  distances undefined.
 *   |A| = 0, |B| = 0 : dice = jaccard = 1 (the absent class is correctly
 *                      absent; medpy's dc would say 0 and its jc divides by 0);
 *                      distances undefined. pred_voxels = gt_voxels = 0 lets a
 *                      caller that prefers to drop such classes do so.
 *
 * Distances are in voxels when spacing is NULL, else in the spacing's unit (mm).
 */

typedef struct DaclClassMetrics {
    double dice;
    double jaccard;
    double hd95;           /* NaN unless distances_defined */
    double asd;            /* NaN unless distances_defined */
    double assd;           /* NaN unless distances_defined */
    int distances_defined; /* 1 when both masks are non-empty */
    int64_t pred_voxels;   /* |A| */
    int64_t gt_voxels;     /* |B| */
} DaclClassMetrics;

/* The mean over foreground classes. Dice and Jaccard average every class;
 * distances average only the classes where they are defined, and how many were
 * skipped is counted separately. All distances undefined → NaN. */
typedef struct DaclMetricsMean {
    double dice;
    double jaccard;
    double hd95;
    double asd;
    double assd;
    int classes;             /* classes averaged for dice and jaccard */
    int distances_defined;   /* classes averaged for hd95, asd, assd */
    int distances_undefined; /* classes skipped for distances (the "missing" column) */
} DaclMetricsMean;

/* Per-class metrics of a label volume.
 * pred, gt: [nz*ny*nx] labels in 0..num_classes-1 (a larger label is EINVAL).
 * spacing:  (z, y, x) voxel size, each > 0 and finite, or NULL for voxels.
 * out:      [num_classes-1], out[c-1] for class c = 1..num_classes-1.
 * One workspace is allocated for the whole call: 9 bytes a voxel plus 8 per
 * surface voxel of the class with the most (pred and truth surfaces pooled). */
int dacl_metrics_volume(const uint8_t *pred, const uint8_t *gt, int nz, int ny, int nx,
                        const double spacing[3], int num_classes, DaclClassMetrics *out);

/* The same for one pair of binary masks: any non-zero byte is foreground. */
int dacl_metrics_binary(const uint8_t *pred, const uint8_t *gt, int nz, int ny, int nx,
                        const double spacing[3], DaclClassMetrics *out);

/* Mean over m[0..n-1] (n >= 1) with the skipping rules above. */
int dacl_metrics_mean(const DaclClassMetrics *m, int n, DaclMetricsMean *out);

/* The `dacld metrics --json` shape as a new cJSON object (caller deletes it):
 *   {"classes": {"1": {"dice": .., "jaccard": .., "hd95": .., "asd": ..}, ...},
 *    "mean": {"dice": .., "jaccard": .., "hd95": .., "asd": .., "distances_missing": k}}
 * with undefined distances as null. m[i] is class i+1; mean may be NULL, then it
 * is computed from m. */
int dacl_metrics_to_json(const DaclClassMetrics *m, int n, const DaclMetricsMean *mean,
                         struct cJSON **out);

/* Exact squared Euclidean distance transform of a sampled function, in place
 * (Felzenszwalb & Huttenlocher, separable, O(n) per axis):
 *   f[p] <- min_q f[q] + sum_axis (spacing_axis * (p_axis - q_axis))^2.
 * With f = 0 on features and INFINITY elsewhere this is the squared distance to
 * the nearest feature (a volume without features stays INFINITY).
 * f: [nz*ny*nx]; spacing (z, y, x) or NULL for 1; scratch: at least
 * dacl_edt_scratch_bytes(nz, ny, nx) bytes, suitably aligned for double. */
size_t dacl_edt_scratch_bytes(int nz, int ny, int nx);
int dacl_edt_sq(double *f, int nz, int ny, int nx, const double spacing[3], void *scratch);

/* ======================================================================== */
/* Inference                                                                */
/* ======================================================================== */
/*
 * SSL4MIS test_single_volume, slice by slice: each (H, W) slice of a (Z, H, W)
 * volume is resized to the model's patch (PH, PW) by nearest neighbour
 * (dacl_resize_nearest_f32, bit-exact to scipy.ndimage.zoom order 0 as SSL4MIS
 * calls it), run through the U-Net in eval mode (BN running statistics, no
 * dropout) in batches of up to dacl_unet_max_batch slices, argmax'd over the
 * classes (the first of equal maxima), and the (PH, PW) label map is resized
 * back to (H, W) the same way.
 *
 * The model runs on its own thread team (dacl_unet_set_pool); it must have
 * one input channel. Labels do not depend on the thread count.
 */

/* pred gets a (Z, H, W) label volume with img's geometry (spacing, format,
 * NIfTI header), replacing what it held; on failure it is left as it was.
 * in: the intensity handling to apply to (a copy of) img first, as the
 * training data had it (per-volume min-max, CT window); NULL if the caller
 * has normalised img already (dacl_dataset_load_case does). */
int dacl_infer_volume(DaclUNet *m, const DaclVolume *img, const DaclIntensity *in,
                      DaclLabelVolume *pred);

/* Load case c of ds (dacl_dataset_load_case: the dataset's intensity
 * handling), predict it and score it against its label: out[classes - 1] for
 * the model's foreground classes. mm != 0: distances in mm (DACL_EINVAL if the
 * case has no spacing). pred (may be NULL) receives the prediction. */
int dacl_eval_case(DaclUNet *m, const DaclDataset *ds, const DaclCase *c, int mm,
                   DaclClassMetrics *out, DaclLabelVolume *pred);

/* The JSON metadata a model file carries for inference (all fields optional):
 *   {"dataset": "acdc", "modality": "MRI" | "CT",
 *    "labels": {"background": 0, "RV": 1, ...},
 *    "intensity": {"clip": [lo, hi] | null, "minmax": true | false}}
 * "intensity" is spelled as in the dataset manifest; without it a model is
 * taken to want per-volume min-max and no clip. Other fields are kept and
 * ignored (training adds its own). */

/* The metadata for a model trained on ds (malloc'd JSON text). */
int dacl_model_meta_from_dataset(const DaclDataset *ds, char **json);
/* The intensity handling the metadata asks for (json may be NULL: the
 * default). DACL_EFORMAT naming `what` if it is malformed. */
int dacl_model_meta_intensity(const char *json, const char *what, DaclIntensity *out);

#endif
