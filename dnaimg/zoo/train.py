"""Training of the compressive autoencoder on a folder of photographs.

Crops of ``crop`` x ``crop`` pixels are cut at random from the training images (downscaled by 2
with a Lanczos filter first when they are large enough, which hides their JPEG artefacts), with
random flips.  Loss: mean squared error of the reconstruction through the straight-through
quantiser.  Runs under bf16 autocast on the CPU, checkpoints every few minutes and resumes from
its last checkpoint.

    dnaimg train --data TRAIN_DIR --out runs/cae32 --steps 20000 [--export NAME]
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dnaimg.image import DATA_SUFFIXES
from dnaimg.zoo.model import CompressiveAutoencoder, ModelConfig



class TrainingDataError(ValueError):
    """The training data cannot be used (no image, none large enough for the crop)."""


def load_training_images(folder: str | Path | list, min_side: int, downscale: bool = True) -> list[np.ndarray]:
    """All images below ``folder`` (or below each of a list of folders) as uint8 HxWx3 arrays, at
    least ``min_side`` on each side, read as the codecs read them (:func:`dnaimg.image.load_image`:
    16-bit scaled to 8 bits, gray and palette as RGB).  Unreadable files are skipped with a line
    on standard error."""
    from dnaimg.image import ImageError, load_image
    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    paths = sorted(p for f in folders for p in Path(f).rglob("*") if p.suffix.lower() in DATA_SUFFIXES)
    images, bad = [], []
    for p in paths:
        try:
            a = load_image(p)
        except ImageError as e:
            bad.append(str(e))
            continue
        if downscale and min(a.shape[:2]) // 2 >= min_side:
            im = Image.fromarray(a)
            a = np.asarray(im.resize((im.width // 2, im.height // 2), Image.LANCZOS), dtype=np.uint8)
        if min(a.shape[:2]) >= min_side:
            images.append(np.ascontiguousarray(a))
    if bad:
        print(f"skipped {len(bad)} unreadable file(s), e.g. {bad[0]}", file=sys.stderr, flush=True)
    if not images:
        raise TrainingDataError(f"no usable training image (>= {min_side} px) under {folder}")
    return images


def crop_plan(images: list, batch: int, crop: int, rng: random.Random) -> list[tuple[int, int, int, bool, bool]]:
    """Per sample of a batch: (image, top, left, flip left-right, flip up-down)."""
    plan = []
    for _ in range(batch):
        i = rng.randrange(len(images))
        y = rng.randrange(images[i].shape[0] - crop + 1)
        x = rng.randrange(images[i].shape[1] - crop + 1)
        plan.append((i, y, x, rng.random() < 0.5, rng.random() < 0.5))
    return plan


def sample_batch(images: list[np.ndarray], batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    out = np.empty((batch, crop, crop, 3), dtype=np.uint8)
    for k, (i, y, x, lr, ud) in enumerate(crop_plan(images, batch, crop, rng)):
        c = images[i][y:y + crop, x:x + crop]
        out[k] = c[::-1 if ud else 1, ::-1 if lr else 1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def psnr_from_mse(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def soft_entropy(z: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Differentiable estimate of the entropy of Q(z) in base 4 (nucleotides per component):
    a soft histogram over the quantiser's levels per channel, entropy averaged over channels."""
    q = cfg.q
    centres = torch.linspace(-1.0, 1.0, cfg.levels, device=z.device)
    d = (z.float().unsqueeze(-1) - centres) / (q / 2)
    w = torch.softmax(-d * d, dim=-1)                                   # (N, C, H, W, L)
    p = w.mean(dim=(0, 2, 3)).clamp_min(1e-9)                           # (C, L)
    return -(p * torch.log(p)).sum(dim=1).mean() / math.log(4.0)


@dataclass
class NoiseSchedule:
    """Substitution noise injected on the quantised latent during training.

    kind: "none", "exact" (values drawn from the codebook's transition matrix, the real channel)
    or "gaussian" (the seed paper's model, with the same mean squared error); the rate rises
    linearly from 0 to ``p_max`` over the first ``ramp`` fraction of the steps."""
    kind: str = "none"
    p_max: float = 0.05
    ramp: float = 0.5
    codeword_nt: int = 0
    erasures: bool = False       # also lose values with their oligo (exact channel, multi-rate only)
    mix: bool = False            # each step's rate drawn uniformly in [0, current maximum]

    def sample(self, step: int, steps: int, rng: random.Random) -> float:
        p = self.rate(step, steps)
        return p * rng.random() if self.mix else p

    def rate(self, step: int, steps: int) -> float:
        if self.kind == "none":
            return 0.0
        return self.p_max * min(1.0, step / max(1.0, self.ramp * steps))


def _noisy_latent(model: CompressiveAutoencoder, z: torch.Tensor, noise: NoiseSchedule, p: float, cb,
                  gen: torch.Generator) -> torch.Tensor:
    zq = model.quantize_ste(z)
    if noise.kind == "none" or p <= 0:
        return zq
    if noise.kind == "exact":
        from dnaimg.zoo.noise import sample_channel, transition_matrix
        T = torch.tensor(transition_matrix(cb, p), dtype=torch.float32)
        s = sample_channel(model.to_symbols(z.detach().float()), T, gen)
        noisy = model.from_symbols(s).to(zq.dtype)
        return zq + (noisy - zq).detach()
    from dnaimg.zoo.noise import gaussian_sigma
    sigma = gaussian_sigma(cb, p)
    return zq + sigma * torch.randn(zq.shape, generator=gen).to(zq.dtype)


@dataclass
class MultiRate:
    """One network for several operating points ("slimmable" latent, after Dumas et al.: the rate
    is set at test time).  Each training sample draws a number of kept channels ``k`` (the rest
    are zeroed, so the encoder learns to put what matters first) and a number of levels ``L``
    (q = 2/(L-1)); the loss gives each (k, L) pair equal weight in dB: every sample's MSE is
    divided by a running mean of the MSE of its pair."""
    channels: tuple[int, ...] = ()
    levels: tuple[int, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.channels or self.levels)


def erasure_rate(p: float) -> float:
    """Fraction of values lost with their oligo at substitution rate ``p``, one read per oligo
    (index decoding fails): measured on the layout, about 2 % at p = 3 % and 8 % at 5 %."""
    return min(0.2, 0.08 * (p / 0.05) ** 2.7)


def _fill_like_decoder(v: torch.Tensor, erased: torch.Tensor) -> torch.Tensor:
    """Erased values take the mean of their known 4-neighbours, as :func:`codec.fill_erasures`
    does (one round; isolated erasures, which the interleaver makes the common case)."""
    known = (~erased).to(v.dtype)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=v.dtype).view(1, 1, 3, 3)
    C = v.shape[1]
    k = k.repeat(C, 1, 1, 1)
    s = F.conv2d(v * known, k, padding=1, groups=C)
    c = F.conv2d(known, k, padding=1, groups=C)
    return torch.where(erased, s / c.clamp_min(1.0), v)


def _multirate_latent(z: torch.Tensor, ks: torch.Tensor, Ls: torch.Tensor, noise: "NoiseSchedule", p: float,
                      gen: torch.Generator) -> torch.Tensor:
    """Per-sample quantisation with L levels, channel truncation to k, optional channel noise."""
    from dnaimg.dna.codebook import get_codebook
    from dnaimg.zoo.noise import gaussian_sigma, sample_channel, transition_matrix
    from dnaimg.zoo.registry import default_codeword_nt
    N, C = z.shape[:2]
    q = (2.0 / (Ls.float() - 1.0)).view(N, 1, 1, 1)
    zf = z.float()
    sym = torch.floor((zf.detach() + 1.0) / q + 0.5).clamp_(min=0).minimum((Ls - 1).view(N, 1, 1, 1).float())
    zq = sym * q - 1.0
    if noise.kind != "none" and p > 0:
        noisy = zq.clone()
        for L in torch.unique(Ls).tolist():
            sel = Ls == L
            cb = get_codebook(default_codeword_nt(L), L)
            qq = 2.0 / (L - 1)
            if noise.kind == "exact":
                T = torch.tensor(transition_matrix(cb, p), dtype=torch.float32)
                s = sample_channel(sym[sel].long(), T, gen).float()
                v = s * qq - 1.0
                if noise.erasures:
                    e = erasure_rate(p)
                    erased = torch.rand(v.shape, generator=gen) < e
                    v = _fill_like_decoder(v, erased)
                    v = torch.floor((v + 1.0) / qq + 0.5) * qq - 1.0
                noisy[sel] = v
            else:
                noisy[sel] = zq[sel] + gaussian_sigma(cb, p) * torch.randn(zq[sel].shape, generator=gen)
        zq = noisy
    mask = (torch.arange(C).view(1, C) < ks.view(N, 1)).float().view(N, C, 1, 1)
    return (zf + (zq - zf).detach()) * mask


def train(
    data: str | Path,
    out: str | Path,
    cfg: ModelConfig,
    steps: int = 20000,
    batch: int = 16,
    crop: int = 128,
    lr: float = 2e-4,
    seed: int = 0,
    checkpoint_minutes: float = 5.0,
    bf16: bool = True,
    log_every: int = 50,
    lam: float = 0.0,
    noise: NoiseSchedule | None = None,
    init: str | None = None,
    freeze_encoder: bool = False,
    progress: bool = False,
    multirate: MultiRate | None = None,
) -> Path:
    """Train (or resume) a model in folder ``out``; returns the checkpoint path.

    Loss: MSE + ``lam`` * H(Q(z)) (base-4 entropy, :func:`soft_entropy`), through the
    straight-through quantiser and the optional channel noise.  ``init`` starts from a shipped
    model's weights (fine-tuning); ``freeze_encoder`` trains the decoder only."""
    from dnaimg.dna.codebook import get_codebook
    from dnaimg.zoo.registry import default_codeword_nt, load_model

    noise = noise or NoiseSchedule()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(seed)
    model = CompressiveAutoencoder(cfg)
    if init:
        base, _ = load_model(init)
        if (base.cfg.channels, base.cfg.width, base.cfg.res_blocks) != (cfg.channels, cfg.width, cfg.res_blocks):
            raise ValueError(f"--init model {init} has config {base.cfg}, not {cfg}")
        model.load_state_dict(base.state_dict())
    if freeze_encoder:
        for prm in model.encoder.parameters():
            prm.requires_grad_(False)
    cb = get_codebook(noise.codeword_nt or default_codeword_nt(cfg.levels), cfg.levels)
    params = [prm for prm in model.parameters() if prm.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) * 0.95 + 0.05)
    step, wall = 0, 0.0
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, wall = int(state["step"]), float(state["wall"])
        rng.seed(seed + step)
        gen.manual_seed(seed + step)
        print(f"resumed at step {step}", flush=True)
    images = load_training_images(data, crop)
    mr = multirate or MultiRate()
    mr_k = list(mr.channels or (cfg.channels,))
    mr_L = list(mr.levels or (cfg.levels,))
    if max(mr_k) > cfg.channels or min(mr_k) < 1 or any(L % 2 == 0 or L < 3 for L in mr_L):
        raise ValueError("multi-rate channels must be within 1..channels and levels odd >= 3")
    mse_ema: dict[tuple[int, int], float] = state.get("mse_ema", {}) if ckpt_path.exists() else {}
    mse_ema = {tuple(int(x) for x in str(k).split(",")): float(v) for k, v in mse_ema.items()}
    print(f"{len(images)} training images, config {cfg.to_dict()}, noise {noise}, lambda {lam}, "
          f"multi-rate {mr}", flush=True)

    def save():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "wall": wall, "config": cfg.to_dict(), "data": str(data),
                    "batch": batch, "crop": crop, "seed": seed, "steps": steps, "lam": lam, "lr": lr,
                    "noise": asdict(noise), "init": init or "", "freeze_encoder": freeze_encoder,
                    "multirate": asdict(mr), "mse_ema": {f"{k[0]},{k[1]}": v for k, v in mse_ema.items()}}, tmp)
        os.replace(tmp, ckpt_path)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=step, desc="training", dynamic_ncols=True)
    model.train()
    if freeze_encoder:
        model.encoder.eval()
    last_ckpt = time.time()
    t0 = time.time()
    acc, acc_h, n_acc = 0.0, 0.0, 0
    while step < steps:
        x = sample_batch(images, batch, crop, rng)
        p = noise.sample(step, steps, rng)
        if mr.enabled:
            ks = torch.tensor([mr_k[rng.randrange(len(mr_k))] for _ in range(batch)])
            Ls = torch.tensor([mr_L[rng.randrange(len(mr_L))] for _ in range(batch)])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = model.analysis(x)
            if mr.enabled:
                zq = _multirate_latent(z, ks, Ls, noise, p, gen).to(z.dtype)
            else:
                zq = _noisy_latent(model, z, noise, p, cb, gen)
            y = model.synthesis(zq, x.shape[-2:])
        if mr.enabled:
            per = torch.mean((y.float() - x) ** 2, dim=(1, 2, 3))
            mse = per.mean()
            w = []
            for i in range(batch):
                key = (int(ks[i]), int(Ls[i]))
                m = mse_ema.get(key, float(per[i].detach()))
                mse_ema[key] = 0.99 * m + 0.01 * float(per[i].detach())
                w.append(1.0 / max(mse_ema[key], 1e-6))
            wt = torch.tensor(w)
            loss = (per * wt).sum() / wt.sum()
        else:
            mse = torch.mean((y.float() - x) ** 2)
            loss = mse
        h = torch.zeros(())
        if lam > 0:
            h = soft_entropy(z, cfg)
            loss = mse + lam * h
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        acc += mse.item()
        acc_h += float(h.detach())
        n_acc += 1
        if bar is not None:
            bar.update(1)
        if step % log_every == 0:
            now = time.time()
            wall += now - t0
            t0 = now
            msg = (f"step {step} loss {acc / n_acc:.5f} psnr {psnr_from_mse(acc / n_acc):.2f} "
                   f"H {acc_h / n_acc:.3f} nt p {p:.4f} lr {sched.get_last_lr()[0]:.2e} wall {wall / 60:.1f} min")
            if bar is not None:
                bar.set_postfix_str(f"psnr {psnr_from_mse(acc / n_acc):.2f} H {acc_h / n_acc:.3f} p {p:.3f}")
            else:
                print(msg, flush=True)
            acc, acc_h, n_acc = 0.0, 0.0, 0
        if time.time() - last_ckpt > checkpoint_minutes * 60:
            wall += time.time() - t0
            t0 = time.time()
            save()
            last_ckpt = time.time()
    wall += time.time() - t0
    save()
    if bar is not None:
        bar.close()
    return ckpt_path


def export_checkpoint(run_dir: str | Path, name: str, out_dir: str | Path | None = None, notes: str = "") -> Path:
    """Checkpoint of a run -> shipped fp16 safetensors + model card (training facts filled in)."""
    from dnaimg.zoo.registry import export

    state = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)
    cfg = ModelConfig(**state["config"])
    model = CompressiveAutoencoder(cfg)
    model.load_state_dict(state["model"])
    data = Path(state["data"])
    fields = {"training": {
        "data": [str(p.relative_to(data)) for p in sorted(data.iterdir()) if p.is_dir()] if data.is_dir() else str(data),
        "data_root": "../shared/data/train", "preprocessing": "downscaled by 2 (Lanczos) when >= 2x crop; random crops and flips",
        "steps": int(state["step"]), "planned_steps": int(state["steps"]), "batch": int(state["batch"]),
        "crop": int(state["crop"]), "seed": int(state["seed"]), "lr": float(state.get("lr", 2e-4)),
        "loss": "MSE through straight-through quantiser",
        "optimizer": "Adam, cosine learning-rate decay", "precision": "bf16 autocast on CPU",
        "wall_time_min": round(float(state["wall"]) / 60, 1), "hardware": "2 CPU cores",
    }}
    nz = state.get("noise", {})
    if nz.get("kind", "none") != "none":
        fields["noise_trained"] = True
        fields["training"]["noise"] = {
            "kind": nz["kind"], "p_max": nz["p_max"], "ramp": nz["ramp"], "erasures": nz.get("erasures", False),
            "what": ("values drawn from the codebook's exact transition matrix at substitution rate p per nt"
                     if nz["kind"] == "exact" else "Gaussian noise with the exact channel's mean squared error")
            + ("; plus values lost with their oligo at the one-read-per-oligo rate, filled from neighbours"
               if nz.get("erasures") else "")
            + f"; p rises linearly from 0 to {nz['p_max']} over the first {nz['ramp']:.0%} of the steps"}
    if state.get("init"):
        fields["training"]["init"] = state["init"]
    if state.get("freeze_encoder"):
        fields["training"]["decoder_only"] = True
    mr = state.get("multirate") or {}
    if mr.get("channels") or mr.get("levels"):
        fields["training"]["multirate"] = mr
        fields["training"]["loss"] = ("per-sample MSE through the straight-through quantiser, each sample with a "
                                      "random (kept channels, levels) pair, weighted by 1 / running MSE of its pair")
        fields["operating_points"] = multirate_points(mr.get("channels") or [cfg.channels],
                                                      mr.get("levels") or [cfg.levels])
        fields["q"] = "per operating point (2 / (levels - 1))"
        fields["codeword_nt"] = "per operating point"
        fields["default_point"] = min(fields["operating_points"],
                                      key=lambda p: abs(p["channels"] * p["codeword_nt"] / 64 - 1.0))["name"]
    if notes:
        fields["training"]["notes"] = notes
    return export(model, name, fields, out_dir)


def multirate_points(channels, levels) -> list[dict]:
    """Named operating points of a multi-rate model: every (kept channels, levels) pair trained,
    named by payload rate (``r050`` = 0.50 nt/pixel) plus its parameters when several share it."""
    from dnaimg.zoo.registry import default_codeword_nt
    pts = []
    for k in sorted(channels):
        for L in sorted(levels):
            n = default_codeword_nt(L)
            pts.append({"channels": int(k), "levels": int(L), "codeword_nt": n, "q": round(2 / (L - 1), 5)})
    for p in pts:
        p["name"] = f"k{p['channels']}l{p['levels']}"
    return pts


def main(argv=None):
    """``python -m dnaimg.zoo.train`` is ``dnaimg train``."""
    from dnaimg.cli import train_cmd
    train_cmd.main(args=argv, prog_name="python -m dnaimg.zoo.train")


if __name__ == "__main__":
    main()
