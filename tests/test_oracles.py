"""dnaimg.bench.oracles: its pieces give known answers on made-up data."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dnaimg.bench import oracles as O
from dnaimg.zoo.wavelet import channel_of, lift_forward


def test_entropy_bits():
    assert O.entropy_bits(np.array([0, 0, 1, 1])) == pytest.approx(4.0)
    assert O.entropy_bits(np.array([3, 3, 3])) == 0.0


def test_vertical_lifting_along_no_direction_is_the_wavelets():
    x = torch.randn(2, 16, 12, dtype=torch.float64)
    lo, hi = O.lift_vertical(x, 0)
    lo0, hi0 = lift_forward(x.transpose(-1, -2))
    assert torch.allclose(lo, lo0.transpose(-1, -2)) and torch.allclose(hi, hi0.transpose(-1, -2))


def test_shift_moves_along_the_last_axis_with_halves_as_means():
    a = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert O._shift(a, 1).tolist() == [[1.0, 2.0, 3.0, 3.0]]
    assert O._shift(a, -2).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert O._shift(a, 0.5).tolist() == [[0.5, 1.5, 2.5, 3.0]]


def test_directional_lifting_pays_on_slanted_stripes_only(tmp_path):
    i, j = np.mgrid[0:256, 0:256]
    # fine stripes along two rows down per column: the direction of 2 columns per row step predicts them
    Image.fromarray((128 + 100 * np.sin((i + j / 2) * 1.2)).astype(np.uint8)).save(tmp_path / "d.png")
    r = O.directional([tmp_path / "d.png"], 1, 20.0, 16)
    assert r["change_with_directions_pct"] < -50
    Image.fromarray((128 + 100 * np.sin(i * 1.2)).astype(np.uint8)).save(tmp_path / "h.png")   # level stripes: no direction helps
    r = O.directional([tmp_path / "h.png"], 1, 20.0, 16)
    assert r["change_pct"] == 0.0 and r["change_with_directions_pct"] > 0


def test_sign_contexts_of_two_values():
    sym = np.zeros((256, 1, 1), np.int64)
    sym[channel_of(8, 0, 0, 0)] = 5            # level 1, LH, the block's first value: every context sign 0
    sym[channel_of(8, 0, 0, 1)] = -2           # its right neighbour: left sign +
    c, s = O.sign_contexts(sym)
    assert c.tolist() == [121, 202] and s.tolist() == [1, 0]
    sym[channel_of(4, 0, 0, 0)] = 1            # the parent (level 2, LH) of both: its sign +
    c, s = O.sign_contexts(sym)
    assert sorted(c.tolist()) == [130, 211, 243 * 3 + 121]      # (the parent's sign weighs 9)


def test_cli_writes_json_and_refuses_too_few_images(tmp_path, capsys):
    i, j = np.mgrid[0:256, 0:320]
    for k in range(4):
        Image.fromarray((128 + 60 * np.sin((i + k * j) / 7.0)).astype(np.uint8)).save(tmp_path / f"{k}.png")
    out = tmp_path / "o.json"
    assert O.main(["--images", str(tmp_path), "--only", "directional", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["count"] == 4 and [d["level"] for d in r["directional"]] == [1, 2, 3]
    (tmp_path / "few").mkdir()
    assert O.main(["--images", str(tmp_path / "few")]) == 2
    assert "0 usable images" in capsys.readouterr().err
