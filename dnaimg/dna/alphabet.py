"""Nucleotides as small integers: A=0, C=1, G=2, T=3 (text only at the file boundary).

With this order the complement of ``x`` is ``3 - x`` and G/C are exactly the values 1 and 2.
"""
from __future__ import annotations

import numpy as np

ALPHABET = "ACGT"
_ENC = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(ALPHABET):
    _ENC[ord(_c)] = _i
    _ENC[ord(_c.lower())] = _i
_DEC = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)

#: code used for anything that is not A/C/G/T (N, IUPAC codes, garbage)
UNKNOWN = 255


def encode(seq: str | bytes) -> np.ndarray:
    """Text -> uint8 array of 0..3; any other character becomes ``UNKNOWN`` (255)."""
    if isinstance(seq, str):
        seq = seq.encode("ascii", "replace")
    return _ENC[np.frombuffer(seq, dtype=np.uint8)]


def decode(arr: np.ndarray) -> str:
    """uint8 array of 0..3 -> text."""
    a = np.asarray(arr, dtype=np.uint8)
    if a.size and a.max() > 3:
        raise ValueError("sequence holds a value outside 0..3")
    return _DEC[a].tobytes().decode("ascii")


def decode_many(arrs: list[np.ndarray]) -> list[str]:
    """Many uint8 arrays of 0..3 -> their texts (one numpy pass for all of them)."""
    if not arrs:
        return []
    lens = np.fromiter(map(len, arrs), dtype=np.int64, count=len(arrs))
    text = decode(np.concatenate(arrs))
    ends = np.cumsum(lens).tolist()
    starts = [0] + ends[:-1]
    return [text[a:b] for a, b in zip(starts, ends)]


def revcomp(arr: np.ndarray) -> np.ndarray:
    """Reverse complement of an encoded sequence (``UNKNOWN`` stays ``UNKNOWN``)."""
    a = np.asarray(arr, dtype=np.uint8)[::-1]
    out = (3 - a).astype(np.uint8)
    out[a > 3] = UNKNOWN
    return out


def revcomp_str(seq: str) -> str:
    return decode(revcomp(encode(seq)))


def gc_fraction(arr: np.ndarray) -> float:
    a = np.asarray(arr)
    return float(np.count_nonzero((a == 1) | (a == 2))) / max(len(a), 1)
