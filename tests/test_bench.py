"""The benches on a tiny image set: shapes and sanity of the numbers, resume after interrupt."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import EXAMPLE
from dnaimg.bench import suite as B
from dnaimg.cli import main
from dnaimg.dna.bytecode import bits_per_payload_nt
from dnaimg.dna.container import Layout
from dnaimg.zoo.registry import DEFAULT_MODEL, select_point

POINT = select_point(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    img = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    Image.fromarray(img[50:218, 200:376]).save(d / "a.png")
    Image.fromarray(img[220:388, 300:476]).save(d / "b.png")
    return d


def _means(res, key="sub_rate"):
    return {s[key]: s for s in res["summary"]["systems"]}


def test_noise_bench_psnr_falls_with_noise_and_resumes(tiny, tmp_path):
    paths = B.image_paths(tiny)
    out = tmp_path / "noise"
    res = B.bench_noise(paths, [DEFAULT_MODEL], [0.0, 0.02, 0.05], out)
    assert len(res["rows"]) == 6 and all(r["success"] for r in res["rows"])
    m = _means(res)
    assert m[0.0]["psnr_db"] > m[0.02]["psnr_db"] + 1 > m[0.05]["psnr_db"] + 2
    assert m[0.0]["payload_nt_per_pixel"] == pytest.approx(POINT.payload_nt_per_pixel)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert len(saved["rows"]) == 6 and out.with_suffix(".csv").exists()
    # interrupt after the first new row: it is kept, and the rerun finishes the rest
    calls = []

    def stop(n):
        calls.append(n)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        B.bench_noise(paths, [DEFAULT_MODEL], [0.0, 0.02, 0.05, 0.01], out, progress=stop, fresh=True)
    assert len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 1
    res = B.bench_noise(paths, [DEFAULT_MODEL], [0.0, 0.02, 0.05, 0.01], out)
    assert len(res["rows"]) == 8
    B.plot_noise(res, tmp_path / "n.png")
    assert (tmp_path / "n.png").stat().st_size > 10_000
    table = B.noise_table(res)
    assert table.startswith("| operating point |") and POINT.label in table


def test_rd_bench_classic_points_are_ordered_and_count_every_nt(tiny, tmp_path):
    res = B.bench_rd(B.image_paths(tiny), [DEFAULT_MODEL], ["jpeg", "webp"], {"jpeg": (10, 80), "webp": (10, 80)},
                     tmp_path / "rd")
    s = {x["system"]: x for x in res["summary"]["systems"]}
    assert set(s) == {POINT.label, "jpeg@10", "jpeg@80", "webp@10", "webp@80"}
    for c in ("jpeg", "webp"):
        lo, hi = s[f"{c}@10"], s[f"{c}@80"]
        assert hi["total_nt_per_pixel"] > lo["total_nt_per_pixel"] and hi["psnr_db"] > lo["psnr_db"] + 3
        # the stream's bits over the data oligos' payload nt: at most the bytes payload's mapping
        # (2 bits/nt less the inner code), the last data oligo being partly filled
        assert 0 < lo["bits_per_nt"] <= bits_per_payload_nt(Layout().payload_nt)
    for x in s.values():
        assert x["success_fraction"] == 1.0 and x["total_nt_per_pixel"] > 1.3 * x["payload_nt_per_pixel"]
        assert 0.5 < x["ms_ssim"] <= 1.0
    for r in res["rows"]:        # every row counts its lost oligos (classic rows too): none, noiseless
        assert r["missing_oligos"] == 0
        if r["kind"] == "classic":
            assert r["exact"] and r["redundancy"] == 0.15 and r["outer_redundancy"] >= 0.15
    assert s[POINT.label]["bits_per_nt"] == pytest.approx(math.log2(POINT.levels) / POINT.codeword_nt)
    B.plot_rd(res, tmp_path / "rd.png")
    assert (tmp_path / "rd.png").exists() and (tmp_path / "rd.csv").read_text().startswith("system,")


def test_channel_bench_classic_fails_past_its_capacity(tiny, tmp_path):
    paths = B.image_paths(tiny)[:1]
    res = B.bench_channel(paths, [DEFAULT_MODEL], ["jpeg"], ["miseq"], [10], tmp_path / "ch", dropout=0.0)
    rows = {r["system"]: r for r in res["rows"]}
    assert rows[POINT.label]["success"] and rows[f"jpeg~{POINT.label}"]["success"]
    # matched rate: the classic stream does not cost more nucleotides than ours
    assert rows[f"jpeg~{POINT.label}"]["total_nt_per_pixel"] <= rows[POINT.label]["total_nt_per_pixel"]
    # a third of the oligos lost: far past 15 % parity; ours still decodes, degraded
    res = B.bench_channel(paths, [DEFAULT_MODEL], ["jpeg"], ["miseq"], [10], tmp_path / "ch2", dropout=0.33)
    rows = {r["system"]: r for r in res["rows"]}
    assert not rows[f"jpeg~{POINT.label}"]["success"]
    assert rows[f"jpeg~{POINT.label}"]["missing_oligos"] > 0 and rows[POINT.label]["missing_oligos"] > 0
    assert rows[POINT.label]["success"] and rows[POINT.label]["psnr_db"] > 18
    mc = {(m["system"], m["preset"]): m["min_coverage"] for m in res["summary"]["min_coverage"]}
    assert mc[(POINT.label, "miseq")] == 10 and mc[(f"jpeg~{POINT.label}", "miseq")] is None


def test_bench_cli(tiny, tmp_path):
    out = tmp_path / "cli-noise"
    r = CliRunner().invoke(main, ["bench", "noise", "--images", str(tiny), "--out", str(out), "--points",
                                  DEFAULT_MODEL, "--rates", "0,0.1", "-q", "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert out.with_suffix(".png").exists() and out.with_suffix(".md").exists()
    assert "| " + POINT.label in r.output
    r = CliRunner().invoke(main, ["bench", "rd", "--images", str(tiny), "--out", str(tmp_path / "x"),
                                  "--codecs", "gif"])
    assert r.exit_code == 1 and "unknown codec 'gif'" in r.output
    r = CliRunner().invoke(main, ["bench", "noise", "--images", str(tiny), "--out", str(tmp_path / "x"),
                                  "--points", "nosuchmodel"])
    assert r.exit_code == 1 and "unknown model 'nosuchmodel'" in r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["bench", "channel", "--images", str(tmp_path / "empty"), "--out",
                                  str(tmp_path / "x")])
    assert r.exit_code == 1 and "no images" in r.output


def test_channel_bench_help_names_its_default_points_and_the_presets_module():
    from dnaimg.dna import channel
    from dnaimg.zoo.registry import DEFAULT_CHANNEL_POINTS
    r = CliRunner().invoke(main, ["bench", "channel", "--help"], terminal_width=400)
    assert r.exit_code == 0, r.output
    assert ",".join(DEFAULT_CHANNEL_POINTS) in r.output
    assert "(dnaimg.dna.channel)" in r.output and channel.__name__ == "dnaimg.dna.channel"
    assert all(p in channel.PRESETS for p in ("miseq", "nanopore"))


def test_store_keeps_rows_of_an_older_file_without_newer_settings(tmp_path):
    import json

    from dnaimg.bench.suite import Store
    out = tmp_path / "noise"
    old = {"meta": {"bench": "noise", "config": {"seed": 0}}, "rows": [{"system": "a", "image": "x", "psnr": 30.0}]}
    (tmp_path / "noise.json").write_text(json.dumps(old))
    kept = Store(out, {"bench": "noise", "config": {"seed": 0, "match": None, "parity": 0.15}})
    assert kept.has("a", "x")                 # missing settings = their defaults: rows kept
    dropped = Store(out, {"bench": "noise", "config": {"seed": 0, "match": None, "parity": 0.3}})
    assert not dropped.has("a", "x")          # a real change of setting: rows dropped


def test_image_paths_first_or_evenly_spread(tmp_path):
    for i in range(10):
        (tmp_path / f"{i:02d}.png").write_bytes(b"")
    names = lambda ps: [p.stem for p in ps]  # noqa: E731
    assert names(B.image_paths(tmp_path, 3)) == ["00", "01", "02"]
    assert names(B.image_paths(tmp_path, 3, spread=True)) == ["00", "04", "09"]
    assert len(B.image_paths(tmp_path, 20, spread=True)) == 10


def test_ceiling_bench_bounds_the_codec(tiny, monkeypatch):
    """The transforms with an unquantised latent (what no entropy coding can beat) against the
    codec itself, per rate point, on the small test model."""
    from pathlib import Path

    from dnaimg.bench.ceiling import bench_ceiling
    from dnaimg.codecs import compact
    monkeypatch.setenv("DNAIMG_MODELS", str(Path(__file__).parent / "golden" / "compact-model"))
    compact._CACHE.clear()
    res = bench_ceiling(tiny, "compact-tiny", limit=1)
    compact._CACHE.clear()
    rates = [s["rate_index"] for s in res["summary"]]
    assert res["n_images"] == 1 and len(res["rows"]) == len(rates) >= 2
    s = res["summary"]
    assert s[-1]["total_nt_per_pixel"] > s[0]["total_nt_per_pixel"]
    for x in s:
        assert x["ceiling_psnr_db"] > x["psnr_db"] - 0.3
    assert s[-1]["ceiling_psnr_db"] - s[-1]["psnr_db"] < s[0]["ceiling_psnr_db"] - s[0]["psnr_db"]


def test_medical_bench_run_of_one_system_keeps_the_others_rows(tmp_path):
    """A run of one system adds its rows to the file; the rows of systems it did not run stay
    (and in its table), unless asked to measure them again."""
    from dnaimg.bench.medical import bench_medical, table
    d = tmp_path / "gray"
    d.mkdir()
    img = np.asarray(Image.open(EXAMPLE).convert("L"))
    Image.fromarray(img[:192, :192]).save(d / "a.png")
    out = tmp_path / "med"
    first = bench_medical([d], out, caps=(2.0,), codecs=("jpeg",), models=())
    jpeg = [r for r in first["rows"] if r["system"] == "jpeg"]
    assert len(jpeg) == 1 and jpeg[0]["psnr_db"] > 25
    second = bench_medical([d], out, caps=(2.0,), codecs=("webp",), models=())
    assert {r["system"] for r in second["rows"]} == {"png", "jpeg", "webp"}
    assert [r for r in second["rows"] if r["system"] == "jpeg"] == jpeg          # kept, not measured again
    assert second["meta"]["config"]["systems"] == ["webp", "jpeg"]
    assert "| jpeg |" in table(second) and "| webp |" in table(second)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert {r["system"] for r in saved["rows"]} == {"png", "jpeg", "webp"}
    # another image set: the rows of the images no longer asked for go
    Image.fromarray(img[:192, 192:384]).save(d / "b.png")
    third = bench_medical([d], out, caps=(2.0,), codecs=("webp",), models=(), limit=1)
    assert {r["image"] for r in third["rows"]} == {"a.png"}


def test_medical_bench_rows_say_which_model_wrote_the_dna(tmp_path):
    from dnaimg.bench.medical import bench_medical
    from dnaimg.codecs import compact
    d = tmp_path / "gray"
    d.mkdir()
    Image.fromarray(np.asarray(Image.open(EXAMPLE).convert("L"))[:128, :128]).save(d / "a.png")
    res = bench_medical([d], tmp_path / "med", caps=(1.0,), codecs=(), models=("auto",))
    row, = [r for r in res["rows"] if r["system"] == "compact:auto"]
    families = [compact.DEFAULT_GRAY_MODEL, *compact.POST_FILTER_CHOICES[compact.DEFAULT_GRAY_MODEL]]
    for alt in compact.FAMILY_CHOICES[compact.DEFAULT_GRAY_MODEL]:
        families += [alt, *compact.POST_FILTER_CHOICES.get(alt, ())]
    assert row["fits"] and row["model"] in families
