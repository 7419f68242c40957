"""The Python API: image -> oligos with any codec, and sequencing reads -> image.

    from dnaimg import api
    enc = api.encode("photo.png", codec="avif", rate=0.8, redundancy=0.2)
    enc.rates(); list(enc.fasta_records())
    dec = api.decode(reads)          # reads: str / uint8 arrays, or dnaimg.dna.seqio.ReadBatches(path)
    dec.image, dec.exact, dec.report

``rate`` caps the *total* nucleotides per pixel: everything that would be synthesised (primers,
indexes, header oligos, inner and outer codes).  ``redundancy``: the outer code's parity oligos
per data oligo (default 0.15 for byte-stream codecs, 0 for the robust codec).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dnaimg.codecs import CODEC_NAMES, LOSSLESS, canonical, codec_id
from dnaimg.codecs.base import CodecError, DecodeError, Encoded, RateError, Stream
from dnaimg.dna import container
from dnaimg.dna.container import DEFAULT_INNER, ContainerError, Layout, LayoutError, Written
from dnaimg.dna.header import DEFAULT_HEADER_COPIES, FORMAT_VERSION, HeaderError, HeaderV1, HeaderVersionError
from dnaimg.dna.index import HEADER_BASE
from dnaimg.image import ImageError, load_image, load_pixels
from dnaimg.zoo.model import resolve_precision



@dataclass
class EncodeResult:
    codec: str
    written: Written
    pixels: int
    info: dict = field(default_factory=dict)
    robust: object | None = None        # the robust codec's EncodeResult (latent, model), if that codec

    @property
    def oligos(self) -> np.ndarray:
        return self.written.oligos

    @property
    def names(self) -> list[str]:
        return self.written.names

    def rates(self) -> dict:
        r = self.robust.rates() if self.robust is not None else self.written.rates(self.pixels)
        return {"codec": self.codec, **self.info, **r}

    def fasta_records(self):
        return self.written.fasta_records()


def _classic():
    from dnaimg.codecs import classic
    return classic


def encode(image: str | Path | np.ndarray, codec: str = "robust", *, rate: float | None = None,
           quality: float | None = None, model: str | None = None, noise_trained: bool = False,
           redundancy: float | None = None, layout: Layout | None = None,
           copies: int = DEFAULT_HEADER_COPIES, inner: int = DEFAULT_INNER,
           progress: Callable[[int], None] | None = None) -> EncodeResult:
    """Image (file or array) -> oligos with ``codec`` (see :data:`dnaimg.codecs.CODEC_IDS`)."""
    codec = canonical(codec)
    layout = layout or Layout()
    if redundancy is not None and not 0 <= redundancy <= 4:
        raise LayoutError("redundancy must be between 0 and 4")
    if codec == "robust":
        from dnaimg.codecs import robust
        if quality is not None:
            raise CodecError("the robust codec has no --quality: choose --model NAME:POINT or --rate")
        r = robust.encode_image(image, model=model, layout=layout, header_copies=copies, progress=progress,
                                rate=rate, noise_trained=noise_trained, redundancy=redundancy, inner=inner)
        return EncodeResult(codec, r.written, r.pixels, {"model": r.model, "point": r.point.label if r.point else r.model},
                            robust=r)
    if model is not None or noise_trained:
        raise CodecError(f"--model and --noise-trained are for the robust codec, not {codec}")
    classic = _classic()
    if isinstance(image, np.ndarray):
        img = image
    else:
        img = load_pixels(image) if codec in LOSSLESS else load_image(image)
    pixels = int(img.shape[0] * img.shape[1])
    cdc = classic.get_codec(codec)
    probe_meta = bytes(classic.META_BYTES)      # only its size matters to the oligo count

    def fits(n: int) -> bool:
        enc = Encoded(codec, [Stream("bytes", b"\0" * max(1, n))], probe_meta)
        return container.total_oligos(layout, enc, redundancy, inner, copies) * layout.oligo_length <= rate * pixels
    enc = cdc.encode(img, quality=quality, fits=None if rate is None else fits)
    written = container.write(enc, codec_id(codec), layout, redundancy, inner, copies, progress=progress)
    if rate is not None and written.oligos.size > rate * pixels + 1e-9:
        raise RateError(f"{codec} does not fit {rate} total nt/px")      # a guard: the probe is exact
    return EncodeResult(codec, written, pixels, dict(enc.info))


@dataclass
class DecodeResult:
    image: np.ndarray | None
    codec: str
    header: object
    exact: bool                          # every stream's CRC32 matches the one encoded
    report: dict = field(default_factory=dict)
    symbols: np.ndarray | None = None    # the robust codec's latent


def open_reads(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None,
               read_progress: Callable[[int], None] | None = None):
    """Sort the reads and decode every image's header: (sorter, headers per tag, why not, reads per tag)."""
    from dnaimg.dna.header import find_headers
    lay = Layout(primer_f=primer_f or Layout.primer_f, primer_r=primer_r or Layout.primer_r)
    try:
        sorter = container.sort_reads(reads, lay, read_progress)
        headers, why, reads_per_tag = find_headers(sorter)
    except HeaderVersionError as e:
        raise DecodeError(f"the DNA holds format version {e.version}; this dnaimg reads versions 1 to "
                          f"{FORMAT_VERSION}") from None
    except (ContainerError, HeaderError) as e:
        raise DecodeError(str(e)) from None
    return lay, sorter, headers, why, reads_per_tag


def decode(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None, tag: int | None = None,
           precision: str = "auto", progress: Callable[[int], None] | None = None,
           read_progress: Callable[[int], None] | None = None) -> DecodeResult:
    """Reads (any order, either strand, with errors) -> image and report.  ``tag`` chooses the
    image when the reads hold several (default: the one with the most reads)."""
    precision = resolve_precision(precision)
    t0 = time.perf_counter()
    lay, sorter, headers, why, reads_per_tag = open_reads(reads, primer_f, primer_r, read_progress)
    t_sort = time.perf_counter()
    stats = sorter.stats
    if not headers:
        raise DecodeError("no header could be decoded from the reads (" + "; ".join(
            f"tag {t:02x}: {w}" for t, w in why.items()) + ")")
    if tag is None:
        tag = max(headers, key=lambda t: reads_per_tag[t])
    elif tag not in headers:
        raise DecodeError(f"no image with tag {tag:02x} in the reads (found: "
                          f"{', '.join(f'{t:02x}' for t in headers)})")
    h = headers[tag]
    if (h.primer_f_nt, h.primer_r_nt) != (len(lay.primer_f), len(lay.primer_r)):
        raise DecodeError("the header's primer lengths differ from the primers given")
    try:
        layout = Layout(oligo_length=h.oligo_length, primer_f=lay.primer_f, primer_r=lay.primer_r)
    except LayoutError as e:
        raise DecodeError(f"unusable header: {e}") from None
    symbols = None
    from dnaimg.codecs import robust
    h2 = robust.header_from_v1(h) if isinstance(h, HeaderV1) else h      # one reading path for both
    try:
        codec = CODEC_NAMES.get(h2.codec_id)
        if codec is None:
            raise DecodeError(f"the DNA holds codec id {h2.codec_id}, unknown to this dnaimg")
        received = container.read_streams(sorter, h2, layout, progress)
        t_streams = time.perf_counter()
        exact = all(r.exact for r in received)
        streams_rep = [r.report for r in received]
        _count_unknown(sorter, stats, tag, container.n_oligos(h2, layout))
        sorter = None           # the reads are done with: free them before the image is drawn
        if codec == "robust":
            image, symbols, model, params = robust.decode_streams(received, h2.meta, precision)
            r0 = received[0].report
            missing = r0["missing"]
            rparts = {"oligos": {"expected": r0["oligos"], "recovered": r0["oligos"] - missing, "missing": missing},
                      "codewords": {"total": r0["values"], "repaired": r0["codewords_repaired"],
                                    "erased": r0["values_erased"]},
                      "latent_exact": exact}
        else:
            cdc = _classic().get_codec(codec)
            image, model, params = None, None, None
            try:
                image = cdc.decode(received[0].data, h2.meta)
            except CodecError as e:
                if exact:
                    raise DecodeError(f"the {codec} stream is exact but does not decode: {e}") from None
            r0 = received[0].report
            rparts = {"oligos": {"expected": r0["oligos"], "recovered": r0["oligos"] - r0["missing"],
                                 "missing": r0["missing"]}}
    except (ContainerError, HeaderError) as e:
        raise DecodeError(str(e)) from None
    t_image = time.perf_counter()
    other = {f"{t:02x}": reads_per_tag[t] for t in reads_per_tag if t != tag}
    images = {f"{t:02x}": {"reads": reads_per_tag[t], **_size(hh)} for t, hh in headers.items()}
    info = {"codec": codec, "tag": f"{tag:02x}", "format_version": h.version}
    if image is not None:
        info.update({"height": int(image.shape[0]), "width": int(image.shape[1])})
    if params is not None:
        info.update({"model": model, "channels": params.channels, "levels": params.levels,
                     "codeword_nt": params.codeword_nt})
    report = {"reads": stats.to_dict(), **rparts, "exact": exact, "image": info, "streams": streams_rep,
              "other_tags": other, "images_present": images, "header": h.to_dict(), "precision": precision,
              "timing_s": {"reads": round(t_sort - t0, 3)}}
    if image is not None and not isinstance(h, HeaderV1):      # (version 1's header oligos are not v2's)
        report["rates"] = _rates(h, layout, int(image.shape[0] * image.shape[1]))
    report["timing_s"].update({"headers_and_oligos": round(t_streams - t_sort, 3),
                               "image": round(t_image - t_streams, 3)})
    return DecodeResult(image, codec, h, exact, report, symbols)


def _count_unknown(sorter, stats, tag: int, n_oligos: int) -> None:
    """Reads filed under an oligo number the image does not have: not used after all."""
    tags, numbers, _, counts = sorter.slot_fields()
    unknown = int(counts[(tags == tag) & (numbers >= n_oligos) & (numbers < HEADER_BASE)].sum())
    stats.unknown_oligo = unknown
    stats.used -= unknown


def _rates(h, layout: Layout, pixels: int) -> dict:
    """What the DNA that was written cost, from its header (as ``encode`` reports it)."""
    from dnaimg.dna.header import n_parts
    n_data = sum(s.n_data for s in h.streams)
    n_par = sum(container.parity_oligos(s, layout) for s in h.streams)
    total = (n_data + n_par) * layout.oligo_length       # the header oligos apart: their copies are unknown
    return {"data_oligos": n_data, "parity_oligos": n_par,
            "header_oligo_parts": n_parts(len(h.pack()), layout.payload_nt // 3),
            "payload_nt_per_pixel": n_data * layout.payload_nt / pixels,
            "total_nt_per_pixel_without_header": total / pixels,
            "payload_bits_per_nt": container.mapping_bits_per_nt(h, layout),
            "net_bits_per_nt_without_header": container.stream_bits(h) / total}


def _size(h) -> dict:
    if isinstance(h, HeaderV1):
        return {"width": h.width, "height": h.height, "codec": "robust"}
    return {"codec": CODEC_NAMES.get(h.codec_id, str(h.codec_id)), "oligos": sum(s.n_data for s in h.streams)}


__all__ = ["encode", "decode", "open_reads", "EncodeResult", "DecodeResult", "DecodeError", "CodecError",
           "RateError", "ImageError", "LayoutError"]
