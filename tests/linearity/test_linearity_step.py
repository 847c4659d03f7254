"""LinearityLegendreStep end to end: Step.call, strun, bad reference files."""

import os
import subprocess
import sys

import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels.dqflags import pixel

from romanimpreprocess.datamodels import MissingReferenceError, ReferenceFileError
from romanimpreprocess.linearity import LinearityLegendreStep
from tests.conftest import make_raw_model
from tests.linearity.test_linearity import legendre_model, phi64

SIZE = 64


@pytest.fixture
def calibration(rng):
    smin, smax, sref, coeffs = legendre_model(rng, (SIZE, SIZE))
    return {"data": coeffs, "Smin": smin, "Smax": smax, "Sref": sref}


@pytest.fixture
def l1_in_range(tmp_path, calibration, rng):
    """L1 file whose resultants climb through the fitted range (integer DN)."""
    raw = make_raw_model(size=SIZE)
    nres = raw.data.shape[0]
    smin, smax = calibration["Smin"], calibration["Smax"]
    frac = np.linspace(0.05, 0.95, nres)[:, None, None]
    frac = frac + rng.uniform(-0.02, 0.02, (nres, SIZE, SIZE))
    raw.data = np.round(smin + frac * (smax - smin)).astype(np.uint16)
    path = tmp_path / "lin_uncal.asdf"
    raw.save(path)
    return str(path), raw.data.astype(np.float32)


def write_calibration(make_ref_file, calibration, dq=None, name="lin.asdf"):
    tree = dict(calibration)
    tree["dq"] = np.zeros((SIZE, SIZE), np.uint32) if dq is None else dq
    return make_ref_file(name, tree)


def test_call_linearises_with_override(l1_in_range, calibration, make_ref_file):
    l1, raw = l1_in_range
    dq = np.zeros((SIZE, SIZE), np.uint32)
    dq[:4, :] = pixel.REFERENCE_PIXEL
    ref = write_calibration(make_ref_file, calibration, dq=dq)
    result = LinearityLegendreStep.call(l1, override_linearitylegendre=ref)
    truth, _ = phi64(raw, calibration["Smin"], calibration["Smax"], calibration["data"])
    sref = calibration["Sref"]
    truth[:, :4, :] = raw[:, :4, :] - sref[:4, :]
    assert np.abs(result.data - truth).max() < 0.002
    assert result.data.dtype == np.float32
    assert np.all(result.pixeldq[:4] & pixel.REFERENCE_PIXEL)
    assert not np.any(result.pixeldq & pixel.NO_LIN_CORR)
    assert result.meta.cal_step.linearity == "COMPLETE"
    assert result.meta.ref_file["linearitylegendre"] == ref


def test_out_of_range_pixel_is_flagged(tmp_path, calibration, make_ref_file):
    raw = make_raw_model(size=SIZE)
    smin, smax = calibration["Smin"], calibration["Smax"]
    raw.data = np.round(np.broadcast_to((smin + smax) / 2, raw.data.shape)).astype(
        np.uint16
    )
    raw.data[3, 10, 12] = int(smax[10, 12]) + 500
    path = tmp_path / "oor_uncal.asdf"
    raw.save(path)
    ref = write_calibration(make_ref_file, calibration)
    result = LinearityLegendreStep.call(str(path), override_linearitylegendre=ref)
    flagged = np.argwhere(result.pixeldq & pixel.NO_LIN_CORR)
    np.testing.assert_array_equal(flagged, [[10, 12]])


def test_missing_reference_is_a_clear_error(make_l1_file):
    with pytest.raises(MissingReferenceError, match="override_linearitylegendre"):
        LinearityLegendreStep.call(make_l1_file(size=SIZE))


def test_wrong_shape_reference_is_rejected(make_l1_file, make_ref_file, rng):
    smin, smax, sref, coeffs = legendre_model(rng, (32, 32))
    ref = make_ref_file(
        "small.asdf",
        {"data": coeffs, "Smin": smin, "Smax": smax, "Sref": sref,
         "dq": np.zeros((32, 32), np.uint32)},
    )  # fmt: skip
    with pytest.raises(ReferenceFileError, match=r"shape .* does not match"):
        LinearityLegendreStep.call(
            make_l1_file(size=SIZE), override_linearitylegendre=ref
        )


def test_all_nan_reference_is_rejected(l1_in_range, calibration, make_ref_file):
    l1, _ = l1_in_range
    calibration["Smin"] = np.full((SIZE, SIZE), np.nan, np.float32)
    ref = write_calibration(make_ref_file, calibration)
    with pytest.raises(ReferenceFileError, match="no pixel has a usable calibration"):
        LinearityLegendreStep.call(l1, override_linearitylegendre=ref)


def test_strun(l1_in_range, calibration, make_ref_file, tmp_path):
    l1, raw = l1_in_range
    ref = write_calibration(make_ref_file, calibration)
    out = tmp_path / "out" / "lin.asdf"
    proc = strun(tmp_path, "rip_linearity", l1, f"--override_linearitylegendre={ref}",
                 f"--output_file={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rdm.open(out) as model:
        assert model.meta.cal_step.linearity == "COMPLETE"
        truth, _ = phi64(
            raw, calibration["Smin"], calibration["Smax"], calibration["data"]
        )
        assert np.abs(model.data - truth).max() < 0.002
    bad = make_ref_file("bad.asdf", {"data": calibration["data"]})
    out_bad = tmp_path / "out" / "bad.asdf"
    proc = strun(tmp_path, "rip_linearity", l1, f"--override_linearitylegendre={bad}",
                 f"--output_file={out_bad}")  # fmt: skip
    assert proc.returncode != 0
    assert "roman.Smin" in proc.stderr
    assert not out_bad.exists()


def strun(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS")}
    env["CRDS_SERVER_URL"] = "http://127.0.0.1:9"  # unreachable: CRDS must not be used
    env["CRDS_PATH"] = str(cwd / "no_crds")
    exe = os.path.join(os.path.dirname(sys.executable), "strun")
    return subprocess.run(
        [exe, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
