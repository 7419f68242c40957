"""PSNR through a simulated sequencing run against the clean decode (issue 12's target: the robust
codec near r050 within 1.5 dB of its clean PSNR at nanopore 10x with 2 % of the oligos lost).
Numbers for the notes; not a test.

    python -m dnaimg.bench.nanopore_psnr IMAGE... [--model cae32-mr:r050] [--preset nanopore]
        [--coverage 10 | --coverage 2,3,5,10] [--dropout 0.02] [--seeds 0,1] [--markers]

Each image is encoded once (``--codec robust``), decoded from its clean oligos, then from the
reads of each seed and coverage; a decode that fails counts as lost (listed with its error).
``--markers``: the robust codec's marker code (``dnaimg encode --markers``); the summary per
coverage gives the total nt/px, to compare with another operating point at the same cost.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


from dnaimg.image import psnr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--codec", default="robust")
    ap.add_argument("--model", default="cae32-mr:r050")
    ap.add_argument("--preset", default="nanopore")
    ap.add_argument("--coverage", default="10", help="one coverage, or several separated by commas")
    ap.add_argument("--markers", action="store_true", help="robust codec: write a marker code")
    ap.add_argument("--dropout", type=float, default=0.02)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from dnaimg import api
    from dnaimg.dna import alphabet as dna
    from dnaimg.dna.channel import preset, simulate
    coverages = [float(c) for c in str(a.coverage).split(",")]
    rows = []
    for path in a.images:
        img = np.asarray(Image.open(path).convert("RGB"))
        enc = api.encode(img, a.codec, model=a.model, markers=a.markers)
        clean = psnr(api.decode([dna.decode(o) for o in enc.oligos]).image, img)
        for cov, seed in [(c, int(s)) for c in coverages for s in a.seeds.split(",")]:
            reads, _, _ = simulate(list(enc.oligos), preset(a.preset, coverage=cov, dropout=a.dropout), seed=seed)
            t = time.perf_counter()
            try:
                res = api.decode([dna.decode(r) for r in reads])
                got, err = psnr(res.image, img), None
            except Exception as e:          # a lost image is a result here
                got, err = float("nan"), f"{type(e).__name__}: {e}"
            rows.append({"image": Path(path).name, "coverage": cov, "seed": seed, "oligos": len(enc.oligos),
                         "total_nt_per_pixel": enc.rates()["total_nt_per_pixel"], "reads": len(reads),
                         "clean_psnr": clean, "psnr": got, "drop_db": clean - got,
                         "decode_s": time.perf_counter() - t, "error": err})
            print(json.dumps(rows[-1]), flush=True)
    per = []
    for cov in coverages:
        sel = [r for r in rows if r["coverage"] == cov]
        drops = np.array([r["drop_db"] for r in sel])
        got = np.array([r["psnr"] for r in sel])
        per.append({"preset": a.preset, "coverage": cov, "dropout": a.dropout, "model": a.model, "markers": a.markers,
                    "total_nt_per_pixel": float(np.mean([r["total_nt_per_pixel"] for r in sel])),
                    "mean_clean_psnr": float(np.mean([r["clean_psnr"] for r in sel])),
                    "mean_psnr": float(np.nanmean(got)) if np.isfinite(got).any() else None,
                    "mean_drop_db": float(np.nanmean(drops)) if np.isfinite(drops).any() else None,
                    "worst_drop_db": float(np.nanmax(drops)) if np.isfinite(drops).any() else None,
                    "lost": int(np.isnan(drops).sum()), "runs": len(sel)})
    summary = per[0] if len(per) == 1 else per
    print(json.dumps(summary, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
