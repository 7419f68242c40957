"""Speed and accuracy of the DNA layer (not a test: numbers for the README and issue notes).

    python -m dnaimg.bench.speed            # repair, consensus, one Kodak image, all of Kodak
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _rate(fn, items, repeat=3):
    fn()  # warm up / compile
    best = min(_timed(fn) for _ in range(repeat))
    return items / best, best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_repair(n_words=1_000_000):
    from dnaimg.dna.codebook import get_codebook
    from dnaimg.dna.repair import repair_direct, repair_numpy, repair_with_table
    rows = []
    rng = np.random.default_rng(0)
    for n, L in [(2, 9), (3, 17), (4, 65)]:
        cb = get_codebook(n, L)
        rec = rng.integers(0, 4, (n_words, n)).astype(np.uint8)
        flat = rec.reshape(-1)
        t_rate, _ = _rate(lambda: repair_with_table(flat, n, cb.repairer.table), n_words)
        d_rate, _ = _rate(lambda: repair_direct(flat, n, cb.words), n_words)
        sub = rec[:100_000]
        np_rate, _ = _rate(lambda: repair_numpy(sub, cb.words), len(sub), repeat=2)
        assert np.array_equal(repair_numpy(sub, cb.words), repair_with_table(sub.reshape(-1), n, cb.repairer.table))
        rows.append({"n": n, "levels": L, "table_words_per_s": t_rate, "direct_words_per_s": d_rate,
                     "numpy_words_per_s": np_rate, "speedup_table_vs_numpy": t_rate / np_rate})
    return rows


def bench_consensus(n_oligos=300, reads=10):
    from dnaimg.dna.channel import preset, simulate
    from dnaimg.dna.consensus import consensus_arrays
    out = []
    rng = np.random.default_rng(1)
    oligos = [rng.integers(0, 4, 200).astype(np.uint8) for _ in range(n_oligos)]
    for name in ["nanopore", "nextseq"]:
        for cov in [5, 10, 20] if name == "nanopore" else [reads]:
            ch = preset(name, coverage=cov, exact_coverage=True, sigma=0.0, reverse_fraction=0.0)
            rs, which, _ = simulate(oligos, ch, seed=2)
            groups = [[] for _ in range(n_oligos)]
            for r, k in zip(rs, which):
                groups[k].append(r)
            consensus_arrays(groups[0], 200)
            t = time.perf_counter()
            exact = sum(np.array_equal(consensus_arrays(g, 200), o) for g, o in zip(groups, oligos))
            dt = time.perf_counter() - t
            out.append({"preset": name, "reads_per_oligo": cov, "exact_fraction": exact / n_oligos,
                        "ms_per_oligo": 1e3 * dt / n_oligos})
    return out


def bench_image(path):
    from dnaimg.dna.channel import Channel, simulate
    from dnaimg.codecs.robust import decode_reads, encode_image, reconstruct
    from dnaimg.image import load_image, psnr
    encode_image(path)  # warm up (model load, numba compile)
    t = time.perf_counter()
    enc = encode_image(path)
    t_enc = time.perf_counter() - t
    orig = load_image(path)
    ref = reconstruct(enc.symbols, enc.model, orig.shape[:2], enc.params.levels)
    t = time.perf_counter()
    clean = decode_reads(enc.oligos)
    t_dec_clean = time.perf_counter() - t
    reads, _, _ = simulate(enc.oligos, Channel(sub=0.01, ins=0.005, dels=0.005, coverage=10), seed=0)
    t = time.perf_counter()
    noisy = decode_reads(reads)
    t_dec_noisy = time.perf_counter() - t
    return {"image": str(path), "encode_s": t_enc, "decode_clean_s": t_dec_clean,
            "decode_noisy_s": t_dec_noisy, "noisy_reads": len(reads),
            "psnr_model": psnr(orig, ref), "psnr_clean_dna": psnr(orig, clean.image),
            "psnr_noisy_dna": psnr(orig, noisy.image), **enc.rates()}


def bench_kodak(folder):
    """Encode and decode wall time of every image of ``folder`` (one after another, as a user would
    run them): from the oligos as written and from nextseq reads at coverage 10."""
    from dnaimg.dna.channel import preset, simulate
    from dnaimg.codecs.robust import decode_reads, encode_image
    from dnaimg.image import load_image, psnr
    paths = sorted(Path(folder).glob("*.png"))
    encode_image(paths[0])   # warm up
    rows = []
    for p in paths:
        t = time.perf_counter()
        enc = encode_image(p)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        clean = decode_reads(enc.oligos)
        t_clean = time.perf_counter() - t
        reads, _, _ = simulate(enc.oligos, preset("nextseq", coverage=10), seed=0)
        t = time.perf_counter()
        noisy = decode_reads(reads)
        t_noisy = time.perf_counter() - t
        orig = load_image(p)
        rows.append({"image": p.name, "encode_s": t_enc, "decode_oligos_s": t_clean, "decode_reads_s": t_noisy,
                     "reads": len(reads), "psnr_oligos": psnr(orig, clean.image), "psnr_reads": psnr(orig, noisy.image)})
    tot = {k: sum(r[k] for r in rows) for k in ("encode_s", "decode_oligos_s", "decode_reads_s", "reads")}
    return {"images": len(rows), "rows": rows, "total": tot,
            "mean": {k: v / len(rows) for k, v in tot.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=str(Path(__file__).resolve().parents[3] / "shared/data/kodak/kodim23.png"))
    ap.add_argument("--kodak", default=str(Path(__file__).resolve().parents[3] / "shared/data/kodak"),
                    help="folder of images timed one by one (encode, decode from oligos and from reads)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    a = ap.parse_args(argv)
    res = {"repair": bench_repair(), "consensus": bench_consensus()}
    print("| n | levels | lookup table (words/s) | direct search (words/s) | numpy brute force (words/s) | table / numpy |")
    print("|---|---|---|---|---|---|")
    for r in res["repair"]:
        print(f"| {r['n']} | {r['levels']} | {r['table_words_per_s']:.3g} | {r['direct_words_per_s']:.3g} | "
              f"{r['numpy_words_per_s']:.3g} | {r['speedup_table_vs_numpy']:.0f}x |")
    print()
    print("| channel | reads/oligo | oligos rebuilt exactly | ms/oligo |")
    print("|---|---|---|---|")
    for r in res["consensus"]:
        print(f"| {r['preset']} | {r['reads_per_oligo']} | {r['exact_fraction']:.1%} | {r['ms_per_oligo']:.2f} |")
    if Path(a.image).exists():
        res["image"] = bench_image(a.image)
        r = res["image"]
        print()
        print(f"{Path(r['image']).name}: encode {r['encode_s']:.2f} s; decode {r['decode_clean_s']:.2f} s from the "
              f"{r['oligos']} oligos, {r['decode_noisy_s']:.2f} s from {r['noisy_reads']} reads "
              f"(1 % sub, 0.5 % ins, 0.5 % del, coverage 10); PSNR {r['psnr_model']:.2f} dB model, "
              f"{r['psnr_clean_dna']:.2f} dB via DNA, {r['psnr_noisy_dna']:.2f} dB via noisy reads")
    if Path(a.kodak).is_dir() and any(Path(a.kodak).glob("*.png")):
        res["kodak"] = k = bench_kodak(a.kodak)
        m, t = k["mean"], k["total"]
        print()
        print(f"{k['images']} images of {a.kodak}: encode {m['encode_s']:.2f} s per image ({t['encode_s']:.1f} s in all); "
              f"decode {m['decode_oligos_s']:.2f} s from the oligos ({t['decode_oligos_s']:.1f} s), "
              f"{m['decode_reads_s']:.2f} s from {m['reads']:.0f} nextseq reads at coverage 10 ({t['decode_reads_s']:.1f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
