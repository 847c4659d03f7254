"""DQInitStep end to end: strun, Step.call, overrides, cal_step, offline."""

import os
import subprocess
import sys

import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.datamodels import MissingReferenceError
from romanimpreprocess.dq_init import DQInitStep
from romanimpreprocess.dq_init import dq_init as algo

SIZE = 64


def _mask_tree(rng):
    dq = np.zeros((SIZE, SIZE), np.uint32)
    dq[:4, :] = dq[-4:, :] = dq[:, :4] = dq[:, -4:] = pixel.REFERENCE_PIXEL
    hot = rng.integers(4, SIZE - 4, size=(10, 2))
    dq[hot[:, 0], hot[:, 1]] |= pixel.HOT
    return {"dq": dq}


def test_call_with_mask_override(make_l1_file, make_ref_file, rng):
    l1 = make_l1_file(size=SIZE)
    tree = _mask_tree(rng)
    mask = make_ref_file("mask.asdf", tree)
    result = DQInitStep.call(l1, override_mask=mask)
    np.testing.assert_array_equal(result.pixeldq, tree["dq"])
    assert np.all(result.groupdq[0] & group.DO_NOT_USE)
    assert not np.any(result.groupdq[1:] & group.DO_NOT_USE)
    assert result.meta.cal_step.dq_init == "COMPLETE"
    assert result.meta.ref_file["mask"] == mask
    raw = rdm.open(l1)
    np.testing.assert_array_equal(result.data, raw.data.astype(np.float32))


def test_missing_mask_is_skipped_with_na(make_l1_file):
    result = DQInitStep.call(make_l1_file(), override_mask="N/A", exclude_first=False)
    assert result.meta.cal_step.dq_init == "SKIPPED"
    assert not np.any(result.groupdq)


def test_missing_required_reference_names_step_and_flag(make_l1_file):

    class NeedsMask(DQInitStep):
        optional_reference_types = ()

    with pytest.raises(MissingReferenceError, match=r"override_mask"):
        NeedsMask.call(make_l1_file())


def test_guide_window_flags_expanded_region():
    pixeldq = np.zeros((32, 32), np.uint32)
    assert algo.flag_guide_window(pixeldq, (10, 14, 20, 22), expand=1)
    assert np.all(pixeldq[:, 10:14] & pixel.GW_AFFECTED_DATA)
    inside = pixeldq[19:23, 9:15]
    assert np.all(inside & pixel.DO_NOT_USE)
    outside = pixeldq.copy()
    outside[19:23, 9:15] = 0
    assert not np.any(outside & pixel.DO_NOT_USE)
    assert not algo.flag_guide_window(pixeldq, (-1, -1, -1, -1))


def test_data_encoding_offset_and_reference_read_are_decoded(tmp_path):
    from tests.conftest import make_raw_model

    raw = make_raw_model(size=SIZE)
    truth = raw.data.astype(np.float32).copy()
    offset = 4000
    ref = raw.data[0].copy()
    raw.data = np.clip(raw.data.astype(np.int64) - ref + offset, 0, 65535).astype(
        np.uint16
    )
    raw.reference_read = ref
    raw.meta.instrument["data_encoding_offset"] = offset
    result = DQInitStep.call(raw, override_mask="N/A")
    np.testing.assert_array_equal(result.data, truth)


def test_strun_offline(make_l1_file, make_ref_file, rng, tmp_path):
    l1 = make_l1_file(size=SIZE)
    mask = make_ref_file("mask.asdf", _mask_tree(rng))
    out = tmp_path / "out" / "result.asdf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS")}
    env["CRDS_SERVER_URL"] = "http://127.0.0.1:9"  # unreachable: CRDS must not be used
    env["CRDS_PATH"] = str(tmp_path / "no_crds")
    strun = os.path.join(os.path.dirname(sys.executable), "strun")
    proc = subprocess.run(
        [strun, "rip_dq_init", l1, f"--override_mask={mask}", f"--output_file={out}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    assert "romanimpreprocess" in proc.stderr  # our loggers show under strun
    with rdm.open(out) as model:
        assert model.meta.cal_step.dq_init == "COMPLETE"
    assert not [p for p in os.listdir(out.parent) if p.startswith(".tmp")]


def test_strun_help_lists_parameters_and_overrides():
    strun = os.path.join(os.path.dirname(sys.executable), "strun")
    proc = subprocess.run(
        [strun, "rip_dq_init", "--help"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "--exclude_first" in proc.stdout
    assert "--override_mask" in proc.stdout
