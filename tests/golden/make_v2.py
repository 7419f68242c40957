"""How the format-version-2 golden files were made (dnaimg 0.2).  Run once; it refuses to overwrite:
golden files are what old DNA looks like, and must stay as they are.

    python tests/golden/make_v2.py
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dnaimg import api
from dnaimg.dna.seqio import write_fasta

HERE = Path(__file__).resolve().parent
OUT = HERE / "v2"


def main():
    if OUT.exists():
        sys.exit(f"{OUT} exists: golden files are never regenerated")
    OUT.mkdir()
    rgb = np.asarray(Image.open(HERE / "v1" / "source.png").convert("RGB"))           # 64x96 RGB
    Image.fromarray(rgb).save(OUT / "source.png")
    g = rgb[8:40, 16:64].astype(np.uint16).mean(axis=2).astype(np.uint16) * 257
    g16 = (g + np.arange(g.size, dtype=np.uint16).reshape(g.shape) % 97).astype(np.uint16)   # all 16 bits used
    Image.fromarray(g16).save(OUT / "source16.png")
    cases = [("robust", "source.png", {"model": "cae32-mr:r050", "redundancy": 0.15}),
             ("jpeg", "source.png", {"quality": 60}), ("webp", "source.png", {"quality": 60}),
             ("jpeg2000", "source.png", {"quality": 1.5}), ("avif", "source.png", {"quality": 50}),
             ("jxl", "source.png", {"quality": 80}), ("png", "source.png", {}),
             ("png", "source16.png", {}), ("jxl-lossless", "source16.png", {})]
    meta = {}
    for codec, src, kw in cases:
        img = rgb if src == "source.png" else g16
        enc = api.encode(img, codec, **kw)
        name = f"{codec}-{Path(src).stem}"
        write_fasta(OUT / f"{name}.fasta", enc.fasta_records())
        dec = api.decode(list(enc.oligos), precision="fp32")
        assert dec.exact
        entry = {"fasta": f"{name}.fasta", "codec": codec, "source": src, "options": kw,
                 "oligos": int(enc.oligos.shape[0]), "image_id": f"{enc.written.header.image_id:08x}",
                 "shape": list(dec.image.shape), "dtype": str(dec.image.dtype)}
        if codec in ("png", "jxl-lossless"):
            assert np.array_equal(dec.image, img)
            entry["lossless"] = True
        else:
            Image.fromarray(dec.image).save(OUT / f"{name}.expected.png")
            entry["expected_image"] = f"{name}.expected.png"
            entry["pixels_sha256"] = hashlib.sha256(dec.image.tobytes()).hexdigest()
        if codec == "robust":
            entry["symbols_crc"] = enc.written.header.streams[0].crc
        meta[name] = entry
    (OUT / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
