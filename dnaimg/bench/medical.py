"""Gray medical images (microscopy, X-rays) under a cap of total nucleotides per pixel.

Every 8-bit gray image of each folder is encoded by every codec at the best quality whose DNA
(everything synthesised: primers, index, inner and outer codes, header copies) costs at most
``cap`` nucleotides per pixel (``dnaimg encode --rate CAP``), decoded from the oligos as written,
and compared with the original (PSNR at the 8-bit peak, MS-SSIM).  The compact codec runs once
per model named (the one-channel model, and the RGB model coding gray as R = G = B).  16-bit
images are not coded lossily here (dnaimg stores them with png by default): their rows give the
lossless png cost.  Rows are stored as they are measured; the same command resumes, and a run of
some systems (``--codecs '' --models NAME``) adds their rows to the file's others on the same
images (``--redo SYSTEM`` measures a system again, ``--fresh`` forgets every earlier row).

    python -m dnaimg.bench.medical --images MICROSCOPY_EVAL --images XRAY_EVAL --out docs/results/medical
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dnaimg import api
from dnaimg.bench.suite import Store, _mean, image_paths, msssim
from dnaimg.codecs.base import CodecError, DecodeError
from dnaimg.image import load_pixels, psnr

CODECS = ("jpeg", "webp", "jpeg2000", "avif")
CAPS = (0.1, 0.2, 0.3, 0.5)
#: compact models compared ("auto": none named, as ``dnaimg encode --codec compact`` runs: the
#: gray default with its choice of post-filter, compact.POST_FILTER_CHOICES)
MODELS = ("auto", "compact-gray-v13", "compact-gray-v10", "compact-gray-v9", "compact-gray-v8", "compact-gray-v7", "compact-gray-v6", "compact-gray-v5", "compact-gray-v4", "compact-gray-v3", "compact-gray-v2", "compact-gray-v1", "compact-ms-v1")


def _measure(img: np.ndarray, codec: str, cap: float | None, model: str | None, parity: float) -> dict:
    """One encoding at ``cap`` total nt/px (None: lossless png) and its clean decode."""
    try:
        enc = api.encode(img, codec, rate=cap, model=model, redundancy=parity)
    except CodecError as e:           # RateError included: even the lowest quality costs more
        return {"fits": False, "why": str(e)[:160]}
    r = enc.rates()
    row = {"fits": True, "total_nt_per_pixel": r["total_nt_per_pixel"],
           "payload_nt_per_pixel": r["payload_nt_per_pixel"], "oligos": r["oligos"],
           "quality": r.get("quality"), **({"model": r["model"]} if r.get("model") else {})}
    try:
        dec = api.decode([s for _, s in enc.fasta_records()], precision="fp32")
    except (DecodeError, ValueError) as e:
        return {**row, "decoded": False, "why": str(e)[:160]}
    row["decoded"] = dec.image is not None and dec.image.shape == img.shape
    if row["decoded"]:
        row["psnr_db"] = psnr(img, dec.image)
        row["ms_ssim"] = msssim(img, dec.image)
    return row


def _systems(codecs, models) -> list[tuple[str, str, str | None]]:
    """(label, codec, model) of everything compared."""
    return [(c, c, None) for c in codecs] + [(f"compact:{m}", "compact", None if m == "auto" else m) for m in models]


def bench_medical(folders: list[Path], out: str | Path, caps=CAPS, codecs=CODECS, models=MODELS,
                  parity: float = 0.15, limit: int | None = None, fresh: bool = False, progress=None,
                  redo: tuple[str, ...] = ()) -> dict:
    """``redo``: systems (labels as in the table) measured again though the file has their rows
    (after a change to that codec's encoder)."""
    systems = _systems(codecs, models)
    cfg = {"folders": [f.name if f.name not in ("eval", "train") else "/".join(f.parts[-2:]) for f in folders],
           "caps": list(caps), "systems": [s[0] for s in systems], "parity": parity,
           "format_version": api.LATEST_VERSION}
    cfg["limit"] = limit
    store = Store(out, {"bench": "medical", "config": cfg, "channel": "none (the oligos as written)"}, fresh)
    summ = lambda rows: summarise(rows)  # noqa: E731
    chosen = {}
    for folder in folders:
        chosen[folder] = image_paths(folder, limit, spread=True)
    labels = ["png"] + [s[0] for s in systems]
    store.restrict({(lab, p.name, c) for ps in chosen.values() for p in ps for lab in labels
                    for c in ["lossless"] + [f"cap {cap}" for cap in caps] if lab not in redo}, set(labels))
    # systems measured by an earlier run on the same images stay in the file and its table
    cfg["systems"] += [s for s in dict.fromkeys(r["system"] for r in store.rows) if s not in labels]
    for folder, name in zip(folders, cfg["folders"]):
        for path in chosen[folder]:
            img = load_pixels(path)
            base = {"folder": name, "image": path.name, "pixels": int(img.shape[0] * img.shape[1]),
                    "mode": "I;16" if img.dtype == np.uint16 else ("L" if img.ndim == 2 else "colour")}
            todo = [("png", "png", None, None)]
            if img.dtype == np.uint8 and img.ndim == 2:
                todo += [(lab, c, m, cap) for cap in caps for lab, c, m in systems]
            for lab, codec, model, cap in todo:
                cond = "lossless" if cap is None else f"cap {cap}"
                if store.has(lab, path.name, cond):
                    continue
                row = {**base, "system": lab, "condition": cond, "cap": cap,
                       **_measure(img, codec, cap, model, parity)}
                store.add(row, summ)
                if progress:
                    progress(1)
    store.save(summ)
    return {"meta": store.meta, "summary": summ(store.rows), "rows": store.rows}


def summarise(rows: list[dict]) -> list[dict]:
    """Means per folder, system and cap over the images every system of that cell could code
    (an image some codec cannot fit under the cap is left out of the cap's PSNR means)."""
    out = []
    keys = sorted({(r["folder"], r["system"], r["condition"]) for r in rows}, key=lambda k: (k[0], k[2], k[1]))
    for folder, system, cond in keys:
        rs = [r for r in rows if (r["folder"], r["system"], r["condition"]) == (folder, system, cond)]
        ok = [r for r in rs if r.get("psnr_db") is not None]
        out.append({"folder": folder, "system": system, "condition": cond, "images": len(rs),
                    "fits": sum(bool(r.get("fits")) for r in rs),
                    "total_nt_per_pixel": _mean(r.get("total_nt_per_pixel") for r in rs if r.get("fits")),
                    "psnr_db": _mean(r["psnr_db"] for r in ok) if len(ok) == len(rs) else None,
                    "ms_ssim": _mean(r.get("ms_ssim") for r in ok) if len(ok) == len(rs) else None})
    return out


def table(result: dict) -> str:
    """Markdown: per folder, PSNR (total nt/px) of each system at each cap, and png's lossless cost."""
    summ = result["summary"]
    lines = []
    for folder in sorted({s["folder"] for s in summ}):
        cells = [s for s in summ if s["folder"] == folder]
        caps = sorted({s["condition"] for s in cells if s["condition"] != "lossless"},
                      key=lambda c: float(c.split()[1]))
        systems = [s for s in result["meta"]["config"]["systems"]]
        png = next((s for s in cells if s["system"] == "png"), None)
        n8 = max((s["images"] for s in cells if s["condition"] != "lossless"), default=0)
        lines += [f"**{folder}** ({n8} 8-bit gray images; png lossless on all {png['images'] if png else 0}: "
                  f"{png['total_nt_per_pixel']:.2f} total nt/px)" if png else f"**{folder}**", "",
                  "| system | " + " | ".join(f"{c} nt/px" for c in caps) + " |",
                  "|---|" + "---|" * len(caps)]
        for sys_ in systems:
            row = []
            for c in caps:
                s = next((x for x in cells if x["system"] == sys_ and x["condition"] == c), None)
                if s is None:
                    row.append("")
                elif s["psnr_db"] is None:
                    row.append(f"fits {s['fits']}/{s['images']}")
                else:
                    row.append(f"{s['psnr_db']:.2f} dB ({s['total_nt_per_pixel']:.3f})")
            lines.append(f"| {sys_} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dnaimg.bench.medical", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", action="append", required=True, help="Folder of images (repeat for several).")
    ap.add_argument("--out", required=True, help="Results: OUT.json, OUT.csv and OUT.md.")
    ap.add_argument("--caps", default=",".join(map(str, CAPS)), help="Total nt/px caps.")
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--models", default=",".join(MODELS), help="Compact models (none: no compact).")
    ap.add_argument("--parity", type=float, default=0.15)
    ap.add_argument("--limit", type=int, default=None, help="N images of each folder, evenly spread.")
    ap.add_argument("--fresh", action="store_true", help="Forget earlier rows.")
    ap.add_argument("--redo", action="append", default=[], metavar="SYSTEM",
                    help="Measure this system again (a label of the table, e.g. compact:compact-gray-v5; repeatable).")
    a = ap.parse_args(argv)
    split = lambda s: [x for x in s.split(",") if x and x != "none"]  # noqa: E731
    try:
        folders = [Path(f) for f in a.images]
        from tqdm import tqdm
        bar = tqdm(desc="medical bench", disable=not sys.stderr.isatty())
        res = bench_medical(folders, a.out, [float(c) for c in split(a.caps)], split(a.codecs), split(a.models),
                            a.parity, a.limit, a.fresh, bar.update, tuple(a.redo))
        bar.close()
    except (ValueError, CodecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    md = table(res)
    Path(a.out).with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
