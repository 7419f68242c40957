"""How the format-version-4 golden file was made (the robust codec with markers, `encode --markers`).
Run once; it refuses to overwrite: golden files are what old DNA looks like, and must stay as they are.

    python tests/golden/make_v4.py
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
OUT = HERE / "v4"


def main():
    if OUT.exists():
        sys.exit(f"{OUT} exists: golden files are never regenerated")
    OUT.mkdir()
    rgb = np.asarray(Image.open(HERE / "v2" / "source.png").convert("RGB"))           # 64x96 RGB
    meta = {}
    for name, kw in (("robust-markers", {"model": "cae32-mr:r050", "markers": True, "redundancy": 0.15}),
                     ("robust-markers-r098", {"model": "cae32-mr:r098", "markers": True})):
        enc = api.encode(rgb, "robust", **kw)
        write_fasta(OUT / f"{name}.fasta", enc.fasta_records())
        dec = api.decode(list(enc.oligos), precision="fp32")
        assert dec.exact and dec.header.version == 4
        Image.fromarray(dec.image).save(OUT / f"{name}.expected.png")
        meta[name] = {"fasta": f"{name}.fasta", "codec": "robust", "source": "../v2/source.png", "options": kw,
                      "oligos": int(enc.oligos.shape[0]), "image_id": f"{enc.written.header.image_id:08x}",
                      "shape": list(dec.image.shape), "dtype": str(dec.image.dtype),
                      "expected_image": f"{name}.expected.png",
                      "pixels_sha256": hashlib.sha256(dec.image.tobytes()).hexdigest(),
                      "symbols_crc": enc.written.header.streams[0].crc}
    (OUT / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
