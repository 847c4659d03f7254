"""The whole pipeline on a small simulated exposure, in all the ways users run it."""

import os
import shutil
import subprocess
import sys

import asdf
import numpy as np
import pytest
import roman_datamodels as rdm
import yaml
from roman_datamodels import dqflags

from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy

ARRAYS = ("data", "dq", "err", "var_poisson", "data_withsky")


@pytest.fixture(scope="module")
def legacy_run(simulated_set, tmp_path_factory):
    """The simulator's legacy YAML run through gen_cal_image (SKYORDER, FITSOUT on)."""
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    out_dir = tmp_path_factory.mktemp("legacy_run")
    config = legacy.load_config(simulated_set.config_yaml)
    config["OUT"] = str(out_dir / "sim_cal.asdf")
    config["SKYORDER"] = 1
    config["FITSOUT"] = True
    config["SLICEOUT"] = True
    cfg = out_dir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    gen_cal_image(config)
    return config, cfg


def _arrays(path):
    with rdm.open(path) as model:
        return {k: np.array(model[k]) for k in ARRAYS}


def test_gen_cal_image_writes_a_valid_l2_with_honest_cal_step(legacy_run):
    config, _ = legacy_run
    with rdm.open(config["OUT"]) as model:
        model.validate()
        cal_step = dict(model.meta.cal_step)
        for key in ("dq_init", "saturation", "refpix", "linearity", "ramp_fit"):
            assert cal_step[key] == "COMPLETE", (key, cal_step)
        for key in ("dark", "flat_field", "ipc", "sky"):
            assert cal_step[key] == "COMPLETE", (key, cal_step)
        assert not [k for k in cal_step if k.startswith("rip_")]
        assert model.data.shape == model.dq.shape
    with asdf.open(config["OUT"]) as af:
        info = af.tree["processinfo"]
        assert set(info["step_times"]) == set(L1ToL2Pipeline.step_defs)
        assert info["config"]["IN"] == config["IN"]
        assert info["skyorder"] == 1
        assert len(info["skycoefs"]) == 3
        assert "endslice" in info
    fits = config["OUT"][: -len(".asdf")] + "_asdf_to.fits"
    assert os.path.exists(fits)


def test_rate_matches_the_simulated_truth(legacy_run, simulated_set):
    """Good pixels: (data - true rate)/err has chi2/dof within 0.05 of 1."""
    config, _ = legacy_run
    with asdf.open(simulated_set.truth) as af:
        truth = {
            k: np.array(v) if hasattr(v, "shape") else v for k, v in af.tree.items()
        }
    with rdm.open(config["OUT"]) as model, asdf.open(config["OUT"]) as af:
        data_withsky = np.array(model.data_withsky, dtype=np.float64)
        err = np.array(model.err, dtype=np.float64)
        dq = np.array(model.dq)
        medsky = af.tree["processinfo"]["medsky"]
    expected = truth["rate_l2"]
    bad = dqflags.pixel.DO_NOT_USE | dqflags.pixel.JUMP_DET | dqflags.pixel.SATURATED
    good = ((dq & bad) == 0) & np.isfinite(err) & (err > 0)
    if "bad_pixels" in truth:
        good &= ~np.asarray(truth["bad_pixels"], bool)
    pull = (data_withsky - expected)[good] / err[good]
    chi2 = float(np.mean(pull**2))
    assert good.mean() > 0.8
    assert abs(chi2 - 1.0) < 0.05, chi2
    assert abs(np.median(pull)) < 0.05
    sky = float(truth["sky_rate_l2"])
    assert abs(medsky - sky) < 0.005 * sky, (medsky, sky)


def test_dead_pixels_of_the_mask_are_do_not_use_in_the_l2(legacy_run, simulated_set):
    """The simulator's mask flags DEAD alone; romancal's resample skips only DO_NOT_USE."""
    with asdf.open(simulated_set.caldir["mask"]) as af:
        mask_dq = np.array(af.tree["roman"]["dq"])[4:-4, 4:-4]
    dead = (mask_dq & dqflags.pixel.DEAD) != 0
    assert dead.any()
    assert not (mask_dq[dead] & dqflags.pixel.DO_NOT_USE).any()
    with rdm.open(legacy_run[0]["OUT"]) as model:
        dq = np.array(model.dq)
    assert ((dq[dead] & dqflags.pixel.DEAD) != 0).all()
    assert ((dq[dead] & dqflags.pixel.DO_NOT_USE) != 0).all()


def test_three_ways_give_identical_arrays(legacy_run, simulated_set, tmp_path):
    config, cfg = legacy_run
    reference = _arrays(config["OUT"])
    params = tmp_path / "params.asdf"
    assert legacy.convert_main([str(cfg), str(params)]) == 0

    out_call = tmp_path / "call_cal.asdf"
    L1ToL2Pipeline.call(
        config["IN"],
        config_file=str(params),
        output_file=str(out_call),
        save_results=True,
        configure_log=False,
    )
    out_strun = tmp_path / "strun_cal.asdf"
    strun = shutil.which("strun", path=os.path.dirname(sys.executable))
    proc = subprocess.run(
        [strun, str(params), config["IN"], f"--output_file={out_strun}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in (out_call, out_strun):
        other = _arrays(path)
        for key in ARRAYS:
            np.testing.assert_array_equal(other[key], reference[key], err_msg=key)


def test_strun_with_legacy_config(legacy_run, tmp_path):
    config, _ = legacy_run
    config = dict(config, OUT=str(tmp_path / "via_strun.asdf"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    strun = shutil.which("strun", path=os.path.dirname(sys.executable))
    proc = subprocess.run(
        [strun, "rip_l1l2", config["IN"], f"--legacy_config={cfg}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Step ramp_fit: COMPLETE" in proc.stderr
    reference = _arrays(legacy_run[0]["OUT"])
    other = _arrays(config["OUT"])
    np.testing.assert_array_equal(other["data"], reference["data"])


def test_skip_is_recorded_under_our_key(simulated_set, tmp_path):
    args = legacy.pipeline_args(legacy.load_config(simulated_set.config_yaml))
    steps = args.steps
    steps["sky"] = {**steps.get("sky", {}), "skip": True}
    steps["biascorr"] = {**steps.get("biascorr", {}), "skip": True}
    model = L1ToL2Pipeline.call(
        args.input, steps=steps, save_results=False, configure_log=False
    )
    cal_step = dict(model.meta.cal_step)
    assert cal_step["sky"] == "SKIPPED"
    assert cal_step["biascorr"] == "SKIPPED"
    assert cal_step["ramp_fit"] == "COMPLETE"
    assert "rip_sky" not in cal_step


def test_ramp_fit_cannot_be_skipped(simulated_set):
    args = legacy.pipeline_args(legacy.load_config(simulated_set.config_yaml))
    steps = args.steps
    steps["ramp_fit"] = {**steps["ramp_fit"], "skip": True}
    with pytest.raises(ValueError, match="ramp fit cannot be skipped"):
        L1ToL2Pipeline.call(args.input, steps=steps, configure_log=False)


def test_bad_references_are_reported_together_before_any_work(
    simulated_set, tmp_path, caplog
):
    args = legacy.pipeline_args(legacy.load_config(simulated_set.config_yaml))
    steps = args.steps
    # A reference of another exposure's geometry, and a required one missing.
    steps["linearity"]["override_linearitylegendre"] = steps["saturation"][
        "override_saturation"
    ]
    del steps["flatfield"]["override_flat"]
    out = tmp_path / "never.asdf"
    out.write_bytes(b"previous product")
    with pytest.raises(ValueError, match="problem") as info:
        L1ToL2Pipeline.call(
            args.input,
            steps=steps,
            output_file=str(out),
            save_results=True,
            configure_log=False,
        )
    text = str(info.value)
    assert "linearitylegendre" in text
    assert "override_flat" in text
    assert "Step dq_init" not in caplog.text
    assert out.read_bytes() == b"previous product"


def _processinfo_config(path):
    with asdf.open(path) as af:
        return af.tree["processinfo"]["config"]


def test_four_legacy_entry_points_agree(legacy_run, tmp_path):
    """gen_cal_image, gen_noise_image, strun --legacy_config and rip-batch: one path.

    The same YAML gives the same arrays and the same ``processinfo.config`` (the
    config as written) through each of them.
    """
    from romanimpreprocess.L1_to_L2 import gen_noise_image

    config, _ = legacy_run
    reference = _arrays(config["OUT"])
    bindir = os.path.dirname(sys.executable)
    outputs = {}

    noise_cfg = dict(config, OUT=str(tmp_path / "noise_entry_cal.asdf"))
    gen_noise_image.calibrateimage(noise_cfg)
    outputs["gen_noise_image"] = (noise_cfg["OUT"], noise_cfg)

    strun_cfg = dict(config, OUT=str(tmp_path / "strun_entry_cal.asdf"))
    (tmp_path / "strun.yaml").write_text(yaml.safe_dump(strun_cfg))
    proc = subprocess.run(
        [os.path.join(bindir, "strun"), "rip_l1l2", "--legacy_config=strun.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs["strun"] = (strun_cfg["OUT"], strun_cfg)

    batch_cfg = dict(config, OUT=str(tmp_path / "batch_entry_cal.asdf"))
    (tmp_path / "batch.yaml").write_text(yaml.safe_dump(batch_cfg))
    proc = subprocess.run(
        [os.path.join(bindir, "rip-batch"), "--serial", "--no-progress", "batch.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    outputs["rip-batch"] = (batch_cfg["OUT"], batch_cfg)

    for entry, (path, cfg) in outputs.items():
        assert os.path.exists(path), entry
        other = _arrays(path)
        for key in ARRAYS:
            np.testing.assert_array_equal(
                other[key], reference[key], err_msg=f"{entry}: {key}"
            )
        assert _processinfo_config(path) == cfg, entry
    # the FITS copy the YAML asks for (FITSOUT) comes out of every entry point
    for entry, (path, _) in outputs.items():
        assert os.path.exists(path[: -len(".asdf")] + "_asdf_to.fits"), entry
