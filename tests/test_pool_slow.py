"""A pool of 50 photographs (training images, never Kodak), sequenced at nextseq 10x: every image
back under its own name, identical to its clean decode; --only restores one; --workers 2 writes
the same files.  Minutes: ``pytest -m slow``."""
from pathlib import Path

import pytest

from helpers import cli

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "train" / "imagenet-sample-images"
N = 50


def run(*args):
    return cli(*args, debug=True)


@pytest.mark.slow
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="no training photographs here")
def test_pool_of_50_photographs(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    files = sorted(PHOTOS.iterdir())[:N]
    for p in files:
        (src / p.name).symlink_to(p)
    fa = tmp_path / "pool.fasta"
    r = run("encode", src, "-o", fa, "--codec", "robust", "--redundancy", "0.15", "-q")
    assert r.exit_code == 0, r.output
    reads = tmp_path / "reads.fastq"
    r = run("simulate", fa, "-o", reads, "--preset", "nextseq", "--coverage", "10", "--seed", "5")
    assert r.exit_code == 0, r.output
    clean, noisy, dist = tmp_path / "clean", tmp_path / "noisy", tmp_path / "dask"
    assert run("decode", fa, "-o", f"{clean}/", "-q", "--strict").exit_code == 0
    r = run("decode", reads, "-o", f"{noisy}/", "-q", "--strict")
    assert r.exit_code == 0, r.output
    names = sorted(p.name + ".png" for p in files)
    assert sorted(p.name for p in noisy.iterdir()) == names == sorted(p.name for p in clean.iterdir())
    for n in names:
        assert (noisy / n).read_bytes() == (clean / n).read_bytes(), n
    one = tmp_path / "one"
    r = run("decode", reads, "-o", f"{one}/", "--only", files[17].name, "-q", "--strict")
    assert r.exit_code == 0, r.output
    assert [p.name for p in one.iterdir()] == [files[17].name + ".png"]
    assert (one / names[17]).read_bytes() == (clean / names[17]).read_bytes()
    r = run("decode", reads, "-o", f"{dist}/", "--workers", "2", "-q", "--strict")
    assert r.exit_code == 0, r.output
    for n in names:
        assert (dist / n).read_bytes() == (noisy / n).read_bytes(), n
