"""PSNR through a simulated sequencing run against the clean decode (issue 12's target: the robust
codec near r050 within 1.5 dB of its clean PSNR at nanopore 10x with 2 % of the oligos lost).
Numbers for the notes; not a test.

    python -m dnaimg.bench.nanopore_psnr IMAGE... [--model cae32-mr:r050] [--preset nanopore]
        [--coverage 10] [--dropout 0.02] [--seeds 0,1]

Each image is encoded once (``--codec robust``), decoded from its clean oligos, then from the
reads of each seed; a decode that fails counts as lost (listed with its error).
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
    ap.add_argument("--coverage", type=float, default=10)
    ap.add_argument("--dropout", type=float, default=0.02)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from dnaimg import api
    from dnaimg.dna import alphabet as dna
    from dnaimg.dna.channel import preset, simulate
    ch = preset(a.preset, coverage=a.coverage, dropout=a.dropout)
    rows = []
    for path in a.images:
        img = np.asarray(Image.open(path).convert("RGB"))
        enc = api.encode(img, a.codec, model=a.model)
        clean = psnr(api.decode([dna.decode(o) for o in enc.oligos]).image, img)
        for seed in [int(s) for s in a.seeds.split(",")]:
            reads, _, _ = simulate(list(enc.oligos), ch, seed=seed)
            t = time.perf_counter()
            try:
                res = api.decode([dna.decode(r) for r in reads])
                got, err = psnr(res.image, img), None
            except Exception as e:          # a lost image is a result here
                got, err = float("nan"), f"{type(e).__name__}: {e}"
            rows.append({"image": Path(path).name, "seed": seed, "oligos": len(enc.oligos), "reads": len(reads),
                         "clean_psnr": clean, "psnr": got, "drop_db": clean - got,
                         "decode_s": time.perf_counter() - t, "error": err})
            print(json.dumps(rows[-1]), flush=True)
    drops = np.array([r["drop_db"] for r in rows])
    summary = {"preset": a.preset, "coverage": a.coverage, "dropout": a.dropout, "model": a.model,
               "mean_clean_psnr": float(np.mean([r["clean_psnr"] for r in rows])),
               "mean_drop_db": float(np.nanmean(drops)) if np.isfinite(drops).any() else None,
               "worst_drop_db": float(np.nanmax(drops)) if np.isfinite(drops).any() else None,
               "lost": int(np.isnan(drops).sum()), "runs": len(rows)}
    print(json.dumps(summary, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
