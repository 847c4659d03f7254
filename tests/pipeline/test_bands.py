"""The pipeline's row-band path (band_rows) gives the whole-cube path's L2, bit for bit."""

import logging

import asdf
import numpy as np
import pytest

from tests.bands_check import run_simulated

ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise", "data_withsky", "amp33")
BORDERS = tuple(
    f"{kind}border_ref_pix_{side}"
    for kind in ("", "dq_")
    for side in ("left", "right", "top", "bottom")
)


def _run(simulated_set, out, keys=None, **parameters):
    """Run the simulation's legacy config (+ ``keys``); the L2's arrays and meta."""
    run_simulated(simulated_set, out, keys, **parameters)
    with asdf.open(out, lazy_load=False) as af:
        tree = af.tree["roman"]
        result = {k: np.array(tree[k]) for k in ARRAYS + BORDERS}
        result["ref_file"] = dict(tree["meta"]["ref_file"])
        result["cal_step"] = dict(tree["meta"]["cal_step"])
        info = tree["processinfo"] if "processinfo" in tree else af.tree["processinfo"]
        result["weights"] = np.array(info["weights"])
    return result


@pytest.fixture(scope="module")
def whole_cube(simulated_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole_cube") / "whole_cal.asdf"
    return _run(simulated_set, out, band_rows=0)


@pytest.mark.parametrize("band_rows", [5, 37, 512])
def test_bands_give_the_whole_cube_l2(
    simulated_set, whole_cube, tmp_path, caplog, band_rows
):
    with caplog.at_level(logging.INFO, logger="romanimpreprocess"):
        banded = _run(simulated_set, tmp_path / "banded_cal.asdf", band_rows=band_rows)
    assert f"Ramp steps in bands of {band_rows} rows" in caplog.text
    for key, expected in whole_cube.items():
        got = banded[key]
        if isinstance(expected, np.ndarray):
            assert got.dtype == expected.dtype, key
            assert np.array_equal(got, expected, equal_nan=True), key
        else:
            assert got == expected, key


def test_legacy_compat_runs_on_the_whole_cube(simulated_set, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="romanimpreprocess"):
        _run(simulated_set, tmp_path / "legacy_cal.asdf", {"LEGACY_COMPAT": True})
    assert "Ramp steps on the whole cube (legacy_compat)" in caplog.text
    assert "Ramp steps in bands" not in caplog.text


@pytest.mark.parametrize(
    ("ny", "height", "halo", "chunk_rows"),
    [
        (4096, 512, 8, 512),
        (4096, 512, 8, 0),
        (128, 37, 8, 0),
        (128, 5, 8, 5),
        (64, 16, 8, 8),
    ],
)
def test_band_starts_tile_the_frame(ny, height, halo, chunk_rows):
    from romanimpreprocess.pipeline.l1_to_l2 import _band_starts

    starts = _band_starts(ny, height, halo, chunk_rows)
    assert starts[0] == 0 and starts == sorted(set(starts)) and starts[-1] < ny
    assert all(b - a <= height for a, b in zip(starts, [*starts[1:], ny], strict=True))
    if chunk_rows == 512:
        # after the first, each band's new rows (below its upper halo) start a chunk
        assert all((s + halo) % chunk_rows == 0 for s in starts[1:])
