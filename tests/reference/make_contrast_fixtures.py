#!/usr/bin/python3
"""Reference tensors for the DACL contrastive module (method.md section 3), by PyTorch.

Run from the repository root:  /usr/bin/python3 tests/reference/make_contrast_fixtures.py
It writes tests/reference/contrast_ref.bin, which tests/unit/test_method_contrast_ref.c reads.

One loss of one model, everything in float64 (the C code runs float32):
  features feat [N=2, Cf=6, 6, 6] and the head's parameters, seeded numpy, stored in the file;
  per-pixel classes cls [N, 36]: 0 (background, ignored), 1, 2 or 255 (ignored), stored;
  a memory bank with 7 entries of class 1 and 3 of class 2 (unit rows), stored;
  anchors 5, pos_keys 6 (3 batch + 3 bank), neg_keys 1000 (so every other-class row is a
  negative and nothing is random), knn (2, 4), tau 0.4, proj_dim 8.
The head: Linear(6, 256) -> BatchNorm1d over all 72 pixels (training mode) -> ReLU ->
Linear(256, 8) -> F.normalize. Rows are each class's pixels in ascending pixel order,
class 1 first. Density of a batch row: mean over k of the mean of its k largest cosines
with [bank; batch rows of its class] without itself; a bank entry's: against the bank.
Anchors: the 5 lowest densities; keys: the 3 highest batch and (class 1 only: class 2's bank
has no more than max k entries) the 3 highest bank densities; centre: normalize(mean(keys)).
Losses (none, weighted, literal) and gradients with keys, centre and negatives detached.

The seed was chosen so that no two densities next to a selection boundary are closer than
1e-3 (checked below): the float32 C code must select exactly the same rows.

File format (little-endian): b"DACLREF1", u32 count, then per tensor: u32 name length,
name (UTF-8, no NUL), u32 ndim, u32 dims[ndim], float32 data (C order). Integer tensors
(classes, selections) are stored as float32 (exact).
"""
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

N, CF, H, W = 2, 6, 6, 6
HID, D = 256, 8
KNN = (2, 4)
NQ, KB, KG, TAU = 5, 3, 3, 0.4
BANK = {1: 7, 2: 3}
SEED = 3
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contrast_ref.bin")

torch.set_default_dtype(torch.float64)


def inputs(seed):
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    feat = f32(rng.normal(size=(N, CF, H, W)))
    cls = rng.choice([0, 1, 1, 2, 2, 255], size=(N, H * W)).astype(np.float32)
    w1 = f32(rng.uniform(-1, 1, size=(HID, CF)) / np.sqrt(CF))
    b1 = f32(rng.uniform(-1, 1, size=HID) / np.sqrt(CF))
    gamma = f32(rng.uniform(0.5, 1.5, size=HID))
    beta = f32(rng.uniform(-0.3, 0.3, size=HID))
    w2 = f32(rng.uniform(-1, 1, size=(D, HID)) / 16.0)
    b2 = f32(rng.uniform(-1, 1, size=D) / 16.0)
    bank = {}
    for k, n in BANK.items():
        g = rng.normal(size=(n, D))
        bank[k] = f32(g / np.linalg.norm(g, axis=1, keepdims=True))
    return dict(feat=feat, cls=cls, w1=w1, b1=b1, gamma=gamma, beta=beta, w2=w2, b2=b2), bank


def density(v, s, self_at):
    """v [n, D] against s [m, D]; v[i] is s[self_at + i] (self_at None: not in s)."""
    sim = v @ s.T
    if self_at is not None:
        idx = torch.arange(v.shape[0])
        sim[idx, self_at + idx] = -float("inf")
    top = torch.sort(sim, dim=1, descending=True).values
    return torch.stack([top[:, :k].mean(1) for k in KNN]).mean(0)


def boundary_gap(d, n_low, n_high):
    """Smallest density gap at the edges of the n_low lowest and n_high highest."""
    s = torch.sort(d).values
    gaps = []
    if 0 < n_low < len(s):
        gaps.append(float(s[n_low] - s[n_low - 1]))
    if 0 < n_high < len(s):
        gaps.append(float(s[len(s) - n_high] - s[len(s) - n_high - 1]))
    return min(gaps) if gaps else float("inf")


def class_loss(m, c, neg, mode):
    t = m @ c
    s_pos = t / TAU
    s_neg = m @ neg.T / TAU
    q = m.shape[0]
    if mode == "literal":
        logw = torch.log(torch.tensor(float(q))) + torch.log_softmax(t, 0)
        return (-(logw + s_pos - torch.logsumexp(s_neg, 1))).mean()
    nll = torch.logsumexp(torch.cat([s_pos[:, None], s_neg], 1), 1) - s_pos
    if mode == "none":
        return nll.mean()
    return (torch.softmax(t, 0).detach() * nll).sum()


def run(p, bank, mode):
    feat = torch.tensor(p["feat"], dtype=torch.float64, requires_grad=True)
    par = {k: torch.tensor(p[k], dtype=torch.float64, requires_grad=True)
           for k in ("w1", "b1", "gamma", "beta", "w2", "b2")}
    x = feat.permute(0, 2, 3, 1).reshape(-1, CF)                     # [P, Cf], pixel order
    z = x @ par["w1"].T + par["b1"]
    mu, var = z.mean(0), z.var(0, unbiased=False)
    u = (z - mu) / torch.sqrt(var + 1e-5) * par["gamma"] + par["beta"]
    e_all = F.normalize(torch.relu(u) @ par["w2"].T + par["b2"], dim=1)
    cls = torch.tensor(p["cls"]).reshape(-1).long()
    rows = torch.cat([torch.nonzero(cls == k).flatten() for k in (1, 2)])
    e = e_all[rows]                                                   # [R, D]
    ed = e.detach()
    off = {1: 0, 2: int((cls == 1).sum())}
    nb = {1: off[2], 2: int((cls == 2).sum())}
    out = {"running_mean": 0.1 * mu.detach(),
           "running_var": 0.9 + 0.1 * z.var(0, unbiased=True).detach()}
    grads = {}
    dens = torch.full((len(rows),), float("nan"))
    total, gap = 0.0, float("inf")
    for k in (1, 2):
        r0, n = off[k], nb[k]
        g = torch.tensor(bank[k], dtype=torch.float64)
        v = ed[r0:r0 + n]
        d = density(v, torch.cat([g, v]), g.shape[0])
        dens[r0:r0 + n] = d
        gap = min(gap, boundary_gap(d, NQ, KB))
        anchors = r0 + torch.sort(d, stable=True).indices[:NQ]
        keys = r0 + torch.sort(-d, stable=True).indices[:KB]
        key_vecs = [ed[keys]]
        bank_keys = torch.zeros(0, dtype=torch.long)
        if g.shape[0] > max(KNN):
            bd = density(g, g, 0)
            gap = min(gap, boundary_gap(bd, 0, KG))
            bank_keys = torch.sort(-bd, stable=True).indices[:KG]
            key_vecs.append(g[bank_keys])
            out[f"bank_density_{k}"] = bd
        centre = F.normalize(torch.cat(key_vecs).mean(0), dim=0)
        neg = torch.cat([ed[off[o]:off[o] + nb[o]] for o in (1, 2) if o != k])
        lk = class_loss(e[anchors], centre, neg, mode)
        total = total + lk
        out[f"anchors_{k}"] = anchors.double()
        out[f"keys_{k}"] = keys.double()
        out[f"bank_keys_{k}"] = bank_keys.double()
        out[f"centre_{k}"] = centre
        grads[f"loss_{k}"] = lk.detach().reshape(1)
    total = total / 2
    total.backward()
    out.update(embeddings=ed, densities=dens)
    grads.update(loss=total.detach().reshape(1), dfeat=feat.grad,
                 **{"d" + k: v.grad for k, v in par.items()})
    return out, grads, gap


def write(path, tensors):
    with open(path, "wb") as f:
        f.write(b"DACLREF1")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors:
            a = np.ascontiguousarray(np.asarray(t, dtype=np.float32))
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<I", a.ndim))
            f.write(struct.pack("<%dI" % a.ndim, *a.shape))
            f.write(a.astype("<f4").tobytes())


def main():
    p, bank = inputs(SEED)
    tensors = [(k, v) for k, v in p.items()] + [(f"bank_{k}", v) for k, v in bank.items()]
    for mode in ("none", "weighted", "literal"):
        out, grads, gap = run(p, bank, mode)
        assert gap > 1e-3, f"seed {SEED}: selection boundary gap {gap:.2e} too small for float32"
        if mode == "none":  # what does not depend on the mode, once
            tensors += [(name, t.numpy()) for name, t in out.items()]
        tensors += [(f"{mode}/{name}", t.numpy()) for name, t in grads.items()]
    write(OUT, tensors)
    print(f"wrote {OUT}: {len(tensors)} tensors, selection gap {gap:.2e}")


if __name__ == "__main__":
    main()
