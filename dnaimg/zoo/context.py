"""A context model for a wavelet model's entropy coder, fitted to data (no retraining).

The hyperprior predicts each latent value's scale from the hyper-latent alone: one scale per
value, however busy the rest of its 16 x 16 block turns out to be.  The coder can also look at
what it has already coded of the block (:mod:`dnaimg.codecs.arith`, "Context"): a detail
value's nearest neighbours in its subband, the same place in the level's other subbands, its
parent one level coarser (:func:`dnaimg.zoo.wavelet.context_layout`), in the spirit of the
context modelling of wavelet coders (EBCOT in JPEG 2000; LoPresto, Ramchandran & Orchard 1997).
Their weighted magnitude falls into one of 15 buckets; a table ``remap[class, t, bucket]`` then
says which of the model's 64 Laplacian tables (or, with ``--narrow``, of those and narrower ones
that only the remap reaches) codes the value instead of the hyperprior's own ``t``.  The table is fitted by counting: the symbols of training images at the model's rate
points, and for every (class, t, bucket) the table with the fewest bits on them (cells seen fewer
than ``MIN_COUNT`` times keep ``t``).  On held-out training images it saves 17-22 % of the
latent's bits on X-rays and 9 % on microscopy at rate indexes 2-6 (compact-gray-v3's
hyperprior; 13.7 % over all its rate points and both).

A context model is shipped as a model of its own that *extends* a base model: its weights file
holds the context tensors, the base weights' SHA-256 and gain tables continued two rate points
past the base's (:func:`extend_gains`); the card names the base (``"extends"``).  With
``--embed`` the file holds the base's tensors too and stands alone (for a base that is not shipped
itself, such as a network trained with ``dnaimg train --context``).  DNA written with a context
model names its own weights id, so it never decodes with the base's coder, nor the base's DNA
with it.

    python -m dnaimg.zoo.context --base compact-gray-v3 --name compact-gray-v4 \\
        --data MEDICAL/microscopy/train --data MEDICAL/xray/train
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

EXTRA_RATES = 2         # rate points added above the base's trained ones (see extend_gains)
MIN_COUNT = 64          # a (class, table, bucket) cell seen fewer times keeps the hyperprior's table
DEFAULT_ROW_BYTES = 26  # data bytes per oligo with the container's defaults (200 nt, inner code 4)
COUNT_PACKET_ROWS = 8   # oligos per packet a cross context's neighbours are counted in (compact-gray-v16's
                        # remap was; the encoder writes 16 behind an outer code since, which puts a few
                        # more neighbours in the packet: the count stays as the shipped card's command ran)
V_MAX = 128             # values beyond +-V_MAX count as +-V_MAX when choosing tables (rare)
KEYS = ("ctx.neighbors", "ctx.weights", "ctx.classes", "ctx.edges", "ctx.remap")
CROSS_KEYS = ("ctx.xneighbors", "ctx.xdirections", "ctx.xweights")     # a cross context's (optional)


def context_of(tensors: dict[str, torch.Tensor]) -> tuple | None:
    """The context tuple of a weights file's tensors (None: the file has none); ValueError when
    it has only some of them."""
    have = [k for k in KEYS if k in tensors]
    if not have:
        return None
    if len(have) < len(KEYS):
        raise ValueError(f"its weights file lacks {[k for k in KEYS if k not in tensors][0]}")
    cross = [k for k in CROSS_KEYS if k in tensors]
    if cross and len(cross) < len(CROSS_KEYS):
        raise ValueError(f"its weights file lacks {[k for k in CROSS_KEYS if k not in tensors][0]}")
    return tuple(np.ascontiguousarray(tensors[k].to(torch.int64).numpy()) for k in KEYS + (CROSS_KEYS if cross else ()))


def extend_gains(gain: np.ndarray, lambdas: list[float], extra: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The base's integer gain rows (1/8 steps) continued ``extra`` rate points up, geometrically
    as from its last two trained points (per channel), with the tied inverse gains and the
    extrapolated lambdas.  The wavelet models' synthesis is linear and their inverse gains are
    the gains' inverses, so a finer quantiser needs no training: the trained range only stops
    the codec from spending a budget that would buy more quality (a cap of 0.3 nt/px lets
    microscopy images with much dark background go past the last trained point)."""
    from dnaimg.zoo.exact import GAIN_BITS, RATE_STEPS
    R = len(lambdas)
    if R < 2 or gain.shape[0] != (R - 1) * RATE_STEPS + 1:
        raise ValueError("the base's gain rows do not match its rate points (two at least)")
    lg = np.log(gain.astype(np.float64) / (1 << GAIN_BITS))
    step = (lg[-1] - lg[-1 - RATE_STEPS]) / RATE_STEPS             # per row, per channel
    k = np.arange(1, extra * RATE_STEPS + 1)[:, None]
    new = np.round(np.exp(lg[-1][None, :] + k * step[None, :]) * (1 << GAIN_BITS)).astype(np.int64)
    g = np.concatenate([gain.astype(np.int64), new])
    if g.max() >= 1 << 31 or (np.diff(g, axis=0) < 0).any():
        raise ValueError("extrapolated gains out of range")
    lam_step = np.log(lambdas[-1] / lambdas[-2])
    lams = list(lambdas) + [float(lambdas[-1] * np.exp(lam_step * (i + 1))) for i in range(extra)]
    return g, ((1 << GAIN_BITS) / g.astype(np.float64)).astype(np.float32), lams


def _gray(img: np.ndarray) -> np.ndarray:
    """An image as the gray models train on it (colour: its luma, as dnaimg train converts it)."""
    from dnaimg.zoo.train_compact import LUMA
    if img.ndim == 2:
        return img
    y = LUMA[0] * img[..., 0] + LUMA[1] * img[..., 1] + LUMA[2] * img[..., 2]
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _bits(tables) -> np.ndarray:
    """(tables, 2 V_MAX + 1) bits the coder spends on each value -V_MAX..V_MAX with each table."""
    from dnaimg.codecs.compact import symbol_bits
    v = np.arange(-V_MAX, V_MAX + 1)
    return np.stack([symbol_bits(v, np.full(v.shape, j), tables) for j in range(tables.y_cdf.shape[0])])


def bucket_probe(layout: tuple, n_tables: int) -> tuple:
    """A context whose remap gives the bucket (``remap[c, t, b] = b``) for the layout
    (neighbors, weights, classes, edges, and any cross arrays: :func:`dnaimg.codecs.arith.layout_of`):
    the context's tables functions then return buckets."""
    from dnaimg.codecs.arith import with_remap
    cls, edges = layout[2], layout[3]
    return with_remap(layout, np.broadcast_to(np.arange(edges.size), (int(cls.max()) + 1, n_tables, edges.size)).copy())


def count(base: str, images: list[np.ndarray], rows: list[int], layout: tuple, n_tables: int,
          progress=None, packet_bytes: int | None = None) -> np.ndarray:
    """Histogram (classes, tables, buckets, 2 V_MAX + 1) of the base model's symbols (as its
    encoder chooses them, rate-distortion optimisation included) by context cell.  A cross
    layout counts the neighbouring positions in strips that share the position's packet, packets
    of ``packet_bytes`` (default: :data:`COUNT_PACKET_ROWS` oligos of 26 bytes) as the base's context
    codes the symbols."""
    from dnaimg.codecs import compact as cc
    from dnaimg.codecs.arith import context_tables_cm
    cls, edges = layout[2], layout[3]
    n_cls = int(cls.max()) + 1
    nb_ = edges.size
    probe = bucket_probe(layout, n_tables)
    H = np.zeros(n_cls * n_tables * nb_ * (2 * V_MAX + 1), dtype=np.int64)
    for k, img in enumerate(images):
        an = cc.Analysis(img, base)
        for row in rows:
            sym, idx = an.symbols(row)
            M = sym.shape[0]
            s = sym.reshape(M, -1)
            t = idx.reshape(M, -1)
            pnb = None
            if cc.estimate_neighbours(sym, probe) is not None:      # (a cross context: strips, packets)
                starts = cc.strip_packets(sym, idx, an.tables, an.tables.ctx,
                                          packet_bytes or COUNT_PACKET_ROWS * DEFAULT_ROW_BYTES)
                pnb = cc.packet_neighbours(sym.shape[1], sym.shape[2], starts)
            b = context_tables_cm(s, t, probe, pnb)
            cell = ((cls[:, None] * n_tables + t) * nb_ + b) * (2 * V_MAX + 1) + np.clip(s, -V_MAX, V_MAX) + V_MAX
            H += np.bincount(cell.ravel(), minlength=H.size)
        if progress:
            progress(k + 1, len(images))
    return H.reshape(n_cls, n_tables, nb_, 2 * V_MAX + 1)


def fit_remap(H: np.ndarray, tables) -> np.ndarray:
    """The cheapest table per cell (class 0, the values coded with a mean, and sparse cells keep
    their own)."""
    n_tables = H.shape[1]
    cost = np.einsum("ctbv,sv->ctbs", H.astype(np.float64), _bits(tables))
    remap = np.argmin(cost, axis=-1)
    own = np.broadcast_to(np.arange(n_tables)[None, :, None], remap.shape)
    keep = H.sum(axis=-1) < MIN_COUNT
    keep[0] = True
    return np.where(keep, own, remap).astype(np.int64)


def saving(H: np.ndarray, remap: np.ndarray, tables) -> tuple[float, float]:
    """(bits with the hyperprior's tables, bits with the context's) on histogram ``H``."""
    n_tables = H.shape[1]
    bits = _bits(tables)
    t_own = np.broadcast_to(np.arange(n_tables)[None, :, None], remap.shape)
    b0 = float((H * bits[t_own]).sum())
    b1 = float((H * bits[remap]).sum())
    return b0, b1


def new_model_dir(out_dir: Path | None, name: str) -> Path:
    """The models folder a new model ``name`` goes to (default: the package's; made if missing,
    before any fitting), refusing a name that is taken there."""
    from dnaimg.zoo.registry import models_dir
    out = Path(out_dir) if out_dir else models_dir()
    if (out / f"{name}.json").exists() or (out / f"{name}.safetensors").exists():
        raise ValueError(f"model {name} exists in {out}: a shipped model is never rewritten (DNA names its "
                         "weights); choose a new name")
    out.mkdir(parents=True, exist_ok=True)
    return out


def derived_card(base: str, name: str, wpath: Path, extends: bool) -> dict:
    """The card of model ``name`` made from ``base``'s (its measurements dropped), for the
    weights file ``wpath``."""
    from dnaimg.zoo.registry import card as card_of, sha256_file
    c = json.loads(json.dumps(card_of(base)))
    for k in ("medical", "medical_command", "medical_note", "test_psnr_floor_db", "kodak"):
        c.pop(k, None)
    c["name"] = name
    if extends:
        c["extends"] = base
    c["weights_sha256"] = sha256_file(wpath)
    return c


def fit_record(module: str, base: str, name: str, data: list[str], images: int, held: int, t0: float,
               command: str, **measured) -> dict:
    """What a fitted model's card says of its fit: base, data, image counts, the measurements,
    wall time and the command (``python -m MODULE ...``)."""
    return {"base": base, "data": ["/".join(Path(d).parts[-3:]) for d in data], "images": images,
            "held_out_images": held, **measured, "wall_time_min": round((time.time() - t0) / 60, 1),
            "command": command or f"python -m {module} --base {base} --name {name} " + " ".join(f"--data {d}" for d in data)}


def base_sha256(hexdigest: str) -> torch.Tensor:
    """An extension's ``base.sha256`` tensor: its base's weights SHA-256 (hex), as 32 bytes."""
    return torch.frombuffer(bytearray(bytes.fromhex(str(hexdigest).lower())), dtype=torch.uint8)


def image_progress(t0: float, every: int):
    """A fitter's progress(k, n): a line on stderr every ``every`` images and at the last."""
    def progress(k, n):
        if k % every == 0 or k == n:
            print(f"  {k}/{n} images ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return progress


def fit_parser(module: str, doc: str, base_help: str) -> argparse.ArgumentParser:
    """The command line every fitter shares: --base, --name, --data (repeat), --out."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    ap.add_argument("--base", required=True, help=base_help)
    ap.add_argument("--name", required=True, help="name of the new model")
    ap.add_argument("--data", action="append", required=True, help="folder of training images (repeat)")
    ap.add_argument("--out", default=None, help="models folder (default: the package's)")
    return ap


def write_card(out: Path, name: str, c: dict) -> dict:
    (out / f"{name}.json").write_text(json.dumps(c, indent=2) + "\n")
    return c


def run_cli(build_fn, argv: list[str] | None, report) -> int:
    """Call ``build_fn(command)`` for a ``python -m`` entry point: one line on a ValueError or an
    OSError (exit 2), else ``report(card)`` printed."""
    command = " ".join(argv if argv is not None else sys.argv[1:])
    try:         # ModelError and TrainingDataError are ValueErrors: one line each, no traceback
        c = build_fn(command)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(c))
    return 0


def build(base: str, name: str, data: list[str], rows: list[int] | None = None, holdout: int = 3,
          out_dir: Path | None = None, command: str = "", extra_rates: int = EXTRA_RATES, embed: bool = False) -> dict:
    """Fit the context of ``base`` on the images below ``data`` and write model ``name`` (with
    ``extra_rates`` rate points above the base's, :func:`extend_gains`).  Every ``holdout``-th
    image is held out to measure the saving first; the table shipped is then fitted on all of
    them.  ``embed``: one standalone file (the base's tensors and the context).  Returns the card."""
    from safetensors.torch import load_file, save_file

    from dnaimg.codecs import compact as cc
    from dnaimg.zoo.registry import models_dir
    from dnaimg.zoo.train import load_training_images
    from dnaimg.zoo.wavelet import CONTEXT_EDGES, context_layout
    t0 = time.time()
    out = new_model_dir(out_dir, name)
    model, tables, bcard = cc.load(base)
    if model.cfg.transform != "cdf97":
        raise ValueError(f"{base}: a context model needs a wavelet model's latent layout")
    if tables.ctx is not None:
        raise ValueError(f"{base} is itself a context model; name its base")
    n_tables = tables.y_cdf.shape[0]
    rows = rows or list(range(0, tables.gain.shape[0], 4))
    nbr, wts, cls = context_layout(model.cfg.in_channels)
    layout = (nbr, wts, cls, np.array(CONTEXT_EDGES, dtype=np.int64))
    imgs = [_gray(a) if model.cfg.gray else a for a in load_training_images(data, 16, downscale=False)]
    progress = image_progress(t0, 20)

    fit_imgs = [a for i, a in enumerate(imgs) if i % holdout]
    held = [a for i, a in enumerate(imgs) if i % holdout == 0]
    H_fit = count(base, fit_imgs, rows, layout, n_tables, progress)
    H_held = count(base, held, rows, layout, n_tables, progress)
    b0, b1 = saving(H_held, fit_remap(H_fit, tables), tables)
    remap = fit_remap(H_fit + H_held, tables)
    wpath = out / f"{name}.safetensors"
    if not bcard.get("weights_sha256"):
        raise ValueError(f"{base}: its card has no weights_sha256 (exported before dnaimg 0.2)")
    base_sha = str(bcard["weights_sha256"]).lower()
    tensors = {"ctx.neighbors": torch.from_numpy(nbr.astype(np.int16)), "ctx.weights": torch.from_numpy(wts.astype(np.int16)),
               "ctx.classes": torch.from_numpy(cls.astype(np.int16)), "ctx.edges": torch.from_numpy(layout[3].astype(np.int32)),
               "ctx.remap": torch.from_numpy(remap.astype(np.uint8))}
    if embed:
        tensors = {**load_file(str(models_dir() / f"{base}.safetensors")), **tensors}
    else:
        tensors["base.sha256"] = base_sha256(base_sha)
    lams = list(model.cfg.lambdas)
    if extra_rates > 0:
        g, ig, lams = extend_gains(tables.gain, lams, extra_rates)
        tensors["tables.gain"] = torch.from_numpy(g.astype(np.int32))
        tensors["tables.inv_gain"] = torch.from_numpy(ig)
    save_file(tensors, str(wpath))
    wpath.chmod(0o644)
    c = derived_card(base, name, wpath, extends=not embed)
    n_trained = len(model.cfg.lambdas)
    c["rate_points"] = [{"index": i, "lambda": lam, **({"extrapolated": True} if i >= n_trained else {})}
                        for i, lam in enumerate(lams)]
    c["architecture"]["type"] += "; context model over each block's coded values (fitted table)"
    c["architecture"]["reference"] += "; context modelling of wavelet coefficients (LoPresto, Ramchandran & Orchard 1997)"
    c["context"] = fit_record("dnaimg.zoo.context", base, name, data, len(imgs), len(held), t0, command,
                              base_weights_sha256=base_sha, rate_rows=rows, buckets=len(CONTEXT_EDGES),
                              min_count=MIN_COUNT, extra_rate_points=extra_rates, embedded=embed,
                              held_out_latent_bits_saved=round(1 - b1 / b0, 4))
    return write_card(out, name, c)


def build_narrow(base: str, name: str, data: list[str], narrow: int, rows: list[int] | None = None, holdout: int = 3,
                 out_dir: Path | None = None, command: str = "", far: bool = False) -> dict:
    """Refit the coder context of context model ``base`` (compact-gray-v6) with ``narrow`` more
    tables, narrower than the scale table's first (:func:`dnaimg.zoo.exact.narrow_tables`), that
    its remap may choose, and write model ``name``: it extends ``base``'s own base (the same
    network, gains and hyper-latent context) and holds the latent's tables with the narrow ones
    after them.  ``far``: the context's wider neighbourhood too
    (:func:`dnaimg.zoo.wavelet.context_layout`; the base's otherwise).  The symbols counted are
    those ``base``'s encoder writes.  Every ``holdout``-th image is held out to measure the saving
    over ``base``'s context; the table shipped is then fitted on all of them.  Returns the card."""
    from safetensors.torch import load_file, save_file

    from dnaimg.codecs import compact as cc
    from dnaimg.codecs.arith import table_bits
    from dnaimg.zoo.exact import narrow_tables
    from dnaimg.zoo.registry import card as card_of, models_dir
    from dnaimg.zoo.train import load_training_images
    t0 = time.time()
    out = new_model_dir(out_dir, name)
    model, tables, bcard = cc.load(base)
    if tables.ctx is None:
        raise ValueError(f"{base} has no coder context to refit")
    if tables.y_cdf.shape[0] != tables.thresholds.shape[0]:
        raise ValueError(f"{base} already has narrow tables")
    own = load_file(str(models_dir() / f"{base}.safetensors"))
    if "post_filter" in bcard or any(k.startswith("g_s.post.") for k in own):
        raise ValueError(f"{base} has a fitted post-filter, which this refit would drop: refit its base's context, "
                         "then fit the post-filter (python -m dnaimg.zoo.postfit)")
    if not 1 <= narrow <= 255 - tables.y_cdf.shape[0]:
        raise ValueError(f"--narrow {narrow}: 1 to {255 - tables.y_cdf.shape[0]} tables")
    root = bcard.get("extends", base)
    rcard = card_of(root)
    if not rcard.get("weights_sha256"):
        raise ValueError(f"{root}: its card has no weights_sha256")
    n_tables = tables.y_cdf.shape[0]
    rows = rows or list(range(0, tables.gain.shape[0], 8))
    layout = tables.ctx[:4]
    if far:
        from dnaimg.zoo.wavelet import context_layout
        nbr, wts, cls = context_layout(model.cfg.in_channels, far=True)
        if not np.array_equal(cls, layout[2]):
            raise ValueError(f"{base}'s context is not the wavelet layout's")
        layout = (nbr, wts, cls, layout[3])
    imgs = [_gray(a) if model.cfg.gray else a for a in load_training_images(data, 16, downscale=False)]
    progress = image_progress(t0, 20)

    H_fit = count(base, [a for i, a in enumerate(imgs) if i % holdout], rows, layout, n_tables, progress)
    held = [a for i, a in enumerate(imgs) if i % holdout == 0]
    H_held = count(base, held, rows, layout, n_tables, progress)
    c, n, off = narrow_tables(narrow, tables.y_cdf.shape[1], model.cfg.conditional)
    ext = copy.copy(tables)
    ext.y_cdf = np.concatenate([tables.y_cdf, c])
    ext.y_n = np.concatenate([tables.y_n, n])
    ext.y_off = np.concatenate([tables.y_off, off])
    ext.y_bits = np.concatenate([tables.y_bits, [table_bits(c[k], int(n[k])) for k in range(narrow)]])
    ext._value_bits = None
    H0_held = count(base, held, rows, tables.ctx[:4], n_tables) if far else H_held     # (by the base's buckets)
    _, b_base = saving(H0_held, tables.ctx[4], tables)
    _, b_new = saving(H_held, fit_remap(H_fit, ext), ext)
    remap = fit_remap(H_fit + H_held, ext)
    tensors = {k: v for k, v in own.items() if k.startswith("ctx.") or k.startswith("zctx.")}
    tensors.update({"ctx.neighbors": torch.from_numpy(layout[0].astype(np.int16)),
                    "ctx.weights": torch.from_numpy(layout[1].astype(np.int16)),
                    "ctx.remap": torch.from_numpy(remap.astype(np.uint8)),
                    "tables.y_cdf": torch.from_numpy(ext.y_cdf.astype(np.int32)),
                    "tables.y_n": torch.from_numpy(ext.y_n.astype(np.int32)),
                    "tables.y_off": torch.from_numpy(ext.y_off.astype(np.int32)),
                    "base.sha256": base_sha256(rcard["weights_sha256"])})
    if "extends" in bcard:      # the base's own gain tables, if it had any
        tensors.update({k: v for k, v in own.items() if k in ("tables.gain", "tables.inv_gain")})
    wpath = out / f"{name}.safetensors"
    save_file(tensors, str(wpath))
    wpath.chmod(0o644)
    cd = derived_card(root, name, wpath, extends=True)
    for k in ("z_context", "rate_points", "default_rate_index", "rate_note", "kodak_note"):
        if k in bcard:
            cd[k] = bcard[k]
    cd["architecture"] = copy.deepcopy(bcard["architecture"])
    cd["architecture"]["type"] += f"; {narrow} narrow tables for the context" + (", its neighbourhood wider" if far else "")
    cd["narrow_tables"] = fit_record("dnaimg.zoo.context", base, name, data, len(imgs), len(held), t0, command,
                                     tables=narrow, far_neighbours=far, neighbours=int(layout[0].shape[1]),
                                     rate_rows=rows, min_count=MIN_COUNT,
                                     held_out_latent_bits_saved=round(1 - b_new / b_base, 4))
    return write_card(out, name, cd)


def build_cross(base: str, name: str, data: list[str], rows: list[int] | None = None, holdout: int = 3,
                out_dir: Path | None = None, command: str = "", post_from: str | None = None) -> dict:
    """Give context model ``base``'s coder a *cross context* (:func:`dnaimg.zoo.wavelet.cross_layout`:
    a value at a block's edge also sees its neighbours in the blocks left and above, where the
    encoder codes them before it in the same packet, the positions in strips,
    :func:`dnaimg.codecs.compact.strip_order`), refit its remap by counting, and write model
    ``name``: ``base``'s own weights file with the cross arrays and the new remap (the same base,
    network, tables and post-filter).  ``post_from``: a model of ``base``'s coder whose post-filter
    the new model takes instead (then the remap is not refitted: ``base`` must be a cross model
    already, whose remap it keeps).  The symbols counted are those ``base``'s encoder writes (its
    RDO priced with its own context).  Every ``holdout``-th image is held out to measure the saving
    over ``base``'s context; the remap shipped is then fitted on all of them.  Returns the card."""
    from safetensors.torch import load_file, save_file

    from dnaimg.codecs import compact as cc
    from dnaimg.codecs.arith import has_cross, layout_of
    from dnaimg.zoo.registry import card as card_of, models_dir
    from dnaimg.zoo.train import load_training_images
    from dnaimg.zoo.wavelet import cross_layout
    t0 = time.time()
    out = new_model_dir(out_dir, name)
    model, tables, bcard = cc.load(base)
    if tables.ctx is None or "extends" not in bcard:
        raise ValueError(f"{base} has no coder context of its own to give a cross context")
    own = load_file(str(models_dir() / f"{base}.safetensors"))
    if post_from is not None:
        if not has_cross(tables.ctx):
            raise ValueError(f"--post-from goes with a base that has a cross context already, not {base}")
        _, _, pcard = cc.load(post_from)
        if pcard.get("extends") != bcard.get("extends"):
            raise ValueError(f"{post_from} does not extend {bcard['extends']}, as {base} does")
        pown = load_file(str(models_dir() / f"{post_from}.safetensors"))
        tensors = {k: v for k, v in own.items() if not k.startswith(cc.EXTENSION_POST)}
        tensors.update({k: v for k, v in pown.items() if k.startswith(cc.EXTENSION_POST)})
        record = {"base": base, "post_filter_from": post_from, "command": command}
    else:
        if has_cross(tables.ctx):
            raise ValueError(f"{base} has a cross context already")
        from dnaimg.zoo.wavelet import CONTEXT_K_FAR
        far = tables.ctx[0].shape[1] == CONTEXT_K_FAR
        xn, xd, xw = cross_layout(model.cfg.in_channels, far=far)
        layout = tuple(tables.ctx[:4]) + (xn, xd, xw)
        n_tables = tables.thresholds.shape[0]
        rows = rows or list(range(0, tables.gain.shape[0], 8))
        imgs = [_gray(a) if model.cfg.gray else a for a in load_training_images(data, 16, downscale=False)]
        progress = image_progress(t0, 20)
        H_fit = count(base, [a for i, a in enumerate(imgs) if i % holdout], rows, layout, n_tables, progress)
        held = [a for i, a in enumerate(imgs) if i % holdout == 0]
        H_held = count(base, held, rows, layout, n_tables, progress)
        H0_held = count(base, held, rows, layout_of(tables.ctx), n_tables)          # (by the base's buckets)
        _, b_base = saving(H0_held, tables.ctx[4], tables)
        _, b_new = saving(H_held, fit_remap(H_fit, tables), tables)
        remap = fit_remap(H_fit + H_held, tables)
        tensors = dict(own)
        tensors.update({"ctx.remap": torch.from_numpy(remap.astype(np.uint8)),
                        "ctx.xneighbors": torch.from_numpy(xn.astype(np.int16)),
                        "ctx.xdirections": torch.from_numpy(xd.astype(np.int16)),
                        "ctx.xweights": torch.from_numpy(xw.astype(np.int16))})
        record = fit_record("dnaimg.zoo.context", base, name, data, len(imgs), len(held), t0, command,
                            far_neighbours=far, cross_neighbours=int(xn.shape[1]), rate_rows=rows,
                            min_count=MIN_COUNT,
                            held_out_latent_bits_saved=round(1 - b_new / b_base, 4))
    wpath = out / f"{name}.safetensors"
    save_file(tensors, str(wpath))
    wpath.chmod(0o644)
    cd = derived_card(post_from or base, name, wpath, extends=False)     # (its "extends" kept: the same root)
    if post_from is None:
        cd["architecture"]["type"] += ("; a cross context (a value at a block's edge also sees its neighbours in the "
                                       "blocks left and above, coded before it in its packet: positions in strips of 4)")
    else:
        cd["architecture"]["type"] = card_of(base)["architecture"]["type"] + (
            f"; the post-filter of {post_from}")
    cd["cross_context"] = record
    return write_card(out, name, cd)


def main(argv: list[str] | None = None) -> int:
    ap = fit_parser("dnaimg.zoo.context", __doc__, "the wavelet model whose coder gets the context")
    ap.add_argument("--rows", default=None,
                    help="rate rows to count (comma-separated; default every 4th, with --narrow every 8th)")
    ap.add_argument("--extra-rates", type=int, default=EXTRA_RATES,
                    help=f"rate points to add above the base's (default {EXTRA_RATES})")
    ap.add_argument("--embed", action="store_true",
                    help="write one standalone weights file (the base's tensors and the context)")
    ap.add_argument("--narrow", type=int, default=0,
                    help="refit the context of a context model (--base) with this many more tables, narrower "
                         "than the scale table's first (a model extending the base's base)")
    ap.add_argument("--cross", action="store_true",
                    help="give a context model (--base) a cross context: values at a block's edge see the blocks "
                         "left and above (DNA written in strips); its remap refitted")
    ap.add_argument("--post-from", default=None,
                    help="with --cross and a cross model as --base: take this model's post-filter instead")
    ap.add_argument("--far", action="store_true",
                    help="with --narrow: the context's wider neighbourhood (two places left and above too)")
    a = ap.parse_args(argv)

    def build_fn(command: str) -> dict:
        rows = [int(r) for r in a.rows.split(",")] if a.rows else None
        if a.cross:
            return build_cross(a.base, a.name, a.data, rows, out_dir=Path(a.out) if a.out else None,
                               command="python -m dnaimg.zoo.context " + command, post_from=a.post_from)
        if a.narrow:
            return build_narrow(a.base, a.name, a.data, a.narrow, rows, out_dir=Path(a.out) if a.out else None,
                                command="python -m dnaimg.zoo.context " + command, far=a.far)
        if a.far:
            raise ValueError("--far goes with --narrow")
        return build(a.base, a.name, a.data, rows, out_dir=Path(a.out) if a.out else None, extra_rates=a.extra_rates,
                     embed=a.embed, command="python -m dnaimg.zoo.context " + command)
    def report(c: dict) -> str:
        if a.cross and a.post_from:
            return f"{a.name}: {a.base}'s coder with {a.post_from}'s post-filter"
        rec = c["cross_context"] if a.cross else c["narrow_tables"] if a.narrow else c["context"]
        return (f"{a.name}: {rec['held_out_latent_bits_saved'] * 100:.1f} % of the latent's bits saved on "
                f"{rec['held_out_images']} held-out images" + (f" (over {a.base}'s context)" if a.narrow or a.cross else ""))
    return run_cli(build_fn, argv, report)


if __name__ == "__main__":
    sys.exit(main())
