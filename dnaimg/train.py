"""Training of the compressive autoencoder on a folder of photographs.

Crops of ``crop`` x ``crop`` pixels are cut at random from the training images (downscaled by 2
with a Lanczos filter first when they are large enough, which hides their JPEG artefacts), with
random flips.  Loss: mean squared error of the reconstruction through the straight-through
quantiser.  Runs under bf16 autocast on the CPU, checkpoints every few minutes and resumes from
its last checkpoint.

    dnaimg train --data ../shared/data/train --out runs/cae32 --steps 20000 [--export NAME]
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .model import CompressiveAutoencoder, ModelConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_training_images(folder: str | Path, min_side: int, downscale: bool = True) -> list[np.ndarray]:
    """All images below ``folder`` as uint8 HxWx3 arrays, at least ``min_side`` on each side."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if downscale and min(im.size) // 2 >= min_side:
                im = im.resize((im.width // 2, im.height // 2), Image.LANCZOS)
            if min(im.size) >= min_side:
                images.append(np.asarray(im, dtype=np.uint8).copy())
    if not images:
        raise ValueError(f"no usable training image (>= {min_side} px) under {folder}")
    return images


def sample_batch(images: list[np.ndarray], batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    out = np.empty((batch, crop, crop, 3), dtype=np.uint8)
    for i in range(batch):
        img = images[rng.randrange(len(images))]
        y = rng.randrange(img.shape[0] - crop + 1)
        x = rng.randrange(img.shape[1] - crop + 1)
        c = img[y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        out[i] = c
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
        from .noise import sample_channel, transition_matrix
        T = torch.tensor(transition_matrix(cb, p), dtype=torch.float32)
        s = sample_channel(model.to_symbols(z.detach().float()), T, gen)
        noisy = model.from_symbols(s).to(zq.dtype)
        return zq + (noisy - zq).detach()
    from .noise import gaussian_sigma
    sigma = gaussian_sigma(cb, p)
    return zq + sigma * torch.randn(zq.shape, generator=gen).to(zq.dtype)


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
) -> Path:
    """Train (or resume) a model in folder ``out``; returns the checkpoint path.

    Loss: MSE + ``lam`` * H(Q(z)) (base-4 entropy, :func:`soft_entropy`), through the
    straight-through quantiser and the optional channel noise.  ``init`` starts from a shipped
    model's weights (fine-tuning); ``freeze_encoder`` trains the decoder only."""
    from .codebook import get_codebook
    from .registry import default_codeword_nt, load_model

    noise = noise or NoiseSchedule()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(seed)
    model = CompressiveAutoencoder(cfg)
    if init:
        base, _ = load_model(init)
        if base.cfg != cfg:
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
    print(f"{len(images)} training images, config {cfg.to_dict()}, noise {noise}, lambda {lam}", flush=True)

    def save():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "wall": wall, "config": cfg.to_dict(), "data": str(data),
                    "batch": batch, "crop": crop, "seed": seed, "steps": steps, "lam": lam, "lr": lr,
                    "noise": asdict(noise), "init": init or "", "freeze_encoder": freeze_encoder}, tmp)
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
        p = noise.rate(step, steps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = model.analysis(x)
            y = model.synthesis(_noisy_latent(model, z, noise, p, cb, gen), x.shape[-2:])
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
    from .registry import export

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
    if notes:
        fields["training"]["notes"] = notes
    return export(model, name, fields, out_dir)


def main(argv=None):
    """``python -m dnaimg.train`` is ``dnaimg train``."""
    from .cli import train_cmd
    train_cmd.main(args=argv, prog_name="python -m dnaimg.train")


if __name__ == "__main__":
    main()
