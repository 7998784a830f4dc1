#!/usr/bin/python3
"""Reference tensors for the C U-Net, computed by PyTorch (Debian python3-torch).

Run from the repository root:  /usr/bin/python3 tests/reference/make_fixtures.py
It writes tests/reference/unet_ref.bin, which tests/unit/test_nn_reference.c reads.

The network is the SSL4MIS 2D U-Net (networks/unet.py, bilinear=False) with widths
4-8-16-32-64, 1 input channel, 4 classes, dropout off (dropout has its own test).
Weights, input and labels come from closed-form formulas that the C test computes too,
so nothing but the outputs travels in the file:

  tensor t (0-based, in named_parameters order), element i (flat, C order):
    conv / transposed-conv weight and bias: sin(0.7*i + 1.3*t + 0.1) / sqrt(fan_in)
        (fan_in = in*k*k for conv, out*k*k for ConvTranspose2d, the weight's for a bias)
    BatchNorm weight: 1 + 0.1*sin(0.5*i + t);  BatchNorm bias: 0.1*cos(0.3*i + t)
  input x[n,0,h,w] = 0.5 + 0.5*sin(0.11*h + 0.07*w + 1.7*n) * cos(0.05*w - 0.03*h)
  label y[n,h,w]: r = distance of (h, w) from (32 + 4n, 30 - 3n); 3 if r < 8, 2 if r < 16,
    1 if r < 24, else 0
  every value computed in double precision and rounded to float32.

Loss: 0.5 * (CrossEntropy(mean) + SSL4MIS DiceLoss(softmax, one-hot)).
Dumped: logits and loss of the first training-mode forward, the gradient of every
parameter, the BN running statistics after that forward, then the losses of 5 SGD steps
(lr_k = 0.01 * (1 - k/10)^0.9, momentum 0.9, weight decay 1e-4; the first step reuses
the forward above) and every parameter after the 5 steps.

File format (little-endian): b"DACLREF1", u32 count, then per tensor: u32 name length,
name (UTF-8, no NUL), u32 ndim, u32 dims[ndim], float32 data (C order).
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTHS = [4, 8, 16, 32, 64]
N, H, W, CLASSES = 2, 64, 64, 4
STEPS = 5


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, p):
        super().__init__()
        self.conv_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(),
            nn.Dropout(p), nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout),
            nn.LeakyReLU())

    def forward(self, x):
        return self.conv_conv(x)


class DownBlock(nn.Module):
    def __init__(self, cin, cout, p):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), ConvBlock(cin, cout, p))

    def forward(self, x):
        return self.maxpool_conv(x)


class UpBlock(nn.Module):
    def __init__(self, cin1, cin2, cout, p):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin1, cin2, kernel_size=2, stride=2)
        self.conv = ConvBlock(cin2 * 2, cout, p)

    def forward(self, x1, x2):
        return self.conv(torch.cat([x2, self.up(x1)], dim=1))


class Encoder(nn.Module):
    def __init__(self, w, p):
        super().__init__()
        self.in_conv = ConvBlock(1, w[0], p[0])
        self.down1 = DownBlock(w[0], w[1], p[1])
        self.down2 = DownBlock(w[1], w[2], p[2])
        self.down3 = DownBlock(w[2], w[3], p[3])
        self.down4 = DownBlock(w[3], w[4], p[4])

    def forward(self, x):
        x0 = self.in_conv(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        return [x0, x1, x2, x3, self.down4(x3)]


class Decoder(nn.Module):
    def __init__(self, w, classes):
        super().__init__()
        self.up1 = UpBlock(w[4], w[3], w[3], 0.0)
        self.up2 = UpBlock(w[3], w[2], w[2], 0.0)
        self.up3 = UpBlock(w[2], w[1], w[1], 0.0)
        self.up4 = UpBlock(w[1], w[0], w[0], 0.0)
        self.out_conv = nn.Conv2d(w[0], classes, kernel_size=3, padding=1)

    def forward(self, f):
        x = self.up1(f[4], f[3])
        x = self.up2(x, f[2])
        x = self.up3(x, f[1])
        x = self.up4(x, f[0])
        return self.out_conv(x)


class UNet(nn.Module):
    def __init__(self, w, p, classes):
        super().__init__()
        self.encoder = Encoder(w, p)
        self.decoder = Decoder(w, classes)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def fan_in(mod):
    """PyTorch's fan_in of a (transposed) convolution's weight: size(1) * k * k, which is
    in*k*k for Conv2d ([out, in, k, k]) and out*k*k for ConvTranspose2d ([in, out, k, k])."""
    w = mod.weight
    return w.shape[1] * w.shape[2] * w.shape[3]


def formula_init(model):
    module_of = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            module_of[f"{mname}.{pname}" if mname else pname] = mod
    with torch.no_grad():
        for t, (name, p) in enumerate(model.named_parameters()):
            i = np.arange(p.numel(), dtype=np.float64)
            mod = module_of[name]
            if isinstance(mod, nn.BatchNorm2d):
                v = 1 + 0.1 * np.sin(0.5 * i + t) if name.endswith("weight") else 0.1 * np.cos(0.3 * i + t)
            else:
                v = np.sin(0.7 * i + 1.3 * t + 0.1) / math.sqrt(fan_in(mod))
            p.copy_(torch.from_numpy(v.astype(np.float32)).reshape(p.shape))


def make_input():
    n, h, w = np.meshgrid(np.arange(N), np.arange(H), np.arange(W), indexing="ij")
    x = 0.5 + 0.5 * np.sin(0.11 * h + 0.07 * w + 1.7 * n) * np.cos(0.05 * w - 0.03 * h)
    r = np.sqrt((h - (32 + 4 * n)) ** 2 + (w - (30 - 3 * n)) ** 2)
    y = np.where(r < 8, 3, np.where(r < 16, 2, np.where(r < 24, 1, 0)))
    return (torch.from_numpy(x.astype(np.float32)).reshape(N, 1, H, W),
            torch.from_numpy(y.astype(np.int64)))


def dice_loss(probs, target, classes):
    """SSL4MIS losses.DiceLoss(n_classes)(softmax, target) with weight 1 per class."""
    onehot = F.one_hot(target, classes).permute(0, 3, 1, 2).float()
    smooth = 1e-5
    loss = 0.0
    for k in range(classes):
        s, t = probs[:, k], onehot[:, k]
        inter = torch.sum(s * t)
        loss = loss + 1 - (2 * inter + smooth) / (torch.sum(s * s) + torch.sum(t * t) + smooth)
    return loss / classes


def total_loss(logits, y):
    return 0.5 * (F.cross_entropy(logits, y) + dice_loss(torch.softmax(logits, 1), y, CLASSES))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unet_ref.bin")
    model = UNet(WIDTHS, [0.0] * 5, CLASSES)
    formula_init(model)
    model.train()
    x, y = make_input()
    tensors = []

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    step_losses = []
    for k in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = 0.01 * (1 - k / 10) ** 0.9
        opt.zero_grad()
        logits = model(x)
        loss = total_loss(logits, y)
        loss.backward()
        if k == 0:
            tensors.append(("logits", logits.detach()))
            tensors.append(("loss", loss.detach().reshape(1)))
            for name, p in model.named_parameters():
                tensors.append(("grad." + name, p.grad.detach().clone()))
            for name, b in model.named_buffers():
                if "running" in name:
                    tensors.append(("bn." + name, b.detach().clone()))
        step_losses.append(loss.item())
        opt.step()
    tensors.append(("step_losses", torch.tensor(step_losses, dtype=torch.float32)))
    for name, p in model.named_parameters():
        tensors.append(("final." + name, p.detach().clone()))

    with open(out_path, "wb") as f:
        f.write(b"DACLREF1")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors:
            a = np.ascontiguousarray(t.numpy().astype("<f4"))
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<I", a.ndim))
            f.write(struct.pack(f"<{a.ndim}I", *a.shape))
            f.write(a.tobytes())
    print(f"wrote {out_path}: {len(tensors)} tensors, {os.path.getsize(out_path)} bytes, "
          f"loss {step_losses[0]:.6f} -> {step_losses[-1]:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
