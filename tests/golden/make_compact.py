"""Write the compact codec's golden file (run once; never regenerate: the file must decode forever).

    DNAIMG_MODELS=tests/golden/compact-model python tests/golden/make_compact.py
"""
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dnaimg import api
from dnaimg.dna.seqio import write_fasta

HERE = Path(__file__).resolve().parent
OUT = HERE / "compact"


def write_golden(out: Path, name: str, img: np.ndarray, source: str, model: str, quality: float) -> None:
    """out/NAME.fasta (the image coded with ``model`` at ``quality``, 15 % outer code), the image it
    decodes to (NAME.expected.png) and out/golden.json; refuses to overwrite a golden file."""
    enc = api.encode(img, "compact", model=model, quality=quality, redundancy=0.15)
    fasta = out / f"{name}.fasta"
    if fasta.exists():
        raise SystemExit(f"{fasta} exists: golden files are never regenerated")
    write_fasta(fasta, enc.fasta_records())
    dec = api.decode([s for _, s in enc.fasta_records()])
    Image.fromarray(dec.image).save(out / f"{name}.expected.png")
    meta = {name: {
        "fasta": fasta.name, "codec": "compact", "source": source, "model": model,
        "options": {"quality": quality, "redundancy": 0.15}, "oligos": int(enc.oligos.shape[0]),
        "image_id": f"{enc.written.header.image_id:08x}", "shape": list(dec.image.shape), "dtype": "uint8",
        "expected_image": f"{name}.expected.png",
        "stream_crcs": [s.crc for s in enc.written.header.streams],
        "pixels_sha256": hashlib.sha256(dec.image.tobytes()).hexdigest()}}
    (out / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")


def main():
    img = np.asarray(Image.open(HERE / "v2" / "source.png").convert("RGB"))
    write_golden(OUT, "compact-source", img, "../v2/source.png", "compact-tiny", 5)


if __name__ == "__main__":
    main()
