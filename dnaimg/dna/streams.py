"""Streams: what a codec hands the DNA container, and what the container gives back.

- ``bytes``: an arbitrary byte string (a JPEG/AVIF/PNG file, an entropy-coded latent).  The
  container protects it with an inner code per oligo and an outer code across oligos; decoding
  gives it back exactly or says it is damaged.
- ``words``: integer values ``0 <= v < levels``, each written as one fixed-length constrained
  codeword of ``codeword_nt`` nucleotides (the robust codec); a substitution costs one value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Stream:
    kind: str                           # "bytes" or "words"
    data: bytes | np.ndarray            # bytes, or a flat int64 array of values
    codeword_nt: int = 0                # words: nucleotides per value
    levels: int = 0                     # words: number of distinct values
    redundancy: float | None = None     # outer code for this stream (None: the one asked for the image)
    markers: bool = False               # words: known marker nucleotides between codewords (format version 4)

    def __post_init__(self):
        if self.kind not in ("bytes", "words"):
            raise ValueError(f"unknown stream kind {self.kind!r}")
        if self.markers and self.kind != "words":
            raise ValueError("markers are for words streams")

    @property
    def size(self) -> int:
        """Bytes, or values."""
        return len(self.data)


@dataclass
class Encoded:
    """What a codec hands the container."""
    codec: str                          # registered codec name (its id travels in the header)
    streams: list[Stream]
    meta: bytes = b""                   # codec metadata, carried in the header (at most ~150 bytes)
    info: dict = field(default_factory=dict)   # for reports only (quality, model, ...): not stored


@dataclass
class Received:
    """A stream as the container got it back from the reads."""
    kind: str
    data: bytes | np.ndarray            # bytes (damaged parts as read or zero), or values (-1: unknown)
    exact: bool                         # its CRC32 matches the one encoded
    erased: np.ndarray | None = None    # per value (words) or byte (bytes): lost, not rebuilt
    report: dict = field(default_factory=dict)
