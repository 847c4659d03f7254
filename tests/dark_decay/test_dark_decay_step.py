"""DarkDecayStep end to end: Step.call, strun, optional reference, bad tables."""

import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.dark_decay import DarkDecayStep
from romanimpreprocess.datamodels import ReferenceFileError
from tests.conftest import SMALL_READ_PATTERN
from tests.dark_decay.test_dark_decay import brute_read_time
from tests.linearity.test_linearity_step import strun

SIZE = 64
FRAME_TIME = 3.04  # conftest default


def decay_table(**overrides):
    table = {
        f"WFI{n:02d}": {"amplitude": 1.0 + n / 10, "time_constant": 2.0 + n / 5}
        for n in range(1, 19)
    }
    table.update(overrides)
    return {"decay_table": table}


def expected_signal(detector_number, amplitude, tau):
    t0 = np.array(
        [[brute_read_time(y, x, (SIZE, SIZE), FRAME_TIME, detector_number)
          for x in range(SIZE)] for y in range(SIZE)]
    )  # fmt: skip
    return np.stack(
        [
            np.mean(
                [amplitude * np.exp(-(t0 + (r - 1.5) * FRAME_TIME) / tau) for r in rp],
                axis=0,
            )
            for rp in SMALL_READ_PATTERN
        ]
    )


def test_call_subtracts_the_detector_entry(make_l1_file, make_ref_file):
    l1 = make_l1_file(size=SIZE)
    ref = make_ref_file("decay.asdf", decay_table())
    result = DarkDecayStep.call(l1, override_darkdecaysignal=ref)
    with rdm.open(l1) as raw:
        before = raw.data.astype(np.float64)
    # conftest's exposure is WFI01: amplitude 1.1 DN, time constant 2.2 s
    np.testing.assert_allclose(
        before - result.data, expected_signal(1, 1.1, 2.2), rtol=0, atol=2e-4
    )
    assert result.meta.cal_step.dark_decay == "COMPLETE"
    assert result.meta.ref_file["darkdecaysignal"] == ref


def test_without_reference_is_skipped(make_l1_file):
    l1 = make_l1_file(size=SIZE)
    result = DarkDecayStep.call(l1)
    assert result.meta.cal_step.dark_decay == "SKIPPED"
    with rdm.open(l1) as raw:
        np.testing.assert_array_equal(result.data, raw.data.astype(np.float32))


def test_missing_detector_entry_is_a_clear_error(make_l1_file, make_ref_file):
    table = decay_table()
    del table["decay_table"]["WFI01"]
    ref = make_ref_file("decay.asdf", table)
    with pytest.raises(ReferenceFileError, match=r"decay_table\.WFI01.*no entry"):
        DarkDecayStep.call(make_l1_file(size=SIZE), override_darkdecaysignal=ref)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"amplitude": 1.0, "time_constant": 0.0}, "time constant"),
        ({"amplitude": float("nan"), "time_constant": 2.0}, "amplitude"),
        ({"amplitude": 1.0}, "time_constant"),
    ],
)
def test_bad_entry_is_a_clear_error(make_l1_file, make_ref_file, entry, match):
    ref = make_ref_file("decay.asdf", decay_table(WFI01=entry))
    with pytest.raises(ReferenceFileError, match=match):
        DarkDecayStep.call(make_l1_file(size=SIZE), override_darkdecaysignal=ref)


def test_unknown_detector_is_a_clear_error(make_ref_file):
    from romanimpreprocess.datamodels import raw_to_ramp
    from tests.conftest import make_raw_model

    ramp = raw_to_ramp(make_raw_model(size=SIZE))
    ramp.meta.instrument.detector = "WFI19"
    ref = make_ref_file("decay.asdf", decay_table())
    with pytest.raises(ValueError, match="unknown detector"):
        DarkDecayStep.call(ramp, override_darkdecaysignal=ref)


def test_strun(make_l1_file, make_ref_file, tmp_path):
    l1 = make_l1_file(size=SIZE)
    ref = make_ref_file("decay.asdf", decay_table())
    out = tmp_path / "out" / "decay.asdf"
    proc = strun(tmp_path, "rip_dark_decay", l1, f"--override_darkdecaysignal={ref}",
                 f"--output_file={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rdm.open(out) as model, rdm.open(l1) as raw:
        assert model.meta.cal_step.dark_decay == "COMPLETE"
        np.testing.assert_allclose(
            raw.data.astype(np.float64) - model.data,
            expected_signal(1, 1.1, 2.2),
            rtol=0,
            atol=2e-4,
        )
