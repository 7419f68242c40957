"""Oligo layout: how the quantised latent and the header become oligos, and back.

Every oligo, data or header, is ::

    primer_f | index (36 nt) | payload | reverse complement of primer_r

- **index** (:mod:`dnaimg.index`): oligo number, scrambling seed and image tag, RS-protected.
  Numbers from ``HEADER_BASE`` up are header oligos (``HEADER_BASE + 16*copy + part``).
- **data payload**: ``payload_nt // n`` codewords, one latent value each, then filler nt.
  Value slots are spread over the latent by a seeded interleaver (a Fisher-Yates shuffle driven
  by splitmix64, so the same on every platform): a lost oligo costs scattered values.
- **whitening**: each codeword is passed through one of the 8 GC-class-preserving permutations
  of ACGT (:data:`dnaimg.codebook.SIGMAS`), chosen by a hash of (tag, oligo number, scrambling
  seed, word position).  Hamming distances, runs and GC balance of the codewords are unchanged,
  so the repair works on the un-whitened word exactly as designed, but a flat image region can
  no longer write ACACAC...  The encoder tries scrambling seeds 0..11 per oligo until the whole
  oligo (primers and index included) passes :func:`dnaimg.constraints.oligo_ok`
  (guided scrambling); the seed travels in the index.
- **header**: the bytes of :class:`Header` plus 16 Reed-Solomon parity bytes (GF(256),
  ``reedsolo``), written as 4-bit symbols (3-nt words, the index's nibble words; an invalid word
  is an erasure), whitened the same way, split over as many parts as the payload needs, in
  ``copies`` copies.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np
import reedsolo

from dnaimg.dna import alphabet as dna
from dnaimg.dna.codebook import SIGMAS, SIGMAS_INV
from dnaimg.dna.consensus import consensus_packed, fast_majority_rows
from dnaimg.dna.reads import gather_reads
from dnaimg.dna.constraints import oligo_ok, report
from dnaimg.dna.index import HEADER_BASE, INDEX_NT, N_SCRAMBLE, NIBBLE_WORDS, encode_index
from dnaimg.dna.repair import Repairer

FORMAT_VERSION = 1
MAGIC = b"DI"
DEFAULT_PRIMER_F = "AGTGCACGCGCAGTTATATG"
DEFAULT_PRIMER_R = "CTAACGGCAATGAGTTGCAC"
DEFAULT_OLIGO_LENGTH = 200
DEFAULT_HEADER_COPIES = 3
MIN_PAYLOAD_NT = 24
MAX_PARTS = 16
MAX_COPIES = 15

_NIBBLE_REPAIR = Repairer(NIBBLE_WORDS)


class LayoutError(ValueError):
    pass


def check_primer(seq: str, name: str) -> np.ndarray:
    s = seq.strip().upper()
    if not 10 <= len(s) <= 40 or any(c not in "ACGT" for c in s):
        raise LayoutError(f"{name} must be 10-40 nt of A/C/G/T, got {seq!r}")
    arr = dna.encode(s)
    rep = report(arr)
    if rep.violations():
        raise LayoutError(f"{name} {s} violates the constraints: {'; '.join(rep.violations())}")
    return arr


@dataclass(frozen=True)
class Layout:
    oligo_length: int = DEFAULT_OLIGO_LENGTH
    primer_f: str = DEFAULT_PRIMER_F
    primer_r: str = DEFAULT_PRIMER_R

    def __post_init__(self):
        check_primer(self.primer_f, "forward primer")
        check_primer(self.primer_r, "reverse primer")
        if self.payload_nt < MIN_PAYLOAD_NT:
            raise LayoutError(f"oligo length {self.oligo_length} leaves {self.payload_nt} nt of payload; "
                              f"at least {MIN_PAYLOAD_NT} are needed")
        if self.oligo_length > 1000:
            raise LayoutError("oligo length above 1000 nt is not supported")

    @property
    def pf(self) -> np.ndarray:
        return dna.encode(self.primer_f.upper())

    @property
    def pr_rc(self) -> np.ndarray:
        return dna.revcomp(dna.encode(self.primer_r.upper()))

    @property
    def insert_nt(self) -> int:
        return self.oligo_length - len(self.primer_f) - len(self.primer_r)

    @property
    def payload_nt(self) -> int:
        return self.insert_nt - INDEX_NT


@dataclass
class Header:
    """Everything decoding needs, carried in the DNA."""
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
    seed: int              # interleaver seed
    tag: int               # image tag (also in every index)
    symbols_crc: int       # CRC32 of the quantised latent
    version: int = FORMAT_VERSION

    _FMT = "<2sBIHBHHHIHBBIBI"

    def pack(self) -> bytes:
        body = struct.pack(self._FMT, MAGIC, self.version, self.model_id, self.levels, self.codeword_nt,
                           self.channels, self.height, self.width, self.n_data, self.oligo_length,
                           self.primer_f_nt, self.primer_r_nt, self.seed, self.tag, self.symbols_crc)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls._FMT) + 4

    @classmethod
    def unpack(cls, data: bytes) -> "Header":
        """Raises ValueError unless ``data`` is a header with a valid checksum."""
        n = cls.size()
        if len(data) < n:
            raise ValueError("header too short")
        body, crc = data[:n - 4], struct.unpack("<I", data[n - 4:n])[0]
        if zlib.crc32(body) != crc:
            raise ValueError("header checksum mismatch")
        f = struct.unpack(cls._FMT, body)
        if f[0] != MAGIC:
            raise ValueError("not a dnaimg header")
        return cls(model_id=f[2], levels=f[3], codeword_nt=f[4], channels=f[5], height=f[6], width=f[7],
                   n_data=f[8], oligo_length=f[9], primer_f_nt=f[10], primer_r_nt=f[11], seed=f[12],
                   tag=f[13], symbols_crc=f[14], version=f[1])

    @staticmethod
    def peek_version(data: bytes) -> int | None:
        return data[2] if len(data) >= 3 and data[:2] == MAGIC else None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.channels, -(-self.height // 8), -(-self.width // 8))


# ---------------------------------------------------------------------------------------------
# deterministic pseudo-randomness (platform independent)

@nb.njit(cache=True, nogil=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, nogil=True)
def whitening_keys(tag, number, scramble, count):
    """The permutation (0..7) applied to each of ``count`` words of one oligo."""
    base = _mix(np.uint64(tag) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(number) * np.uint64(16)
                + np.uint64(scramble) + np.uint64(0x51ED27))
    out = np.empty(count, dtype=np.int64)
    for j in range(count):
        out[j] = int(_mix(base + np.uint64(j + 1) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(61))
    return out


@nb.njit(cache=True, nogil=True)
def interleaver(total, seed):
    """A permutation of 0..total-1 (Fisher-Yates driven by splitmix64)."""
    perm = np.arange(total, dtype=np.int64)
    state = np.uint64(seed) * np.uint64(0x2545F4914F6CDD1D) + np.uint64(1)
    for i in range(total - 1, 0, -1):
        state += np.uint64(0x9E3779B97F4A7C15)
        j = int(_mix(state) % np.uint64(i + 1))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


@nb.njit(cache=True, nogil=True)
def _whiten(words_nt, n, keys, sigmas):
    out = np.empty_like(words_nt)
    for j in range(keys.shape[0]):
        s = sigmas[keys[j]]
        for t in range(n):
            out[j * n + t] = s[words_nt[j * n + t]]
    return out


def whiten(words_nt: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    return _whiten(np.ascontiguousarray(words_nt, dtype=np.uint8), n, keys, SIGMAS)


def unwhiten(words_nt: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    return _whiten(np.ascontiguousarray(words_nt, dtype=np.uint8), n, keys, SIGMAS_INV)


def _filler(prev: int, nxt: int, count: int, salt: int) -> list[int]:
    out = []
    for i in range(count):
        follow = nxt if i == count - 1 else -1
        for d in range(4):
            c = (salt + i + d) % 4
            if c != prev and c != follow:
                break
        out.append(c)
        prev = c
    return out


# ---------------------------------------------------------------------------------------------
# assembling oligos

def _assemble(layout: Layout, number: int, tag: int, words_nt: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """One oligo for a payload of codewords (un-whitened); tries scrambling seeds 0..11."""
    pf, prc = layout.pf, layout.pr_rc
    count = len(words_nt) // n
    pad = layout.payload_nt - count * n
    for scramble in range(N_SCRAMBLE):
        keys = whitening_keys(tag, number, scramble, count)
        body = whiten(words_nt, n, keys)
        last = int(body[-1]) if len(body) else -1
        fill = np.array(_filler(last, int(prc[0]), pad, number + scramble), dtype=np.uint8)
        oligo = np.concatenate([pf, encode_index(number, scramble, tag), body, fill, prc]).astype(np.uint8)
        if oligo_ok(oligo):
            return oligo, scramble
    raise LayoutError(f"oligo {number}: no scrambling seed satisfies the constraints "
                      "(check the primers)")


def values_per_oligo(layout: Layout, n: int) -> int:
    return layout.payload_nt // n


HEADER_PARITY = 16     # Reed-Solomon parity bytes (GF(256)) on the header: 8 errors or 16 erasures
_HEADER_RS = reedsolo.RSCodec(nsym=HEADER_PARITY)


def header_codeword_nibbles() -> int:
    return 2 * (Header.size() + HEADER_PARITY)


def header_from_nibbles(nib: np.ndarray, valid: np.ndarray | None = None) -> Header:
    """Header codeword nibbles (invalid words flagged as erasures) -> Header; ValueError if it
    cannot be corrected or its checksum fails.  A header of another format version raises
    :class:`HeaderVersionError`."""
    n = header_codeword_nibbles()
    nib = np.asarray(nib[:n], dtype=np.int64)
    data = bytearray(nibbles_to_bytes(nib))
    tries = []
    if valid is not None:
        v = np.asarray(valid[:n], dtype=bool)
        erased = [i for i in range(n // 2) if not (v[2 * i] and v[2 * i + 1])]
        if 0 < len(erased) <= HEADER_PARITY:
            tries.append(erased)
    tries.append(None)
    last = "header could not be corrected"
    for erase_pos in tries:
        try:
            body = bytes(_HEADER_RS.decode(bytearray(data), erase_pos=erase_pos)[0])
        except reedsolo.ReedSolomonError:
            continue
        ver = Header.peek_version(body)
        if ver is not None and ver != FORMAT_VERSION:
            raise HeaderVersionError(ver)
        try:
            return Header.unpack(body)
        except ValueError as e:
            last = str(e)
    raise ValueError(last)


class HeaderVersionError(ValueError):
    def __init__(self, version: int):
        super().__init__(f"format version {version}")
        self.version = version


def header_oligos(layout: Layout, header: Header, copies: int = DEFAULT_HEADER_COPIES) -> list[np.ndarray]:
    data = bytes(_HEADER_RS.encode(header.pack()))
    nibbles = np.array([x for b in data for x in (b >> 4, b & 15)], dtype=np.int64)
    per_part = layout.payload_nt // 3
    parts = -(-len(nibbles) // per_part)
    if parts > MAX_PARTS:
        raise LayoutError("oligos too short to carry the header")
    if not 1 <= copies <= MAX_COPIES:
        raise LayoutError(f"header copies must be 1..{MAX_COPIES}")
    out = []
    for c in range(copies):
        for p in range(parts):
            chunk = nibbles[p * per_part:(p + 1) * per_part]
            if len(chunk) < per_part:   # pad with a deterministic pattern
                chunk = np.concatenate([chunk, (np.arange(per_part - len(chunk)) * 7 + p) % 16])
            words = NIBBLE_WORDS[chunk].reshape(-1)
            oligo, _ = _assemble(layout, HEADER_BASE + 16 * c + p, header.tag, words, 3)
            out.append(oligo)
    return out


def data_oligos(layout: Layout, header: Header, symbols: np.ndarray, words: np.ndarray,
                progress=None) -> list[np.ndarray]:
    """Quantised symbols (flat, C*H'*W') -> data oligos, using codeword table ``words`` (L, n)."""
    n = words.shape[1]
    V = values_per_oligo(layout, n)
    flat = np.asarray(symbols, dtype=np.int64).reshape(-1)
    total = flat.size
    N = -(-total // V)
    perm = interleaver(total, header.seed)
    slots = np.empty(N * V, dtype=np.int64)
    slots[:total] = flat[perm]
    # the tail of the last oligo: deterministic filler values
    slots[total:] = np.arange(N * V - total) % words.shape[0]
    out = []
    for k in range(N):
        vals = slots[k * V:(k + 1) * V]
        oligo, _ = _assemble(layout, k, header.tag, words[vals].reshape(-1), n)
        out.append(oligo)
        if progress is not None:
            progress(1)
    return out


def n_data_oligos(layout: Layout, n: int, total_values: int) -> int:
    return -(-total_values // values_per_oligo(layout, n))


# ---------------------------------------------------------------------------------------------
# reading payloads back

RESYNC_DRIFT = 8        # largest frame shift (nt) the resynchronising decoder follows
RESYNC_INDEL_COST = 2.0  # cost of one indel, in units of Hamming distance


@nb.njit(cache=True, nogil=True)
def _resync(read, n, count, expected_len, keys, sig_inv, table, dist, indel_cost, dmax):
    """Codeword-aware alignment of a payload read to ``count`` codewords (Viterbi over the frame
    drift d): word j is read at ``j*n + d``; its cost is its Hamming distance to the nearest valid
    codeword after un-whitening; each nt of drift change between words costs ``indel_cost``; the
    final drift should match the read's length.  Returns (values, per word: was it repaired)."""
    R = read.shape[0]
    if R == expected_len and R >= count * n:
        # every word valid in frame: that frame costs 0 and any other costs an indel, so it is
        # the Viterbi answer; no need to run it
        vals = np.empty(count, dtype=np.int64)
        clean = True
        for j in range(count):
            sinv = sig_inv[keys[j]]
            code = 0
            for t in range(n):
                x = read[j * n + t]
                if x > 3:
                    clean = False
                    break
                code = code * 4 + sinv[x]
            if not clean or dist[code] != 0:
                clean = False
                break
            vals[j] = table[code]
        if clean:
            return vals, np.zeros(count, dtype=np.bool_)
    W = 2 * dmax + 1
    INF = 1e18
    cost = np.full((count + 1, W), INF)
    back = np.zeros((count + 1, W), dtype=np.int64)
    cost[0, dmax] = 0.0
    cost[0, dmax - 1] = indel_cost
    cost[0, dmax + 1] = indel_cost
    wcost = np.empty(W)
    wval = np.empty((count, W), dtype=np.int64)
    wbad = np.empty((count, W), dtype=np.int64)
    for j in range(count):
        sinv = sig_inv[keys[j]]
        for di in range(W):
            pos = j * n + di - dmax
            if pos < 0 or pos + n > R:
                wcost[di] = n
                wval[j, di] = -1
                wbad[j, di] = 1
                continue
            code = 0
            extra = 0
            for t in range(n):
                x = read[pos + t]
                if x > 3:
                    x = 0
                    extra += 1
                code = code * 4 + sinv[x]
            dd = dist[code] + extra
            wcost[di] = dd
            wval[j, di] = table[code]
            wbad[j, di] = 1 if dd > 0 else 0
        for di in range(W):
            best = INF
            bi = di
            for dp in range(max(0, di - 2), min(W, di + 3)):
                c = cost[j, dp] + indel_cost * abs(di - dp)
                if c < best:
                    best = c
                    bi = dp
            cost[j + 1, di] = best + wcost[di]
            back[j + 1, di] = bi
    target = R - expected_len
    bd = 0
    best = INF
    for di in range(W):
        c = cost[count, di] + indel_cost * abs(di - dmax - target)
        if c < best:
            best = c
            bd = di
    vals = np.empty(count, dtype=np.int64)
    bad = np.zeros(count, dtype=np.bool_)
    di = bd
    for j in range(count, 0, -1):
        vals[j - 1] = wval[j - 1, di]
        bad[j - 1] = wbad[j - 1, di] > 0
        di = back[j, di]
    return vals, bad


def payload_values(payload: np.ndarray, number: int, scramble: int, tag: int, repairer: Repairer,
                   count: int, expected_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Payload nt of a data oligo (consensus or a single read, any length) -> (values, per
    codeword whether it had to be repaired).  Values that could not be read at all are -1."""
    n = repairer.n
    keys = whitening_keys(tag, number, scramble, count)
    p = np.ascontiguousarray(payload, dtype=np.uint8)
    if expected_len is None:
        expected_len = len(p)
    vals, bad = _resync(p, n, count, expected_len, keys, SIGMAS_INV, repairer.table, repairer.dist,
                        RESYNC_INDEL_COST, RESYNC_DRIFT)
    return vals, bad


@nb.njit(cache=True, nogil=True, parallel=True)
def payload_values_batch(flat, offs, order, first, slot, seed, k0, tag, payload_nt, n, count, table, dist, sig_inv,
                         few_reads, indel_cost, dmax):
    """:func:`payload_values` for every data oligo at once, in parallel.

    Oligo ``k0 + k`` has the reads ``order[first[slot[k]]:first[slot[k]+1]]`` of the packed store
    (read ``r`` is ``flat[offs[r]:offs[r+1]]``), or none when ``slot[k] < 0``; its scrambling seed is
    ``seed[k]``.  From ``few_reads + 1`` reads up the payload is their nucleotide consensus; with
    fewer, each read is decoded on its own and, with two, each value is taken from the read whose
    codeword was valid (the first read where both or neither were).  Returns values (-1 for
    unreadable or missing) and per oligo the number of codewords repaired."""
    K = slot.shape[0]
    vals = np.full((K, count), -1, dtype=np.int64)
    nbad = np.zeros(K, dtype=np.int64)
    for k in nb.prange(K):
        s = slot[k]
        if s < 0:
            continue
        rows = order[first[s]:first[s + 1]]
        m = rows.shape[0]
        keys = whitening_keys(tag, k0 + k, seed[k], count)
        if m > few_reads:
            # the fast path of the consensus reads the right-length reads where they lie; only
            # when it does not apply are the reads gathered for the alignment rounds
            est = np.empty(payload_nt, dtype=np.uint8)
            if not fast_majority_rows(flat, offs, rows, payload_nt, est):
                rf, ro = gather_reads(flat, offs, rows)
                est = consensus_packed(rf, ro, payload_nt)
            v, bad = _resync(est, n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            vals[k] = v
            nbad[k] = bad.sum()
            continue
        rf, ro = gather_reads(flat, offs, rows)
        if m == 1:
            v, bad = _resync(rf, n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            vals[k] = v
            nbad[k] = bad.sum()
        else:
            v1, b1 = _resync(rf[ro[0]:ro[1]], n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            v2, b2 = _resync(rf[ro[1]:ro[2]], n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            c = 0
            for j in range(count):
                if b1[j] and not b2[j]:
                    vals[k, j] = v2[j]
                else:
                    vals[k, j] = v1[j]
                if b1[j] and b2[j]:
                    c += 1
            nbad[k] = c
    return vals, nbad


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
    order = np.argsort(d, axis=1, kind="stable")
    nib = order[:, 0]
    rows = np.arange(len(d))
    return nib, d[rows, order[:, 1]] - d[rows, nib]


def header_nibbles(payload: np.ndarray, number: int, scramble: int, tag: int,
                   per_part: int) -> tuple[np.ndarray, np.ndarray]:
    """Payload of a header oligo -> (nibbles, whether each word was a valid nibble word)."""
    raw = header_words(payload, number, scramble, tag, per_part).reshape(-1)
    nib = _NIBBLE_REPAIR(raw).astype(np.int64)
    valid = np.all(NIBBLE_WORDS[nib] == raw.reshape(-1, 3), axis=1)
    return nib, valid


def nibbles_to_bytes(nib: np.ndarray) -> bytes:
    nib = np.asarray(nib, dtype=np.int64)
    m = len(nib) // 2
    return bytes(((nib[0:2 * m:2] << 4) | nib[1:2 * m:2]).astype(np.uint8).tolist())
