"""Training of the compact learned codec (:mod:`dnaimg.zoo.compact`).

One network for every rate: each training sample draws a rate index r and the loss is
``lambda[r] * 255^2 * MSE + bits per pixel`` (rate from the hyperprior's likelihoods, additive
uniform noise for the rate term, straight-through rounding around the predicted mean for the
decoder).  A fraction of the samples also lose a random fraction of their latent values, which
then decode as the predicted mean, as they do when oligos are lost beyond what the outer code
rebuilds.  Checkpoints every few minutes and resumes from its last checkpoint.

    dnaimg train --arch compact --data TRAIN_DIR --out runs/compact --steps 40000 [--export NAME]
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dnaimg.zoo.compact import CompactConfig, CompactHyperprior
from dnaimg.zoo.registry import ModelError
from dnaimg.zoo.train import crop_plan, load_training_images, psnr_from_mse, sample_batch


@dataclass
class ErasureTraining:
    p_sample: float = 0.2        # fraction of samples that lose latent values
    max_fraction: float = 0.3    # each such sample loses U(0, max_fraction) of its values


PACE_WARM = 5       # with a time budget: steps before the pace is measured (first-call set-up) ...
PACE_STEPS = 40     # ... and over how many steps


def _device_batch(images: list[torch.Tensor], batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    """:func:`dnaimg.zoo.train.sample_batch` for images already on an accelerator (HxWx3 uint8
    tensors): the same crops and flips for the same ``rng``, cut there."""
    out = []
    for i, y, x, lr, ud in crop_plan(images, batch, crop, rng):
        c = images[i][y:y + crop, x:x + crop]
        dims = ([1] if lr else []) + ([0] if ud else [])
        out.append(c.flip(dims) if dims else c)
    return torch.stack(out).permute(0, 3, 1, 2).float().div_(255.0)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


LUMA = (0.299, 0.587, 0.114)


def init_state(model: CompactHyperprior, source: str | Path) -> str:
    """Start ``model`` from a compact model's weights: a checkpoint file or a shipped model's name.
    An RGB source starts a gray model exactly as the RGB network would code a gray image (R = G = B
    in, luma out): the first layer's weights are summed over the colours and the last layer's
    outputs combined with the luma weights.  Returns a line for the model card."""
    src = Path(source)
    state = None
    if src.suffix == ".pt" and src.exists():
        state = _read_checkpoint(src)
        sd, what = state["model"], f"checkpoint {src.name} at step {int(state.get('step', 0))}"
    else:
        from dnaimg.codecs.compact import load
        m, _, c = load(str(source))
        sd, what = m.state_dict(), f"shipped model {source} ({c['training'].get('steps', '?')} steps)"
    sd = dict(sd)
    src_cfg = state["config"] if state is not None else c["architecture"]
    src_t = src_cfg.get("transform", "gdn")
    if src_t != model.cfg.transform:
        raise ModelError(f"cannot start a {model.cfg.transform} model from a {src_t} one")
    if src_t == "cdf97":
        if src_cfg.get("gray", False) != model.cfg.gray:
            raise ModelError("cannot start a cdf97 model from one with another number of image planes")
    else:
        sd, what = _gdn_from(model, sd, src_cfg, what)
    if model.cfg.context and not src_cfg.get("context", False):
        for k in ("ctx_a", "ctx_b"):        # a context in the rate, from a model without: starts as none
            sd[k] = model.state_dict()[k]
        what += ", context in the rate from zero"
    src_l = src_cfg["lambdas"]
    if list(src_l) != list(model.cfg.lambdas):
        for k in ("log_gain", "log_inv_gain"):
            sd[k] = _regain(sd[k], src_l, model.cfg.lambdas)
        what += f", gains moved from lambdas {list(src_l)}"
    try:
        model.load_state_dict(sd)
    except RuntimeError:
        raise ModelError(f"cannot start from {source}: its network is not this one's shape "
                         f"(this one: {model.cfg.to_dict()})") from None
    return what


def _gdn_from(model: CompactHyperprior, sd: dict, src_cfg: dict, what: str) -> tuple[dict, str]:
    """A gdn source's weights for ``model``: folded from RGB to gray, GDN reparametrised, the
    latent widened, as ``model`` needs."""
    first, last, last_b = "g_a.0.weight", f"g_s.{len(model.g_s) - 1}.weight", f"g_s.{len(model.g_s) - 1}.bias"
    want = model.cfg.in_channels
    if sd[first].shape[1] != want:
        if not (sd[first].shape[1] == 3 and want == 1):
            raise ModelError(f"cannot start a {want}-channel model from a {sd[first].shape[1]}-channel one")
        luma = torch.tensor(LUMA, dtype=sd[last].dtype)
        sd[first] = sd[first].sum(dim=1, keepdim=True)
        sd[last] = (sd[last] * luma.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        sd[last_b] = (sd[last_b] * luma).sum().view(1)
        what += ", folded from RGB to one channel"
    src_gdn = src_cfg.get("gdn", "relu")
    if src_gdn != model.cfg.gdn:
        if (src_gdn, model.cfg.gdn) != ("relu", "square"):
            raise ModelError(f"cannot start a {model.cfg.gdn} GDN from a {src_gdn} one")
        from dnaimg.zoo.compact import GDN_OFF_DIAGONAL
        for k in [k for k in sd if k.endswith(".gamma")]:
            g = torch.sqrt(torch.relu(sd[k]))
            sd[k] = torch.where(g > 0, g, torch.full_like(g, GDN_OFF_DIAGONAL))
        what += ", GDN weights as squares (cross-channel terms now train)"
    have_M, want_M = sd["g_a.6.weight"].shape[0], model.cfg.M
    if have_M != want_M and sd["g_a.6.weight"].shape[1] == model.cfg.N:
        if want_M < have_M:
            raise ModelError(f"cannot start a {want_M}-channel latent from a {have_M}-channel one (only wider)")
        sd = widen_latent(sd, model)
        what += f", latent widened from {have_M} to {want_M} channels (the new ones silent at first)"
    return sd, what


def widen_latent(sd: dict, model: CompactHyperprior, seed: int = 0) -> dict:
    """``sd`` (a narrower latent) for ``model``'s wider one, the function and the rate kept: the
    new latent channels start silent (a zero analysis row, mean 0 and the smallest scale, so every
    symbol is 0 and costs nothing) while the synthesis reads them with random weights, so that the
    first gradients reach their analysis rows and they grow where they pay.  h_s's new hidden
    units start with random inputs and zero outputs (alive, without effect); new gains are the old
    channels' mean.  Everything else is the narrower network's."""
    want = {k: v.shape for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    sd = dict(sd)
    M, M2 = sd["g_a.6.weight"].shape[0], want["g_a.6.weight"][0]
    H, H2 = sd["h_s.2.weight"].shape[1], want["h_s.2.weight"][1]

    def grow(t: torch.Tensor, dim: int, n: int, fill: str) -> torch.Tensor:
        """``t`` with ``n`` more entries along ``dim``: zeros, or random at the spread of ``t``."""
        shape = list(t.shape)
        shape[dim] = n
        if fill == "zero":
            extra = torch.zeros(shape, dtype=t.dtype)
        else:
            extra = (t.float().std() * torch.randn(shape, generator=gen)).to(t.dtype)
        return torch.cat([t, extra], dim=dim)

    sd["g_a.6.weight"] = grow(sd["g_a.6.weight"], 0, M2 - M, "zero")
    sd["g_a.6.bias"] = grow(sd["g_a.6.bias"], 0, M2 - M, "zero")
    sd["g_s.0.weight"] = grow(sd["g_s.0.weight"], 0, M2 - M, "random")
    sd["h_a.0.weight"] = grow(sd["h_a.0.weight"], 1, M2 - M, "zero")
    sd["h_s.0.weight"] = grow(sd["h_s.0.weight"], 1, M2 - M, "random")
    sd["h_s.0.bias"] = grow(sd["h_s.0.bias"], 0, M2 - M, "random")
    w = grow(sd["h_s.2.weight"], 0, M2 - M, "zero")                 # new hidden units 1: no effect ...
    sd["h_s.2.weight"] = grow(w, 1, H2 - H, "random")               # ... new hidden units 2: alive
    sd["h_s.2.bias"] = grow(sd["h_s.2.bias"], 0, H2 - H, "random")
    w4, b4 = grow(sd["h_s.4.weight"], 1, H2 - H, "zero"), sd["h_s.4.bias"]
    mu_w, s_w = w4[:M], w4[M:]
    zeros_w = torch.zeros((M2 - M, *w4.shape[1:]), dtype=w4.dtype)
    sd["h_s.4.weight"] = torch.cat([mu_w, zeros_w, s_w, zeros_w])          # [means | scales]
    small = torch.full((M2 - M,), SILENT_SCALE, dtype=b4.dtype)
    sd["h_s.4.bias"] = torch.cat([b4[:M], torch.zeros(M2 - M, dtype=b4.dtype), b4[M:], small])
    for k in ("log_gain", "log_inv_gain"):
        sd[k] = torch.cat([sd[k], sd[k].mean(dim=1, keepdim=True).repeat(1, M2 - M)], dim=1)
    return sd


SILENT_SCALE = 1e-3          # h_s's scale for a new latent channel: the coder's smallest scale at any gain


SESSION_KEYS = ("batch", "crop", "lr", "bf16", "hardware", "device")


def _session_of(settings: dict, start: int, end: int) -> dict:
    """One call's share of a run: its steps and the settings it trained with."""
    return {"steps": [int(start), int(end)],
            **{k: settings.get(k, {"bf16": True, "device": "cpu"}.get(k)) for k in SESSION_KEYS}}


def _read_checkpoint(path: Path) -> dict:
    """A compact training checkpoint (fp32, fp16 or slim), or a one-line ModelError."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch.load raises many kinds on a file that is not a checkpoint
        raise ModelError(f"{path}: not a training checkpoint ({e.__class__.__name__})") from None
    if (not isinstance(state, dict) or state.get("arch", "CompactHyperprior") != "CompactHyperprior"
            or not isinstance(state.get("model"), dict) or "config" not in state
            or "log_gain" not in state["model"]):
        what = state.get("arch") if isinstance(state, dict) else None
        raise ModelError(f"{path}: not a compact-codec training checkpoint" + (f" (it is a {what} one)" if what else ""))
    return state


def _regain(rows: torch.Tensor, old: list[float], new: tuple[float, ...]) -> torch.Tensor:
    """Per-rate log-gain rows for other rate points: linear in log(lambda) between the trained
    points, and beyond them along the end segments' slopes."""
    if len(old) == 1:            # one trained point: every new point starts from its gains
        return rows[:1].repeat(len(new), 1)
    lo, ln = torch.log(torch.tensor(list(old), dtype=torch.float64)), torch.log(torch.tensor(list(new), dtype=torch.float64))
    out = []
    for x in ln:
        i = int(torch.searchsorted(lo, x).clamp(1, len(lo) - 1))
        t = float((x - lo[i - 1]) / (lo[i] - lo[i - 1]))
        out.append((1 - t) * rows[i - 1] + t * rows[i])
    return torch.stack(out).to(rows.dtype)


def _stop_on_term(signum, frame):
    raise KeyboardInterrupt


def slim_checkpoint(run_dir: str | Path, dest: str | Path) -> Path:
    """The run's checkpoint without the optimiser's moments (a third of the size): what is
    committed so that a later session resumes the run (Adam re-estimates its moments)."""
    state = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True, map_location="cpu")
    state.pop("opt", None)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dest)
    return dest


def train_compact(
    data: str | Path,
    out: str | Path,
    cfg: CompactConfig,
    steps: int = 40000,
    batch: int = 8,
    crop: int = 128,
    lr: float = 2e-4,
    seed: int = 0,
    checkpoint_minutes: float = 5.0,
    bf16: bool = True,
    log_every: int = 50,
    erasures: ErasureTraining | None = None,
    progress: bool = False,
    downscale: bool = True,
    init: str | Path | None = None,
    device: str = "cpu",
    minutes: float | None = None,
) -> Path:
    """Train (or resume) a compact model in folder ``out``; returns the checkpoint path.

    ``device``: "cpu" or an accelerator ("cuda"): the model, the training images and every batch
    live there, bf16 autocast runs there.  ``minutes``: stop after this much wall time (the
    checkpoint is saved); the learning-rate plan then ends where the time does: after a few
    steps the pace is measured and ``steps`` lowered to what fits."""
    erasures = erasures if erasures is not None else ErasureTraining()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(seed)
    dev = torch.device(device)
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    plan = {"steps": steps}          # the cosine plan's length (lowered to fit ``minutes``)

    def cosine(s):
        return 0.5 * (1 + math.cos(math.pi * min(s, plan["steps"]) / plan["steps"])) * 0.95 + 0.05

    model = CompactHyperprior(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    step, wall = 0, 0.0
    rng = random.Random(seed)
    init_from = None
    if crop % 64:
        raise ValueError(f"the crop must be a multiple of 64 px (the hyper-latent's stride), not {crop}")
    sessions: list[dict] = []        # the settings of each call that trained the run (for its card)
    if ckpt_path.exists():
        state = _read_checkpoint(ckpt_path)
        try:
            was = CompactConfig.from_dict(state["config"])
        except TypeError:
            raise ModelError(f"{ckpt_path}: its network configuration is not a compact one") from None
        if was != cfg:            # a run keeps the network it started with
            print(f"resuming with the run's own configuration {was.to_dict()}", flush=True)
            cfg = was
            model = CompactHyperprior(cfg).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            raise ModelError(f"{ckpt_path}: its weights do not fit its own configuration") from None
        if "opt" in state:          # a slim checkpoint (committed to resume from) has no optimiser moments
            opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, wall = int(state["step"]), float(state["wall"])
        sessions = list(state.get("sessions") or [_session_of(state, 0, step)])
        if deadline is not None:    # until this call's pace is measured, keep the plan the run had
            plan["steps"] = max(step + 1, min(steps, int(state.get("steps", steps))))
        init_from = state.get("init")
        sched.base_lrs = [lr]                  # the learning rate (and plan) of this call
        for g in opt.param_groups:
            g["initial_lr"] = lr
            g["lr"] = lr * cosine(step)        # the first step's too (a slim checkpoint has no optimiser)
        rng.seed(seed + step)
        torch.manual_seed(seed + step)
        print(f"resumed at step {step}", flush=True)
    elif init is not None:
        init_from = init_state(model, init)
        print(f"started from {init_from}", flush=True)
    images = load_training_images(data, crop, downscale=downscale)
    if dev.type != "cpu":        # the images on the device, cropped there
        images = [torch.from_numpy(im).to(dev) for im in images]
    lambdas = torch.tensor(cfg.lambdas, device=dev)
    R = len(cfg.lambdas)
    print(f"{len(images)} training images, config {cfg.to_dict()}, batch {batch}, crop {crop}, "
          f"erasures {erasures}, bf16 {bf16}", flush=True)

    hardware = (f"1 GPU ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                f"{torch.get_num_threads()} CPU threads ({_cpu_name()})")
    this = {"batch": batch, "crop": crop, "lr": lr, "bf16": bf16, "hardware": hardware, "device": dev.type}

    def save():
        # the run's settings are this call's once it has trained a step, else the last call's
        ran = sessions + ([_session_of(this, first, step)] if step > first else [])
        last = ran[-1] if ran else this
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "wall": wall, "config": cfg.to_dict(),
                    "data": str(data) if isinstance(data, (str, Path)) else [str(d) for d in data],
                    "seed": seed, "steps": steps, "arch": "CompactHyperprior",
                    "erasures": asdict(erasures), "init": init_from, "downscale": downscale,
                    **{k: last[k] for k in SESSION_KEYS}, "sessions": ran}, tmp)
        os.replace(tmp, ckpt_path)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=step, desc="training", dynamic_ncols=True)
    model.train()
    last_ckpt = time.time()
    t0 = time.time()
    acc = {"mse": [0.0] * R, "bpp": [0.0] * R, "n": [0] * R}
    paced_from, first = None, step
    import signal
    import threading
    on_main = threading.current_thread() is threading.main_thread()
    # "kill PID" of a background run saves it as Ctrl-C does (a shell's background job ignores SIGINT)
    was_term = signal.signal(signal.SIGTERM, _stop_on_term) if on_main else None
    try:
        while step < steps and (deadline is None or time.monotonic() < deadline):
            if deadline is not None:
                if step == first + PACE_WARM:
                    paced_from = (step, time.monotonic())
                elif paced_from is not None and step == paced_from[0] + PACE_STEPS:   # the pace known: end the plan with the time
                    per_step = max((time.monotonic() - paced_from[1]) / PACE_STEPS, 1e-6)
                    fit = int(max(0.0, deadline - time.monotonic()) / per_step)
                    plan["steps"] = steps = max(step + 1, min(steps, step + fit))
                    if bar is not None:
                        bar.total = steps
                    print(f"{per_step * 1e3:.1f} ms a step: {steps} steps in the time given", flush=True)
            x = sample_batch(images, batch, crop, rng) if dev.type == "cpu" else _device_batch(images, batch, crop, rng)
            if cfg.gray:
                x = _to_gray(x)
            r = torch.tensor([rng.randrange(R) for _ in range(batch)], device=dev)
            erase = None
            if erasures.p_sample > 0:
                h, w = crop // 16, crop // 16
                frac = torch.tensor([rng.random() * erasures.max_fraction if rng.random() < erasures.p_sample else 0.0
                                     for _ in range(batch)]).view(batch, 1, 1, 1)
                # whole latent positions, as a lost oligo takes (its packet holds runs of positions)
                erase = (torch.rand(batch, 1, h, w) < frac).to(dev).expand(batch, cfg.M, h, w)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                o = model(x, r.float(), erase)
            mse = torch.mean((o["x_hat"].float() - x) ** 2, dim=(1, 2, 3))
            npx = x.shape[-1] * x.shape[-2]
            bpp = (torch.log2(o["y_lik"]).sum(dim=(1, 2, 3)) + torch.log2(o["z_lik"]).sum(dim=(1, 2, 3))) / -npx
            loss = (lambdas[r] * 255.0 ** 2 * mse + bpp).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            # one transfer per tensor and step (each element read alone would wait on a GPU each time)
            rs, ms, bs = r.tolist(), mse.detach().tolist(), bpp.detach().tolist()
            hit = [False] * batch if erase is None else erase[:, 0].flatten(1).any(dim=1).tolist()
            for i in range(batch):
                if not hit[i]:
                    acc["mse"][rs[i]] += ms[i]
                    acc["bpp"][rs[i]] += bs[i]
                    acc["n"][rs[i]] += 1
            if bar is not None:
                bar.update(1)
            if step % log_every == 0:
                now = time.time()
                wall += now - t0
                t0 = now
                pts = " ".join(f"{acc['bpp'][i] / acc['n'][i]:.3f}/{psnr_from_mse(acc['mse'][i] / acc['n'][i]):.2f}"
                               for i in range(R) if acc["n"][i])
                msg = f"step {step} loss {float(loss.detach()):.4f} bpp/psnr {pts} lr {sched.get_last_lr()[0]:.2e} wall {wall / 60:.1f} min"
                if bar is not None:
                    bar.set_postfix_str(pts)
                else:
                    print(msg, flush=True)
                acc = {"mse": [0.0] * R, "bpp": [0.0] * R, "n": [0] * R}
            if time.time() - last_ckpt > checkpoint_minutes * 60:
                wall += time.time() - t0
                t0 = time.time()
                save()
                last_ckpt = time.time()
    except KeyboardInterrupt:        # keep what was trained since the last checkpoint
        wall += time.time() - t0
        save()
        raise
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, was_term)
    wall += time.time() - t0
    save()
    if bar is not None:
        bar.close()
    return ckpt_path
