"""Training of the compressive autoencoder on a folder of photographs.

Crops of ``crop`` x ``crop`` pixels are cut at random from the training images (downscaled by 2
with a Lanczos filter first when they are large enough, which hides their JPEG artefacts), with
random flips.  Loss: mean squared error of the reconstruction through the straight-through
quantiser.  Runs under bf16 autocast on the CPU, checkpoints every few minutes and resumes from
its last checkpoint.

    python -m dnaimg.train --data ../shared/data/train --out runs/cae32 --steps 20000
"""
from __future__ import annotations

import json
import math
import os
import random
import time
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
) -> Path:
    """Train (or resume) a model in folder ``out``; returns the checkpoint path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(seed)
    model = CompressiveAutoencoder(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) * 0.95 + 0.05)
    step, wall = 0, 0.0
    rng = random.Random(seed)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, wall = int(state["step"]), float(state["wall"])
        rng.seed(seed + step)
        print(f"resumed at step {step}", flush=True)
    images = load_training_images(data, crop)
    print(f"{len(images)} training images, config {cfg.to_dict()}", flush=True)

    def save():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "wall": wall, "config": cfg.to_dict(), "data": str(data),
                    "batch": batch, "crop": crop, "seed": seed, "steps": steps}, tmp)
        os.replace(tmp, ckpt_path)

    model.train()
    last_ckpt = time.time()
    t0 = time.time()
    acc, n_acc = 0.0, 0
    while step < steps:
        x = sample_batch(images, batch, crop, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = model(x)
        loss = torch.mean((y.float() - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        acc += loss.item()
        n_acc += 1
        if step % log_every == 0:
            now = time.time()
            wall += now - t0
            t0 = now
            print(f"step {step} loss {acc / n_acc:.5f} psnr {psnr_from_mse(acc / n_acc):.2f} "
                  f"lr {sched.get_last_lr()[0]:.2e} wall {wall / 60:.1f} min", flush=True)
            acc, n_acc = 0.0, 0
        if time.time() - last_ckpt > checkpoint_minutes * 60:
            wall += time.time() - t0
            t0 = time.time()
            save()
            last_ckpt = time.time()
    wall += time.time() - t0
    save()
    return ckpt_path


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--levels", type=int, default=9)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-bf16", action="store_true")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = ModelConfig(channels=a.channels, levels=a.levels)
    train(a.data, a.out, cfg, steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr, seed=a.seed,
          bf16=not a.no_bf16)


if __name__ == "__main__":
    main()


def export_checkpoint(run_dir: str | Path, name: str, out_dir: str | Path | None = None) -> Path:
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
        "crop": int(state["crop"]), "seed": int(state["seed"]), "loss": "MSE through straight-through quantiser",
        "optimizer": "Adam, cosine learning-rate decay", "precision": "bf16 autocast on CPU",
        "wall_time_min": round(float(state["wall"]) / 60, 1), "hardware": "2 CPU cores",
    }}
    return export(model, name, fields, out_dir)
