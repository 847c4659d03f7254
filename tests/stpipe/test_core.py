"""RipStep/RipPipeline mechanics: offline references, parameters, output, atomicity."""

import os

import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.datamodels import MissingReferenceError
from romanimpreprocess.dq_init import DQInitStep
from romanimpreprocess.stpipe import RipStep, atomic_save
from romanimpreprocess.stpipe_entry import get_steps


class NeedsMaskStep(DQInitStep):
    """dq_init with the mask made required, to exercise the missing-reference error."""

    class_alias = "rip_test_needs_mask"
    optional_reference_types = ()


def test_missing_required_reference_names_step_reftype_and_flag(make_l1_file):
    with pytest.raises(MissingReferenceError) as err:
        NeedsMaskStep.call(make_l1_file())
    msg = str(err.value)
    assert "'mask'" in msg and "--override_mask" in msg and "rip_test_needs_mask" in msg


def test_missing_reference_path_is_a_clear_error(make_l1_file, tmp_path):
    with pytest.raises(FileNotFoundError):
        DQInitStep.call(make_l1_file(), override_mask=str(tmp_path / "nope.asdf"))


def test_get_pars_keeps_override_paths(tmp_path):
    step = DQInitStep(override_mask="/abs/mask.asdf")
    assert step.get_pars()["override_mask"] == "/abs/mask.asdf"
    out = tmp_path / "pars.asdf"
    step.export_config(str(out))
    reloaded = RipStep.from_config_file(str(out))
    assert isinstance(reloaded, DQInitStep)
    assert reloaded.override_mask == "/abs/mask.asdf"


def test_output_file_is_used_as_given(make_l1_file, tmp_path):
    out = tmp_path / "deep" / "dir" / "final.asdf"
    DQInitStep.call(make_l1_file(), override_mask="N/A", output_file=str(out))
    assert out.exists()
    with rdm.open(out) as model:
        assert model.meta.filename == "final.asdf"


class _Exploding:
    """A model whose save writes half a file and then fails."""

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")


def test_atomic_save_never_damages_existing_output(tmp_path):
    target = tmp_path / "out.asdf"
    target.write_bytes(b"previous good product")
    with pytest.raises(OSError, match="disk full"):
        atomic_save(_Exploding(), target)
    assert target.read_bytes() == b"previous good product"
    assert os.listdir(tmp_path) == ["out.asdf"]


def test_atomic_save_writes_final_name(make_l1_file, tmp_path):
    model = DQInitStep.call(make_l1_file(), override_mask="N/A")
    path = atomic_save(model, tmp_path / "x_dq_init.asdf")
    with rdm.open(path) as reread:
        np.testing.assert_array_equal(reread.data, model.data)
        assert reread.meta.filename == "x_dq_init.asdf"


def test_entry_point_aliases_are_prefixed_and_unique():
    steps = get_steps()
    aliases = [alias for _, alias, _ in steps]
    assert all(alias.startswith("rip_") for alias in aliases)
    assert len(set(aliases)) == len(aliases)
    assert sum(is_pipeline for _, _, is_pipeline in steps) == 1


def test_registered_classes_match_their_alias():
    """Every registered class that exists has the alias the entry point claims."""
    import importlib

    for class_name, alias, is_pipeline in get_steps():
        module_name, _, cls_name = class_name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # step not built yet
        cls = getattr(module, cls_name)
        assert cls.class_alias == alias
        assert cls.cal_step_key or is_pipeline
