"""The DNA layer: it knows nothing of images.

- :mod:`.alphabet`: nucleotides as integers 0..3 (A, C, G, T) and text at the file boundary;
- :mod:`.constraints`: the biochemical constraints every oligo satisfies;
- :mod:`.codebook`, :mod:`.repair`: fixed-length constrained codewords and nearest-Hamming repair;
- :mod:`.index`: the RS-protected oligo index; :mod:`.header`: the header oligos;
- :mod:`.bytecode`, :mod:`.outer`: bytes in DNA (inner code per oligo, outer code across oligos);
- :mod:`.container`: streams -> oligos -> streams; :mod:`.reads`, :mod:`.consensus`: reads to
  per-oligo estimates; :mod:`.channel`: the synthesis/sequencing simulator; :mod:`.seqio`: FASTA/FASTQ;
- pools of many images: :mod:`.primers` (the primer set), :mod:`.pool` (reads of several primer
  pairs -> each image's streams), :mod:`.mixture` (never a blend: tags holding two images),
  :mod:`.distributed` (the same on a Dask cluster).
"""
from .alphabet import ALPHABET, UNKNOWN, decode, decode_many, encode, gc_fraction, revcomp, revcomp_str

__all__ = ["ALPHABET", "UNKNOWN", "decode", "decode_many", "encode", "gc_fraction", "revcomp", "revcomp_str"]
