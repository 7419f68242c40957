"""What three changes of the wavelet codec's transform and coder could save, measured before building them.

Each measures bits on images below ``--images`` (training images: never the evaluation folders),
at the quantiser step the compact gray model uses at a rate index (``--quality``; 4.5 is about
0.3 total nt/px on X-rays), without the coder's context: the zero-order entropy of the rounded
values, which is what the change moves first.  Each would change the DNA format; none is built.

``predict``
    A learned lifting step: a small network predicts a level's three detail subbands from the
    level's low band (the encoder subtracts the prediction, the decoder adds it back, as learned
    wavelets do).  Fitted on three images in four, measured on the fourth.
``directional``
    Directional lifting (Ding, Wu, Xu & Li 2007): the 9/7 wavelet's vertical lifting steps taken
    along one of 7 directions per block, the direction of least cost chosen per block; reported
    before and after the directions' own bits (log2 7 per block).
``signs``
    A context for the signs of the coded details: the signs of the left and upper neighbours in
    the block, of the parent and of the level's subbands coded before it (the coder spends one
    bit on a sign today).  The encoder's own symbols (``compact.Analysis.coded``); the tables
    fitted on the first half of the images, measured on the second.

    python -m dnaimg.bench.oracles --images MEDICAL/xray/train --out docs/results/oracles-xray.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dnaimg.zoo.liftfit import entropy_bits

DIRECTIONS = (-2, -1, -0.5, 0, 0.5, 1, 2)   # columns moved per row step (halves: the mean of two)


def model_step(model: str, quality: float, level: int) -> float:
    """The mean quantiser gain (values per orthonormal unit) of ``level``'s details at ``quality``."""
    from dnaimg.codecs import compact as cc
    m = cc.load(model)[0]
    with torch.no_grad():
        g = m.gains(quality)[0].view(-1)
    lo, hi = {1: (64, 256), 2: (16, 64), 3: (4, 16), 4: (1, 4)}[level]
    return float(g[lo:hi].mean())


def _gray_float(p: Path) -> torch.Tensor:
    from dnaimg.image import load_image
    from dnaimg.zoo.context import _gray
    a = torch.from_numpy(_gray(load_image(p)).astype(np.float64) / 255.0 - 0.5)
    H, W = a.shape
    return a[:H // 64 * 64, :W // 64 * 64]


def _low_band(a: torch.Tensor, level: int) -> torch.Tensor:
    from dnaimg.zoo.wavelet import dwt2
    for _ in range(level - 1):
        a = dwt2(a[None, None])[0][0, 0]
    return a


def _details(lh, hl, hh, level: int, gain: float) -> torch.Tensor:
    from dnaimg.zoo.wavelet import NORM_DETAIL
    n_d, n_hh = NORM_DETAIL[level - 1]
    return torch.stack([lh * n_d, hl * n_d, hh * n_hh], dim=-3) * gain


# -- a learned prediction of the details from the low band ----------------------------------------------

def predict(paths: list[Path], level: int, gain: float, steps: int = 1500, seed: int = 0) -> dict:
    from dnaimg.zoo.wavelet import dwt2
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = []
    for p in paths:
        a = _low_band(_gray_float(p), level).float()
        ll, lh, hl, hh = dwt2(a[None, None])
        data.append((ll[0], _details(lh[0, 0], hl[0, 0], hh[0, 0], level, gain)))
    test, fit = data[::4], [d for k, d in enumerate(data) if k % 4]
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 3, 3, padding=1))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    side = 128 >> (level - 1)
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(8):
            low, d = fit[rng.integers(len(fit))]
            H, W = low.shape[-2:]
            i, j = rng.integers(max(1, H - side)), rng.integers(max(1, W - side))
            xs.append(low[..., i:i + side, j:j + side])
            ys.append(d[..., i:i + side, j:j + side])
        s = min(x.shape[-2] for x in xs), min(x.shape[-1] for x in xs)
        x = torch.stack([t[..., :s[0], :s[1]] for t in xs])
        y = torch.stack([t[..., :s[0], :s[1]] for t in ys])
        loss = torch.log1p((y - net(x * 4)).abs()).mean()        # a rate-like, outlier-tolerant loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = after = 0.0
    with torch.no_grad():
        for low, d in test:
            before += entropy_bits(torch.round(d).numpy())
            after += entropy_bits(torch.round(d - net(low[None] * 4)[0]).numpy())
    return {"level": level, "test_images": len(test), "bits_before": round(before), "bits_after": round(after),
            "change_pct": round(100 * (after / before - 1), 2)}


# -- directional lifting --------------------------------------------------------------------------------

def _shift(a: torch.Tensor, k: float) -> torch.Tensor:
    """``a[..., n + k]`` along the last axis, the edges repeated; a half ``k``: the two neighbours' mean."""
    if k != int(k):
        lo = int(np.floor(k))
        return 0.5 * (_shift(a, lo) + _shift(a, lo + 1))
    k = int(k)
    if k == 0:
        return a
    if k > 0:
        return torch.cat([a[..., k:], a[..., -1:].expand(*a.shape[:-1], k)], -1)
    return torch.cat([a[..., :1].expand(*a.shape[:-1], -k), a[..., :k]], -1)


def _vnext(a):
    return torch.cat([a[..., 1:, :], a[..., -1:, :]], -2)


def _vprev(a):
    return torch.cat([a[..., :1, :], a[..., :-1, :]], -2)


def lift_vertical(x: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The 9/7 lifting along the rows' axis with every step along direction ``k`` (0: the wavelet's)."""
    from dnaimg.zoo.wavelet import ALPHA, BETA, DELTA, GAMMA, KAPPA
    s, d = x[..., 0::2, :], x[..., 1::2, :]
    d = d + ALPHA * (_shift(s, k) + _shift(_vnext(s), -k))
    s = s + BETA * (_shift(_vprev(d), k) + _shift(d, -k))
    d = d + GAMMA * (_shift(s, k) + _shift(_vnext(s), -k))
    s = s + DELTA * (_shift(_vprev(d), k) + _shift(d, -k))
    return s / KAPPA, d * KAPPA


def directional(paths: list[Path], level: int, gain: float, block: int) -> dict:
    from dnaimg.zoo.wavelet import lift_forward
    before = after = side = 0.0
    for p in paths:
        a = _low_band(_gray_float(p), level)
        qs = []
        for k in DIRECTIONS:
            lo, hi = lift_vertical(a, k)
            _, lh = lift_forward(lo)
            hl, hh = lift_forward(hi)
            qs.append(torch.round(_details(lh, hl, hh, level, gain)).numpy())
        Q = np.stack(qs)                                       # (directions, 3, h, w)
        _, _, h, w = Q.shape
        h, w = h // block * block, w // block * block
        Q = Q[..., :h, :w]
        cost = (np.log2(1 + np.abs(Q)) + 2 * (Q != 0)).sum(1)  # a bit proxy to choose by
        best = cost.reshape(len(DIRECTIONS), h // block, block, w // block, block).sum((2, 4)).argmin(0)
        pick = np.repeat(np.repeat(best, block, 0), block, 1)
        chosen = np.take_along_axis(Q, pick[None, None].repeat(3, 1), 0)[0]
        before += entropy_bits(Q[DIRECTIONS.index(0)])
        after += entropy_bits(chosen)
        side += best.size * np.log2(len(DIRECTIONS))
    return {"level": level, "block": block, "images": len(paths), "bits_before": round(before),
            "bits_after": round(after), "direction_bits": round(side),
            "change_pct": round(100 * (after / before - 1), 2),
            "change_with_directions_pct": round(100 * ((after + side) / before - 1), 2)}


# -- a context for the signs ----------------------------------------------------------------------------

def _subband(sym: np.ndarray, f: int, band: int) -> np.ndarray:
    from dnaimg.zoo.wavelet import channel_of
    _, h, w = sym.shape
    out = np.zeros((h * f, w * f), np.int64)
    for dy in range(f):
        for dx in range(f):
            out[dy::f, dx::f] = sym[channel_of(f, band, dy, dx)]
    return out


def sign_contexts(sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(context, sign > 0) of every nonzero detail of levels 1-3 of one plane's symbols (256, h, w):
    the signs (-, 0, +) of its left and upper neighbours in the block, of its parent and of the
    level's subbands coded before it, and its level and subband."""
    ctxs, signs = [], []
    for lvl, f in enumerate((8, 4, 2)):
        bands = [_subband(sym, f, b) for b in range(3)]
        for band in range(3):
            B = bands[band]
            P = np.repeat(np.repeat(_subband(sym, f // 2, band), 2, 0), 2, 1)
            yy, xx = np.mgrid[0:B.shape[0], 0:B.shape[1]]
            left = np.where(xx % f > 0, np.roll(B, 1, 1), 0)
            up = np.where(yy % f > 0, np.roll(B, 1, 0), 0)
            s1 = bands[0] if band > 0 else np.zeros_like(B)
            s2 = bands[1] if band > 1 else np.zeros_like(B)
            c = ((((np.sign(left) + 1) * 3 + np.sign(up) + 1) * 3 + np.sign(P) + 1) * 3 + np.sign(s1) + 1) * 3 + np.sign(s2) + 1
            m = B != 0
            ctxs.append(c[m] + 243 * (3 * lvl + band))
            signs.append((B[m] > 0).astype(np.int64))
    return np.concatenate(ctxs), np.concatenate(signs)


def signs(paths: list[Path], model: str, quality: float) -> dict:
    from dnaimg.codecs import compact as cc
    from dnaimg.image import load_image
    from dnaimg.zoo.context import _gray
    from dnaimg.zoo.exact import RATE_STEPS
    data, total_bits = [], []
    for p in paths:
        img = _gray(load_image(p)).astype(np.uint8)
        an = cc.Analysis(img, model)
        row = int(round(quality * RATE_STEPS))
        sym, idx, ctx, _ = an.coded(row)
        data.append(sign_contexts(sym[:256]))
        total_bits.append(float(cc.symbol_bits(sym, cc.used_tables(sym, idx, ctx), an.tables).sum()) + 8 * len(an.z_bytes))
    half = len(data) // 2
    n_ctx = 243 * 9
    c = np.concatenate([a for a, _ in data[:half]])
    s = np.concatenate([b for _, b in data[:half]])
    p1 = (np.bincount(c, weights=s, minlength=n_ctx) + 0.5) / (np.bincount(c, minlength=n_ctx) + 1.0)
    c = np.concatenate([a for a, _ in data[half:]])
    s = np.concatenate([b for _, b in data[half:]])
    bits = float(-np.log2(np.where(s == 1, p1[c], 1 - p1[c])).sum())
    return {"test_images": len(data) - half, "signs": int(s.size), "bits_per_sign": round(bits / max(1, s.size), 4),
            "saving_pct_of_all_bits": round(100 * (s.size - bits) / sum(total_bits[half:]), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dnaimg.bench.oracles", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="a folder of training images (never an evaluation folder)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--model", default="compact-gray-v9", help="the compact gray model whose steps and symbols are used")
    ap.add_argument("--quality", type=float, default=4.5, help="its rate index (default 4.5)")
    ap.add_argument("--limit", type=int, default=20, help="images used (evenly spaced, at least 64 px a side)")
    ap.add_argument("--only", choices=("predict", "directional", "signs"), action="append",
                    help="run only these (default all three)")
    ap.add_argument("--steps", type=int, default=1500, help="fitting steps of the prediction network")
    a = ap.parse_args(argv)
    from dnaimg.image import ImageError, load_image
    from dnaimg.image import DATA_SUFFIXES
    torch.set_num_threads(max(1, torch.get_num_threads()))
    paths = sorted(p for p in Path(a.images).rglob("*") if p.suffix.lower() in DATA_SUFFIXES)
    ok = []
    for p in paths:
        try:
            if min(load_image(p).shape[:2]) >= 256:
                ok.append(p)
        except ImageError:
            pass
    if len(ok) < 4:
        print(f"error: {len(ok)} usable images (at least 256 px a side) below {a.images}; 4 are needed", file=sys.stderr)
        return 2
    pick = [ok[i] for i in np.unique(np.linspace(0, len(ok) - 1, min(a.limit, len(ok))).round().astype(int))]
    only = a.only or ["predict", "directional", "signs"]
    out: dict = {"images": "/".join(Path(a.images).parts[-2:]), "count": len(pick), "model": a.model,
                 "quality": a.quality}
    for name in only:
        if name == "predict":
            out["predict"] = [predict(pick, lvl, model_step(a.model, a.quality, lvl), a.steps) for lvl in (1, 2)]
        elif name == "directional":
            out["directional"] = [directional(pick, lvl, model_step(a.model, a.quality, lvl), blk)
                                  for lvl, blk in ((1, 16), (2, 8), (3, 4))]
        else:
            out["signs"] = signs(pick, a.model, a.quality)
        print(json.dumps({name: out[name]}), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
