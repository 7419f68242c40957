"""Pools: many images in one oligo pool, each under its own id and name; --only, --append,
per-file primer pairs and a simulated selective amplification (random access)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnaimg import pool
from dnaimg.dna.header import NO_PAIR, PoolRecord
from dnaimg.dna.primers import primer_pairs
from helpers import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "coffee.png"


def run(*args):
    return cli(*args, debug=True)


def fasta_records(path):
    names, seqs = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            names.append(line[1:])
            seqs.append("")
        else:
            seqs[-1] += line.strip()
    return names, seqs


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of three small PNG crops and one more image outside it."""
    d = tmp_path_factory.mktemp("imgs")
    base = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    crops = {}
    for i, (y, x) in enumerate([(0, 0), (30, 50), (60, 100)]):
        a = np.ascontiguousarray(base[y:y + 32, x:x + 40])
        Image.fromarray(a).save(d / f"c{i}.png")
        crops[f"c{i}.png"] = a
    extra = tmp_path_factory.mktemp("extra") / "late.png"
    a = np.ascontiguousarray(base[10:42, 10:50])
    Image.fromarray(a).save(extra)
    crops["late.png"] = a
    return d, extra, crops


@pytest.fixture(scope="module")
def png_pool(images, tmp_path_factory):
    d, _, _ = images
    out = tmp_path_factory.mktemp("pool") / "pool.fasta"
    r = run("encode", d, "-o", out, "--codec", "png", "--redundancy", "0.3", "-j", "1", "-q")
    assert r.exit_code == 0, r.output
    return out


def test_encode_pool_writes_ids_names_and_manifest(png_pool, images):
    man = json.loads(pool.manifest_path(png_pool).read_text())
    assert pool.manifest_path(png_pool).name == "pool.manifest.json"
    assert [e["file"] for e in man["images"]] == ["c0.png", "c1.png", "c2.png"]
    assert [e["id"] for e in man["images"]] == [0, 1, 2]
    assert [e["tag"] for e in man["images"]] == ["00", "01", "02"]
    assert all(e["codec"] == "png" and e["primer_pair"] == 0 for e in man["images"])
    assert all(e["primer_f"] == "AGTGCACGCGCAGTTATATG" for e in man["images"])
    names, seqs = fasta_records(png_pool)
    for e in man["images"]:        # each image's oligo count, as written
        assert e["oligos"] == sum(n.startswith(f"dnaimg_{e['image_id']}_") for n in names)
        assert e["rates"]["total_nt_per_pixel"] > 0
    assert man["oligos"] == len(seqs)
    assert man["primers"]["set"]["min_edit_distance"] == 9 and man["primers"]["pairs_used"] == [0]
    assert man["primers"]["min_edit_distance_to_inserts"] >= 2
    r = run("info", png_pool, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert [(d["name"], d["image_id"], d["version"], d["codec"]) for d in info] == [
        ("c0.png", 0, 3, "png"), ("c1.png", 1, 3, "png"), ("c2.png", 2, 3, "png")]
    assert len({d["pool_id"] for d in info}) == 1


def test_decode_pool_restores_every_image_under_its_name(png_pool, images, tmp_path):
    _, _, crops = images
    out = tmp_path / "out"
    r = run("decode", png_pool, "-o", f"{out}/", "--json", "-q", "--strict")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert sorted(p.name for p in out.iterdir()) == ["c0.png", "c1.png", "c2.png"]
    for name in ["c0.png", "c1.png", "c2.png"]:
        assert np.array_equal(np.asarray(Image.open(out / name)), crops[name])       # lossless: bit for bit
    assert [(d["file"], d["id"], d["exact"]) for d in rep["images"]] == [
        ("c0.png", 0, True), ("c1.png", 1, True), ("c2.png", 2, True)]
    assert rep["refused"] == []


@pytest.mark.parametrize("only", ["c1.png", "c1", "1", "0x1"])
def test_only_restores_one_file(png_pool, images, tmp_path, only):
    _, _, crops = images
    out = tmp_path / "o"
    out.mkdir()
    r = run("decode", png_pool, "-o", out, "--only", only, "-q")
    assert r.exit_code == 0, r.output
    assert [p.name for p in out.iterdir()] == ["c1.png"]
    assert np.array_equal(np.asarray(Image.open(out / "c1.png")), crops["c1.png"])
    one = tmp_path / "one.png"
    r = run("decode", png_pool, "-o", one, "--only", only, "-q")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(one)), crops["c1.png"])


def test_only_unknown_name_is_a_clear_error(png_pool, tmp_path):
    r = run("decode", png_pool, "-o", f"{tmp_path}/x/", "--only", "nope.png")
    assert r.exit_code == 1
    assert "dnaimg: error: no image 'nope.png' in the reads (found: c0.png, c1.png, c2.png)" in r.output
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_append_keeps_the_old_ids_and_oligos(png_pool, images, tmp_path):
    _, extra, crops = images
    out = tmp_path / "bigger.fasta"
    r = run("encode", extra, "--append", png_pool, "-o", out, "--codec", "png", "--redundancy", "0.3", "-q")
    assert r.exit_code == 0, r.output
    old_names, old_seqs = fasta_records(png_pool)
    names, seqs = fasta_records(out)
    assert (names[:len(old_names)], seqs[:len(old_seqs)]) == (old_names, old_seqs)      # untouched
    man = json.loads(pool.manifest_path(out).read_text())
    old_man = json.loads(pool.manifest_path(png_pool).read_text())
    assert [(e["file"], e["id"]) for e in man["images"]] == [("c0.png", 0), ("c1.png", 1), ("c2.png", 2),
                                                             ("late.png", 3)]
    assert man["pool_id"] == old_man["pool_id"] and man["images"][:3] == old_man["images"]
    dec = pool.decode_pool([out])
    assert [(d.name, d.image_id, d.exact) for d in dec.images] == [
        ("c0.png", 0, True), ("c1.png", 1, True), ("c2.png", 2, True), ("late.png", 3, True)]
    assert np.array_equal(dec.images[3].image, crops["late.png"])
    # a name already in the pool, and a pool file as its own output, are refused
    r = run("encode", extra, "--append", out, "-o", tmp_path / "again.fasta", "--codec", "png", "-q")
    assert r.exit_code == 1 and "already holds an image named late.png" in r.output
    r = run("encode", extra, "--append", out, "-o", out, "--codec", "png", "-q")
    assert r.exit_code == 1 and "is an input" in r.output


def test_append_refuses_reads_and_edited_pools(png_pool, images, tmp_path):
    # --append copies the pool's records into the FASTA to synthesise: they must be its oligos
    _, extra, _ = images
    names, seqs = fasta_records(png_pool)
    cases = {
        "reads.fastq": ("".join(f"@{n}\n{q}\n+\n{'I' * len(q)}\n" for n, q in zip(names, seqs)), "it is a FASTQ file"),
        "twice.fasta": ("".join(f">{n}\n{q}\n" for n, q in zip(names + names[:1], seqs + seqs[:1])),
                        "some oligo names repeat"),
        "short.fasta": ("".join(f">{n}\n{q[:-1] if i == 5 else q}\n" for i, (n, q) in enumerate(zip(names, seqs))),
                        f"some records are not oligos of {len(seqs[0])} nt"),
    }
    for fname, (text, why) in cases.items():
        (tmp_path / fname).write_text(text)
        out = tmp_path / f"{fname}.out.fasta"
        r = run("encode", extra, "--append", tmp_path / fname, "-o", out, "--codec", "png", "-q")
        assert r.exit_code == 1 and f"is not a pool's oligos as encode wrote them ({why}" in r.output, r.output
        assert not out.exists()


def test_pool_decode_never_writes_over_files_in_its_folder(png_pool, tmp_path):
    out = tmp_path / "originals"
    out.mkdir()
    (out / "c1.png").write_bytes(b"the user's own file")
    r = run("decode", png_pool, "-o", out, "-q")
    assert r.exit_code == 1 and "c1.png already exists: a pool decode writes new files only" in r.output, r.output
    assert sorted(p.name for p in out.iterdir()) == ["c1.png"]          # nothing written, nothing replaced
    assert (out / "c1.png").read_bytes() == b"the user's own file"


def test_a_single_image_with_a_pools_primer_pair_decodes_without_naming_it(images, tmp_path):
    # decode -o FILE with no primers given: the default pair finds no read, the pool's pairs are tried
    _, extra, crops = images
    p1 = primer_pairs()[1]
    fa = tmp_path / "own.fasta"
    r = run("encode", extra, "-o", fa, "--codec", "png", "--primer-f", p1.forward, "--primer-r", p1.reverse, "-q")
    assert r.exit_code == 0, r.output
    out = tmp_path / "own.png"
    r = run("decode", fa, "-o", out, "-q")
    assert r.exit_code == 0 and "pair 1" in r.output, r.output
    assert np.array_equal(np.asarray(Image.open(out)), crops["late.png"])
    # primers given and wrong: the error stays (a user who names primers gets those)
    p2 = primer_pairs()[2]
    r = run("decode", fa, "-o", tmp_path / "x.png", "--primer-f", p2.forward, "--primer-r", p2.reverse, "-q")
    assert r.exit_code == 1 and "carries the primers" in r.output


def test_assign_ids_tags_and_groups():
    sets = primer_pairs()
    m = pool.assign([f"f{i}" for i in range(5)], [], group_size=2)
    assert [(x.image_id, x.primer_pair) for x in m] == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]
    assert m[2].primer_f == sets[1].forward
    more = pool.assign(["g0", "g1"], m, group_size=2)           # the last group has room for one
    assert [(x.image_id, x.primer_pair) for x in more] == [(5, 2), (6, 3)]
    big = pool.assign([f"f{i}" for i in range(300)], [])
    assert [x.primer_pair for x in big].count(0) == 256 and big[256].primer_pair == 1
    assert len({(x.primer_pair, x.tag) for x in big}) == 300        # never two images on one (pair, tag)
    own = pool.assign(["a", "b"], [], primers=("ACGTACGTTGCAACGTAGCA", "TTGCAGCATCGATCGACTGA"))
    assert [x.primer_pair for x in own] == [NO_PAIR, NO_PAIR]
    with pytest.raises(pool.PoolError, match="at most 256"):
        pool.assign([f"f{i}" for i in range(257)], [], primers=("ACGTACGTTGCAACGTAGCA", "TTGCAGCATCGATCGACTGA"))
    with pytest.raises(pool.PoolError, match="at most 97 images in groups of 1"):
        pool.assign([f"f{i}" for i in range(98)], [], group_size=1)
    with pytest.raises(pool.PoolError, match="already holds"):
        pool.assign(["f1"], big)


def test_names_and_output_files():
    assert pool.output_name("kodim01.png", 3) == "kodim01.png"
    assert pool.output_name("photo.JPG", 3) == "photo.JPG.png"
    assert pool.output_name(None, 0x1f) == "image_0000001f.png"
    assert pool.output_name("..", 2) == "image_00000002.png"
    with pytest.raises(ValueError):
        PoolRecord(1, 2, 0, "a/b.png")
    with pytest.raises(ValueError):
        PoolRecord(1, 2, 0, "x" * 121)


def test_random_access_by_file_primers(images, tmp_path):
    """Every file its own primer pair; a simulated PCR with one file's primers; that file decodes
    from the amplified reads, with the stated fraction of off-target reads."""
    d, _, crops = images
    fa = tmp_path / "ra.fasta"
    r = run("encode", d, "-o", fa, "--codec", "png", "--redundancy", "0.3", "--group-size", "1", "-j", "2", "-q")
    assert r.exit_code == 0, r.output
    man = json.loads(pool.manifest_path(fa).read_text())
    assert [e["primer_pair"] for e in man["images"]] == [0, 1, 2]
    assert man["primers"]["min_edit_distance_between_used"] >= 9
    reads = tmp_path / "amp.fastq"
    r = run("simulate", fa, "-o", reads, "--preset", "nextseq", "--coverage", "8", "--amplify", "c2",
            "--off-target", "0.05", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "amplified c2.png (primer pair 2)" in r.output
    names, seqs = fasta_records(fa)
    oligos = [np.frombuffer(s.encode(), np.uint8) for s in seqs]
    from dnaimg.dna import alphabet as dna
    target, _ = pool.amplified_oligos(fa, [dna.encode(s) for s in seqs], "c2.png")
    assert target.sum() == man["images"][2]["oligos"] and len(oligos) == len(target)
    # the off-target share in the reads: 5 % of them carry another pair's primers
    f2 = primer_pairs()[2]
    rs = [ln for i, ln in enumerate(reads.read_text().splitlines()) if i % 4 == 1]
    on = sum(s.startswith(f2.forward) or s.startswith(f2.reverse) for s in rs)
    other = sum(any(s.startswith(p) for p in (primer_pairs()[0].forward, primer_pairs()[0].reverse,
                                              primer_pairs()[1].forward, primer_pairs()[1].reverse)) for s in rs)
    assert 0.03 < other / (on + other) < 0.07
    out = tmp_path / "got"
    r = run("decode", reads, "-o", f"{out}/", "--only", "c2.png", "-q")
    assert r.exit_code == 0, r.output
    assert [p.name for p in out.iterdir()] == ["c2.png"]
    assert np.array_equal(np.asarray(Image.open(out / "c2.png")), crops["c2.png"])


def test_pool_of_robust_images_from_reads_equals_its_clean_decode(images, tmp_path):
    """The robust codec in a pool, from nextseq 10x reads: each image identical to the one decoded
    from the oligos as written."""
    d, _, _ = images
    fa = tmp_path / "rob.fasta"
    r = run("encode", d, "-o", fa, "--codec", "robust", "--redundancy", "0.5", "-j", "1", "-q")
    assert r.exit_code == 0, r.output
    reads = tmp_path / "r.fastq"
    assert run("simulate", fa, "-o", reads, "--preset", "nextseq", "--coverage", "10", "-q").exit_code == 0
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    assert run("decode", fa, "-o", f"{clean}/", "-q", "--precision", "fp32").exit_code == 0
    r = run("decode", reads, "-o", f"{noisy}/", "-q", "--strict", "--precision", "fp32")
    assert r.exit_code == 0, r.output
    for name in ["c0.png", "c1.png", "c2.png"]:
        assert (clean / name).read_bytes() == (noisy / name).read_bytes()


def test_pool_inputs_are_checked(images, tmp_path):
    d, extra, _ = images
    r = run("encode", d, extra, "-o", tmp_path / "x.fasta", "--codec", "png")
    assert r.exit_code == 0, r.output
    r = run("encode", extra, extra, "-o", tmp_path / "y.fasta", "--codec", "png")
    assert r.exit_code == 1 and "two images named late.png" in r.output
    r = run("encode", tmp_path / "missing", extra, "-o", tmp_path / "z.fasta")
    assert r.exit_code == 1 and "no such file or folder" in r.output
    before = (d / "c0.png").read_bytes()
    r = run("encode", d, "-o", d / "c0.png", "--codec", "png")      # (an input, and an image's name)
    assert r.exit_code == 1 and "encode writes the oligos as FASTA" in r.output
    assert (d / "c0.png").read_bytes() == before
    r = run("decode", tmp_path / "x.fasta", "-o", f"{tmp_path}/o/", "--reference", extra)
    assert r.exit_code == 1 and "--reference is for one image" in r.output


def test_a_folder_encode_names_what_it_leaves_out(images, tmp_path):
    """Subfolders and files that are not images are left out of a folder's pool, with a note
    naming them (not silently); -q keeps it quiet."""
    import shutil
    d = tmp_path / "imgs"
    shutil.copytree(images[0], d)
    (d / "more").mkdir()
    (d / "more" / "x.png").write_bytes((d / "c0.png").read_bytes())
    (d / "notes.txt").write_text("hello\n")
    r = run("encode", d, "-o", tmp_path / "p.fasta", "--codec", "png", "-j", "1")
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.output.splitlines() if ln.startswith("note:")]
    assert notes == [f"note: {d}: left out 1 subfolder (more) and 1 file that is not an image (notes.txt)"], r.output
    man = json.loads(pool.manifest_path(tmp_path / "p.fasta").read_text())
    assert [m["file"] for m in man["images"]] == ["c0.png", "c1.png", "c2.png"], man
    r = run("encode", d, "-o", tmp_path / "q.fasta", "--codec", "png", "-j", "1", "-q")
    assert r.exit_code == 0 and "note:" not in r.output, r.output
