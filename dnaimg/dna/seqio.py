"""FASTA/FASTQ in and out (gzipped or not), through dnaio."""
from __future__ import annotations

import io
import queue
import sys
import threading
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import dnaio
import numba as nb
import numpy as np
from xopen import xopen


class InputError(ValueError):
    pass


def iter_records(path: str | Path) -> Iterator[tuple[str, str]]:
    """(name, sequence) of each record of a FASTA or FASTQ file (format and compression detected;
    ``-`` is standard input, read once)."""
    if is_stdin(path):
        path = shown(path)
        source = xopen(getattr(sys.stdin, "buffer", sys.stdin), "rb", threads=0)
    else:
        _check_readable(Path(path))
        source = str(path)
    try:
        with dnaio.open(source, open_threads=0) as f:
            for rec in f:
                yield rec.name, rec.sequence
    except dnaio.exceptions.UnknownFileFormat:
        raise InputError(f"{path}: neither FASTA nor FASTQ") from None
    except dnaio.exceptions.FileFormatError as e:
        raise InputError(f"{path}: malformed sequence file ({e})") from None
    except EOFError:
        raise InputError(f"{path}: file ends early (truncated or incomplete gzip)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None


def iter_sequences(path: str | Path) -> Iterator[str]:
    for _, seq in iter_records(path):
        yield seq


def check_writable(path: str | Path) -> None:
    """Raise InputError unless a file can be created at ``path`` (its folder exists)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise InputError(f"{path}: folder {parent} does not exist")


def write_fasta(path: str | Path, records: Iterable[tuple[str, str]]) -> int:
    p = Path(path)
    check_writable(p)
    n = 0
    try:
        with dnaio.open(str(p), mode="w", fileformat="fasta") as f:
            for name, seq in records:
                f.write(dnaio.SequenceRecord(name, seq))
                n += 1
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    return n


def write_fastq(path: str | Path, records: Iterable[tuple[str, str, str]]) -> int:
    p = Path(path)
    check_writable(p)
    n = 0
    try:
        with dnaio.open(str(p), mode="w", fileformat="fastq") as f:
            for name, seq, qual in records:
                f.write(dnaio.SequenceRecord(name, seq, qual))
                n += 1
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    return n


def uncompressed_name(path: str | Path) -> str:
    """``path``'s name, lower case, without a compression suffix (.gz, .bz2, .xz, .zst)."""
    name = str(path).lower()
    for ext in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def is_fastq_path(path: str | Path) -> bool:
    return uncompressed_name(path).endswith((".fastq", ".fq"))


# ---------------------------------------------------------------------------------------------
# Bulk reading: sequences straight into integer arrays.
#
# A decode reads millions of sequences, and a Python object per read would cost more than all
# the rest of the work, so this path reads the (xopen-decompressed) file in large blocks and a
# numba kernel turns each block's records into codes 0..3 (255 for anything else), checking the
# record structure as it goes.  On a fault it hands the text from the faulty record on to
# dnaio's own parser, so that the error says what dnaio says.

READ_BLOCK_BYTES = 16 << 20

_CODES = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _CODES[_c] = _i
    _CODES[_c + 32] = _i      # lowercase


@nb.njit(cache=True, nogil=True)
def _line_end(buf, p, n):
    while p < n and buf[p] != 10:
        p += 1
    return p


@nb.njit(cache=True, nogil=True)
def parse_fastq_block(buf, n, final, codes):
    """FASTQ records in ``buf[:n]`` -> (flat codes, offsets, bytes consumed, fault position or -1).

    Only whole records are taken; the rest (``buf[consumed:n]``) is left for the next block unless
    ``final``.  The quality line is not scanned: it must end exactly where the sequence says."""
    flat = np.empty(n, dtype=np.uint8)
    offs = np.empty(n // 6 + 2, dtype=np.int64)
    offs[0] = 0
    nrec = 0
    q = 0
    p = 0
    while p < n:
        if buf[p] != 64:                               # '@'
            if buf[p] == 10 or buf[p] == 13:           # blank lines between records
                p += 1
                continue
            return flat[:q], offs[:nrec + 1], p, p
        e = _line_end(buf, p, n)
        if e >= n:
            break
        s = e + 1                                      # sequence line, coded as it is scanned
        j = s
        while j < n:
            x = buf[j]
            if x == 10:
                break
            flat[q + j - s] = codes[x]
            j += 1
        if j >= n:
            break
        L = j - s
        if L > 0 and buf[j - 1] == 13:
            L -= 1
        t = j + 1                                      # '+' line
        if t >= n:
            break
        if buf[t] != 43:
            return flat[:q], offs[:nrec + 1], p, p
        e = _line_end(buf, t, n)
        if e >= n:
            break
        qe = e + 1 + L                                 # where the quality line must end
        if qe > n:
            break
        if qe == n:
            if not final:
                break
            nxt = n
        elif buf[qe] == 10:
            nxt = qe + 1
        elif buf[qe] == 13 and qe + 1 < n and buf[qe + 1] == 10:
            nxt = qe + 2
        elif buf[qe] == 13 and qe + 1 == n and final:
            nxt = n
        elif buf[qe] == 13 and qe + 1 == n:
            break
        else:
            return flat[:q], offs[:nrec + 1], p, p
        q += L
        nrec += 1
        offs[nrec] = q
        p = nxt
    return flat[:q], offs[:nrec + 1], p, -1


@nb.njit(cache=True, nogil=True)
def parse_fasta_block(buf, n, final, codes):
    """FASTA records in ``buf[:n]`` (sequences may span lines) -> as :func:`parse_fastq_block`.
    A record is whole once the next one starts, or at the end of the file."""
    flat = np.empty(n, dtype=np.uint8)
    offs = np.empty(n // 3 + 2, dtype=np.int64)
    offs[0] = 0
    nrec = 0
    q = 0
    p = 0
    rec_p = -1          # start of the open record
    rec_q = 0
    while p < n:
        c = buf[p]
        if c == 62:                                    # '>'
            e = _line_end(buf, p, n)
            if e >= n and not final:
                break
            if rec_p >= 0:
                nrec += 1
                offs[nrec] = q
            rec_p = p
            rec_q = q
            p = e + 1
            continue
        if c == 10 or c == 13:
            p += 1
            continue
        if rec_p < 0:
            if c == 35:                                # '#' comment before the first record
                p = _line_end(buf, p, n) + 1
                continue
            return flat[:q], offs[:nrec + 1], p, p
        if c == 64:                                    # '@' line: FASTQ after FASTA
            return flat[:q], offs[:nrec + 1], p, p
        j = p
        while j < n:
            x = buf[j]
            if x == 10:
                break
            if x != 13 and x != 32 and x != 9:
                flat[q] = codes[x]
                q += 1
            j += 1
        p = j + 1
    if final:
        if rec_p >= 0:
            nrec += 1
            offs[nrec] = q
        return flat[:q], offs[:nrec + 1], n, -1
    if rec_p < 0:
        return flat[:0], offs[:1], 0, -1
    return flat[:rec_q], offs[:nrec + 1], rec_p, -1


COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


STDIN = "-"


def is_stdin(path) -> bool:
    return str(path) == STDIN


def holds_fastq(path: str | Path) -> bool:
    """Whether the sequence file at ``path`` (gzipped or not) is FASTQ: its first character after
    any leading whitespace is '@', as the readers decide."""
    with xopen(str(path), "rb", threads=0) as f:
        while True:
            chunk = f.read(1 << 12)
            if not chunk:
                return False
            chunk = chunk.lstrip()
            if chunk:
                return chunk[:1] == b"@"


def shown(path) -> str:
    """``path`` as messages name it (``-``: standard input)."""
    return "standard input" if is_stdin(path) else str(path)


def first_names(path: str | Path, k: int = 4) -> list[str]:
    """The names of the first ``k`` records of a file ([] if it cannot be read so)."""
    try:
        with dnaio.open(str(path), open_threads=0) as f:
            return [rec.name for rec in islice(f, k)]
    except Exception:       # noqa: BLE001 - unreadable here: the reading proper says why
        return []


def pair_files(paths: list[Path], paired: bool | None) -> list:
    """The files as sources: a path, or (R1, R2) for the mates of a paired-end run (see
    :class:`ReadBatches` for ``paired``)."""
    if not paired and paired is not None:
        return list(paths)
    if paired:
        if any(is_stdin(p) for p in paths):
            raise InputError("paired-end reads are read from files (R1 R2), not from standard input")
        if len(paths) % 2:
            raise InputError(f"paired-end reads come as R1 and R2 files, two by two: {len(paths)} files given")
        return [_as_mates(paths[i], paths[i + 1]) or (paths[i], paths[i + 1]) for i in range(0, len(paths), 2)]
    out, i = [], 0
    while i < len(paths):
        mates = (_as_mates(paths[i], paths[i + 1]) if i + 1 < len(paths) and not is_stdin(paths[i])
                 and not is_stdin(paths[i + 1]) else None)
        out.append(mates or paths[i])
        i += 2 if mates else 1
    return out


def _as_mates(a: Path, b: Path) -> tuple[Path, Path] | None:
    """(R1, R2) where the first read names of files ``a`` and ``b`` pair up, either way round (R2
    given before its R1 is swapped back); else None."""
    from dnaimg.dna.runs import are_mates
    n1, n2 = first_names(a), first_names(b)
    return (a, b) if are_mates(n1, n2) else (b, a) if are_mates(n2, n1) else None


class ReadBatches:
    """The reads of one or more FASTA/FASTQ files (format and compression detected per file;
    ``-`` is standard input) as batches of ``(flat, offs)``: read ``r`` is ``flat[offs[r]:offs[r+1]]``,
    coded A/C/G/T = 0..3 (either case) and anything else 255.  Iterable more than once (unless
    it reads standard input); errors are :class:`InputError`.

    ``paired``: paired-end runs, R1 and R2 files, are merged mate by mate
    (:func:`dnaimg.dna.runs.merge_mates`).  True: the files are taken two by two (R1 R2 R1 R2
    ...); None: two files side by side pair up when their first reads' names do (the same
    names up to "/1" "/2" or Illumina's " 1:" " 2:"); False: never.

    ``byte_range=(start, end)`` (one uncompressed file): only the records that *start* in that
    byte range (see :func:`record_start`); ranges that tile a file give every record once."""

    def __init__(self, path, block_bytes: int = READ_BLOCK_BYTES, byte_range: tuple[int, int] | None = None,
                 paired: bool | None = False):
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths:
            raise InputError("no read files given")
        if sum(is_stdin(p) for p in paths) > 1:
            raise InputError("standard input (-) given more than once")
        self.paths = [Path(p) for p in paths]
        self.path = self.paths[0]
        self.block_bytes = block_bytes
        for p in self.paths:
            if not is_stdin(p):
                _check_readable(p)
        if byte_range is not None and (len(self.paths) != 1 or is_compressed(self.path) or is_stdin(self.path)):
            raise ValueError("a byte range is for one uncompressed file")
        self.byte_range = byte_range
        self.sources = pair_files(self.paths, paired)
        self.pairs_seen = 0         # read pairs (paired files), and how many merged
        self.pairs_merged = 0
        self._stdin_read = False

    @property
    def paired(self) -> bool:
        return any(isinstance(s, tuple) for s in self.sources)

    def size_hint(self) -> int:
        """A generous guess of the nt in the files (their size, or 4x that when compressed)."""
        if self.byte_range is not None:
            return self.byte_range[1] - self.byte_range[0]
        return sum(p.stat().st_size * (4 if is_compressed(p) else 1) for p in self.paths if not is_stdin(p))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.pairs_seen = self.pairs_merged = 0
        for src in self.sources:
            if isinstance(src, tuple):
                yield from self._mates(*src)
            else:
                yield from self._file(src)

    def _file(self, path: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        name = shown(path)
        try:
            if self.byte_range is not None:
                a, b = record_start(path, self.byte_range[0]), record_start(path, self.byte_range[1])
                if a >= b:
                    return
                with open(path, "rb") as raw:
                    raw.seek(a)
                    yield from self._blocks(_Window(raw, b - a), path, allow_empty=True)
                return
            if is_stdin(path):
                if self._stdin_read:
                    raise InputError("standard input was read already (reads from - can be read once)")
                self._stdin_read = True
                with xopen(getattr(sys.stdin, "buffer", sys.stdin), "rb", threads=0) as f:
                    yield from self._blocks(f, name)
                return
            with xopen(str(path), "rb", threads=0) as f:
                yield from self._blocks(f, name)
        except EOFError:
            raise InputError(f"{name}: file ends early (truncated or incomplete gzip)") from None
        except OSError as e:
            raise InputError(f"{name}: cannot read ({e.__class__.__name__}: {e})") from None

    def _mates(self, p1: Path, p2: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The merged pairs of R1 file ``p1`` and R2 file ``p2``, read side by side."""
        from dnaimg.dna.runs import MAX_MISMATCH, MIN_OVERLAP, merge_mates
        g1, g2 = self._file(p1), self._file(p2)
        b1 = b2 = None          # (flat, offs, first read not yet used)
        n1 = n2 = 0
        while True:
            if b1 is None or b1[2] == len(b1[1]) - 1:
                nxt = next(g1, None)
                b1 = None if nxt is None else (*nxt, 0)
                n1 += 0 if nxt is None else len(nxt[1]) - 1
            if b2 is None or b2[2] == len(b2[1]) - 1:
                nxt = next(g2, None)
                b2 = None if nxt is None else (*nxt, 0)
                n2 += 0 if nxt is None else len(nxt[1]) - 1
            if b1 is None and b2 is None:
                return
            if b1 is None or b2 is None:
                extra = sum(len(o) - 1 for _, o in (g1 if b1 is not None else g2))    # the rest of the longer
                n1, n2 = (n1 + extra, n2) if b1 is not None else (n1, n2 + extra)
                raise InputError(f"{p1} has {n1} reads and {p2} {n2}: not the two mates of one paired-end run "
                                 "(give --no-paired if they are separate runs)")
            k = min(len(b1[1]) - 1 - b1[2], len(b2[1]) - 1 - b2[2])
            parts = []
            for f, o, a in (b1, b2):
                parts += [f[o[a]:o[a + k]], o[a:a + k + 1] - o[a]]
            flat, offs, merged = merge_mates(*parts, MIN_OVERLAP, MAX_MISMATCH)
            self.pairs_seen += k
            self.pairs_merged += int(merged)
            b1, b2 = (b1[0], b1[1], b1[2] + k), (b2[0], b2[1], b2[2] + k)
            yield flat, offs

    def _blocks(self, f, path: Path, allow_empty: bool = False):
        buf = np.empty(self.block_bytes, dtype=np.uint8)
        have = 0            # bytes of buf holding text not parsed yet
        parse = None
        records = 0
        final = False
        while not final:
            k = f.readinto(memoryview(buf)[have:])
            final = k == 0
            have += k
            if parse is None:
                head = bytes(buf[:min(have, 64)]).lstrip()
                if not head and not final:
                    continue
                if not head:
                    if allow_empty:
                        return
                    raise InputError(f"{path}: no sequences in the file")
                if head[:1] == b"@":
                    parse = parse_fastq_block
                elif head[:1] in (b">", b"#"):
                    parse = parse_fasta_block
                else:
                    raise InputError(f"{path}: neither FASTA nor FASTQ")
            flat, offs, used, bad = parse(buf, have, final, _CODES)
            if bad >= 0:        # (the records of this block before the fault were read well)
                _raise_block_error(path, bytes(buf[bad:have]), parse is parse_fastq_block,
                                   records + offs.shape[0] - 1)
            n = offs.shape[0] - 1
            if n:
                records += n
                yield flat, offs
            if final and used < have:
                _raise_block_error(path, bytes(buf[used:have]), parse is parse_fastq_block, records)
            rest = have - used
            if used == 0 and rest == buf.shape[0]:     # one record larger than the buffer
                buf = np.concatenate([buf, np.empty_like(buf)])
            elif rest:
                buf[:rest] = buf[used:have]
            have = rest
        if records == 0 and not allow_empty:
            raise InputError(f"{path}: no sequences in the file")


def is_compressed(path: str | Path) -> bool:
    return str(path).lower().endswith(COMPRESSED)


class _Window(io.RawIOBase):
    """At most ``size`` bytes of an open binary file, from where it stands."""

    def __init__(self, raw, size: int):
        self.raw = raw
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.left <= 0:
            return 0
        mv = memoryview(b)[:self.left]
        k = self.raw.readinto(mv)
        self.left -= k
        return k


def _fastq_record_at(data: bytes, p: int) -> bool | None:
    """Does a FASTQ record start at ``data[p]`` (a line start with '@')?  None: not enough data."""
    lines = []
    q = p
    for _ in range(4):
        e = data.find(b"\n", q)
        if e < 0:
            return None
        lines.append(data[q:e].rstrip(b"\r"))
        q = e + 1
    return lines[0][:1] == b"@" and lines[2][:1] == b"+" and len(lines[3]) == len(lines[1])


def record_start(path: str | Path, pos: int) -> int:
    """The offset of the first record of an uncompressed FASTA/FASTQ file that starts at or after
    byte ``pos`` (the file size if none).  A FASTA record starts with a line '>'; a FASTQ record
    with a line '@' followed by a sequence line, a line '+' and a quality line of the sequence's
    length (a quality line that starts with '@' fails this: the line after it is not '+')."""
    p = Path(path)
    size = p.stat().st_size
    if pos <= 0:
        return 0
    if pos >= size:
        return size
    with open(p, "rb") as f:
        first = f.read(1)
        fastq = first == b"@"
        window = 1 << 20
        while True:
            f.seek(pos - 1)
            data = f.read(window + 1)          # data[0] is the byte before pos
            i = 0
            while True:
                i = data.find(b"\n", i)
                if i < 0 or i + 1 >= len(data):
                    break
                c = data[i + 1:i + 2]
                if (not fastq and c == b">") or (fastq and c == b"@"):
                    if not fastq:
                        return pos + i
                    ok = _fastq_record_at(data, i + 1)
                    if ok is None and pos - 1 + len(data) < size:
                        break                   # record runs past the window: read a larger one
                    if ok:
                        return pos + i
                i += 1
            if pos - 1 + len(data) >= size:
                return size
            if i < 0:
                pos = pos + len(data) - 2       # no record start in this window: move on
            else:
                window *= 2


def byte_ranges(path: str | Path, target: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of about ``target`` bytes tiling an uncompressed file (to read with
    ``ReadBatches(path, byte_range=...)``)."""
    size = Path(path).stat().st_size
    n = max(1, -(-size // max(1, target)))
    cuts = [size * i // n for i in range(n + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(n)]


def prefetched(batches: Iterable, depth: int = 2) -> Iterator:
    """Iterate ``batches`` in a background thread, ``depth`` items ahead (the reading and parsing
    of the next block then overlaps the work on this one; both release the GIL).  Errors are
    raised in the caller, at the point where they occurred."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:     # noqa: BLE001 - handed to the consumer
            q.put((done, e))

    t = threading.Thread(target=work, name="dnaimg-reader", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass


def _check_readable(p: Path) -> None:
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")


def _raise_block_error(path: Path, text: bytes, fastq: bool, before: int):
    """The kernel found a fault at the start of ``text`` (after ``before`` good records): let dnaio
    name it, else say where it is."""
    what = f"after record {before}" if before else "in the first record"
    mixed = {(False, b"@"): "FASTQ records after FASTA ones", (True, b">"): "FASTA records after FASTQ ones"}
    if (fastq, text[:1]) in mixed:
        raise InputError(f"{path}: {mixed[fastq, text[:1]]} ({what}): one format per file; give them as "
                         "separate files")
    try:
        with dnaio.open(io.BytesIO(text), fileformat="fastq" if fastq else "fasta") as f:
            for _ in f:
                pass
    except dnaio.exceptions.FileFormatError as e:
        # dnaio counts lines from the start of ``text``: a FASTQ record is 4 lines
        line = f" at line {4 * before + e.line + 1}" if fastq and e.line is not None else ""
        raise InputError(f"{path}: malformed sequence file ({what}{line}: {e.message})") from None
    except (EOFError, ValueError) as e:
        raise InputError(f"{path}: malformed sequence file ({what}: {e})") from None
    raise InputError(f"{path}: malformed sequence file ({what}: the record structure is broken)")
