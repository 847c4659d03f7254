"""SaturationStep end to end: Step.call with override, strun, bad reference file."""

import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels.dqflags import group

from romanimpreprocess.datamodels import ReferenceFileError
from romanimpreprocess.saturation import SaturationStep
from tests.linearity.test_linearity_step import strun

SIZE = 64


def threshold_file(make_ref_file, value=1500.0, name="sat.asdf"):
    thr = np.full((SIZE, SIZE), value, np.float32)
    return make_ref_file(name, {"data": thr, "dq": np.zeros((SIZE, SIZE), np.uint32)})


def test_call_flags_pixels_above_threshold(make_l1_file, make_ref_file):
    l1 = make_l1_file(size=SIZE)
    ref = threshold_file(make_ref_file)
    result = SaturationStep.call(
        l1, override_saturation=ref, n_pix_grow_sat=0, backup=0
    )
    with rdm.open(l1) as raw:
        above = np.maximum.accumulate(raw.data[1:].astype(np.float32) >= 1500.0, axis=0)
    sat = (result.groupdq[1:] & group.SATURATED) != 0
    assert np.array_equal(sat, above)
    assert not np.any(result.groupdq[0] & group.SATURATED)
    assert result.meta.cal_step.saturation == "COMPLETE"


def test_bad_reference_names_file_and_field(make_l1_file, make_ref_file):
    l1 = make_l1_file(size=SIZE)
    bad = make_ref_file("bad.asdf", {"data": np.ones((SIZE, SIZE + 8), np.float32)})
    with pytest.raises(ReferenceFileError, match="bad.asdf") as err:
        SaturationStep.call(l1, override_saturation=bad)
    assert "data" in str(err.value)


def test_strun(make_l1_file, make_ref_file, tmp_path):
    l1 = make_l1_file(size=SIZE)
    ref = threshold_file(make_ref_file, value=70000.0)
    out = tmp_path / "out" / "sat.asdf"
    proc = strun(tmp_path, "rip_saturation", l1, f"--override_saturation={ref}",
                 f"--output_file={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rdm.open(out) as model:
        assert model.meta.cal_step.saturation == "COMPLETE"
        assert not np.any(model.groupdq & group.SATURATED)
