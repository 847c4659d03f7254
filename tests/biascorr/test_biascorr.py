"""Bias correction: pure function and the step (override, skip, bad file)."""

import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.biascorr import BiasCorrStep
from romanimpreprocess.biascorr.biascorr import subtract_bias
from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.datamodels import ReferenceFileError

SIZE = 64
B = REF_BORDER


def test_subtract_uses_last_planes_science_only(rng):
    data = rng.normal(size=(3, 16, 16)).astype(np.float32)
    bias = rng.normal(size=(5, 16 - 2 * B, 16 - 2 * B)).astype(np.float32)
    out = data.copy()
    subtract_bias(out, bias, B)
    for j in range(3):
        truth = data[j].copy()
        truth[B:-B, B:-B] -= bias[2 + j]
        assert np.array_equal(out[j], truth)


def test_too_few_planes():
    with pytest.raises(ValueError, match="2 planes"):
        subtract_bias(np.zeros((3, 16, 16), np.float32), np.zeros((2, 8, 8)), B)


def test_step_with_override(make_l1_file, make_ref_file, rng):
    l1 = make_l1_file(size=SIZE)
    with rdm.open(l1) as raw:
        n = raw.data.shape[0]
        before = raw.data.astype(np.float32)
    s = SIZE - 2 * B
    bias = rng.normal(0, 5, (n + 1, s, s)).astype(np.float32)
    ref = make_ref_file("bias.asdf", {"data": bias})
    result = BiasCorrStep.call(l1, override_biascorr=ref)
    truth = before.copy()
    truth[:, B:-B, B:-B] -= bias[1:]
    np.testing.assert_allclose(result.data, truth, atol=1e-3)
    assert result.meta.cal_step.biascorr == "COMPLETE"


def test_step_skips_without_file(make_l1_file):
    l1 = make_l1_file(size=SIZE)
    with rdm.open(l1) as raw:
        before = raw.data.astype(np.float32)
    result = BiasCorrStep.call(l1, override_biascorr="N/A")
    assert np.array_equal(result.data, before)
    assert result.meta.cal_step.biascorr == "SKIPPED"


def test_nan_bias_names_file_and_field(make_l1_file, make_ref_file):
    l1 = make_l1_file(size=SIZE)
    s = SIZE - 2 * B
    bias = np.zeros((6, s, s), np.float32)
    bias[2, 3, 3] = np.nan
    bad = make_ref_file("nanbias.asdf", {"data": bias})
    with pytest.raises(ReferenceFileError, match="nanbias.asdf") as err:
        BiasCorrStep.call(l1, override_biascorr=bad)
    assert "data" in str(err.value)
