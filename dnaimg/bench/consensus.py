"""Accuracy of the read consensus (:func:`dnaimg.dna.consensus.consensus_packed`): % of oligos
rebuilt exactly from the first 5, 10, ... or all reads of their cluster (numbers for the notes;
not a test).

    python -m dnaimg.bench.consensus --simulate 2000 [--preset nanopore] [--length 110] [--coverage 27]
    python -m dnaimg.bench.consensus --clusters Clusters.txt [--centers Centers.txt] [--limit 2000]

``--clusters``: reads in the layout of the Microsoft "Clustered Nanopore Reads" data set
(Srinivasavaradhan et al., ISIT 2021): one read a line, clusters separated by lines of "=",
in the order of the centres (``--centers``, default ``Centers.txt`` beside it).  Empty clusters
are left out; a cluster with fewer reads than asked uses all it has.  The data set is never
part of this repository: give its path.  ``--simulate N``: N random oligos through the
simulator's preset (one strand, exactly ``--coverage`` reads each).  Keep real data for
evaluation: tune on simulated clusters only.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def read_cnr(clusters: str | Path, centers: str | Path | None = None, limit: int | None = None):
    """(centres, clusters) of a CNR-layout data set, as uint8 arrays; empty clusters dropped."""
    from dnaimg.dna import alphabet as dna
    clusters = Path(clusters)
    centers = Path(centers) if centers else clusters.with_name("Centers.txt")
    cs = [line.strip() for line in centers.read_text().splitlines() if line.strip()]
    groups, cur = [], []
    with open(clusters) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("="):
                groups.append(cur)
                cur = []
            else:
                cur.append(line)
    if cur:
        groups.append(cur)
    if groups and not groups[0] and len(groups) == len(cs) + 1:   # a separator before the first cluster
        groups = groups[1:]
    if len(groups) != len(cs):
        raise ValueError(f"{len(groups)} clusters for {len(cs)} centres: not the CNR layout?")
    out_c, out_g = [], []
    for c, g in zip(cs, groups):
        if g:
            out_c.append(dna.encode(c))
            out_g.append([dna.encode(r) for r in g])
        if limit and len(out_c) >= limit:
            break
    return out_c, out_g


def simulated(n: int, preset_name: str = "nanopore", length: int = 110, coverage: int = 27, seed: int = 0):
    from dnaimg.dna.channel import preset, simulate
    rng = np.random.default_rng(seed)
    oligos = [rng.integers(0, 4, length).astype(np.uint8) for _ in range(n)]
    ch = preset(preset_name, coverage=coverage, exact_coverage=True, sigma=0.0, reverse_fraction=0.0)
    reads, which, _ = simulate(oligos, ch, seed=seed + 1)
    groups = [[] for _ in range(n)]
    for r, k in zip(reads, which):
        groups[k].append(r)
    return oligos, groups


def measure(centers, groups, counts: list[int | None]) -> dict:
    """% exact and time per reads-per-cluster setting (``None``: all reads)."""
    from dnaimg.dna.consensus import consensus_packed, pack
    consensus_packed(*pack(groups[0][:3]), len(centers[0]))      # compile outside the timing
    res = {}
    for k in counts:
        t = time.perf_counter()
        exact = 0
        errors = 0
        for c, g in zip(centers, groups):
            est = consensus_packed(*pack(g if k is None else g[:k]), len(c))
            d = int((est != c).sum())
            exact += d == 0
            errors += d
        dt = time.perf_counter() - t
        res["all" if k is None else str(k)] = {"exact_pct": 100.0 * exact / len(centers),
                                               "hamming_per_nt": errors / sum(len(c) for c in centers),
                                               "ms_per_cluster": 1000 * dt / len(centers)}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--clusters", help="CNR-layout clusters file (Clusters.txt)")
    src.add_argument("--simulate", type=int, metavar="N", help="N simulated clusters")
    ap.add_argument("--centers", default=None, help="the centres (default: Centers.txt beside --clusters)")
    ap.add_argument("--limit", type=int, default=None, help="the first N non-empty clusters only")
    ap.add_argument("--reads", default="5,10,all", help="reads per cluster to use, comma-separated")
    ap.add_argument("--preset", default="nanopore")
    ap.add_argument("--length", type=int, default=110)
    ap.add_argument("--coverage", type=int, default=27)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    counts = [None if x.strip() == "all" else int(x) for x in a.reads.split(",")]
    if a.clusters:
        centers, groups = read_cnr(a.clusters, a.centers, a.limit)
        what = f"{a.clusters} ({len(centers)} non-empty clusters)"
    else:
        centers, groups = simulated(a.simulate, a.preset, a.length, a.coverage, a.seed)
        what = f"simulated {a.preset}, {a.simulate} oligos of {a.length} nt, {a.coverage} reads each, seed {a.seed}"
    sizes = np.array([len(g) for g in groups])
    res = {"data": what, "median_reads": float(np.median(sizes)), "results": measure(centers, groups, counts)}
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
