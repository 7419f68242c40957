"""Evaluate a shipped model through the whole DNA path on a folder of images.

    python -m dnaimg.evaluate --images ../shared/data/kodak                  # noiseless
    python -m dnaimg.evaluate --images ../shared/data/kodak --sub-rate 0.03   # through a channel
    python -m dnaimg.evaluate --images ../shared/data/kodak --preset seed --sub-rate 0.05
    python -m dnaimg.evaluate --images ../shared/data/kodak --update-card      # write into the card

Per image and averaged: payload and total nt/pixel, RGB PSNR and MS-SSIM of the image decoded
from the oligos (or from simulated reads), and encode/decode wall time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_msssim import ms_ssim

from .channel import Channel, simulate
from .codec import decode_reads, encode_image, load_image, psnr, to_tensor
from .registry import DEFAULT_MODEL, models_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def msssim(a: np.ndarray, b: np.ndarray) -> float:
    with torch.no_grad():
        return float(ms_ssim(to_tensor(a), to_tensor(b), data_range=1.0))


def evaluate(images: list[Path], model: str = DEFAULT_MODEL, channel: Channel | None = None, seed: int = 0,
             progress=None) -> dict:
    rows = []
    for i, p in enumerate(images):
        orig = load_image(p)
        t = time.perf_counter()
        enc = encode_image(orig, model=model)
        t_enc = time.perf_counter() - t
        reads = enc.oligos
        if channel is not None:
            reads, _, _ = simulate(enc.oligos, channel, seed=seed + i)
        t = time.perf_counter()
        dec = decode_reads(reads)
        t_dec = time.perf_counter() - t
        r = enc.rates()
        rows.append({"image": p.name, "payload_nt_per_pixel": r["payload_nt_per_pixel"],
                     "total_nt_per_pixel": r["total_nt_per_pixel"], "psnr_db": psnr(orig, dec.image),
                     "ms_ssim": msssim(orig, dec.image), "latent_exact": dec.report["latent_exact"],
                     "missing_oligos": dec.report["oligos"]["missing"], "encode_s": t_enc, "decode_s": t_dec})
        if progress:
            progress(rows[-1])
    keys = ["payload_nt_per_pixel", "total_nt_per_pixel", "psnr_db", "ms_ssim", "encode_s", "decode_s"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean["missing_oligos"] = float(np.mean([r["missing_oligos"] for r in rows]))
    mean["latent_exact_fraction"] = float(np.mean([r["latent_exact"] for r in rows]))
    return {"model": model, "images": len(rows), "channel": None if channel is None else channel.__dict__,
            "mean": mean, "per_image": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="folder of images")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--preset", default=None, help="channel preset (dnaimg.channel.PRESETS); rates below override")
    ap.add_argument("--sub-rate", type=float, default=None)
    ap.add_argument("--ins-rate", type=float, default=0.0)
    ap.add_argument("--del-rate", type=float, default=0.0)
    ap.add_argument("--coverage", type=float, default=10.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--update-card", action="store_true", help="store the noiseless means in the model card")
    a = ap.parse_args(argv)
    images = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    ch = None
    if a.preset:
        from .channel import preset
        ch = preset(a.preset, sub=a.sub_rate, dropout=a.dropout or None)
    elif a.sub_rate is not None or a.ins_rate or a.del_rate or a.dropout:
        ch = Channel(sub=a.sub_rate or 0.0, ins=a.ins_rate, dels=a.del_rate, coverage=a.coverage,
                     dropout=a.dropout).validate()
    res = evaluate(images, a.model, ch, a.seed, progress=lambda r: print(
        f"{r['image']}: {r['payload_nt_per_pixel']:.3f}/{r['total_nt_per_pixel']:.3f} nt/px, "
        f"{r['psnr_db']:.2f} dB, MS-SSIM {r['ms_ssim']:.4f}, enc {r['encode_s']:.2f} s, dec {r['decode_s']:.2f} s",
        flush=True))
    m = res["mean"]
    print(f"mean over {res['images']} images: payload {m['payload_nt_per_pixel']:.3f} nt/px, total "
          f"{m['total_nt_per_pixel']:.3f} nt/px, PSNR {m['psnr_db']:.2f} dB, MS-SSIM {m['ms_ssim']:.4f}, "
          f"missing oligos {m['missing_oligos']:.1f}, latent exact {m['latent_exact_fraction']:.0%}, "
          f"encode {m['encode_s']:.2f} s, decode {m['decode_s']:.2f} s")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))
    if a.update_card:
        if ch is not None:
            raise SystemExit("--update-card stores noiseless numbers only")
        p = models_dir() / f"{a.model}.json"
        card = json.loads(p.read_text())
        card["kodak"] = {"images": res["images"], "payload_nt_per_pixel": round(m["payload_nt_per_pixel"], 4),
                         "total_nt_per_pixel": round(m["total_nt_per_pixel"], 4), "psnr_db": round(m["psnr_db"], 3),
                         "ms_ssim": round(m["ms_ssim"], 4),
                         "command": f"python -m dnaimg.evaluate --images {a.images} --model {a.model} --update-card"}
        p.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
