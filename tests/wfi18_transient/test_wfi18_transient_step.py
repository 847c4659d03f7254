"""WFI18TransientStep end to end: only WFI18, mask_rows, Step.call and strun."""

import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels.dqflags import group

from romanimpreprocess.dark_decay.dark_decay import frame_read_times
from romanimpreprocess.wfi18_transient import WFI18TransientStep
from tests.conftest import make_raw_model
from tests.linearity.test_linearity_step import strun
from tests.wfi18_transient.test_wfi18_transient import (
    FRAME_TIME,
    READ_PATTERN,
    TRUE,
    B,
    make_ramp,
)

SIZE = 128


@pytest.fixture
def transient_l1(tmp_path, rng):
    """Factory: an L1 file with the injected transient, for a given detector."""

    def _make(detector="WFI18"):
        data, clean, _ = make_ramp(rng, size=SIZE)
        raw = make_raw_model(
            size=SIZE, read_pattern=READ_PATTERN, frame_time=FRAME_TIME
        )
        raw.data = np.round(data).astype(np.uint16)
        raw.meta.instrument.detector = detector
        path = tmp_path / f"{detector}_uncal.asdf"
        raw.save(path)
        return str(path), raw.data.astype(np.float32), clean

    return _make


def injected():
    t = frame_read_times((SIZE, SIZE), FRAME_TIME, 18)[B:-B, B:-B]
    a, b, tau_a, tau_b = TRUE
    return a * np.exp(-t / tau_a) + b * np.exp(-t / tau_b)


def test_corrects_wfi18(transient_l1):
    l1, data, _ = transient_l1()
    result = WFI18TransientStep.call(l1)
    sci = (slice(B, -B), slice(B, -B))
    removed = data[0][sci] - result.data[0][sci]
    # The fit sees integer-rounded resultants (0.3 DN rms per row estimate).
    assert np.abs(injected()).max() > 5
    assert np.abs(removed - injected()).max() < 0.25
    np.testing.assert_array_equal(result.data[1:], data[1:])
    assert result.meta.cal_step.wfi18_transient == "COMPLETE"
    assert not result.groupdq.any()


def test_other_detector_is_skipped_unchanged(transient_l1):
    l1, data, _ = transient_l1("WFI07")
    result = WFI18TransientStep.call(l1)
    assert result.meta.cal_step.wfi18_transient == "SKIPPED"
    np.testing.assert_array_equal(result.data, data)
    assert not result.groupdq.any()


def test_mask_rows(transient_l1):
    l1, data, _ = transient_l1()
    result = WFI18TransientStep.call(l1, mask_rows=True)
    np.testing.assert_array_equal(result.data, data)
    flag = group.DO_NOT_USE | group.WFI18_TRANSIENT
    assert np.all(result.groupdq[0, :32] == flag)
    assert not result.groupdq[0, 32:].any()
    assert result.meta.cal_step.wfi18_transient == "COMPLETE"


def test_strun(transient_l1, tmp_path):
    l1, data, _ = transient_l1()
    out = tmp_path / "out" / "w18.asdf"
    proc = strun(tmp_path, "rip_wfi18_transient", l1, "--legacy_compat=True",
                 f"--output_file={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rdm.open(out) as model:
        assert model.meta.cal_step.wfi18_transient == "COMPLETE"
        sci = (slice(B, -B), slice(B, -B))
        assert np.abs(data[0][sci] - model.data[0][sci] - injected()).max() < 0.25
