"""The legacy configuration mapping (pipeline/legacy.py) without running the pipeline."""

import subprocess
import sys

import asdf
import pytest
import yaml

from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy
from romanimpreprocess.pipeline.legacy import LegacyConfigError, pipeline_args

CALDIR = (
    "dark",
    "flat",
    "gain",
    "ipc4d",
    "linearitylegendre",
    "mask",
    "read",
    "saturation",
    "biascorr",
    "dark_decay",
    "photom",
)


@pytest.fixture
def config(tmp_path):
    """A complete legacy config whose files exist (empty: only existence is checked)."""
    from romanimpreprocess.simulate import SimulationConfig
    from romanimpreprocess.simulate.simulate import wcs_header

    for name in ("in.asdf", *(f"{k}.asdf" for k in CALDIR)):
        (tmp_path / name).write_text("")
    # the FITSWCS header is parsed up front, so it must be a real one
    wcs_header(SimulationConfig(size=64, seed=0), 56).tofile(tmp_path / "wcs.txt")
    return {
        "IN": str(tmp_path / "in.asdf"),
        "OUT": str(tmp_path / "out" / "cal.asdf"),
        "FITSWCS": str(tmp_path / "wcs.txt"),
        "CALDIR": {k: str(tmp_path / f"{k}.asdf") for k in CALDIR},
        "RAMP_OPT_PARS": {"slope": 0.4, "gain": 1.8, "sigma_read": 7.0},
        "JUMP_DETECT_PARS": {"SthreshA": 10.0, "IthreshA": 0.6, "IthreshB": 600.0},
        "EXCLUDE_FIRST": False,
        "SATURATION_BACKUP": 0,
        "SKYORDER": 2,
        "FITSOUT": True,
        "SLICEOUT": True,
        "LEGACY_COMPAT": True,
        "romancal_ramp_fit": True,
        "REJECTION_THRESHOLD": 5.0,
        "JUMP_KW": {"expand_large_events": True},
        "correct_wfi18_transient": True,
        "wfi18_mask_rows": True,
        "NOISE": {"LAYER": ["RP"], "SEED": 3, "OUT": "n.asdf", "TEMP": "t.asdf"},
    }


def test_every_key_lands_on_its_parameter(config, tmp_path):
    (tmp_path / "out").mkdir()
    args = pipeline_args(config)
    steps = args.steps
    assert args.input == config["IN"]
    assert args.output == config["OUT"]
    assert args.parameters == {
        "legacy_compat": True,
        "fits_output": True,
        "sliceout": True,
        "mask_output": False,
        "float32_errors": False,
    }
    # Every step gets every file of the reftypes it reads.
    for name, cls in L1ToL2Pipeline.step_defs.items():
        for reftype in cls.reference_file_types:
            assert steps[name][f"override_{reftype}"].endswith(".asdf"), (name, reftype)
    assert steps["refpix"]["override_readnoise"] == config["CALDIR"]["read"]
    assert (
        steps["dark_decay"]["override_darkdecaysignal"]
        == (config["CALDIR"]["dark_decay"])
    )
    assert steps["flatfield"]["wcs_header"] == config["FITSWCS"]
    assert steps["dq_init"]["exclude_first"] is False
    assert steps["ramp_fit"]["exclude_first"] is False
    assert steps["saturation"]["backup"] == 0
    assert steps["sky"]["order"] == 2
    assert steps["ramp_fit"]["algorithm"] == "likely"
    assert steps["ramp_fit"]["rejection_threshold"] == 5.0
    assert yaml.safe_load(steps["ramp_fit"]["jump_kw"]) == config["JUMP_KW"]
    assert steps["ramp_fit"]["opt_sigma_read"] == 7.0
    assert steps["ramp_fit"]["sthresh_a"] == 10.0
    assert steps["ramp_fit"]["ithresh_b"] == 600.0
    assert "sthresh_b" not in steps["ramp_fit"]  # missing sub-keys keep the default
    assert steps["wfi18_transient"] == {"skip": False, "mask_rows": True}


def test_maskout_asks_for_the_mask_file(config, tmp_path):
    (tmp_path / "out").mkdir()
    assert pipeline_args(config | {"MASKOUT": True}).parameters["mask_output"] is True
    with pytest.raises(LegacyConfigError, match="MASKOUT"):
        pipeline_args(config | {"MASKOUT": "yes"})


def test_float32_errors_key_keeps_the_float32_planes(config, tmp_path):
    (tmp_path / "out").mkdir()
    assert pipeline_args(config).parameters["float32_errors"] is False
    on = pipeline_args(config | {"FLOAT32_ERRORS": True})
    assert on.parameters["float32_errors"] is True
    with pytest.raises(LegacyConfigError, match="FLOAT32_ERRORS"):
        pipeline_args(config | {"FLOAT32_ERRORS": "yes"})


def test_optional_files_missing_become_not_applicable(config, tmp_path):
    (tmp_path / "out").mkdir()
    for key in ("mask", "biascorr", "dark_decay", "ipc4d", "photom"):
        del config["CALDIR"][key]
    for key in ("SKYORDER", "correct_wfi18_transient", "romancal_ramp_fit"):
        del config[key]
    steps = pipeline_args(config).steps
    assert steps["dq_init"]["override_mask"] == "N/A"
    assert steps["biascorr"]["override_biascorr"] == "N/A"
    assert steps["dark_decay"]["override_darkdecaysignal"] == "N/A"
    assert steps["ipc"]["override_ipc4d"] == "N/A"
    assert steps["photom"]["override_photom"] == "N/A"
    assert "order" not in steps.get("sky", {})
    assert steps["wfi18_transient"]["skip"] is True  # legacy default: not run
    assert "algorithm" not in steps["ramp_fit"]


def test_relative_paths_resolve_against_base_dir(config, tmp_path):
    (tmp_path / "out").mkdir()
    config["IN"] = "in.asdf"
    config["CALDIR"]["dark"] = "dark.asdf"
    args = pipeline_args(config, base_dir=str(tmp_path))
    assert args.input == str(tmp_path / "in.asdf")
    assert args.steps["dark_current"]["override_dark"] == str(tmp_path / "dark.asdf")


def test_every_mistake_is_reported_at_once(config, tmp_path):
    config["SKYORDR"] = 2  # misspelt
    del config["CALDIR"]["flat"]  # required
    config["CALDIR"]["gain"] = str(tmp_path / "nowhere.asdf")  # missing file
    config["CALDIR"]["lineraity"] = "x"  # unknown CALDIR key
    config["EXCLUDE_FIRST"] = "yes"  # wrong type
    config["RAMP_OPT_PARS"] = {"slope": 0.4, "gain": 1.8}  # missing sub-key
    config["JUMP_DETECT_PARS"]["SThreshB"] = 4.0  # misspelt sub-key
    config["OUT"] = str(tmp_path / "out.fits")  # must end in .asdf
    del config["IN"]
    with pytest.raises(LegacyConfigError) as info:
        pipeline_args(config, source="cfg.yaml")
    problems = info.value.problems
    text = str(info.value)
    assert "cfg.yaml" in text
    assert len(problems) == 9, problems
    for expected in (
        "SKYORDR: unknown key (did you mean 'SKYORDER'?)",
        "CALDIR.flat: required entry is missing",
        f"CALDIR.gain: file not found: {tmp_path / 'nowhere.asdf'}",
        "CALDIR.lineraity: unknown key (did you mean 'linearitylegendre'?)",
        "EXCLUDE_FIRST: expected bool",
        "RAMP_OPT_PARS.sigma_read: missing",
        "JUMP_DETECT_PARS.SThreshB: unknown key (did you mean 'SthreshB'?)",
        "OUT: must end in '.asdf'",
        "IN: required key is missing",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("SKYORDER", -1, "SKYORDER: must be 0..9"),
        ("SATURATION_BACKUP", 1.5, "SATURATION_BACKUP: expected int"),
        ("JUMP_DETECT_PARS", {"IthreshA": 5.0, "IthreshB": 5.0}, "must be below"),
        ("JUMP_KW", {"expand_larg_events": True}, "did you mean 'expand_large_events'"),
        ("NOISE_PRECISION", 64, "NOISE_PRECISION: must be 16 or 32"),
        ("CALDIR", ["dark.asdf"], "CALDIR: expected mapping"),
    ],
)
def test_bad_values_name_key_and_problem(config, tmp_path, key, value, message):
    (tmp_path / "out").mkdir()
    config[key] = value
    with pytest.raises(LegacyConfigError, match=message):
        pipeline_args(config)


def test_output_directory_must_exist(config):
    with pytest.raises(LegacyConfigError, match="OUT: directory does not exist"):
        pipeline_args(config)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.yaml: file not found"):
        legacy.load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("IN: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        legacy.load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(LegacyConfigError, match="mapping"):
        legacy.load_config(scalar)


def test_converter_writes_a_parameter_file_that_reproduces_the_run(config, tmp_path):
    (tmp_path / "out").mkdir()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    params = tmp_path / "params.asdf"
    assert legacy.convert_main([str(cfg), str(params)]) == 0
    with asdf.open(params) as af:
        assert af.tree["parameters"]["output_file"] == config["OUT"]
    pipe = L1ToL2Pipeline.from_config_file(str(params))
    assert pipe.legacy_compat is True
    assert pipe.fits_output is True
    assert pipe.sky.order == 2
    assert pipe.ramp_fit.algorithm == "likely"
    assert (
        pipe.linearity.override_linearitylegendre
        == (config["CALDIR"]["linearitylegendre"])
    )
    assert pipe.ramp_fit.override_readnoise == config["CALDIR"]["read"]
    assert pipe.flatfield.wcs_header == config["FITSWCS"]


def test_converter_reports_problems_and_writes_nothing(config, tmp_path, capsys):
    config["SKYORDR"] = 1
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    params = tmp_path / "params.asdf"
    assert legacy.convert_main([str(cfg), str(params)]) == 2
    assert not params.exists()
    err = capsys.readouterr().err
    assert "SKYORDR" in err
    assert "cfg.yaml" in err


def test_gen_cal_image_is_a_callable_module_and_a_script(config, tmp_path):
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    assert callable(gen_cal_image)
    assert callable(gen_cal_image.calibrateimage)
    config["SKYORDR"] = 1
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with pytest.raises(LegacyConfigError, match="SKYORDR"):
        gen_cal_image(config)
    proc = subprocess.run(
        [sys.executable, "-m", "romanimpreprocess.L1_to_L2.gen_cal_image", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "SKYORDR: unknown key" in proc.stderr
    assert "RuntimeWarning" not in proc.stderr
    assert not (tmp_path / "out" / "cal.asdf").exists()
