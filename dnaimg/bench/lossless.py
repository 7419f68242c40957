"""Lossless storage on a folder of images: total nt/pixel of ``png`` and ``jxl-lossless`` in DNA,
and a check that every image comes back bit for bit from the oligos as written.

    python -m dnaimg.bench.lossless --images KODAK_DIR [--redundancy 0.15] [--out docs/results/lossless.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dnaimg import api
from dnaimg.bench.suite import image_paths
from dnaimg.image import load_pixels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--codecs", default="png,jxl-lossless")
    ap.add_argument("--redundancy", type=float, default=0.15)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rows = []
    for path in image_paths(a.images, a.limit):
        img = load_pixels(path)
        for codec in a.codecs.split(","):
            t0 = time.perf_counter()
            enc = api.encode(img, codec, redundancy=a.redundancy)
            t1 = time.perf_counter()
            dec = api.decode(list(enc.oligos))
            t2 = time.perf_counter()
            r = enc.rates()
            rows.append({"image": path.name, "codec": codec, "exact": bool(dec.exact),
                         "identical": bool(np.array_equal(dec.image, img)),
                         **{k: r[k] for k in ("total_nt_per_pixel", "payload_nt_per_pixel", "payload_bits_per_nt",
                                              "net_bits_per_nt", "oligos", "parity_oligos")},
                         "stream_bits_per_pixel": 8 * r.get("stream_bytes", 0) / (img.shape[0] * img.shape[1]),
                         "encode_s": round(t1 - t0, 2), "decode_s": round(t2 - t1, 2)})
            print(json.dumps(rows[-1]))
    summary = {}
    for codec in a.codecs.split(","):
        rr = [r for r in rows if r["codec"] == codec]
        summary[codec] = {"images": len(rr), "identical": sum(r["identical"] for r in rr),
                          **{k: float(np.mean([r[k] for r in rr])) for k in
                             ("total_nt_per_pixel", "stream_bits_per_pixel", "net_bits_per_nt", "encode_s", "decode_s")}}
    print(json.dumps(summary, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps({"config": vars(a), "summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
