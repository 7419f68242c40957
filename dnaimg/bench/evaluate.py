"""Evaluate a shipped model through the whole DNA path on a folder of images.

    python -m dnaimg.bench.evaluate --images KODAK_DIR                  # noiseless
    python -m dnaimg.bench.evaluate --images KODAK_DIR --sub-rate 0.03   # through a channel
    python -m dnaimg.bench.evaluate --images KODAK_DIR --preset paper --sub-rate 0.05
    python -m dnaimg.bench.evaluate --images KODAK_DIR --update-card      # write into the card
    python -m dnaimg.bench.evaluate --images KODAK_DIR --model cae32-mr:r050   # one operating point

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

from dnaimg.dna.channel import Channel, simulate
from dnaimg.codecs.robust import decode_reads, encode_image, to_tensor
from dnaimg.image import DATA_SUFFIXES, load_image, psnr
from dnaimg.zoo.registry import DEFAULT_MODEL, models_dir



def msssim(a: np.ndarray, b: np.ndarray) -> float:
    with torch.no_grad():
        return float(ms_ssim(to_tensor(a), to_tensor(b), data_range=1.0))


def evaluate(images: list[Path], model: str | None = None, channel: Channel | None = None, seed: int = 0,
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
        dec = decode_reads(reads, precision="fp32")
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
    return {"model": model or DEFAULT_MODEL, "images": len(rows), "channel": None if channel is None else channel.__dict__,
            "mean": mean, "per_image": rows}


def select_points(model: str, images: list[Path], progress=None) -> list[dict]:
    """Measure every operating point of a multi-rate model on ``images`` (the network alone:
    compress, decompress) and keep those on the rate/PSNR Pareto front, named by their payload
    rate (``r050`` = 0.50 nt/pixel) with their PSNR as ``select_psnr_db``.  Meant for training
    images: Kodak stays for evaluation."""
    from dnaimg.codecs.robust import reconstruct
    from dnaimg.zoo.registry import card, load_model, operating_points
    net, _ = load_model(model)
    pts = operating_points(card(model))
    scores = {p.name: [] for p in pts}
    for path in images:
        img = load_image(path)
        x = to_tensor(img)
        with torch.no_grad():
            z = net.analysis(x)
        for p in pts:
            s = net.to_symbols(z[:, : p.channels], p.levels)[0].numpy()
            scores[p.name].append(psnr(img, reconstruct(s, model, img.shape[:2], p.levels)))
        if progress:
            progress(path)
    rows = [{"channels": p.channels, "levels": p.levels, "codeword_nt": p.codeword_nt,
             "rate": p.payload_nt_per_pixel, "select_psnr_db": round(float(np.mean(scores[p.name])), 3)} for p in pts]
    front = [r for r in rows if not any(o["rate"] <= r["rate"] and o["select_psnr_db"] > r["select_psnr_db"]
                                        for o in rows if o is not r)]
    front.sort(key=lambda r: r["rate"])
    for r in front:
        r["name"] = f"r{round(100 * r.pop('rate')):03d}"
    for r in rows:
        r.pop("rate", None)
    return front


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="folder of images")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="NAME or NAME:POINT (an operating point)")
    ap.add_argument("--preset", default=None, help="channel preset (dnaimg.channel.PRESETS); rates below override")
    ap.add_argument("--sub-rate", type=float, default=None)
    ap.add_argument("--ins-rate", type=float, default=0.0)
    ap.add_argument("--del-rate", type=float, default=0.0)
    ap.add_argument("--coverage", type=float, default=10.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--update-card", action="store_true", help="store the noiseless means in the model card")
    ap.add_argument("--select-points", action="store_true",
                    help="measure every operating point of --model on --images (training images) and keep "
                         "the Pareto-optimal ones in its card")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    a = ap.parse_args(argv)
    images = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in DATA_SUFFIXES)[: a.limit]
    if a.select_points:
        front = select_points(a.model, images, progress=lambda p: print(p.name, flush=True))
        p = models_dir() / f"{a.model}.json"
        card = json.loads(p.read_text())
        card["operating_points"] = front
        card["default_point"] = min(front, key=lambda r: abs(r["channels"] * r["codeword_nt"] / 64 - 1.0))["name"]
        card["point_selection"] = {"images": f"{a.images} (first {len(images)}, training images)",
                                   "rule": "every trained (channels, levels) pair measured by the network alone; "
                                           "the pairs on the rate/PSNR Pareto front are kept",
                                   "command": f"python -m dnaimg.bench.evaluate --select-points --model {a.model} "
                                              f"--images {a.images} --limit {len(images)}"}
        p.write_text(json.dumps(card, indent=2) + "\n")
        for r in front:
            print(f"{r['name']}: {r['channels']} channels, {r['levels']} levels, {r['select_psnr_db']:.2f} dB")
        return
    ch = None
    if a.preset:
        from dnaimg.dna.channel import preset
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
        name, _, point = a.model.partition(":")
        p = models_dir() / f"{name}.json"
        card = json.loads(p.read_text())
        target = card
        if point:
            target = next(x for x in card["operating_points"] if x["name"] == point)
        target["kodak"] = {"images": res["images"], "payload_nt_per_pixel": round(m["payload_nt_per_pixel"], 4),
                         "total_nt_per_pixel": round(m["total_nt_per_pixel"], 4), "psnr_db": round(m["psnr_db"], 3),
                         "ms_ssim": round(m["ms_ssim"], 4),
                         "command": f"python -m dnaimg.bench.evaluate --images {a.images} --model {a.model} --update-card"}
        p.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
