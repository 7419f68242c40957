"""The one small interface every image codec implements.

A codec turns an image into *streams* plus a few bytes of codec metadata, and back.  It knows
nothing of DNA: the container (:mod:`dnaimg.dna.container`) writes the streams into oligos,
carries the metadata in the header oligos and gives the streams back when decoding.

Two kinds of stream:

- ``bytes``: an arbitrary byte string (a JPEG/AVIF/PNG file, an entropy-coded latent).  The
  container protects it with an inner code per oligo and an outer code across oligos; decoding
  gives it back exactly or flags it as damaged.
- ``words``: integer values ``0 <= v < levels``, each written as one fixed-length constrained
  codeword of ``codeword_nt`` nucleotides (the robust codec); a substitution costs one value.
"""
from __future__ import annotations

from dnaimg.dna.streams import Encoded, Received, Stream

__all__ = ["Encoded", "Received", "Stream", "CodecError", "RateError", "DecodeError"]


class CodecError(ValueError):
    """Unusable input for a codec (bad image, quality out of range, stream that does not decode)."""


class RateError(CodecError):
    """Even the codec's lowest quality does not fit the requested rate."""




class DecodeError(ValueError):
    """Reads from which no image can be decoded (no reads, no primers, no header, inconsistent header)."""
