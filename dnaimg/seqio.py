"""FASTA/FASTQ in and out (gzipped or not), through dnaio."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import dnaio


class InputError(ValueError):
    pass


def iter_records(path: str | Path) -> Iterator[tuple[str, str]]:
    """(name, sequence) of each record of a FASTA or FASTQ file (format and compression detected)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a directory")
    if p.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with dnaio.open(str(p), open_threads=0) as f:
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


def is_fastq_path(path: str | Path) -> bool:
    name = str(path).lower()
    for ext in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name.endswith((".fastq", ".fq"))
