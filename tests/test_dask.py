"""Scale-out on Dask: a local 2-worker cluster decodes a pool to exactly what one process does.
Also: byte ranges of a read file give every record once (what the cluster's tasks read)."""
import gzip
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from dnaimg import pool
from dnaimg.dna import alphabet as dna
from dnaimg.dna.channel import preset, simulate
from dnaimg.dna.distributed import dask_client, decode_images_dask
from dnaimg.dna.pool import decode_images, pairs_for, sort_pool
from dnaimg.dna.seqio import ReadBatches, byte_ranges, iter_sequences, write_fastq

from test_pool import EXAMPLE
from helpers import cli


def run(*args):
    return cli(*args, debug=True)


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """A pool of four images in two primer pairs (robust and png), nextseq reads at 6x."""
    d = tmp_path_factory.mktemp("dask")
    base = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    for i, (y, x) in enumerate([(0, 0), (30, 40), (60, 80), (90, 120)]):
        Image.fromarray(np.ascontiguousarray(base[y:y + 40, x:x + 56])).save(d / f"p{i}.png")
    paths = [d / f"p{i}.png" for i in range(4)]
    e1 = pool.encode_pool(paths[:2], codec="robust", redundancy=0.3, group_size=2, pool_id=7)
    pool.write_pool(e1, d / "a.fasta")
    e2 = pool.encode_pool(paths[2:], codec="png", redundancy=0.3, append=d / "a.fasta")
    pool.write_pool(e2, d / "pool.fasta")
    oligos = [dna.encode(s) for s in iter_sequences(d / "pool.fasta")]
    r, _, _ = simulate(oligos, preset("nextseq", coverage=6), seed=2)
    fq = d / "reads.fastq"
    write_fastq(fq, ((f"r{i}", dna.decode(x), "I" * len(x)) for i, x in enumerate(r)))
    with open(fq, "rb") as f, gzip.open(d / "reads.fastq.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    return d


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as c:
        yield c


def _same(a, b):
    assert [r.key for r in a] == [r.key for r in b]
    for x, y in zip(a, b):
        assert x.header == y.header and x.report == y.report and x.error == y.error
        assert (x.received is None) == (y.received is None)
        for p, q in zip(x.received or [], y.received or []):
            assert p.kind == q.kind and p.exact == q.exact and p.report == q.report
            if p.kind == "bytes":
                assert p.data == q.data
            else:
                assert np.array_equal(p.data, q.data) and np.array_equal(p.erased, q.erased)


def test_cluster_gives_what_one_process_gives(reads, client):
    pairs = pairs_for()
    ps = sort_pool(ReadBatches(reads / "reads.fastq"), pairs)
    one = decode_images(ps, adapt=pool.v1_header)
    assert [(r.pair, r.name) for r in one] == [(0, "p0.png"), (0, "p1.png"), (1, "p2.png"), (1, "p3.png")]
    assert all(r.received and all(s.exact for s in r.received) for r in one)
    size = (reads / "reads.fastq").stat().st_size
    assert len(byte_ranges(reads / "reads.fastq", size // 7)) >= 7
    for path, rb in [("reads.fastq", size // 7), ("reads.fastq.gz", 1 << 26)]:
        got, stats = decode_images_dask(client, [reads / path], pairs, adapt=pool.v1_header, range_bytes=rb)
        _same(one, got)
        assert stats == ps.read_stats()
    got, _ = decode_images_dask(client, [reads / "reads.fastq"], pairs, only="p2", range_bytes=size // 3)
    assert [(r.name, r.skipped, r.received is not None) for r in got] == [
        ("p0.png", True, False), ("p1.png", True, False), ("p2.png", False, True), ("p3.png", True, False)]


def test_workers_flag_writes_byte_identical_files(reads, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = run("decode", reads / "reads.fastq", "-o", f"{a}/", "-q", "--strict")
    assert r.exit_code == 0, r.output
    r = run("decode", reads / "reads.fastq", "-o", f"{b}/", "-q", "--strict", "--workers", "2")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in a.iterdir())
    assert names == ["p0.png", "p1.png", "p2.png", "p3.png"] == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes()
    r = run("decode", reads / "reads.fastq", "-o", tmp_path / "x.png", "--workers", "2", "--scheduler", "tcp://x:1")
    assert r.exit_code == 1 and "give one of them" in r.output


@pytest.mark.slow          # (heavy: the default suite keeps to about ten minutes on a fresh clone)
def test_scheduler_flag_joins_a_running_cluster(reads, client, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = run("decode", reads / "reads.fastq.gz", "-o", f"{a}/", "-q", "--only", "p3")
    assert r.exit_code == 0, r.output
    r = run("decode", reads / "reads.fastq.gz", "-o", f"{b}/", "-q", "--only", "p3", "--scheduler",
            client.scheduler.address)
    assert r.exit_code == 0, r.output
    assert [p.name for p in b.iterdir()] == ["p3.png"] and (a / "p3.png").read_bytes() == (b / "p3.png").read_bytes()
    r = run("decode", reads / "reads.fastq", "-o", f"{b}/", "--scheduler", "tcp://127.0.0.1:1")
    assert r.exit_code == 1 and "cannot reach the Dask scheduler" in r.output


def _records(path, **kw):
    return [bytes(f[o[i]:o[i + 1]]) for f, o in ReadBatches(path, **kw) for i in range(len(o) - 1)]


@pytest.mark.parametrize("fmt", ["fastq", "fasta"])
def test_byte_ranges_give_every_record_once(tmp_path, fmt):
    rnd = random.Random(5)
    p = tmp_path / f"t.{fmt}"
    with open(p, "w") as f:
        for i in range(400):
            seq = "".join(rnd.choice("ACGTN") for _ in range(rnd.randint(1, 90)))
            if fmt == "fastq":          # quality lines that start with '@' or '+' must not look like records
                q = "".join(rnd.choice("@+!#I") for _ in seq)
                f.write(f"@r{i} d\n{seq}\n+{'' if i % 2 else 'r' + str(i)}\n{q}\n")
            else:
                f.write(f">r{i}\n" + "\n".join(seq[j:j + 30] for j in range(0, len(seq), 30)) + "\n")
    whole = _records(p)
    assert len(whole) == 400
    for target in (37, 500, 4096, 1 << 20):
        got = [x for r in byte_ranges(p, target) for x in _records(p, byte_range=r, block_bytes=1 << 12)]
        assert got == whole
