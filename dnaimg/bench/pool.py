"""A pool at scale: many photographs, millions of reads, one process against a local Dask cluster
(numbers for the README; not a test).

    python -m dnaimg.bench.pool --images DIR --limit 100 --reads 10000000 --workers 2 \\
        --work /tmp/dnaimg-pool --out docs/results/pool_10M.json

Steps, each timed: encode the first ``--limit`` images of DIR as one pool (robust codec, 15 %
outer code, ``dnaimg encode``); simulate ``--reads`` nextseq reads of it to FASTQ (``dnaimg
simulate``, the coverage that gives that many reads); decode them with ``dnaimg decode -o
DIR/`` in one process, then with ``--workers N`` (each once, in a fresh process; the peak
memory of the process tree is sampled every 0.2 s); check that both wrote the same files, byte
for byte, and that every image is exact.  ``--skip-encode``/``--skip-simulate`` reuse the files
of an earlier run in ``--work``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def _tree_rss(proc) -> tuple[int, int]:
    """(total RSS of a process and its descendants, largest single RSS), bytes."""
    import psutil
    try:
        ps = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    rss = []
    for p in ps:
        try:
            rss.append(p.memory_info().rss)
        except psutil.Error:
            pass
    return sum(rss), max(rss, default=0)


def run(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` (nice 10), sampling the memory of its process tree; wall time and peaks."""
    import psutil
    t0 = time.perf_counter()
    with open(log, "w") as out:
        p = subprocess.Popen(["nice", "-n", "10", *cmd], stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(p.pid)
        peak = [0, 0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                tot, one = _tree_rss(proc)
                peak[0], peak[1] = max(peak[0], tot), max(peak[1], one)
                stop.wait(0.2)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = p.wait()
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}): see {log}")
    return {"seconds": round(wall, 1), "peak_rss_total_mb": round(peak[0] / 2 ** 20), "peak_rss_one_process_mb":
            round(peak[1] / 2 ** 20), "command": " ".join(cmd)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--reads", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--codec", default="robust")
    ap.add_argument("--redundancy", default="0.15")
    ap.add_argument("--work", default="/tmp/dnaimg-pool")
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--skip-simulate", action="store_true")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    dnaimg = str(Path(sys.executable).with_name("dnaimg"))
    res = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "images_dir": a.images,
           "limit": a.limit, "codec": a.codec, "redundancy": float(a.redundancy)}
    src = work / "src"
    fasta, reads = work / "pool.fasta", work / "reads.fastq"
    if not a.skip_encode:
        import shutil
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:a.limit]
        for p in files:
            (src / p.name).symlink_to(p.resolve())
        res["encode"] = run([dnaimg, "encode", str(src), "-o", str(fasta), "--codec", a.codec, "--redundancy",
                             a.redundancy, "-q"], work / "encode.log")
    man = json.loads((work / "pool.manifest.json").read_text())
    n_oligos = man["oligos"]
    res["pool"] = {"images": len(man["images"]), "oligos": n_oligos,
                   "pixels": sum(e["rates"].get("pixels", 0) for e in man["images"]),
                   "primers": man["primers"]}
    coverage = a.reads / n_oligos
    if not a.skip_simulate:
        res["simulate"] = run([dnaimg, "simulate", str(fasta), "-o", str(reads), "--preset", "nextseq",
                               "--coverage", f"{coverage:.4f}", "--seed", "1"], work / "simulate.log")
    res["reads"] = {"file": str(reads), "bytes": reads.stat().st_size, "coverage": round(coverage, 2)}
    outs = {}
    for label, extra in [("single_process", []), (f"local_cluster_{a.workers}_workers", ["--workers", str(a.workers)])]:
        out = work / f"out_{label}"
        import shutil
        shutil.rmtree(out, ignore_errors=True)
        log = work / f"decode_{label}.json"
        r = run([dnaimg, "decode", str(reads), "-o", f"{out}/", "--json", "-q", *extra], log)
        rep = json.loads(log.read_text()[log.read_text().index("{"):])
        r.update({"timing_s": rep["timing_s"], "reads": {k: v for k, v in rep["reads"].items()
                                                         if k != "reads_per_image"},
                  "images": len(rep["images"]), "exact": sum(d["exact"] for d in rep["images"]),
                  "refused": len(rep["refused"])})
        res[label] = r
        outs[label] = out
    a_dir, b_dir = outs.values()
    names = sorted(p.name for p in a_dir.iterdir())
    res["identical_files"] = names == sorted(p.name for p in b_dir.iterdir()) and all(
        (a_dir / n).read_bytes() == (b_dir / n).read_bytes() for n in names)
    res["files"] = len(names)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
