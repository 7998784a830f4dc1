#!/usr/bin/python3
"""Reference values for core/eval/metrics.c and core/eval/edt.c.

Run with Debian's interpreter (it has numpy and scipy):
    /usr/bin/python3 tests/reference/make_metric_fixtures.py
It rewrites tests/reference/metric_fixtures.bin and tests/reference/edt_fixtures.bin;
tests/unit/test_eval_metrics.c reads both. Generated with numpy 1.24.2, scipy 1.10.1.

The metrics are medpy.metric.binary's (medpy 0.4.0). medpy is not installed here, so
its private `__surface_distances` and its `dc`, `jc`, `hd95`, `asd`, `assd` are
re-implemented below line for line on top of scipy.ndimage, which is what medpy
itself calls. On top of medpy's values the script applies dacld's conventions for
empty masks (include/dacl/eval.h): a class missing from either volume has undefined
distances (medpy raises RuntimeError), and a class missing from both has
dice = jaccard = 1 (medpy's dc returns 0 and its jc divides by zero).

File formats (little-endian, no padding beyond what is written):

metric_fixtures.bin
    magic      8 bytes   b"DACLMF01"
    ncases     u32
    then per case:
      name       32 bytes  ASCII, NUL-padded
      nz ny nx   i32 x 3   volume shape (Z, H, W), x fastest
      C          i32       number of classes (labels 0..C-1, 0 = background)
      has_sp     i32       0: distances in voxels (the C test passes spacing NULL)
      spacing    f64 x 3   (z, y, x); 1, 1, 1 when has_sp = 0
      pred       u8  x n   n = nz*ny*nx, row-major
      gt         u8  x n
      C-1 class records for classes 1..C-1, then one record for the mean:
        count    i32       class record: 1 when distances are defined, else 0;
                           mean record: number of classes with undefined distances
        pad      i32       0
        dice jaccard hd95 asd assd   f64 x 5   (NaN where undefined)

edt_fixtures.bin
    magic      8 bytes   b"DACLED01"
    ncases     u32
    then per case:
      nz ny nx   i32 x 3
      has_sp     i32
      spacing    f64 x 3   (z, y, x)
      feature    u8  x n   1 = feature voxel
      dist       f64 x n   scipy distance_transform_edt(feature == 0, sampling=spacing)
"""
import os
import struct

import numpy
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- medpy.metric.binary (0.4.0), re-implemented verbatim ----

def _surface_distances(result, reference, voxelspacing=None, connectivity=1):
    """medpy.metric.binary.__surface_distances"""
    result = numpy.atleast_1d(result.astype(bool))
    reference = numpy.atleast_1d(reference.astype(bool))
    if voxelspacing is not None:
        voxelspacing = numpy.asarray(voxelspacing, dtype=numpy.float64)
        assert voxelspacing.shape == (result.ndim,)
    footprint = generate_binary_structure(result.ndim, connectivity)
    if 0 == numpy.count_nonzero(result):
        raise RuntimeError("The first supplied array does not contain any binary object.")
    if 0 == numpy.count_nonzero(reference):
        raise RuntimeError("The second supplied array does not contain any binary object.")
    result_border = result ^ binary_erosion(result, structure=footprint, iterations=1)
    reference_border = reference ^ binary_erosion(reference, structure=footprint, iterations=1)
    dt = distance_transform_edt(~reference_border, sampling=voxelspacing)
    sds = dt[result_border]
    return sds


def dc(result, reference):
    result = numpy.atleast_1d(result.astype(bool))
    reference = numpy.atleast_1d(reference.astype(bool))
    intersection = numpy.count_nonzero(result & reference)
    size_i1 = numpy.count_nonzero(result)
    size_i2 = numpy.count_nonzero(reference)
    try:
        return 2. * intersection / float(size_i1 + size_i2)
    except ZeroDivisionError:
        return 0.0


def jc(result, reference):
    result = numpy.atleast_1d(result.astype(bool))
    reference = numpy.atleast_1d(reference.astype(bool))
    intersection = numpy.count_nonzero(result & reference)
    union = numpy.count_nonzero(result | reference)
    return float(intersection) / float(union)


def hd95(result, reference, voxelspacing=None, connectivity=1):
    hd1 = _surface_distances(result, reference, voxelspacing, connectivity)
    hd2 = _surface_distances(reference, result, voxelspacing, connectivity)
    return numpy.percentile(numpy.hstack((hd1, hd2)), 95)


def asd(result, reference, voxelspacing=None, connectivity=1):
    return _surface_distances(result, reference, voxelspacing, connectivity).mean()


def assd(result, reference, voxelspacing=None, connectivity=1):
    return numpy.mean((asd(result, reference, voxelspacing, connectivity),
                       asd(reference, result, voxelspacing, connectivity)))


# ---- dacld's conventions on top (eval.h) ----

def class_metrics(pred, gt, c, spacing):
    """(defined, dice, jaccard, hd95, asd, assd) of class c; pred = result, gt = reference."""
    a, b = pred == c, gt == c
    if not a.any() and not b.any():
        return (0, 1.0, 1.0, numpy.nan, numpy.nan, numpy.nan)
    if not a.any() or not b.any():
        return (0, dc(a, b), jc(a, b), numpy.nan, numpy.nan, numpy.nan)
    return (1, dc(a, b), jc(a, b), hd95(a, b, spacing), asd(a, b, spacing), assd(a, b, spacing))


def mean_metrics(rows):
    """Dice and Jaccard over every class; distances over the defined ones only."""
    defined = [r for r in rows if r[0]]
    dist = [numpy.mean([r[k] for r in defined]) if defined else numpy.nan for k in (3, 4, 5)]
    return (len(rows) - len(defined), numpy.mean([r[1] for r in rows]),
            numpy.mean([r[2] for r in rows]), *dist)


# ---- volumes ----

def ellipsoid(shape, center, radii):
    z, y, x = numpy.indices(shape, dtype=numpy.float64)
    r = sum(((g - c) / max(rad, 1e-9)) ** 2 for g, c, rad in zip((z, y, x), center, radii))
    return r <= 1.0


def blobs(rng, shape, num_classes, per_class=2):
    """Truth: a few ellipsoids per class; prediction: the same ones moved, resized, plus
    some voxels flipped at random, so the surfaces differ in every direction."""
    gt = numpy.zeros(shape, numpy.uint8)
    pred = numpy.zeros(shape, numpy.uint8)
    for c in range(1, num_classes):
        for _ in range(per_class):
            flat = numpy.array(shape) == 1  # a Z=1 volume: keep the blob on its slice
            center = numpy.where(flat, 0.0, rng.uniform(0, 1, 3) * numpy.array(shape))
            radii = numpy.where(flat, 1.0, rng.uniform(0.15, 0.4, 3) * numpy.array(shape))
            gt[ellipsoid(shape, center, radii)] = c
            center = center + numpy.where(flat, 0.0, rng.normal(0, 1.5, 3))
            radii = radii * rng.uniform(0.8, 1.2, 3)
            pred[ellipsoid(shape, center, radii)] = c
    flips = rng.uniform(size=shape) < 0.02
    pred[flips] = rng.randint(0, num_classes, size=int(flips.sum()))
    return pred, gt


def cases():
    rng = numpy.random.RandomState(20240611)
    out = []
    pred, gt = blobs(rng, (8, 40, 48), 4)
    out.append(("blobs_4class", pred, gt, 4, None))
    pred, gt = blobs(rng, (6, 32, 40), 3)
    out.append(("blobs_aniso_10_1.5_1.5", pred, gt, 3, (10.0, 1.5, 1.5)))
    pred, gt = blobs(rng, (7, 24, 20), 3)
    out.append(("blobs_aniso_odd", pred, gt, 3, (2.5, 0.7, 1.3)))

    pred, gt = blobs(rng, (6, 20, 24), 3)
    pred[pred == 1] = 0
    out.append(("empty_pred_class1", pred, gt, 3, None))
    pred, gt = blobs(rng, (6, 20, 24), 3)
    gt[gt == 2] = 0
    out.append(("empty_gt_class2", pred, gt, 3, (3.0, 1.0, 1.0)))
    pred, gt = blobs(rng, (6, 20, 24), 3)
    pred[pred == 1] = 0
    gt[gt == 1] = 0
    out.append(("both_empty_class1", pred, gt, 3, None))
    out.append(("all_empty", numpy.zeros((3, 5, 4), numpy.uint8),
                numpy.zeros((3, 5, 4), numpy.uint8), 3, None))

    pred = numpy.zeros((5, 9, 11), numpy.uint8)
    gt = numpy.zeros_like(pred)
    pred[2, 4, 5] = 1
    gt[1, 7, 2] = 1
    out.append(("single_voxels", pred, gt, 2, (2.0, 1.0, 0.5)))

    # faces, edges and a full slab against the array border, where erosion sees outside
    pred = numpy.zeros((6, 14, 16), numpy.uint8)
    gt = numpy.zeros_like(pred)
    pred[:, :, :3] = 1
    gt[:, :, :2] = 1
    gt[:, 12:, 5:] = 1
    pred[:, 11:, 6:] = 1
    pred[0, 4:9, 5:12] = 2
    gt[:2, 5:10, 4:12] = 2
    out.append(("border", pred, gt, 3, None))
    full = numpy.ones((4, 6, 5), numpy.uint8)
    out.append(("full_vs_corner", full, (numpy.indices(full.shape).sum(0) < 3).astype(numpy.uint8),
                2, None))

    pred, gt = blobs(rng, (1, 40, 48), 3)
    out.append(("z1_2d", pred, gt, 3, None))
    pred, gt = blobs(rng, (1, 30, 36), 2)
    out.append(("z1_2d_spacing", pred, gt, 2, (5.0, 1.25, 0.8)))

    gt = blobs(rng, (6, 18, 22), 3)[1]
    out.append(("identical", gt.copy(), gt, 3, None))
    # salt noise: thousands of tied surface distances for the percentile
    out.append(("noise", rng.randint(0, 3, size=(6, 16, 18)).astype(numpy.uint8),
                rng.randint(0, 3, size=(6, 16, 18)).astype(numpy.uint8), 3, None))
    return out


def write_metrics(path):
    all_cases = cases()
    with open(path, "wb") as f:
        f.write(b"DACLMF01" + struct.pack("<I", len(all_cases)))
        for name, pred, gt, num_classes, spacing in all_cases:
            assert pred.shape == gt.shape and pred.dtype == gt.dtype == numpy.uint8
            nz, ny, nx = pred.shape
            f.write(struct.pack("<32s5i", name.encode(), nz, ny, nx, num_classes,
                                spacing is not None))
            f.write(struct.pack("<3d", *(spacing or (1.0, 1.0, 1.0))))
            f.write(numpy.ascontiguousarray(pred).tobytes())
            f.write(numpy.ascontiguousarray(gt).tobytes())
            rows = [class_metrics(pred, gt, c, spacing) for c in range(1, num_classes)]
            for r in rows + [mean_metrics(rows)]:
                f.write(struct.pack("<2i5d", int(r[0]), 0, *map(float, r[1:])))
            print(f"{name:24s} {pred.shape} C={num_classes} spacing={spacing}")
            for c, r in enumerate(rows, 1):
                print(f"    class {c}: defined={r[0]} dice={r[1]:.6f} jaccard={r[2]:.6f} "
                      f"hd95={r[3]:.6f} asd={r[4]:.6f} assd={r[5]:.6f}")


def write_edt(path):
    rng = numpy.random.RandomState(7)
    specs = [((12, 10, 7), (2.5, 0.7, 1.3), 0.03),
             ((9, 11, 13), None, 0.01),
             ((1, 17, 19), (4.0, 1.0, 3.0), 0.02),
             ((10, 1, 9), (1.0, 1.0, 1.0), 0.1),
             ((5, 6, 7), (1.5, 1.5, 10.0), 0.0)]
    with open(path, "wb") as f:
        f.write(b"DACLED01" + struct.pack("<I", len(specs)))
        for shape, spacing, p in specs:
            feature = (rng.uniform(size=shape) < p).astype(numpy.uint8)
            if p > 0 and not feature.any():
                feature[0, 0, 0] = 1
            if p == 0:  # one feature only: distances to a single point
                feature[4, 0, 6] = 1
            dist = distance_transform_edt(feature == 0, sampling=spacing)
            f.write(struct.pack("<4i3d", *shape, spacing is not None,
                                *(spacing or (1.0, 1.0, 1.0))))
            f.write(feature.tobytes())
            f.write(dist.astype("<f8").tobytes())


if __name__ == "__main__":
    write_metrics(os.path.join(HERE, "metric_fixtures.bin"))
    write_edt(os.path.join(HERE, "edt_fixtures.bin"))
