"""Hostile inputs, round 2: nothing silently wrong, nothing lost.

Each case breaks one thing the way a user could, runs the command a user would run
(``python -m ...gen_cal_image``, ``gen_noise_image``, ``strun``, ``rip-legacy-to-asdf``)
and checks three things: the exit code, a message naming the file or key and the
problem (never a traceback), and that every file that existed before the run is
byte-identical afterwards. Configuration problems must be found before any step runs.

Classes (issue 18): 2 no input overwritten, 7 config problems up front, 8 no traceback
for a user error. The documented commands (class 1) are in test_documented_commands.py.
"""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import yaml

BIN = os.path.dirname(sys.executable)
STEP_STARTED = "Step dq_init running"


# ------------------------------------------------------------------ fixtures
class Workspace:
    """Private copies of the simulated set and a legacy config pointing at them."""

    def __init__(self, simulated_set, root):
        self.root = root
        self.data = root / "data"
        self.out = root / "out"
        self.data.mkdir()
        self.out.mkdir()
        shutil.copy(simulated_set.l1, self.data / "in_uncal.asdf")
        shutil.copy(simulated_set.wcs_header, self.data / "wcs.txt")
        caldir = {}
        for key, path in simulated_set.caldir.items():
            target = self.data / os.path.basename(path)
            shutil.copy(path, target)
            caldir[key] = str(target)
        with open(simulated_set.config_yaml) as f:
            self.config = yaml.safe_load(f)
        self.config.update(
            IN=str(self.data / "in_uncal.asdf"),
            OUT=str(self.out / "out_cal.asdf"),
            FITSWCS=str(self.data / "wcs.txt"),
            CALDIR=caldir,
        )
        self.config_path = self.data / "config.yaml"

    def noise(self, **changes):
        block = {
            "LAYER": ["RS2"],
            "TEMP": str(self.out / "temp.asdf"),
            "SEED": 7,
            "OUT": str(self.out / "noise.asdf"),
        }
        block.update(changes)
        self.config["NOISE"] = block

    def write_config(self, text=None):
        if text is None:
            text = yaml.safe_dump(self.config)
        if isinstance(text, bytes):
            self.config_path.write_bytes(text)
        else:
            self.config_path.write_text(text)
        return self.config_path

    def snapshot(self):
        """sha256 of every file under the workspace."""
        digests = {}
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                if os.path.islink(path):
                    continue
                with open(path, "rb") as f:
                    digests[path] = hashlib.sha256(f.read()).hexdigest()
        return digests

    def run(self, argv, **kwargs):
        env = dict(os.environ, STPIPE_DISABLE_CRDS_STEPPARS="true")
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            env=env,
            **kwargs,
        )

    def gen_cal_image(self):
        self.write_config()
        return self.run(
            [
                sys.executable,
                "-m",
                "romanimpreprocess.L1_to_L2.gen_cal_image",
                str(self.config_path),
            ]
        )

    def gen_noise_image(self):
        self.write_config()
        return self.run(
            [
                sys.executable,
                "-m",
                "romanimpreprocess.L1_to_L2.gen_noise_image",
                str(self.config_path),
            ]
        )

    def strun(self, *args):
        return self.run([os.path.join(BIN, "strun"), *map(str, args)])


@pytest.fixture
def ws(simulated_set, tmp_path):
    return Workspace(simulated_set, tmp_path)


def expect_failure(ws, run, code, *expected, before_work=True):
    """Run ``run()``: exit ``code`` (or any non-zero for None), every text of
    ``expected`` in its message, no traceback, every existing file unchanged."""
    existing = ws.out / "out_cal.asdf"
    if not existing.exists():
        existing.write_bytes(b"previous product, must survive")
    before = ws.snapshot()
    proc = run()
    message = proc.stderr + proc.stdout
    if code is None:
        assert proc.returncode != 0, message[-3000:]
    else:
        assert proc.returncode == code, (proc.returncode, message[-3000:])
    for text in expected:
        assert str(text) in message, (text, message[-3000:])
    if code is not None:  # our own command lines: one message, no traceback
        assert "Traceback" not in proc.stderr, message[-3000:]
    after = ws.snapshot()
    changed = [p for p in before if after.get(p) != before[p]]
    assert not changed, f"files changed: {changed}"
    if before_work:
        assert STEP_STARTED not in message, "a step ran before the problem was reported"
    return message


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------ class 2: no input overwritten
def test_out_naming_a_calibration_file_is_refused(ws):
    gain = ws.config["CALDIR"]["gain"]
    ws.config["OUT"] = gain
    message = expect_failure(ws, ws.gen_cal_image, 2, "OUT", gain, "CALDIR.gain")
    assert "would be overwritten" in message


def test_out_a_symbolic_link_to_the_input_is_refused(ws):
    link = ws.out / "link_cal.asdf"
    link.symlink_to(ws.config["IN"])
    ws.config["OUT"] = str(link)
    expect_failure(ws, ws.gen_cal_image, 2, "OUT", "is IN")


def test_out_a_hard_link_to_the_mask_is_refused(ws):
    link = ws.out / "hard_cal.asdf"
    os.link(ws.config["CALDIR"]["mask"], link)
    ws.config["OUT"] = str(link)
    expect_failure(ws, ws.gen_cal_image, 2, "OUT", "CALDIR.mask")


def test_fits_copy_naming_a_calibration_file_is_refused(ws):
    flat = ws.out / "out_cal_asdf_to.fits"  # an ASDF flat with an unlucky name
    shutil.copy(ws.config["CALDIR"]["flat"], flat)
    ws.config["CALDIR"]["flat"] = str(flat)
    ws.config["FITSOUT"] = True
    expect_failure(ws, ws.gen_cal_image, 2, "OUT (FITS copy)", "CALDIR.flat")


def test_out_naming_the_config_itself_is_refused(ws):
    ws.config_path = ws.data / "run.asdf"
    ws.config["OUT"] = str(ws.config_path)
    expect_failure(ws, ws.gen_cal_image, 2, "OUT", "the config file itself")


def test_noise_out_naming_the_input_is_refused(ws):
    ws.noise(OUT=ws.config["IN"])
    expect_failure(ws, ws.gen_noise_image, 2, "NOISE.OUT", "is IN")


def test_noise_temp_naming_the_dark_is_refused(ws):
    dark = ws.config["CALDIR"]["dark"]
    ws.noise(TEMP=dark)
    expect_failure(ws, ws.gen_noise_image, 2, "NOISE.TEMP", "CALDIR.dark")


def test_noise_out_equal_to_out_is_refused(ws):
    ws.noise(OUT=ws.config["OUT"])
    expect_failure(ws, ws.gen_noise_image, 2, "NOISE.OUT", "also OUT")


def test_strun_output_file_naming_a_reference_is_refused(ws):
    cfg = ws.write_config()
    gain = ws.config["CALDIR"]["gain"]
    expect_failure(
        ws,
        lambda: ws.strun("rip_l1l2", f"--legacy_config={cfg}", f"--output_file={gain}"),
        None,
        "output_file",
        "override_gain",
        "nothing was processed",
    )


def test_single_step_output_naming_its_reference_is_refused(ws):
    mask = ws.config["CALDIR"]["mask"]
    expect_failure(
        ws,
        lambda: ws.strun(
            "rip_dq_init",
            ws.config["IN"],
            f"--override_mask={mask}",
            f"--output_file={mask}",
        ),
        None,
        mask,
        "override_mask",
        before_work=False,
    )


def test_parameter_file_naming_a_reference_is_refused(ws):
    cfg = ws.write_config()
    gain = ws.config["CALDIR"]["gain"]
    expect_failure(
        ws,
        lambda: ws.run([os.path.join(BIN, "rip-legacy-to-asdf"), str(cfg), gain]),
        2,
        gain,
        "would be overwritten",
    )


def test_asdf_and_fits_copy_are_replaced_together(ws):
    """The second rename fails: the first is undone, the old pair stays a pair."""
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    ws.config["FITSOUT"] = True
    asdf_path = ws.out / "out_cal.asdf"
    fits_path = ws.out / "out_cal_asdf_to.fits"
    asdf_path.write_bytes(b"old asdf")
    fits_path.write_bytes(b"old fits")
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.fspath(dst) == str(asdf_path):
            raise OSError(errno.EIO, "I/O error", os.fspath(dst))
        return real_replace(src, dst, *args, **kwargs)

    with mock.patch("os.replace", side_effect=replace), pytest.raises(OSError) as info:
        gen_cal_image.calibrateimage(ws.config, verbose=False)
    assert str(asdf_path) in str(info.value)
    assert asdf_path.read_bytes() == b"old asdf"
    assert fits_path.read_bytes() == b"old fits"
    assert sorted(os.listdir(ws.out)) == ["out_cal.asdf", "out_cal_asdf_to.fits"]


def test_full_disk_names_the_path(ws, capsys):
    from romanimpreprocess.datamodels import l2
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    cfg = ws.write_config()
    existing = ws.out / "out_cal.asdf"
    existing.write_bytes(b"previous")

    def full(model, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(l2, "_write_asdf", side_effect=full):
        code = gen_cal_image.main([str(cfg)])
    err = capsys.readouterr().err
    assert code == 1
    assert str(existing) in err and "No space left on device" in err
    assert existing.read_bytes() == b"previous"


# ---------------------------------------------- class 7: config problems up front
def test_duplicate_key_is_an_error(ws):
    text = yaml.safe_dump(ws.config) + f"OUT: {ws.out / 'second_cal.asdf'}\n"
    ws.write_config(text)
    expect_failure(ws, _cli(ws), 2, str(ws.config_path), "'OUT' is given twice")


def _cli(ws):
    return lambda: ws.run(
        [
            sys.executable,
            "-m",
            "romanimpreprocess.L1_to_L2.gen_cal_image",
            str(ws.config_path),
        ]
    )


def test_alias_expansion_is_bounded(ws):
    text = yaml.safe_dump(ws.config)
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdef":
        prev = chr(ord(level) - 1)
        bomb.append(
            f"{level}: &{level} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]"
        )
    bomb.append("JUMP_KW: {expand_large_events: false, note: *f}")
    ws.write_config(text + "\n".join(bomb) + "\n")
    expect_failure(ws, _cli(ws), 2, str(ws.config_path), "expands to more than")


def test_non_utf8_config_names_the_file(ws):
    ws.write_config(yaml.safe_dump(ws.config).encode() + b"# caf\xe9\n")
    expect_failure(ws, _cli(ws), 2, str(ws.config_path), "not UTF-8")


def test_an_exposure_given_as_the_config(ws):
    ws.config_path = ws.data / "in_uncal.asdf"
    expect_failure(ws, _cli(ws), 2, str(ws.config_path))


def test_config_that_is_a_directory(ws):
    ws.config_path = ws.data
    expect_failure(ws, _cli(ws), 2, str(ws.data), "is a directory")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SKYORDER": 200}, "SKYORDER: must be 0..9"),
        ({"JUMP_DETECT_PARS": {"SthreshA": float("nan")}}, "expected a finite number"),
        (
            {"JUMP_DETECT_PARS": {"SthreshA": 0.0}},
            "SthreshA: a jump threshold must be > 0",
        ),
        (
            {"RAMP_OPT_PARS": {"slope": 0.4, "gain": float("inf"), "sigma_read": 6.5}},
            "RAMP_OPT_PARS.gain",
        ),
        ({"REJECTION_THRESHOLD": -1.0}, "REJECTION_THRESHOLD: must be > 0"),
        ({"SATURATION_BACKUP": 10**6}, "SATURATION_BACKUP: must be 0..16"),
        ({"NOISE": {"LAYER": ["RS2"]}}, "NOISE.SEED: required entry is missing"),
    ],
    ids=[
        "skyorder",
        "nan-threshold",
        "zero-threshold",
        "inf-gain",
        "rejection",
        "backup",
        "noise",
    ],
)
def test_out_of_range_values_before_any_work(ws, change, expected):
    ws.config.update(change)
    ws.write_config()
    expect_failure(ws, _cli(ws), 2, str(ws.config_path), expected)


def test_fitswcs_problem_is_named_as_the_wcs_header(ws):
    with open(ws.config["FITSWCS"], "w") as f:
        f.write("this is not a FITS header\n")
    ws.write_config()
    message = expect_failure(
        ws, _cli(ws), 2, "FITSWCS", "WCS header file", ws.config["FITSWCS"]
    )
    assert "input exposure" not in message


def test_out_an_existing_directory(ws):
    directory = ws.out / "product.asdf"
    directory.mkdir()
    ws.config["OUT"] = str(directory)
    ws.write_config()
    expect_failure(ws, _cli(ws), 2, "OUT: is an existing directory")


def test_every_config_problem_reported_at_once(ws):
    ws.config["SKYORDER"] = 50
    ws.config["OUT"] = ws.config["CALDIR"]["read"]
    ws.config["JUMP_DETECT_PARS"] = {"IthreshA": 5.0, "IthreshB": 1.0}
    ws.write_config()
    expect_failure(ws, _cli(ws), 2, "3 problems", "SKYORDER", "CALDIR.read", "IthreshA")


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--steps.sky.order=200", "order"),
        ("--steps.ramp_fit.sthresh_a=-1", "steps.ramp_fit"),
        ("--steps.ramp_fit.ithresh_a=5000", "ithresh_a < ithresh_b"),
    ],
)
def test_strun_parameters_checked_before_any_work(ws, option, expected):
    # the YAML's own JUMP_DETECT_PARS would take precedence over the command line
    ws.config.pop("JUMP_DETECT_PARS", None)
    cfg = ws.write_config()
    expect_failure(
        ws,
        lambda: ws.strun("rip_l1l2", f"--legacy_config={cfg}", option),
        None,
        expected,
    )


def test_strun_wcs_header_checked_before_any_work(ws):
    ws.config.pop("FITSWCS")  # the YAML's FITSWCS would take precedence
    cfg = ws.write_config()
    bad = ws.data / "bad_wcs.txt"
    bad.write_text("SIMPLE = T\n")
    expect_failure(
        ws,
        lambda: ws.strun(
            "rip_l1l2", f"--legacy_config={cfg}", f"--steps.flatfield.wcs_header={bad}"
        ),
        None,
        "steps.flatfield.wcs_header",
        str(bad),
    )


# ---------------------------------------------------- class 8: no traceback
def test_an_l2_given_as_in(ws, simulated_set):
    # a real L2 product: the simulated set's own calibration
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    l2 = ws.data / "previous_cal.asdf"
    gen_cal_image.calibrateimage(dict(ws.config, OUT=str(l2)), verbose=False)
    ws.config["IN"] = str(l2)
    ws.write_config()
    message = expect_failure(ws, _cli(ws), 1, str(l2), "ImageModel", "L1 exposure")
    assert "TypeError" not in message


def test_rip_legacy_to_asdf_into_a_missing_directory(ws):
    cfg = ws.write_config()
    target = ws.out / "missing" / "params.asdf"
    proc = ws.run([os.path.join(BIN, "rip-legacy-to-asdf"), str(cfg), str(target)])
    assert proc.returncode == 1
    assert str(target) in proc.stderr and "directory does not exist" in proc.stderr
    no_traceback(proc)


def test_rip_legacy_to_asdf_below_a_file(ws):
    cfg = ws.write_config()
    target = ws.data / "wcs.txt" / "params.asdf"
    proc = ws.run([os.path.join(BIN, "rip-legacy-to-asdf"), str(cfg), str(target)])
    assert proc.returncode == 1, proc.stderr
    assert str(target) in proc.stderr
    no_traceback(proc)


def test_int16_resultants_one_line(ws):
    import asdf

    with asdf.open(ws.config["IN"], lazy_load=False) as af:
        tree = af.tree["roman"].copy()
        tree["data"] = np.asarray(af.tree["roman"]["data"]).astype(np.int16)
        tree["meta"] = af.tree["roman"]["meta"]
        tree["amp33"] = np.asarray(af.tree["roman"]["amp33"])
        broken = ws.data / "int16_uncal.asdf"
        with mock.patch("asdf.yamlutil.schema.validate", lambda *a, **k: None):
            asdf.AsdfFile({"roman": tree}).write_to(broken)
    ws.config["IN"] = str(broken)
    ws.write_config()
    message = expect_failure(ws, _cli(ws), 1, str(broken), "uint16", before_work=False)
    error_lines = [line for line in message.splitlines() if "gen_cal_image:" in line]
    assert len(error_lines) == 1 and len(error_lines[0]) < 400, error_lines


def test_gen_noise_image_without_noise_block(ws):
    expect_failure(ws, ws.gen_noise_image, 2, "NOISE: required for noise layers")


@pytest.mark.parametrize("kind", ["truncated L2", "an L1"])
def test_rip_quicklook_on_something_else(ws, kind):
    if kind == "an L1":
        target = ws.data / "in_uncal.asdf"
        expected = "ScienceRawModel"
    else:
        target = ws.data / "short_cal.asdf"
        with open(ws.config["IN"], "rb") as f:
            target.write_bytes(f.read(3000))
        expected = "truncated or not ASDF"
    before = ws.snapshot()
    proc = ws.run([os.path.join(BIN, "rip-quicklook"), str(target)])
    assert proc.returncode == 2
    assert str(target) in proc.stderr and expected in proc.stderr
    no_traceback(proc)
    assert ws.snapshot() == before


def test_mask_file_naming_a_calibration_file_is_refused(ws):
    mask_like = ws.out / "out_cal_mask.fits"  # the saturation file, unluckily named
    shutil.copy(ws.config["CALDIR"]["saturation"], mask_like)
    ws.config["CALDIR"]["saturation"] = str(mask_like)
    ws.config["MASKOUT"] = True
    expect_failure(ws, ws.gen_cal_image, 2, "OUT (mask file)", "CALDIR.saturation")
