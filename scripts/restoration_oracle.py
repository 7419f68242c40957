#!/usr/bin/env python3
"""What a restoration filter fitted per image after the compact decoder's post-filter (as AV1's
loop restoration) could add, measured as an oracle before building it (README, the medical
section: +0.004 to +0.015 dB on three held-out training X-rays, so it was not built).

Each image is coded as ``dnaimg encode --codec compact --rate CAP --redundancy 0.15`` codes it;
for every gain the encoder fits (one per model family it tries), the decoder's float image
before its rounding, x = x0 + gain (x1 - x0) (x0: without the post-filter, x1: with it at gain
1), gets a point-symmetric (2k+1) x (2k+1) filter fitted by least squares to the original, on x
alone and on x and the post-filter's residual, its coefficients free (no bytes counted).  Prints
the PSNR of the rounded image and what each filter adds.  Never run it on evaluation images.

    python scripts/restoration_oracle.py [--cap 0.3] IMAGE [IMAGE ...]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from dnaimg import api
from dnaimg.codecs import compact
from dnaimg.image import load_pixels, psnr
from dnaimg.zoo.context import _gray


def symmetric_taps(x: np.ndarray, k: int) -> np.ndarray:
    """(pixels, taps) the image's (2k+1)^2 neighbourhoods, point-symmetric pairs summed."""
    H, W = x.shape
    p = np.pad(x, k, mode="edge")
    cols, seen = [], set()
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            key = min((dy, dx), (-dy, -dx))
            if key in seen:
                continue
            seen.add(key)
            f = p[k + dy:k + dy + H, k + dx:k + dx + W]
            if (dy, dx) != (0, 0):
                f = f + p[k - dy:k - dy + H, k - dx:k - dx + W]
            cols.append(f.ravel())
    return np.stack(cols, 1)


def rounded(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cap", type=float, default=0.3, help="total nt/px (default 0.3)")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args(argv)
    seen = []
    fit_gain = compact.fit_gain

    def recording(x0, x1, img):         # the encoder's own x0, x1 and the gain it fits
        b = fit_gain(x0, x1, img)
        seen.append((x0.copy(), x1.copy(), np.asarray(img, np.float64), b))
        return b
    compact.fit_gain = recording
    for path in a.images:
        img = _gray(load_pixels(path))      # (colour: its luma, as the gray models train on it)
        seen.clear()
        e = api.encode(img, "compact", rate=a.cap, redundancy=0.15)
        d = api.decode([s for _, s in e.fasta_records()], precision="fp32")
        print(f"{path}: {e.rates().get('model')}, {psnr(img, d.image):.3f} dB", flush=True)
        for x0, x1, t, b in seen:
            x = x0 + b / compact.GAIN_ONE * (x1 - x0)
            base = psnr(t, rounded(x))
            row = [f"  gain {b}: {base:.3f} dB"]
            for k in (1, 2, 3):
                for with_residual in (False, True):
                    F = symmetric_taps(x - 128, k)
                    if with_residual:
                        F = np.concatenate([F, symmetric_taps(x1 - x0, k)], 1)
                    F = np.concatenate([F, np.ones((F.shape[0], 1))], 1)
                    c, *_ = np.linalg.lstsq(F, (t - x).ravel(), rcond=None)
                    gain = psnr(t, rounded(x + (F @ c).reshape(x.shape))) - base
                    row.append(f"{2 * k + 1}x{2 * k + 1}{' +residual' if with_residual else ''} {gain:+.3f}")
            print(" | ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
