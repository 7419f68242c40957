"""Autoencoders on 128x128 microscopy crops, and what they give once written to DNA (issue 14, item 3).

The classic study of medical image compression (a convolutional autoencoder against a fully
connected autoencoder and a compression GAN on 128 x 128 fluorescence cell images, compared by
MSE) is rerun here at one latent size, 256 values per crop, for three models:

- ``fc``: a fully connected autoencoder, 16384 -> 512 -> 256 -> 512 -> 16384 (Adam, lr 1e-4;
  5e-4 left it worse than predicting each crop's mean);
- ``cae``: a convolutional autoencoder, latent 4 x 8 x 8 (downscale 16; Adam, lr 5e-4), then its
  decoder fine-tuned on MSE alone with the encoder frozen, for ``gan_steps`` steps;
- ``cae-gan``: the same CAE, its decoder fine-tuned from the same point on the same batches with
  MSE plus ``adv_weight`` x a non-saturating adversarial loss from a small spectrally normalised
  patch discriminator.  So ``cae`` and ``cae-gan`` share the encoder and latents and differ only
  by the adversarial term.

Training draws batches of 16 of the fixed train crops, randomly rotated by multiples of 90 degrees
and flipped; the learning rate falls 10x over the last 20 % of the steps.

Every latent is bounded by tanh and quantised uniformly to ``levels`` levels (straight-through
estimator in training, as :mod:`dnaimg.zoo.model`).  Metrics are on the decoded 8-bit crops: MSE
(8-bit grey levels squared, the mean over crops), PSNR (mean of per-crop PSNR at peak 255, and
the PSNR of the mean MSE), MS-SSIM (pytorch-msssim, 5 scales; a 7-pixel Gaussian window because
128-px crops are too small for the usual 11), on the train crops and the eval crops.  A
"cell-invention" check thresholds each crop at its source image's Otsu level and counts
foreground objects (>= 12 px) of the reconstruction that touch no foreground of the original
(invented), and original objects the reconstruction misses (lost).

The DNA step writes the quantised latents of all eval crops, one after the other, as one
``words`` stream (each value one ``codeword_nt``-nt constrained codeword) through dnaimg's
container (:func:`dnaimg.dna.container.write`: header oligos, primers, index), passes the oligos
through the simulated channel (:mod:`dnaimg.dna.channel`), reads the stream back with the
container (:func:`dnaimg.api.open_reads`, :func:`dnaimg.dna.container.read_streams`) and decodes
the crops.  Erased values take the centre level (CAE: the mean of their latent neighbours, as the
robust codec does).  The rate is every nucleotide synthesised over every pixel stored.  This DNA
is read back by this bench, not by ``dnaimg decode`` (it carries no codec of its own).

Images: 8-bit gray as is; RGB to gray by ITU-R 601 luma (Pillow's ``L``); 16-bit gray by
per-image min-max to 0..255 (``(x - min) * 255 / (max - min)``, rounded).  Crops: the
non-overlapping 128 x 128 grid from the top-left corner (partial crops at the right and bottom
edges dropped), crops whose standard deviation is under ``min_std`` grey levels (empty
background) skipped, and at most ``max_per_image`` kept per image, evenly spaced in grid order.

    python -m dnaimg.bench.microscopy_ae --train DIR --eval DIR --out docs/results/microscopy_ae  # -> .json, _grid.png
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time
from pathlib import Path

import numba as nb
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

CROP = 128
LATENT = 256                 # values per crop, every model
CAE_SHAPE = (4, 8, 8)
DEFAULT_LEVELS = 17          # odd: latent 0 is a level (the robust codec's convention); 4.09 bits a value
DEFAULT_CODEWORD_NT = 3      # 32 constrained 3-nt words hold 17 levels
BG_OBJECT_PX = 12            # smallest object counted by the cell-invention check


# ---------------------------------------------------------------------------------------------
# data

def load_gray8(path: str | Path) -> tuple[np.ndarray, str]:
    """An image file -> (HxW uint8, what was done to it)."""
    im = Image.open(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.int64)
        lo, hi = int(a.min()), int(a.max())
        g = np.rint((a - lo) * 255.0 / max(hi - lo, 1)).astype(np.uint8)
        return g, f"16-bit min-max {lo}..{hi} -> 0..255"
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8), "8-bit gray"
    return np.asarray(im.convert("RGB").convert("L"), dtype=np.uint8), f"{im.mode} -> luma"


def otsu(img: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit image (foreground: > threshold)."""
    h = np.bincount(img.reshape(-1), minlength=256).astype(np.float64)
    p = h / h.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (mu[-1] * w - mu) ** 2 / (w * (1 - w))
    s[~np.isfinite(s)] = -1
    return int(np.argmax(s))


def grid_crops(img: np.ndarray, max_per_image: int | None, min_std: float) -> list[tuple[int, int]]:
    """Top-left corners of the kept grid crops (see the module docstring)."""
    H, W = img.shape
    corners = [(y, x) for y in range(0, H - CROP + 1, CROP) for x in range(0, W - CROP + 1, CROP)
               if img[y:y + CROP, x:x + CROP].std() >= min_std]
    if max_per_image and len(corners) > max_per_image:
        idx = np.linspace(0, len(corners) - 1, max_per_image).round().astype(int)
        corners = [corners[i] for i in idx]
    return corners


def load_crops(folder: str | Path, max_per_image: int | None = 16, min_std: float = 2.0) -> dict:
    """Crops (N, 128, 128) uint8 of every PNG/TIFF/JPEG in ``folder``, their source, corner and the
    source image's Otsu threshold, and what was done per image."""
    files = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"))
    crops, src, corners, thr, notes = [], [], [], [], {}
    for f in files:
        g, note = load_gray8(f)
        notes[f.name] = note
        t = otsu(g)
        for (y, x) in grid_crops(g, max_per_image, min_std):
            crops.append(g[y:y + CROP, x:x + CROP])
            src.append(f.name)
            corners.append((y, x))
            thr.append(t)
    if not crops:
        raise ValueError(f"no {CROP}x{CROP} crop in {folder}")
    return {"crops": np.stack(crops), "source": src, "corner": corners, "otsu": np.array(thr), "notes": notes,
            "images": len(files)}


def to_t(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).float().div(255.0)[:, None]


# ---------------------------------------------------------------------------------------------
# models

def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def symbols_of(z: torch.Tensor, levels: int) -> torch.Tensor:
    """Latent in [-1, 1] -> symbols 0..levels-1 (:meth:`CompressiveAutoencoder.to_symbols`)."""
    return torch.floor((z + 1.0) * ((levels - 1) / 2.0) + 0.5).clamp_(0, levels - 1).to(torch.int64)


def values_of(s: torch.Tensor, levels: int) -> torch.Tensor:
    return s.to(torch.float32) * (2.0 / (levels - 1)) - 1.0


def quantise_ste(z: torch.Tensor, levels: int) -> torch.Tensor:
    q = 2.0 / (levels - 1)
    return z + (q * torch.floor(z / q + 0.5) - z).detach()


class FCAE(nn.Module):
    """Fully connected autoencoder: 16384 -> hidden -> 256 (tanh) -> hidden -> 16384."""
    latent_shape = (LATENT,)

    def __init__(self, hidden: int = 512):
        super().__init__()
        n = CROP * CROP
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), _act(), nn.Linear(hidden, LATENT))
        self.dec = nn.Sequential(nn.Linear(LATENT, hidden), _act(), nn.Linear(hidden, n))

    def encode(self, x):
        return torch.tanh(self.enc(x - 0.5))

    def decode(self, z):
        return self.dec(z).view(-1, 1, CROP, CROP) + 0.5


class ResBlock(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(w, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.leaky_relu(self.c1(x), 0.2))


class CAEDecoder(nn.Module):
    def __init__(self, c: int = CAE_SHAPE[0]):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c, 64, 3, padding=1), _act(), ResBlock(64),                 # 8
            nn.Conv2d(64, 64 * 4, 3, padding=1), nn.PixelShuffle(2), _act(), ResBlock(64),  # 16
            nn.Conv2d(64, 32 * 4, 3, padding=1), nn.PixelShuffle(2), _act(),     # 32
            nn.Conv2d(32, 32 * 4, 3, padding=1), nn.PixelShuffle(2), _act(),     # 64
            nn.Conv2d(32, 16, 3, padding=1), _act(),
            nn.Conv2d(16, 4, 3, padding=1), nn.PixelShuffle(2),                  # 128
        )

    def forward(self, z):
        return self.net(z) + 0.5


class CAE(nn.Module):
    """Convolutional autoencoder: 128 x 128 x 1 -> 4 x 8 x 8 (tanh) -> 128 x 128 x 1."""
    latent_shape = CAE_SHAPE

    def __init__(self):
        super().__init__()
        c = CAE_SHAPE[0]
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 5, stride=2, padding=2), _act(),                   # 64
            nn.Conv2d(32, 64, 5, stride=2, padding=2), _act(),                  # 32
            nn.Conv2d(64, 64, 3, stride=2, padding=1), _act(), ResBlock(64),    # 16
            nn.Conv2d(64, 64, 3, stride=2, padding=1), _act(), ResBlock(64),    # 8
            nn.Conv2d(64, c, 3, padding=1),
        )
        self.dec = CAEDecoder(c)

    def encode(self, x):
        return torch.tanh(self.enc(x - 0.5))

    def decode(self, z):
        return self.dec(z)


class PatchD(nn.Module):
    """A small patch discriminator: 128 x 128 -> 15 x 15 logits (spectrally normalised, or plain)."""

    def __init__(self, spectral: bool = True):
        super().__init__()
        sn = nn.utils.spectral_norm if spectral else (lambda m: m)
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, 32, 4, stride=2, padding=1)), _act(),
            sn(nn.Conv2d(32, 64, 4, stride=2, padding=1)), _act(),
            sn(nn.Conv2d(64, 128, 4, stride=2, padding=1)), _act(),
            sn(nn.Conv2d(128, 1, 4, padding=1)),
        )

    def forward(self, x):
        return self.net(x - 0.5)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(4, (1,), generator=g))
    x = torch.rot90(x, k, dims=(2, 3))
    if int(torch.randint(2, (1,), generator=g)):
        x = x.flip(3)
    return x


def _lr(step: int, steps: int, lr: float) -> float:
    """Constant, then down by 10x over the last 20 %."""
    t = step / max(steps, 1)
    return lr if t < 0.8 else lr * 0.1 ** ((t - 0.8) / 0.2)


def train_ae(model: nn.Module, crops: np.ndarray, steps: int, levels: int, batch: int = 16, lr: float = 1e-3,
             seed: int = 0, log=None) -> dict:
    """MSE training with the quantiser in the loop (straight-through)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    data = to_t(crops)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0, hist = time.time(), []
    for step in range(steps):
        for pg in opt.param_groups:
            pg["lr"] = _lr(step, steps, lr)
        x = _augment(data[torch.randint(len(data), (batch,), generator=g)], g)
        y = model.decode(quantise_ste(model.encode(x), levels))
        loss = F.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append(float(loss.detach()))
        if log and (step + 1) % max(1, steps // 10) == 0:
            log(f"  step {step + 1}/{steps}  mse {np.mean(hist[-50:]):.5f}  ({time.time() - t0:.0f} s)")
    model.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "seconds": round(time.time() - t0, 1),
            "final_train_mse01": float(np.mean(hist[-50:])) if hist else None}


def train_gan_decoder(cae: CAE, crops: np.ndarray, steps: int, levels: int, adv_weight: float = 1e-3,
                      batch: int = 16, lr: float = 1e-4, seed: int = 0, log=None, spectral: bool = True,
                      d_lr: float | None = None) -> tuple[CAEDecoder, dict]:
    """The CAE's decoder fine-tuned on MSE + ``adv_weight`` x non-saturating GAN loss against a
    patch discriminator (spectrally normalised unless ``spectral`` is False; learning rate ``d_lr``,
    default 2 x ``lr``); the encoder is frozen (same latents as the CAE)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    data = to_t(crops)
    dec = copy.deepcopy(cae.dec)
    disc = PatchD(spectral)
    d_lr = 2 * lr if d_lr is None else d_lr
    opt_g = torch.optim.Adam(dec.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=d_lr, betas=(0.5, 0.9))
    dec.train()
    t0, hist = time.time(), []
    zero = torch.zeros(())
    for step in range(steps):
        x = _augment(data[torch.randint(len(data), (batch,), generator=g)], g)
        with torch.no_grad():
            zq = values_of(symbols_of(cae.encode(x), levels), levels)
        y = dec(zq)
        mse = F.mse_loss(y, x)
        if adv_weight > 0:
            # discriminator
            d_real, d_fake = disc(x), disc(y.detach())
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            adv = F.softplus(-disc(y)).mean()          # generator (decoder): non-saturating
        else:                                           # the control: the same fine-tuning on MSE alone
            loss_d = adv = zero
        loss = mse + adv_weight * adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        hist.append((float(mse.detach()), float(adv.detach()), float(loss_d.detach())))
        if log and (step + 1) % max(1, steps // 10) == 0:
            m = np.mean(hist[-50:], axis=0)
            log(f"  step {step + 1}/{steps}  mse {m[0]:.5f}  adv {m[1]:.3f}  D {m[2]:.3f}  ({time.time() - t0:.0f} s)")
    dec.eval()
    m = np.mean(hist[-50:], axis=0) if hist else [None] * 3
    return dec, {"steps": steps, "batch": batch, "lr": lr, "adv_weight": adv_weight, "encoder": "frozen (the CAE's)",
                 "discriminator": ("spectral norm" if spectral else "plain") + f", lr {d_lr:g}",
                 "init": "the CAE's decoder", "seconds": round(time.time() - t0, 1),
                 "final_train_mse01": float(m[0]) if hist else None, "final_adv": float(m[1]) if hist else None,
                 "final_d_loss": float(m[2]) if hist else None}


# ---------------------------------------------------------------------------------------------
# coding and metrics

@torch.no_grad()
def encode_symbols(model: nn.Module, crops: np.ndarray, levels: int, batch: int = 64) -> np.ndarray:
    """Crops -> (N, 256) int64 symbols (CAE: the 4 x 8 x 8 latent in C order)."""
    out = [symbols_of(model.encode(to_t(crops[i:i + batch])), levels).reshape(-1, LATENT)
           for i in range(0, len(crops), batch)]
    return torch.cat(out).numpy()


@torch.no_grad()
def decode_symbols(decoder, latent_shape: tuple, symbols: np.ndarray, levels: int, batch: int = 64) -> np.ndarray:
    """(N, 256) symbols -> (N, 128, 128) uint8 crops."""
    outs = []
    for i in range(0, len(symbols), batch):
        z = values_of(torch.from_numpy(symbols[i:i + batch]), levels).view(-1, *latent_shape)
        y = decoder(z).clamp(0, 1).mul(255.0).add(0.5).to(torch.uint8)[:, 0]
        outs.append(y.numpy())
    return np.concatenate(outs)


def ms_ssim_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-crop MS-SSIM of two (N, 128, 128) uint8 stacks."""
    from pytorch_msssim import ms_ssim
    out = []
    for i in range(0, len(a), 64):
        out.append(ms_ssim(to_t(a[i:i + 64]), to_t(b[i:i + 64]), data_range=1.0, size_average=False, win_size=7))
    return torch.cat(out).numpy().astype(np.float64)


@nb.njit(cache=True)
def _label(mask):
    """4-connected components of a 2-D bool mask: (labels, count); labels 1..count, 0 background."""
    H, W = mask.shape
    lab = np.zeros((H, W), dtype=np.int32)
    stack = np.empty((H * W, 2), dtype=np.int32)
    n = 0
    for y0 in range(H):
        for x0 in range(W):
            if mask[y0, x0] and lab[y0, x0] == 0:
                n += 1
                lab[y0, x0] = n
                sp = 0
                stack[0, 0], stack[0, 1] = y0, x0
                sp = 1
                while sp > 0:
                    sp -= 1
                    y, x = stack[sp, 0], stack[sp, 1]
                    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and lab[yy, xx] == 0:
                            lab[yy, xx] = n
                            stack[sp, 0], stack[sp, 1] = yy, xx
                            sp += 1
    return lab, n


def _objects(mask: np.ndarray, other: np.ndarray, min_px: int) -> int:
    """Objects of ``mask`` of at least ``min_px`` pixels that touch no pixel of ``other``."""
    lab, n = _label(mask)
    if n == 0:
        return 0
    size = np.bincount(lab.reshape(-1), minlength=n + 1)
    hit = np.bincount(lab[other].reshape(-1), minlength=n + 1)
    return int(((size >= min_px) & (hit == 0))[1:].sum())


def invention(orig: np.ndarray, rec: np.ndarray, thr: np.ndarray, min_px: int = BG_OBJECT_PX) -> dict:
    """Foreground (> the source image's Otsu threshold) objects the reconstruction invents / loses,
    and the fraction of the original's background pixels it makes foreground."""
    inv = lost = 0
    fp = bg = 0
    for o, r, t in zip(orig, rec, thr):
        mo, mr = o > t, r > t
        inv += _objects(mr, mo, min_px)
        lost += _objects(mo, mr, min_px)
        fp += int((mr & ~mo).sum())
        bg += int((~mo).sum())
    n = len(orig)
    return {"invented_objects_per_crop": inv / n, "lost_objects_per_crop": lost / n,
            "false_foreground_fraction": fp / max(bg, 1)}


def metrics(orig: np.ndarray, rec: np.ndarray, thr: np.ndarray | None = None) -> dict:
    d = orig.astype(np.float64) - rec.astype(np.float64)
    mse = (d ** 2).reshape(len(orig), -1).mean(axis=1)
    psnr = 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))
    m = float(mse.mean())
    out = {"crops": int(len(orig)), "mse": m, "psnr_db": float(psnr.mean()),
           "psnr_of_mean_mse_db": float(10 * np.log10(255.0 ** 2 / max(m, 1e-10))),
           "ms_ssim": float(ms_ssim_batch(orig, rec).mean())}
    if thr is not None:
        out.update(invention(orig, rec, thr))
    return out


# ---------------------------------------------------------------------------------------------
# DNA

def dna_store(symbols: np.ndarray, levels: int, codeword_nt: int, layout=None):
    """(N, 256) symbols -> the container's Written (one words stream of all crops, no outer code)."""
    from dnaimg.codecs import CODEC_IDS
    from dnaimg.dna import container
    from dnaimg.dna.streams import Encoded, Stream
    enc = Encoded("robust", [Stream("words", np.asarray(symbols, dtype=np.int64).reshape(-1), codeword_nt, levels)],
                  b"", {"bench": "microscopy_ae"})
    return container.write(enc, CODEC_IDS["robust"], layout or container.Layout(), redundancy=0.0)


def single_crop_total_nt(levels: int, codeword_nt: int) -> int:
    """Everything synthesised for one crop stored on its own (its own header oligos)."""
    from dnaimg.dna import container
    from dnaimg.dna.streams import Encoded, Stream
    enc = Encoded("robust", [Stream("words", np.zeros(LATENT, dtype=np.int64), codeword_nt, levels)], b"")
    lay = container.Layout()
    return container.total_oligos(lay, enc, 0.0) * lay.oligo_length


def dna_read(reads, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reads -> (symbols (N, 256) with -1 where erased, erased mask, the container's report)."""
    from dnaimg import api
    from dnaimg.dna import container
    lay, sorter, headers, why, per_tag = api.open_reads(reads)
    if not headers:
        raise ValueError(f"no header decoded: {why}")
    tag = max(headers, key=lambda t: per_tag[t])
    rec = container.read_streams(sorter, headers[tag], lay)[0]
    vals = np.asarray(rec.data, dtype=np.int64).reshape(shape)
    return vals, np.asarray(rec.erased).reshape(shape), rec.report


def fill(symbols: np.ndarray, erased: np.ndarray, levels: int, spatial: bool) -> np.ndarray:
    centre = (levels - 1) // 2
    out = np.where(erased, centre, symbols)
    if spatial and erased.any():
        from dnaimg.codecs.robust import fill_erasures
        for i in np.flatnonzero(erased.any(axis=1)):
            out[i] = fill_erasures(out[i].reshape(CAE_SHAPE), erased[i].reshape(CAE_SHAPE), centre).reshape(-1)
    return out


def channels(names: list[str]):
    """Channel names -> (label, Channel or None for perfect reads).  ``perfect``: one error-free read
    per oligo; ``nextseq5``: the NextSeq preset at a mean 5 reads per oligo; ``paperS``: one read per
    oligo with S % substitutions (Pic & Antonini's setting)."""
    from dnaimg.dna.channel import Channel, preset
    out = []
    for n in names:
        if n == "perfect":
            out.append((n, Channel(coverage=1, sigma=0.0, exact_coverage=True, description="one exact read per oligo")))
        elif n.startswith("nextseq"):
            out.append((n, preset("nextseq", coverage=float(n[7:] or 5))))
        elif n.startswith("miseq"):
            out.append((n, preset("miseq", coverage=float(n[5:] or 5))))
        elif n.startswith("paper"):
            out.append((n, preset("paper", sub=float(n[5:] or 1) / 100)))
        else:
            raise ValueError(f"unknown channel {n!r}")
    return out


# ---------------------------------------------------------------------------------------------
# the bench

def _grid_png(path: Path, rows: list[np.ndarray], labels: list[str]) -> None:
    """Rows of crops side by side; each row contrast-stretched by its original's 0.5-99.5
    percentiles (the same mapping for every column of the row), 2 px white gaps."""
    gap = 2
    tiles = []
    for row in rows:
        lo, hi = np.percentile(row[0], [0.5, 99.5])
        hi = max(hi, lo + 1)
        st = [np.clip((c.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8) for c in row]
        line = np.full((CROP, len(st) * (CROP + gap) - gap), 255, np.uint8)
        for k, c in enumerate(st):
            line[:, k * (CROP + gap): k * (CROP + gap) + CROP] = c
        tiles.append(line)
    canvas = np.full((len(tiles) * (CROP + gap) - gap, tiles[0].shape[1]), 255, np.uint8)
    for k, t in enumerate(tiles):
        canvas[k * (CROP + gap): k * (CROP + gap) + CROP] = t
    Image.fromarray(canvas).save(path)
    

def pick_grid_crops(ev: dict, k: int = 6) -> list[int]:
    """A few eval crops for the picture: per source folder family, the crop with the most
    background next to foreground (Otsu-foreground fraction nearest 25 %), and the densest one."""
    crops, thr, src = ev["crops"], ev["otsu"], ev["source"]
    fg = np.array([(c > t).mean() for c, t in zip(crops, thr)])
    fams = sorted({s.split("_")[0] for s in src})
    pick: list[int] = []
    for f in fams:
        idx = [i for i, s in enumerate(src) if s.split("_")[0] == f]
        pick.append(min(idx, key=lambda i: abs(fg[i] - 0.25)))
        dense = max(idx, key=lambda i: fg[i])
        if dense not in pick:
            pick.append(dense)
    return pick[:k]


def run(train_dir, eval_dir, out, steps: int = 1000, gan_steps: int | None = None, fc_steps: int | None = None,
        levels: int = DEFAULT_LEVELS, codeword_nt: int = DEFAULT_CODEWORD_NT, adv_weight: float = 1e-3,
        max_per_image: int | None = 16, min_std: float = 2.0, channel_names=("perfect", "nextseq5", "paper1", "paper3"),
        seed: int = 0, threads: int = 1, weights: str | Path | None = None, strong_adv_weight: float = 0.0,
        init_weights: str | Path | None = None, log=print) -> dict:
    """Train, measure, write ``OUT.json`` and ``OUT_grid.png`` (``out`` is a path prefix, e.g.
    ``docs/results/microscopy_ae``) and, with ``weights``, the models' weights there.

    ``strong_adv_weight`` > 0 adds a fourth model, ``cae-gan-strong``: the same fine-tuning with that
    adversarial weight against a plain (not spectrally normalised) discriminator at 4x the decoder's
    learning rate.  ``init_weights``: a weights file of an earlier run with the same settings; the
    models it holds are taken from it instead of trained again (the training record with them)."""
    torch.set_num_threads(threads)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tr = load_crops(train_dir, max_per_image, min_std)
    ev = load_crops(eval_dir, max_per_image, min_std)
    log(f"train: {len(tr['crops'])} crops of {tr['images']} images; eval: {len(ev['crops'])} crops of {ev['images']} images")
    gan_steps = int(round(0.3 * steps)) if gan_steps is None else gan_steps
    fc_steps = steps if fc_steps is None else fc_steps

    torch.manual_seed(seed)
    fc, cae = FCAE(), CAE()
    cdec, gdec, sdec = CAEDecoder(), CAEDecoder(), CAEDecoder()
    ck = torch.load(init_weights, weights_only=False) if init_weights else {}
    tinfo = dict(ck.get("training", {}))
    if "fc" in ck:
        fc.load_state_dict(ck["fc"])
        log(f"fc: from {init_weights}")
    else:
        log(f"fc: {sum(p.numel() for p in fc.parameters()):,} parameters")
        tinfo["fc"] = train_ae(fc, tr["crops"], fc_steps, levels, lr=1e-4, seed=seed, log=log)
    if "cae" in ck and "cae_decoder" in ck:
        cae.load_state_dict(ck["cae"])
        cdec.load_state_dict(ck["cae_decoder"])
        log(f"cae: from {init_weights}")
    else:
        log(f"cae: {sum(p.numel() for p in cae.parameters()):,} parameters")
        tinfo["cae"] = train_ae(cae, tr["crops"], steps, levels, lr=5e-4, seed=seed, log=log)
        # the CAE's decoder is fine-tuned from the same point, on the same batches: on MSE alone (the
        # "cae" row) and on MSE + the adversarial loss ("cae-gan"), so they differ only by that loss
        log("cae: decoder fine-tuned on MSE alone (the control)")
        cdec, tinfo["cae"]["decoder_finetune"] = train_gan_decoder(cae, tr["crops"], gan_steps, levels, 0.0,
                                                                   seed=seed, log=log)
    cae.eval()
    if "cae_gan_decoder" in ck:
        gdec.load_state_dict(ck["cae_gan_decoder"])
        log(f"cae-gan: from {init_weights}")
    else:
        log("cae-gan: decoder fine-tuned with the adversarial loss")
        gdec, tinfo["cae-gan"] = train_gan_decoder(cae, tr["crops"], gan_steps, levels, adv_weight, seed=seed, log=log)
    if strong_adv_weight > 0:
        if "cae_gan_strong_decoder" in ck:
            sdec.load_state_dict(ck["cae_gan_strong_decoder"])
            log(f"cae-gan-strong: from {init_weights}")
        else:
            log("cae-gan-strong: decoder fine-tuned with a stronger adversarial loss")
            sdec, tinfo["cae-gan-strong"] = train_gan_decoder(cae, tr["crops"], gan_steps, levels, strong_adv_weight,
                                                              seed=seed, log=log, spectral=False, d_lr=4e-4)
    if weights:
        Path(weights).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"fc": fc.state_dict(), "cae": cae.state_dict(), "cae_decoder": cdec.state_dict(),
                    "cae_gan_decoder": gdec.state_dict(), "levels": levels, "training": tinfo,
                    **({"cae_gan_strong_decoder": sdec.state_dict()} if strong_adv_weight > 0 else {})}, weights)
    for m in (fc, cdec, gdec, sdec):
        m.eval()

    systems = {"fc": (fc, fc.decode, FCAE.latent_shape), "cae": (cae, cdec, CAE_SHAPE),
               "cae-gan": (cae, gdec, CAE_SHAPE)}
    if strong_adv_weight > 0:
        systems["cae-gan-strong"] = (cae, sdec, CAE_SHAPE)
    n_enc = sum(p.numel() for p in cae.enc.parameters())
    nparams = {k: (sum(p.numel() for p in fc.parameters()) if k == "fc" else
                   n_enc + sum(p.numel() for p in systems[k][1].parameters())) for k in systems}
    res = {"config": {"crop": CROP, "latent_values": LATENT, "levels": levels, "codeword_nt": codeword_nt,
                      "bits_per_value": math.log2(levels), "max_crops_per_image": max_per_image,
                      "min_crop_std": min_std, "steps": {k: v.get("steps") for k, v in tinfo.items()},
                      "adv_weight": adv_weight, "strong_adv_weight": strong_adv_weight, "seed": seed, "torch_threads": threads,
                      "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
           "data": {"train_crops": int(len(tr["crops"])), "train_images": tr["images"],
                    "eval_crops": int(len(ev["crops"])), "eval_images": ev["images"],
                    "eval_conversions": sorted(set(ev["notes"].values())),
                    "train_conversions": sorted(set(tr["notes"].values()))},
           "training": tinfo, "models": {}}
    recon = {}
    for name, (model, decoder, shape) in systems.items():
        row = {"parameters": int(nparams[name]), "latent_shape": list(shape)}
        for split, d in (("train", tr), ("eval", ev)):
            s = encode_symbols(model, d["crops"], levels)
            r = decode_symbols(decoder, shape, s, levels)
            row[split] = metrics(d["crops"], r, d["otsu"])
            if split == "eval":
                recon[name], sym_eval = r, s
        # DNA
        wr = dna_store(sym_eval, levels, codeword_nt)
        pixels = len(ev["crops"]) * CROP * CROP
        rates = wr.rates(pixels)
        row["dna"] = {"oligos": rates["oligos"], "header_oligos": rates["header_oligos"],
                      "total_nt_per_pixel": rates["total_nt_per_pixel"],
                      "payload_nt_per_pixel": rates["payload_nt_per_pixel"],
                      "single_crop_total_nt_per_pixel": single_crop_total_nt(levels, codeword_nt) / (CROP * CROP),
                      "channels": {}}
        from dnaimg.dna.channel import simulate
        for label, ch in channels(list(channel_names)):
            reads, _, _ = simulate(list(wr.oligos), ch, seed=seed)
            got, erased, rep = dna_read(reads, sym_eval.shape)
            filled = fill(got, erased, levels, spatial=(shape == CAE_SHAPE))
            r = decode_symbols(decoder, shape, filled, levels)
            m = metrics(ev["crops"], r)
            m.update({"values_wrong": int((filled != sym_eval).sum()), "values_erased": int(erased.sum()),
                      "latent_exact": bool(rep.get("exact", False)) and bool((filled == sym_eval).all()),
                      "reads": len(reads), "description": ch.description})
            row["dna"]["channels"][label] = m
            log(f"  {name} {label}: {m['psnr_db']:.2f} dB  ({m['values_wrong']} values wrong)")
        res["models"][name] = row
        log(f"{name}: train {row['train']['psnr_db']:.2f} dB / eval {row['eval']['psnr_db']:.2f} dB, "
            f"MS-SSIM {row['eval']['ms_ssim']:.4f}, {rates['total_nt_per_pixel']:.4f} nt/px")
    pick = pick_grid_crops(ev)
    grid = out.with_name(out.name + "_grid.png")
    res["grid"] = {"file": grid.name, "columns": ["original", *systems],
                   "crops": [{"source": ev["source"][i], "corner": list(ev["corner"][i])} for i in pick]}
    _grid_png(grid, [[ev["crops"][i], *(recon[k][i] for k in systems)] for i in pick], res["grid"]["columns"])
    out.with_name(out.name + ".json").write_text(json.dumps(res, indent=1))
    return res


def table(res: dict) -> str:
    """The README table (markdown)."""
    chans = list(next(iter(res["models"].values()))["dna"]["channels"])
    head = ("| model | latent | train MSE | train PSNR | train MS-SSIM | eval MSE | eval PSNR | eval MS-SSIM | "
            + " | ".join(f"eval PSNR after DNA, {c}" for c in chans) + " | total nt/px |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, m in res["models"].items():
        t, e, d = m["train"], m["eval"], m["dna"]
        lat = "x".join(map(str, m["latent_shape"]))
        lines.append(f"| {name} | {lat} | {t['mse']:.1f} | {t['psnr_db']:.2f} | {t['ms_ssim']:.4f} | {e['mse']:.1f} | "
                     f"{e['psnr_db']:.2f} | {e['ms_ssim']:.4f} | "
                     + " | ".join(f"{d['channels'][c]['psnr_db']:.2f}" for c in chans)
                     + f" | {d['total_nt_per_pixel']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dnaimg.bench.microscopy_ae", description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="folder of training images")
    p.add_argument("--eval", required=True, help="folder of evaluation images (never trained on)")
    p.add_argument("--out", required=True, help="output path prefix: writes OUT.json and OUT_grid.png")
    p.add_argument("--weights", default=None, help="also save the three models' weights here (e.g. runs/microscopy_ae.pt)")
    p.add_argument("--steps", type=int, default=1000, help="training steps of the FC AE and the CAE")
    p.add_argument("--fc-steps", type=int, default=None, help="FC AE steps (default --steps)")
    p.add_argument("--gan-steps", type=int, default=None, help="decoder fine-tuning steps, with and without the GAN loss (default 0.3 x --steps)")
    p.add_argument("--levels", type=int, default=DEFAULT_LEVELS)
    p.add_argument("--codeword-nt", type=int, default=DEFAULT_CODEWORD_NT)
    p.add_argument("--adv-weight", type=float, default=1e-3, help="cae-gan's adversarial weight")
    p.add_argument("--strong-adv-weight", type=float, default=0.0,
                   help="> 0: a fourth model, cae-gan-strong, with this adversarial weight against a plain "
                        "discriminator (e.g. 1e-2); 0 (default): none")
    p.add_argument("--init-weights", default=None,
                   help="take the models this weights file holds (an earlier run's --weights) instead of training them")
    p.add_argument("--max-per-image", type=int, default=16)
    p.add_argument("--channels", default="perfect,nextseq5,paper1,paper3")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a few minutes' run: 200 steps, 4 crops per image")
    a = p.parse_args(argv)
    steps, mpi = a.steps, a.max_per_image
    if a.quick:
        steps, mpi = min(steps, 200), min(mpi, 4)
    res = run(a.train, a.eval, a.out, steps=steps, fc_steps=a.fc_steps, gan_steps=a.gan_steps, levels=a.levels,
              codeword_nt=a.codeword_nt, adv_weight=a.adv_weight, max_per_image=mpi,
              channel_names=a.channels.split(","), seed=a.seed, threads=a.threads, weights=a.weights,
              strong_adv_weight=a.strong_adv_weight, init_weights=a.init_weights)
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
