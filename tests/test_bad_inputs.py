"""Catalogue of bad inputs and faults: each gets a clear error and harms no file.

Every case runs the pipeline on a copy of a small simulated exposure with one thing
broken, through the legacy entry (``gen_cal_image(config)``, which goes through
`L1ToL2Pipeline`); a selection also runs through ``python -m ...gen_cal_image`` and
``strun``, whose exit codes must be non-zero. Each case asserts the message (the file or
key and the problem) and the state of the output directory: no new file, no partial
product, an existing product untouched.
"""

import copy
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from unittest import mock

import asdf
import numpy as np
import pytest
import yaml

STRUN = os.path.join(os.path.dirname(sys.executable), "strun")
PREVIOUS = b"previous product, must survive"


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def case(simulated_set, tmp_path):
    """A fresh legacy config on private copies of the simulated files."""
    work = tmp_path / "work"
    out_dir = tmp_path / "out"
    work.mkdir()
    out_dir.mkdir()
    config = yaml.safe_load(open(simulated_set.config_yaml))
    config = copy.deepcopy(config)
    shutil.copy(simulated_set.l1, work / "in_uncal.asdf")
    config["IN"] = str(work / "in_uncal.asdf")
    config["OUT"] = str(out_dir / "out_cal.asdf")
    return Case(config, work, out_dir)


class Case:
    def __init__(self, config, work, out_dir):
        self.config = config
        self.work = work
        self.out_dir = out_dir

    def copy_reference(self, key):
        """Private copy of CALDIR[key] (so that it can be broken); returns its path."""
        target = self.work / f"{key}.asdf"
        shutil.copy(self.config["CALDIR"][key], target)
        self.config["CALDIR"][key] = str(target)
        return target

    def edit_reference(self, key, field, function):
        """Rewrite CALDIR[key] with ``roman[field] = function(roman[field])``."""
        target = self.work / f"{key}.asdf"
        with asdf.open(self.config["CALDIR"][key], lazy_load=False) as af:
            tree = copy.deepcopy(af.tree)
        roman = tree["roman"]
        value = function(np.array(roman[field]) if field in roman else None)
        if value is None:
            del roman[field]
        else:
            roman[field] = value
        asdf.AsdfFile({"roman": roman}).write_to(target)
        self.config["CALDIR"][key] = str(target)
        return target

    def snapshot(self):
        """Names and contents of everything in the output directory."""
        out = {}
        for root, dirs, files in os.walk(self.out_dir):
            for name in dirs + files:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, self.out_dir)
                out[rel] = open(path, "rb").read() if os.path.isfile(path) else None
        return out

    def write_yaml(self):
        path = self.work / "config.yaml"
        path.write_text(yaml.safe_dump(self.config))
        return path

    # -------------------------------------------------------------- entries
    def run_python(self):
        from romanimpreprocess.L1_to_L2 import gen_cal_image

        try:
            gen_cal_image(self.config)
        except Exception as err:
            return 1, f"{type(err).__name__}: {err}"
        return 0, ""

    def run_cli(self):
        cfg = self.write_yaml()
        proc = subprocess.run(
            [sys.executable, "-m", "romanimpreprocess.L1_to_L2.gen_cal_image", cfg],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.returncode, proc.stderr

    def run_strun(self):
        cfg = self.write_yaml()
        proc = subprocess.run(
            [STRUN, "rip_l1l2", f"--legacy_config={cfg}"],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.work,
        )
        return proc.returncode, proc.stderr


def check_failure(case, entry, *expected):
    """Run ``entry``; it must fail naming everything in ``expected`` and harm nothing."""
    existing = case.out_dir / "out_cal.asdf"
    existing.write_bytes(PREVIOUS)
    before = case.snapshot()
    returncode, message = getattr(case, f"run_{entry}")()
    assert returncode != 0, f"{entry} succeeded but should have failed"
    for text in expected:
        assert str(text) in message, (text, message[-2000:])
    assert existing.read_bytes() == PREVIOUS
    assert case.snapshot() == before, "output directory changed"
    return message


# ------------------------------------------------------------- input (IN)
def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "breaker", "expected"),
    [
        ("missing", lambda p: os.remove(p), "file not found"),
        ("empty", lambda p: open(p, "wb").close(), "in_uncal.asdf"),
        ("truncated", _truncate, "in_uncal.asdf"),
        ("not ASDF", lambda p: open(p, "w").write("SIMPLE = T\n"), "in_uncal.asdf"),
    ],
)
def test_broken_input_file(case, name, breaker, expected):
    breaker(case.config["IN"])
    check_failure(case, "python", expected, "in_uncal.asdf")


def _edit_l1(case, function):
    with asdf.open(case.config["IN"], lazy_load=False) as af:
        tree = copy.deepcopy(af.tree)
    function(tree["roman"])
    # Write what a broken producer would write: no schema validation.
    with mock.patch("asdf.yamlutil.schema.validate", lambda *a, **k: None):
        asdf.AsdfFile(tree).write_to(case.config["IN"])


def test_read_pattern_not_matching_the_resultants(case):
    _edit_l1(
        case,
        lambda roman: roman["meta"]["exposure"].__setitem__(
            "read_pattern", roman["meta"]["exposure"]["read_pattern"][:-1]
        ),
    )
    check_failure(case, "python", "in_uncal.asdf", "read_pattern")


def test_input_resultants_of_wrong_dtype(case):
    def to_float(roman):
        roman["data"] = np.asarray(roman["data"], dtype=np.float32)

    _edit_l1(case, to_float)
    check_failure(case, "python", "in_uncal.asdf", "uint16")


def test_too_few_resultants_for_the_likelihood_fit(case):
    def keep_three(roman):
        roman["data"] = np.asarray(roman["data"])[:3]
        roman["amp33"] = np.asarray(roman["amp33"])[:3]
        exposure = roman["meta"]["exposure"]
        exposure["read_pattern"] = exposure["read_pattern"][:3]
        exposure["nresultants"] = 3
        for key in ("resultantdq", "reference_read", "reference_amp33"):
            roman.pop(key, None)

    _edit_l1(case, keep_three)
    case.edit_reference("dark", "data", lambda a: a[:3].copy())
    case.edit_reference("biascorr", "data", lambda a: a[:3].copy())
    case.config["romancal_ramp_fit"] = True
    message = check_failure(case, "python", "4")
    assert "resultant" in message


def test_unknown_detector(case):
    _edit_l1(
        case,
        lambda roman: roman["meta"]["instrument"].__setitem__("detector", "WFI99"),
    )
    check_failure(case, "python", "WFI99")


def test_output_equal_to_input(case):
    case.config["OUT"] = case.config["IN"]
    check_failure(case, "python", "OUT", "is IN", "would be overwritten")
    assert os.path.getsize(case.config["IN"]) > 0


# --------------------------------------------------------- reference files
@pytest.mark.parametrize(
    ("name", "breaker"),
    [
        ("empty", lambda p: open(p, "wb").close()),
        ("truncated", _truncate),
        ("not ASDF", lambda p: open(p, "w").write("not an asdf file\n")),
    ],
)
def test_broken_reference_file(case, name, breaker):
    path = case.copy_reference("gain")
    breaker(path)
    check_failure(case, "python", "gain", str(path))


def test_missing_reference_file(case):
    case.config["CALDIR"]["dark"] = str(case.work / "no_such_dark.asdf")
    check_failure(case, "python", "CALDIR.dark", "file not found", "no_such_dark")


def test_science_size_array_where_a_frame_is_expected(case):
    b = 4
    path = case.edit_reference("gain", "data", lambda a: a[b:-b, b:-b].copy())
    check_failure(case, "python", "gain", str(path), "shape")


def test_reference_for_another_number_of_resultants(case):
    path = case.edit_reference("dark", "data", lambda a: a[:2].copy())
    check_failure(case, "python", "dark", str(path), "shape")


def test_reference_of_wrong_dtype(case):
    path = case.edit_reference("flat", "data", lambda a: a.astype("U8"))
    check_failure(case, "python", "flat", str(path))


def test_nan_in_gain(case):
    def poison(a):
        a = a.copy()
        a[10, 10] = np.nan
        return a

    path = case.edit_reference("gain", "data", poison)
    check_failure(case, "python", "gain", str(path), "NaN")


def test_inf_in_ipc_kernel(case):
    def poison(a):
        a = a.copy()
        a[1, 1, 5, 5] = np.inf
        return a

    path = case.edit_reference("ipc4d", "data", poison)
    check_failure(case, "python", "ipc4d", str(path), "inf")


def test_reference_without_a_required_field(case):
    path = case.edit_reference("linearitylegendre", "Smin", lambda a: None)
    check_failure(case, "python", "linearitylegendre", str(path), "Smin")


# ---------------------------------------------------------- configuration
def test_missing_caldir_key(case):
    del case.config["CALDIR"]["saturation"]
    check_failure(case, "python", "CALDIR.saturation", "missing")


def test_misspelt_keys_are_named_with_a_suggestion(case):
    case.config["SKYORDR"] = 2
    case.config["CALDIR"]["lineraitylegendre"] = case.config["CALDIR"].pop(
        "linearitylegendre"
    )
    check_failure(case, "python", "did you mean 'SKYORDER'", "lineraitylegendre")


def test_wrong_types_in_jump_detect_pars(case):
    case.config["JUMP_DETECT_PARS"] = {"SthreshA": "five", "IthreshB": [600]}
    check_failure(
        case, "python", "JUMP_DETECT_PARS.SthreshA", "JUMP_DETECT_PARS.IthreshB"
    )


def test_output_directory_missing(case):
    case.config["OUT"] = str(case.out_dir / "nowhere" / "x_cal.asdf")
    check_failure(case, "python", "OUT", "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_directory_not_writable(case):
    locked = case.out_dir / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    case.config["OUT"] = str(locked / "x_cal.asdf")
    try:
        check_failure(case, "python", "OUT", "not writable")
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------ the command lines
@pytest.mark.parametrize("entry", ["cli", "strun"])
def test_command_lines_fail_clearly(case, entry):
    case.config["SKYORDR"] = 2
    del case.config["CALDIR"]["flat"]
    check_failure(case, entry, "SKYORDR", "CALDIR.flat")


@pytest.mark.parametrize("entry", ["cli", "strun"])
def test_command_lines_report_a_bad_reference(case, entry):
    path = case.edit_reference("gain", "data", lambda a: a[4:-4, 4:-4].copy())
    check_failure(case, entry, str(path), "shape")


def test_cli_missing_config_file(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "romanimpreprocess.L1_to_L2.gen_cal_image",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "nope.yaml: file not found" in proc.stderr
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------- outputs
def test_existing_output_is_replaced_only_by_a_complete_product(case):
    import roman_datamodels as rdm

    existing = case.out_dir / "out_cal.asdf"
    existing.write_bytes(PREVIOUS)
    returncode, message = case.run_python()
    assert returncode == 0, message
    with rdm.open(existing) as model:
        model.validate()
    assert [n for n in os.listdir(case.out_dir) if n.startswith(".tmp")] == []


def test_process_killed_during_the_write(case):
    """SIGKILL in the middle of writing: the old product survives, no partial file."""
    existing = case.out_dir / "out_cal.asdf"
    existing.write_bytes(PREVIOUS)
    cfg = case.write_yaml()
    script = textwrap.dedent(
        f"""
        import os, signal, yaml
        import romanimpreprocess.datamodels.l2 as l2

        real = l2.write_l2

        def dying_write(model, path, **kwargs):
            import asdf
            original = asdf.AsdfFile.write_to

            def write_to(self, fd, *args, **kw):
                # the open output file (utils.direct_write's, or an ordinary one)
                fd.write(b"#ASDF 1.0.0 partial")
                fd.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            asdf.AsdfFile.write_to = write_to
            return real(model, path, **kwargs)

        l2.write_l2 = dying_write
        from romanimpreprocess.L1_to_L2 import gen_cal_image
        gen_cal_image(yaml.safe_load(open({str(cfg)!r})))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert existing.read_bytes() == PREVIOUS
    leftovers = [n for n in os.listdir(case.out_dir) if n != "out_cal.asdf"]
    assert all(n.startswith(".tmp-rip-") for n in leftovers), leftovers
    # The next run cleans what the killed writer left and writes a valid product.
    returncode, message = case.run_python()
    assert returncode == 0, message
    assert sorted(os.listdir(case.out_dir)) == ["out_cal.asdf"]
