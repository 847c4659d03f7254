"""Quicklook: summary numbers and a valid PNG."""

import struct
import zlib

import numpy as np
import roman_datamodels.datamodels as dm
from roman_datamodels.dqflags import pixel

from romanimpreprocess import quicklook
from romanimpreprocess.datamodels import l2


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    quicklook.write_png(path, rgb)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (5, 7)
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    raw = zlib.decompress(data[start : start + length])
    rows = np.frombuffer(raw, np.uint8).reshape(7, 1 + 5 * 3)
    np.testing.assert_array_equal(rows[:, 1:].reshape(7, 5, 3), rgb)


def test_summary_of_an_l2(tmp_path, capsys):
    model = dm.ImageModel.create_fake_data(shape=(40, 40))
    model.data = np.full((40, 40), 2.0, np.float32)
    model.dq = np.zeros((40, 40), np.uint32)
    model.dq[:4, :10] = pixel.JUMP_DET  # 40 pixels = 2.5 %
    model.err = np.ones((40, 40), np.float32)
    model.var_poisson = np.ones((40, 40), np.float32)
    model["processinfo"] = {"medsky": 1.75, "step_times": {"ramp_fit": 0.5}}
    l2.finalize_l2(model, cal_steps={"ramp_fit": "COMPLETE"})
    path = tmp_path / "x_cal.asdf"
    l2.write_l2(model, path)
    summary = quicklook.quicklook(path)
    assert summary.median_sky == 1.75
    assert summary.jump_pixels == 40
    assert summary.flagged_fraction["JUMP_DET"] == 40 / 1600
    assert summary.step_times == {"ramp_fit": 0.5}
    assert (tmp_path / "x_cal_quicklook.png").exists()
    assert quicklook.main([str(path), "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "JUMP_DET 2.500%" in out
    assert quicklook.main([str(tmp_path / "missing.asdf")]) == 2
