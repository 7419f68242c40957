"""Oligos lost beyond what the outer code rebuilds: how each codec degrades.

For every image, the robust point is encoded, and each other codec at the highest rate whose
total nucleotides fit the robust point's (per image, as the other benches match rates).  Then a
fraction of *all* oligos (headers included) is dropped uniformly at random (seeded) and the
rest decoded, one clean read per oligo.  A byte-stream codec whose stream is not exact draws no
image (except compact, whose packets decode on their own): such rows have no PSNR.

    dnaimg bench loss --images KODAK --out docs/results/loss [--codecs compact,avif] [--losses ...]
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from dnaimg import api
from dnaimg.codecs.base import CodecError, DecodeError
from dnaimg.image import load_image, psnr


def _systems(img: np.ndarray, point: str, codecs: list[str], parity: float) -> dict:
    rob = api.encode(img, "robust", model=point)
    out = {point: rob}
    rate = rob.oligos.size / (img.shape[0] * img.shape[1])
    for c in codecs:
        try:
            out[c] = api.encode(img, c, rate=rate, redundancy=parity)
        except CodecError:
            out[c] = None
    return out


def bench_loss(images: list[Path], point: str, codecs: list[str], losses: list[float], out: str | Path,
               parity: float = 0.15, seed: int = 0, progress=None) -> dict:
    rows = []
    for path in images:
        img = load_image(path)
        systems = _systems(img, point, codecs, parity)
        for f in losses:
            for name, enc in systems.items():
                row = {"system": name, "image": path.name, "loss": f}
                if enc is None:
                    rows.append({**row, "psnr_db": None, "decoded": False, "total_nt_per_pixel": None})
                    continue
                recs = [s for _, s in enc.fasta_records()]
                rng = random.Random(f"{seed}:{path.name}:{name}:{f}")
                keep = [s for s in recs if rng.random() >= f]
                row["total_nt_per_pixel"] = enc.rates()["total_nt_per_pixel"]
                try:
                    dec = api.decode(keep, precision="fp32")
                    usable = dec.image is not None and (dec.exact or dec.codec in ("robust", "compact"))
                    row.update({"decoded": bool(usable), "exact": bool(dec.exact),
                                "psnr_db": psnr(img, dec.image) if usable else None})
                except (DecodeError, ValueError) as e:
                    row.update({"decoded": False, "psnr_db": None, "error": str(e)[:120]})
                rows.append(row)
            if progress:
                progress(1)
    summary = []
    for name in dict.fromkeys(r["system"] for r in rows):
        for f in losses:
            rs = [r for r in rows if r["system"] == name and r["loss"] == f]
            ok = [r["psnr_db"] for r in rs if r["psnr_db"] is not None]
            nts = [r["total_nt_per_pixel"] for r in rs if r["total_nt_per_pixel"] is not None]
            summary.append({"system": name, "loss": f, "decoded": len(ok) / max(1, len(rs)),
                            "psnr_db": float(np.mean(ok)) if ok else None,
                            "total_nt_per_pixel": float(np.mean(nts)) if nts else float("nan")})
    res = {"meta": {"bench": "loss", "images": [p.name for p in images], "point": point, "codecs": codecs,
                    "losses": losses, "parity": parity, "seed": seed,
                    "note": "PSNR over the images that drew an image; decoded = that fraction"},
           "summary": summary, "rows": rows}
    Path(out).with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def plot_loss(res: dict, path: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(s["system"] for s in res["summary"]):
        ss = [s for s in res["summary"] if s["system"] == name and s["psnr_db"] is not None]
        ax.plot([100 * s["loss"] for s in ss], [s["psnr_db"] for s in ss], "o-", label=name)
    ax.set_xlabel("oligos lost (%)")
    ax.set_ylabel("PSNR (dB), images decoded")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
