"""Does a marker code pay for its nucleotides?  (Issue 12, item 3: known pilot bases at fixed
intervals in the robust codec's words payload, as in Wang 2012's concatenated marker codes, so
that the codeword resync can find insertions and deletions.)  Numbers for the notes; not a test,
and not a format: markers are written only here.

    python -m dnaimg.bench.markers IMAGE... [--coverages 1,2,3,5,10] [--layouts 0:0,4:2,8:2]
        [--points cae32-mr:r050,cae32-mr:r066] [--seeds 0] [--json out.json]

A layout ``K:m`` puts ``m`` marker nucleotides after every ``K`` codewords (``0:0``: none, the
format as written today).  Per image, operating point, layout, coverage and seed, every data
oligo's payload is written as the container writes it (whitened codewords; markers in between),
its reads are drawn as the ``nanopore`` preset draws them (reads per oligo, 2 % of the oligos
lost, per-read rates, errors in homopolymer runs), and decoded by the rules of
:func:`dnaimg.dna.container.words_values`: from 3 reads the nucleotide consensus, with 1-2 reads
each read on its own; then the resynchronising codeword decoder, here with the markers as
segments of known nucleotides (with no markers it is the decoder of the format); then the
unsure-values rule (``--policy``: ``erase``, every value (the rule before the trusted ends); ``keep``, what the resync gives;
``blocks`` = ``ends``, erase only what the format does not trust: outside trusted marker blocks, or
without markers outside the trusted ends of the payload).
Erased values are filled as the robust codec fills them and the image is synthesised.

What it leaves out, the same for every layout: the primers and index (the reads are filed to
their oligo and cut to the payload, as the index decoder and the payload rescue do when they
succeed), the header, and end-of-read error boosts (the payload lies in the middle of the oligo).
Rates: total nt/px = (data oligos + 12 header oligos) x oligo length / pixels, the container's
count for the robust codec without an outer code.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dnaimg.dna.words import _resync_segments, _trusted_blocks
from dnaimg.image import psnr

HEADER_OLIGOS = 12
MARKERS = np.array([[0, 1, 2], [2, 3, 0], [1, 0, 3], [3, 2, 1]], dtype=np.uint8)   # ACG, GTA, CAT, TGC in turn
# (the first m of each; with m = 2 the format's AC, GT, CA, TG of a scrambling seed 0)


def segments(payload_nt: int, n: int, K: int, m: int):
    """Segment starts, kinds and codeword count of one payload with ``m`` marker nt after every ``K``
    codewords (``K = 0``: none), by the format's rule (:func:`dnaimg.dna.words.segments`)."""
    from dnaimg.dna.words import segments as fmt_segments
    return fmt_segments(payload_nt, n, K > 0, every=K or None, marker_nt=max(m, 1))


def oligo_values(reads, seg, keys, marker_nt, payload_nt, rep, policy):
    """Values of one oligo from its payload reads (-1 = erased), by the rules of the format's words
    decoder.  ``policy`` for reads with indels, where the format erases (1-2 reads: every value;
    a consensus with 2+ repaired codewords: from the first on): "erase" (every value; the slipped
    consensus from its first repair on: the format's rule before the trusted ends), "keep" (keep
    what the resync gives), "blocks" or "ends" (the same: the format's rule, erase only what
    :func:`dnaimg.dna.words._trusted_blocks` does not trust: trusted marker blocks, or without
    markers the trusted ends of the payload)."""
    from dnaimg.dna.consensus import consensus_packed, pack
    from dnaimg.dna.container import FEW_READS, UNSURE_REPAIRS
    from dnaimg.dna.prng import SIGMAS_INV
    from dnaimg.dna.words import RESYNC_DRIFT, RESYNC_INDEL_COST
    starts, mark, count = seg
    cw = mark == 0

    def trust(bad, drift, read_len):
        return _trusted_blocks(bad, drift, mark, read_len - payload_nt)

    def one(read):
        v, b, d = _resync_segments(read, rep.n, starts, mark, keys, marker_nt, payload_nt, SIGMAS_INV, rep.table,
                                   rep.dist, RESYNC_INDEL_COST, RESYNC_DRIFT)
        return v, b, d, len(read)

    m = len(reads)
    if m == 0:
        return np.full(count, -1, dtype=np.int64)
    indel = any(len(r) != payload_nt for r in reads)
    if m > FEW_READS:
        flat, offs = pack(reads)
        v, b, d, ln = one(consensus_packed(flat, offs, payload_nt))
        vc, bc = v[cw].copy(), b[cw]
        if indel and bc.sum() >= UNSURE_REPAIRS:
            if policy in ("blocks", "ends"):
                vc[~trust(b, d, ln)[cw]] = -1
            elif policy == "erase":
                vc[np.argmax(bc):] = -1
        return vc
    outs = [one(r) for r in reads[:2]]
    if m == 1:
        v, b, d, ln = outs[0]
        vc = v[cw].copy()
        keep = trust(b, d, ln)[cw]
    else:
        (v1, b1, d1, l1), (v2, b2, d2, l2) = outs
        vc = np.where(b1[cw] & ~b2[cw], v2[cw], v1[cw])
        k1, k2 = trust(b1, d1, l1)[cw], trust(b2, d2, l2)[cw]
        vc = np.where(~k1 & k2, v2[cw], vc)
        keep = k1 | k2
    if indel and policy == "erase":
        return np.full(count, -1, dtype=np.int64)
    if indel and policy in ("blocks", "ends"):
        vc[~keep] = -1
    return vc


def channel_values(symbols_flat, levels, n, layout, seg, coverage, dropout, seed, policy, tag=7, channel="nanopore"):
    """The symbols (stream order) after writing, the channel (a preset) and reading; -1 = erased."""
    from dnaimg.dna.channel import _corrupt_profiled, preset, reads_per_oligo
    from dnaimg.dna.codebook import get_codebook
    from dnaimg.dna.prng import interleaver, whiten, whitening_keys
    starts, mark, count = seg
    first_marker = np.flatnonzero(mark == 1)
    M = int(starts[first_marker[0] + 1] - starts[first_marker[0]]) if len(first_marker) else 1
    lens = np.where(mark == 1, M, n)
    cb = get_codebook(n, levels)
    total = symbols_flat.size
    N = -(-total // count)
    perm = interleaver(total, 12345)
    slots = np.empty(N * count, dtype=np.int64)
    slots[:total] = symbols_flat[perm]
    slots[total:] = np.arange(N * count - total) % levels
    ch = preset(channel, coverage=coverage, dropout=dropout)
    rng = np.random.default_rng(seed)
    nreads = reads_per_oligo(N, ch, rng)
    P = layout.payload_nt
    marker_nt = np.zeros((len(starts), M), dtype=np.uint8)
    mi = 0
    for s in range(len(starts)):
        if mark[s]:
            marker_nt[s] = MARKERS[mi % 4, :M]
            mi += 1
    out_vals = np.full(N * count, -1, dtype=np.int64)
    for k in range(N):
        vals = slots[k * count:(k + 1) * count]
        keys = whitening_keys(tag, k, 0, count)
        body = whiten(cb.words[vals].reshape(-1), n, keys)
        payload = rng.integers(0, 4, P).astype(np.uint8)
        wk = np.zeros(len(starts), dtype=np.int64)
        j = 0
        for s in range(len(starts)):
            a = starts[s]
            if mark[s]:
                payload[a:a + lens[s]] = marker_nt[s, :lens[s]]
            else:
                payload[a:a + n] = body[j * n:(j + 1) * n]
                wk[s] = keys[j]
                j += 1
        r = int(nreads[k])
        if r == 0:
            continue
        olig = payload[None, :]
        buf = np.zeros((r, 2 * P + 16), dtype=np.uint8)
        blen = np.zeros(r, dtype=np.int64)
        _corrupt_profiled(olig, np.array([P]), np.zeros(r, dtype=np.int64), np.zeros(r, dtype=np.bool_),
                          ch.sub, ch.ins, ch.dels, ch.long_del, 0.0, ch.end_len, ch.homopolymer, ch.dup_ins,
                          ch.read_spread, int(rng.integers(1 << 30)), buf, blen)
        reads = [buf[i, :blen[i]].copy() for i in range(r)]
        out_vals[k * count:(k + 1) * count] = oligo_values(reads, seg, wk, marker_nt, P, cb.repairer, policy)
    got = np.full(total, -1, dtype=np.int64)
    got[perm] = out_vals[:total]
    return got, N


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--points", default="cae32-mr:r050,cae32-mr:r066")
    ap.add_argument("--layouts", default="0:0,4:2,8:2")
    ap.add_argument("--coverages", default="1,2,3,5,10")
    ap.add_argument("--dropout", type=float, default=0.02)
    ap.add_argument("--preset", default="nanopore", help="channel preset (the reads' error profile)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--policy", default="ends", choices=["erase", "keep", "blocks", "ends"],
                    help="values from reads with indels: erase them all, keep them, or erase only what the "
                         "format does not trust (blocks = ends)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import torch

    from dnaimg.codecs.robust import fill_erasures, reconstruct, to_tensor
    from dnaimg.dna.container import Layout
    from dnaimg.zoo.registry import load_model, select_point
    layout = Layout()
    layouts = [tuple(int(x) for x in s.split(":")) for s in a.layouts.split(",")]
    rows = []
    for path in a.images:
        img = np.asarray(Image.open(path).convert("RGB"))
        H, W = img.shape[:2]
        for spec in a.points.split(","):
            point = select_point(spec, None, False)
            net, _ = load_model(point.model)
            with torch.no_grad():
                sym = net.compress(to_tensor(img), point.levels, point.channels)[0].numpy().astype(np.int64)
            clean = psnr(reconstruct(sym, point.model, (H, W), point.levels), img)
            centre = (point.levels - 1) // 2
            for K, m in layouts:
                seg = segments(layout.payload_nt, point.codeword_nt, K, m)
                for cov in [float(c) for c in a.coverages.split(",")]:
                    for seed in [int(s) for s in a.seeds.split(",")]:
                        got, N = channel_values(sym.reshape(-1), point.levels, point.codeword_nt, layout, seg, cov,
                                                a.dropout, seed, a.policy, channel=a.preset)
                        erased = (got < 0).reshape(sym.shape)
                        wrong = (~erased) & (got.reshape(sym.shape) != sym)
                        s2 = np.where(erased, centre, got.reshape(sym.shape))
                        if erased.any():
                            s2 = fill_erasures(s2, erased, centre)
                        p = psnr(reconstruct(s2, point.model, (H, W), point.levels), img)
                        rows.append({"image": Path(path).name, "point": point.label, "K": K, "m": m,
                                     "codewords_per_oligo": seg[2], "coverage": cov, "seed": seed,
                                     "total_nt_per_pixel": (N + HEADER_OLIGOS) * layout.oligo_length / (H * W),
                                     "clean_psnr": clean, "psnr": p, "erased": float(erased.mean()),
                                     "wrong": float(wrong.mean())})
                        print(json.dumps(rows[-1]), flush=True)
    summary = []
    keys = sorted({(r["point"], r["K"], r["m"], r["coverage"]) for r in rows})
    for key in keys:
        sel = [r for r in rows if (r["point"], r["K"], r["m"], r["coverage"]) == key]
        summary.append({"point": key[0], "K": key[1], "m": key[2], "coverage": key[3], "runs": len(sel),
                        "total_nt_per_pixel": float(np.mean([r["total_nt_per_pixel"] for r in sel])),
                        "clean_psnr": float(np.mean([r["clean_psnr"] for r in sel])),
                        "psnr": float(np.mean([r["psnr"] for r in sel])),
                        "erased": float(np.mean([r["erased"] for r in sel])),
                        "wrong": float(np.mean([r["wrong"] for r in sel]))})
        print(json.dumps(summary[-1]))
    if a.json:
        Path(a.json).write_text(json.dumps({"policy": a.policy, "dropout": a.dropout, "rows": rows,
                                            "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
