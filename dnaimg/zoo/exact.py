"""What feeds the compact codec's entropy coder, made exact on every machine.

A learned entropy model breaks if the decoder computes a slightly different distribution than
the encoder did.  Everything between the decoded hyper-latent and the coder's tables is therefore
integer arithmetic (after Ballé, Johnston & Minnen 2019, "Integer networks for data compression"):

- h_s runs as an integer network: weights ``round(w * 2**Fw)`` (at most 15 bits), activations
  fixed point with ``FA`` fractional bits, each layer ``floor((conv(a, W) + B) / 2**Fw)``, ReLU,
  clamp.  It is evaluated with float64 convolutions on integer values whose every partial sum is
  an integer below 2**53, so any summation order (threads, BLAS, oneDNN) gives the same result.
- gains (per rate point, and geometric interpolations on a 1/8 grid between them) are stored as
  integers ``round(g * 2**GAIN_BITS)``; means and scales are multiplied by them in int64.
- the Gaussian scale table and every cumulative table (Gaussian per scale, the hyper-latent's
  per channel) are computed once at export and stored as integers in the weights file.

The float parts (g_a, h_a on the encoder, g_s on the decoder) only change pixels, never symbols.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np
import torch
import torch.nn.functional as F

from dnaimg.codecs.arith import PREC, quantized_cdf, table_bits
from dnaimg.zoo.compact import SCALE_MIN, CompactConfig, CompactHyperprior

FA = 10                     # fractional bits of h_s activations, means and scales
ACT_MAX = 1 << 22           # activations clamp to +-ACT_MAX (+-4096 in real units)
W_BITS = 15                 # integer weights use at most this many bits
GAIN_BITS = 12
RATE_STEPS = 8              # interpolated gains between trained points: 1/8 steps
N_SCALES = 64
SCALE_MAX = 256.0
Y_HALF_MAX = 511            # Gaussian tables span at most +-511 (escape beyond)
Z_HALF = 64                 # hyper-latent tables span +-64 (escape beyond)


def scale_table() -> np.ndarray:
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), N_SCALES))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in np.ravel(x)]).reshape(np.shape(x))


def _laplace_cdf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0.0)), 1.0 - 0.5 * np.exp(-np.maximum(x, 0.0)))


def gaussian_tables(conditional: str = "gaussian") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cdf (S, W) int64, symbols per table incl. escape (S,), offset (S,)) of the latent's
    conditional, a Gaussian (standard deviation s) or, with ``conditional="laplace"``, a Laplacian
    (scale s), at each scale s of :func:`scale_table`."""
    S = scale_table()
    if conditional not in ("gaussian", "laplace"):
        raise ValueError(f"unknown conditional {conditional!r}")
    laplace = conditional == "laplace"
    halves = [int(min(Y_HALF_MAX, max(1, math.ceil((12 if laplace else 6) * s)))) for s in S]
    width = 2 * max(halves) + 3
    cdf = np.zeros((N_SCALES, width), dtype=np.int64)
    n = np.zeros(N_SCALES, dtype=np.int64)
    for j, (s, R) in enumerate(zip(S, halves)):
        v = np.arange(-R, R + 1, dtype=np.float64)
        cdf_of = _laplace_cdf if laplace else _normal_cdf
        pmf = cdf_of((v + 0.5) / s) - cdf_of((v - 0.5) / s)
        tail = max(1.0 - pmf.sum(), 0.0)
        c = quantized_cdf(np.append(pmf, tail))
        cdf[j, :c.size] = c
        cdf[j, c.size:] = c[-1]
        n[j] = c.size - 1
    return cdf, n, np.array(halves, dtype=np.int64)


def narrow_tables(count: int, width: int, conditional: str = "laplace") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` tables narrower than the scale table's first, made as :func:`gaussian_tables`
    makes its own, at scales ``s_{-k} = exp(ln 0.11 - k (ln 256 - ln 0.11)/63)``, k = 1 ..
    ``count`` (the scale table continued down; each table narrower than the one before), rows
    ``width`` wide.  The hyperprior never names them (its scales stop at 0.11); a context model's
    remap may, for values that are almost always 0 (a zero costs 0.0155 bits in the narrowest
    table of the scale table, 0.00007 in the narrowest of these)."""
    step = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (N_SCALES - 1)
    cdf_of = _laplace_cdf if conditional == "laplace" else _normal_cdf
    cdf = np.zeros((count, width), dtype=np.int64)
    n = np.zeros(count, dtype=np.int64)
    off = np.zeros(count, dtype=np.int64)
    for k in range(count):
        s = math.exp(math.log(SCALE_MIN) - (k + 1) * step)
        R = int(max(1, math.ceil((12 if conditional == "laplace" else 6) * s)))
        v = np.arange(-R, R + 1, dtype=np.float64)
        pmf = cdf_of((v + 0.5) / s) - cdf_of((v - 0.5) / s)
        c = quantized_cdf(np.append(pmf, max(1.0 - pmf.sum(), 0.0)))
        cdf[k, :c.size] = c
        cdf[k, c.size:] = c[-1]
        n[k], off[k] = c.size - 1, R
    return cdf, n, off


def z_tables(model: CompactHyperprior) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pmf = model.z_prior.pmf_table(Z_HALF).numpy()               # (C, 2 * Z_HALF + 1)
    C = pmf.shape[0]
    cdf = np.zeros((C, 2 * Z_HALF + 3), dtype=np.int64)
    for c in range(C):
        tail = max(1.0 - pmf[c].sum(), 0.0)
        cdf[c] = quantized_cdf(np.append(pmf[c], tail))
    return cdf, np.full(C, 2 * Z_HALF + 2, dtype=np.int64), np.full(C, Z_HALF, dtype=np.int64)


def _layers(model: CompactHyperprior) -> list[tuple[str, torch.nn.Module]]:
    out = []
    for m in model.h_s:
        if isinstance(m, torch.nn.ConvTranspose2d):
            out.append(("deconv", m))
        elif isinstance(m, torch.nn.Conv2d):
            out.append(("conv", m))
    return out


def integer_h_s(model: CompactHyperprior) -> dict[str, torch.Tensor]:
    """Integer weights, biases and shifts of h_s (tensors for the weights file)."""
    t = {}
    for i, (kind, m) in enumerate(_layers(model)):
        w = m.weight.detach().double()
        fw = int(min(24, math.floor(math.log2((2 ** W_BITS - 1) / max(float(w.abs().max()), 1e-12)))))
        t[f"hs_int.{i}.weight"] = torch.round(w * 2 ** fw).to(torch.int16)
        t[f"hs_int.{i}.bias"] = torch.round(m.bias.detach().double() * 2 ** (fw + FA)).to(torch.int64)
        t[f"hs_int.{i}.shift"] = torch.tensor([fw], dtype=torch.int32)
    return t


def gain_tables(model: CompactHyperprior) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer gains on the 1/8 rate grid (rows = rate index * RATE_STEPS) and float inverse gains."""
    R = len(model.cfg.lambdas)
    r = torch.arange((R - 1) * RATE_STEPS + 1, dtype=torch.float32) / RATE_STEPS
    with torch.no_grad():
        g, ig = model.gains(r)
    gi = torch.round(g[:, :, 0, 0].double() * 2 ** GAIN_BITS).to(torch.int32)
    if model.cfg.transform == "cdf97":       # tied: the inverse of the very gain the encoder multiplies by
        return gi, (2.0 ** GAIN_BITS / gi.double()).float()
    return gi, ig[:, :, 0, 0].float()


# The integer h_s's convolutions, one matrix product per kernel tap added into the output: the
# same integers as F.conv2d / F.conv_transpose2d (every partial sum is exact), without their
# unfolded copy of the input (taps x channels x positions: ~1 GB of float64 on a 12-Mpx image).

def _conv_exact(a: torch.Tensor, W: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """F.conv2d(a, W, stride=stride, padding=pad) for a (1, Ci, H, W) float64 of integers.  A
    stride-1 convolution (h_s's only one) runs on the padded rows' full width: each tap's input
    is then one contiguous stretch of the flattened rows (no copy), and the k - 1 columns past
    each row's end are dropped; any other stride is left to F.conv2d."""
    if stride != 1:
        return F.conv2d(a, W, None, stride=stride, padding=pad)
    co, ci, k, _ = W.shape
    ap = F.pad(a[0], (pad, pad, pad, pad))
    hp, wp = ap.shape[1], ap.shape[2]
    ho, wo = hp - k + 1, wp - k + 1
    flat = ap.reshape(ci, hp * wp)
    n = (ho - 1) * wp + wo
    out = torch.zeros(co, ho * wp, dtype=torch.float64)
    for dy in range(k):
        for dx in range(k):
            off = dy * wp + dx
            out[:, :n].addmm_(W[:, :, dy, dx], flat[:, off:off + n])
    return out.view(co, ho, wp)[None, :, :, :wo]


def _deconv_exact(a: torch.Tensor, W: torch.Tensor, stride: int, pad: int, out_pad: int) -> torch.Tensor:
    """F.conv_transpose2d(a, W, stride=stride, padding=pad, output_padding=out_pad) for a (1, Ci,
    H, W) float64 of integers (W: (Ci, Co, k, k))."""
    ci, co, k, _ = W.shape
    h, w = a.shape[2], a.shape[3]
    x = a[0].reshape(ci, h * w)
    full = torch.zeros(co, (h - 1) * stride + k + out_pad, (w - 1) * stride + k + out_pad, dtype=torch.float64)
    for dy in range(k):
        for dx in range(k):
            t = (W[:, :, dy, dx].T @ x).view(co, h, w)
            full[:, dy:dy + stride * (h - 1) + 1:stride, dx:dx + stride * (w - 1) + 1:stride] += t
    ho = (h - 1) * stride - 2 * pad + k + out_pad
    wo = (w - 1) * stride - 2 * pad + k + out_pad
    return full[None, :, pad:pad + ho, pad:pad + wo]


@dataclass
class ExactTables:
    """Everything the coder needs, as loaded from a weights file (numpy int64)."""
    hs: list[tuple[str, torch.Tensor, torch.Tensor, int, int, int]]   # kind, W (f64), B (f64), shift, stride, pad
    gain: np.ndarray            # (rates, M) int64
    inv_gain: np.ndarray        # (rates, M) float32
    y_cdf: np.ndarray
    y_n: np.ndarray
    y_off: np.ndarray
    y_bits: np.ndarray          # entropy of each Gaussian table (bits)
    z_cdf: np.ndarray
    z_n: np.ndarray
    z_off: np.ndarray
    thresholds: np.ndarray      # (S,) fixed-point scale table
    ctx: tuple | None = None    # the coder's context (a model that extends a wavelet model)
    zctx: tuple | None = None   # the hyper-latent's context tables (dnaimg.zoo.zcontext)

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], model: CompactHyperprior) -> "ExactTables":
        hs = []
        for i, (kind, m) in enumerate(_layers(model)):
            hs.append((kind, t[f"hs_int.{i}.weight"].double(), t[f"hs_int.{i}.bias"].double(),
                       int(t[f"hs_int.{i}.shift"][0]), m.stride[0], m.padding[0]))
        y_cdf = t["tables.y_cdf"].numpy().astype(np.int64)
        y_n = t["tables.y_n"].numpy().astype(np.int64)
        return cls(hs, t["tables.gain"].numpy().astype(np.int64), t["tables.inv_gain"].numpy(),
                   y_cdf, y_n, t["tables.y_off"].numpy().astype(np.int64),
                   np.array([table_bits(y_cdf[j], int(y_n[j])) for j in range(len(y_n))]),
                   t["tables.z_cdf"].numpy().astype(np.int64), t["tables.z_n"].numpy().astype(np.int64),
                   t["tables.z_off"].numpy().astype(np.int64), t["tables.thresholds"].numpy().astype(np.int64))

    def h_s(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer hyper-latent (1, N, h, w) -> (mu, sigma) at FA fractional bits, int64 (1, M, 4h, 4w)."""
        a = torch.from_numpy(np.asarray(z, dtype=np.float64) * float(1 << FA))
        last = len(self.hs) - 1
        for i, (kind, W, B, fw, stride, pad) in enumerate(self.hs):
            if kind == "deconv":
                o = _deconv_exact(a, W, stride, pad, stride - 1)
            else:
                o = _conv_exact(a, W, stride, pad)
            o = o.add_(B.view(1, -1, 1, 1)).div_(float(1 << fw)).floor_()      # in place: the same values
            if i < last:
                o = o.relu_()
            a = o.clamp_(-ACT_MAX, ACT_MAX)
        out = a.numpy().astype(np.int64)
        M = out.shape[1] // 2
        return out[:, :M], np.abs(out[:, M:])

    def rate_row(self, rate_index: float) -> int:
        row = int(round(rate_index * RATE_STEPS))
        if not 0 <= row < self.gain.shape[0] or abs(row - rate_index * RATE_STEPS) > 1e-6:
            raise ValueError(f"rate index {rate_index} is not on the 1/{RATE_STEPS} grid of the model")
        return row

    def gained(self, mu: np.ndarray, sigma: np.ndarray, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Means (FA fixed point) and scale-table indexes of the gained latent."""
        B, M, h, w = mu.shape
        mu_g, idx = _gained(np.ascontiguousarray(mu, dtype=np.int64).reshape(B * M, h * w),
                            np.ascontiguousarray(sigma, dtype=np.int64).reshape(B * M, h * w),
                            np.tile(self.gain[row].astype(np.int64), B), np.ascontiguousarray(self.thresholds))
        return mu_g.reshape(B, M, h, w), idx.reshape(B, M, h, w)


@nb.njit(cache=True, nogil=True, parallel=True)
def _gained(mu, sigma, gain, thresholds):
    """Per row c (a channel): floor(mu * gain[c] / 2**GAIN_BITS), and the index in ``thresholds``
    of floor(sigma * gain[c] / 2**GAIN_BITS) (the first threshold >= it, at most the last one);
    integers only (floor division as numpy's), in one pass and in parallel."""
    C, P = mu.shape
    mu_g = np.empty((C, P), dtype=np.int64)
    idx = np.empty((C, P), dtype=np.int64)
    last = thresholds.shape[0] - 1
    div = 1 << GAIN_BITS
    for c in nb.prange(C):
        g = gain[c]
        for q in range(P):
            mu_g[c, q] = (mu[c, q] * g) // div
            i = np.searchsorted(thresholds, (sigma[c, q] * g) // div)
            idx[c, q] = i if i < last else last
    return mu_g, idx


def export_tensors(model: CompactHyperprior) -> dict[str, torch.Tensor]:
    """The weights file's tensors: float weights (fp16) and the exact integer tables."""
    t = {k: v.detach().half() for k, v in model.state_dict().items() if not k.startswith("h_s.")}
    t.update(integer_h_s(model))
    g, ig = gain_tables(model)
    t["tables.gain"] = g
    t["tables.inv_gain"] = ig
    yc, yn, yo = gaussian_tables(model.cfg.conditional)
    zc, zn, zo = z_tables(model)
    t.update({"tables.y_cdf": torch.from_numpy(yc.astype(np.int32)), "tables.y_n": torch.from_numpy(yn.astype(np.int32)),
              "tables.y_off": torch.from_numpy(yo.astype(np.int32)), "tables.z_cdf": torch.from_numpy(zc.astype(np.int32)),
              "tables.z_n": torch.from_numpy(zn.astype(np.int32)), "tables.z_off": torch.from_numpy(zo.astype(np.int32)),
              "tables.thresholds": torch.from_numpy(np.ceil(scale_table() * (1 << FA)).astype(np.int64))})
    return t


def load_tensors(model: CompactHyperprior, t: dict[str, torch.Tensor]) -> ExactTables:
    """Float weights into ``model``, tables out.  The file holds h_s only as integers: the model's
    float h_s gets their values (``W / 2**Fw``, ``B / 2**(Fw + FA)``), which the codec never runs
    (the integer network replaces it) but training started from a shipped model does."""
    sd = model.state_dict()
    def post_layers(keys) -> set[str]:
        return {k.rsplit(".", 1)[0] for k in keys if k.startswith("g_s.post.")}
    if post_layers(t) != post_layers(sd):     # (the card says how deep the post-filter is)
        raise ValueError(f"the weights hold a post-filter of {len(post_layers(t))} layers, the card says "
                         f"{len(post_layers(sd))}")
    def predictors(keys) -> set[str]:
        return {k.rsplit(".", 1)[0] for k in keys if k.startswith("predict.")}
    if predictors(t) != predictors(sd):       # (and whether the wavelet has lifting predictors)
        raise ValueError(f"the weights hold {len(predictors(t))} lifting predictor layers, the card says "
                         f"{len(predictors(sd))}")
    missing = [k for k in sd if not k.startswith("h_s.") and k not in t]
    if missing:
        raise ValueError(f"weights file lacks {missing[:3]}")
    with torch.no_grad():
        for k, v in sd.items():
            if k.startswith("h_s."):
                continue
            if tuple(t[k].shape) != tuple(v.shape):
                raise ValueError(f"weights file: {k} has shape {tuple(t[k].shape)}, not {tuple(v.shape)}")
            v.copy_(t[k].to(v.dtype))
        for i, (_, m) in enumerate(_layers(model)):
            fw = int(t[f"hs_int.{i}.shift"][0])
            if tuple(t[f"hs_int.{i}.weight"].shape) != tuple(m.weight.shape):
                raise ValueError(f"weights file: hs_int.{i} has shape {tuple(t[f'hs_int.{i}.weight'].shape)}, "
                                 f"not {tuple(m.weight.shape)}")
            m.weight.copy_((t[f"hs_int.{i}.weight"].double() / 2 ** fw).to(m.weight.dtype))
            m.bias.copy_((t[f"hs_int.{i}.bias"].double() / 2 ** (fw + FA)).to(m.bias.dtype))
    return ExactTables.from_tensors(t, model)


def _data_description(data) -> list[str] | str:
    """What a model card says the run trained on: each folder by its last parts, or the
    subfolders of one folder; a folder made by scripts/device_data.py names its sources."""
    if isinstance(data, list):
        return ["/".join(Path(d).parts[-3:]) for d in data]
    d = Path(data)
    if not d.is_dir():
        return str(data)
    if (d / "SOURCES").is_file():
        return [line.strip() for line in (d / "SOURCES").read_text().splitlines() if line.strip()]
    subs = [str(p.relative_to(d)) for p in sorted(d.iterdir()) if p.is_dir()]
    return subs or ["/".join(d.parts[-3:])]


def export_compact(run_dir: str | Path, name: str, out_dir: str | Path | None = None, notes: str = "") -> Path:
    """Checkpoint of a compact run -> models/NAME.safetensors + NAME.json card."""
    from safetensors.torch import save_file

    from dnaimg.zoo.registry import models_dir, sha256_file

    state = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True, map_location="cpu")
    cfg = CompactConfig.from_dict(state["config"])
    model = CompactHyperprior(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    out = Path(out_dir) if out_dir else models_dir()
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in export_tensors(model).items()}, str(wpath))
    data_desc = _data_description(state["data"])
    card = {
        "name": name,
        "codec": "compact",
        "architecture": {"class": "CompactHyperprior", "type": "mean-scale hyperprior with gain units",
                         **cfg.to_dict(),
                         "reference": "Minnen, Balle & Toderici 2018 (mean-scale, no context model); "
                                      "Cui et al. 2021 (gain units); integer h_s after Balle, Johnston & Minnen 2019"},
    }
    if cfg.transform == "cdf97":
        card["architecture"]["type"] = ("JPEG 2000's CDF 9/7 wavelet (4 levels, 256 values per 16x16 block) with a learned "
                                        "residual post-filter; hyperprior with Laplacian conditionals (mean for LL4 only) "
                                        "and gain units (inverse gains tied)")
        card["architecture"]["reference"] += "; ITU-T T.800 Annex F (the 9/7 lifting wavelet)"
    card.update({
        "rate_points": [{"index": i, "lambda": lam} for i, lam in enumerate(cfg.lambdas)],
        "training": {
            "data": data_desc,
            "preprocessing": ("downscaled by 2 (Lanczos) when >= 2x crop; random crops and flips"
                              if state.get("downscale", True) else "full-size random crops and flips")
                             + ("; colour images converted to luma" if cfg.gray else ""),
            **({"initialised_from": state["init"]} if state.get("init") else {}),
            "steps": int(state["step"]), "planned_steps": int(state["steps"]), "batch": int(state["batch"]),
            "crop": int(state["crop"]), "seed": int(state["seed"]), "lr": float(state["lr"]),
            "loss": "lambda[r] * 255^2 * MSE + bits per pixel, r drawn per sample; uniform noise for the rate, "
                    "straight-through rounding around the mean for the decoder",
            "erasures": state.get("erasures"),
            "optimizer": "Adam, cosine learning-rate decay, gradient norm clipped at 1",
            "precision": (f"bf16 autocast on {'GPU' if state.get('device', 'cpu') != 'cpu' else 'CPU'}"
                          if state.get("bf16", True) else "fp32"),
            "wall_time_min": round(float(state["wall"]) / 60, 1), "hardware": state.get("hardware", "2 CPU cores (AMD EPYC)"),
        },
        "weights_sha256": sha256_file(wpath),
    })
    sessions = state.get("sessions") or []
    if len({tuple(str(x.get(k)) for k in ("batch", "crop", "lr", "hardware")) for x in sessions}) > 1:
        card["training"]["sessions"] = sessions        # the run changed machine or settings on the way
    if notes:
        card["training"]["notes"] = notes
    cpath = out / f"{name}.json"
    if cpath.exists():          # keep measured numbers and the command of an earlier export
        old = json.loads(cpath.read_text())
        for k in ("kodak", "command"):
            if k in old:
                card[k] = old[k]
        if "command" in old.get("training", {}):
            card["training"]["command"] = old["training"]["command"]
    cpath.write_text(json.dumps(card, indent=2) + "\n")
    return wpath
