"""The L1 reader: clear errors for bad exposures, correct timing of good ones."""

import numpy as np
import pytest

from romanimpreprocess.datamodels import (
    InputFileError,
    open_l1,
    resultant_times,
    validate_l1,
)
from tests.conftest import make_raw_model


def _save(model, tmp_path, name="raw_uncal.asdf"):
    path = tmp_path / name
    model.save(path)
    return str(path)


def test_good_file(tmp_path):
    path = _save(make_raw_model(size=64), tmp_path)
    model = open_l1(path)
    assert model.data.shape == (5, 64, 64)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (
            lambda m: setattr(m, "amp33", m.amp33[:, :, :64]),
            "roman.amp33",
            "(5, 64, 128)",
        ),
        (lambda m: setattr(m, "data", m.data[0]), "roman.data", "3-D"),
        (
            lambda m: m.meta.exposure.__setitem__("read_pattern", [[0], [1], [2]]),
            "meta.exposure.read_pattern",
            "3 resultants but the data has 5",
        ),
        (
            lambda m: m.meta.exposure.__setitem__(
                "read_pattern", [[0], [1, 3], [4], [5], [6]]
            ),
            "meta.exposure.read_pattern",
            "contiguous",
        ),
        (
            lambda m: m.meta.exposure.__setitem__("frame_time", -1.0),
            "meta.exposure.frame_time",
            "positive",
        ),
        (
            lambda m: m.meta.instrument.__setitem__("detector", "WFI19"),
            "meta.instrument.detector",
            "WFI19",
        ),
        (lambda m: setattr(m, "data", m.data[:, :, :60]), "roman.data", "32 channels"),
    ],
)
def test_bad_exposure_names_field(mutate, field, words):
    model = make_raw_model(size=64)
    mutate(model)
    with pytest.raises(InputFileError) as err:
        validate_l1(model, "bad_uncal.asdf")
    msg = str(err.value)
    assert "bad_uncal.asdf" in msg and field in msg and words in msg


def test_schema_invalid_file_names_file_and_problem(tmp_path):
    """A file whose data is not uint16 (header edited, as a corrupt writer would)."""
    path = _save(make_raw_model(size=64), tmp_path)
    raw = open(path, "rb").read()
    assert b"datatype: uint16" in raw
    with open(path, "wb") as f:
        f.write(raw.replace(b"datatype: uint16", b"datatype:  int16", 1))
    with pytest.raises(InputFileError) as err:
        open_l1(path)
    assert path in str(err.value) and "uint16" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"not an asdf file at all\n"])
def test_empty_or_not_asdf(tmp_path, content):
    path = tmp_path / "x_uncal.asdf"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        open_l1(str(path))
    assert str(path) in str(err.value)


def test_missing(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        open_l1(str(tmp_path / "missing.asdf"))


def test_truncated(tmp_path):
    path = _save(make_raw_model(size=64), tmp_path)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(InputFileError) as err:
        model = open_l1(path)
        np.asarray(model.data)
    assert path in str(err.value)


def test_resultant_times_closed_form():
    """tbar and tau (docs/ramp_fit/description.rst, Resultant times) of single- and multi-frame resultants."""
    tbar, tau, n = resultant_times([[0], [1, 2], [3, 4, 5]], 2.0)
    np.testing.assert_allclose(tbar, [0.0, 3.0, 8.0])
    # tau = (t0 + (N-1)(2N-1)/(6N)) dt: N=2 -> 1 + 1*3/12 ; N=3 -> 3 + 2*5/18
    np.testing.assert_allclose(tau, [0.0, 2 * (1 + 3 / 12), 2 * (3 + 10 / 18)])
    np.testing.assert_array_equal(n, [1, 2, 3])
    # brute force: variance of the mean of cumulative Poisson counts at rate 1/s
    frames = np.array([3, 4, 5]) * 2.0
    assert tau[2] == pytest.approx(np.minimum.outer(frames, frames).mean())


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("offset", [0, 1000])
@pytest.mark.parametrize("with_reference_read", [False, True])
def test_ramp_decoded_as_romancal_makes_it(threads, offset, with_reference_read):
    # raw_to_ramp decodes the resultants itself (in threads); the model must be the
    # one romancal's to_ramp_model makes, with the reference read added and the
    # offset removed in float32 afterwards.
    from romancal.dq_init.dq_initialization import to_ramp_model

    from romanimpreprocess.datamodels import raw_to_ramp

    raw = make_raw_model(size=64, seed=2)
    raw.meta.instrument.data_encoding_offset = offset
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 3000, (64, 64)).astype(np.uint16)
    if with_reference_read:
        raw.reference_read = reference
    raw.resultantdq = rng.integers(0, 3, raw.data.shape).astype(np.uint8)
    expect = to_ramp_model(raw)
    if with_reference_read:
        expect.data += reference.astype(np.float32)
    expect.data -= np.float32(offset)
    ramp = raw_to_ramp(raw, threads=threads)
    assert ramp.data.dtype == np.float32
    assert ramp.data.tobytes() == expect.data.tobytes()
    np.testing.assert_array_equal(ramp.groupdq, expect.groupdq)
    np.testing.assert_array_equal(ramp.pixeldq, expect.pixeldq)
    assert dict(ramp.meta.cal_step) == dict(expect.meta.cal_step)
    assert ramp.meta.exposure.read_pattern == expect.meta.exposure.read_pattern
    assert "reference_read" not in ramp
    np.testing.assert_array_equal(
        ramp.amp33, (raw.amp33 - np.uint16(offset)).astype(np.uint16)
    )


@pytest.mark.parametrize("offset", [0, 1000])
@pytest.mark.parametrize("with_references", [False, True])
def test_decoded_uint16_is_the_rounded_ramp(offset, with_references):
    # The noise step's plane-by-plane uint16 decode equals rounding and clipping
    # the float32 ramp of raw_to_ramp (data), and its amp33 (modular uint16); the
    # data reach 0 and 65535, so the offset and the reference read push them out
    # of range.
    from romanimpreprocess.datamodels import raw_to_ramp
    from romanimpreprocess.datamodels.l1 import decoded_uint16

    raw = make_raw_model(size=64, seed=3)
    raw.meta.instrument.data_encoding_offset = offset
    rng = np.random.default_rng(8)
    raw.data[0, :2] = 0
    raw.data[-1, -2:] = 65535
    if with_references:
        raw.reference_read = rng.integers(0, 3000, (64, 64)).astype(np.uint16)
        raw.reference_amp33 = rng.integers(0, 3000, raw.amp33.shape[1:]).astype(
            np.uint16
        )
    ramp = raw_to_ramp(raw)
    data, amp33 = decoded_uint16(raw)
    expect = np.clip(np.round(ramp.data), 0, 65535).astype(np.uint16)
    assert data.dtype == np.uint16 and amp33.dtype == np.uint16
    np.testing.assert_array_equal(data, expect)
    if offset or with_references:
        # the clip is exercised: 0 - offset below 0, 65535 + reference above
        assert (ramp.data < 0).any() or (ramp.data > 65535).any()
    np.testing.assert_array_equal(amp33, ramp.amp33)
    none, amp33_only = decoded_uint16(raw, planes=False)
    assert none is None
    np.testing.assert_array_equal(amp33_only, ramp.amp33)


def test_compressed_l1_read_in_large_pieces(tmp_path):
    # The L1 is opened inside large_reads (4 MiB pieces of compressed blocks): the
    # arrays are the ones asdf reads by default, and the setting ends with the block.
    import asdf

    from romanimpreprocess.datamodels import large_reads

    raw = make_raw_model(size=64, seed=4)
    path = tmp_path / "lz4_uncal.asdf"
    raw.save(path, all_array_compression="lz4")
    default = asdf.get_config().io_block_size
    with large_reads():
        assert asdf.get_config().io_block_size == 1 << 22
    assert asdf.get_config().io_block_size == default
    model = open_l1(str(path))
    np.testing.assert_array_equal(model.data, raw.data)
    np.testing.assert_array_equal(model.amp33, raw.amp33)


def test_lz4_rows_in_bands_equal_the_cube(tmp_path):
    """An lz4 L1 read by row bands (overlapping halos, tail reuse) == the decoded cube."""
    import asdf

    from romanimpreprocess.datamodels.l1 import _Lz4Rows, decode_rows, raw_to_ramp

    raw = make_raw_model(size=64)
    path = str(tmp_path / "lz4_uncal.asdf")
    # 64 rows x 128 bytes; chunks of 1 KiB = 8 rows: bands cross chunk boundaries
    af = asdf.AsdfFile({"roman": raw._instance})
    af.set_array_compression(raw._instance["data"], "lz4", compression_block_size=1024)
    af.write_to(path)
    model = open_l1(path)
    reader = _Lz4Rows.of(model)
    assert reader is not None and reader.chunk_rows == 8
    with asdf.open(path) as f:
        expected = np.asarray(f.tree["roman"]["data"])
    whole = raw_to_ramp(open_l1(path)).data
    for start, stop in [(0, 13), (5, 30), (22, 64), (60, 64), (0, 64), (3, 4)]:
        assert np.array_equal(reader.rows(slice(start, stop)), expected[:, start:stop])
        decoded = decode_rows(model, slice(start, stop)).data
        assert np.array_equal(decoded, whole[:, start:stop])


def test_lz4_l1_decoded_whole_in_threads(tmp_path):
    # The whole-cube path (legacy_compat, likely, band_rows=0) decodes the
    # resultants on threads: an lz4 cube left lazy at open must not be loaded by
    # asdf from several threads at once (it raised "Decompressed data wrong size"
    # on full frames).
    from romanimpreprocess.datamodels.l1 import raw_to_ramp

    size = 1024  # big enough for asdf's lazy load to race (it did at 1024, not 256)
    raw = make_raw_model(size=size, seed=3)
    path = tmp_path / "lz4_uncal.asdf"
    raw.save(path, all_array_compression="lz4")
    expected = raw_to_ramp(make_raw_model(size=size, seed=3)).data
    decoded = raw_to_ramp(open_l1(str(path)), threads=2).data
    np.testing.assert_array_equal(decoded, expected)
