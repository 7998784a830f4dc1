#!/usr/bin/python3
"""PyTorch peer for dacl-bench: the SSL4MIS 2D U-Net, timed the same way.

Run with Debian's /usr/bin/python3 (python3-torch 1.13); the pyenv python3 on
PATH has no torch. Prints exactly one JSON line on stdout, with the same keys
as `dacl-bench` (tests/bench/run.sh compares the two):

  {"impl": "pytorch", "allocator": "glibc"|"jemalloc", "mode": ..., "batch": ...,
   "patch": ..., "threads": ..., "iters": ..., "seconds_per_iter": ...,
   "img_per_s": ..., "gflops": ..., "peak_rss_mb": ...}

The network is HiLab-git/SSL4MIS networks/unet.py (UNet with transposed-conv
up-sampling, as docs/method.md section 1 fixes), module and attribute names
kept so a state_dict maps one to one. The loss and optimiser are SSL4MIS's
supervised ones (docs/method.md section 2): 0.5*(CE + Dice), SGD(0.01, 0.9,
1e-4). GFLOP/s uses fixed figures so both implementations are scored alike:
5.90 GFLOP per image forward at 256x256 (scaled by (patch/256)^2), training
step = 3 x forward.
"""

import argparse
import json
import os
import resource
import sys
import time

FWD_GFLOP_256 = 5.90      # forward GFLOP per image at 256x256
TRAIN_FACTOR = 3.0        # forward + two backward GEMMs
EXPECTED_PARAMS = 1944324  # in_chns=1, classes=4, widths 16..256


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("forward", "train"), required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=256, help="square patch side")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=5, help="timed iterations")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--in-chns", type=int, default=1)
    p.add_argument("--features", default="16,32,64,128,256",
                   help="comma-separated feature widths of the 5 levels")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if a.batch < 1 or a.patch < 16 or a.patch % 16 or a.threads < 1 \
            or a.iters < 1 or a.warmup < 0 or a.classes < 2:
        p.error("need batch>=1, patch a multiple of 16, threads>=1, iters>=1, "
                "warmup>=0, classes>=2")
    a.features = [int(x) for x in a.features.split(",")]
    if len(a.features) != 5:
        p.error("--features needs 5 widths")
    return a


args = parse_args(sys.argv[1:])
# Before torch starts its pools: no oversubscription from OpenMP/OpenBLAS.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

import torch                      # noqa: E402
import torch.nn as nn             # noqa: E402
import torch.nn.functional as F   # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)


# ---------------------------------------------------------------------------
# SSL4MIS networks/unet.py (bilinear=False: ConvTranspose2d up-sampling)
# ---------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """two convolution layers with batch norm and leaky relu"""

    def __init__(self, in_channels, out_channels, dropout_p):
        super().__init__()
        self.conv_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),          # negative_slope 0.01
            nn.Dropout(dropout_p),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )

    def forward(self, x):
        return self.conv_conv(x)


class DownBlock(nn.Module):
    """Downsampling followed by ConvBlock"""

    def __init__(self, in_channels, out_channels, dropout_p):
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2),
            ConvBlock(in_channels, out_channels, dropout_p),
        )

    def forward(self, x):
        return self.maxpool_conv(x)


class UpBlock(nn.Module):
    """Upsampling (transposed conv) followed by ConvBlock"""

    def __init__(self, in_channels1, in_channels2, out_channels, dropout_p):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels1, in_channels2, kernel_size=2, stride=2)
        self.conv = ConvBlock(in_channels2 * 2, out_channels, dropout_p)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class Encoder(nn.Module):
    def __init__(self, params):
        super().__init__()
        self.in_chns = params["in_chns"]
        self.ft_chns = params["feature_chns"]
        self.dropout = params["dropout"]
        assert len(self.ft_chns) == 5
        self.in_conv = ConvBlock(self.in_chns, self.ft_chns[0], self.dropout[0])
        self.down1 = DownBlock(self.ft_chns[0], self.ft_chns[1], self.dropout[1])
        self.down2 = DownBlock(self.ft_chns[1], self.ft_chns[2], self.dropout[2])
        self.down3 = DownBlock(self.ft_chns[2], self.ft_chns[3], self.dropout[3])
        self.down4 = DownBlock(self.ft_chns[3], self.ft_chns[4], self.dropout[4])

    def forward(self, x):
        x0 = self.in_conv(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        x4 = self.down4(x3)
        return [x0, x1, x2, x3, x4]


class Decoder(nn.Module):
    def __init__(self, params):
        super().__init__()
        self.ft_chns = params["feature_chns"]
        self.n_class = params["class_num"]
        assert len(self.ft_chns) == 5
        self.up1 = UpBlock(self.ft_chns[4], self.ft_chns[3], self.ft_chns[3], dropout_p=0.0)
        self.up2 = UpBlock(self.ft_chns[3], self.ft_chns[2], self.ft_chns[2], dropout_p=0.0)
        self.up3 = UpBlock(self.ft_chns[2], self.ft_chns[1], self.ft_chns[1], dropout_p=0.0)
        self.up4 = UpBlock(self.ft_chns[1], self.ft_chns[0], self.ft_chns[0], dropout_p=0.0)
        self.out_conv = nn.Conv2d(self.ft_chns[0], self.n_class, kernel_size=3, padding=1)

    def forward(self, feature):
        x0, x1, x2, x3, x4 = feature
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        x = self.up4(x, x0)
        return self.out_conv(x)


class UNet(nn.Module):
    def __init__(self, in_chns, class_num, feature_chns=(16, 32, 64, 128, 256)):
        super().__init__()
        params = {"in_chns": in_chns,
                  "feature_chns": list(feature_chns),
                  "dropout": [0.05, 0.1, 0.2, 0.3, 0.5],
                  "class_num": class_num,
                  "bilinear": False,
                  "acti_func": "relu"}
        self.encoder = Encoder(params)
        self.decoder = Decoder(params)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# SSL4MIS utils/losses.py DiceLoss (softmax already applied, one-hot target)
# ---------------------------------------------------------------------------
def dice_loss(probs, target, n_classes):
    """probs: (B,C,H,W) softmax; target: (B,H,W) int64. Background included."""
    smooth = 1e-5
    onehot = F.one_hot(target, n_classes).permute(0, 3, 1, 2).float()
    loss = 0.0
    for c in range(n_classes):
        score, t = probs[:, c], onehot[:, c]
        intersect = torch.sum(score * t)
        y_sum = torch.sum(t * t)
        z_sum = torch.sum(score * score)
        loss = loss + (1 - (2 * intersect + smooth) / (z_sum + y_sum + smooth))
    return loss / n_classes


def sup_loss(logits, labels, n_classes):
    ce = F.cross_entropy(logits, labels)  # mean over pixels
    dice = dice_loss(torch.softmax(logits, dim=1), labels, n_classes)
    return 0.5 * (ce + dice)


def main(a):
    # The figure docs/method.md fixes: guards against a drifting definition.
    ref = n_params(UNet(1, 4))
    assert ref == EXPECTED_PARAMS, f"U-Net has {ref} parameters, expected {EXPECTED_PARAMS}"

    torch.manual_seed(a.seed)
    model = UNet(a.in_chns, a.classes, a.features)
    x = torch.rand(a.batch, a.in_chns, a.patch, a.patch)
    y = torch.randint(0, a.classes, (a.batch, a.patch, a.patch), dtype=torch.int64)

    if a.mode == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                out = model(x)
            return out
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

        def step():
            opt.zero_grad()
            loss = sup_loss(model(x), y, a.classes)
            loss.backward()
            opt.step()
            return loss

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        out = step()
    elapsed = time.perf_counter() - t0
    if a.mode == "train" and not torch.isfinite(out):
        print(f"torch_peer: non-finite loss {out.item()}", file=sys.stderr)
        return 1

    spi = elapsed / a.iters
    img_per_s = a.batch / spi
    gflop_per_img = FWD_GFLOP_256 * (a.patch / 256.0) ** 2
    if a.mode == "train":
        gflop_per_img *= TRAIN_FACTOR
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rec = {
        "impl": "pytorch",
        "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc",
        "mode": a.mode,
        "batch": a.batch,
        "patch": a.patch,
        "threads": a.threads,
        "iters": a.iters,
        "seconds_per_iter": round(spi, 6),
        "img_per_s": round(img_per_s, 4),
        "gflops": round(img_per_s * gflop_per_img, 3),
        "peak_rss_mb": round(rss_kib / 1024.0, 1),
    }
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(args))
