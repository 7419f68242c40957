"""Write the golden file of the shipped wavelet model compact-gray-v3 (run once; never regenerate:
the file must decode forever with that model's weights).

    python tests/golden/make_compact_wave.py
"""
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dnaimg import api
from dnaimg.dna.seqio import write_fasta

HERE = Path(__file__).resolve().parent
OUT = HERE / "compact-wave"


def main():
    src = HERE / "v2" / "source.png"
    img = np.asarray(Image.open(src).convert("L"))
    enc = api.encode(img, "compact", model="compact-gray-v3", quality=4, redundancy=0.15)
    fasta = OUT / "gray-source.fasta"
    if fasta.exists():
        raise SystemExit(f"{fasta} exists: golden files are never regenerated")
    write_fasta(fasta, enc.fasta_records())
    dec = api.decode([s for _, s in enc.fasta_records()])
    Image.fromarray(dec.image).save(OUT / "gray-source.expected.png")
    meta = {"gray-source": {
        "fasta": fasta.name, "codec": "compact", "source": "../v2/source.png (as gray, Pillow 'L')",
        "model": "compact-gray-v3", "options": {"quality": 4, "redundancy": 0.15}, "oligos": int(enc.oligos.shape[0]),
        "image_id": f"{enc.written.header.image_id:08x}", "shape": list(dec.image.shape), "dtype": "uint8",
        "expected_image": "gray-source.expected.png",
        "stream_crcs": [s.crc for s in enc.written.header.streams],
        "pixels_sha256": hashlib.sha256(dec.image.tobytes()).hexdigest()}}
    (OUT / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
