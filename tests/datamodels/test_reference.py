"""Every reference-file reader refuses bad files with a message naming file and field."""

import os

import asdf
import numpy as np
import pytest

from romanimpreprocess.datamodels import (
    FIELDS,
    Geometry,
    ReferenceFileError,
    open_reference,
)

GEOM = Geometry(nresultants=5, ny=64, nx=64)
NY, NX = GEOM.frame_shape
SY, SX = GEOM.science_shape


def good_tree(reftype):
    """A minimal valid legacy-layout tree for ``reftype`` at GEOM."""
    frame = np.ones((NY, NX), np.float32)
    dq = np.zeros((NY, NX), np.uint32)
    return {
        "mask": {"dq": dq},
        "saturation": {"data": frame * 60000, "dq": dq},
        "dark": {
            "data": np.ones((5, NY, NX), np.float32),
            "dark_slope": frame * 0.01,
            "dq": dq,
        },
        "gain": {"data": np.full((NY, NX), 1.8)},
        "readnoise": {
            "data": frame * 6.5,
            "anc": {"C_PINK": 1.0, "U_PINK": 2.0},
        },
        "linearitylegendre": {
            "data": np.zeros((4, NY, NX), np.float32),
            "Smin": frame,
            "Smax": frame * 60000,
            "Sref": frame * 1000,
            "dq": dq,
        },
        # the identity kernel (an all-zero one is refused as singular)
        "ipc4d": {
            "data": np.eye(3, dtype=np.float32)[1][:, None, None, None]
            * np.eye(3, dtype=np.float32)[1][None, :, None, None]
            * np.ones((1, 1, SY, SX), np.float32)
        },
        "flat": {"data": frame},
        "biascorr": {"data": np.zeros((6, SY, SX), np.float32), "t0": 3.0},
        "darkdecaysignal": {
            "decay_table": {"WFI01": {"amplitude": 1.0, "time_constant": 20.0}}
        },
        "photom": {
            "phot_table": {
                "F158": {"photmjsr": 0.7, "uncertainty": 0.0, "pixelareasr": 3e-13}
            }
        },
    }[reftype]


def first_array_field(reftype):
    return next(
        (
            name
            for name, field in FIELDS[reftype].items()
            if field.required and field.kind in ("f", "iu")
        ),
        None,
    )


def write(tmp_path, tree, name="ref.asdf"):
    path = tmp_path / name
    asdf.AsdfFile({"roman": tree}).write_to(path)
    return str(path)


@pytest.mark.parametrize("reftype", sorted(FIELDS))
def test_good_file_opens_and_reads_lazily(tmp_path, reftype):
    tree = good_tree(reftype)
    path = write(tmp_path, tree)
    with open_reference(reftype, path, GEOM) as ref:
        for name, value in tree.items():
            got = getattr(ref, name)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got, value)
            elif isinstance(value, dict):
                assert got == value


@pytest.mark.parametrize("reftype", sorted(FIELDS))
def test_missing_required_field(tmp_path, reftype):
    tree = good_tree(reftype)
    name = next(n for n, f in FIELDS[reftype].items() if f.required)
    del tree[name]
    path = write(tmp_path, tree)
    with pytest.raises(ReferenceFileError) as err:
        open_reference(reftype, path, GEOM)
    msg = str(err.value)
    assert path in msg and f"roman.{name}" in msg and "missing" in msg


@pytest.mark.parametrize(
    "reftype", [r for r in sorted(FIELDS) if first_array_field(r) is not None]
)
def test_wrong_shape(tmp_path, reftype):
    tree = good_tree(reftype)
    name = first_array_field(reftype)
    bad = np.zeros((*tree[name].shape[:-2], NY - 8 + 1, NX - 8 + 1), tree[name].dtype)
    tree[name] = bad
    path = write(tmp_path, tree)
    with pytest.raises(ReferenceFileError) as err:
        open_reference(reftype, path, GEOM)
    msg = str(err.value)
    assert path in msg and f"roman.{name}" in msg
    assert str(bad.shape) in msg and "expected" in msg


def test_full_frame_reference_for_wrong_exposure_size(tmp_path):
    """A 4088-wide science-size file where the 4096-wide frame is expected."""
    path = write(tmp_path, {"data": np.ones((SY, SX), np.float32)})
    with pytest.raises(ReferenceFileError, match=r"expected \(64, 64\)"):
        open_reference("flat", path, GEOM)


@pytest.mark.parametrize(
    "reftype", [r for r in sorted(FIELDS) if first_array_field(r) is not None]
)
def test_wrong_dtype(tmp_path, reftype):
    tree = good_tree(reftype)
    name = first_array_field(reftype)
    kind = FIELDS[reftype][name].kind
    tree[name] = tree[name].astype(np.complex64 if kind == "iu" else np.int32)
    if kind == "iu":
        tree[name] = tree[name].real.astype(np.float32)
    path = write(tmp_path, tree)
    with pytest.raises(ReferenceFileError) as err:
        open_reference(reftype, path, GEOM)
    msg = str(err.value)
    assert path in msg and f"roman.{name}" in msg and "dtype" in msg


@pytest.mark.parametrize("reftype", sorted(FIELDS))
def test_not_asdf(tmp_path, reftype):
    path = tmp_path / "ref.asdf"
    path.write_text(
        "SIMPLE  =                    T / this is a FITS header, not ASDF\n"
    )
    with pytest.raises(ReferenceFileError) as err:
        open_reference(reftype, str(path), GEOM)
    assert str(path) in str(err.value) and "ASDF" in str(err.value)


@pytest.mark.parametrize("reftype", sorted(FIELDS))
def test_missing_and_empty_file(tmp_path, reftype):
    missing = tmp_path / "nope.asdf"
    with pytest.raises(ReferenceFileError, match="does not exist"):
        open_reference(reftype, str(missing), GEOM)
    empty = tmp_path / "empty.asdf"
    empty.write_bytes(b"")
    with pytest.raises(ReferenceFileError, match="empty"):
        open_reference(reftype, str(empty), GEOM)


@pytest.mark.parametrize(
    "reftype", [r for r in sorted(FIELDS) if first_array_field(r) is not None]
)
def test_truncated_file(tmp_path, reftype):
    tree = good_tree(reftype)
    name = first_array_field(reftype)
    path = write(tmp_path, tree)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ReferenceFileError) as err:
        ref = open_reference(reftype, path, GEOM, fields=[name])
        for field in FIELDS[reftype]:
            if field in ref:
                getattr(ref, field)
    assert path in str(err.value)


def test_nonfinite_values_are_refused(tmp_path):
    gain = np.full((NY, NX), 1.8)
    gain[10, 10] = np.nan
    gain[11, 11] = np.inf
    path = write(tmp_path, {"data": gain})
    ref = open_reference("gain", path, GEOM)
    with pytest.raises(ReferenceFileError, match=r"roman.data.*2 non-finite"):
        _ = ref.data


def test_nonfinite_scan_once_per_file_version(tmp_path, monkeypatch):
    """A second opening of the same file (another step) does not scan it again,
    still refuses a bad array, and a rewritten file is scanned anew."""
    from romanimpreprocess.datamodels import reference

    scans = []
    count = reference._count_nonfinite
    monkeypatch.setattr(
        reference, "_count_nonfinite", lambda a: scans.append(1) or count(a)
    )
    gain = np.full((NY, NX), 1.8)
    gain[3, 4] = np.nan
    path = write(tmp_path, {"data": gain})
    for _ in range(2):
        ref = open_reference("gain", path, GEOM)
        with pytest.raises(ReferenceFileError, match=r"roman.data.*1 non-finite"):
            _ = ref.data
        ref.close()
    assert len(scans) == 1
    gain[3, 4] = 1.8
    stat = os.stat(path)
    write(tmp_path, {"data": gain})
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with open_reference("gain", path, GEOM) as ref:
        np.testing.assert_array_equal(ref.data, gain)
    assert len(scans) == 2


def test_a_finite_file_is_not_scanned_again_by_a_later_process(tmp_path, monkeypatch):
    """The product cache notes a file found finite; a bad file is scanned each time."""
    from romanimpreprocess.datamodels import reference

    monkeypatch.setenv("RIP_PRODUCT_CACHE", str(tmp_path / "cache"))
    scans = []
    count = reference._count_nonfinite
    monkeypatch.setattr(
        reference, "_count_nonfinite", lambda a: scans.append(1) or count(a)
    )
    good = write(tmp_path, {"data": np.full((NY, NX), 1.8)}, name="good.asdf")
    gain = np.full((NY, NX), 1.8)
    gain[3, 4] = np.inf
    bad = write(tmp_path, {"data": gain}, name="bad.asdf")
    for _ in range(2):
        reference._NONFINITE_COUNTED.clear()  # a new process
        with open_reference("gain", good, GEOM) as ref:
            np.testing.assert_array_equal(ref.data, 1.8)
        ref = open_reference("gain", bad, GEOM)
        with pytest.raises(ReferenceFileError, match=r"roman.data.*1 non-finite"):
            _ = ref.data
        ref.close()
    assert len(scans) == 3  # good once, bad twice
    monkeypatch.setenv("RIP_PRODUCT_CACHE", "0")  # no cache: every process scans
    reference._NONFINITE_COUNTED.clear()
    with open_reference("gain", good, GEOM) as ref:
        _ = ref.data
    assert len(scans) == 4


def test_only_requested_fields_are_checked(tmp_path):
    """A step that needs only the dark slope opens a file whose cube is absent."""
    path = write(tmp_path, {"dark_slope": np.zeros((NY, NX), np.float32)})
    with open_reference("dark", path, GEOM, fields=["dark_slope"]) as ref:
        assert ref.dark_slope.shape == (NY, NX)
    with pytest.raises(ReferenceFileError, match="roman.data"):
        open_reference("dark", path, GEOM)


def test_dark_cube_may_hold_the_reference_read(tmp_path):
    tree = good_tree("dark")
    tree["data"] = np.ones((6, NY, NX), np.float32)
    with open_reference("dark", write(tmp_path, tree), GEOM) as ref:
        assert ref.data.shape[0] == 6
    tree["data"] = np.ones((7, NY, NX), np.float32)
    with pytest.raises(ReferenceFileError, match="5 or 6"):
        open_reference("dark", write(tmp_path, tree, "d7.asdf"), GEOM)


def test_romancal_style_file_with_meta_is_accepted(tmp_path):
    tree = {"meta": {"reftype": "FLAT", "instrument": {"detector": "WFI01"}}}
    tree["data"] = np.ones((NY, NX), np.float32)
    tree["dq"] = np.zeros((NY, NX), np.uint32)
    with open_reference("flat", write(tmp_path, tree), GEOM) as ref:
        assert ref.data.mean() == 1.0


def test_unknown_reftype():
    with pytest.raises(ValueError, match="unknown reference type"):
        open_reference("nonsense", os.devnull, GEOM)


@pytest.mark.parametrize("case", ["all good", "some bad"])
def test_science_medians_are_numpy_medians(tmp_path, case):
    """Brute force: numpy's medians of the science area, every value / good ones."""
    rng = np.random.default_rng(3)
    gain = rng.uniform(1.5, 2.5, (NY, NX))
    gain[0, :] = 100.0  # the border is not counted
    if case == "some bad":
        gain[10, 10:20] = -1.0
        gain[11, 11] = 0.0
    path = write(tmp_path, {"data": gain})
    b = GEOM.border
    science = gain[b:-b, b:-b]
    good = science[np.isfinite(science) & (science > 0)]
    with open_reference("gain", path, GEOM) as ref:
        every, of_good = ref.science_medians("data", b)
    assert every == float(np.median(science))
    assert of_good == float(np.median(good))
    assert (every == of_good) == (case == "all good")


@pytest.mark.parametrize("shape", [(7,), (5, 9), (3, 13, 6), (2, 2, 10, 3)])
def test_nonfinite_count_in_blocks_matches_a_plain_count(shape):
    from romanimpreprocess.datamodels import reference

    rng = np.random.default_rng(3)
    array = rng.normal(size=shape).astype(np.float32)
    flat = array.reshape(-1)
    flat[rng.choice(flat.size, size=flat.size // 3, replace=False)] = np.nan
    flat[rng.choice(flat.size, size=2, replace=False)] = np.inf
    expected = int(np.count_nonzero(~np.isfinite(array)))
    assert expected > 0
    assert reference._count_nonfinite(array) == expected
