"""Header oligos: one format and one decoder for every codec.

**Writing.**  The header's bytes get ``HEADER_PARITY`` (16) Reed-Solomon parity bytes over GF(256)
(``reedsolo``: primitive polynomial 0x11d, generator 2, first consecutive root 0), are cut into
4-bit nibbles (high nibble first), and each nibble is written as a 3-nt nibble word
(:data:`dnaimg.dna.index.NIBBLE_WORDS`; an invalid word reads as an erasure), whitened like a
words payload, ``payload_nt // 3`` words per oligo ("part"), in ``copies`` copies.  Header
oligo numbers are ``HEADER_BASE + 16 * copy + part`` (:mod:`dnaimg.dna.index`).  In format
version 2 the RS codeword fills its parts: ``min(255, parts * (payload_nt // 3) // 2)`` bytes,
the header data first, zero padding, then the parity.

**Format version 2** (every codec; little-endian)::

    common prefix    magic "DN" (2) | version (1) | n = length of the header data, CRC included (1)
    version 2 body   codec id (1) | image id (4; its low byte is the tag in every index)
                     | oligo length (2) | forward primer nt (1) | reverse primer nt (1)
                     | streams (1) | codec metadata length m (1)
                     | per stream, 28 bytes: kind (1: 0 bytes, 1 words, 2 words with markers: version 4)
                       | first oligo number (4)
                       | data oligos (4) | length (4: bytes, or values) | codeword nt (1)
                       | levels (2) | interleaver key (4) | inner parity bytes (1)
                       | outer blocks (2) | outer parity rows per block (1) | CRC32 of the stream (4)
                     | codec metadata (m)
    CRC32 of all the above (4)

A future version keeps the prefix and the final CRC32, so a decoder checks the CRC before it
reads the version: junk never reads as "another format version".

**Format version 3** (a member of a pool: several images in one oligo pool) is version 2 with a
*pool record* between the codec metadata and the CRC32::

    ... codec metadata (m) | pool id (4) | primer pair (2: index in the primer set,
    0xFFFF = primers not from the set) | name length k (1) | file name (k bytes, UTF-8) | CRC32 (4)

In a pool the image id is chosen by the encoder and unique in the pool (0, 1, 2, ... in the
order the images were added); its low byte, the tag in every index, is unique among the images
that share a primer pair.

**Format version 4** is version 2 with at least one words stream of kind 2 (its payloads carry
markers, :mod:`dnaimg.dna.words`); a dnaimg that reads only versions 1-3 then says which version
it found instead of misreading the payloads.

**Format version 1** (robust codec only, written by dnaimg 0.1): :class:`HeaderV1`, magic "DI",
a fixed 37-byte header (53 with parity).  Still decoded.

**Reading** (:func:`find_headers`): per image tag, the reads of each header oligo are combined
(a header oligo with at most 4 reads: each read decoded word by word by the resynchronising
codeword decoder, which follows indels, then a vote; with more, a consensus), each copy is
corrected on its own, then a nibble-wise majority over the copies, then the pooled vote (every
read of a part votes, whatever its copy), then soft votes (per word the nibble nearest in
Hamming distance summed over the copies, and the pooled vote, each with the least sure bytes
erased more and more), then mixes of parts from different copies; Reed-Solomon and the CRC32
check every candidate.  Every part seen is tried as the last one (a stray read filed under a
high part number must not hide the header).  Header oligos whose index did not decode get a
second chance (relaxed index decoding, then nearest index, then alignment of the read's start
to every header index, for indexes that took several indels).
"""
from __future__ import annotations

import functools
import struct
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import islice, product

import numpy as np
import reedsolo

from dnaimg.dna.consensus import consensus_packed
from dnaimg.dna.index import HEADER_BASE, INDEX_NT, NIBBLE_WORDS
from dnaimg.dna.prng import SIGMAS_INV, unwhiten, whitening_keys
from dnaimg.dna.repair import Repairer
from dnaimg.dna.words import RESYNC_DRIFT, RESYNC_INDEL_COST, _resync, assemble

FORMAT_VERSION = 2      # what a single image is written in
POOL_VERSION = 3        # a member of a pool (version 2 + the pool record)
MARKER_VERSION = 4      # version 2 with a words stream that carries markers (stream kind 2)
LATEST_VERSION = 4      # the newest version this dnaimg reads
MAGIC = b"DN"
MAGIC_V1 = b"DI"
DEFAULT_HEADER_COPIES = 3
MAX_PARTS = 16
MAX_COPIES = 15
HEADER_PARITY = 16     # Reed-Solomon parity bytes (GF(256)) on the header: 8 errors or 16 erasures
MAX_STREAMS = 8
MAX_META = 160
MAX_NAME = 120          # bytes of the file name in a pool record (UTF-8)
NO_PAIR = 0xFFFF        # primer pair field: primers not from the set

_HEADER_RS = reedsolo.RSCodec(nsym=HEADER_PARITY)
_NIBBLE_REPAIR = Repairer(NIBBLE_WORDS)


class HeaderError(ValueError):
    pass


class HeaderVersionError(HeaderError):
    def __init__(self, version: int):
        super().__init__(f"format version {version}")
        self.version = version


# ---------------------------------------------------------------------------------------------
# format version 2

KIND_BYTES, KIND_WORDS, KIND_WORDS_MARKED = 0, 1, 2
KINDS = {FORMAT_VERSION: (KIND_BYTES, KIND_WORDS), POOL_VERSION: (KIND_BYTES, KIND_WORDS),
         MARKER_VERSION: (KIND_BYTES, KIND_WORDS, KIND_WORDS_MARKED)}
_PREFIX = "<2sBB"
_BODY = "<BIHBBBB"
_STREAM = "<BIIIBHIBHBI"
_POOL = "<IHB"


def check_name(name: str) -> bytes:
    """A file name as a pool record holds it: UTF-8, 1..MAX_NAME bytes, no folder separators or
    control characters.  HeaderError otherwise."""
    if not isinstance(name, str) or not name:
        raise HeaderError("an image in a pool needs a file name")
    if any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name) or name in (".", ".."):
        raise HeaderError(f"file name {name!r} has a folder separator or control character")
    b = name.encode("utf-8")
    if len(b) > MAX_NAME:
        raise HeaderError(f"file name {name!r} is {len(b)} bytes long (at most {MAX_NAME} in the DNA)")
    return b


@dataclass(frozen=True)
class PoolRecord:
    """What a pool member's header adds to version 2 (format version 3)."""
    pool_id: int          # random, shared by every image of the pool
    image_id: int         # unique in the pool; its low byte is the tag
    primer_pair: int      # index in the primer set (dnaimg.dna.primers), NO_PAIR if other primers
    name: str             # file name (no folders)

    def __post_init__(self):
        check_name(self.name)
        if not 0 <= self.pool_id < 2 ** 32 or not 0 <= self.image_id < 2 ** 32:
            raise HeaderError("pool and image ids are 32-bit numbers")
        if not 0 <= self.primer_pair <= NO_PAIR:
            raise HeaderError("primer pair index out of range")


@dataclass
class StreamInfo:
    """One stream's entry in the header's stream table."""
    kind: int              # KIND_BYTES, KIND_WORDS or KIND_WORDS_MARKED (version 4)
    first: int             # first oligo number
    n_data: int            # data oligos
    length: int            # bytes, or values
    codeword_nt: int = 0   # words: nt per value
    levels: int = 0        # words: distinct values
    key: int = 0           # words: interleaver key
    inner: int = 0         # inner RS parity bytes per bytes payload (bytes oligos and words parity oligos)
    blocks: int = 0        # outer code: blocks (0: no outer code)
    parity: int = 0        # outer code: parity rows per block
    crc: int = 0           # CRC32 of the stream (bytes; values as little-endian uint16)

    def pack(self) -> bytes:
        return struct.pack(_STREAM, self.kind, self.first, self.n_data, self.length, self.codeword_nt,
                           self.levels, self.key, self.inner, self.blocks, self.parity, self.crc)


@dataclass
class Header:
    """Format version 2: everything decoding needs, for any codec."""
    codec_id: int
    image_id: int
    oligo_length: int
    primer_f_nt: int
    primer_r_nt: int
    streams: list[StreamInfo] = field(default_factory=list)
    meta: bytes = b""
    version: int = FORMAT_VERSION
    pool_id: int | None = None         # version 3 (pool record)
    primer_pair: int | None = None
    name: str | None = None

    @property
    def tag(self) -> int:
        return self.image_id & 0xFF

    @property
    def pool(self) -> PoolRecord | None:
        if self.version != POOL_VERSION:
            return None
        return PoolRecord(self.pool_id, self.image_id, self.primer_pair, self.name)

    def pack(self) -> bytes:
        if not 1 <= len(self.streams) <= MAX_STREAMS:
            raise HeaderError(f"1..{MAX_STREAMS} streams, got {len(self.streams)}")
        if len(self.meta) > MAX_META:
            raise HeaderError(f"codec metadata of {len(self.meta)} bytes (at most {MAX_META})")
        body = struct.pack(_BODY, self.codec_id, self.image_id, self.oligo_length, self.primer_f_nt,
                           self.primer_r_nt, len(self.streams), len(self.meta))
        body += b"".join(s.pack() for s in self.streams) + bytes(self.meta)
        if self.version == POOL_VERSION:
            name = check_name(self.name)
            body += struct.pack(_POOL, self.pool_id, self.primer_pair, len(name)) + name
        n = struct.calcsize(_PREFIX) + len(body) + 4
        if n > 255 - HEADER_PARITY:
            raise HeaderError(f"a header of {n} bytes does not fit one Reed-Solomon codeword "
                              f"(at most {255 - HEADER_PARITY}): fewer streams or less codec metadata")
        data = struct.pack(_PREFIX, MAGIC, self.version, n) + body
        return data + struct.pack("<I", zlib.crc32(data))

    @classmethod
    def unpack(cls, data: bytes) -> "Header":
        """Header data (padding after it allowed) -> Header.  HeaderError unless it is a valid
        header; HeaderVersionError for a valid header of another version."""
        p = struct.calcsize(_PREFIX)
        if len(data) < p + 4:
            raise HeaderError("header too short")
        magic, version, n = struct.unpack_from(_PREFIX, data)
        if magic != MAGIC or not p + 4 <= n <= len(data):
            raise HeaderError("not a dnaimg header")
        if zlib.crc32(data[:n - 4]) != struct.unpack_from("<I", data, n - 4)[0]:
            raise HeaderError("header checksum mismatch")
        if version not in KINDS:
            raise HeaderVersionError(version)
        codec_id, image_id, olen, pf, pr, ns, m = struct.unpack_from(_BODY, data, p)
        off = p + struct.calcsize(_BODY)
        ss = struct.calcsize(_STREAM)
        end = off + ns * ss + m            # where the CRC (v2) or the pool record (v3) starts
        pool = ()
        if version == POOL_VERSION:
            ps = struct.calcsize(_POOL)
            if end + ps + 4 > n or ns == 0:
                raise HeaderError("header fields inconsistent")
            pool_id, pair, k = struct.unpack_from(_POOL, data, end)
            name = bytes(data[end + ps:end + ps + k]).decode("utf-8", errors="replace")
            pool = (pool_id, pair, name)
            end += ps + k
        if end + 4 != n or ns == 0:
            raise HeaderError("header fields inconsistent")
        streams = [StreamInfo(*struct.unpack_from(_STREAM, data, off + i * ss)) for i in range(ns)]
        if any(st.kind not in KINDS[version] for st in streams) or \
                (version == MARKER_VERSION and not any(st.kind == KIND_WORDS_MARKED for st in streams)):
            raise HeaderError("header fields inconsistent")
        meta = bytes(data[off + ns * ss:off + ns * ss + m])
        return cls(codec_id, image_id, olen, pf, pr, streams, meta, version, *pool)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["meta"] = self.meta.hex()
        d["tag"] = self.tag
        if self.version != POOL_VERSION:
            for k in ("pool_id", "primer_pair", "name"):
                d.pop(k)
        return d


# ---------------------------------------------------------------------------------------------
# format version 1 (dnaimg 0.1: robust codec only)

@dataclass
class HeaderV1:
    """Format version 1, as dnaimg 0.1 wrote it (read only)."""
    model_id: int          # CRC32 of the model name
    levels: int
    codeword_nt: int
    channels: int
    height: int
    width: int
    n_data: int            # number of data oligos
    oligo_length: int
    primer_f_nt: int
    primer_r_nt: int
    seed: int              # interleaver key
    tag: int               # image tag (also in every index)
    symbols_crc: int       # CRC32 of the quantised latent
    version: int = 1

    _FMT = "<2sBIHBHHHIHBBIBI"

    def pack(self) -> bytes:
        body = struct.pack(self._FMT, MAGIC_V1, self.version, self.model_id, self.levels, self.codeword_nt,
                           self.channels, self.height, self.width, self.n_data, self.oligo_length,
                           self.primer_f_nt, self.primer_r_nt, self.seed, self.tag, self.symbols_crc)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls._FMT) + 4

    @classmethod
    def unpack(cls, data: bytes) -> "HeaderV1":
        n = cls.size()
        if len(data) < n:
            raise HeaderError("header too short")
        body, crc = data[:n - 4], struct.unpack("<I", data[n - 4:n])[0]
        if zlib.crc32(body) != crc:
            raise HeaderError("header checksum mismatch")
        f = struct.unpack(cls._FMT, body)
        if f[0] != MAGIC_V1:
            raise HeaderError("not a dnaimg header")
        if f[1] != 1:
            raise HeaderVersionError(f[1])
        return cls(model_id=f[2], levels=f[3], codeword_nt=f[4], channels=f[5], height=f[6], width=f[7],
                   n_data=f[8], oligo_length=f[9], primer_f_nt=f[10], primer_r_nt=f[11], seed=f[12],
                   tag=f[13], symbols_crc=f[14], version=f[1])

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.channels, -(-self.height // 8), -(-self.width // 8))


_V1_NIBBLES = 2 * (HeaderV1.size() + HEADER_PARITY)


# ---------------------------------------------------------------------------------------------
# header oligos

def n_parts(data_len: int, per_part: int) -> int:
    """Header oligos per copy for ``data_len`` bytes of header (its RS parity included)."""
    return -(-2 * (data_len + HEADER_PARITY) // per_part)


def codeword_bytes(parts: int, per_part: int) -> int:
    """Bytes of a version-2 header codeword (data, padding, parity) spread over ``parts`` parts."""
    return min(255, parts * per_part // 2)


def header_oligos(layout, data: bytes, tag: int, copies: int = DEFAULT_HEADER_COPIES,
                  fill: bool = True) -> list[np.ndarray]:
    """Header data -> header oligos (RS parity, nibble words, ``copies`` copies).  ``fill``: pad
    the codeword to fill its parts (version 2); without, the codeword is the data and its
    parity (version 1)."""
    if not 1 <= copies <= MAX_COPIES:
        raise HeaderError(f"header copies must be 1..{MAX_COPIES}")
    per_part = layout.payload_nt // 3
    parts = n_parts(len(data), per_part)
    if fill:
        total = codeword_bytes(parts, per_part)
        if total < len(data) + HEADER_PARITY:
            raise HeaderError("the header does not fit in one Reed-Solomon codeword at this oligo length")
        data = bytes(data) + bytes(total - HEADER_PARITY - len(data))
    if parts > MAX_PARTS:
        raise HeaderError("oligos too short to carry the header")
    code = bytes(_HEADER_RS.encode(bytes(data)))
    nibbles = np.array([x for b in code for x in (b >> 4, b & 15)], dtype=np.int64)
    out = []
    for c in range(copies):
        for p in range(parts):
            chunk = nibbles[p * per_part:(p + 1) * per_part]
            if len(chunk) < per_part:   # pad with a deterministic pattern
                chunk = np.concatenate([chunk, (np.arange(per_part - len(chunk)) * 7 + p) % 16])
            words = NIBBLE_WORDS[chunk].reshape(-1)
            oligo, _ = assemble(layout, HEADER_BASE + 16 * c + p, tag, words, 3)
            out.append(oligo)
    return out


def header_words(payload: np.ndarray, number: int, scramble: int, tag: int, per_part: int) -> np.ndarray:
    """Payload of a header oligo -> its ``per_part`` 3-nt words, un-whitened (per_part, 3)."""
    body = np.ascontiguousarray(payload[:per_part * 3], dtype=np.uint8)
    keys = whitening_keys(tag, number, scramble, per_part)
    return unwhiten(body, 3, keys).reshape(-1, 3)


def soft_nibble_vote(words: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the same header words (each (m, 3)) -> per word the nibble whose word is nearest
    in total Hamming distance over the copies, and its margin (distance of the runner-up minus
    its own: 0 means a tie)."""
    d = np.zeros((len(words[0]), 16), dtype=np.int64)
    for w in words:
        d += (w[:, None, :] != NIBBLE_WORDS[None, :, :]).sum(axis=2)
    return _best_and_margin(-d)


def _best_and_margin(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``score`` (m, 16): the column with the highest score (ties: the lowest column)
    and its lead over the runner-up."""
    order = np.argsort(-score, axis=1, kind="stable")
    best = order[:, 0]
    rows = np.arange(len(score))
    return best, score[rows, best] - score[rows, order[:, 1]]


def header_nibbles(payload: np.ndarray, number: int, scramble: int, tag: int,
                   per_part: int) -> tuple[np.ndarray, np.ndarray]:
    """Payload of a header oligo -> (nibbles, whether each word was a valid nibble word)."""
    raw = header_words(payload, number, scramble, tag, per_part).reshape(-1)
    nib = _NIBBLE_REPAIR(raw).astype(np.int64)
    valid = np.all(NIBBLE_WORDS[nib] == raw.reshape(-1, 3), axis=1)
    return nib, valid


FEW_HEADER_READS = 4    # a header oligo with this many reads or fewer is decoded read by read
CONSENSUS_VOTES = 3     # a consensus of more reads votes as this many reads in the vote over copies


def resync_votes(reads: list[np.ndarray], number: int, scramble: int, tag: int, per_part: int,
                 length: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads of one header oligo, too few for a consensus to outvote an indel -> per word, votes
    for each nibble (per_part, 16) and whether a read held it as a valid word: each read decoded
    by the resynchronising codeword decoder (it follows insertions and deletions), a valid word
    counting twice, a repaired one once (ties to the earlier read)."""
    keys = whitening_keys(tag, number, scramble, per_part)
    rep = _NIBBLE_REPAIR
    votes = np.zeros((per_part, 16))
    valid = np.zeros((per_part, 16), dtype=bool)
    rows = np.arange(per_part)
    for i, r in enumerate(reads):
        v, bad = _resync(np.ascontiguousarray(r, dtype=np.uint8), 3, per_part, length, keys, SIGMAS_INV,
                         rep.table, rep.dist, RESYNC_INDEL_COST, RESYNC_DRIFT)
        q = max(0.05, 1.0 - bad.mean())   # a read misaligned somewhere repairs many words: it weighs less
        np.add.at(votes, (rows, v), q * np.where(bad, 1.0, 2.0) + 1e-3 * (len(reads) - i))
        valid[rows, v] |= ~bad
    return votes, valid


def decide(votes: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes (m, 16) -> per word the nibble with the most, whether a read held it as a valid word,
    and its margin over the runner-up."""
    nib, margin = _best_and_margin(votes)
    return nib, valid[np.arange(len(votes)), nib], margin


def nibbles_to_bytes(nib: np.ndarray) -> bytes:
    nib = np.asarray(nib, dtype=np.int64)
    m = len(nib) // 2
    return bytes(((nib[0:2 * m:2] << 4) | nib[1:2 * m:2]).astype(np.uint8).tolist())


def _rs_candidates(nib: np.ndarray, valid: np.ndarray | None, n_nib: int):
    """Reed-Solomon decodings of a header codeword of ``n_nib`` nibbles (invalid words erased)."""
    nib = np.asarray(nib[:n_nib], dtype=np.int64)
    data = bytearray(nibbles_to_bytes(nib))
    tries = []
    if valid is not None:
        v = np.asarray(valid[:n_nib], dtype=bool)
        erased = [i for i in range(n_nib // 2) if not (v[2 * i] and v[2 * i + 1])]
        if 0 < len(erased) <= HEADER_PARITY:
            tries.append(erased)
    tries.append(None)
    for erase_pos in tries:
        body = _rs_decode(bytes(data), None if erase_pos is None else tuple(erase_pos))
        if body is not None:
            yield body


@functools.lru_cache(maxsize=4096)
def _rs_decode(data: bytes, erase_pos: tuple | None) -> bytes | None:
    """The Reed-Solomon decoding of a header codeword (None where it fails), remembered: the
    header search meets the same codeword many times (copies, erasure ladder, part counts)."""
    try:
        return bytes(_HEADER_RS.decode(bytearray(data), erase_pos=None if erase_pos is None else list(erase_pos))[0])
    except reedsolo.ReedSolomonError:
        return None


def parse_codeword(nib: np.ndarray, valid: np.ndarray | None, parts: int, per_part: int):
    """Nibbles of ``parts`` header parts -> a Header (version 2) or HeaderV1.  HeaderError if
    neither decodes; HeaderVersionError for a valid header of an unknown version."""
    last: HeaderError = HeaderError("header could not be corrected")
    n2 = 2 * codeword_bytes(parts, per_part)
    formats = []
    if n2 >= 2 * (HEADER_PARITY + 8):
        formats.append((n2, Header))                       # version 2 fills its parts
    if -(-_V1_NIBBLES // per_part) == parts:
        formats.append((_V1_NIBBLES, HeaderV1))            # version 1: 53 bytes whatever the length
    for n_nib, kind in formats:
        if len(nib) < n_nib:
            continue
        for body in _rs_candidates(nib, valid, n_nib):
            try:
                return kind.unpack(body)
            except HeaderVersionError:
                raise
            except HeaderError as e:
                last = e
    raise last


# ---------------------------------------------------------------------------------------------
# reading headers back from sorted reads

def _erasure_ladder(nib: np.ndarray, margin: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A soft vote's nibbles with 0, 2, 4, ... of its least sure bytes erased (Reed-Solomon: 2
    errors + erasures <= parity)."""
    m2 = len(nib) // 2 * 2
    order = np.argsort(np.minimum(margin[0:m2:2], margin[1:m2:2]), kind="stable")
    out = []
    for k in range(0, HEADER_PARITY + 1, 2):
        ok = np.ones(len(nib), dtype=bool)
        ok[2 * order[:k]] = False
        ok[2 * order[:k] + 1] = False
        out.append((nib, ok))
    return out


def _insert_len(h) -> int:
    return h.oligo_length - h.primer_f_nt - h.primer_r_nt - INDEX_NT


def decode_header(sorter, tag: int) -> tuple[Header | HeaderV1 | None, str, set]:
    """Try to rebuild the header of image ``tag``; returns (header, why-not, other versions seen)."""
    hgroups = {k - HEADER_BASE: sorter.best_group(tag, k) for k in sorter.numbers(tag, HEADER_BASE)}
    hgroups = {k: g for k, g in hgroups.items() if g is not None}
    if not hgroups:
        return None, "no header oligo was read", set()
    lengths = np.concatenate([np.diff(g.packed()[1]) for _, g in hgroups.values()])
    med = int(np.median(lengths))
    last_err = "header could not be corrected"
    other_versions: set[int] = set()
    for L in sorted(range(max(3, med - 3), med + 4), key=lambda x: (abs(x - med), x)):
        per_part = L // 3
        copies: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
        words: dict[int, list[np.ndarray]] = defaultdict(list)
        # every read of a part, whatever its copy, also votes in one pool: a part read once in
        # each copy is then read three times over, not three times once
        pooled: dict[int, list[np.ndarray]] = {}
        for off in sorted(hgroups):
            c, p = off // 16, off % 16
            s, g = hgroups[off]
            pv = pooled.setdefault(p, [np.zeros((per_part, 16)), np.zeros((per_part, 16), dtype=bool)])
            if g.count <= FEW_HEADER_READS:
                votes, ok = resync_votes(g.reads(), HEADER_BASE + off, s, tag, per_part, L)
                pv[0] += votes
                pv[1] |= ok
                nib, ok, _ = decide(votes, ok)
                copies[c][p] = (nib, ok)
                if (np.diff(g.offs) == L).all():    # no indel in sight: the raw words, for the soft vote
                    words[p].append(header_words(consensus_packed(*g.packed(), L), HEADER_BASE + off, s, tag,
                                                 per_part))
                else:
                    words[p].append(NIBBLE_WORDS[nib])
                continue
            est = consensus_packed(*g.packed(), L)
            nib, ok = copies[c][p] = header_nibbles(est, HEADER_BASE + off, s, tag, per_part)
            words[p].append(header_words(est, HEADER_BASE + off, s, tag, per_part))
            rows = np.arange(per_part)
            pv[0][rows, nib] += CONSENSUS_VOTES * np.where(ok, 2.0, 1.0)
            pv[1][rows, nib] |= ok
        if not copies:
            continue
        seen = {p for c in copies for p in copies[c]}
        # version 2 fills its parts: the number of parts is the highest part seen, unless that
        # part is a stray read (an index misread as another header oligo's), so every part seen
        # is tried as the last, highest first; version 1 has 53 bytes whatever the oligo length
        options_parts = sorted({p + 1 for p in seen} | {-(-_V1_NIBBLES // per_part)}, reverse=True)
        valid: list = []
        for parts in options_parts:
            if not all(p in seen for p in range(parts)):
                continue
            candidates = []
            for c in sorted(copies):
                if all(p in copies[c] for p in range(parts)):
                    candidates.append(tuple(np.concatenate([copies[c][p][i] for p in range(parts)]) for i in (0, 1)))
            maj_nib, maj_ok = [], []
            for p in range(parts):
                arrs = [copies[c][p] for c in copies if p in copies[c]]
                if not arrs:
                    break
                nibs = np.stack([a[0] for a in arrs])
                oks = np.stack([a[1] for a in arrs])
                votes = np.zeros((nibs.shape[1], 16), dtype=np.int64)
                for r in range(nibs.shape[0]):
                    np.add.at(votes, (np.arange(nibs.shape[1]), nibs[r]), np.where(oks[r], 2, 1))
                maj_nib.append(votes.argmax(1))
                maj_ok.append(oks.any(0))
            if len(maj_nib) == parts:
                candidates.append((np.concatenate(maj_nib), np.concatenate(maj_ok)))
            soft = []
            if all(p in pooled for p in range(parts)):
                # the pooled vote, then its least sure bytes erased, more and more
                voted = [decide(*pooled[p]) for p in range(parts)]
                nib = np.concatenate([v[0] for v in voted])
                candidates.append((nib, np.concatenate([v[1] for v in voted])))
                soft += _erasure_ladder(nib, np.concatenate([v[2] for v in voted]))
            if all(words[p] for p in range(parts)):
                # soft vote: per word the nibble nearest in Hamming distance summed over the copies;
                # then the least sure bytes erased, more and more (RS: 2 errors + erasures <= parity)
                voted = [soft_nibble_vote(words[p]) for p in range(parts)]
                soft += _erasure_ladder(np.concatenate([v[0] for v in voted]),
                                        np.concatenate([v[1] for v in voted]))
            options = [[copies[c][p] for c in copies if p in copies[c]] for p in range(parts)]
            if all(options):
                for combo in islice(product(*options), 64):
                    candidates.append(tuple(np.concatenate([x[i] for x in combo]) for i in (0, 1)))
            for i, (nib, ok) in enumerate(candidates + soft):
                try:
                    h = parse_codeword(nib, ok, parts, per_part)
                except HeaderVersionError as e:
                    if i < len(candidates):     # heavy erasures can miscorrect into any version byte
                        other_versions.add(e.version)
                    continue
                except HeaderError as e:
                    last_err = str(e)
                    continue
                if _insert_len(h) != L or h.tag != tag:
                    continue
                if h not in valid:
                    valid.append(h)
            if valid:
                break
        if len(valid) > 1:
            raise HeaderError(f"contradictory headers for image tag {tag:02x}: the reads hold "
                              f"{len(valid)} different valid headers")
        if valid:
            return valid[0], "", other_versions
    return None, last_err, other_versions


def rescue_header_oligos(sorter, tag: int) -> bool:
    """Second chance for the header oligos of image ``tag`` whose index did not decode: re-read
    the failed reads for the header numbers not yet seen.  True if any read was recovered."""
    if not sorter.rescue.count:
        return False
    wanted = np.zeros(HEADER_BASE + 256, dtype=np.bool_)
    wanted[HEADER_BASE:] = True
    wanted[sorter.numbers(tag, HEADER_BASE)] = False
    found = sorter.rescue_missing(tag, wanted)
    # then the nearest header index, for reads with too many substitutions in it: more reads
    # for every header oligo (seen or not) help the vote (a wrong one is outvoted, and the
    # header's Reed-Solomon code and CRC check the result)
    found += sorter.rescue_nearest(tag, np.arange(HEADER_BASE, HEADER_BASE + 256))
    # then by alignment, for reads with several indels in the index (nanopore): every header
    # oligo of the copies seen (at least the default number) and one part past the last seen
    offs = np.asarray(sorter.numbers(tag, HEADER_BASE), dtype=np.int64) - HEADER_BASE
    copies = max(DEFAULT_HEADER_COPIES, int(offs.max()) // 16 + 1 if offs.size else 0)
    parts = min(MAX_PARTS, int((offs % 16).max()) + 2 if offs.size else MAX_PARTS)
    found += sorter.rescue_aligned(tag, (HEADER_BASE + 16 * np.arange(copies)[:, None] + np.arange(parts)).ravel())
    return bool(found)


def candidate_tags(reads_per_tag: dict[int, int], top: int | None = None) -> list[int]:
    """Tags worth a header decode, most reads first: at least 3 reads and 1 % of the most read
    tag's (``top``; default the largest count here); fewer are index misreads, not an image."""
    top = max(reads_per_tag.values(), default=0) if top is None else top
    ordered = sorted(reads_per_tag, key=lambda t: (-reads_per_tag[t], t))
    return [t for t in ordered if reads_per_tag[t] >= max(3, 0.01 * top)]


def find_headers(sorter, check_mixture: bool = True) -> tuple[dict[int, Header | HeaderV1], dict[int, str], Counter]:
    """Headers decoded per image tag, the reasons where none could be, and reads per tag.
    HeaderError naming the version when the only valid headers found are of another version.

    With ``check_mixture`` the tags whose reads come from two or more images
    (:mod:`dnaimg.dna.mixture`) are not decoded: ``why`` says so, and ``sorter.mixtures`` holds
    what the scan found per tag."""
    from dnaimg.dna.mixture import scan
    reads_per_tag = Counter(sorter.reads_per_tag())
    headers, why = {}, {}
    others: set[int] = set()
    tags = [t for t in reads_per_tag.most_common() if t[0] in set(candidate_tags(reads_per_tag))]
    sorter.mixtures = scan(sorter, [t for t, _ in tags]) if check_mixture else {}
    for t, count in tags:
        mx = sorter.mixtures.get(t)
        if mx is not None and mx.mixed:
            why[t] = mx.message()
            continue
        h, w, o = decode_header(sorter, t)
        if h is None and rescue_header_oligos(sorter, t):
            h, w, o = decode_header(sorter, t)
        others |= o
        if h is not None:
            headers[t] = h
        else:
            why[t] = w
    if not headers and others:
        raise HeaderVersionError(max(others))
    return headers, why, reads_per_tag
