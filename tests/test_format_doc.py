"""An independent reader written from docs/FORMAT.md alone.

Nothing of dnaimg's decoding code is imported: ``dnaimg.api`` is used only to *write* oligos,
``reedsolo`` only to fill erasures of the outer code.  Everything else (GF arithmetic, the
index, the pseudo-random functions, the codeword tables, payloads, header) follows the text of
FORMAT.md, section by section; the codeword tables are read from the document itself.  If a
test here fails, either the document or this reader is wrong (the code is the reference).
"""
from __future__ import annotations

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
    assert d[:2] == b"DN"
    version, n = d[2], d[3]
    assert 8 <= n <= len(d)
    assert zlib.crc32(d[:n - 4]) == struct.unpack_from("<I", d, n - 4)[0]
    assert version == 2
    codec, image_id, olen, pf, pr, S, m = struct.unpack_from("<BIHBBBB", d, 4)
    assert 15 + 28 * S + m + 4 == n and S >= 1
    streams = []
    for i in range(S):
        f = struct.unpack_from("<BIIIBHIBHBI", d, 15 + 28 * i)
        streams.append(dict(zip(["kind", "first", "n_data", "length", "n", "levels", "key", "inner",
                                 "blocks", "parity", "crc"], f)))
    meta = bytes(d[15 + 28 * S:15 + 28 * S + m])
    return {"version": 2, "codec": codec, "image_id": image_id, "oligo_length": olen, "pf": pf, "pr": pr,
            "streams": streams, "meta": meta}


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


def read_words_stream(olis, tag, st, payload_nt, table, drop=()):
    """Sections 7.4, 7.5, 9 and 10.3: -> values in stream order."""
    n, levels, total = st["n"], st["levels"], st["length"]
    assert len(table) == levels and all(len(w) == n for w in table)
    lookup = {w: v for v, w in enumerate(table)}
    V = payload_nt // n
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
        rows.append([lookup[unwhiten(payload[j * n:(j + 1) * n], keys[j])] for j in range(V)])
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
