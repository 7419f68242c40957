"""Fit learned lifting steps for a wavelet model (nothing else retrained).

The wavelet models code JPEG 2000's 9/7 wavelet.  Its details still hold what the low band of
their level could tell (an edge's continuation, a rib's border): a learned lifting step, as
learned wavelets add to the 9/7's, predicts each of the finest levels' three detail subbands
from the level's low band with a small network (:class:`dnaimg.zoo.wavelet.LiftPredictor`); the
analysis subtracts the prediction made from the unquantised low band and the synthesis adds it
back from the decoded one, so the transform stays exactly invertible and the coder codes what
was not predicted.  The encoder's refinement of the symbols (which runs the real synthesis) takes
up the difference between the two predictions.

This module takes a model's training images, splits each into its wavelet levels and fits one
predictor per level to the details, measured in the model's quantiser steps at one rate index,
with ``log(1 + |error|)`` as the rate's stand-in (robust to the rare large detail).  The result
is a model that extends the base's own base, with everything of the base (context, tables,
hyper-latent context, post-filter) and its own predictors (FORMAT.md 12.3; its card's
``architecture.predict`` gives their number, ``predict_layers``/``predict_width`` their size).

    python -m dnaimg.zoo.liftfit --base compact-gray-v10 --name NAME --data MEDICAL/xray/train
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

LEVELS = 2              # the finest levels predicted
STEPS = 1500
BATCH = 8
CROP = 128              # at level 1 (half of it at level 2)
LR = 1e-3
QUALITY = 4.5           # the rate index whose quantiser steps measure the details (about 0.3 nt/px on X-rays)
MAX_IMAGES = 240


def entropy_bits(q: np.ndarray) -> float:
    """Zero-order entropy of the integers ``q``, in bits for all of them."""
    _, c = np.unique(q, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum() * q.size)


def level_pairs(img: np.ndarray, levels: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per level 1 .. ``levels`` of a gray image (H, W) uint8: (low band (1, h, w), its three
    details (3, h, w) in orthonormal units, as the analysis makes them before any prediction)."""
    from dnaimg.zoo.wavelet import NORM_DETAIL, dwt2
    a = torch.from_numpy(img.astype(np.float32) / 255.0 - 0.5)
    H, W = a.shape
    a = a[:H // 64 * 64, :W // 64 * 64][None, None]
    out = []
    for lvl in range(levels):
        a, lh, hl, hh = dwt2(a)
        n_d, n_hh = NORM_DETAIL[lvl]
        out.append((a[0].clone(), torch.cat([lh * n_d, hl * n_d, hh * n_hh], 1)[0]))
    return out


def fit_level(pred: torch.nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], gain: float, crop: int,
              steps: int = STEPS, seed: int = 0, progress=None) -> torch.nn.Module:
    """``pred`` fitted to predict the details of ``pairs`` from their low bands, in steps of
    1/``gain`` (trained on details times ``gain``; its last layer divided by ``gain`` at the end)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pred = copy.deepcopy(pred).float().train()
    opt = torch.optim.Adam(pred.parameters(), LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for s in range(1, steps + 1):
        xs, ys = [], []
        for _ in range(BATCH):
            low, d = pairs[rng.integers(len(pairs))]
            h, w = low.shape[-2:]
            i, j = rng.integers(max(1, h - crop + 1)), rng.integers(max(1, w - crop + 1))
            xs.append(low[..., i:i + crop, j:j + crop])
            ys.append(d[..., i:i + crop, j:j + crop] * gain)
        hh, ww = min(x.shape[-2] for x in xs), min(x.shape[-1] for x in xs)
        x = torch.stack([t[..., :hh, :ww] for t in xs])
        y = torch.stack([t[..., :hh, :ww] for t in ys])
        loss = torch.log1p((y - pred(x)[:, 0]).abs()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(s, steps)
    with torch.no_grad():
        pred.net[-1].weight /= gain
        pred.net[-1].bias /= gain
    return pred.eval()


def bits_change(pred: torch.nn.Module | None, pairs, gain: float) -> float:
    """Zero-order bits of ``pairs``' details rounded at steps of 1/``gain``: with ``pred``'s
    prediction taken off (None: without), summed over the images."""
    total = 0.0
    with torch.no_grad():
        for low, d in pairs:
            r = d if pred is None else d - pred(low[None])[0, 0]
            total += entropy_bits(torch.round(r * gain).numpy())
    return total


def build(base: str, name: str, data: list[str], levels: int = LEVELS, holdout: int = 4, out_dir: Path | None = None,
          command: str = "", steps: int = STEPS, width: int | None = None, layers: int | None = None,
          quality: float = QUALITY, max_images: int = MAX_IMAGES) -> dict:
    from safetensors.torch import load_file, save_file

    from dnaimg.codecs import compact as cc
    from dnaimg.zoo.context import _gray, derived_card, fit_record, new_model_dir, write_card
    from dnaimg.zoo.registry import card as card_of, models_dir
    from dnaimg.zoo.train import load_training_images
    from dnaimg.zoo.wavelet import LEVELS as W_LEVELS, PREDICT_LAYERS, PREDICT_WIDTH, LiftPredictor
    t0 = time.time()
    out = new_model_dir(out_dir, name)
    model, tables, bcard = cc.load(base)
    if model.cfg.transform != "cdf97" or tables.ctx is None or not model.cfg.gray:
        raise ValueError(f"{base}: a one-plane wavelet model with a coder context is needed")
    if model.cfg.predict:
        raise ValueError(f"{base} has lifting predictors already")
    root = bcard.get("extends")
    if root is None or "extends" in card_of(root):
        raise ValueError(f"{base} must extend a base model (as the context models do)")
    if not 1 <= levels < W_LEVELS:
        raise ValueError(f"--levels {levels}: 1 to {W_LEVELS - 1}")
    width = PREDICT_WIDTH if width is None else width
    layers = PREDICT_LAYERS if layers is None else layers
    start = LiftPredictor(width, layers)                # (checks the size before any work)
    imgs = [_gray(a) for a in load_training_images(data, 64, downscale=False)]
    if len(imgs) < 2:
        raise ValueError(f"{len(imgs)} training image(s): at least 2 are needed (one in {holdout} is held out)")
    pick = np.unique(np.linspace(0, len(imgs) - 1, min(max_images, len(imgs))).round().astype(int))
    per = [level_pairs(imgs[i], levels) for i in pick]
    with torch.no_grad():
        g = model.gains(quality)[0].view(-1)
    preds, record = [], []
    for lvl in range(levels):
        f = 8 >> lvl                                    # the level's patch side in the latent grid
        gain = float(g[f * f:4 * f * f].mean())         # (its channels: f*f .. 4 f*f - 1)
        fit_pairs = [p[lvl] for k, p in enumerate(per) if k % holdout]
        held = [p[lvl] for k, p in enumerate(per) if k % holdout == 0]

        def progress(s, n, lvl=lvl):
            if s % 500 == 0 or s == n:
                print(f"  level {lvl + 1}: step {s}/{n} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        p = fit_level(start, fit_pairs, gain, CROP >> lvl, steps, seed=lvl, progress=progress)
        before, after = bits_change(None, held, gain), bits_change(p, held, gain)
        record.append({"level": lvl + 1, "gain": round(gain, 3), "held_out_bits_change_pct": round(100 * (after / before - 1), 2)})
        preds.append(p)
    own = load_file(str(models_dir() / f"{base}.safetensors"))
    sd = {f"predict.{i}.{k}": v.detach().float().contiguous() for i, p in enumerate(preds) for k, v in p.state_dict().items()}
    tensors = {**{k: v for k, v in own.items() if not k.startswith("predict.")}, **sd}
    wpath = out / f"{name}.safetensors"
    save_file(tensors, str(wpath))
    wpath.chmod(0o644)
    c = derived_card(root, name, wpath, extends=True)
    for k in ("z_context", "narrow_tables", "rate_points", "default_rate_index", "rate_note", "kodak_note",
              "post_filter", "post_filter_base"):
        if k in bcard:
            c[k] = copy.deepcopy(bcard[k])
    c["architecture"] = copy.deepcopy(bcard["architecture"])
    c["architecture"]["type"] += (f"; learned lifting steps at the {levels} finest levels (each a {layers}-layer "
                                  f"network of {width} channels predicting the level's details from its low band)")
    c["architecture"].update(predict=levels, predict_layers=layers, predict_width=width)
    c["lifting"] = fit_record("dnaimg.zoo.liftfit", base, name, data, int(len(pick)), len(per[::holdout]), t0, command,
                              levels=record, quality=quality, steps=steps, batch=BATCH, crop=CROP, lr=LR,
                              loss="log(1 + |details x gain - prediction|), mean", lr_schedule="cosine")
    return write_card(out, name, c)


def main(argv: list[str] | None = None) -> int:
    from dnaimg.zoo.context import fit_parser, run_cli
    ap = fit_parser("dnaimg.zoo.liftfit", __doc__, "the wavelet model (with a coder context) the predictors are added to")
    ap.add_argument("--levels", type=int, default=LEVELS, help=f"finest levels predicted (default {LEVELS})")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"fitting steps per level (default {STEPS})")
    ap.add_argument("--layers", type=int, default=None, help="layers of each predictor (default: 3)")
    ap.add_argument("--width", type=int, default=None, help="channels between them (default: 32)")
    ap.add_argument("--quality", type=float, default=QUALITY,
                    help=f"the rate index whose quantiser steps measure the details (default {QUALITY})")
    ap.add_argument("--max-images", type=int, default=MAX_IMAGES,
                    help=f"training images used, evenly spaced (default {MAX_IMAGES})")
    a = ap.parse_args(argv)
    return run_cli(lambda command: build(a.base, a.name, a.data, a.levels, out_dir=Path(a.out) if a.out else None,
                                         command="python -m dnaimg.zoo.liftfit " + command, steps=a.steps,
                                         width=a.width, layers=a.layers, quality=a.quality,
                                         max_images=a.max_images),
                   argv, lambda c: f"{a.name}: held-out zero-order bits " + ", ".join(
                       f"level {r['level']} {r['held_out_bits_change_pct']:+.2f} %" for r in c["lifting"]["levels"]))


if __name__ == "__main__":
    sys.exit(main())
