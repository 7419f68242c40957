"""Where the compact codec loses: its quantised latent, or its transforms.

    python -m dnaimg.bench.ceiling --images DIR [--model NAME] [--limit N] [--json OUT]

(``--limit N``: N images evenly spread over the folder, as the medical bench takes them.)

For each image and each trained rate point of a compact model: the PSNR of the codec itself
(encoded to DNA and decoded from the oligos as written, with its total nt/px) and the PSNR of the
same network with the latent left unquantised, ``g_s(g_a(x) * gain * inverse gain)``: what no
entropy coding of this network can exceed at that rate point.  Where the two meet, more
nucleotides buy nothing: only better transforms (more training, more latent channels) raise the
curve.  Not a test; numbers for the README and the model cards.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dnaimg import api
from dnaimg.bench.suite import _mean, image_paths
from dnaimg.image import psnr


def ceiling_psnr(model, img: np.ndarray, rate_index: float) -> float:
    """PSNR of ``model``'s transforms on ``img`` at ``rate_index`` with an unquantised latent."""
    from dnaimg.codecs.compact import TILE_PX, _to_tensor, tiled
    from dnaimg.zoo.compact import pad_to
    x, _ = pad_to(_to_tensor(img), 64)
    g, ig = model.gains(rate_index)
    with torch.inference_mode():
        y = tiled(model.g_a, x, 16, TILE_PX, model.halo_px)
        out = tiled(model.g_s, y * g * ig, 1 / 16, TILE_PX // 16, model.halo_px // 16)[0, :, :img.shape[0], :img.shape[1]]
    rec = out.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return psnr(img, rec[..., 0] if img.ndim == 2 else rec)


def bench_ceiling(folder: str | Path, model: str, limit: int | None = None) -> dict:
    from dnaimg.codecs.compact import load
    from dnaimg.image import load_pixels
    net, _, card = load(model)
    gray = net.cfg.gray
    points = range(len(net.cfg.lambdas))
    rows = []
    for path in image_paths(folder, limit, spread=True):
        img = load_pixels(path)
        if img.dtype != np.uint8 or (gray and img.ndim == 3):      # 16-bit, or colour for a gray model
            continue
        if not gray and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        for r in points:
            enc = api.encode(img, "compact", model=model, quality=float(r))
            dec = api.decode([s for _, s in enc.fasta_records()], precision="fp32")
            rows.append({"image": path.name, "rate_index": r, "total_nt_per_pixel": enc.rates()["total_nt_per_pixel"],
                         "psnr_db": psnr(img, dec.image), "ceiling_psnr_db": ceiling_psnr(net, img, float(r))})
        print(path.name, " ".join(f"{x['psnr_db']:.2f}/{x['ceiling_psnr_db']:.2f}" for x in rows[-len(points):]),
              file=sys.stderr, flush=True)
    summary = [{"rate_index": r, **{k: _mean(x[k] for x in rows if x["rate_index"] == r)
                                    for k in ("total_nt_per_pixel", "psnr_db", "ceiling_psnr_db")}} for r in points]
    return {"model": model, "images": str(folder), "n_images": len({x["image"] for x in rows}),
            "steps": card.get("training", {}).get("steps"), "summary": summary, "rows": rows}


def main(argv=None) -> int:
    from dnaimg.codecs.compact import DEFAULT_MODEL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = bench_ceiling(a.images, a.model, a.limit)
    print("| rate index | total nt/px | PSNR (codec) | PSNR, latent unquantised | gap |")
    print("|---|---|---|---|---|")
    for s in res["summary"]:
        print(f"| {s['rate_index']} | {s['total_nt_per_pixel']:.3f} | {s['psnr_db']:.2f} | {s['ceiling_psnr_db']:.2f} | "
              f"{s['ceiling_psnr_db'] - s['psnr_db']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
