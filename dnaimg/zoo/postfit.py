"""Fit a wavelet model's post-filter to what its encoder writes (nothing else retrained).

The wavelet models' synthesis is the inverse wavelet, then a small residual post-filter
(:class:`dnaimg.zoo.wavelet.PostFilter`) that removes some of what quantisation left.  It was
trained with the rest of the network, under training's stand-in for quantisation (rounding
around the mean, no rate-distortion rounding, no context).  The shipped encoder writes other
symbols: rounded towards the mean where bits are dear, with the context's and the narrow tables'
prices.  This module codes training images with a model's own encoder at several rate rows,
takes the inverse wavelet of what the decoder would get, and fits the post-filter's weights
(started from the model's) to the images by MSE.  With ``--layers``/``--width`` beyond the base's
the filter is first grown to that size without changing what it computes (the base's layers
embedded, identity layers before its last, the new channels' outputs at zero; Chen et al.'s
Net2Net) and then fitted with a cosine-decaying step.  The result is a model that extends the
base's own base, with the base's context, tables and hyper-latent context, and its own
post-filter (FORMAT.md 12.3; its card's ``architecture.post_layers``/``post_width`` give its size).

    DNAIMG_MODELS=M7 python -m dnaimg.zoo.postfit --base BASE --name NAME \\
        --data MEDICAL/microscopy/train --data MEDICAL/xray/train [--layers 6 --width 48]
"""
from __future__ import annotations

import copy
import math
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROWS = (24, 32, 40, 48, 56, 64)     # rate rows the images are coded at (round robin)
STEPS = 2000
BATCH = 16
CROP = 128
LR = 1e-4
MAX_IMAGES = 240                    # an evenly spaced subset of the training images


def post_keys(layers: int) -> list[str]:
    """The weights of a post-filter of ``layers`` layers, as a model's file names them."""
    return [f"g_s.post.net.{2 * i}.{p}" for i in range(layers) for p in ("weight", "bias")]


def convs(post: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [m for m in post.net if isinstance(m, torch.nn.Conv2d)]


def grow(post: torch.nn.Module, layers: int, width: int, seed: int = 0) -> torch.nn.Module:
    """A post-filter of ``layers`` layers of ``width`` channels that computes what ``post`` does:
    ``post``'s layers but its last in the first layers (its channels first), identity layers
    (on its channels) up to the last, ``post``'s last layer reading its channels.  The new
    channels start small and random, and nothing reads them yet, so they learn from the first step."""
    from dnaimg.zoo.wavelet import PostFilter
    old = convs(post)
    L0, w0, C = len(old), old[0].out_channels, old[0].in_channels // 4
    if layers < L0 or width < w0:
        raise ValueError(f"a post-filter of {L0} layers of width {w0} cannot shrink to {layers} layers of width {width}")
    torch.manual_seed(seed)
    new = PostFilter(C, width, layers).float()
    c = convs(new)
    with torch.no_grad():
        for m in c:
            m.weight.mul_(0.05)
            m.bias.zero_()
        for i in range(L0 - 1):                   # the base's hidden layers, on its channels
            c[i].weight[:w0] = 0
            c[i].weight[:w0, :old[i].in_channels] = old[i].weight
            c[i].bias[:w0] = old[i].bias
        for i in range(L0 - 1, layers - 1):       # identity on the base's channels (they are >= 0: after a ReLU)
            c[i].weight[:w0] = 0
            c[i].bias[:w0] = 0
            for k in range(w0):
                c[i].weight[k, k, 1, 1] = 1.0
        c[-1].weight.zero_()
        c[-1].weight[:, :w0] = old[-1].weight
        c[-1].bias.copy_(old[-1].bias)
    return new


def decoded_pair(name: str, img: np.ndarray, row: int) -> tuple[np.ndarray, np.ndarray]:
    """(the inverse wavelet of what the decoder gets for ``img`` coded by model ``name`` at rate
    row ``row``, before the post-filter and centred; the image, centred), float32, cropped to
    even sides: the encoder's own symbols (its rate-distortion rounding, its context adapted to
    the image), with the analysis network's hyper-latent."""
    from dnaimg.codecs import compact as cc
    an = cc.Analysis(img, name)
    sym = an.coded(row, 1.0)[0]
    u, _, _, g = an._rounded(row)
    y_hat = an.y - (u - sym) / g
    gs = an.model.g_s
    post, gs.post = gs.post, torch.nn.Identity()
    try:
        with torch.inference_mode():
            a = gs(torch.from_numpy(y_hat)[None].float())[0, 0, :an.height, :an.width] - 0.5
    finally:
        gs.post = post
    h, w = an.height // 2 * 2, an.width // 2 * 2
    return a.numpy().astype(np.float32)[:h, :w], (img.astype(np.float32) / 255.0 - 0.5)[:h, :w]


def psnr_after(post: torch.nn.Module, a: np.ndarray, x: np.ndarray) -> float:
    """PSNR of the 8-bit image the decoder draws from ``a`` with ``post`` against ``x``."""
    with torch.no_grad():
        o = post(torch.from_numpy(a)[None, None])[0, 0].numpy()
    from dnaimg.image import psnr
    return psnr(np.clip(np.floor((o + 0.5) * 255.0 + 0.5), 0, 255), np.round((x + 0.5) * 255.0))


def fit(post: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], steps: int = STEPS, seed: int = 0,
        lr: float = LR, progress=None, cosine: bool = False) -> torch.nn.Module:
    """A copy of ``post`` fitted to ``pairs`` (Adam, random crops of CROP px, batches of BATCH;
    the step constant, or with ``cosine`` falling from ``lr`` to 0 along a half cosine)."""
    post = copy.deepcopy(post).float().train()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(post.parameters(), lr=lr)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
             if cosine else None)
    for step in range(steps):
        xa, xt = [], []
        for _ in range(BATCH):
            a, x = pairs[rng.randrange(len(pairs))]
            c = min(CROP, a.shape[0], a.shape[1]) // 2 * 2
            y0 = rng.randrange(0, a.shape[0] - c + 1) // 2 * 2
            x0 = rng.randrange(0, a.shape[1] - c + 1) // 2 * 2
            xa.append(a[y0:y0 + c, x0:x0 + c])
            xt.append(x[y0:y0 + c, x0:x0 + c])
        if len({p.shape for p in xa}) > 1:           # (tiny images: crop the batch to its smallest)
            c = min(p.shape[0] for p in xa)
            xa, xt = [p[:c, :c] for p in xa], [p[:c, :c] for p in xt]
        loss = torch.mean((post(torch.from_numpy(np.stack(xa))[:, None]) - torch.from_numpy(np.stack(xt))[:, None]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if progress is not None:
            progress(step + 1, steps)
    return post.eval()


def build(base: str, name: str, data: list[str], holdout: int = 4, out_dir: Path | None = None, command: str = "",
          steps: int = STEPS, rows: tuple[int, ...] = ROWS, max_images: int = MAX_IMAGES, layers: int | None = None,
          width: int | None = None, cosine: bool = False, downscale: bool = False) -> dict:
    """Fit ``base``'s post-filter (a wavelet model with a context, e.g. the narrow-table fit
    behind compact-gray-v7) on the images below ``data`` and write model ``name``: ``base``'s own
    tensors (context, tables, hyper-latent context) and the fitted post-filter, extending
    ``base``'s base.  Every ``holdout``-th image is held out for the PSNR the card reports; the
    filter shipped is fitted on the others.  ``layers``/``width``: grow the filter to that size
    first (:func:`grow`; default the base's).  ``rows``: the rate rows the images are coded at,
    in turn.  ``cosine``: the step falls along a half cosine (always when grown).  ``downscale``:
    the images halved first (Lanczos; :func:`dnaimg.zoo.train.load_training_images`), which hides
    the JPEG blocks that many training images carry.  Returns the card."""
    from safetensors.torch import load_file, save_file

    from dnaimg.codecs import compact as cc
    from dnaimg.zoo.context import _gray, derived_card, fit_record, new_model_dir, write_card
    from dnaimg.zoo.registry import card as card_of, models_dir
    from dnaimg.zoo.train import load_training_images
    t0 = time.time()
    out = new_model_dir(out_dir, name)
    model, tables, bcard = cc.load(base)
    if model.cfg.transform != "cdf97" or tables.ctx is None:
        raise ValueError(f"{base}: a wavelet model with a coder context is needed")
    root = bcard.get("extends")
    if root is None:
        raise ValueError(f"{base} extends no model: fit the post-filter of a context model that does (such as the "
                         "narrow-table fit, python -m dnaimg.zoo.context --narrow)")
    if "extends" in card_of(root):
        raise ValueError(f"{root} extends another model")
    post0 = model.g_s.post
    L0, w0 = len(convs(post0)), convs(post0)[0].out_channels
    layers = L0 if layers is None else layers
    width = w0 if width is None else width
    grown = (layers, width) != (L0, w0)
    start = grow(post0, layers, width) if grown else post0      # (checks the size before any work)
    imgs = [_gray(a) if model.cfg.gray else a for a in load_training_images(data, 16, downscale=downscale)]
    if len(imgs) < 2:
        raise ValueError(f"{len(imgs)} training image(s): at least 2 are needed (one in {holdout} is held out)")
    pick = np.unique(np.linspace(0, len(imgs) - 1, min(max_images, len(imgs))).round().astype(int))
    fit_pairs, held = [], []
    for k, i in enumerate(pick):
        pair = decoded_pair(base, imgs[i], rows[k % len(rows)])
        (held if k % holdout == 0 else fit_pairs).append(pair)
        if (k + 1) % 40 == 0 or k + 1 == len(pick):
            print(f"  {k + 1}/{len(pick)} images coded ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    def progress(s, n):
        if s % 500 == 0 or s == n:
            print(f"  step {s}/{n} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    cosine = cosine or grown
    post = fit(start, fit_pairs, steps, progress=progress, cosine=cosine)
    post_half = copy.deepcopy(post).half().float()          # (as the file holds it: fp16)
    before = float(np.mean([psnr_after(post0.float(), a, x) for a, x in held]))
    after = float(np.mean([psnr_after(post_half, a, x) for a, x in held]))
    own = load_file(str(models_dir() / f"{base}.safetensors"))
    sd = {f"g_s.post.{k}": v.detach().half().contiguous() for k, v in post.state_dict().items()}
    if sorted(sd) != sorted(post_keys(layers)):
        raise ValueError(f"{base}'s post-filter is not the wavelet models' ({sorted(sd)})")
    tensors = {**{k: v for k, v in own.items() if not k.startswith("g_s.post.")}, **sd}
    wpath = out / f"{name}.safetensors"
    save_file(tensors, str(wpath))
    wpath.chmod(0o644)
    c = derived_card(root, name, wpath, extends=True)
    for k in ("z_context", "narrow_tables", "rate_points", "default_rate_index", "rate_note", "kodak_note", "lifting"):
        if k in bcard:
            c[k] = bcard[k]
    c["architecture"] = copy.deepcopy(bcard["architecture"])
    fitted = "; its post-filter fitted to the encoder's symbols"
    if fitted not in c["architecture"]["type"]:
        c["architecture"]["type"] += fitted
    if "post_filter" in bcard:                  # (the base's own fit, which this one started from)
        c["post_filter_base"] = bcard["post_filter"]
    if grown:
        c["architecture"]["type"] = re.sub(r" \(\d+ layers of \d+ channels\)$", "", c["architecture"]["type"])
        c["architecture"]["type"] += f" ({layers} layers of {width} channels)"
        c["architecture"]["post_layers"], c["architecture"]["post_width"] = layers, width
    c["post_filter"] = fit_record("dnaimg.zoo.postfit", base, name, data, int(len(pick)), len(held), t0, command,
                                  rate_rows=list(rows), steps=steps, batch=BATCH, crop=CROP, lr=LR,
                                  **({"grown_from": [L0, w0], "layers": layers, "width": width} if grown else {}),
                                  **({"lr_schedule": "cosine"} if cosine else {}),
                                  **({"preprocessing": "images halved (Lanczos) before coding"} if downscale else {}),
                                  held_out_psnr_db_before=round(before, 3), held_out_psnr_db_after=round(after, 3))
    return write_card(out, name, c)


def main(argv: list[str] | None = None) -> int:
    from dnaimg.zoo.context import fit_parser, run_cli
    ap = fit_parser("dnaimg.zoo.postfit", __doc__, "the wavelet model (with a coder context) whose post-filter is fitted")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"fitting steps (default {STEPS})")
    ap.add_argument("--layers", type=int, default=None, help="grow the post-filter to this many layers first "
                    "(default: the base's)")
    ap.add_argument("--width", type=int, default=None, help="and to this many channels (default: the base's)")
    ap.add_argument("--max-images", type=int, default=MAX_IMAGES,
                    help=f"training images coded, evenly spaced (default {MAX_IMAGES})")
    ap.add_argument("--rows", type=lambda s: tuple(int(v) for v in s.split(",")), default=ROWS,
                    help="rate rows the images are coded at, in turn (comma-separated; default "
                         f"{','.join(map(str, ROWS))}; a row is 8 x the rate index)")
    ap.add_argument("--cosine", action="store_true", help="let the step fall along a half cosine "
                    "(always when the filter is grown)")
    ap.add_argument("--downscale", action="store_true", help="halve the images first (Lanczos): hides the JPEG "
                    "blocks of training images taken from JPEG files")
    a = ap.parse_args(argv)
    return run_cli(lambda command: build(a.base, a.name, a.data, out_dir=Path(a.out) if a.out else None,
                                         command="python -m dnaimg.zoo.postfit " + command, steps=a.steps,
                                         max_images=a.max_images, layers=a.layers, width=a.width,
                                         rows=a.rows, cosine=a.cosine, downscale=a.downscale), argv,
                   lambda c: f"{a.name}: held-out PSNR {c['post_filter']['held_out_psnr_db_before']:.3f} -> "
                             f"{c['post_filter']['held_out_psnr_db_after']:.3f} dB "
                             f"({c['post_filter']['held_out_images']} images)")


if __name__ == "__main__":
    sys.exit(main())
