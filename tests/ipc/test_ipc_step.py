"""IPCStep end to end: Step.call, strun, skip without ipc4d, bad reference files."""

import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels.dqflags import pixel

from romanimpreprocess.datamodels import MissingReferenceError, ReferenceFileError
from romanimpreprocess.ipc import IPCStep
from tests.conftest import make_raw_model
from tests.ipc.test_ipc import forward_brute, random_kernel
from tests.linearity.test_linearity_step import strun

SIZE = 64
B = 4


@pytest.fixture
def kernel(rng):
    return random_kernel(rng, (SIZE - 2 * B, SIZE - 2 * B), 0.006).astype(np.float32)


@pytest.fixture
def gain(rng):
    return rng.uniform(1.4, 1.6, (SIZE, SIZE))


@pytest.fixture
def convolved_l1(tmp_path, kernel, gain, rng):
    """L1 whose science area is a smooth scene convolved with the kernel (in e)."""
    raw = make_raw_model(size=SIZE)
    nres = raw.data.shape[0]
    sci = (slice(B, SIZE - B), slice(B, SIZE - B))
    scene = rng.uniform(2000, 6000, (nres, SIZE, SIZE))
    scene[:, 30, 30] += 20000  # a bright pixel with visible IPC wings
    data = scene.copy()
    g = gain[sci]
    for i in range(nres):
        data[i][sci] = forward_brute(scene[i][sci] * g, kernel.astype(np.float64)) / g
    raw.data = np.round(data).astype(np.uint16)
    path = tmp_path / "ipc_uncal.asdf"
    raw.save(path)
    return str(path), raw.data.astype(np.float64), scene


def write_refs(make_ref_file, kernel, gain):
    return (
        make_ref_file("ipc4d.asdf", {"data": kernel}),
        make_ref_file("gain.asdf", {"data": gain}),
    )


def test_call_deconvolves_with_overrides(convolved_l1, kernel, gain, make_ref_file):
    l1, data, scene = convolved_l1
    kpath, gpath = write_refs(make_ref_file, kernel, gain)
    result = IPCStep.call(l1, override_ipc4d=kpath, override_gain=gpath)
    sci = (slice(None), slice(B, SIZE - B), slice(B, SIZE - B))
    # Deconvolution gives back the scene minus the iteration remainder
    # (1 - F)^3 (g scene) / g, up to the rounding of the uint16 input (0.5 DN, spread
    # by R whose weights sum to ~1.5).
    k64 = kernel.astype(np.float64)
    g = gain[sci[1:]]
    predicted = scene[sci].copy()
    for i in range(predicted.shape[0]):
        rem = scene[sci][i] * g
        for _ in range(3):
            rem = rem - forward_brute(rem, k64)
        predicted[i] -= rem / g
    assert np.abs(result.data[sci] - predicted).max() < 1.0
    # The bright pixel: its IPC loss is far above that, and is undone.
    bright = (slice(None), 30, 30)
    assert np.abs(data[bright] - scene[bright]).min() > 500
    assert np.abs(predicted[:, 30 - B, 30 - B] - scene[bright]).max() < 10
    np.testing.assert_array_equal(  # reference pixels untouched
        result.data[:, :B, :], data[:, :B, :].astype(np.float32)
    )
    assert result.meta.cal_step["ipc"] == "COMPLETE"
    assert result.meta.ref_file["ipc4d"] == kpath
    assert result.meta.ref_file["gain"] == gpath


def test_iterations_parameter_changes_the_residual(
    convolved_l1, kernel, gain, make_ref_file
):
    l1, _, scene = convolved_l1
    kpath, gpath = write_refs(make_ref_file, kernel, gain)
    sci = (slice(None), slice(B, SIZE - B), slice(B, SIZE - B))
    errors = []
    for k in (0, 1, 2):
        result = IPCStep.call(
            l1, override_ipc4d=kpath, override_gain=gpath, iterations=k
        )
        errors.append(np.abs(result.data[sci] - scene[sci])[:, 22:30, 22:30].max())
    assert errors[0] > errors[1] > errors[2]


def test_no_kernel_skips(make_l1_file):
    l1 = make_l1_file(size=SIZE)
    result = IPCStep.call(l1, override_ipc4d="N/A")
    assert result.meta.cal_step["ipc"] == "SKIPPED"
    with rdm.open(l1) as raw:
        np.testing.assert_array_equal(result.data, raw.data.astype(np.float32))


def test_gain_required_with_kernel(make_l1_file, make_ref_file, kernel):
    kpath = make_ref_file("ipc4d.asdf", {"data": kernel})
    with pytest.raises(MissingReferenceError, match="override_gain"):
        IPCStep.call(make_l1_file(size=SIZE), override_ipc4d=kpath)


def test_nan_in_kernel_is_rejected(make_l1_file, make_ref_file, kernel, gain):
    kernel[0, 1, 3, 3] = np.nan
    kpath, gpath = write_refs(make_ref_file, kernel, gain)
    with pytest.raises(ReferenceFileError, match="non-finite"):
        IPCStep.call(make_l1_file(size=SIZE), override_ipc4d=kpath, override_gain=gpath)


def test_wrong_shape_kernel_is_rejected(make_l1_file, make_ref_file, gain):
    kpath, gpath = write_refs(make_ref_file, np.zeros((3, 3, 50, 50), np.float32), gain)
    with pytest.raises(ReferenceFileError, match="shape"):
        IPCStep.call(make_l1_file(size=SIZE), override_ipc4d=kpath, override_gain=gpath)


def test_low_gain_flagged_by_default_not_in_legacy_mode(
    make_l1_file, make_ref_file, kernel, gain
):
    gain[20, 21] = 0.05
    kpath, gpath = write_refs(make_ref_file, kernel, gain)
    l1 = make_l1_file(size=SIZE)
    result = IPCStep.call(l1, override_ipc4d=kpath, override_gain=gpath)
    flagged = np.argwhere(result.pixeldq & pixel.NO_GAIN_VALUE)
    np.testing.assert_array_equal(flagged, [[20, 21]])
    legacy = IPCStep.call(
        l1, override_ipc4d=kpath, override_gain=gpath, legacy_compat=True
    )
    assert not np.any(legacy.pixeldq & pixel.NO_GAIN_VALUE)
    # Away from the clipped pixel both modes agree to float32 rounding.
    far = (slice(None), slice(30, 60), slice(30, 60))
    np.testing.assert_allclose(result.data[far], legacy.data[far], rtol=1e-6)


def test_strun(convolved_l1, kernel, gain, make_ref_file, tmp_path):
    l1, _, scene = convolved_l1
    kpath, gpath = write_refs(make_ref_file, kernel, gain)
    out = tmp_path / "out" / "ipc.asdf"
    proc = strun(tmp_path, "rip_ipc", l1, f"--override_ipc4d={kpath}",
                 f"--override_gain={gpath}", "--iterations=2",
                 f"--output_file={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rdm.open(out) as model:
        assert model.meta.cal_step["ipc"] == "COMPLETE"
        bright = (slice(None), 30, 30)
        assert np.abs(model.data[bright] - scene[bright]).max() < 10
