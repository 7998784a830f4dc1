#!/usr/bin/python3
"""Reference outputs for core/data/augment.c: SSL4MIS's RandomGenerator geometry done by scipy.

Run from the repository root with Debian's interpreter (it has numpy and scipy):
    /usr/bin/python3 tests/reference/make_resize_fixtures.py
It rewrites tests/reference/resize_fixtures.bin, which tests/unit/test_data_sampler.c reads.
Generated with numpy 1.24.2, scipy 1.10.1 (Debian 12).
    /usr/bin/python3 tests/reference/make_resize_fixtures.py --table
prints the C table of scipy.special.cosdg/sindg for 0..90 degrees that augment.c holds
(ndimage.rotate builds its matrix from them; libm's cos/sin differ in the last bit for about
half of the integer angles, which moves pixels that sit on a rounding boundary).

Each case is one sample through SSL4MIS's dataloaders/dataset.py RandomGenerator with the
random draws fixed:
    kind 0: nothing;  kind 1: image = np.flip(np.rot90(image, k), axis=axis);
    kind 2: image = ndimage.rotate(image, angle, order=0, reshape=False)
    then x, y = image.shape; image = zoom(image, (ph / x, pw / y), order=0).
Kind 0 cases are plain resizes (SSL4MIS's training and inference zoom), chosen to cover odd
sizes, up and down, a size of 1, and sizes where scipy's k * (in-1)/(out-1) overshoots in-1 for
the last k, so that its last row or column is zero-filled (e.g. 22 -> 154, 32 -> 16, 256 -> 12).

Inputs are not stored: both sides compute them. Case c's image, (h, w) float32, flat index i:
    u = ((i + 7919 * c) * 2654435761) mod 2^32;  x = ((u >> 8) + 1) * 2^-24   in (0, 1], exact
(no zero, so a zero in an output can only be scipy's fill). The label is (x * 4) cast to
uint8 (0..4). The script checks that scipy gives the label output the image output's values
(out * 4 cast to uint8, fill 0), i.e. the uint8 path uses the same coordinates; the C test
checks the same of its own outputs, so only the float outputs travel.

File format (little-endian, tests/unit/refload.h): b"DACLREF1", u32 count, then per tensor:
u32 name length, name, u32 ndim, u32 dims[ndim], float32 data. Per case c two tensors:
"caseNN/params" = [kind, k, axis, angle, h, w, ph, pw] and "caseNN/out" of shape (ph, pw).
"""
import os
import struct
import sys

import numpy as np
from scipy import ndimage, special
from scipy.ndimage import zoom

HERE = os.path.dirname(os.path.abspath(__file__))

# (kind, k, axis, angle, h, w, ph, pw)
CASES = [
    (0, 0, 0, 0, 7, 5, 16, 16),
    (0, 0, 0, 0, 256, 232, 256, 256),
    (0, 0, 0, 0, 256, 256, 154, 224),
    (0, 0, 0, 0, 22, 32, 154, 16),    # both axes overshoot: last row and column zero
    (0, 0, 0, 0, 256, 256, 12, 14),   # inference's zoom back, overshooting
    (0, 0, 0, 0, 1, 6, 4, 1),         # in = 1 (zoom 0) and out = 1 (zoom 1)
    (0, 0, 0, 0, 5, 7, 5, 7),         # identity
    (0, 0, 0, 0, 13, 11, 40, 37),
]
CASES += [(1, k, axis, 0, 9, 7, 16, 12) for k in range(4) for axis in range(2)]
CASES += [(2, 0, 0, a, 15, 12, 15, 12) for a in range(-20, 20)]
CASES += [(2, 0, 0, a, 40, 33, 48, 40) for a in (-20, -13, -1, 7, 19)]
# Angles beyond SSL4MIS's draws, where pixels sit on rounding boundaries. Found by brute-force
# search, they tell apart what the C code must get right: scipy's cosdg/sindg from libm's cos/sin
# (45, 60, 90), the rotation centre as numpy + OpenBLAS compute it (M @ c rounds as an fma) from
# plain arithmetic (-45 at 14x12 and 26x22, -30 at 35x47), and scipy 1.10's sum i*m0 + j*m1 +
# shift from later versions' shift-first order (+-45 at 16x16). Within -20..19, no size up to
# 520x520 that we tried depended on any of them.
CASES += [(2, 0, 0, a, h, w, h, w) for a, h, w in
          [(45, 16, 16), (-45, 16, 16), (60, 17, 17), (-60, 17, 17), (90, 20, 13), (-90, 16, 16),
           (-45, 14, 12), (-45, 26, 22), (-30, 35, 47)]]
CASES += [
    (2, 0, 0, -17, 256, 232, 256, 232),  # a real ACDC size, native grid: every rotated pixel
    (2, 0, 0, 11, 154, 224, 96, 96),
    (1, 3, 1, 0, 154, 224, 64, 48),
]


def image(c, h, w):
    i = np.arange(h * w, dtype=np.uint64)
    u = ((i + np.uint64(7919 * c)) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    x = ((u >> np.uint64(8)) + np.uint64(1)).astype(np.float64) * 2.0**-24
    return x.astype(np.float32).reshape(h, w)


def ssl4mis(img, kind, k, axis, angle, ph, pw):
    """RandomGenerator.__call__ on one array, the draws given."""
    if kind == 1:
        img = np.rot90(img, k)
        img = np.flip(img, axis=axis).copy()
    elif kind == 2:
        img = ndimage.rotate(img, angle, order=0, reshape=False)
    x, y = img.shape
    out = zoom(img, (ph / x, pw / y), order=0)
    assert out.shape == (ph, pw), (out.shape, ph, pw)
    return out


def main():
    if "--table" in sys.argv:
        for a in range(91):
            print("    {%s, %s}, /* %d */" % (special.cosdg(a).hex(), special.sindg(a).hex(), a))
        return
    tensors = []
    for c, (kind, k, axis, angle, h, w, ph, pw) in enumerate(CASES):
        img = image(c, h, w)
        lab = (img * 4).astype(np.uint8)
        out = ssl4mis(img, kind, k, axis, angle, ph, pw)
        out_lab = ssl4mis(lab, kind, k, axis, angle, ph, pw)
        assert out.dtype == np.float32 and out_lab.dtype == np.uint8
        assert np.array_equal(out_lab, (out * 4).astype(np.uint8)), c
        params = np.array([kind, k, axis, angle, h, w, ph, pw], dtype=np.float32)
        tensors.append(("case%02d/params" % c, params))
        tensors.append(("case%02d/out" % c, out))
    path = os.path.join(HERE, "resize_fixtures.bin")
    with open(path, "wb") as f:
        f.write(b"DACLREF1")
        f.write(struct.pack("<I", len(tensors)))
        for name, a in tensors:
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<I", a.ndim))
            f.write(struct.pack(f"<{a.ndim}I", *a.shape))
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    print("wrote %s: %d cases, %d bytes" % (path, len(CASES), os.path.getsize(path)))


if __name__ == "__main__":
    main()
