"""Image codecs behind one small interface (see :mod:`dnaimg.codecs.base`).

Each codec has a name and a fixed id written into the DNA header: never renumber.
"""
from __future__ import annotations

from dnaimg.codecs.base import CodecError

#: name -> id in the header (format version 2)
CODEC_IDS = {"robust": 0, "jpeg": 1, "webp": 2, "jpeg2000": 3, "avif": 4, "jxl": 5, "png": 6, "jxl-lossless": 7,
             "compact": 8}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
LOSSLESS = ("png", "jxl-lossless")
ALIASES = {"jpg": "jpeg", "j2k": "jpeg2000", "jp2": "jpeg2000", "jpegxl": "jxl", "jxl_lossless": "jxl-lossless",
           "cae": "robust", "learned": "compact"}


def canonical(name: str) -> str:
    """A codec name or alias -> its name; CodecError naming the choices."""
    c = str(name).strip().lower()
    c = ALIASES.get(c, c)
    if c not in CODEC_IDS:
        raise CodecError(f"unknown codec {name!r}; choose from {', '.join(CODEC_IDS)}")
    return c


def codec_id(name: str) -> int:
    return CODEC_IDS[canonical(name)]
