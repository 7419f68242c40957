"""Speed and memory of the compact codec (numbers for the README; not a test).

    python -m dnaimg.bench.compact_speed [--model NAME] [--kodak DIR] [--big-side 4000]

Each measurement runs in a fresh process so that its peak memory (ru_maxrss) is its own:
a Kodak image (encode + decode, after one warm-up) and a 12-Mpx photo (a Kodak image upscaled
to 4000 x 3000), encode and decode from the oligos as written, fp32.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
from dnaimg.runtime import keep_freed_memory
keep_freed_memory()         # as the command line does
import numpy as np
from PIL import Image
from dnaimg import api
from dnaimg.image import load_image, psnr
model, path, side, quality = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
img = load_image(path)
if side:
    img = np.asarray(Image.fromarray(img).resize((side, side * 3 // 4), Image.BICUBIC))
else:   # warm up (numba compilation, model load) on the same image
    enc = api.encode(img, "compact", model=model, quality=quality)
    api.decode([s for _, s in enc.fasta_records()])
t = time.perf_counter(); enc = api.encode(img, "compact", model=model, quality=quality); te = time.perf_counter() - t
mem_enc = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
reads = [s for _, s in enc.fasta_records()]
rates = enc.rates(); del enc
t = time.perf_counter(); dec = api.decode(reads, precision="fp32"); td = time.perf_counter() - t
print(json.dumps({"pixels": int(img.shape[0] * img.shape[1]), "encode_s": te, "decode_s": td,
                  "peak_gb_after_encode": mem_enc,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "exact": dec.exact, "psnr_db": psnr(img, dec.image),
                  "total_nt_per_pixel": rates["total_nt_per_pixel"], "timing_s": dec.report["timing_s"]}))
"""


def run(model: str, path: str, side: int, quality: float) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, model, path, str(side), str(quality)], capture_output=True,
                       text=True, env=os.environ.copy())
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    from dnaimg.codecs.compact import DEFAULT_MODEL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--image", default="kodim23.png")
    ap.add_argument("--big-side", type=int, default=4000)
    ap.add_argument("--quality", type=float, default=3.0, help="rate index")
    a = ap.parse_args(argv)
    path = os.path.join(a.kodak, a.image)
    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "model": a.model,
           "rate_index": a.quality, "kodak": run(a.model, path, 0, a.quality),
           "big": run(a.model, path, a.big_side, a.quality)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
