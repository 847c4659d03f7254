"""romancal reference files built from our set, and the romancal_elp program of run_all.

Benchmarks are not tests; these check on a 128² simulated set that the converted
references open as the right roman_datamodels classes with our numbers, and that
romancal's ExposurePipeline runs offline on them through ``run_all.py --smoke``.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import asdf
import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels import datamodels as dm

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def romancal_refs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import romancal_refs

    yield romancal_refs
    sys.modules.pop("romancal_refs", None)


def _ours(path, key):
    with asdf.open(path, lazy_load=False) as af:
        return np.array(af["roman"][key])


def test_refs_are_romancal_models_with_our_numbers(
    simulated_set, tmp_path, romancal_refs
):
    from romanimpreprocess.linearity.linearity import legendre_phi, normalized_signal

    caldir = simulated_set.caldir
    paths, report = romancal_refs.build_romancal_refs(caldir, tmp_path, verbose=False)
    classes = {
        "mask": dm.MaskRefModel,
        "saturation": dm.SaturationRefModel,
        "linearity": dm.LinearityRefModel,
        "inverselinearity": dm.InverselinearityRefModel,
        "darkdecaysignal": dm.DarkdecaysignalRefModel,
        "dark": dm.DarkRefModel,
        "readnoise": dm.ReadnoiseRefModel,
        "gain": dm.GainRefModel,
        "flat": dm.FlatRefModel,
    }
    assert set(paths) == set(classes)
    models = {}
    for reftype, cls in classes.items():
        models[reftype] = rdm.open(paths[reftype])
        assert type(models[reftype]) is cls, reftype
        models[reftype].validate()
        assert models[reftype].meta.instrument.detector == "WFI01"
    try:
        m = models
        np.testing.assert_array_equal(m["mask"].dq, _ours(caldir["mask"], "dq"))
        np.testing.assert_array_equal(
            m["saturation"].data, _ours(caldir["saturation"], "data")
        )
        np.testing.assert_array_equal(
            m["gain"].data, _ours(caldir["gain"], "data").astype(np.float32)
        )
        assert m["gain"].data.dtype == np.float32
        np.testing.assert_array_equal(
            m["readnoise"].data, _ours(caldir["read"], "data")
        )
        np.testing.assert_array_equal(
            m["dark"].dark_slope, _ours(caldir["dark"], "dark_slope")
        )
        assert m["flat"].data.shape == (120, 120)  # the active part: romancal's rate
        np.testing.assert_array_equal(
            m["flat"].data, _ours(caldir["flat"], "data")[4:-4, 4:-4]
        )
        assert m["darkdecaysignal"].decay_table.WFI01.time_constant == 20.0

        # the power series reproduces our Legendre linearity inside [Smin, Smax]
        # (float32 evaluation, as stcal's), and the fitted inverse undoes it
        coeffs = _ours(caldir["linearitylegendre"], "data")
        smin, smax, sref = (
            _ours(caldir["linearitylegendre"], k) for k in ("Smin", "Smax", "Sref")
        )
        lin, inv = m["linearity"].coeffs, m["inverselinearity"].coeffs
        assert lin.shape == coeffs.shape and lin.dtype == np.float32
        assert inv.shape[0] == romancal_refs.INVERSE_DEGREE + 1
        for frac in (0.0, 0.1, 0.37, 0.8, 1.0):
            signal = (smin + frac * (smax - smin)).astype(np.float32)
            ours, _ = legendre_phi(normalized_signal(signal, smin, smax - smin), coeffs)
            theirs = romancal_refs.horner32(lin, signal)
            assert np.max(np.abs(theirs - ours)) < 0.05  # DN, near float32 rounding
            back = romancal_refs.horner32(inv, theirs)
            assert np.max(np.abs(back - signal)) < 0.05
        # Phi(Sref) = 0 is kept: the zero point of the linearised signal
        assert np.max(np.abs(romancal_refs.horner32(lin, sref))) < 0.05
        assert report["linearity"]["max_abs_error_dn"] < 0.05
        assert report["inverselinearity"]["max_abs_error_dn"] < 0.05
    finally:
        for model in models.values():
            model.close()

    # cached: nothing rebuilt while the files are newer than their sources
    stamps = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}
    _, again = romancal_refs.build_romancal_refs(caldir, tmp_path, verbose=False)
    assert not any(again[k]["rebuilt"] for k in paths)
    assert stamps == {k: os.stat(p).st_mtime_ns for k, p in paths.items()}


def test_linearity_pixels_ours_leaves_raw(romancal_refs):
    """NO_LIN_CORR / REFERENCE_PIXEL / unusable pixels get S - Sref and its inverse."""
    from roman_datamodels.dqflags import pixel

    shape = (2, 2)
    legendre = np.zeros((3, *shape), np.float32)
    legendre[0], legendre[1], legendre[2] = 1.0e4, 1.6e4, 300.0
    smin = np.full(shape, 1.0e4, np.float32)
    smax = np.full(shape, 4.5e4, np.float32)
    sref = np.full(shape, 1.2e4, np.float32)
    dq = np.zeros(shape, np.uint32)
    dq[0, 1] = pixel.NO_LIN_CORR
    dq[1, 0] = pixel.REFERENCE_PIXEL
    smax[1, 1] = smin[1, 1]  # an unusable calibration (empty range)
    fwd, inv, out_dq, raw = romancal_refs.linearity_blocks(
        legendre, smin, smax, sref, dq, 5, 12
    )
    assert raw.tolist() == [[False, True], [True, True]]
    for y, x in ((0, 1), (1, 0), (1, 1)):
        assert fwd[:, y, x].tolist() == [-1.2e4, 1.0, 0.0]
        assert inv[:, y, x].tolist() == [1.2e4, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert out_dq[1, 1] & pixel.NO_LIN_CORR and out_dq[1, 1] & pixel.DO_NOT_USE
    assert out_dq[0, 0] == 0


def test_run_all_romancal_elp_smoke(simulated_set, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import run_all

    # the session's 128² set stands in for run_all's own simulation (same layout)
    sim = tmp_path / "128_survey6" / "sim"
    sim.mkdir(parents=True)
    shutil.copy(simulated_set.config_yaml, sim)
    code = run_all.main(
        [
            "--size",
            "128",
            "--patterns",
            "survey6",
            "--smoke",
            "--only",
            "romancal_elp",
            "--out",
            str(tmp_path),
        ]
    )
    sys.modules.pop("run_all", None)
    assert code == 0
    elp = json.loads((tmp_path / "results.json").read_text())["survey6"]["romancal_elp"]
    assert elp["returncode"] == 0, Path(elp["log"]).read_text()[-3000:]
    assert elp["wall_s"] > 0 and elp["peak_rss_gib"] > 0
    assert set(elp["steps_completed"]) == {
        "dq_init",
        "saturation",
        "linearity",
        "ramp_fit",
        "dark",
        "flat_field",
    }
    # dark_decay is skipped only below full frame (romancal assumes 4096²)
    assert set(elp["steps_skipped"]) == {
        "refpix",
        "assign_wcs",
        "photom",
        "source_catalog",
        "tweakreg",
        "dark_decay",
    }
    assert elp["cal_step"]["refpix"] == "SKIPPED"
    assert elp["step_times"]["rampfit"] > 0 and "refpix" not in elp["step_times"]
    with rdm.open(elp["output"]) as model:
        assert isinstance(model, dm.ImageModel)
        assert model.data.shape == (120, 120)
        assert np.isfinite(model.data).mean() > 0.9
