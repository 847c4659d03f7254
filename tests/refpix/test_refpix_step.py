"""RefPixStep end to end on a small L1 file with dark and read-noise overrides."""

import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER
from romanimpreprocess.datamodels import ReferenceFileError
from romanimpreprocess.refpix import RefPixStep
from tests.conftest import make_raw_model
from tests.linearity.test_linearity_step import strun

SIZE = 64
B = REF_BORDER


@pytest.fixture
def l1_with_patterns(tmp_path, rng):
    """L1 with a common row pattern (science + amp33) and channel offsets."""
    raw = make_raw_model(size=SIZE)
    n = raw.data.shape[0]
    common = rng.normal(0, 30, (n, SIZE, 1))
    chan = np.repeat(rng.uniform(0, 400, (n, 1, N_CHANNELS)), SIZE // N_CHANNELS, -1)
    white = rng.normal(0, 2, (n, SIZE, SIZE))
    raw.data = np.round(10000 + common + chan + white).astype(np.uint16)
    amp = 5000 + common + rng.normal(0, 2, (n, SIZE, AMP33_WIDTH))
    raw.amp33 = np.round(amp).astype(np.uint16)
    path = tmp_path / "refpix_uncal.asdf"
    raw.save(path)
    return str(path), common


def references(make_ref_file, n, amp33=True, dark_value=0.0):
    dark = np.full((n + 1, SIZE, SIZE), dark_value, np.float32)
    dark_file = make_ref_file(
        "dark.asdf", {"data": dark, "dark_slope": np.zeros((SIZE, SIZE), np.float32)}
    )
    tree = {"data": np.full((SIZE, SIZE), 5.0, np.float32)}
    if amp33:
        tree["amp33"] = {
            "M_PINK": 1.0,
            "RU_PINK": 0.0,
            "std": np.full((SIZE, AMP33_WIDTH), 2.0, np.float32),
            "med": np.zeros((SIZE, AMP33_WIDTH), np.float32),
        }
        tree["anc"] = {"C_PINK": 10.0}
    return dark_file, make_ref_file("read.asdf", tree)


def row_scatter(data):
    sci = data[:, B:-B, B:-B].astype(np.float64)
    rows = sci.mean(axis=2)
    return np.std(rows - rows.mean(axis=1, keepdims=True), axis=1)


def test_call_removes_row_pattern(l1_with_patterns, make_ref_file):
    l1, common = l1_with_patterns
    dark, read = references(make_ref_file, common.shape[0])
    result = RefPixStep.call(l1, override_dark=dark, override_readnoise=read)
    assert result.meta.cal_step.refpix == "COMPLETE"
    with rdm.open(l1) as raw:
        before = row_scatter(raw.data)
    after = row_scatter(result.data)
    assert np.all(before > 20)
    assert np.all(after < 4 * 2 / np.sqrt(AMP33_WIDTH) + 0.3)
    chan = result.data[:, B:-B, :].reshape(-1, SIZE - 2 * B, N_CHANNELS, 2)
    assert np.abs(chan.mean(axis=(1, 3))).max() < 3.0


def test_no_amp33_model_channel_step_only(l1_with_patterns, make_ref_file):
    l1, common = l1_with_patterns
    dark, read = references(make_ref_file, common.shape[0], amp33=False)
    result = RefPixStep.call(l1, override_dark=dark, override_readnoise=read)
    assert np.all(np.isfinite(result.data))
    assert np.all(row_scatter(result.data) > 20)  # rows untouched
    assert result.meta.cal_step.refpix == "COMPLETE"


def test_wrong_shape_dark_names_file_and_field(l1_with_patterns, make_ref_file):
    l1, common = l1_with_patterns
    _, read = references(make_ref_file, common.shape[0])
    dark = np.zeros((common.shape[0], SIZE, SIZE + 8), np.float32)
    tree = {"data": dark, "dark_slope": np.zeros((SIZE, SIZE), np.float32)}
    bad = make_ref_file("baddark.asdf", tree)
    with pytest.raises(ReferenceFileError, match="baddark.asdf") as err:
        RefPixStep.call(l1, override_dark=bad, override_readnoise=read)
    assert "data" in str(err.value)


def test_strun(l1_with_patterns, make_ref_file, tmp_path):
    l1, common = l1_with_patterns
    dark, read = references(make_ref_file, common.shape[0])
    out = tmp_path / "out" / "refpix.asdf"
    proc = strun(tmp_path, "rip_refpix", l1, f"--override_dark={dark}",
                 f"--override_readnoise={read}", f"--output_file={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rdm.open(out) as model:
        assert model.meta.cal_step.refpix == "COMPLETE"
        assert np.all(row_scatter(model.data) < 1.0)


def test_threads_give_the_same_bits(l1_with_patterns, make_ref_file, monkeypatch):
    # resultants are corrected in threads (RIP_THREADS): same result as one by one
    l1, common = l1_with_patterns
    dark, read = references(make_ref_file, common.shape[0], dark_value=3.0)
    results = {}
    for threads in ("1", "3"):
        monkeypatch.setenv("RIP_THREADS", threads)
        results[threads] = RefPixStep.call(
            l1, override_dark=dark, override_readnoise=read
        ).data
    np.testing.assert_array_equal(results["1"], results["3"])
    with rdm.open(l1) as raw:
        assert not np.array_equal(results["1"], raw.data.astype(np.float32))
