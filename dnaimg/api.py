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
from dnaimg.dna.header import DEFAULT_HEADER_COPIES, LATEST_VERSION, HeaderError, HeaderV1, HeaderVersionError
from dnaimg.dna.index import HEADER_BASE
from dnaimg.image import ImageError, Source, channels, describe, has_alpha, mode_of, read_source
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


DEFAULT_CODEC = "avif"      # the best image per total nt measured on Kodak at miseq/nextseq 5x (README)


@dataclass
class Prepared:
    """An image as a codec will code it: what :func:`prepare` decided."""
    pixels: np.ndarray
    codec: str
    notes: list[str]                # every change to the data or its form, and the codec choice
    source_mode: str | None         # the file's mode (Pillow's), None for an array


def _keeps_16bit(codec: str, a: np.ndarray) -> bool:
    from dnaimg.codecs.classic import LAYOUTS_OF
    return (0x10 | channels(a)) in LAYOUTS_OF.get(codec, ())


def prepare(image: str | Path | np.ndarray, codec: str | None = None, *, flatten: bool = False,
            to_8bit: bool = False) -> Prepared:
    """Image (file or array) -> the pixels ``codec`` is given, never changed silently: gray stays one
    channel, 16 bits stay 16 bits and alpha stays, or the image is refused (ImageError, one line
    naming the options) unless ``flatten`` (composite alpha onto white) or ``to_8bit`` (16 -> 8 bits)
    asks for the change.  ``codec`` None: png for a 16-bit image (lossless, 16 bits kept), else
    :data:`DEFAULT_CODEC`.  Palette and CMYK files are read as RGB(A) with a note (see
    :func:`dnaimg.image.read_source`)."""
    from dnaimg import image as im_
    src = Source.of(image) if isinstance(image, np.ndarray) else read_source(image)
    name = "the image" if isinstance(image, np.ndarray) else str(image)
    a, notes = src.pixels, list(src.notes)
    if codec is None:
        codec = "png" if a.dtype == np.uint16 and not to_8bit else DEFAULT_CODEC
        if codec == "png":
            lossy = "jxl or --codec jpeg2000" if channels(a) == 1 else "jxl"
            notes.append(f"{describe(a)} input: chose png (lossless, 16 bits kept); --codec {lossy} code 16 bits "
                         f"lossily, --to-8bit allows the 8-bit codecs")
    codec = canonical(codec)
    if has_alpha(a):
        if flatten:
            a = im_.flatten(a)
            notes.append("alpha composited onto white (--flatten)")
        elif codec not in LOSSLESS:
            opaque = bool((a[..., -1] == np.iinfo(a.dtype).max).all())
            raise ImageError(f"{name} has an alpha channel ({describe(a)}), which {codec} cannot keep: --codec png "
                             f"or --codec jxl-lossless keep it, --flatten composites it onto white"
                             + (" (it is opaque everywhere: --flatten loses nothing)" if opaque else ""))
    if a.dtype == np.uint16:
        if to_8bit:
            a = im_.to_8bit(a)
            notes.append("reduced from 16 to 8 bits (--to-8bit)")
        elif not _keeps_16bit(codec, a):
            lossy = "--codec jxl or --codec jpeg2000" if channels(a) == 1 else "--codec jxl"
            raise ImageError(f"{name} is a {describe(a)} image, which {codec} cannot keep (8 bits only): --codec "
                             f"png or --codec jxl-lossless keep it exactly, {lossy} lossily at 16 bits; --to-8bit "
                             f"reduces it to 8 bits")
    if a.ndim == 2 and codec == "webp":
        notes.append("webp has no gray mode: coded as RGB (R = G = B, three channels' cost), decoded to gray")
    elif a.ndim == 2 and codec == "robust":
        notes.append("gray coded as RGB (R = G = B) by the RGB model (no saving over colour), decoded to gray")
    return Prepared(np.ascontiguousarray(a), codec, notes, src.file_mode)


MARKER_HEADER_COPIES = 9


def header_copies_for(markers: bool) -> int:
    """Default header copies: 3, or 9 with markers (written for nanopore runs at 1-3x, where each
    header oligo may get no read: on training photographs at nanopore 1x / 2x, 2 / 5 of 8 decodes
    found the header with 3 copies, 4 / 6 with 6, 7 / 8 with 9; 8 of 8 at 3x with any)."""
    return MARKER_HEADER_COPIES if markers else DEFAULT_HEADER_COPIES


def encode(image: str | Path | np.ndarray, codec: str | None = None, *, rate: float | None = None,
           quality: float | None = None, model: str | None = None, noise_trained: bool = False,
           redundancy: float | None = None, layout: Layout | None = None,
           copies: int | None = None, inner: int = DEFAULT_INNER,
           progress: Callable[[int], None] | None = None, flatten: bool = False,
           to_8bit: bool = False, markers: bool = False, fast: bool = False) -> EncodeResult:
    """Image (file or array) -> oligos with ``codec`` (see :data:`dnaimg.codecs.CODEC_IDS`; None: png
    for 16-bit images, else :data:`DEFAULT_CODEC`).  The image keeps its channels, bit depth and
    alpha, or is refused, unless ``flatten`` / ``to_8bit`` (see :func:`prepare`); ``info["notes"]``
    says what was done.  ``markers``: robust codec only, a marker code in every data oligo (format
    version 4): about a quarter more oligos, several dB more on nanopore runs at 1-5x coverage.
    ``copies``: of the header oligos (None: :func:`header_copies_for`).  ``fast``: compact codec only,
    without its encoder's searches (the cheaper hyper-latent, the choice of post-filter and the
    symbols refined for the decoder's synthesis; :func:`dnaimg.codecs.compact.encode`): several
    times faster, a few tenths of a dB less at the same cost; the DNA is read the same way."""
    auto = codec is None
    if copies is None:
        copies = header_copies_for(markers)
    prep = prepare(image, codec, flatten=flatten, to_8bit=to_8bit)
    codec = prep.codec
    if auto and codec == "png" and quality is not None:
        raise CodecError("a 16-bit image goes to png (lossless), which has no --quality: give --codec jxl or "
                         "--codec jpeg2000 to code 16 bits lossily, or --to-8bit")
    try:
        res = _encode(prep.pixels, codec, rate=rate, quality=quality, model=model, noise_trained=noise_trained,
                      redundancy=redundancy, layout=layout, copies=copies, inner=inner, progress=progress,
                      markers=markers, fast=fast)
    except RateError as e:
        if auto and codec == "png":
            raise RateError(f"{e} (a 16-bit image goes to png, lossless, unless --codec jxl or jpeg2000 codes it "
                            f"lossily, or --to-8bit)") from None
        raise
    notes = prep.notes
    if codec == "compact" and prep.pixels.ndim == 2:
        from dnaimg.codecs import compact
        if compact.CompactParams.unpack(res.written.header.meta).gray:
            notes.append("gray coded as RGB (R = G = B) by the RGB model (no saving over colour), decoded to gray")
    res.info.update({"mode": mode_of(prep.pixels), "source_mode": prep.source_mode, "notes": notes})
    return res


def check_fast(fast: bool, codec: str | None) -> None:
    """CodecError where ``fast`` is asked of a codec other than compact (None: the default codec)."""
    if fast and codec != "compact":
        raise CodecError(f"--fast is for the compact codec (it skips its encoder's searches), "
                         f"not {codec or 'the default codec'}")


def _encode(img: np.ndarray, codec: str, *, rate, quality, model, noise_trained, redundancy, layout, copies, inner,
            progress, markers=False, fast=False) -> EncodeResult:
    layout = layout or Layout()
    if markers and codec != "robust":
        raise CodecError(f"--markers is for the robust codec (its codewords), not {codec}")
    check_fast(fast, codec)
    if redundancy is not None and not 0 <= redundancy <= 4:
        raise LayoutError("redundancy must be between 0 and 4")
    if codec == "robust":
        from dnaimg.codecs import robust
        if quality is not None:
            raise CodecError("the robust codec has no --quality: choose --model NAME:POINT or --rate")
        r = robust.encode_image(img, model=model, layout=layout, header_copies=copies, progress=progress,
                                rate=rate, noise_trained=noise_trained, redundancy=redundancy, inner=inner,
                                markers=markers)
        return EncodeResult(codec, r.written, r.pixels, {"model": r.model, "point": r.point.label if r.point else r.model},
                            robust=r)
    if codec == "compact":
        return _encode_compact(img, rate=rate, quality=quality, model=model, noise_trained=noise_trained,
                               redundancy=redundancy, layout=layout, copies=copies, inner=inner, progress=progress,
                               fast=fast)
    if model is not None or noise_trained:
        raise CodecError(f"--model and --noise-trained are for the learned codecs, not {codec}")
    classic = _classic()
    pixels = int(img.shape[0] * img.shape[1])
    cdc = classic.get_codec(codec)
    if quality is not None and cdc.spec.lossless:
        raise CodecError(f"{codec} is lossless: it has no --quality (--rate caps its cost)")
    probe_meta = bytes(classic.META_BYTES)      # only its size matters to the oligo count

    def fits(n: int) -> bool:
        if progress is not None:
            progress(0)             # (after each trial compression: a bar shows the time going)
        enc = Encoded(codec, [Stream("bytes", b"\0" * max(1, n))], probe_meta)
        return container.total_oligos(layout, enc, redundancy, inner, copies) * layout.oligo_length <= rate * pixels
    enc = cdc.encode(img, quality=quality, fits=None if rate is None else fits)
    written = container.write(enc, codec_id(codec), layout, redundancy, inner, copies, progress=progress)
    if rate is not None and written.oligos.size > rate * pixels + 1e-9:
        raise RateError(f"{codec} does not fit {rate} total nt/px")      # a guard: the probe is exact
    return EncodeResult(codec, written, pixels, dict(enc.info))


def _encode_compact(image, *, rate, quality, model, noise_trained, redundancy, layout, copies, inner,
                    progress, fast=False) -> EncodeResult:
    from dnaimg.codecs import compact
    from dnaimg.dna import bytecode
    if noise_trained:
        raise CodecError("--noise-trained is for the robust codec")
    img = image
    pixels = int(img.shape[0] * img.shape[1])
    bd = bytecode.data_bytes_per_payload(layout.payload_nt, inner)

    def fits(enc: Encoded) -> bool:
        return container.total_oligos(layout, enc, redundancy, inner, copies) * layout.oligo_length <= rate * pixels
    try:
        enc = compact.encode(img, row_bytes=bd, rate_index=quality, model=model,
                             redundancy=redundancy, fits=None if rate is None else fits, progress=progress,
                             search=not fast, refine=not fast)
    except RateError:
        if rate is None:
            raise
        names = [model] if model else list(dict.fromkeys((compact.default_model(img), compact.DEFAULT_MODEL)))
        need = min(container.total_oligos(layout, compact.encode(img, row_bytes=bd, rate_index=0.0, model=n,
                                                                 redundancy=redundancy, refine=False),
                                          redundancy, inner, copies) * layout.oligo_length / pixels for n in names)
        raise RateError(f"compact: even its lowest rate needs {need:.3f} total nt/px, above --rate {rate:g}: "
                        "give a higher --rate, or another codec") from None
    written = container.write(enc, codec_id("compact"), layout, redundancy, inner, copies, progress=progress)
    return EncodeResult("compact", written, pixels, {**enc.info, "fast": bool(fast)})


@dataclass
class DecodeResult:
    image: np.ndarray | None
    codec: str
    header: object
    exact: bool                          # every stream's CRC32 matches the one encoded
    report: dict = field(default_factory=dict)
    symbols: np.ndarray | None = None    # the robust codec's latent


def open_reads(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None,
               read_progress: Callable[[int], None] | None = None, trimmed: bool | None = None):
    """Sort the reads and decode every image's header: (sorter, headers per tag, why not, reads per tag).
    ``trimmed``: the reads' primers were trimmed off (None: detected)."""
    from dnaimg.dna.header import find_headers
    lay = Layout(primer_f=primer_f or Layout.primer_f, primer_r=primer_r or Layout.primer_r)
    try:
        sorter = container.sort_reads(reads, lay, read_progress, trimmed=trimmed)
        headers, why, reads_per_tag = find_headers(sorter)
    except HeaderVersionError as e:
        raise DecodeError(f"the DNA holds format version {e.version}; this dnaimg reads versions 1 to "
                          f"{LATEST_VERSION}") from None
    except container.NoPrimedReads as e:
        raise PrimersNotFound(str(e)) from None
    except (ContainerError, HeaderError) as e:
        raise DecodeError(str(e)) from None
    return lay, sorter, headers, why, reads_per_tag


class PrimersNotFound(DecodeError):
    """No read carries the primers asked for (:func:`decode`)."""


def decode(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None, tag: int | None = None,
           precision: str = "auto", progress: Callable[[int], None] | None = None,
           read_progress: Callable[[int], None] | None = None, trimmed: bool | None = None) -> DecodeResult:
    """Reads (any order, either strand, with errors; adapters or flanks around the primers are
    ignored) -> image and report.  ``tag`` chooses the image when the reads hold several
    (default: the one with the most reads).  ``trimmed``: the reads' primers were trimmed off
    (default: detected)."""
    requested, precision = precision, resolve_precision(precision)
    t0 = time.perf_counter()
    lay, sorter, headers, why, reads_per_tag = open_reads(reads, primer_f, primer_r, read_progress, trimmed)
    t_sort = time.perf_counter()
    stats = sorter.stats
    mixed = {t: m for t, m in getattr(sorter, "mixtures", {}).items() if m.mixed}
    if tag is None and mixed:       # never a blend: not the image with the most reads, if that is two
        top = max(set(headers) | set(mixed), key=lambda t: reads_per_tag[t])
        if top in mixed:
            raise DecodeError(mixed[top].message())
    if tag is not None and tag in mixed:
        raise DecodeError(mixed[tag].message())
    if not headers:
        raise DecodeError("no header could be decoded from the reads (" + "; ".join(
            f"tag {t:02x}: {w}" for t, w in why.items()) + "); " + container.describe_reads(stats, lay))
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
        elif codec == "compact":
            from dnaimg.codecs import compact
            # "auto" is fp32 here: the same pixels on every machine (bf16 only when asked)
            precision = "fp32" if requested == "auto" else precision
            image, crep = compact.decode(received, h2.meta, precision)
            model, params = crep["model"], None
            rs = [r.report for r in received]
            rparts = {"oligos": {"expected": sum(r["oligos"] for r in rs),
                                 "recovered": sum(r["oligos"] - r["missing"] for r in rs),
                                 "missing": sum(r["missing"] for r in rs)},
                      "latent": crep}
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
        info.update({"height": int(image.shape[0]), "width": int(image.shape[1]), "mode": mode_of(image)})
    if params is not None:
        info.update({"model": model, "channels": params.channels, "levels": params.levels,
                     "codeword_nt": params.codeword_nt})
    elif model is not None:
        info["model"] = model
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
