"""The ``dnaimg`` command line: a thin layer over :mod:`dnaimg.codec` and friends."""
from __future__ import annotations

import contextlib
import functools
import json
import sys
import time

import click
from click.core import ParameterSource
import numpy as np

from dnaimg import __version__


class UserError(click.ClickException):
    """One-line error, exit status 1."""

    def show(self, file=None):
        click.echo(f"dnaimg: error: {self.format_message()}", err=True)


class _UsageLine(click.ClickException):
    """A usage error (an unknown option, a value out of range, a missing argument) on one line like
    every other error, with where to look; exit status 2 as click gives it."""
    exit_code = 2

    def __init__(self, e: click.UsageError):
        where = e.ctx.command_path if e.ctx is not None else "dnaimg"
        super().__init__(f"{e.format_message()} (see {where} --help)")

    def show(self, file=None):
        click.echo(f"dnaimg: error: {self.format_message()}", err=True)


class _FloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and infinities (nan passes every range test)."""

    def convert(self, value, param, ctx):
        import math
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


def _one_line(e: click.UsageError) -> click.ClickException:
    # (a command given no arguments shows its help, which click raises as a usage error)
    return e if type(e).__name__ == "NoArgsIsHelpError" else _UsageLine(e)


class _Group(click.Group):
    """The command group, its own and its commands' usage errors turned into one line."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            raise _one_line(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _one_line(e) from None


def friendly(fn):
    """Turn the library's errors (and anything unexpected) into one-line messages.  With
    ``DNAIMG_DEBUG=1`` in the environment an unexpected exception (a bug) is raised as it is,
    traceback and all, instead of "dnaimg: error: unexpected ..." (the tests run so)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            _closed_pipe()
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            raise UserError("interrupted") from None
        except MemoryError:
            raise UserError("out of memory") from None
        except Exception as e:  # never a traceback for the user
            if isinstance(e, _user_errors()):
                raise UserError(str(e)) from None
            import os
            if os.environ.get("DNAIMG_DEBUG") == "1":
                raise
            raise UserError(f"unexpected {e.__class__.__name__}: {e}") from None
    return wrapper


def _user_errors() -> tuple:
    """The library's errors that mean bad input (a one-line message, no traceback).  Imported when
    an error happens, not before: a command that never touches the DNA layer (``dnaimg train``)
    then runs without its libraries (reedsolo, dnaio), e.g. on a training machine."""
    import importlib
    found = []
    for mod, name in (("dnaimg.api", "DecodeError"), ("dnaimg.codecs.base", "CodecError"),
                      ("dnaimg.dna.container", "LayoutError"), ("dnaimg.dna.bytecode", "BytesError"), ("dnaimg.image", "ImageError"),
                      ("dnaimg.zoo.registry", "ModelError"), ("dnaimg.dna.seqio", "InputError"),
                      ("dnaimg.pool", "PoolError"), ("dnaimg.zoo.train", "TrainingDataError")):
        try:
            found.append(getattr(importlib.import_module(mod), name))
        except ImportError:
            pass
    return tuple(found)


def _closed_pipe():
    """Standard output was closed by its reader (``dnaimg check x.fasta | head``): stop quietly,
    with the status of a process ended by SIGPIPE (128 + 13)."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())      # nothing more to flush into the closed pipe
    except (OSError, ValueError):
        pass
    sys.exit(141)


def _same_file(a, b) -> bool:
    """Do paths ``a`` and ``b`` name one file (the same path resolved, or a link to it)?"""
    import os
    from pathlib import Path
    if str(a) == "-" or str(b) == "-":
        return False
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def _refuse_overwrite(output, inputs, what: str) -> None:
    """UserError if ``output`` is one of the ``inputs`` (a user's photo or reads, never overwritten)."""
    for i in inputs:
        if i is not None and _same_file(output, i):
            raise UserError(f"{output} is an input ({what}): choose another output")


IMAGE_WRITERS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def _check_fasta_name(output) -> None:
    """encode writes FASTA: refuse an output named as an image or as FASTQ (a wrong file under a
    misleading name, or an image overwritten by oligos)."""
    from pathlib import Path
    from dnaimg.dna.seqio import is_fastq_path, uncompressed_name
    from dnaimg.image import IMAGE_SUFFIXES         # (the images encode reads from a folder)
    if str(output) == "-":
        return
    if is_fastq_path(output) or Path(uncompressed_name(output)).suffix in IMAGE_SUFFIXES:
        raise UserError(f"{output}: encode writes the oligos as FASTA; name the file .fasta (or .fa, .fasta.gz)")


def _image_format(output) -> str:
    """The format the decoded image's file name asks for (its suffix); UserError for another."""
    from pathlib import Path
    suf = Path(str(output)).suffix.lower()
    if suf not in IMAGE_WRITERS:
        raise UserError(f"{output}: unknown image suffix {suf or '(none)'!r}; write .png (or .tif, .webp: lossless; "
                        ".jpg: lossy)")
    return IMAGE_WRITERS[suf]


def _write_image(pixels, output) -> str | None:
    """Write the decoded pixels in the format the suffix names (PNG, TIFF, lossless WebP keep
    them exactly; JPEG does not).  Returns a warning to show, or None."""
    from pathlib import Path
    from dnaimg.image import ImageError, save_pixels
    fmt = _image_format(output)
    if fmt == "PNG":
        save_pixels(pixels, output)
        return None
    a = np.ascontiguousarray(pixels)
    if a.dtype == np.uint16 and fmt != "TIFF":
        raise UserError(f"{output}: the image has 16 bits per sample, which {fmt} cannot keep: write .png or .tif")
    try:
        if a.dtype == np.uint16 and a.ndim == 3:
            import imagecodecs
            Path(output).write_bytes(imagecodecs.tiff_encode(a))
            return None
        from PIL import Image
        im = Image.fromarray(a)
        if fmt == "JPEG":
            if im.mode in ("LA", "RGBA"):
                raise UserError(f"{output}: JPEG has no alpha channel: write .png (or .webp, .tif)")
            im.save(output, format="JPEG", quality=95)
            return (f"{output} is JPEG (quality 95): lossy, so not the decoded pixels exactly; "
                    ".png, .tif or .webp keep them")
        if fmt == "WEBP":
            gray = im.mode in ("L", "LA")
            if im.mode == "LA":
                im = im.convert("RGBA")
            elif im.mode == "L":
                im = im.convert("RGB")
            im.save(output, format="WEBP", lossless=True, quality=100, method=4, exact=True)
            return (f"{output}: WebP has no gray mode, so the gray image is written as R = G = B; .png or .tif "
                    "keep it one channel") if gray else None
        im.save(output, format="TIFF", compression="tiff_deflate")
    except (OSError, ValueError, ImportError) as e:
        raise ImageError(f"{output}: cannot write ({e})") from None
    return None


def _bar(total, desc, quiet):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="", disable=True if quiet else None, leave=False,
                file=sys.stderr, dynamic_ncols=True)


def _layout(oligo_length, primer_f, primer_r):
    from dnaimg.dna.container import Layout
    kw = {}
    if oligo_length is not None:
        kw["oligo_length"] = oligo_length
    if primer_f:
        kw["primer_f"] = primer_f.upper()
    if primer_r:
        kw["primer_r"] = primer_r.upper()
    return Layout(**kw)


primer_options = [
    click.option("--primer-f", metavar="SEQ", help="Forward primer (5' end of every oligo). "
                 "[default: AGTGCACGCGCAGTTATATG]"),
    click.option("--primer-r", metavar="SEQ", help="Reverse primer (its reverse complement ends every "
                 "oligo). [default: CTAACGGCAATGAGTTGCAC]"),
]


def with_primers(fn):
    for opt in reversed(primer_options):
        fn = opt(fn)
    return fn


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnaimg")
def main():
    """Store images in synthetic DNA.

    \b
      dnaimg encode photo.png -o photo.fasta
      dnaimg simulate photo.fasta -o reads.fastq --sub-rate 0.03
      dnaimg decode reads.fastq -o out.png
    """
    from dnaimg.runtime import keep_freed_memory
    keep_freed_memory()         # the networks' large tensors reuse freed memory (glibc)


def _codec_of_model(model, noise_trained) -> str:
    """No --codec: the codec of --model (a compact or robust model), else the default codec."""
    from dnaimg.api import DEFAULT_CODEC
    if noise_trained:
        return "robust"
    if not model:
        return DEFAULT_CODEC
    from dnaimg.zoo.registry import list_models
    name = model.split(":", 1)[0]
    if any(c["name"] == name for c in list_models("compact")):
        return "compact"
    return "robust"


@main.command()
@click.argument("image", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="FASTA file of oligos to write (.gz to compress); a pool's manifest goes beside it "
                   "(NAME.manifest.json).")
@click.option("--codec", default=None, metavar="NAME",
              help="[default: avif; png for a 16-bit image; the codec of --model] avif (the best image per nucleotide at 5x "
                   "coverage), robust (autoencoder with "
                   "fixed-length codewords: for one read per oligo or high substitution rates), compact (learned, "
                   "entropy-coded), jpeg, webp, jpeg2000, jxl, or lossless png, jxl-lossless.")
@click.option("--rate", type=_FloatRange(min=0, min_open=True), default=None, metavar="NT_PER_PIXEL",
              help="Cap on the TOTAL nt/pixel (everything synthesised: primers, index, header, inner and "
                   "outer codes): the best operating point (robust), the highest quality (classic) or the most bits "
                   "(compact: the highest rate index, then finer steps) that fits.")
@click.option("--quality", type=_FloatRange(), default=None, metavar="Q",
              help="Classic codecs: quality (jpeg/webp/avif/jxl 0-100, jpeg2000 bits per pixel); compact: the "
                   "model's rate index (0 = lowest, in steps of 1/8; `dnaimg models` lists each model's range).")
@click.option("--redundancy", type=_FloatRange(0, 4), default=None, metavar="FRACTION",
              help="Outer code across oligos: parity rows per data row; lost oligos up to about this "
                   "fraction are rebuilt exactly.  [default: 0.15 for byte-stream codecs, 0 for robust]")
@click.option("--model", default=None, metavar="NAME[:POINT]",
              help="Learned codecs: shipped model (robust: and operating point); see `dnaimg models`.")
@click.option("--noise-trained", is_flag=True,
              help="Robust codec: a model trained with the channel's noise (with --rate: the best of them that fits; alone: the default model's noise-trained twin).")
@click.option("--markers", is_flag=True,
              help="Robust codec: 2 known nucleotides after every 8 nt of codewords (a marker code, format version "
                   "4), so that insertions and deletions are found: about 25 % more oligos, several dB more on "
                   "nanopore runs at 1-5x coverage (not worth it from 10x, nor on Illumina runs).")
@click.option("--oligo-length", type=int, default=None,
              help="Oligo length in nt: at most 300 (the robust codec: 1000).  [default: 200]")
@with_primers
@click.option("--header-copies", type=click.IntRange(1, 15), default=None,
              help="Copies of the header oligos (each copy is 4 oligos at 200 nt, 5 for the compact codec).  "
                   "[default: 3; 9 with --markers]")
@click.option("--pool", "as_pool", is_flag=True,
              help="Write a pool (format version 3: an id, the file name and the primer pair in the DNA, a "
                   "manifest beside the FASTA) even for one image.  Several images or a folder always make a pool.")
@click.option("--append", type=click.Path(dir_okay=False, exists=True), default=None, metavar="POOL.fasta",
              help="Add the images to this existing pool: its images keep their ids, primers and oligos; -o gets "
                   "the whole pool, old and new.")
@click.option("--group-size", type=click.IntRange(1, 256), default=None, metavar="N",
              help="Pool: images per primer pair (1: every file its own pair, for random access by PCR).  Pair 0 is "
                   "the default primers, then the pairs of the primer set (docs/primers.tsv).  [default: 256]")
@click.option("--pool-id", default=None, metavar="HEX", help="Pool: its 32-bit id (default: random; kept by --append).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Pool: images encoded in parallel.  [default: the CPU count]")
@click.option("--flatten", is_flag=True,
              help="Composite an alpha channel onto white.  Without it an image with alpha is refused by the codecs "
                   "that cannot keep alpha (all but png and jxl-lossless).")
@click.option("--to-8bit", "to_8bit", is_flag=True,
              help="Reduce a 16-bit image to 8 bits.  Without it a 16-bit image goes to png when no --codec is given, "
                   "and is refused by the codecs that keep 8 bits only (all but png, jxl-lossless, jxl, and jpeg2000 "
                   "for gray).")
@click.option("--fast", is_flag=True,
              help="Compact codec: skip its encoder's searches (a cheaper hyper-latent; for the gray wavelet models "
                   "also the choice of post-filter and, under --rate, of model family, so compact-gray-v8, and the "
                   "symbols refined for the decoder): "
                   "several times faster, a few tenths of a dB less at the same cost.  The DNA is read the same way.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly
def encode(image, output, codec, rate, quality, redundancy, model, noise_trained, markers, oligo_length, primer_f,
           primer_r, header_copies, as_pool, append, group_size, pool_id, jobs, flatten, to_8bit, fast, as_json, quiet):
    """Compress IMAGE(s) and write them as DNA oligos (FASTA).

    One image file: a single image (format version 2).  Several images, a folder of images,
    --pool or --append: a pool, every image under its own id and file name (format version 3),
    with a manifest (JSON) beside the FASTA."""
    from dnaimg import api
    from dnaimg.codecs import canonical
    from dnaimg.dna.seqio import check_writable, write_fasta
    from pathlib import Path
    if header_copies is None:
        header_copies = api.header_copies_for(markers)
    if as_pool or append or group_size or pool_id or len(image) > 1 or Path(image[0]).is_dir():
        if markers:
            from dnaimg.codecs.base import CodecError
            raise CodecError("--markers is not available for a pool yet (single images only)")
        return _encode_pool(image, output, codec, rate, quality, redundancy, model, noise_trained, oligo_length,
                            primer_f, primer_r, header_copies, append, group_size, pool_id, jobs, as_json, quiet,
                            flatten=flatten, to_8bit=to_8bit, fast=fast)
    image = image[0]
    check_writable(output)
    _refuse_overwrite(output, [image], "the image")
    _check_fasta_name(output)
    # no --codec and no --model: api.encode chooses (png for a 16-bit image, else the default codec)
    codec = canonical(codec) if codec is not None else \
        (_codec_of_model(model, noise_trained) if model or noise_trained else "robust" if markers else None)
    layout = _layout(oligo_length, primer_f, primer_r)
    if codec == "robust" and model:
        from dnaimg.zoo.registry import select_point
        select_point(model, None, noise_trained)     # a bad --model fails before any work
    t0 = time.time()
    with _bar(None, "encoding", quiet) as bar:
        enc = api.encode(image, codec, rate=rate, quality=quality, model=model, noise_trained=noise_trained,
                         redundancy=redundancy, layout=layout, copies=header_copies, progress=bar.update,
                         flatten=flatten, to_8bit=to_8bit, markers=markers, fast=fast)
    codec = enc.codec
    write_fasta(output, enc.fasta_records())
    r = enc.rates()
    err = str(output) == "-"          # the oligos go to standard output: the summary does not
    h = enc.written.header
    r.update({"image": str(image), "output": str(output), "tag": f"{h.tag:02x}", "image_id": f"{h.image_id:08x}",
              "oligo_length": layout.oligo_length, "seconds": round(time.time() - t0, 2)})
    if as_json:
        click.echo(json.dumps(r, indent=2, default=str), err=err)
        return
    what = (r.get("point") if codec == "robust" else f"{r['model']} rate index {r['rate_index']:g}" if codec == "compact"
            else (f"quality {r['quality']}" if r.get("quality") is not None else ""))
    click.echo(f"encoded {image} ({r['mode']}) with {codec} {what}".rstrip(), err=err)
    for note in r.get("notes", []):
        click.echo(f"note: {note}", err=err)
    click.echo(f"wrote {output}: {r['oligos']} oligos of {layout.oligo_length} nt ({r['data_oligos']} data + "
               f"{r['parity_oligos']} parity + {r['header_oligos']} header), image id {r['image_id']}", err=err)
    click.echo(f"rate: {r['total_nt_per_pixel']:.3f} nt/pixel total, {r['payload_nt_per_pixel']:.3f} payload; "
               f"{r['payload_bits_per_nt']:.3f} bits per payload nt, {r['net_bits_per_nt']:.3f} net; "
               f"outer redundancy {r['outer_redundancy']:.2f}  [{r['seconds']:.1f} s]", err=err)


@main.command()
@click.argument("reads", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="PNG file to write, or a folder (an existing one, or a name ending in /): every image of "
                   "the pool under its own name.")
@with_primers
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Original image: also report PSNR against it.")
@click.option("--select", "select", default=None, metavar="TAG",
              help="Image tag (hex) to decode when the reads hold several images.")
@click.option("--strict", is_flag=True,
              help="Exit with status 3 unless the data is exactly what was encoded (CRC32 of every stream).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Arithmetic of the synthesis net.  Robust codec: auto takes bf16 where the CPU computes it "
                   "natively (several times faster, same PSNR), else fp32.  Compact codec: auto is fp32 (the same "
                   "pixels on every machine); bf16 about twice as fast, same symbols.")
@click.option("--only", default=None, metavar="NAME_OR_ID",
              help="Pool: restore this file only (its name, its name without extension, or its id).")
@click.option("--workers", type=click.IntRange(1, 256), default=None, metavar="N",
              help="Decode on a local Dask cluster of N worker processes (the same images as one process).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Decode on the Dask cluster of this scheduler (e.g. tcp://host:8786); its workers must "
                   "read the same paths.")
@click.option("--trimmed", is_flag=True, default=None,
              help="The reads' primers were trimmed off (e.g. by cutadapt).  Without it this is detected: where "
                   "most reads carry no primer, those are tried as trimmed.")
@click.option("--paired/--no-paired", default=None,
              help="--paired: READS are paired-end R1 and R2 files, two by two (R1 R2 R1 R2 ...); the mates of "
                   "each pair are merged.  Default: two files side by side are taken as mates when their read "
                   "names pair up (NAME/1 and NAME/2, or Illumina's 'NAME 1:...' and 'NAME 2:...').")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly
def decode(reads, output, primer_f, primer_r, reference, select, strict, precision, only, workers, scheduler,
           trimmed, paired, as_json, quiet):
    """Rebuild the image(s) from sequencer READS (FASTA/FASTQ files, gzipped or not; - reads
    standard input).

    The codec is read from the DNA.  Adapters, barcodes and other flanks around the primers are
    ignored; reads whose primers were trimmed off are recognised; paired-end R1/R2 files are
    merged.  The image is written whenever one can be drawn, in the format its suffix names
    (.png; also .tif, .webp, or .jpg, lossy); the report says how many oligos were missing and
    whether the data is exactly the encoded one.  With -o FOLDER/ every image of a pool is
    written under its own name (--only: one).  Reads of two images that share an id are never
    blended: such images are refused with an error.  Without --primer-f/--primer-r, reads that
    carry none of the default primers are tried against the pool's primer pairs.
    Exit status: 0 decoded, 1 error, 3 decoded but not exact with --strict.
    """
    from dnaimg import api
    from dnaimg.image import comparable, load_pixels, mode_of, psnr
    from dnaimg.dna.seqio import ReadBatches, check_writable
    import os
    if workers and scheduler:
        raise UserError("--workers starts a local cluster, --scheduler joins one: give one of them")
    if os.path.isdir(output) or str(output).endswith(("/", os.sep)) or only or workers or scheduler:
        return _decode_pool(reads, output, primer_f, primer_r, reference, select, strict, precision, only, workers,
                            scheduler, as_json, quiet, trimmed, paired)
    check_writable(output)
    _refuse_overwrite(output, list(reads) + [reference], "reads or --reference")
    _image_format(output)
    ref_pixels = _load_reference(reference)
    reads = list(reads)
    tag = None
    if select is not None:
        try:
            tag = int(select, 16)
        except ValueError:
            raise UserError(f"--select takes a hex tag such as 3f, got {select!r}") from None
    t0 = time.time()
    try:
        with _bar(None, "reading", quiet) as rbar:
            seqs = ReadBatches(reads, paired=paired)
            with _bar(None, "decoding", quiet) as cbar:
                res = api.decode(seqs, primer_f=primer_f, primer_r=primer_r, progress=cbar.update,
                                 read_progress=rbar.update, tag=tag, precision=precision, trimmed=trimmed or None)
    except api.PrimersNotFound as e:
        # no read has the default primers: an image with a pool's primer pair, which the pool decode
        # finds by itself (reads from a file can be read again; standard input cannot); reads with
        # none of the pairs keep this first error, which says what the reads are
        if primer_f or primer_r or "-" in reads or ref_pixels is not None or tag is not None:
            raise
        return _decode_pool(reads, output, None, None, None, None, strict, precision, None, None, None, as_json,
                            quiet, trimmed, paired, none_found=UserError(str(e)))
    rep = res.report
    if seqs.paired:
        rep["reads"]["pairs"] = seqs.pairs_seen
        rep["reads"]["pairs_merged"] = seqs.pairs_merged
    if res.image is None:
        raise UserError(f"the {res.codec} stream could not be rebuilt ({_stream_summary(rep)}); "
                        "more reads or more redundancy are needed")
    if ref_pixels is not None:       # before anything is written: a mismatch leaves no image behind
        ref, dec, peak = comparable(ref_pixels, res.image)
        if ref.shape != dec.shape:
            raise UserError(f"reference {reference} is {ref_pixels.shape[1]}x{ref_pixels.shape[0]} "
                            f"({mode_of(ref_pixels)}), decoded image is {res.image.shape[1]}x{res.image.shape[0]} "
                            f"({mode_of(res.image)}); nothing written")
        rep["psnr_db"] = round(psnr(ref, dec, peak), 3)
        rep["psnr_peak"] = int(peak)
    warning = _write_image(res.image, output)
    rep["output"] = str(output)
    rep["seconds"] = round(time.time() - t0, 2)
    several = len(rep["images_present"]) > 1 and select is None
    if as_json:
        click.echo(json.dumps(rep, indent=2, default=str))
    else:
        _print_decode_report(rep, output, reference)
    if warning:
        click.echo(f"dnaimg: warning: {warning}", err=True)
    if several:
        click.echo("dnaimg: warning: the reads hold " + ", ".join(
            f"image {t} ({v['codec']}, {v['reads']} reads)" for t, v in rep["images_present"].items())
            + f"; decoded {rep['image']['tag']}, choose another with --select TAG", err=True)
    if strict and not rep["exact"]:
        click.echo(f"dnaimg: strict: the decoded data differs from the encoded one ({_stream_summary(rep)})",
                   err=True)
        sys.exit(3)


def _load_reference(reference):
    """--reference's pixels, read before any decoding (a missing or unreadable file fails first)."""
    if not reference:
        return None
    from dnaimg.image import load_pixels
    import os
    if not os.path.exists(reference):
        raise UserError(f"--reference {reference}: no such file")
    return load_pixels(reference)


def _stream_summary(rep) -> str:
    ol = rep["oligos"]
    s = f"{ol['missing']} of {ol['expected']} data oligos missing"
    if "codewords" in rep:
        s += f", {rep['codewords']['repaired']} codewords repaired"
    for st in rep.get("streams", []):
        if "outer" in st and st["outer"]["failed_columns"]:
            s += f", outer code overwhelmed in {st['outer']['failed_columns']} columns"
    return s


def _print_decode_report(rep, output, reference):
    rd, ol, im = rep["reads"], rep["oligos"], rep["image"]
    if "pairs" in rd:
        click.echo(f"read pairs: {rd['pairs']}, {rd['pairs_merged']} merged into one read each "
                   f"({rd['pairs'] - rd['pairs_merged']} without an overlap, counted too short)")
    click.echo(f"reads: {rd['seen']} seen, {rd['used']} used, {rd['rejected']} rejected "
               f"({rd['rejected_no_primer']} without primer, {rd['rejected_bad_index']} with unreadable index, "
               f"{rd['rejected_too_short']} too short)")
    click.echo(f"oligos: {ol['recovered']}/{ol['expected']} recovered, {ol['missing']} missing")
    for st in rep.get("streams", []):
        if "outer" in st and st["outer"]["blocks"]:
            o = st["outer"]
            click.echo(f"outer code: {o['rebuilt_cells']} symbols rebuilt, {o['corrected_columns']} columns corrected, "
                       f"{o['failed_columns']} failed")
    if "codewords" in rep:
        cw = rep["codewords"]
        click.echo(f"codewords: {cw['repaired']} repaired, {cw['erased']} erased of {cw['total']}")
    click.echo(f"exact: {'yes' if rep['exact'] else 'no'}")
    what = im.get("model") or im["codec"]
    click.echo(f"wrote {output} ({im.get('width')}x{im.get('height')} {im.get('mode')}, {what})  [{rep['seconds']:.1f} s]")
    if reference:
        click.echo(f"PSNR against {reference}: {rep['psnr_db']:.2f} dB (peak {rep['psnr_peak']})")


def _encode_pool(images, output, codec, rate, quality, redundancy, model, noise_trained, oligo_length, primer_f,
                 primer_r, header_copies, append, group_size, pool_id, jobs, as_json, quiet, flatten=False,
                 to_8bit=False, fast=False):
    """``encode`` of a pool (see :mod:`dnaimg.pool`)."""
    import os
    from pathlib import Path
    from dnaimg import pool
    from dnaimg.codecs import canonical
    from dnaimg.dna.seqio import check_writable
    from dnaimg.image import IMAGE_SUFFIXES
    _check_fasta_name(output)
    check_writable(output)
    manifest = pool.manifest_path(output)
    inputs = [Path(p).resolve() for p in images] + ([Path(append).resolve()] if append else [])
    if append:
        inputs.append(pool.manifest_path(append).resolve())
    for target in (Path(output).resolve(), manifest.resolve()):
        if any(target == p or (p.is_dir() and target.parent == p and target.suffix.lower() in IMAGE_SUFFIXES)
               for p in inputs):
            raise UserError(f"{target} is an input: choose another output")
    codec = canonical(codec) if codec is not None else \
        (_codec_of_model(model, noise_trained) if model or noise_trained else None)     # None: per image
    if codec == "robust" and model:
        from dnaimg.zoo.registry import select_point
        select_point(model, None, noise_trained)
    pid = None
    if pool_id is not None:
        try:
            pid = int(pool_id, 16)
            if not 0 <= pid < 2 ** 32:
                raise ValueError
        except ValueError:
            raise UserError(f"--pool-id takes a 32-bit hex number such as 1a2b3c4d, got {pool_id!r}") from None
    primers = None
    if primer_f or primer_r:
        from dnaimg.dna.container import Layout
        primers = ((primer_f or Layout.primer_f).upper(), (primer_r or Layout.primer_r).upper())
    files = pool.list_images(images)
    if not quiet:
        for line in pool.left_out(images):
            click.echo(f"note: {line}", err=True)
    t0 = time.time()
    try:
        with _bar(len(files), "encoding images", quiet) as bar:
            enc = pool.encode_pool(images, codec, rate=rate, quality=quality, model=model, noise_trained=noise_trained,
                                   flatten=flatten, to_8bit=to_8bit, fast=fast,
                                   redundancy=redundancy, oligo_length=oligo_length, copies=header_copies,
                                   group_size=group_size, primers=primers, append=append, pool_id=pid,
                                   jobs=jobs or min(len(files), os.cpu_count() or 1), progress=bar.update)
        n, mpath = pool.write_pool(enc, output)
    except pool.PoolError as e:
        raise UserError(str(e)) from None
    man = json.loads(mpath.read_text())
    man["seconds"] = round(time.time() - t0, 2)
    if as_json:
        click.echo(json.dumps(man, indent=2))
        return
    new = {im.member.image_id for im in enc.images}
    for e in man["images"]:
        if e["id"] in new:
            r = e["rates"]
            tot = f", {r['total_nt_per_pixel']:.3f} nt/px" if r.get("total_nt_per_pixel") is not None else ""
            click.echo(f"  {e['file']:<32} id {e['id']:<5} pair {e['primer_pair']:<3} {e['codec']:<8} "
                       f"{e['oligos']} oligos{tot}")
    pr = man["primers"]
    extra = (f"; primers at edit distance >= {pr['min_edit_distance_to_inserts']} from the inserts "
             f"({pr['inserts_checked']} of {pr['inserts']} checked)") if "min_edit_distance_to_inserts" in pr else ""
    click.echo(f"wrote {output}: a pool of {len(man['images'])} images ({len(enc.images)} new), {n} oligos of "
               f"{man['oligo_length']} nt, pool id {man['pool_id']}, primer pairs {pr['pairs_used'] or 'own'}"
               f"{extra}; manifest {mpath}  [{man['seconds']:.1f} s]")


def _decode_pool(reads, output, primer_f, primer_r, reference, select, strict, precision, only, workers, scheduler,
                 as_json, quiet, trimmed=None, paired=None, none_found: Exception | None = None):
    """``decode`` of a pool into a folder, or of one image of it (--only, --workers) into a file.
    ``none_found``: the error to raise where the reads hold no image at all (a fallback's first error)."""
    import os
    from pathlib import Path
    from dnaimg import pool
    from dnaimg.image import save_pixels
    if reference:
        raise UserError("--reference is for one image: decode it with -o FILE.png (and --only NAME)")
    if select:
        raise UserError("--select picks a tag in a single-image decode; in a pool use --only NAME_OR_ID")
    to_dir = os.path.isdir(output) or str(output).endswith(("/", os.sep))
    if to_dir and not os.path.isdir(output):
        parent = Path(output).resolve().parent
        if not parent.is_dir():
            raise UserError(f"{output}: folder {parent} does not exist")
    if not to_dir:
        from dnaimg.dna.seqio import check_writable
        check_writable(output)
        _refuse_overwrite(output, reads, "reads")
        _image_format(output)
    if (workers or scheduler) and "-" in reads:
        raise UserError("a Dask decode reads files by byte ranges: standard input (-) cannot be shared out")
    t0 = time.time()
    warning = None
    with _bar(None, "reads", quiet) as bar:
        dec = pool.decode_pool(list(reads), only=only, primer_f=primer_f, primer_r=primer_r, workers=workers,
                               scheduler=scheduler, precision=precision, progress=bar.update,
                               trimmed=trimmed or None, paired=paired)
    try:
        if to_dir:
            written = pool.save_images(dec, output, reads)
        else:
            drawn = [d for d in dec.images if d.image is not None]
            if only is None and len(drawn) > 1:
                drawn.sort(key=lambda d: -dec.stats["reads_per_image"].get(f"{d.pair}:{d.tag:02x}", 0))
                click.echo(f"dnaimg: warning: the reads hold {len(dec.images)} images; wrote {drawn[0].output}, "
                           "choose another with --only NAME_OR_ID (or -o FOLDER/ for all)", err=True)
            if not drawn:
                errs = [d.error for d in dec.images if d.error] + [r["error"] for r in dec.refused]
                if not errs and none_found is not None:
                    raise none_found
                raise UserError(errs[0] if errs else "no image could be decoded")
            warning = _write_image(drawn[0].image, output)
            drawn[0].output = str(output)
            dec.images = drawn[:1]
            written = [Path(output)]
    except pool.PoolError as e:
        raise UserError(str(e)) from None
    rep = dec.report()
    rep["output"] = str(output)
    rep["seconds"] = round(time.time() - t0, 2)
    if as_json:
        click.echo(json.dumps(rep, indent=2, default=str))
    else:
        st = rep["reads"]
        click.echo(f"reads: {st['seen']} seen, {st['indexed']} with a readable index, {st['no_primer_pair']} with none "
                   f"of the primer pairs, primer pairs found: {st['pairs']}")
        for d in rep["images"]:
            state = "error: " + d["error"] if d.get("error") else ("exact" if d["exact"] else "NOT exact")
            where = f"-> {Path(output) / d['output'] if to_dir else output}" if not d.get("error") else ""
            ol = d.get("oligos") or {}
            ident = d["id"] if d["file"] is not None else d["image_id"]     # (a pool member's number, else hex as encode shows it)
            click.echo(f"  {str(d['file'] or '-'):<32} id {ident:<5} pair {d['primer_pair']:<3} {d['codec']:<8} "
                       f"{ol.get('missing', '?')}/{ol.get('expected', '?')} oligos missing, {state} {where}".rstrip())
        if dec.failed:
            click.echo(f"  {len(dec.failed)} other tags with reads but no readable header (too few reads, or "
                       "reads of files not amplified)")
        click.echo(f"wrote {len(written)} image{'s' if len(written) != 1 else ''}  [{rep['seconds']:.1f} s]")
    if warning:
        click.echo(f"dnaimg: warning: {warning}", err=True)
    for r in dec.refused:
        click.echo(f"dnaimg: error: primer pair {r['primer_pair']}: {r['error']}", err=True)
    if not dec.images and not dec.refused:
        st = rep["reads"]
        raise UserError(f"no image in the reads: {st['seen']} reads, {st['no_primer_pair']} with none of the primer "
                        f"pairs, {st['no_primer']} without primers, {st['indexed']} with a readable index"
                        + (f", {len(dec.failed)} tags without a readable header" if dec.failed else ""))
    failed = [d for d in dec.images if d.image is None]
    for d in failed:
        click.echo(f"dnaimg: error: {d.name or d.output}: {d.error}", err=True)
    if dec.refused or (failed and to_dir):
        sys.exit(1)
    if strict and not all(d.exact for d in dec.images if d.image is not None):
        click.echo("dnaimg: strict: not every image is exactly the encoded one", err=True)
        sys.exit(3)


@main.command()
@click.argument("fasta", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Reads to write: FASTQ (.fastq/.fq), or FASTA otherwise; .gz to compress.")
@click.option("--preset", type=click.Choice(["miseq", "nextseq", "hedges", "nanopore", "nanopore-uniform", "paper"]), default=None,
              help="Error profile (see the README); the rate options below override it.")
@click.option("--sub-rate", type=_FloatRange(0, 0.5), default=None, help="Substitutions per nt.")
@click.option("--ins-rate", type=_FloatRange(0, 0.5), default=None, help="Insertions per nt.")
@click.option("--del-rate", type=_FloatRange(0, 0.5), default=None, help="Deletions per nt.")
@click.option("--long-del-rate", type=_FloatRange(0, 0.1), default=None,
              help="Starts of 2-10 nt deletions per nt.")
@click.option("--coverage", type=_FloatRange(min=0, min_open=True), default=None,
              help="Mean reads per oligo.  [default: 10; paper preset: 1]")
@click.option("--sigma", type=_FloatRange(0, 5), default=None,
              help="Lognormal sigma of copies per oligo.  [default: 0.3]")
@click.option("--dropout", type=_FloatRange(0, 1), default=None, help="Fraction of oligos lost.  [default: 0]")
@click.option("--exact-coverage", is_flag=True, default=None, help="Exactly COVERAGE reads per oligo.")
@click.option("--amplify", default=None, metavar="NAME_OR_ID|pair:N",
              help="Random access: first amplify (PCR) with the primer pair of this file of the pool (the manifest "
                   "beside FASTA, or its headers, say which), or pair N of the primer set; COVERAGE is then per "
                   "amplified oligo.")
@click.option("--off-target", type=_FloatRange(0, 0.99), default=0.01, show_default=True,
              help="With --amplify: the fraction of all reads that come from the other oligos of the pool.")
@click.option("--flank", default=None, metavar="N|LOW-HIGH",
              help="Random bases before and after every read, N nt or LOW to HIGH nt at each end (nanopore reads "
                   "carry 10-60 nt of adapter and barcode).")
@click.option("--adapter-tail", type=click.IntRange(0, 10000), default=0, metavar="N",
              help="N nt after every read: the Illumina adapter, then random bases (reads longer than the oligo).")
@click.option("--trimmed", is_flag=True,
              help="Reads with their primers trimmed off, as cutadapt leaves them (the primers of --primer-f/-r "
                   "lengths, 20 nt each by default, cut from every oligo).")
@click.option("--paired", "paired", type=click.Path(dir_okay=False), default=None, metavar="R2.fastq",
              help="Paired-end run: -o gets R1 (the first --read-length nt of every read), this file R2 (the first "
                   "--read-length nt of its reverse complement); names NAME 1:N:0:1 and NAME 2:N:0:1.")
@click.option("--read-length", type=click.IntRange(20, 100000), default=150, show_default=True,
              help="With --paired: the length of each mate (a shorter read goes on into the adapter).")
@with_primers
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
@friendly
def simulate(fasta, output, preset, sub_rate, ins_rate, del_rate, long_del_rate, coverage, sigma, dropout,
             exact_coverage, amplify, off_target, flank, adapter_tail, trimmed, paired, read_length, primer_f,
             primer_r, seed, quiet):
    """Simulate synthesis and sequencing of the oligos in FASTA (- reads standard input), after a
    selective amplification if --amplify asks for one.

    What a real run adds can be simulated too: flanks (--flank), adapter tails (--adapter-tail),
    trimmed primers (--trimmed) and paired-end mates (--paired R2.fastq --read-length 150)."""
    from dnaimg.dna import alphabet as dna
    from dnaimg.dna.channel import Channel, PRESETS, simulate_chunks
    from dnaimg.dna import runs
    from dnaimg.dna.seqio import (InputError, check_writable, is_fastq_path, is_stdin, iter_sequences, shown,
                                  write_fasta, write_fastq)
    check_writable(output)
    _refuse_overwrite(output, [fasta], "the oligos")
    if paired:
        check_writable(paired)
        _refuse_overwrite(paired, [fasta, output], "the oligos or R1")
    try:
        flank_span = runs.parse_span(flank) if flank else None
    except ValueError as e:
        raise UserError(f"--flank: {e}") from None
    if not amplify and click.get_current_context().get_parameter_source("off_target") == ParameterSource.COMMANDLINE:
        raise UserError("--off-target is the share of reads from the rest of the pool in an amplification: "
                        "give --amplify too")
    if amplify and is_stdin(fasta) and not amplify.lower().startswith("pair:"):
        raise UserError("--amplify NAME finds the file's primer pair in the pool's manifest or headers, which "
                        "standard input (-) does not have: give the FASTA file, or --amplify pair:N")
    base = PRESETS[preset] if preset else Channel()
    over = {"sub": sub_rate, "ins": ins_rate, "dels": del_rate, "long_del": long_del_rate,
            "coverage": coverage, "sigma": sigma, "dropout": dropout, "exact_coverage": exact_coverage}
    from dataclasses import replace
    ch = replace(base, **{k: v for k, v in over.items() if v is not None})
    try:
        ch.validate()
    except ValueError as e:
        raise UserError(str(e)) from None
    if ch.exact_coverage and ch.coverage != int(ch.coverage):
        raise UserError(f"--exact-coverage draws a whole number of reads per oligo, not {ch.coverage:g} (--coverage)")
    oligos = []
    for s in iter_sequences(fasta):
        a = dna.encode(s)
        if a.size == 0 or a.max() > 3:
            raise InputError(f"{shown(fasta)}: record {len(oligos) + 1} is not a plain A/C/G/T sequence")
        oligos.append(a)
    if not oligos:
        raise InputError(f"{shown(fasta)}: no sequences")
    target, what = None, ""
    if amplify:
        from dnaimg.pool import amplified_oligos
        try:
            target, what = amplified_oligos(fasta, oligos, amplify)
        except ValueError as e:
            raise UserError(str(e)) from None
    if target is not None and ch.exact_coverage:
        raise UserError("--amplify draws reads by copy number: leave out --exact-coverage (and the paper preset)")
    if trimmed:
        lay = _layout(None, primer_f, primer_r)
        mf, mr = len(lay.primer_f), len(lay.primer_r)
        if any(len(o) <= mf + mr for o in oligos):
            raise UserError(f"--trimmed: an oligo of {shown(fasta)} is not longer than its primers ({mf} + {mr} nt)")
        oligos = [o[mf:len(o) - mr] for o in oligos]
    t0 = time.time()
    q = ch.quality_char()
    final = {}
    try:
        chunks = simulate_chunks(oligos, ch, seed=seed, target=target, off_target=off_target if amplify else 0.0)
    except ValueError as e:
        raise UserError(str(e)) from None
    rng = np.random.default_rng([seed, 12])

    bar = _bar(None, "reads", quiet)

    def shaped():
        i = 0
        for reads, which in chunks:
            if reads is None:
                final["which"] = which
                return
            yield i, runs.shape_reads(reads, rng, flank_span, adapter_tail)
            i += len(reads)
            bar.update(len(reads))

    def texts():
        for i, rs in shaped():
            for k, t in enumerate(dna.decode_many(rs)):
                yield f"read{i + k + 1}", t
    with bar, _new_file(output) as out1, _new_file(paired) as out2:
        if paired:
            n = _write_mates(out1, out2, shaped(), read_length, q, rng)
        elif is_fastq_path(output):
            n = write_fastq(out1, ((nm, t, q * len(t)) for nm, t in texts()))
        else:
            n = write_fasta(out1, texts())
    if n == 0:
        click.echo(f"dnaimg: warning: no read was drawn (mean coverage {ch.coverage:g}, dropout {ch.dropout:g}): "
                   f"{output} holds none", err=True)
    if not quiet:
        which = final["which"]
        lost = len(oligos) - len(np.unique(which))
        amp = ""
        if target is not None:
            off = int((~target[which]).sum()) if len(which) else 0
            amp = (f"; amplified {what}: {int(target.sum())} of {len(oligos)} oligos, {off} reads "
                   f"({off / max(1, len(which)):.1%}) off target")
        click.echo(f"simulated {n} reads from {len(oligos)} oligos (sub {ch.sub:.4g}, ins {ch.ins:.4g}, "
                   f"del {ch.dels:.4g}, long del {ch.long_del:.4g} per nt; mean coverage {ch.coverage:g}); "
                   f"{lost} oligos got no read{amp}; wrote {output}"
                   + (f" (R1) and {paired} (R2), {read_length} nt each" if paired else "")
                   + f"  [{time.time() - t0:.1f} s]", err=str(output) == "-")


@contextlib.contextmanager
def _new_file(path):
    """Yields where to write ``path``: a temporary file beside it (its name ending in ``path``'s, so
    that the suffixes still choose the format and compression), moved onto ``path`` once the block
    ends without an error.  An interrupted or failed write leaves no partial file, and whatever
    ``path`` held before stays.  ``-`` and None pass through."""
    if path is None or str(path) == "-":
        yield path
        return
    import os
    from pathlib import Path
    p = Path(path)
    tmp = p.with_name(f".part{os.getpid()}.{p.name}")
    try:
        yield tmp
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def _write_mates(out1, out2, reads, read_length, q, rng) -> int:
    """Write the R1 and R2 mates of ``reads`` ((number, read) pairs) to two files: pairs written."""
    import dnaio
    from dnaimg.dna import alphabet as dna
    from dnaimg.dna.runs import mates
    from dnaimg.dna.seqio import InputError, is_fastq_path
    n = 0
    fmt1 = "fastq" if is_fastq_path(out1) else "fasta"
    fmt2 = "fastq" if is_fastq_path(out2) else "fasta"
    try:
        with dnaio.open(str(out1), mode="w", fileformat=fmt1) as f1, \
                dnaio.open(str(out2), mode="w", fileformat=fmt2) as f2:
            for i, rs in reads:
                ab = [mates(r, read_length, rng) for r in rs]
                for k, (ta, tb) in enumerate(zip(dna.decode_many([x[0] for x in ab]),
                                                 dna.decode_many([x[1] for x in ab]))):
                    name = f"read{i + k + 1}"
                    f1.write(dnaio.SequenceRecord(f"{name} 1:N:0:1", ta, q * len(ta) if fmt1 == "fastq" else None))
                    f2.write(dnaio.SequenceRecord(f"{name} 2:N:0:1", tb, q * len(tb) if fmt2 == "fastq" else None))
                    n += 1
    except OSError as e:
        raise InputError(f"{out1}, {out2}: cannot write ({e.strerror or e})") from None
    return n


@main.command()
@click.argument("fasta", type=click.Path(dir_okay=False))
@click.option("--summary", is_flag=True, help="Only the summary and the violating oligos.")
@friendly
def check(fasta, summary):
    """Check every oligo of FASTA (- reads standard input) against the synthesis constraints.

    Prints, per oligo: name, length, longest homopolymer, GC content, longest tandem repeat and
    OK or the violations.  Exit status 1 if any oligo violates a constraint.
    """
    from dnaimg.dna import constraints as C
    from dnaimg.dna import alphabet as dna
    from dnaimg.dna.seqio import iter_records, shown
    n = bad = 0
    lengths = set()
    for name, seq in iter_records(fasta):
        if n == 0 and not summary:      # (after the first record: a file that is not FASTA prints nothing)
            click.echo("name\tlength\tlongest_run\tgc\tlongest_repeat\tstatus")
        n += 1
        arr = dna.encode(seq)
        rep = C.report(arr)
        lengths.add(rep.length)
        viol = rep.violations()
        if arr.size and arr.max() > 3:
            viol.append("characters other than A/C/G/T")
        if arr.size == 0:
            viol.append("empty sequence")
        if viol:
            bad += 1
        if not summary or viol:
            click.echo(f"{name}\t{rep.length}\t{rep.longest_run}\t{rep.gc:.3f}\t{rep.longest_repeat}\t"
                       f"{'; '.join(viol) if viol else 'OK'}")
    if n == 0:
        raise UserError(f"{shown(fasta)}: no sequences")
    click.echo(f"{n} oligos, lengths {min(lengths)}-{max(lengths)} nt: {n - bad} pass, {bad} violate "
               f"(max run {C.MAX_RUN}, GC {C.GC_MIN:.0%}-{C.GC_MAX:.0%}, max tandem repeat {C.MAX_REPEAT} nt)",
               err=not summary)
    if bad:
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@with_primers
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@friendly
def info(file, primer_f, primer_r, as_json):
    """What the header oligos in FILE (the encoded FASTA, or reads) say."""
    from dnaimg import api
    from dnaimg.codecs import CODEC_IDS, CODEC_NAMES, CodecError
    from dnaimg.dna.header import HeaderV1
    from dnaimg.dna.seqio import ReadBatches
    from dnaimg.zoo.registry import ModelError, name_for_id
    from dnaimg.dna.pool import decode_images, pairs_for, sort_pool
    try:
        ps = sort_pool(ReadBatches(file), pairs_for(primer_f, primer_r))     # every pair of the primer set
        found = decode_images(ps, only="\0")                                 # headers only
    except ValueError as e:
        raise api.DecodeError(str(e)) from None
    for r in found:
        if r.mixed:
            click.echo(f"dnaimg: warning: primer pair {r.pair}: {r.error}", err=True)
    headers = [(r.pair, r.tag, r.header) for r in found if r.header is not None]
    if not headers:
        raise api.DecodeError("no header could be decoded (" + "; ".join(
            f"pair {r.pair} tag {r.tag:02x}: {r.error}" for r in found) + ")" if found else "no header could be decoded")
    out = []
    for pair, t, h in headers:
        d = h.to_dict()
        d["reads"] = ps.tag_counts[(pair, t)]
        d["primer_pair_found"] = pair
        if isinstance(h, HeaderV1):
            d["codec"] = "robust"
            mid = h.model_id
        else:
            d["codec"] = CODEC_NAMES.get(h.codec_id, f"unknown ({h.codec_id})")
            mid = None
            if d["codec"] == "robust":
                from dnaimg.codecs.robust import RobustParams
                rp = RobustParams.unpack(h.meta)
                d.update({"width": rp.width, "height": rp.height, "channels": rp.channels, "levels": rp.levels,
                          "codeword_nt": rp.codeword_nt})
                mid = rp.model_id
            elif d["codec"] == "compact":
                from dnaimg.codecs.compact import CompactParams, model_for_weights
                try:
                    cp = CompactParams.unpack(h.meta)
                    d.update({"width": cp.width, "height": cp.height, "rate_index": cp.rate_row / 8,
                              "packet_oligos": cp.packet_rows, "weights_id": f"{cp.model_id:08x}"})
                    d["model"] = model_for_weights(cp.model_id)
                except (api.DecodeError, ModelError):
                    d.setdefault("model", None)
            elif d["codec"] in CODEC_IDS:
                from dnaimg.codecs.classic import unpack_meta
                try:
                    dtype, ch, hh, ww = unpack_meta(h.meta)
                    d.update({"width": ww, "height": hh, "channels": ch, "bit_depth": 8 * np.dtype(dtype).itemsize})
                except CodecError:
                    pass
        if mid is not None:
            try:
                d["model"] = name_for_id(mid)
            except ModelError:
                d["model"] = None
        out.append(d)
    if as_json:
        click.echo(json.dumps(out if len(out) > 1 else out[0], indent=2))
        return
    for d in out:
        click.echo(f"image tag {d['tag']:02x} ({d['reads']} reads/oligos)")
        if d.get("name") is not None:
            click.echo(f"  file             {d['name']} (id {d['image_id']} in pool {d['pool_id']:08x}, "
                       f"primer pair {d['primer_pair'] if d['primer_pair'] != 0xFFFF else 'not from the set'})")
        click.echo(f"  format version   {d['version']}")
        click.echo(f"  codec            {d['codec']}" + (f", model {d.get('model') or 'unknown'}" if 'model' in d else ""))
        click.echo(f"  oligos           {d['oligo_length']} nt, primers {d['primer_f_nt']}+{d['primer_r_nt']} nt")
        if d["version"] == 1:
            click.echo(f"  image            {d['width']}x{d['height']} px, {d['n_data']} data oligos")
        else:
            if "rate_index" in d:
                click.echo(f"  image            {d['width']}x{d['height']} px, rate index {d['rate_index']:g}, "
                           f"weights {d['weights_id']}, packets of {d['packet_oligos']} oligos")
            elif "levels" in d:
                click.echo(f"  image            {d['width']}x{d['height']} px, latent {d['channels']} channels x "
                           f"{d['levels']} levels")
            elif "bit_depth" in d:
                click.echo(f"  image            {d['width']}x{d['height']} px, {d['channels']} channel"
                           f"{'s' if d['channels'] > 1 else ''} of {d['bit_depth']} bits")
            for i, s in enumerate(d["streams"]):
                kind = "bytes" if s["kind"] == 0 else (f"words ({s['codeword_nt']} nt, {s['levels']} levels"
                                                          + (", markers)" if s["kind"] == 2 else ")"))
                click.echo(f"  stream {i}         {kind}: {s['length']} {'bytes' if s['kind'] == 0 else 'values'}, "
                           f"{s['n_data']} data oligos, outer {s['blocks']}x{s['parity']} parity rows, "
                           f"CRC32 {s['crc']:#010x}")


def _extension_says(c: dict) -> str:
    """What a compact model that extends another adds to it, from its card."""
    parts = []
    if "z_context" in c:
        parts.append("a context for its hyper-latent")
    if "narrow_tables" in c:
        nt = c["narrow_tables"]
        parts.append(f"{nt['tables']} narrow tables" + (" and a wider neighbourhood" if nt.get("far_neighbours") else "")
                     + " for its coder's context")
    if "post_filter" in c:
        pf = c["post_filter"]
        deeper = f" (grown to {pf['layers']} layers of {pf['width']} channels)" if "grown_from" in pf else ""
        parts.append(f"its post-filter{deeper} fitted to what its encoder writes")
    return ", and ".join(parts) or "a context model"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@friendly
def models(as_json):
    """List the shipped models and their operating points (rate, Kodak PSNR)."""
    from dnaimg.zoo.registry import DEFAULT_MODEL, default_point, list_models, operating_points
    cards = list_models()
    compact_cards = list_models("compact")
    if as_json:
        click.echo(json.dumps(cards + compact_cards, indent=2))
        return
    if not cards and not compact_cards:
        raise UserError("no model installed")
    from dnaimg.codecs.compact import DEFAULT_GRAY_MODEL as COMPACT_GRAY
    from dnaimg.codecs.compact import DEFAULT_MODEL as COMPACT_DEFAULT
    for c in compact_cards:
        a, t = c["architecture"], c.get("training", {})
        star = (" (default for --codec compact)" if c["name"] == COMPACT_DEFAULT else
                " (one channel: gray images' default for --codec compact)" if c["name"] == COMPACT_GRAY else "")
        click.echo(f"{c['name']}{star}: compact codec, {a.get('type', 'learned')}, N={a['N']} M={a['M']}, "
                   f"{t.get('steps', '?')} training steps; rate index 0..{len(c.get('rate_points') or a['lambdas']) - 1} "
                   "(1/8 steps)" + (f"; {c['extends']} with " + _extension_says(c) if c.get("extends") else ""))
        for k in c.get("kodak", []):
            click.echo(f"  rate index {k['rate_index']:<5g} Kodak {k['psnr_db']:.2f} dB, MS-SSIM {k['ms_ssim']:.4f}, "
                       f"total {k['total_nt_per_pixel']:.3f} nt/px")
        for k in c.get("medical", []):
            some = (f", the {k['images']} of {k['of_images']} images it fits"
                    if k.get("of_images", k.get("images")) != k.get("images") else "")
            click.echo(f"  {k['folder']}: {k['psnr_db']:.2f} dB at {k['total_nt_per_pixel']:.3f} total nt/px "
                       f"(cap {k['cap']}{some}; AVIF {k['avif_psnr_db']:.2f} dB on them)")
    twins = {(p.model, p.name): p.kodak for c in cards for p in operating_points(c)}
    starred = robust_shown = False
    for c in cards:
        kind = "noise-trained" if c.get("noise_trained") else "plain"
        star = " (default)" if c["name"] == DEFAULT_MODEL else ""
        extra = f"; {c['superseded']}" if c.get("superseded") else ""
        a = c["architecture"]
        click.echo(f"{c['name']}{star}: {kind}, {a['channels']}-channel latent{extra}")
        dflt = default_point(c["name"])
        for p in operating_points(c):
            mark = " *" if p == dflt and len(operating_points(c)) > 1 else ""
            starred = starred or bool(mark)
            click.echo(f"  {p.label:<22} {p.payload_nt_per_pixel:5.3f} nt/px payload  {p.channels:>2} ch "
                       f"{p.levels:>3} levels {p.codeword_nt}-nt  {_point_quality(p, twins)}{mark}")
            subs = _point_robustness(p)
            if subs:
                robust_shown = True
                click.echo(f"  {'':<22} {subs}")
    notes = []
    if starred:
        notes.append("* the model's default point (--model NAME without :POINT)")
    if robust_shown:
        notes.append("substitutions: mean Kodak PSNR with one read per oligo and that share of nt substituted "
                     "(dnaimg bench noise); a noise-trained point reads the same oligos as its plain twin")
    for n in notes:
        click.echo(n)


def _point_quality(p, twins) -> str:
    """Kodak numbers of an operating point from its card: the rate-distortion bench's, else the
    noise bench's noiseless column (and the total nt/px of the plain twin, whose oligos it reads)."""
    k = p.kodak
    if "psnr_db" in k:
        return (f"Kodak {k['psnr_db']:.2f} dB, MS-SSIM {k['ms_ssim']:.4f}, total {k['total_nt_per_pixel']:.3f} "
                "nt/px")
    clean = p.card.get("kodak_substitutions", {}).get("0%")
    if clean is None:
        return "not measured"
    base = p.model[:-len("-noise")] if p.model.endswith("-noise") else None
    twin = twins.get((base, p.name)) or {}
    tot = f", total {twin['total_nt_per_pixel']:.3f} nt/px" if "total_nt_per_pixel" in twin else ""
    return f"Kodak {clean:.2f} dB{tot}"


def _point_robustness(p) -> str:
    """"substitutions 1 % 28.43, 3 % 27.28 ... dB" from the card's noise bench, or ""."""
    ks = p.card.get("kodak_substitutions") or {}
    rates = sorted((float(k[:-1]), v) for k, v in ks.items() if k.endswith("%") and k != "0%"
                   and isinstance(v, (int, float)))
    if not rates:
        return ""
    return "substitutions " + ", ".join(f"{r:g} % {v:.2f}" for r, v in rates) + " dB"


@main.command("train")
@click.option("--arch", type=click.Choice(["cae", "compact"]), default="cae", show_default=True,
              help="cae: the robust codec's autoencoder (fixed-length codewords); compact: the mean-scale "
                   "hyperprior with gain units (entropy-coded, one network for every rate).")
@click.option("--data", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training images (repeat for several).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder (checkpoint.pt); an existing checkpoint there is resumed.")
@click.option("--channels", type=click.IntRange(1, 1024), default=None,
              help="Latent channels [cae: 32, compact: 192; cdf97: 256 per plane].")
@click.option("--width", type=click.IntRange(4, 1024), default=None, help="compact: transform width N [128].")
@click.option("--levels", type=click.IntRange(3, 4097), default=9, show_default=True,
              help="Quantiser levels (odd; q = 2/(levels-1)).")
@click.option("--codeword-nt", type=click.IntRange(0, 10), default=0,
              help="Codeword length for the noise model (0: shortest that fits the levels).")
@click.option("--steps", type=click.IntRange(1), default=20000, show_default=True,
              help="Optimiser steps (a resumed run goes on to this many).")
@click.option("--batch", type=click.IntRange(1), default=None, help="Batch size [cae: 16, compact: 8].")
@click.option("--crop", type=click.IntRange(16), default=128, show_default=True,
              help="Side of the random square crops a batch is made of, in pixels.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Adam's learning rate.")
@click.option("--lambda", "lam", type=_FloatRange(0), default=0.0, show_default=True,
              help="Weight of the base-4 entropy of the quantised latent in the loss.")
@click.option("--noise", type=click.Choice(["none", "exact", "gaussian"]), default="none", show_default=True,
              help="Substitution noise on the latent: the exact codebook channel or the Gaussian model of Pic & Antonini.")
@click.option("--noise-max", type=_FloatRange(0, 0.5), default=0.05, show_default=True,
              help="Largest substitution rate per nt.")
@click.option("--noise-ramp", type=_FloatRange(0, 1), default=0.5, show_default=True,
              help="Fraction of the steps over which the rate rises from 0.")
@click.option("--noise-mix", is_flag=True,
              help="Draw each step's substitution rate uniformly between 0 and the current maximum.")
@click.option("--noise-erasures", is_flag=True,
              help="With --noise exact: also lose values with their oligo, at the rate one read per oligo gives.")
@click.option("--multi-channels", default="", metavar="K1,K2,..",
              help="Multi-rate training: each sample keeps the first K channels, K drawn from this list.")
@click.option("--multi-levels", default="", metavar="L1,L2,..",
              help="Multi-rate training: each sample is quantised with L levels, L drawn from this list.")
@click.option("--init", default=None,
              help="Start from this shipped model's weights (fine-tuning); compact: also a checkpoint.pt "
                   "(an RGB model starts a --gray one).")
@click.option("--decoder-only", is_flag=True, help="Freeze the encoder (noise-aware fine-tuning of the decoder).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--threads", type=click.IntRange(0), default=0, help="Torch threads (0: default).")
@click.option("--no-bf16", is_flag=True, help="Train in fp32 instead of bf16 autocast.")
@click.option("--lambdas", default="", metavar="L1,L2,..",
              help="compact: the rate points (MSE weights at the 8-bit scale) [0.0009,0.0018,0.0035,0.0067,0.013,0.025,0.0483].")
@click.option("--gray", is_flag=True, help="compact: one-channel model (images are converted to luma).")
@click.option("--transform", type=click.Choice(["gdn", "cdf97"]), default="gdn", show_default=True,
              help="compact: gdn (convolutions with GDN) or cdf97 (JPEG 2000's 9/7 wavelet with a learned "
                   "post-filter, Laplacian conditionals; 256 latent channels per plane, trains in far fewer steps).")
@click.option("--context", "context_rate", is_flag=True,
              help="compact, cdf97: train with the coder's context in the rate (the hyperprior learns what the "
                   "context cannot tell); fit the context table afterwards with python -m dnaimg.zoo.context.")
@click.option("--erasure-samples", type=_FloatRange(0, 1), default=0.2, show_default=True,
              help="compact: fraction of samples that lose latent values, as when oligos are lost.")
@click.option("--erasure-max", type=_FloatRange(0, 1), default=0.3, show_default=True,
              help="compact: such a sample loses a fraction of its latent values drawn from [0, this].")
@click.option("--no-downscale", is_flag=True,
              help="Crop the training images at full size (default: halve those at least twice the crop, "
                   "which hides JPEG artefacts of photographs).")
@click.option("--export", "export_name", default=None, help="At the end, ship the weights as models/NAME.")
@click.option("--device", default="cpu", show_default=True,
              help="compact: where to train (cpu, cuda, cuda:1, ...); the images and batches live there.")
@click.option("--minutes", type=_FloatRange(0, min_open=True), default=None,
              help="compact: stop after this much wall time (checkpoint saved); the learning-rate plan "
                   "ends with it (--steps lowered to what fits once the pace is measured).")
@friendly
def train_cmd(arch, data, out, channels, width, levels, codeword_nt, steps, batch, crop, lr, lam, noise, noise_max, noise_ramp,
              noise_mix, noise_erasures, multi_channels, multi_levels, init, decoder_only, seed, threads, no_bf16,
              lambdas, gray, transform, context_rate, erasure_samples, erasure_max, no_downscale, export_name, device,
              minutes):
    """Train (or resume) a model; checkpoints every 5 minutes."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if arch == "compact":
        from dnaimg.zoo.compact import DEFAULT_LAMBDAS, CompactConfig
        from dnaimg.zoo.train_compact import ErasureTraining, train_compact
        try:
            lams = tuple(float(x) for x in lambdas.split(",") if x.strip()) or DEFAULT_LAMBDAS
        except ValueError:
            raise UserError(f"--lambdas takes comma-separated numbers, got {lambdas!r}") from None
        if sorted(lams) != list(lams) or not all(0 < x < float("inf") for x in lams):
            raise UserError("--lambdas must be positive, finite and increasing")
        if crop % 64:
            raise UserError(f"--crop must be a multiple of 64 for --arch compact (the hyper-latent's stride), not {crop}")
        planes = 1 if gray else 3
        if transform == "cdf97" and channels not in (None, 256 * planes):
            raise UserError(f"--transform cdf97 makes {256 * planes} latent channels (256 per plane), not {channels}")
        M = channels or (256 * planes if transform == "cdf97" else 192)
        if context_rate and transform != "cdf97":
            raise UserError("--context is for --transform cdf97 (the context follows the wavelet's layout)")
        ccfg = CompactConfig(N=width or 128, M=M, lambdas=lams, gray=gray, gdn="square", transform=transform,
                             conditional="laplace" if transform == "cdf97" else "gaussian", context=context_rate)
        try:
            dev = torch.device(device)
        except RuntimeError:
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda"):
            raise UserError(f"--device: unknown device {device!r} (cpu, cuda, cuda:1, ...)")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: this torch sees no CUDA device")
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        train_compact(data[0] if len(data) == 1 else list(data), out, ccfg, steps=steps, batch=batch or 8, crop=crop, lr=lr, seed=seed,
                      bf16=not no_bf16, erasures=ErasureTraining(erasure_samples, erasure_max),
                      progress=sys.stderr.isatty(), downscale=not no_downscale, init=init, device=device,
                      minutes=minutes)
        if export_name:
            from dnaimg.zoo.exact import export_compact
            path = export_compact(out, export_name)
            click.echo(f"exported {path}")
        return
    if device != "cpu" or minutes is not None:
        raise UserError("--device and --minutes are for --arch compact")
    if transform != "gdn" or gray or context_rate:
        raise UserError("--transform, --gray and --context are for --arch compact")
    if channels is not None and channels > 512:
        raise UserError(f"--channels: at most 512 for --arch cae, not {channels}")
    batch = batch or 16
    channels = channels or 32

    from dnaimg.zoo.model import ModelConfig
    from dnaimg.zoo.train import MultiRate, NoiseSchedule, export_checkpoint, train

    def int_list(text, opt):
        try:
            return tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise UserError(f"{opt} takes comma-separated integers, got {text!r}") from None
    mr = MultiRate(int_list(multi_channels, "--multi-channels"), int_list(multi_levels, "--multi-levels"))
    if any(not 1 <= k <= channels for k in mr.channels):
        raise UserError(f"--multi-channels must lie within 1..{channels}")
    if any(L % 2 == 0 or L < 3 for L in mr.levels):
        raise UserError("--multi-levels must be odd numbers >= 3")
    if levels % 2 == 0:
        raise UserError("--levels must be odd (the quantiser has a level at 0)")
    cfg = ModelConfig(channels=channels, levels=levels)
    ns = NoiseSchedule(kind=noise, p_max=noise_max, ramp=noise_ramp, codeword_nt=codeword_nt, erasures=noise_erasures,
                       mix=noise_mix)
    if len(data) != 1:
        raise UserError("--arch cae trains from one --data folder")
    data = data[0]
    train(data, out, cfg, steps=steps, batch=batch, crop=crop, lr=lr, seed=seed, bf16=not no_bf16, lam=lam,
          noise=ns, init=init, freeze_encoder=decoder_only, progress=sys.stderr.isatty(), multirate=mr)
    if export_name:
        path = export_checkpoint(out, export_name)
        click.echo(f"exported {path}")


# ---------------------------------------------------------------------------------------------
# benches


@main.group()
def bench():
    """Measure: rate-distortion, noise robustness, sequencing cost (ours vs classic codecs in DNA).

    Results go to OUT.json, OUT.csv and OUT.png; an interrupted run keeps its rows and the same
    command resumes it."""


def _bench_common(fn):
    opts = [
        click.option("--images", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Folder of test images (PNG/JPEG), e.g. the 24 Kodak images."),
        click.option("--out", required=True, type=click.Path(dir_okay=False),
                     help="Output prefix, e.g. docs/results/rd (writes .json, .csv, .png)."),
        click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images."),
        click.option("--quick", is_flag=True, help="3 images and a coarse grid: minutes, not hours."),
        click.option("--fresh", is_flag=True, help="Ignore earlier rows in OUT.json and start over."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
        click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Images measured in parallel (processes)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _split(text, kind=str):
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"cannot read the list {text!r}") from None


def _points(points, noise_only=None):
    """--points: NAME:POINT, or NAME for all of a model's points; default every shipped one."""
    from dnaimg.bench.suite import shipped_points
    from dnaimg.zoo.registry import card, operating_points, select_point
    if points.strip().lower() == "none":
        return []
    if not points:
        return shipped_points(noise_only)
    pts = []
    for p in _split(points):
        if ":" in p:
            pts.append(select_point(p).label)      # unknown names fail here, before any work
        else:
            pts += [q.label for q in operating_points(card(p))]
    return pts


def _run_bench(run, total, quiet, out, plot, after=None):
    from pathlib import Path
    with _bar(total, "benchmark", quiet) as bar:
        try:
            res = run(bar.update)
        except KeyboardInterrupt:
            raise UserError(f"interrupted; the finished rows are in {Path(out).with_suffix('.json')} "
                            "(run the same command again to resume)") from None
    plot(res, Path(out).with_suffix(".png"))
    if after:
        after(res)
    click.echo(f"wrote {Path(out).with_suffix('.json')}, .csv and .png ({len(res['rows'])} rows)")
    return res


@bench.command("rd")
@_bench_common
@click.option("--points", default="", help="Operating points: NAME:POINT, or NAME for all of a model's, "
              "comma-separated; none for no robust point. [default: every shipped one]")
@click.option("--codecs", default="jpeg,webp,jpeg2000,avif", show_default=True,
              help="Codecs to compare at their quality sweeps (also compact: its rate indexes).")
@click.option("--parity", type=_FloatRange(0, 1), default=0.15, show_default=True,
              help="Reed-Solomon parity oligos of the classic baselines, as a fraction of their data oligos.")
@click.option("--update-cards", is_flag=True, help="Store the means in the measured models' cards.")
@friendly
def bench_rd_cmd(images, out, limit, quick, fresh, quiet, jobs, points, codecs, parity, update_cards):
    """Rate-distortion, noiseless: PSNR/MS-SSIM against payload and total nt/pixel."""
    from dnaimg.bench import suite as B
    paths = B.image_paths(images, 3 if quick and not limit else limit)
    pts = _points(points)
    cs = _split(codecs)
    bad = [c for c in cs if c not in B.CLASSIC_CODECS]
    if bad:
        raise UserError(f"unknown codec {bad[0]!r} (choose from {', '.join(B.CLASSIC_CODECS)})")
    qual = B.QUICK_QUALITIES if quick else B.CLASSIC_QUALITIES
    total = len(paths) * (len(pts) + sum(len(qual[c]) for c in cs))
    res = _run_bench(lambda upd: B.bench_rd(paths, pts, cs, qual, out, parity, fresh, upd, jobs), total, quiet, out,
                     B.plot_rd)
    if update_cards:
        click.echo("updated the cards of " + ", ".join(B.update_cards(res, "dnaimg " + " ".join(sys.argv[1:]))))
    for s in sorted(res["summary"]["systems"], key=lambda s: (s["kind"], s["system"].split("@")[0],
                                                              s["total_nt_per_pixel"] or 0)):
        ps = "failed" if s["psnr_db"] is None else f"{s['psnr_db']:.2f} dB"
        click.echo(f"  {s['system']:<24} {s['payload_nt_per_pixel']:.3f} / {s['total_nt_per_pixel']:.3f} nt/px  "
                   f"{ps}  decoded {s['success_fraction']:.0%}")


@bench.command("noise")
@_bench_common
@click.option("--points", default="", help="Operating points: NAME:POINT, or NAME for all of a model's, "
              "comma-separated. [default: every shipped one]")
@click.option("--rates", default="", help="Substitution rates. [default: 0,0.01,0.02,0.03,0.04,0.05,0.06,0.08,0.1]")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--codecs", default="", help="Also classic codecs (jpeg,webp,jpeg2000,avif) at the total nt of --match.")
@click.option("--match", default=None, help="Point whose total nt the classic codecs get. [default: the first]")
@click.option("--update-cards", is_flag=True, help="Store the means in the measured models' cards.")
@friendly
def bench_noise_cmd(images, out, limit, quick, fresh, quiet, jobs, points, rates, seed, codecs, match, update_cards):
    """PSNR against substitution rate (one read per oligo), plain and noise-trained models."""
    from pathlib import Path

    from dnaimg.bench import suite as B
    paths = B.image_paths(images, 3 if quick and not limit else limit)
    pts = _points(points)
    rs = _split(rates, float) if rates else list(B.QUICK_NOISE_RATES if quick else B.NOISE_RATES)
    if any(not 0 <= r <= 0.5 for r in rs):
        raise UserError("substitution rates must lie in [0, 0.5]")
    cs = _split(codecs)
    bad = [c for c in cs if c not in B.CLASSIC_CODECS]
    if bad:
        raise UserError(f"unknown codec {bad[0]!r} (choose from {', '.join(B.CLASSIC_CODECS)})")
    total = len(paths) * (len(pts) + len(cs)) * len(rs)

    def table(res):
        Path(out).with_suffix(".md").write_text(B.noise_table(res))
    res = _run_bench(lambda upd: B.bench_noise(paths, pts, rs, out, seed, fresh, upd, jobs, cs, match), total, quiet, out,
                     B.plot_noise, table)
    click.echo(B.noise_table(res), nl=False)
    if update_cards:
        click.echo("updated the cards of " + ", ".join(B.update_cards(res, "dnaimg " + " ".join(sys.argv[1:]))))


@bench.command("channel")
@_bench_common
@click.option("--points", default="", help="Our operating points. [default: cae32-mr:r050,cae32-mr-noise:r050, "
              "a robust model's point and its noise-trained twin]")
@click.option("--codecs", default="jpeg,webp,jpeg2000,avif", show_default=True)
@click.option("--presets", default="miseq,nanopore", show_default=True, help="Channel presets (dnaimg.dna.channel).")
@click.option("--coverages", default="", help="Mean reads per oligo. [default: 1,2,3,4,6,10,16,30]")
@click.option("--match", default=None, help="Classic codecs get the total nt of this point. [default: the first]")
@click.option("--dropout", type=_FloatRange(0, 1), default=0.02, show_default=True,
              help="Fraction of oligos lost before sequencing.")
@click.option("--parity", type=_FloatRange(0, 1), default=0.15, show_default=True,
              help="Outer-code redundancy of the byte-stream codecs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@friendly
def bench_channel_cmd(images, out, limit, quick, fresh, quiet, jobs, points, codecs, presets, coverages, match,
                      dropout, parity, seed):
    """PSNR and decode success against sequencing coverage, classic codecs at a matched rate."""
    from dnaimg.bench import suite as B
    from dnaimg.dna.channel import PRESETS
    paths = B.image_paths(images, 3 if quick and not limit else limit)
    if points:
        pts = _points(points)
    else:
        from dnaimg.zoo.registry import DEFAULT_CHANNEL_POINTS
        pts = list(DEFAULT_CHANNEL_POINTS)
    cs = _split(codecs)
    prs = _split(presets)
    bad = [p for p in prs if p not in PRESETS]
    if bad:
        raise UserError(f"unknown preset {bad[0]!r} (choose from {', '.join(PRESETS)})")
    covs = _split(coverages, float) if coverages else list(B.QUICK_COVERAGES if quick else B.COVERAGES)
    total = len(paths) * len(prs) * len(covs) * (len(pts) + len(cs))
    res = _run_bench(lambda upd: B.bench_channel(paths, pts, cs, prs, covs, out, match, parity, dropout, seed, fresh,
                                                 upd, jobs), total, quiet, out, B.plot_channel)
    for m in res["summary"]["min_coverage"]:
        mc = "never" if m["min_coverage"] is None else f"{m['min_coverage']:g}x"
        click.echo(f"  {m['system']:<28} {m['preset']:<9} decodes >= 95 % of images from {mc}")



@bench.command("loss")
@_bench_common
@click.option("--point", default="cae32-mr:r050", show_default=True,
              help="Robust operating point; the other codecs are matched to its total nt/pixel per image.")
@click.option("--codecs", default="compact,avif", show_default=True, help="Codecs matched to --point.")
@click.option("--losses", default="0,0.05,0.1,0.2,0.3", show_default=True,
              help="Fractions of all oligos lost (uniformly at random) before decoding.")
@click.option("--parity", type=_FloatRange(0, 1), default=0.15, show_default=True,
              help="Outer-code redundancy of the byte-stream codecs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@friendly
def bench_loss_cmd(images, out, limit, quick, fresh, quiet, jobs, point, codecs, losses, parity, seed):
    """Oligos lost beyond what the outer code rebuilds: PSNR against the fraction lost."""
    from dnaimg.bench import loss as L
    from dnaimg.bench import suite as B
    paths = B.image_paths(images, 3 if quick and not limit else limit)
    fr = _split(losses, float)
    cs = _split(codecs)
    res = _run_bench(lambda upd: L.bench_loss(paths, point, cs, fr, out, parity, seed, upd), len(paths) * len(fr),
                     quiet, out, L.plot_loss)
    for s in res["summary"]:
        ps = "failed" if s["psnr_db"] is None else f"{s['psnr_db']:.2f} dB"
        click.echo(f"  {s['system']:<20} lost {s['loss']:.0%}: {ps} (decoded {s['decoded']:.0%}), "
                   f"{s['total_nt_per_pixel']:.3f} nt/px")


@bench.command("report")
@click.option("--results", default="docs/results", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the tables here (markdown).")
@friendly
def bench_report_cmd(results, out):
    """Tables (markdown) and figures from the committed bench results."""
    from dnaimg.bench import suite as B
    text = B.report(results)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    click.echo(text)


if __name__ == "__main__":
    main()
