"""An independent reader written from docs/FORMAT.md alone.

Nothing of dnaimg's decoding code is imported: ``dnaimg.api`` is used only to *write* oligos,
``reedsolo`` only to fill erasures of the outer code.  The compact codec's reader (section 12.3)
takes its integer tables from the model's weights file with ``safetensors``; dnaimg's
arithmetic coder only writes test packets, and dnaimg's decoder runs only beside the reader, to
compare what both compute.  Everything else (GF arithmetic, the index, the pseudo-random
functions, the codeword tables, payloads, header, the compact codec's coder and integer network)
follows the text of FORMAT.md, section by section; the codeword tables are read from the document itself.  If a
test here fails, either the document or this reader is wrong (the code is the reference).
"""
from __future__ import annotations

import bisect
import io
import itertools
import json
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import reedsolo

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "FORMAT.md"
GOLDEN_V1 = ROOT / "tests" / "golden" / "v1"
EXAMPLE = ROOT / "examples" / "coffee.png"

# ---------------------------------------------------------------------------------------------
# section 1: conventions, GF arithmetic, RS syndromes

NT = "ACGT"
M64 = (1 << 64) - 1


def revcomp(s: str) -> str:
    return s[::-1].translate(str.maketrans("ACGT", "TGCA"))


def to_nums(s: str) -> list[int]:
    return [NT.index(c) for c in s]


def gf_tables(prim: int, m: int):
    size = 1 << m
    exp = [0] * (2 * size)
    log = [0] * size
    x = 1
    for i in range(size - 1):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & size:
            x ^= prim
    for i in range(size - 1, 2 * size):
        exp[i] = exp[i - (size - 1)]
    return exp, log


GF16 = gf_tables(0x13, 4)
GF256 = gf_tables(0x11D, 8)


def gf_mul(a, b, gf):
    exp, log = gf
    return 0 if a == 0 or b == 0 else exp[log[a] + log[b]]


def syndromes(cw, P, gf):
    """S_i = c(alpha^i), c[0] the highest degree (FORMAT.md 1.1)."""
    exp, log = gf
    order = len(log) - 1          # 15 or 255: alpha^order = 1
    N = len(cw)
    out = []
    for i in range(P):
        s = 0
        for k, c in enumerate(cw):
            if c:
                s ^= gf_mul(c, exp[(i * (N - 1 - k)) % order], gf)
        out.append(s)
    return out


def rs_ok(cw, P, gf) -> bool:
    return not any(syndromes(cw, P, gf))


def generator_poly(P, gf):
    exp, _ = gf
    g = [1]
    for i in range(P):
        # multiply by (x - alpha^i) = (x + alpha^i)
        r = exp[i]
        g = [a ^ gf_mul(b, r, gf) for a, b in zip(g + [0], [0] + g)]
    return g


# ---------------------------------------------------------------------------------------------
# section 5: the index

NIBBLE_WORDS = ["ACA", "AGC", "ATG", "CAT", "CGA", "CTC", "GAG", "GCT",
                "GTA", "TAC", "TCG", "TGT", "ACT", "AGA", "CAC", "GTG"]
WORD_TO_NIBBLE = {w: i for i, w in enumerate(NIBBLE_WORDS)}
HEADER_BASE = (1 << 20) - 256


def make_masks():
    state = 0x5EED1D
    masks = []
    for s in range(16):
        row = []
        for k in range(12):
            state = (state * 6364136223846793005 + 1442695040888963407) & M64
            row.append(0 if k == 5 else (state >> 60) & 15)
        masks.append(row)
    return masks


MASK = make_masks()


def read_index(s: str):
    """36 nt -> (number, seed, tag); None unless it is an error-free index."""
    c = [WORD_TO_NIBBLE.get(s[3 * k:3 * k + 3], -1) for k in range(12)]
    if min(c) < 0 or c[5] > 11:
        return None
    seed = c[5]
    u = [c[k] ^ MASK[seed][k] for k in range(12)]
    if not rs_ok(u, 4, GF16):
        return None
    bits = 0
    for i in range(8):
        bits = (bits << 4) | u[i]
    return bits >> 12, (bits >> 8) & 15, bits & 255


# ---------------------------------------------------------------------------------------------
# section 6: pseudo-random functions

GOLD = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def whitening_keys(tag, number, seed, count):
    base = mix((tag * GOLD + number * 16 + seed + 0x51ED27) & M64)
    return [mix((base + (j + 1) * GOLD) & M64) >> 61 for j in range(count)]


def keystream(tag, number, seed, selector, count):
    base = mix((tag * GOLD + number * 256 + seed * 16 + selector + 0xB17E5) & M64)
    return [mix((base + (t + 1) * GOLD) & M64) >> 62 for t in range(count)]


def interleaver(total, key):
    perm = list(range(total))
    state = (key * 0x2545F4914F6CDD1D + 1) & M64
    for i in range(total - 1, 0, -1):
        state = (state + GOLD) & M64
        j = mix(state) % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


SIGMA = {0: "ACGT", 1: "TCGA", 2: "AGCT", 3: "TGCA", 4: "CATG", 5: "GATC", 6: "CTAG", 7: "GTAC"}


def unwhiten(word: str, key: int) -> str:
    s = SIGMA[key]          # nucleotide x becomes s[x]: un-whitening maps s[x] back to x
    return "".join(NT[s.index(ch)] for ch in word)


# ---------------------------------------------------------------------------------------------
# section 7: codeword tables (read from the document) and their generation rule


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_codebooks() -> dict[tuple[int, int], list[str]]:
    out = {}
    for m in re.finditer(r"#### Codebook n=(\d+) levels=(\d+)\n\n\| values \| codewords \|\n\|---\|---\|\n"
                         r"((?:\|[^\n]*\|\n)+)", doc_text()):
        n, L = int(m.group(1)), int(m.group(2))
        words = []
        for row in m.group(3).strip().splitlines():
            rng, ws = [x.strip() for x in row.strip("|").split("|")]
            a, b = map(int, rng.split("-"))
            assert a == len(words)
            words += ws.split()
            assert len(words) == b + 1
        out[(n, L)] = words
    return out


def pool(n: int) -> list[str]:
    out = []
    for w in itertools.product(range(4), repeat=n):
        if w[0] == w[1] or w[-1] == w[-2]:
            continue
        if any(w[i] == w[i + 1] == w[i + 2] for i in range(n - 2)):
            continue
        gc = sum(x in (1, 2) for x in w)
        if abs(2 * gc - n) > 2:
            continue
        if n >= 4 and any(n % p == 0 and all(w[i] == w[i % p] for i in range(n)) for p in range(1, n // 2 + 1)):
            continue
        out.append("".join(NT[x] for x in w))
    return out


def repair(word: str, active: list[str]) -> int:
    d = [sum(a != b for a, b in zip(word, w)) for w in active]
    best = min(d)
    tied = [v for v, x in enumerate(d) if x == best]
    return tied[(len(tied) - 1) // 2]


def cost(active: list[str]) -> int:
    total = 0
    for v, w in enumerate(active):
        for j in range(len(w)):
            for b in NT:
                if b != w[j]:
                    total += abs(repair(w[:j] + b + w[j + 1:], active) - v)
    return total


def generate_codebook(n: int, L: int) -> list[str]:
    p = pool(n)
    M = len(p)
    order, used = [0], {0}
    while len(order) < M:
        cur = p[order[-1]]
        k = min((sum(a != b for a, b in zip(p[k], cur)), k) for k in range(M) if k not in used)[1]
        order.append(k)
        used.add(k)
    if n <= 4:
        state = 20190902
        c0 = cost([p[k] for k in order[:L]])
        for _ in range(4000):
            state = (state + GOLD) & M64
            i = mix(state) % L
            state = (state + GOLD) & M64
            j = mix(state) % M
            if i == j:
                continue
            order[i], order[j] = order[j], order[i]
            c = cost([p[k] for k in order[:L]])
            if c <= c0:
                c0 = c
            else:
                order[i], order[j] = order[j], order[i]
    return [p[k] for k in order[:L]]


# ---------------------------------------------------------------------------------------------
# sections 4 and 13: the reader

PF = "AGTGCACGCGCAGTTATATG"
PR = "CTAACGGCAATGAGTTGCAC"


def parse_fasta(text: str) -> list[str]:
    seqs, cur = [], []
    for line in text.splitlines():
        if line.startswith(">"):
            if cur:
                seqs.append("".join(cur))
            cur = []
        elif line.strip():
            cur.append(line.strip().upper())
    if cur:
        seqs.append("".join(cur))
    return seqs


def sort_oligos(seqs, pf=PF, pr=PR) -> dict[int, dict[int, tuple[int, str]]]:
    """Step 1 of FORMAT.md 13: tag -> number -> (seed, payload)."""
    pr_rc = revcomp(pr)
    out: dict[int, dict[int, tuple[int, str]]] = {}
    for s in seqs:
        if not s.startswith(pf):
            s = revcomp(s)
        if not (s.startswith(pf) and s.endswith(pr_rc)):
            continue
        insert = s[len(pf):len(s) - len(pr)]
        idx = read_index(insert[:36])
        assert idx is not None, "an error-free oligo must have an error-free index"
        number, seed, tag = idx
        out.setdefault(tag, {})[number] = (seed, insert[36:])
    return out


def header_nibbles(olis, tag, number, per_part):
    seed, payload = olis[number]
    keys = whitening_keys(tag, number, seed, per_part)
    return [WORD_TO_NIBBLE.get(unwhiten(payload[3 * j:3 * j + 3], keys[j]), -1) for j in range(per_part)]


def parse_header_v2(d: bytes) -> dict:
    """Sections 11.2 and, for version 3 (pools), 18.2."""
    assert d[:2] == b"DN"
    version, n = d[2], d[3]
    assert 8 <= n <= len(d)
    assert zlib.crc32(d[:n - 4]) == struct.unpack_from("<I", d, n - 4)[0]
    assert version in (2, 3, 4)
    codec, image_id, olen, pf, pr, S, m = struct.unpack_from("<BIHBBBB", d, 4)
    end = 15 + 28 * S + m
    pool = {}
    if version == 3:
        pool_id, pair, k = struct.unpack_from("<IHB", d, end)
        pool = {"pool_id": pool_id, "primer_pair": pair, "name": d[end + 7:end + 7 + k].decode("utf-8")}
        end += 7 + k
    assert end + 4 == n and S >= 1
    streams = []
    for i in range(S):
        f = struct.unpack_from("<BIIIBHIBHBI", d, 15 + 28 * i)
        streams.append(dict(zip(["kind", "first", "n_data", "length", "n", "levels", "key", "inner",
                                 "blocks", "parity", "crc"], f)))
    assert all(st["kind"] in ((0, 1, 2) if version == 4 else (0, 1)) for st in streams)      # 11.2
    assert version != 4 or any(st["kind"] == 2 for st in streams)
    meta = bytes(d[15 + 28 * S:15 + 28 * S + m])
    return {"version": version, "codec": codec, "image_id": image_id, "oligo_length": olen, "pf": pf, "pr": pr,
            "streams": streams, "meta": meta, **pool}


def parse_header_v1(d: bytes) -> dict:
    assert len(d) >= 37 and zlib.crc32(d[:33]) == struct.unpack_from("<I", d, 33)[0]
    f = struct.unpack_from("<2sBIHBHHHIHBBIBI", d, 0)
    assert f[0] == b"DI" and f[1] == 1
    keys = ["magic", "version", "model_id", "levels", "n", "channels", "height", "width", "n_data",
            "oligo_length", "pf", "pr", "key", "tag", "symbols_crc"]
    return dict(zip(keys, f))


def read_header(olis, tag) -> dict:
    """Step 2 of FORMAT.md 13 (sections 11.1-11.4)."""
    hdr = {k - HEADER_BASE: k for k in olis if k >= HEADER_BASE}
    payload_nt = len(next(iter(olis.values()))[1])
    per_part = payload_nt // 3
    parts = 1 + max(off % 16 for off in hdr)
    for c in sorted({off // 16 for off in hdr}):
        if not all(16 * c + p in hdr for p in range(parts)):
            continue
        nib = []
        for p in range(parts):
            nib += header_nibbles(olis, tag, HEADER_BASE + 16 * c + p, per_part)
        N = min(255, parts * per_part // 2)
        cw = bytes(nib[2 * i] * 16 + nib[2 * i + 1] for i in range(N))
        if rs_ok(cw, 16, GF256) and cw[:2] == b"DN":
            h = parse_header_v2(cw[:N - 16])
            assert h["oligo_length"] - h["pf"] - h["pr"] - 36 == payload_nt
            return h
        if math.ceil(106 / per_part) == parts:
            cw = bytes(nib[2 * i] * 16 + nib[2 * i + 1] for i in range(53))
            if rs_ok(cw, 16, GF256):
                h = parse_header_v1(cw[:37])
                assert h["tag"] == tag
                assert h["oligo_length"] - h["pf"] - h["pr"] - 36 == payload_nt
                return h
    raise AssertionError("no header")


def bytes_payload(payload: str, tag, number, seed, inner) -> bytes:
    """Section 8: one bytes payload -> its B - inner data bytes (the inner code checked)."""
    B = (len(payload) - 3) // 4
    sel = WORD_TO_NIBBLE[payload[:3]]
    assert 0 <= sel <= 11
    ks = keystream(tag, number, seed, sel, 4 * B)
    d = [(NT.index(payload[3 + t]) - ks[t]) % 4 for t in range(4 * B)]
    row = bytes(d[4 * i] * 64 + d[4 * i + 1] * 16 + d[4 * i + 2] * 4 + d[4 * i + 3] for i in range(B))
    assert rs_ok(row, inner, GF256), "inner codeword"
    return row[:B - inner]


def outer_fill(rows: list, parity_rows: list, blocks: int, P: int) -> list:
    """Section 9: rows (None = lost) of symbols -> all rows, lost ones rebuilt (erasures only)."""
    n_data = len(rows)
    C = len(parity_rows[0])
    rows = list(rows)
    rs = reedsolo.RSCodec(nsym=P, nsize=255)
    for b in range(blocks):
        idx = list(range(b, n_data, blocks))
        lost = [i for i, j in enumerate(idx) if rows[j] is None]
        if not lost:
            continue
        assert len(lost) <= P
        new = {j: [0] * C for j in idx if rows[j] is None}
        for c in range(C):
            cw = [0 if rows[j] is None else rows[j][c] for j in idx] + [parity_rows[b * P + i][c] for i in range(P)]
            msg = rs.decode(bytearray(cw), erase_pos=lost)[0]
            for i in lost:
                new[idx[i]][c] = msg[i]
        for j, r in new.items():
            rows[j] = r
    return rows


def read_bytes_stream(olis, tag, st, payload_nt, drop=()) -> bytes:
    B = (payload_nt - 3) // 4
    C = B - st["inner"]
    assert st["n_data"] == max(1, math.ceil(st["length"] / C))
    first, n_data = st["first"], st["n_data"]

    def row(k):
        if k in drop:
            return None
        seed, payload = olis[k]
        return list(bytes_payload(payload, tag, k, seed, st["inner"]))

    rows = [row(first + j) for j in range(n_data)]
    if st["blocks"]:
        par = [row(first + n_data + r) for r in range(st["blocks"] * st["parity"])]
        rows = outer_fill(rows, par, st["blocks"], st["parity"])
    return bytes(itertools.chain.from_iterable(rows))[:st["length"]]


MARKER_PAIRS = ["AC", "GT", "CA", "TG"]


def marked_segments(payload_nt, n):
    """Section 7.6: the payload's segments, ("w", start) for a codeword, ("m", start) for a marker."""
    K = -(-8 // n)
    segs, pos = [], 0
    while pos + n <= payload_nt:
        for _ in range(K):
            if pos + n > payload_nt:
                break
            segs.append(("w", pos))
            pos += n
        if pos + 2 + n > payload_nt:
            break
        segs.append(("m", pos))
        pos += 2
    return segs


def read_words_stream(olis, tag, st, payload_nt, table, drop=()):
    """Sections 7.4, 7.5, 7.6 (kind 2: markers), 9 and 10.3: -> values in stream order."""
    n, levels, total = st["n"], st["levels"], st["length"]
    assert len(table) == levels and all(len(w) == n for w in table)
    lookup = {w: v for v, w in enumerate(table)}
    segs = marked_segments(payload_nt, n) if st.get("kind") == 2 else [("w", j * n) for j in range(payload_nt // n)]
    starts = [p for kind, p in segs if kind == "w"]
    V = len(starts)
    first, n_data = st["first"], st["n_data"]
    assert n_data == math.ceil(total / V)
    rows = []
    for i in range(n_data):
        k = first + i
        if k in drop:
            rows.append(None)
            continue
        seed, payload = olis[k]
        keys = whitening_keys(tag, k, seed, V)
        markers = [p for kind, p in segs if kind == "m"]
        assert [payload[p:p + 2] for p in markers] == [MARKER_PAIRS[(i + seed) % 4] for i in range(len(markers))]
        rows.append([lookup[unwhiten(payload[p:p + n], keys[j])] for j, p in enumerate(starts)])
    if st.get("blocks"):
        B = (payload_nt - 3) // 4
        C = B - st["inner"]
        per = math.ceil(V / C)
        par = []
        for r in range(st["blocks"] * st["parity"]):
            chunks = b"".join(bytes_payload(olis[first + n_data + r * per + c][1], tag, first + n_data + r * per + c,
                                            olis[first + n_data + r * per + c][0], st["inner"]) for c in range(per))
            par.append(list(chunks[:V]))
        return _deinterleave(outer_fill(rows, par, st["blocks"], st["parity"]), total, st["key"])
    assert None not in rows
    return _deinterleave(rows, total, st["key"])


def _deinterleave(rows, total, key):
    slots = [v for r in rows for v in r]
    perm = interleaver(total, key)
    values = [0] * total
    for s in range(total):
        values[perm[s]] = slots[s]
    return values


def crc_values(values) -> int:
    return zlib.crc32(np.asarray(values, dtype="<u2").tobytes())


# ---------------------------------------------------------------------------------------------
# section 12.3: the compact codec (metadata, integer hyper-synthesis, arithmetic coder, packets)

GOLDEN_COMPACT = ROOT / "tests" / "golden" / "compact"
COMPACT_MODEL = ROOT / "tests" / "golden" / "compact-model"
COMPACT_ID = 8
PREC = 16                             # cumulative tables sum to 2^16
AC_TOP, AC_HALF, AC_QUARTER = (1 << 32) - 1, 1 << 31, 1 << 30
HEAD_BITS = 16
RAW_TABLE = [0, 1 << 15, 1 << 16]     # the escape's 16 binary symbols
FA, GAIN_BITS, ACT_MAX = 10, 12, 1 << 22


def parse_compact_meta(meta: bytes) -> dict:
    """12.3's metadata (no flags byte): versions 1 and 2 in 16 bytes, 3 to 8 in 11 (sides less
    one); ``gain``: stream 0 begins with the post-filter gain (versions 5 to 8); ``shifts``: then
    with the table shifts (versions 2, 4, 6 and 8); ``strips``: the positions in strips (7 and 8)."""
    if meta[0] in (3, 4, 5, 6, 7, 8):
        assert len(meta) == 11
        version, model_id, H1, W1, q, R = struct.unpack(">BIHHBB", meta)
        H, W = H1 + 1, W1 + 1
    else:
        assert len(meta) == 16
        version, model_id, H, W, q, R = struct.unpack(">BIIIHB", meta)
        assert version in (1, 2)
    return {"version": version, "model_id": model_id, "H": H, "W": W, "q": q, "R": R, "shifts": version in (2, 4, 6, 8),
            "gain": version in (5, 6, 7, 8), "strips": version in (7, 8)}


def read_table_shifts(buf: bytes, cells: int) -> tuple[list[int], int]:
    """12.3's table shifts at the head of stream 0 (metadata version 2): (shifts, bytes used)."""
    bits = [(byte >> (7 - k)) & 1 for byte in buf for k in range(8)]
    pos, out = 0, []
    for _ in range(cells):
        if bits[pos] == 0:
            out.append(0)
            pos += 1
            continue
        neg, pos, d = bits[pos + 1], pos + 2, 1
        while d < 4 and bits[pos] == 1:
            d, pos = d + 1, pos + 1
        if d < 4:
            pos += 1                    # the closing 0
        out.append(-d if neg else d)
    return out, (pos + 7) // 8


class ArithDecoder:
    """The decoder of FORMAT.md 12.3 on the bits of ``buf`` (``limit`` bits; bits past it are 0),
    coded bits from bit ``start``.  ``used`` counts the bits the encoder had emitted or left
    pending so far (``start`` included): one per renormalisation step."""

    def __init__(self, buf: bytes, limit: int, start: int = 0):
        self.buf, self.limit, self.pos = buf, limit, start
        self.low, self.high, self.value = 0, AC_TOP, 0
        for _ in range(32):
            self.value = 2 * self.value + self._bit()
        self.used = start

    def _bit(self) -> int:
        p = self.pos
        self.pos += 1
        return (self.buf[p >> 3] >> (7 - (p & 7))) & 1 if p < self.limit else 0

    def symbol(self, cdf, n) -> int:
        r = self.high - self.low + 1
        target = ((self.value - self.low + 1) * (1 << PREC) - 1) // r
        s = max(k for k in range(n) if cdf[k] <= target)
        self.high = self.low + (r * cdf[s + 1] >> PREC) - 1
        self.low = self.low + (r * cdf[s] >> PREC)
        while True:
            if self.high < AC_HALF:
                pass
            elif self.low >= AC_HALF:
                self.low -= AC_HALF
                self.high -= AC_HALF
                self.value -= AC_HALF
            elif self.low >= AC_QUARTER and self.high < AC_HALF + AC_QUARTER:
                self.low -= AC_QUARTER
                self.high -= AC_QUARTER
                self.value -= AC_QUARTER
            else:
                break
            self.low, self.high = 2 * self.low, 2 * self.high + 1
            self.value = 2 * self.value + self._bit()
            self.used += 1
        return s

    def read(self, cdf, n, off) -> int:
        s = self.symbol(cdf, n)
        if s != n - 1:
            return s - off
        raw = 0
        for _ in range(16):
            raw = 2 * raw + self.symbol(RAW_TABLE, 2)
        return raw - 32768


class ArithEncoder:
    """The encoder of FORMAT.md 12.3 (bits as a list, highest first)."""

    def __init__(self, head: list[int] | None = None):
        self.bits, self.pending, self.low, self.high = list(head or []), 0, 0, AC_TOP

    def copy(self) -> "ArithEncoder":
        e = ArithEncoder(self.bits)
        e.pending, e.low, e.high = self.pending, self.low, self.high
        return e

    def _emit(self, bit):
        self.bits += [bit] + [1 - bit] * self.pending
        self.pending = 0

    def symbol(self, cdf, s):
        r = self.high - self.low + 1
        self.high = self.low + (r * cdf[s + 1] >> PREC) - 1
        self.low = self.low + (r * cdf[s] >> PREC)
        while True:
            if self.high < AC_HALF:
                self._emit(0)
            elif self.low >= AC_HALF:
                self._emit(1)
                self.low -= AC_HALF
                self.high -= AC_HALF
            elif self.low >= AC_QUARTER and self.high < AC_HALF + AC_QUARTER:
                self.pending += 1
                self.low -= AC_QUARTER
                self.high -= AC_QUARTER
            else:
                break
            self.low, self.high = 2 * self.low, 2 * self.high + 1

    def write(self, v, cdf, n, off):
        s = v + off
        if 0 <= s <= n - 2:
            self.symbol(cdf, s)
            return
        self.symbol(cdf, n - 1)
        raw = v + 32768
        for b in range(15, -1, -1):
            self.symbol(RAW_TABLE, (raw >> b) & 1)

    def used(self) -> int:
        return len(self.bits) + self.pending

    def finish(self) -> list[int]:
        self.pending += 1
        self._emit(0 if self.low < AC_QUARTER else 1)
        return self.bits


def bits_to_bytes(bits: list[int], n_bytes: int) -> bytes:
    bits = bits + [0] * (8 * n_bytes - len(bits))
    return bytes(int("".join(map(str, bits[8 * i:8 * i + 8])), 2) for i in range(n_bytes))


def encode_packets_doc(values, tabs, tables, packet_bytes, table_of=None) -> bytes:
    """Stream 1 as 12.3 describes the encoder: head, values while they fit, termination, zeros.
    ``table_of(i, first, get)``: a context model's table of value ``i`` in a packet starting at
    ``first`` (``get(q)``: value q); default ``tabs[i]``."""
    cdf, n, off = tables
    cap, i, out = 8 * packet_bytes, 0, b""
    while i < len(values):
        enc, n_in, first = ArithEncoder([(i >> b) & 1 for b in range(HEAD_BITS - 1, -1, -1)]), 0, i
        while i < len(values) and n_in < (1 << HEAD_BITS) - 1:
            j = tabs[i] if table_of is None else table_of(i, first, lambda q: values[q])
            trial = enc.copy()
            trial.write(values[i], cdf[j], n[j], off[j])
            if trial.used() + 2 > cap:
                break
            enc, i, n_in = trial, i + 1, n_in + 1
        assert n_in > 0
        out += bits_to_bytes(enc.finish(), packet_bytes)
    return out


def packet_firsts(packets: list[bytes]) -> list[int]:
    """First value index of every packet: its head gives it modulo 2^16, and a packet holds at
    least 1 and fewer than 2^16 values."""
    firsts = []
    for k, p in enumerate(packets):
        head = int.from_bytes(p[:2], "big")
        if k == 0:
            assert head == 0
            firsts.append(0)
        else:
            prev = firsts[-1]
            firsts.append(prev + ((head - prev - 1) % (1 << HEAD_BITS)) + 1)
    return firsts


def decode_packets_doc(data: bytes, packet_bytes, total, tabs, tables, size_test=True, table_of=None):
    """Stream 1 -> the ``total`` values in coding order (and, per packet, the values the size
    test alone admits: the reading without the next packet's head).  ``table_of``: as for
    :func:`encode_packets_doc`."""
    cdf, n, off = tables
    data += bytes(-len(data) % packet_bytes)        # a short last packet: completed with zero bytes
    packets = [data[k:k + packet_bytes] for k in range(0, len(data), packet_bytes)]
    firsts = packet_firsts(packets) + [total]
    assert firsts[-2] < total
    cap = 8 * packet_bytes
    values, by_size = [], []

    def read(dec, i, first, got):
        j = tabs[i] if table_of is None else table_of(i, first, lambda q: got[q - first])
        return dec.read(cdf[j], n[j], off[j])

    for k, p in enumerate(packets):
        dec, got = ArithDecoder(p, cap, HEAD_BITS), []
        for i in range(firsts[k], firsts[k + 1]):
            got.append(read(dec, i, firsts[k], got))
            assert dec.used + 2 <= cap, "a value of the packet that does not fit it"
        values += got
        if not size_test:
            continue
        # without the next head: go on while the size test admits values
        dec, got = ArithDecoder(p, cap, HEAD_BITS), []
        for i in range(firsts[k], total):
            v = read(dec, i, firsts[k], got)
            if dec.used + 2 > cap:
                break
            got.append(v)
        by_size.append(got)
    return values, firsts[:-1], by_size


def context_table_doc(ctx: dict, M: int, tabs, neighbour=None):
    """12.3's context rule: value i (channel c = i mod M) is coded with
    remap[classes[c], j, b], b = how many of edges[1:] are <= the weighted magnitudes of its
    neighbours that lie in its packet; with a cross context, also of the values of the
    neighbouring positions (``neighbour(s, d)``: the coded index of the s-th position's neighbour
    in direction d, or None) that lie in its packet."""
    def table_of(i, first, get):
        c, base = i % M, i - i % M
        S = 0
        for nb, w in zip(ctx["neighbors"][c], ctx["weights"][c]):
            if nb < 0:
                break
            if base + nb >= first:
                S += int(w) * min(abs(get(base + nb)), 255)
        for nb, d, w in zip(ctx.get("xneighbors", [[-1]] * M)[c], ctx.get("xdirections", [[0]] * M)[c],
                            ctx.get("xweights", [[0]] * M)[c]):
            if nb < 0:
                break
            s2 = neighbour(i // M, d) if neighbour is not None else None
            if s2 is not None and s2 * M + nb >= first:
                S += int(w) * min(abs(get(s2 * M + nb)), 255)
        b = sum(1 for e in ctx["edges"][1:] if e <= S)
        return int(ctx["remap"][ctx["classes"][c], tabs[i], b])
    return table_of


def deconv_int(a, W, B, shift):
    """Transposed convolution 5x5, stride 2, padding 2, output padding 1 (PyTorch's
    ConvTranspose2d), in exact int64: out[o, 2i-2+ky, 2j-2+kx] += a[c, i, j] * W[c, o, ky, kx]."""
    C, h, w = a.shape
    _, O, k, _ = W.shape
    full = np.zeros((O, 2 * (h - 1) + k + 1, 2 * (w - 1) + k + 1), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            full[:, ky:ky + 2 * h:2, kx:kx + 2 * w:2] += np.einsum("chw,co->ohw", a, W[:, :, ky, kx])
    o = full[:, 2:2 + 2 * h, 2:2 + 2 * w]
    return np.floor_divide(o + B[:, None, None], 1 << shift)


def conv_int(a, W, B, shift):
    """Convolution 3x3, stride 1, padding 1 (zeros), exact int64."""
    C, h, w = a.shape
    ap = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    o = np.zeros((W.shape[0], h, w), dtype=np.int64)
    for ky in range(3):
        for kx in range(3):
            o += np.einsum("chw,oc->ohw", ap[:, ky:ky + h, kx:kx + w], W[:, :, ky, kx])
    return np.floor_divide(o + B[:, None, None], 1 << shift)


def hyper_synthesis_int(z, t):
    """12.3's integer hyper-synthesis: z (N, h/4, w/4) -> (mu, sigma) (M, h, w), times 2^10."""
    a = np.asarray(z, dtype=np.int64) * (1 << FA)
    for layer in range(3):
        assert [t[f"hs_int.{layer}.{k}"].dtype for k in ("weight", "bias", "shift")] == [np.int16, np.int64, np.int32]
        assert t[f"hs_int.{layer}.shift"].shape == (1,)
        W = t[f"hs_int.{layer}.weight"].astype(np.int64)
        B = t[f"hs_int.{layer}.bias"].astype(np.int64)
        shift = int(t[f"hs_int.{layer}.shift"][0])
        assert W.shape[2:] == ((5, 5) if layer < 2 else (3, 3)) and B.shape == (W.shape[1 if layer < 2 else 0],)
        step = deconv_int if layer < 2 else conv_int
        # every partial sum (here bounded by the sum of the absolute terms) is below 2^53
        assert (step(np.abs(a), np.abs(W), np.abs(B), 0) < 1 << 53).all()
        a = step(a, W, B, shift)
        if layer < 2:
            a = np.maximum(a, 0)
        a = np.clip(a, -ACT_MAX, ACT_MAX)
    M = a.shape[0] // 2
    return a[:M], np.abs(a[M:])


def hyper_synthesis_f64(z, t):
    """The same in float64 with torch's convolutions (the document: exact in any order)."""
    import torch
    import torch.nn.functional as F
    a = torch.tensor(np.asarray(z, dtype=np.float64)[None] * (1 << FA))
    for layer in range(3):
        W = torch.tensor(t[f"hs_int.{layer}.weight"].astype(np.float64))
        B = torch.tensor(t[f"hs_int.{layer}.bias"].astype(np.float64)).view(1, -1, 1, 1)
        shift = int(t[f"hs_int.{layer}.shift"][0])
        if layer < 2:
            o = F.conv_transpose2d(a, W, stride=2, padding=2, output_padding=1)
        else:
            o = F.conv2d(a, W, stride=1, padding=1)
        a = torch.floor((o + B) / float(1 << shift)).clamp(-ACT_MAX, ACT_MAX)
        if layer < 2:
            a = torch.relu(a)
    out = a[0].numpy().astype(np.int64)
    M = out.shape[0] // 2
    return out[:M], np.abs(out[M:])


def read_compact(seqs, weights_path: Path, context_path: Path | None = None) -> dict:
    """Everything 12.3 asks of a reader, up to the latent symbols (no dnaimg code).  A context
    model: ``weights_path`` its base's weights, ``context_path`` its own file."""
    import hashlib

    from safetensors.numpy import load_file

    by_tag = sort_oligos(seqs)
    assert len(by_tag) == 1
    tag, olis = next(iter(by_tag.items()))
    h = read_header(olis, tag)
    assert h["version"] == 2 and h["codec"] == COMPACT_ID
    meta = parse_compact_meta(h["meta"])
    raw = (context_path or weights_path).read_bytes()
    assert int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") == meta["model_id"]
    t = load_file(str(weights_path))
    ctx = zctx = None
    if context_path is None and "ctx.remap" in t:        # a model whose own file holds its context
        ctx = {k: t[f"ctx.{k}"].astype(np.int64) for k in ("neighbors", "weights", "classes", "edges", "remap")}
        if "zctx.cdf" in t:
            zctx = tuple(t[f"zctx.{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    if context_path is not None:
        ct = load_file(str(context_path))
        assert ct["base.sha256"].dtype == np.uint8
        assert ct["base.sha256"].tobytes() == hashlib.sha256(weights_path.read_bytes()).digest()
        assert [ct[f"ctx.{k}"].dtype for k in ("neighbors", "weights", "classes", "edges", "remap")] == [
            np.int16, np.int16, np.int16, np.int32, np.uint8]
        ctx = {k: ct[f"ctx.{k}"].astype(np.int64) for k in ("neighbors", "weights", "classes", "edges", "remap")}
        cross = [k for k in ("xneighbors", "xdirections", "xweights") if f"ctx.{k}" in ct]
        assert len(cross) in (0, 3)             # all three or none
        for k in cross:
            assert ct[f"ctx.{k}"].dtype == np.int16
            ctx[k] = ct[f"ctx.{k}"].astype(np.int64)
        if "tables.y_cdf" in ct:          # narrow tables after the base's 64, which they must repeat
            for k in ("cdf", "n", "off"):
                assert ct[f"tables.y_{k}"].dtype == np.int32 and ct[f"tables.y_{k}"].shape[0] > 64
                assert np.array_equal(ct[f"tables.y_{k}"][:64], t[f"tables.y_{k}"])
        t = {**t, **{k: ct[k] for k in ("tables.gain", "tables.inv_gain", "tables.y_cdf", "tables.y_n", "tables.y_off")
                     if k in ct}}        # replace the base's
        if "zctx.cdf" in ct:                                                                    # a hyper-latent context
            assert [ct[f"zctx.{k}"].dtype for k in ("cdf", "n", "off")] == [np.int32] * 3
            zctx = tuple(ct[f"zctx.{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    payload_nt = h["oligo_length"] - h["pf"] - h["pr"] - 36
    s0, s1 = h["streams"]
    assert s0["kind"] == s1["kind"] == 0
    assert s1["first"] == s0["first"] + s0["n_data"] + s0["blocks"] * s0["parity"]       # 10.1
    streams = [read_bytes_stream(olis, tag, st, payload_nt) for st in (s0, s1)]
    for data, st in zip(streams, (s0, s1)):
        assert len(data) == st["length"] and zlib.crc32(data) == st["crc"]
    assert h["image_id"] == zlib.crc32(b"".join(st["crc"].to_bytes(4, "little") for st in (s0, s1))
                                       + b"compact" + h["meta"])                         # 10.4

    # sizes: N from the hyper-latent tables, M from the gains
    z_cdf, z_n, z_off = (t[f"tables.z_{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    y_cdf, y_n, y_off = (t[f"tables.y_{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    gain, thresholds = t["tables.gain"].astype(np.int64), t["tables.thresholds"].astype(np.int64)
    N, M = z_cdf.shape[0], gain.shape[1]
    for cdf, n, off in [(z_cdf, z_n, z_off), (y_cdf, y_n, y_off)]:
        for row, k, o in zip(cdf, n, off):
            assert row[0] == 0 and (row[k:] == 1 << PREC).all() and (np.diff(row[:k + 1]) >= 1).all()
            assert k == 2 * o + 2
    assert z_cdf.shape[1] == 131 and (z_n == 130).all() and (z_off == 64).all()
    assert len(thresholds) == 64 and len(y_n) >= 64 and t["tables.inv_gain"].shape == gain.shape
    assert ctx is None or ((ctx["remap"] < len(y_n)).all() and ctx["remap"].shape[1] == 64)
    assert 1 <= meta["H"] <= 65536 and 1 <= meta["W"] <= 65536 and 1 <= meta["R"] <= 64
    hh, ww = 4 * math.ceil(meta["H"] / 64), 4 * math.ceil(meta["W"] / 64)

    # stream 0: (metadata versions 5 to 8) the post-filter gain byte, (2, 4, 6 and 8) the table
    # shifts, then the hyper-latent, one run in C order, table = channel
    zstream, shifts, post_gain = streams[0], None, None
    if meta["gain"]:
        post_gain, zstream = zstream[0], zstream[1:]
    if meta["shifts"]:
        assert ctx is not None
        n_cls, _, n_b = ctx["remap"].shape
        shifts, used = read_table_shifts(zstream, n_cls * n_b)
        shifts = np.array(shifts, dtype=np.int64).reshape(n_cls, n_b)
        # along the tables from narrowest to widest: the extra ones (last first), then 0 .. 63
        order = list(range(len(y_n) - 1, 63, -1)) + list(range(64))
        rank = {j: r for r, j in enumerate(order)}
        moved = np.vectorize(lambda j, d: order[min(len(order) - 1, max(0, rank[j] + d))])
        ctx = {**ctx, "remap": moved(ctx["remap"], shifts[:, None, :])}
        zstream = zstream[used:]
    dec = ArithDecoder(zstream, 8 * len(zstream))
    zh, zw = hh // 4, ww // 4
    z = np.zeros((N, zh, zw), dtype=np.int64)
    ztables = []                            # (cdf, n, off) of each value, C order
    for c in range(N):
        for y in range(zh):
            for x in range(zw):
                if zctx is None:
                    tab = (z_cdf[c], z_n[c], z_off[c])
                else:                       # the hyper-latent context: left and upper neighbours
                    l = z[c, y, x - 1] if x > 0 else (z[c, y - 1, x] if y > 0 else 0)
                    u = z[c, y - 1, x] if y > 0 else l
                    k = 4 * (min(6, max(-6, (l + u + 1) // 2)) + 6) + min(3, abs(l - u))
                    tab = (zctx[0][c, k], zctx[1][c, k], zctx[2][c, k])
                z[c, y, x] = dec.read(*tab)
                ztables.append(tab)
    enc = ArithEncoder()                    # and the encoder's bits, to compare with the stream
    for v, tab in zip(z.ravel(), ztables):
        enc.write(int(v), *tab)
    z_bits = enc.finish()

    # the integer hyper-synthesis, gains, tables
    mu, sigma = hyper_synthesis_int(z, t)
    assert mu.shape == (M, hh, ww)
    q = meta["q"]
    assert q < gain.shape[0]
    g = gain[q][:, None, None]
    mu_g = np.floor_divide(mu * g, 1 << GAIN_BITS)
    sigma_g = np.floor_divide(sigma * g, 1 << GAIN_BITS)
    j = np.array([min(63, next((k for k, th in enumerate(thresholds) if th >= s), 64))
                  for s in sigma_g.ravel()]).reshape(sigma_g.shape)

    # stream 1: the latent, in packets; coding order: position perm[s], then its M channels
    B = (payload_nt - 3) // 4
    packet_bytes = meta["R"] * (B - s1["inner"])
    if meta["strips"]:          # strips of 4 columns, each row by row (metadata versions 7 and 8)
        perm = sorted(range(hh * ww), key=lambda p: ((p % ww) // 4, p // ww, p % ww))
    else:
        perm = interleaver(hh * ww, 0x636F6D70 ^ (hh << 16) ^ ww)
    rank = {p: s for s, p in enumerate(perm)}

    def neighbour(s, d):        # the cross context's neighbours: in the latent and in the same strip
        if not meta["strips"]:
            return None
        r, col = divmod(perm[s], ww)
        dr, dc = ((0, -1), (-1, -1), (-1, 0), (-1, 1))[d]
        r2, c2 = r + dr, col + dc
        if r2 < 0 or c2 < 0 or c2 >= ww or c2 // 4 != col // 4:
            return None
        assert rank[r2 * ww + c2] < s
        return rank[r2 * ww + c2]
    order = [(c, perm[s] // ww, perm[s] % ww) for s in range(hh * ww) for c in range(M)]
    tabs = [j[o] for o in order]
    table_of = None if ctx is None else context_table_doc(ctx, M, tabs, neighbour)
    vals, firsts, by_size = decode_packets_doc(streams[1], packet_bytes, M * hh * ww, tabs, (y_cdf, y_n, y_off),
                                               table_of=table_of)
    sym = np.zeros((M, hh, ww), dtype=np.int64)
    for v, o in zip(vals, order):
        sym[o] = v
    return {"tag": tag, "olis": olis, "header": h, "meta": meta, "tables": t, "streams": streams,
            "z": z, "z_bits": z_bits, "mu": mu, "sigma": sigma, "mu_g": mu_g, "sigma_g": sigma_g, "j": j,
            "order": order, "tabs": tabs, "values": vals, "symbols": sym, "firsts": firsts, "by_size": by_size,
            "packet_bytes": packet_bytes, "N": N, "M": M, "hw": (hh, ww), "table_of": table_of, "shifts": shifts, "gain": post_gain,
            "zctx": zctx, "ctx": ctx,
            "first_of": [firsts[bisect.bisect_right(firsts, i) - 1] for i in range(len(vals))]}


# ---------------------------------------------------------------------------------------------
# fixtures: oligos written by dnaimg


def small_image() -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(EXAMPLE).convert("RGB").resize((32, 24), Image.LANCZOS))


def fasta_of(enc) -> str:
    return "".join(f">{name}\n{seq}\n" for name, seq in enc.fasta_records())


@pytest.fixture(scope="module")
def png_encoded():
    from dnaimg import api
    img = small_image()
    return img, api.encode(img, "png", redundancy=0.2)




# ---------------------------------------------------------------------------------------------
# tests


def test_document_constants_and_vectors():
    text = doc_text()
    for s in [PF, PR, revcomp(PR), "0x9E3779B97F4A7C15", "0xBF58476D1CE4E5B9", "0x94D049BB133111EB",
              "0x51ED27", "0xB17E5", "0x2545F4914F6CDD1D", "0x5EED1D", "6364136223846793005",
              "1442695040888963407", "0xA5A5A5A5", "20190902", "1,048,320"]:
        assert s in text, s
    assert " | ".join(NIBBLE_WORDS) in text
    for key, perm in SIGMA.items():           # 6.1: the whitening permutations and their inverses
        inv = "".join(NT[perm.index(x)] for x in NT)
        assert f"| {key} | {' '.join(perm)} | {' '.join(inv)} |" in text
        assert all(unwhiten(perm[i], key) == NT[i] for i in range(4))
        # {C, G} onto one class and {A, T} onto the other: kept for keys 0-3, swapped for 4-7
        assert sorted(perm[1] + perm[2]) == (["C", "G"] if key < 4 else ["A", "T"])
    for s in range(12):
        assert f"| {s} | " + " ".join(f"{x:X}" for x in MASK[s]) + " |" in text
    # generator polynomials (1.1)
    assert generator_poly(4, GF16) == [1, 0xF, 0x3, 0x1, 0xC]
    assert generator_poly(4, GF256) == [1, 0x0F, 0x36, 0x78, 0x40]
    g16 = generator_poly(16, GF256)
    assert ", ".join(f"0x{x:02X}" for x in g16[1:9]) in text
    # test vectors (16)
    assert mix(1) == 0x5692161D100B05E5 and mix(0x123456789) == 0x5189F682B434CAF2
    assert whitening_keys(0x49, 0, 0, 10) == [4, 3, 6, 7, 1, 4, 1, 7, 0, 6]
    assert whitening_keys(0x49, 1048320, 3, 10) == [3, 1, 6, 6, 2, 1, 4, 1, 4, 3]
    assert keystream(0xF8, 0, 0, 0, 16) == [1, 0, 3, 3, 3, 2, 1, 3, 0, 2, 2, 2, 1, 0, 0, 0]
    assert "".join(NT[x] for x in keystream(0xF8, 5, 2, 7, 16)) == "CCCTTGTCGTAACACT"
    assert interleaver(10, 7) == [9, 7, 8, 4, 6, 0, 3, 1, 5, 2]
    assert interleaver(10, 0xDEADBEEF) == [7, 5, 4, 8, 6, 9, 2, 0, 3, 1]
    for idx, want in [("TACGCTTCGGTGACTACAAGACGACATGCTGTGATG", (0, 0, 0)),
                      ("ATGAGACATTGTTCGCATAGCACTCTCACTCGAATG", (1, 3, 0x49)),
                      ("GAGGTACTCGTGACTACAATGACTTACGCTGTGACA", (1048320, 0, 0xF8)),
                      ("ATGCGATCGAGAACTCTCACTCGATCGGTGCGAACA", (1048355, 5, 0xF8))]:
        assert idx in text
        assert read_index(idx) == want
    assert zlib.crc32(b"123456789") == 0xCBF43926
    for name, mid in [("cae32-l9", "0x54C52AE5"), ("cae32-mr", "0xACD083BC")]:
        assert f"{zlib.crc32(name.encode()):#010X}".replace("0X", "0x") == mid and mid in text


def test_codebook_tables_follow_the_rule():
    books = doc_codebooks()
    assert set(books) == {(2, 9), (2, 11), (3, 31), (4, 127)}
    for (n, L), words in books.items():
        assert len(words) == L == len(set(words))
        assert set(words) <= set(pool(n))
    assert [len(pool(n)) for n in (2, 3, 4)] == [12, 32, 128]
    # the generation rule of 7.2, redone here for the 2-nt tables (3 and 4 nt: same rule, slower)
    for n, L in [(2, 9), (2, 11)]:
        assert generate_codebook(n, L) == books[(n, L)]
    # the shipped models' operating points are all in the document
    for card in (ROOT / "dnaimg" / "zoo" / "models").glob("*.json"):
        c = json.loads(card.read_text())
        if c.get("codec") == "compact":      # entropy-coded: no codebook (section 12.3)
            continue
        points = c.get("operating_points") or [{"levels": c["architecture"]["levels"], "codeword_nt": c["codeword_nt"]}]
        for p in points:
            assert (p["codeword_nt"], p["levels"]) in books


def test_png_bytes_stream(png_encoded):
    from PIL import Image
    img, enc = png_encoded
    seqs = parse_fasta(fasta_of(enc))
    seqs = [revcomp(s) if i % 3 == 0 else s for i, s in enumerate(seqs)]     # either strand
    by_tag = sort_oligos(seqs[::-1])
    assert len(by_tag) == 1
    tag, olis = next(iter(by_tag.items()))
    h = read_header(olis, tag)
    assert h["codec"] == 6 and h["image_id"] & 0xFF == tag
    assert h["meta"] == struct.pack(">BHH", 0x03, 24, 32)
    (st,) = h["streams"]
    assert st["kind"] == 0 and st["first"] == 0 and st["blocks"] >= 1
    P = h["oligo_length"] - h["pf"] - h["pr"] - 36
    data = read_bytes_stream(olis, tag, st, P)
    # what the encoder wrote: its own record of the stream, and the input pixels
    want = enc.written.header.streams[0]
    assert len(data) == st["length"] == want.length == enc.info["stream_bytes"]
    assert zlib.crc32(data) == st["crc"] == want.crc
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert h["image_id"] == zlib.crc32(st["crc"].to_bytes(4, "little") + b"png" + h["meta"])     # 10.4
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), img)
    # every oligo accounted for: header copies x parts, data, parity
    n_parity = st["blocks"] * st["parity"]
    assert sorted(k for k in olis if k < HEADER_BASE) == list(range(st["n_data"] + n_parity))
    # lost oligos are rebuilt by the outer code (9): drop up to P rows of one block
    assert st["blocks"] == 1 and st["parity"] >= 3
    assert read_bytes_stream(olis, tag, st, P, drop={0, 1, st["n_data"] - 1}) == data


@pytest.mark.parametrize("point,k,L,n", [("r050", 16, 11, 2), ("r098", 21, 31, 3), ("r200", 32, 127, 4)])
def test_robust_words_stream(point, k, L, n):
    from dnaimg import api
    img = small_image()
    enc = api.encode(img, "robust", model=f"cae32-mr:{point}")
    by_tag = sort_oligos(parse_fasta(fasta_of(enc)))
    tag, olis = next(iter(by_tag.items()))
    h = read_header(olis, tag)
    assert h["codec"] == 0
    model_id, k2, L2, n2, H, W = struct.unpack("<IHHBHH", h["meta"])
    assert model_id == zlib.crc32(b"cae32-mr") and (k2, L2, n2, H, W) == (k, L, n, 24, 32)
    (st,) = h["streams"]
    assert st["kind"] == 1 and (st["n"], st["levels"]) == (n, L) and st["blocks"] == 0
    assert st["length"] == k * math.ceil(H / 8) * math.ceil(W / 8)
    P = h["oligo_length"] - h["pf"] - h["pr"] - 36
    values = read_words_stream(olis, tag, st, P, doc_codebooks()[(n, L)])
    assert crc_values(values) == st["crc"]
    assert st["key"] == st["crc"] ^ 0xA5A5A5A5
    assert h["image_id"] == zlib.crc32(st["crc"].to_bytes(4, "little") + b"robust" + h["meta"])
    assert np.array_equal(np.asarray(values), enc.robust.symbols.reshape(-1))
    assert enc.robust.symbols.shape == (k, math.ceil(H / 8), math.ceil(W / 8))


@pytest.mark.parametrize("point,n,V", [("r050", 2, 50), ("r098", 3, 34), ("r200", 4, 25)])
def test_robust_marked_words_stream(point, n, V):
    """Format version 4: a words stream of kind 2 (markers, section 7.6), with an outer code; read by
    the document alone, also with two data oligos lost."""
    from dnaimg import api
    img = small_image()
    enc = api.encode(img, "robust", model=f"cae32-mr:{point}", markers=True, redundancy=0.5)
    by_tag = sort_oligos(parse_fasta(fasta_of(enc)))
    tag, olis = next(iter(by_tag.items()))
    h = read_header(olis, tag)
    assert h["version"] == 4
    (st,) = h["streams"]
    assert st["kind"] == 2 and st["n"] == n and st["blocks"] >= 1
    P = h["oligo_length"] - h["pf"] - h["pr"] - 36
    assert sum(kind == "w" for kind, _ in marked_segments(P, n)) == V
    assert st["n_data"] == math.ceil(st["length"] / V)
    table = doc_codebooks()[(n, st["levels"])]
    want = enc.robust.symbols.reshape(-1)
    assert np.array_equal(read_words_stream(olis, tag, st, P, table), want)
    assert np.array_equal(read_words_stream(olis, tag, st, P, table, drop={0, 1}), want)
    assert crc_values(want) == st["crc"]


def test_words_stream_outer_code_with_filler_values():
    """A flat image: latent values 4..6 of 11 levels; the filler values (s - total) mod levels
    of the last data oligo are part of the outer code's codewords."""
    from dnaimg import api
    img = np.full((24, 32, 3), 128, np.uint8)
    enc = api.encode(img, "robust", model="cae32-mr:r050", redundancy=0.5)
    want = enc.robust.symbols.reshape(-1)
    by_tag = sort_oligos(parse_fasta(fasta_of(enc)))
    tag, olis = next(iter(by_tag.items()))
    h = read_header(olis, tag)
    (st,) = h["streams"]
    P = h["oligo_length"] - h["pf"] - h["pr"] - 36
    table = doc_codebooks()[(st["n"], st["levels"])]
    assert st["blocks"] == 1 and st["parity"] == 2 and want.max() < st["levels"] - 1
    V = P // st["n"]
    per = math.ceil(V / ((P - 3) // 4 - st["inner"]))
    assert sorted(k for k in olis if k < HEADER_BASE) == list(range(st["n_data"] + 2 * per))
    assert np.array_equal(read_words_stream(olis, tag, st, P, table), want)
    drop = {0, 1}                  # two data oligos lost; the last one (with the filler) kept
    assert np.array_equal(read_words_stream(olis, tag, st, P, table, drop=drop), want)
    # and dnaimg's own decoder rebuilds them too
    keep = [o for i, o in enumerate(enc.oligos) if i - enc.written.n_header not in drop]
    dec = api.decode(keep, precision="fp32")
    assert dec.exact and np.array_equal(dec.symbols.reshape(-1), want)


def test_version1_golden_file():
    meta = json.loads((GOLDEN_V1 / "golden.json").read_text())["robust"]
    by_tag = sort_oligos(parse_fasta((GOLDEN_V1 / meta["fasta"]).read_text()))
    tag, olis = next(iter(by_tag.items()))
    h = read_header(olis, tag)
    assert h["version"] == 1 and h["model_id"] == zlib.crc32(meta["model"].encode())
    assert (h["channels"], h["levels"], h["n"], h["height"], h["width"]) == (
        meta["channels"], meta["levels"], meta["codeword_nt"], meta["height"], meta["width"])
    total = h["channels"] * math.ceil(h["height"] / 8) * math.ceil(h["width"] / 8)
    assert len(olis) == meta["oligos"] and sum(k < HEADER_BASE for k in olis) == h["n_data"]
    st = {"n": h["n"], "levels": h["levels"], "length": total, "first": 0, "n_data": h["n_data"],
          "key": h["key"], "blocks": 0}
    P = h["oligo_length"] - h["pf"] - h["pr"] - 36
    values = read_words_stream(olis, tag, st, P, doc_codebooks()[(h["n"], h["levels"])])
    assert crc_values(values) == h["symbols_crc"] == meta["symbols_crc"]


def test_compact_golden_file(monkeypatch):
    """The compact codec's golden file read with 12.3 alone; then the same symbols, means,
    scales and tables from dnaimg's own decoder."""
    text = doc_text()
    for s in ["0x636F6D70", "2^22", "ln 0.11", "ln 256", "32768",
              "ConvTranspose2d(k=5, s=2, padding=2, output_padding=1)"]:
        assert s in text, s
    gold = json.loads((GOLDEN_COMPACT / "golden.json").read_text())["compact-source"]
    seqs = parse_fasta((GOLDEN_COMPACT / gold["fasta"]).read_text())
    assert len(seqs) == gold["oligos"]
    r = read_compact(seqs, COMPACT_MODEL / f"{gold['model']}.safetensors")
    h, meta, t, streams = r["header"], r["meta"], r["tables"], r["streams"]
    assert f"{h['image_id']:08x}" == gold["image_id"]
    assert [st["crc"] for st in h["streams"]] == gold["stream_crcs"]
    assert [meta["H"], meta["W"]] == gold["shape"][:2]
    assert meta["q"] == 8 * gold["options"]["quality"] and meta["R"] == 1
    assert r["packet_bytes"] == 26 and len(streams[1]) % 26 == 0
    # a 91-byte header: 6 parts of 41 nibble words, 3 copies (11.1, 11.3)
    assert 19 + 28 * len(h["streams"]) + len(h["meta"]) == 91
    assert sorted(k - HEADER_BASE for k in r["olis"] if k >= HEADER_BASE) == [
        16 * c + p for c in range(3) for p in range(6)]
    scales = [math.exp(math.log(0.11) + k * (math.log(256) - math.log(0.11)) / 63) for k in range(64)]
    assert t["tables.thresholds"].tolist() == [math.ceil(s * 1024) for s in scales]
    # stream 0 is the terminated code, zero bits to the end of its last byte
    assert len(streams[0]) == math.ceil(len(r["z_bits"]) / 8)
    assert bits_to_bytes(r["z_bits"], len(streams[0])) == streams[0]
    # the integer network in float64 convolutions gives the same integers
    mu64, sigma64 = hyper_synthesis_f64(r["z"], t)
    assert np.array_equal(mu64, r["mu"]) and np.array_equal(sigma64, r["sigma"])
    # stream 1: re-encoding the values as 12.3 says gives the stream back, byte for byte
    ytab = tuple(t[f"tables.y_{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    assert encode_packets_doc(r["values"], r["tabs"], ytab, r["packet_bytes"]) == streams[1]
    # without the next packet's head, the size test admits every value of the packet (and
    # possibly a few more, decoded from the termination bits)
    firsts = r["firsts"] + [len(r["values"])]
    assert len(firsts) > 2
    for k, got in enumerate(r["by_size"]):
        n_k = firsts[k + 1] - firsts[k]
        assert len(got) >= n_k and got[:n_k] == r["values"][firsts[k]:firsts[k + 1]]
    assert any(abs(v) > 0 for v in r["values"])
    # lost oligos of either stream are rebuilt by its outer code (9)
    payload_nt = h["oligo_length"] - h["pf"] - h["pr"] - 36
    for st, data in zip(h["streams"], streams):
        assert st["blocks"] == 1 and st["parity"] >= 1
        drop = {st["first"] + st["n_data"] - 1 - k for k in range(st["parity"])}
        assert read_bytes_stream(r["olis"], r["tag"], st, payload_nt, drop=drop) == data

    # dnaimg's own decoder, on the same FASTA: spy on what its compact codec computes
    from dnaimg import api
    from dnaimg.codecs import arith, compact
    from dnaimg.zoo import exact
    monkeypatch.setenv("DNAIMG_MODELS", str(COMPACT_MODEL))
    seen: dict[str, list] = {}

    def spy(name, fn):
        def wrapped(*a, **k):
            out = fn(*a, **k)
            seen.setdefault(name, []).append((a, out))
            return out
        return wrapped

    monkeypatch.setattr(arith, "decode_stream", spy("z", arith.decode_stream))
    monkeypatch.setattr(arith, "decode_packets", spy("y", arith.decode_packets))
    monkeypatch.setattr(exact.ExactTables, "h_s", spy("h_s", exact.ExactTables.h_s))
    monkeypatch.setattr(exact.ExactTables, "gained", spy("gained", exact.ExactTables.gained))
    compact._CACHE.clear()
    try:
        dec = api.decode(seqs)
    finally:
        compact._CACHE.clear()
    assert dec.exact and list(dec.image.shape) == gold["shape"]
    assert {k: len(v) for k, v in seen.items()} == {"z": 1, "y": 1, "h_s": 1, "gained": 1}
    z_dn, z_known = seen["z"][0][1]
    assert z_known.all() and np.array_equal(z_dn, r["z"].reshape(-1))
    mu_dn, sigma_dn = seen["h_s"][0][1]
    assert np.array_equal(mu_dn[0], r["mu"]) and np.array_equal(sigma_dn[0], r["sigma"])
    (_, _, _, row), (mu_g_dn, idx_dn) = seen["gained"][0]
    assert row == meta["q"]
    assert np.array_equal(mu_g_dn[0], r["mu_g"]) and np.array_equal(idx_dn[0], r["j"])
    args, (vals_dn, known_dn) = seen["y"][0]
    packets, lost, total, tabs_dn = args[:4]
    assert packets.shape[1] == r["packet_bytes"] and not lost.any() and total == len(r["values"])
    assert np.array_equal(tabs_dn, r["tabs"])
    assert known_dn.all() and np.array_equal(vals_dn, r["values"])
    # and in the latent's layout (channel, row, column)
    sym_dn = np.zeros(r["M"] * r["hw"][0] * r["hw"][1], dtype=np.int64)
    flat, _ = compact._y_layout(idx_dn[0], *r["hw"])
    sym_dn[flat] = vals_dn
    assert np.array_equal(sym_dn.reshape(r["symbols"].shape), r["symbols"])


def test_compact_coder_escapes_and_heads():
    """The escape (values outside a table) and the packets' heads, on values the golden file does
    not hold: dnaimg's coder writes, the reader of 12.3 reads and re-encodes."""
    from safetensors.numpy import load_file

    from dnaimg.codecs import arith
    t = load_file(str(COMPACT_MODEL / "compact-tiny.safetensors"))
    ytab = tuple(t[f"tables.y_{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    ztab = tuple(t[f"tables.z_{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    rng = np.random.default_rng(5)
    total = 3000
    tabs = rng.integers(0, 64, total)
    values = np.round(rng.normal(0, 1, total) * np.exp(tabs / 10)).astype(np.int64)
    values[rng.integers(0, total, 40)] = rng.integers(-32768, 32768, 40)            # escapes
    assert sum(not 0 <= v + ytab[2][j] <= ytab[1][j] - 2 for v, j in zip(values, tabs)) >= 40
    pk, starts = arith.encode_packets(values, tabs, *ytab, 26, total)
    data = pk.tobytes()
    got, firsts, _ = decode_packets_doc(data, 26, total, tabs.tolist(), ytab)
    assert got == values.tolist() and firsts == starts.tolist()
    assert encode_packets_doc(got, tabs.tolist(), ytab, 26) == data
    # a packet holds at most 2^16 - 1 values; heads wrap modulo 2^16 (near-certain values:
    # table 0's most probable symbol costs 0.00007 bits)
    assert ytab[0][0][2] - ytab[0][0][1] >= 65530
    total = 2 * 65535 + 900
    pk, starts = arith.encode_packets(np.zeros(total, np.int64), np.zeros(total, np.int64), *ytab, 26, 8)
    assert starts.tolist() == [0, 65535, 131070] and pk[2, :2].tobytes() == (131070 % 65536).to_bytes(2, "big")
    got, firsts, _ = decode_packets_doc(pk.tobytes(), 26, total, [0] * total, ytab, size_test=False)
    assert firsts == [0, 65535, 131070] and got == [0] * total
    assert encode_packets_doc(got, [0] * total, ytab, 26) == pk.tobytes()
    # stream 0's form: one run, no head, with escapes beyond +-64
    zt = rng.integers(0, ztab[0].shape[0], 500)
    zv = rng.integers(-3, 4, 500)
    zv[::50] = [-200, 90, -65, 64, -64, 65, 1000, -32768, 32767, 300]
    zb, _ = arith.encode_packets(zv, zt, *ztab, 0, 1)
    dec = ArithDecoder(zb[0].tobytes(), 8 * zb.shape[1])
    assert [dec.read(ztab[0][c], ztab[1][c], ztab[2][c]) for c in zt] == zv.tolist()
    enc = ArithEncoder()
    for v, c in zip(zv, zt):
        enc.write(int(v), ztab[0][c], ztab[1][c], ztab[2][c])
    bits = enc.finish()
    assert zb.shape[1] == math.ceil(len(bits) / 8) and bits_to_bytes(bits, zb.shape[1]) == zb[0].tobytes()


# ---------------------------------------------------------------------------------------------
# section 18: pools (format version 3)

def doc_primer_pairs() -> list[tuple[str, str]]:
    """The primer set as docs/primers.tsv lists it (18.3)."""
    rows = (ROOT / "docs" / "primers.tsv").read_text().splitlines()[1:]
    pairs = [tuple(r.split("\t")[1:3]) for r in rows if r.strip()]
    assert [int(r.split("\t")[0]) for r in rows if r.strip()] == list(range(len(pairs)))
    return pairs


def test_primer_set_as_documented():
    text = doc_text()
    pairs = doc_primer_pairs()
    assert len(pairs) == 97 and pairs[0] == (PF, PR)
    for i in range(3):
        assert f"| {i} | {pairs[i][0]} | {pairs[i][1]} |" in text
    # 18.3: the first generated pair, redone from the text alone
    nn = {"AA": (-7.9, -22.2), "AT": (-7.2, -20.4), "TA": (-7.2, -21.3), "CA": (-8.5, -22.7), "GT": (-8.4, -22.4),
          "CT": (-7.8, -21.0), "GA": (-8.2, -22.2), "CG": (-10.6, -27.2), "GC": (-9.8, -24.4), "GG": (-8.0, -19.9)}

    def stack(d):
        return nn.get(d) or nn[revcomp(d)]

    def tm(x):
        dh = sum(stack(x[i:i + 2])[0] for i in range(19)) + sum(0.1 if e in "GC" else 2.3 for e in (x[0], x[-1]))
        ds = sum(stack(x[i:i + 2])[1] for i in range(19)) + sum(-2.8 if e in "GC" else 4.1 for e in (x[0], x[-1]))
        ds += 0.368 * 19 * math.log(0.05)
        return 1000 * dh / (ds + 1.987 * math.log(250e-9 / 4)) - 273.15

    def lev(a, b):
        prev = list(range(len(b) + 1))
        for i in range(1, len(a) + 1):
            cur = [i] + [0] * len(b)
            for j in range(1, len(b) + 1):
                cur[j] = min(prev[j - 1] + (a[i - 1] != b[j - 1]), prev[j] + 1, cur[j - 1] + 1)
            prev = cur
        return prev[-1]

    def repeat(x):
        best = 0
        for p in range(2, 7):
            run = 0
            for i in range(len(x) - p):
                run = run + 1 if x[i] == x[i + p] else 0
                if run and run + p >= 2 * p:
                    best = max(best, run + p)
        return best

    def alone_ok(x):
        return (9 <= sum(c in "GC" for c in x) <= 11 and not any(x[i] == x[i + 1] == x[i + 2] for i in range(18))
                and repeat(x) <= 5 and x[-1] in "GC" and sum(c in "GC" for c in x[-5:]) <= 3
                and not any(revcomp(x[i:i + 5]) in x for i in range(16)) and revcomp(x[-4:]) not in x
                and 55 <= tm(x) <= 60 and lev(x, revcomp(x)) >= 9)

    state, chosen = 0x5052494D4552, [PF, PR]
    while len(chosen) < 4:
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = mix(state)
        x = "".join(NT[(z >> (2 * i)) & 3] for i in range(20))
        if not alone_ok(x):
            continue
        if len(chosen) % 2 == 1:
            f = chosen[-1]
            if abs(tm(x) - tm(f)) > 2 or any(revcomp(t[-4:]) in u for t in (f, x) for u in (f, x)):
                continue
        if all(lev(x, c) >= 9 and lev(x, revcomp(c)) >= 9 for c in chosen):
            chosen.append(x)
    assert (chosen[2], chosen[3]) == pairs[1]
    assert abs(tm(PF) - 55.58) < 0.01 and abs(tm(PR) - 54.28) < 0.01    # (Biopython's Tm_NN agrees)


def test_pool_read_from_the_document(tmp_path):
    """A pool of three images in two primer pairs (group size 2), read as section 18.4 says."""
    from PIL import Image
    from dnaimg import pool
    base = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    srcs = []
    for i, (y, x) in enumerate([(0, 0), (40, 60), (80, 20)]):
        a = np.ascontiguousarray(base[y:y + 24, x:x + 32])
        Image.fromarray(a).save(tmp_path / f"part{i}.png")
        srcs.append(a)
    enc = pool.encode_pool([tmp_path / f"part{i}.png" for i in range(3)], codec="png", redundancy=0.2,
                           group_size=2, pool_id=0x1A2B3C4D)
    fasta = tmp_path / "pool.fasta"
    pool.write_pool(enc, fasta)
    seqs = parse_fasta(fasta.read_text())
    pairs = doc_primer_pairs()
    got = {}
    for g, (pf, pr) in enumerate(pairs[:4]):
        mine = [s for s in seqs if s.startswith(pf) or s.startswith(pr)]
        if not mine:
            continue
        for tag, olis in sort_oligos(mine, pf, pr).items():
            h = read_header(olis, tag)
            assert h["version"] == 3 and h["image_id"] & 0xFF == tag and h["primer_pair"] == g
            assert h["pool_id"] == 0x1A2B3C4D
            (st,) = h["streams"]
            P = h["oligo_length"] - h["pf"] - h["pr"] - 36
            data = read_bytes_stream(olis, tag, st, P)
            assert zlib.crc32(data) == st["crc"]
            got[h["name"]] = (h["image_id"], g, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert sorted(got) == ["part0.png", "part1.png", "part2.png"]
    for i in range(3):
        image_id, g, pixels = got[f"part{i}.png"]
        assert (image_id, g) == (i, i // 2)                 # ids in order; groups of 2 share a pair
        assert np.array_equal(pixels, srcs[i])


def test_pool_header_example_in_the_document():
    """The example bytes of 18.2 parse as the text says."""
    text = doc_text()
    sec = text[text.index("### 18.2"):text.index("### 18.3")]
    block = sec[sec.index("```") + 3:]
    block = block[:block.index("```")]
    d = bytes(int(x, 16) for x in re.findall(r"\b[0-9a-f]{2}\b", block))
    h = parse_header_v2(d)
    assert len(d) == d[3] == 77
    assert (h["version"], h["image_id"], h["pool_id"], h["primer_pair"], h["name"]) == (3, 5, 0x1A2B3C4D, 0, "coffee.png")



@pytest.mark.parametrize("folder,model,base,quality", [("compact-ctx", "compact-gray-v4", "compact-gray-v3", 8.5),
                                                      ("compact-gray-v5", "compact-gray-v5", None, 3),
                                                      ("compact-adapt", "compact-gray-v5", None, 6),
                                                      ("compact-gray-v6", "compact-gray-v6", "compact-gray-v5", 6),
                                                      ("compact-gray-v7", "compact-gray-v7", "compact-gray-v5", 6.5),
                                                      ("compact-narrow", "compact-gray-v7", "compact-gray-v5", 3),
                                                      ("compact-gray-v8", "compact-gray-v8", "compact-gray-v5", 5),
                                                      ("compact-gray-v9", "compact-gray-v9", "compact-gray-v5", 5),
                                                      ("compact-gray-v10", "compact-gray-v10", "compact-gray-v5", 5),
                                                      ("compact-short", "compact-gray-v10", "compact-gray-v5", 7),
                                                      ("compact-gray-v13", "compact-gray-v13", "compact-gray-v5", 5),
                                                      ("compact-meta3", "compact-gray-v8", "compact-gray-v5", 5),
                                                      ("compact-meta4", "compact-gray-v8", "compact-gray-v5", 7),
                                                      ("compact-gain", "compact-gray-v14", "compact-gray-v5", 4),
                                                      ("compact-gain-shifts", "compact-gray-v14", "compact-gray-v5", 7),
                                                      ("compact-cross", "compact-gray-v16", "compact-gray-v5", 7),
                                                      ("compact-cross-shifts", "compact-gray-v16", "compact-gray-v5", 8)])
def test_compact_context_golden_file(folder, model, base, quality, monkeypatch):
    """The context models' golden files read with 12.3 alone: compact-gray-v4 extends
    compact-gray-v3 (the base's weights, the context file's tables and gains), compact-gray-v5
    holds everything in one file, compact-adapt has its context's tables shifted for the image
    (metadata version 2), compact-gray-v6 extends compact-gray-v5 with a context for the
    hyper-latent (stream 0 re-encoded bit for bit with it), compact-gray-v7 adds narrow tables that
    its context (and the shifts) reach, compact-gray-v8 is v7 with a deeper post-filter and
    compact-gray-v9 and -v10 v8 with others (the same streams' rules), compact-meta3 and -meta4 have
    the 11-byte metadata (versions 3 and 4, a header of 5 oligos per copy), compact-gain and
    compact-gain-shifts a post-filter gain byte at the head of stream 0 (versions 5 and 6, the
    latter before the table shifts), compact-cross and compact-cross-shifts a cross context with the
    positions in strips (versions 7 and 8); re-encoding the values with the documented context rule gives stream 1
    back byte for byte, and the symbols are those dnaimg's encoder chose."""
    since_v13 = ("compact-gray-v13", "compact-meta3", "compact-meta4", "compact-gain",
                 "compact-gain-shifts", "compact-cross", "compact-cross-shifts")     # (written by the same encoder)
    gold_dir = ROOT / "tests" / "golden" / folder
    models = ROOT / "dnaimg" / "zoo" / "models"
    gold = json.loads((gold_dir / "golden.json").read_text())["gray-source"]
    assert gold["model"] == model
    card = json.loads((models / f"{model}.json").read_text())
    assert card.get("extends") == base
    seqs = parse_fasta((gold_dir / gold["fasta"]).read_text())
    if base:
        r = read_compact(seqs, models / f"{base}.safetensors", models / f"{model}.safetensors")
    else:
        r = read_compact(seqs, models / f"{model}.safetensors")
    t, streams = r["tables"], r["streams"]
    assert r["meta"]["q"] == 8 * quality and t["tables.gain"].shape == (73, 256)       # extended rate rows
    assert f"{r['header']['image_id']:08x}" == gold["image_id"]
    assert any(r["table_of"](i, r["firsts"][0], lambda q: r["values"][q]) != r["tabs"][i]
               for i in range(len(r["values"])))          # the context changes tables
    ytab = tuple(t[f"tables.y_{k}"].astype(np.int64) for k in ("cdf", "n", "off"))
    whole = encode_packets_doc(r["values"], r["tabs"], ytab, r["packet_bytes"], r["table_of"])
    if folder in ("compact-short",) + since_v13:       # the last packet without its trailing zero bytes
        if folder == "compact-short":
            assert r["meta"]["R"] == 8 and len(streams[1]) % r["packet_bytes"] == 9 and len(r["firsts"]) == 9
        assert whole[:len(streams[1])] == streams[1] and not any(whole[len(streams[1]):])
    else:
        assert whole == streams[1]
    assert len(r["firsts"]) > 2          # packets split latent positions: the "same packet" rule is used
    # without the next packet's head, the size test admits every value of the packet
    firsts = r["firsts"] + [len(r["values"])]
    for k, got in enumerate(r["by_size"]):
        n_k = firsts[k + 1] - firsts[k]
        assert len(got) >= n_k and got[:n_k] == r["values"][firsts[k]:firsts[k + 1]]
    # dnaimg's symbols
    from PIL import Image

    from dnaimg.codecs import compact
    from dnaimg.zoo import compact as zoo_compact
    img = np.asarray(Image.open(ROOT / "tests" / "golden" / "v2" / "source.png").convert("L"))
    assert r["meta"]["shifts"] == (folder in ("compact-adapt", "compact-gray-v6", "compact-gray-v7", "compact-short", "compact-meta4",
                                              "compact-gain-shifts", "compact-cross-shifts"))
    assert r["meta"]["version"] == {"compact-meta3": 3, "compact-meta4": 4, "compact-gain": 5, "compact-gain-shifts": 6,
                                    "compact-cross": 7, "compact-cross-shifts": 8}.get(folder, 2 if r["meta"]["shifts"] else 1)
    assert r["gain"] == {"compact-gain": 43, "compact-gain-shifts": 16, "compact-cross": 20,
                         "compact-cross-shifts": 21}.get(folder)
    if folder.startswith("compact-cross"):       # the cross context changes tables where a neighbouring position shares the packet
        in_block = context_table_doc({k: v for k, v in r["ctx"].items() if not k.startswith("x")}, r["M"], r["tabs"])
        changed = sum(r["table_of"](i, f, lambda q: r["values"][q]) != in_block(i, f, lambda q: r["values"][q])
                      for i, f in enumerate(r["first_of"]))
        assert changed > 50 and r["meta"]["strips"]
    if folder in ("compact-meta3", "compact-meta4", "compact-gain", "compact-gain-shifts", "compact-cross",
                  "compact-cross-shifts"):
        # 19 + 28 x 2 + 11 = 86 bytes: 5 parts (11.1), 3 copies
        assert len(r["header"]["meta"]) == 11 and 19 + 28 * len(r["header"]["streams"]) + 11 == 86
        assert sorted(k - HEADER_BASE for k in r["olis"] if k >= HEADER_BASE) == [16 * c + p for c in range(3) for p in range(5)]
        assert (r["meta"]["H"], r["meta"]["W"]) == (64, 96)
    assert (r["zctx"] is not None) == (model in ("compact-gray-v6", "compact-gray-v7", "compact-gray-v8", "compact-gray-v9", "compact-gray-v10",
                                                  "compact-gray-v13", "compact-gray-v14", "compact-gray-v16"))
    if model in ("compact-gray-v7", "compact-gray-v8", "compact-gray-v9", "compact-gray-v10", "compact-gray-v13",
                 "compact-gray-v14", "compact-gray-v16"):     # narrow tables used, shifted too
        first_of = [r["firsts"][bisect.bisect_right(r["firsts"], i) - 1] for i in range(len(r["values"]))]
        used = [r["table_of"](i, first_of[i], lambda q: r["values"][q]) for i in range(len(r["values"]))]
        assert sum(u >= 64 for u in used) >= (1000 if folder == "compact-narrow" else 1) and len(ytab[1]) == 72
    compact._CACHE.clear()
    # the golden files were written when the encoder repeated the image's last row and column into
    # the padding (this 96 x 64 image is coded as 128 x 64); the padding is the encoder's choice
    # (12.3), and it now fades the edge instead (zoo.compact.pad_faded)
    if folder not in ("compact-gray-v10", "compact-short") + since_v13:         # (written since)
        monkeypatch.setattr(zoo_compact, "pad_faded", zoo_compact.pad_to)
    try:
        an = compact.Analysis(img, model)
        an.use_z(np.asarray(r["z"]).reshape(an.z.shape[1:]))      # the hyper-latent written (maybe searched)
        if r["meta"]["strips"]:     # the encoder's estimates knew the packets of its trials: these
            an._packet_starts = np.asarray(r["firsts"]) // r["M"]
        if r["meta"]["shifts"] and r["meta"]["strips"]:
            # (fitted on the packets of the encoder's trial before the last, which the file does not
            # hold: the RDO's symbols priced with the shifts written)
            shifts = np.asarray(r["shifts"])
            ctx = compact.adapt_context(an.tables.ctx, shifts, an.tables.y_cdf.shape[0])
            sym, _ = an.symbols(r["meta"]["q"], 1.0, ctx)
            assert np.count_nonzero(shifts) > 10
        elif r["meta"]["shifts"]:
            sym, _, _, shifts = an.coded(r["meta"]["q"])
            assert np.array_equal(shifts, r["shifts"]) and np.count_nonzero(shifts) > 10
            # (the gain byte,) the shifts' bytes, then the hyper-latent's code: stream 0 is exactly these
            head = compact.pack_shifts(shifts)
            zb = bits_to_bytes(r["z_bits"], math.ceil(len(r["z_bits"]) / 8))
            gb = b"" if r["gain"] is None else bytes([r["gain"]])
            assert gb + head + zb == streams[0] and len(head) == math.ceil(sum(
                1 if d == 0 else 2 + abs(d) - 1 + (abs(d) < 4) for d in shifts.ravel()) / 8)
        else:
            sym, _ = an.symbols(r["meta"]["q"])
    finally:
        compact._CACHE.clear()
    if folder not in ("compact-gray-v9", "compact-gray-v10", "compact-short") + since_v13:
        assert np.array_equal(sym, r["symbols"])
    else:       # (written after the encoder refines its symbols for the post-filter: steps of one from the RDO's)
        from dnaimg.codecs import refine as rf
        moved = np.abs(np.asarray(r["symbols"]) - sym)
        assert 0 < np.count_nonzero(moved) < 0.05 * moved.size
        assert moved.max() <= rf.ITERS + rf.EXTRA_ITERS + rf.TOP_UP_STEPS


@pytest.mark.parametrize("model", ["compact-gray-v12", "compact-gray-v13"])
def test_lifting_predictors_as_documented(model):
    """12.3's lifting predictors, written from the text alone (numpy, float64): the card's number,
    layers and width, the weights `predict.{l-1}.net.*` of the model's own file, 3 x 3 convolutions
    with padding 1 on 4 times the low band, ReLU after all but the last; dnaimg's predictors give
    the same (where the synthesis adds them: test_compact_wavelet)."""
    from safetensors.numpy import load_file
    models = ROOT / "dnaimg" / "zoo" / "models"
    arch = json.loads((models / f"{model}.json").read_text())["architecture"]
    P, L, W = arch["predict"], arch.get("predict_layers", 3), arch.get("predict_width", 32)
    assert P == 2
    own = load_file(str(models / f"{model}.safetensors"))
    rng = np.random.default_rng(2)
    low = rng.random((20, 28)) - 0.5
    import torch

    from dnaimg.codecs import compact
    m = compact.load(model)[0]
    for lvl in range(P):
        ws = [(own[f"predict.{lvl}.net.{2 * i}.weight"].astype(np.float64),
               own[f"predict.{lvl}.net.{2 * i}.bias"].astype(np.float64)) for i in range(L)]
        assert [w.shape for w, _ in ws] == [(W, 1, 3, 3)] + [(W, W, 3, 3)] * (L - 2) + [(3, W, 3, 3)]
        h = 4 * low[None]
        for k, (w, b) in enumerate(ws):
            p = np.pad(h, ((0, 0), (1, 1), (1, 1)))
            out = np.empty((w.shape[0],) + h.shape[1:])
            for o in range(w.shape[0]):
                out[o] = b[o] + np.einsum("cyx,cyxhw->hw", w[o], np.stack([np.stack(
                    [p[:, dy:dy + h.shape[1], dx:dx + h.shape[2]] for dx in range(3)], 1) for dy in range(3)], 1))
            h = np.maximum(out, 0) if k < L - 1 else out
        with torch.no_grad():
            got = m.predict[lvl](torch.from_numpy(low).float()[None, None])[0, 0].double().numpy()
        assert np.abs(got - h).max() < 1e-4 and np.abs(h).max() > 1e-3


@pytest.mark.parametrize("model,base", [("compact-gray-v7", "compact-gray-v5"), ("compact-gray-v8", "compact-gray-v5"),
                                        ("compact-gray-v9", "compact-gray-v5"), ("compact-gray-v10", "compact-gray-v5"),
                                        ("compact-gray-v14", "compact-gray-v5")])
def test_post_filter_as_documented(model, base):
    """12.3's post-filter, written from the text alone (numpy, float64): the card's layers and
    width, the weights from the model's own file where it holds any (else BASE's), 3 x 3
    convolutions with padding 1, ReLU after all but the last, on the 2 x 2 blocks of `a` as 4
    channels; dnaimg's post-filter gives the same `x`."""
    from safetensors.numpy import load_file
    models = ROOT / "dnaimg" / "zoo" / "models"
    card = json.loads((models / f"{model}.json").read_text())
    L, W = card["architecture"].get("post_layers", 3), card["architecture"].get("post_width", 32)
    own = load_file(str(models / f"{model}.safetensors"))
    src = own if any(k.startswith("g_s.post.") for k in own) else load_file(str(models / f"{base}.safetensors"))
    ws = [(src[f"g_s.post.net.{2 * i}.weight"].astype(np.float64), src[f"g_s.post.net.{2 * i}.bias"].astype(np.float64))
          for i in range(L)]
    assert [w.shape for w, _ in ws] == [(W, 4, 3, 3)] + [(W, W, 3, 3)] * (L - 2) + [(4, W, 3, 3)]
    rng = np.random.default_rng(1)
    a = rng.random((40, 56)) - 0.5
    h = np.stack([a[i::2, j::2] for i in range(2) for j in range(2)])        # channel 2i + j
    for k, (w, b) in enumerate(ws):
        p = np.pad(h, ((0, 0), (1, 1), (1, 1)))
        out = np.empty((w.shape[0],) + h.shape[1:])
        for o in range(w.shape[0]):
            out[o] = b[o] + sum(w[o, c, dy, dx] * p[c, dy:dy + h.shape[1], dx:dx + h.shape[2]]
                                for c in range(w.shape[1]) for dy in range(3) for dx in range(3))
        h = np.maximum(out, 0) if k < L - 1 else out
    x = a.copy()
    for i in range(2):
        for j in range(2):
            x[i::2, j::2] += h[2 * i + j]
    import torch

    from dnaimg.codecs import compact
    post = compact.load(model)[0].g_s.post
    with torch.no_grad():
        got = post(torch.from_numpy(a).float()[None, None])[0, 0].double().numpy()
    assert np.abs(got - x).max() < 1e-5 and np.abs(x - a).max() > 1e-3
    # the post-filter gain (metadata versions 5 and 6): a + (g / 32) times the residual; g = 0: a
    for g in (0, 16, 43, 255):
        with torch.no_grad():
            got = post(torch.from_numpy(a).float()[None, None], g / 32)[0, 0].double().numpy()
        assert np.abs(got - (a + g / 32 * (x - a))).max() < 1e-5 * max(1, g / 32)
        if g == 0:
            assert np.array_equal(got, a.astype(np.float32).astype(np.float64))
