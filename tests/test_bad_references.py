"""Hostile calibration files and degenerate data (issue 18, classes 3, 4, 5 and 6).

3. a calibration file of another type in a slot (declared type, romancal model class,
   or fields and typical values where nothing is declared), through the legacy CALDIR,
   ``strun rip_<step> --override_<reftype>`` and ``Step.call``; the detector, read
   pattern and frame time a file records against the exposure's;
4. degenerate data: no usable pixel gives an all-flagged L2 and a warning, or a clear
   error before any work;
5. NaN and inf in every reference array: flagged pixels (or an error naming the file
   where one value poisons every pixel); physically impossible files refused;
6. corruption: flipped bytes in the L1 or a reference file are caught by the block
   checksums.

Every refusal asserts the message (slot, file and problem), the exit code of the
command line (1: data or reference problem), and that every file that existed before
(inputs, calibration set, output directory) is byte-identical afterwards.
"""

import copy
import hashlib
import logging
import os
import subprocess
import sys

import asdf
import numpy as np
import pytest

from romanimpreprocess.constants import REF_BORDER
from tests import test_bad_inputs

# The fixture of test_bad_inputs: a legacy config on private copies of the
# simulated set, with run_python / run_cli / run_strun entries.
case = test_bad_inputs.case

STRUN = os.path.join(os.path.dirname(sys.executable), "strun")
PREVIOUS = b"previous product, must survive"

B = 4  # reference border


# ------------------------------------------------------------------ helpers
def _tree_files(*directories):
    out = {}
    for directory in directories:
        for root, _, files in os.walk(directory):
            for name in files:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def untouched(case, simulated_set):
    """Snapshot function: every file of the work, output and simulated directories."""
    simulated_dir = os.path.dirname(simulated_set.l1)
    return lambda: _tree_files(case.work, case.out_dir, simulated_dir)


def refused(case, untouched, entry, *expected, code=1):
    """``entry`` fails with ``code`` naming everything in ``expected``; no file changes."""
    (case.out_dir / "out_cal.asdf").write_bytes(PREVIOUS)
    if entry != "python":
        case.write_yaml()  # written again, identically, by the entry
    before = untouched()
    returncode, message = getattr(case, f"run_{entry}")()
    if entry == "python":
        assert returncode != 0, "accepted"
    else:
        assert returncode == code, (returncode, message[-2000:])
    for text in expected:
        assert str(text) in message, (text, message[-3000:])
    assert "Traceback" not in message
    assert untouched() == before, "a file changed"
    return message


_edit_l1 = test_bad_inputs._edit_l1  # rewrite the L1 unvalidated (a bad producer)


def rewrite_reference(case, key, edit, name=None):
    """Private copy of CALDIR[key] with ``edit(roman)`` applied; returns its path."""
    target = case.work / (name or f"{key}.asdf")
    with asdf.open(case.config["CALDIR"][key], lazy_load=False) as af:
        tree = copy.deepcopy(af.tree)
    roman = dict(tree["roman"])
    roman = edit(roman) or roman
    asdf.AsdfFile({"roman": roman}).write_to(target)
    case.config["CALDIR"][key] = str(target)
    return target


def undeclared(roman):
    """A legacy file without any meta (nothing declares its type)."""
    roman.pop("meta", None)


def run_ok(case):
    """Run through the legacy entry; return the L2 tree (arrays loaded)."""
    returncode, message = case.run_python()
    assert returncode == 0, message
    with asdf.open(case.config["OUT"], lazy_load=False) as af:
        return {
            "data": np.array(af["roman"]["data"]),
            "dq": np.array(af["roman"]["dq"]),
            "log": str(af["processinfo"]["log"]),
        }


# Slot (CALDIR key) <- file of another type: the swaps the issue names.
SWAPS = [
    ("flat", "gain"),
    ("gain", "flat"),
    ("read", "gain"),
    ("mask", "gain"),
    ("saturation", "flat"),
]
REFTYPE = {"read": "readnoise", "dark_decay": "darkdecaysignal"}


# ------------------------------------------- class 3: the type of each file
@pytest.mark.parametrize(("slot", "source"), SWAPS)
def test_declared_type_of_another_slot(case, untouched, slot, source):
    """The simulator's files declare meta.reftype: a swap names the type found."""
    path = case.config["CALDIR"][source]
    case.config["CALDIR"][slot] = path
    refused(
        case,
        untouched,
        "python",
        f"{REFTYPE.get(slot, slot)} reference file {path}",
        f"is a {source} file (meta.reftype)",
    )


@pytest.mark.parametrize(("slot", "source"), SWAPS)
def test_undeclared_file_of_another_slot(case, untouched, slot, source):
    """Legacy files without meta: the fields and typical values tell the type."""
    path = rewrite_reference(case, source, undeclared)
    case.config["CALDIR"][slot] = str(path)
    message = refused(
        case,
        untouched,
        "python",
        f"{REFTYPE.get(slot, slot)} reference file {path}",
        "no declared type",
        f"looks like a {source} file",
    )
    assert f"not a {REFTYPE.get(slot, slot)} file" in message


def test_command_line_exit_code_for_a_swapped_file(case, untouched):
    path = case.config["CALDIR"]["gain"]
    case.config["CALDIR"]["flat"] = path
    refused(case, untouched, "cli", f"flat reference file {path}", "gain file", code=1)


def test_romancal_reference_model_of_another_type(case, untouched, simulated_set):
    """A romancal GainRefModel (meta.reftype GAIN) given as the flat."""
    from roman_datamodels import datamodels as dm

    with asdf.open(simulated_set.l1) as af:
        n = af["roman"]["data"].shape[-1]
    model = dm.GainRefModel.create_fake_data(shape=(n, n))
    model.data = np.full((n, n), 1.8, np.float32)
    path = case.work / "romancal_gain.asdf"
    model.save(path)
    case.config["CALDIR"]["flat"] = str(path)
    refused(case, untouched, "python", str(path), "GAIN file", "not a flat file")


def test_foreign_romancal_type(case, untouched):
    def superbias(roman):
        roman["meta"] = {**roman["meta"], "reftype": "SUPERBIAS"}

    path = rewrite_reference(case, "dark", superbias)
    refused(case, untouched, "python", str(path), "SUPERBIAS file", "not a dark file")


def test_files_of_the_right_type_are_never_refused(simulated_set, tmp_path):
    """Every simulated file, with and without meta, opens in its own slot."""
    import yaml

    from romanimpreprocess.datamodels import (
        CALDIR_TO_REFTYPE,
        ExposureInfo,
        Geometry,
        open_reference,
    )

    config = yaml.safe_load(open(simulated_set.config_yaml))
    with asdf.open(simulated_set.l1) as af:
        nres, ny, nx = af["roman"]["data"].shape
        exposure = ExposureInfo(
            detector=af["roman"]["meta"]["instrument"]["detector"],
            read_pattern=tuple(
                tuple(r) for r in af["roman"]["meta"]["exposure"]["read_pattern"]
            ),
            frame_time=af["roman"]["meta"]["exposure"]["frame_time"],
        )
    geometry = Geometry(nresultants=nres, ny=ny, nx=nx)
    for key, path in config["CALDIR"].items():
        reftype = CALDIR_TO_REFTYPE[key]
        open_reference(reftype, path, geometry, exposure=exposure).close()
        with asdf.open(path, lazy_load=False) as af:
            roman = dict(copy.deepcopy(af.tree)["roman"])
        undeclared(roman)
        bare = tmp_path / f"{key}.asdf"
        asdf.AsdfFile({"roman": roman}).write_to(bare)
        open_reference(reftype, str(bare), geometry, exposure=exposure).close()


def test_detector_of_the_exposure_and_of_the_files(case, untouched):
    """WFI02 data with the WFI01 calibration set (the command line exits 1)."""
    _edit_l1(
        case,
        lambda roman: roman["meta"]["instrument"].__setitem__("detector", "WFI02"),
    )
    message = refused(
        case,
        untouched,
        "cli",
        "the file is for WFI01, the exposure is WFI02",
        "meta.instrument.detector",
        case.config["CALDIR"]["gain"],
        case.config["CALDIR"]["flat"],
    )
    assert "nothing was processed" in message


def test_read_pattern_recorded_by_a_dark(case, untouched):
    def other_pattern(roman):
        roman["meta"] = {
            **roman["meta"],
            "exposure": {"read_pattern": [[0], [1], [2], [3], [4], [5]]},
        }

    path = rewrite_reference(case, "dark", other_pattern)
    refused(case, untouched, "cli", str(path), "read pattern", code=1)


def test_read_pattern_with_the_reference_read_is_accepted(case):
    """A dark made before EXTRACT_REF removed the first resultant still fits."""
    from romanimpreprocess.datamodels.reference_checks import (
        ExposureInfo,
        exposure_problem,
    )

    exposure = ExposureInfo("WFI01", ((1, 2), (3,)), 3.04)
    tree = {"meta": {"exposure": {"read_pattern": [[0], [1, 2], [3]]}}}
    assert exposure_problem("dark", tree, exposure) is None
    tree = {"meta": {"exposure": {"read_pattern": [[0], [1], [2, 3]]}}}
    assert "read pattern" in exposure_problem("dark", tree, exposure)


def test_frame_time_recorded_by_a_dark(case, untouched):
    def other_frame_time(roman):
        roman["meta"] = {**roman["meta"], "exposure": {"frame_time": 5.0}}

    path = rewrite_reference(case, "dark", other_frame_time)
    refused(case, untouched, "python", str(path), "frame time 5 s")


def test_strun_step_override_of_another_type(case, untouched):
    """``strun rip_saturation L1 --override_saturation=<flat>`` exits non-zero."""
    flat = case.config["CALDIR"]["flat"]
    before = untouched()
    proc = subprocess.run(
        [STRUN, "rip_saturation", case.config["IN"], f"--override_saturation={flat}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=case.work,
    )
    assert proc.returncode != 0
    assert f"saturation reference file {flat}" in proc.stderr
    assert "is a flat file" in proc.stderr
    assert untouched() == before


def test_step_call_override_of_another_type(case, untouched):
    from romanimpreprocess.datamodels import ReferenceFileError
    from romanimpreprocess.dq_init import DQInitStep

    gain = case.config["CALDIR"]["gain"]
    before = untouched()
    with pytest.raises(ReferenceFileError, match="is a gain file") as err:
        DQInitStep.call(case.config["IN"], override_mask=gain)
    assert gain in str(err.value) and "mask reference file" in str(err.value)
    assert untouched() == before


# --------------------------------------------- class 4: degenerate data
def _all_resultants(value):
    def edit(roman):
        roman["data"] = np.full_like(np.asarray(roman["data"]), value)

    return edit


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("all resultants 0", lambda case: _edit_l1(case, _all_resultants(0))),
        ("all resultants 65535", lambda case: _edit_l1(case, _all_resultants(65535))),
        (
            "every pixel masked",
            lambda case: rewrite_reference(
                case,
                "mask",
                lambda roman: roman.__setitem__(
                    "dq", np.asarray(roman["dq"]) | np.uint32(1)
                ),
            ),
        ),
    ],
)
def test_no_usable_pixel_gives_an_all_flagged_product(case, untouched, name, make):
    make(case)
    inputs = {k: v for k, v in untouched().items() if "out_cal" not in k}
    l2 = run_ok(case)
    assert (l2["dq"] != 0).all(), "a pixel of a degenerate exposure is unflagged"
    assert not (~np.isfinite(l2["data"]) & (l2["dq"] == 0)).any()
    assert "No usable pixel" in l2["log"]
    assert "Sky step: no usable pixel" in l2["log"]
    after = {k: v for k, v in untouched().items() if "out_cal" not in k}
    assert after == inputs


def test_zero_gain_everywhere(case, untouched):
    path = rewrite_reference(
        case,
        "gain",
        lambda roman: roman.__setitem__("data", np.zeros_like(roman["data"])),
    )
    refused(
        case,
        untouched,
        "cli",
        str(path),
        "gain is zero, negative or NaN everywhere",
        "nothing was processed",
    )


def test_saturation_at_zero(case, untouched):
    path = rewrite_reference(
        case,
        "saturation",
        lambda roman: roman.__setitem__("data", np.zeros_like(roman["data"])),
    )
    refused(case, untouched, "python", str(path), "every saturation threshold is <= 0")


# -------------------------------------- class 5: NaN and inf in the references
# Pixels (full-frame y, x) poisoned in each array, one set per array so that a wrong
# flag is traced to its array; values NaN, +inf, -inf.
_POISON = (np.nan, np.inf, -np.inf)


def _poison_pixels(index):
    return [(20 + 30 * j, 15 + 11 * index + 25 * j) for j in range(3)]


# reftype (CALDIR key) -> per-pixel float arrays: a NaN there must end flagged.
FLAGGED_ARRAYS = {
    "saturation": ["data"],
    "dark": ["data", "dark_slope"],
    "linearitylegendre": ["data", "Smin", "Smax", "Sref"],
    "flat": ["data"],
    "read": ["resetnoise"],
}


@pytest.fixture(scope="module")
def clean_product(simulated_set, tmp_path_factory):
    """dq and data of the clean simulated exposure (the comparison for flags)."""
    import yaml

    from romanimpreprocess.L1_to_L2 import gen_cal_image

    config = yaml.safe_load(open(simulated_set.config_yaml))
    config["OUT"] = str(tmp_path_factory.mktemp("clean") / "clean_cal.asdf")
    gen_cal_image(config, verbose=False)
    with asdf.open(config["OUT"], lazy_load=False) as af:
        return np.array(af["roman"]["data"]), np.array(af["roman"]["dq"])


@pytest.mark.parametrize("key", sorted(FLAGGED_ARRAYS))
def test_nan_and_inf_in_reference_arrays_end_flagged(
    case, untouched, clean_product, key
):
    from romanimpreprocess.ipc.ipc import DEFAULT_ITERATIONS

    poisoned = []

    def poison(roman):
        for index, field in enumerate(FLAGGED_ARRAYS[key]):
            array = np.array(roman[field], copy=True)
            for (y, x), value in zip(_poison_pixels(index), _POISON, strict=True):
                array[..., y, x] = value
                poisoned.append((y - B, x - B))
            roman[field] = array

    rewrite_reference(case, key, poison)
    inputs = {k: v for k, v in untouched().items() if "out_cal" not in k}
    l2 = run_ok(case)
    data, dq = l2["data"], l2["dq"]
    clean_data, clean_dq = clean_product
    # Nowhere a NaN or inf with dq 0.
    assert not (~np.isfinite(data) & (dq == 0)).any()
    # At each poisoned pixel: finite, or flagged.
    for y, x in poisoned:
        assert np.isfinite(data[y, x]) or dq[y, x] != 0, (key, y, x)
    # What changed (a new flag, a value no longer finite) is within the IPC
    # neighbourhood of a poisoned pixel: the deconvolution spreads it by one pixel
    # an iteration.
    radius = DEFAULT_ITERATIONS + 1
    changed = (dq != clean_dq) | (np.isfinite(clean_data) & ~np.isfinite(data))
    near = np.zeros_like(changed)
    for y, x in poisoned:
        near[
            max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1
        ] = True
    far = np.argwhere(changed & ~near)
    assert far.size == 0, f"{key}: changes far from the poisoned pixels at {far[:5]}"
    after = {k: v for k, v in untouched().items() if "out_cal" not in k}
    assert after == inputs


def _poison_first(field, value, sub=None):
    def edit(roman):
        node = roman[field] if sub is None else dict(roman[field])
        array = np.array(node if sub is None else node[sub], dtype=np.float32)
        array[(slice(None),) * (array.ndim - 2) + (30, 40)] = value
        if sub is None:
            roman[field] = array
        else:
            node[sub] = array
            roman[field] = node

    return edit


# reftype (CALDIR key), field, sub-field: a NaN here poisons every pixel (a model
# parameter) or the file is required finite: the file is refused, naming the field.
REFUSED_ARRAYS = [
    ("gain", "data", None, "roman.data"),
    ("read", "data", None, "roman.data"),
    ("read", "amp33", "med", "roman.amp33.med"),
    ("read", "amp33", "std", "roman.amp33.std"),
    ("ipc4d", "data", None, "roman.data"),
    ("biascorr", "data", None, "roman.data"),
]


@pytest.mark.parametrize(("key", "field", "sub", "where"), REFUSED_ARRAYS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_where_it_cannot_be_flagged_is_refused(
    case, untouched, key, field, sub, where, value
):
    path = rewrite_reference(case, key, _poison_first(field, value, sub))
    message = refused(case, untouched, "python", str(path), where)
    assert "non-finite" in message or "NaN" in message or "inf" in message


def test_nan_in_the_dark_decay_table_is_refused(case, untouched):
    def poison(roman):
        table = copy.deepcopy(dict(roman["decay_table"]))
        table["WFI01"] = {**table["WFI01"], "amplitude": float("nan")}
        roman["decay_table"] = table

    path = rewrite_reference(case, "dark_decay", poison)
    refused(case, untouched, "python", str(path), "decay_table.WFI01.amplitude")


@pytest.mark.parametrize(
    ("group", "name"),
    [("anc", "C_PINK"), ("anc", "U_PINK"), ("amp33", "M_PINK"), ("amp33", "RU_PINK")],
)
def test_nan_in_a_read_noise_parameter_is_refused(case, untouched, group, name):
    def poison(roman):
        node = copy.deepcopy(dict(roman[group]))
        node[name] = float("nan")
        roman[group] = node

    path = rewrite_reference(case, "read", poison)
    refused(
        case, untouched, "python", str(path), f"roman.{group}.{name}", "not a finite"
    )


def test_ipc_kernel_far_from_unit_sum(case, untouched):
    path = rewrite_reference(
        case,
        "ipc4d",
        lambda roman: roman.__setitem__("data", np.asarray(roman["data"]) * 0.5),
    )
    refused(case, untouched, "cli", str(path), "sums to 0.5", code=1)


def test_singular_ipc_kernel(case, untouched):
    """Sum 1 but the centre 0.2: the deconvolution (a Neumann series) diverges."""

    def singular(roman):
        kernel = np.zeros_like(np.asarray(roman["data"]))
        kernel[1, 1] = 0.2
        kernel[0, 1] = kernel[2, 1] = kernel[1, 0] = kernel[1, 2] = 0.2
        roman["data"] = kernel

    path = rewrite_reference(case, "ipc4d", singular)
    refused(case, untouched, "python", str(path), "singular")


def test_ipc_kernel_off_at_a_few_pixels_is_a_warning(simulated_set, tmp_path, caplog):
    import yaml

    from romanimpreprocess.datamodels import open_reference

    path = yaml.safe_load(open(simulated_set.config_yaml))["CALDIR"]["ipc4d"]
    with asdf.open(path, lazy_load=False) as af:
        roman = dict(copy.deepcopy(af.tree)["roman"])
    kernel = np.array(roman["data"])
    kernel[1, 1, ::8, ::8] += 0.08  # every 64th pixel sums to 1.08
    roman["data"] = kernel
    target = tmp_path / "ipc_off.asdf"
    asdf.AsdfFile({"roman": roman}).write_to(target)
    with caplog.at_level(logging.WARNING, logger="romanimpreprocess"):
        open_reference("ipc4d", str(target)).close()
    assert str(target) in caplog.text
    assert "kernel sum is off 1" in caplog.text


# ---------------------------------------------------- class 6: corruption
def _flip_bytes(path, block=0, offset=4096, count=64):
    """XOR ``count`` bytes ``offset`` bytes into block ``block``'s data."""
    raw = bytearray(open(path, "rb").read())
    pos = -1
    for _ in range(block + 1):
        pos = raw.index(b"\xd3BLK", pos + 1)
    header_size = int.from_bytes(raw[pos + 4 : pos + 6], "big")
    start = pos + 6 + header_size + offset
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("entry", ["python", "cli"])
def test_flipped_bytes_in_the_input(case, untouched, entry):
    _flip_bytes(case.config["IN"])
    refused(
        case,
        untouched,
        entry,
        f"input exposure {case.config['IN']}",
        "does not match its checksum",
    )


def test_flipped_bytes_in_a_reference_file(case, untouched, monkeypatch):
    """Opt-in (RIP_REFERENCE_CHECKSUMS=1): 14 s for a full-frame calibration set."""
    monkeypatch.setenv("RIP_REFERENCE_CHECKSUMS", "1")
    path = case.copy_reference("linearitylegendre")
    _flip_bytes(path, block=1)
    refused(
        case,
        untouched,
        "python",
        f"linearitylegendre reference file {path}",
        "block 1 does not match its checksum",
    )


def test_checksums_of_compressed_blocks(tmp_path):
    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    path = tmp_path / "lz4.asdf"
    data = np.arange(200_000, dtype=np.float32).reshape(400, 500)
    asdf.AsdfFile({"a": data, "b": data[::-1].copy()}).write_to(
        path, all_array_compression="lz4"
    )
    assert block_checksum_problems(path) == []
    _flip_bytes(path, block=1, offset=100, count=8)
    assert block_checksum_problems(path) == [
        "block 1 does not match its checksum: the file is corrupt"
    ]


def test_valid_files_pass_the_checksums(simulated_set):
    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    directory = os.path.dirname(simulated_set.l1)
    names = [n for n in os.listdir(directory) if n.endswith(".asdf")]
    assert len(names) >= 10
    for name in names:
        assert block_checksum_problems(os.path.join(directory, name)) == [], name


def test_truncated_block_is_named(tmp_path):
    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    path = tmp_path / "cut.asdf"
    asdf.AsdfFile({"a": np.ones(100_000)}).write_to(path)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) - 50_000])
    (problem,) = block_checksum_problems(path)
    assert "block 0" in problem and "truncated" in problem


@pytest.mark.parametrize(
    ("model_name", "reftype", "field", "value"),
    [
        ("GainRefModel", "gain", "data", 1.8),
        ("FlatRefModel", "flat", "data", 1.0),
        ("ReadnoiseRefModel", "readnoise", "data", 6.5),
        ("SaturationRefModel", "saturation", "data", 60000.0),
        ("MaskRefModel", "mask", "dq", 0),
    ],
)
def test_romancal_reference_models_open_in_their_slot(
    tmp_path, model_name, reftype, field, value
):
    """romancal's own files (meta.reftype GAIN, FLAT, ...) are never refused."""
    from roman_datamodels import datamodels as dm

    from romanimpreprocess.datamodels import (
        Geometry,
        ReferenceFileError,
        open_reference,
    )

    n = 64
    model = getattr(dm, model_name).create_fake_data(shape=(n, n))
    array = np.asarray(model[field])
    model[field] = np.full((n, n), value, array.dtype)
    path = tmp_path / f"{reftype}.asdf"
    model.save(path)
    geometry = Geometry(nresultants=6, ny=n, nx=n)
    with open_reference(reftype, str(path), geometry, fields=[field]) as ref:
        np.testing.assert_array_equal(getattr(ref, field), model[field])
    # ... and refused in another slot, by their declared type.
    other = "flat" if reftype != "flat" else "gain"
    with pytest.raises(ReferenceFileError, match=f"not a {other} file"):
        open_reference(other, str(path), geometry)


@pytest.mark.parametrize(
    ("threads", "legacy_compat"), [("2", False), ("2", True), ("1", False)]
)
def test_flipped_input_is_refused_before_its_data_are_read(
    case, untouched, monkeypatch, threads, legacy_compat
):
    """The L1's checksums run beside the opening and the preparations (two threads;
    in bands or on the whole cube) or as it opens (one thread): either way the
    corrupt file is refused before its resultants are decoded (the band path's
    skeleton reads the four reference rows at each end), and no checksum thread is
    left behind."""
    import threading

    from romanimpreprocess.datamodels import l1
    from romanimpreprocess.stpipe import core

    monkeypatch.setenv("RIP_THREADS", threads)
    case.config["LEGACY_COMPAT"] = legacy_compat
    decoded = []
    for module, name in ((l1, "decode_rows"), (core, "raw_to_ramp")):
        original = getattr(module, name)

        def spy(raw, *args, _original=original, _name=name, **kwargs):
            rows = args[0] if args and isinstance(args[0], slice) else None
            if rows is None or rows.stop - rows.start > REF_BORDER:
                decoded.append(_name)
            return _original(raw, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    started = []
    start_checksums = l1.ChecksumsAhead.__init__

    def recording_start(self, path):
        started.append(path)
        start_checksums(self, path)

    monkeypatch.setattr(l1.ChecksumsAhead, "__init__", recording_start)
    _flip_bytes(case.config["IN"])
    refused(case, untouched, "python", "does not match its checksum")
    assert decoded == []
    assert started == ([case.config["IN"]] if threads == "2" else [])
    assert not any(t.name == "rip-l1-checksums" for t in threading.enumerate())
