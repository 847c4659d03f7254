"""The L2 writer: schema-valid ASDF, float16 handling, FITS copy, atomic writes."""

import os

import asdf
import numpy as np
import pytest
import roman_datamodels as rdm
import roman_datamodels.datamodels as dm
from astropy.io import fits
from roman_datamodels.dqflags import pixel

from romanimpreprocess.datamodels import l2


def _image(shape=(56, 56), seed=0):
    rng = np.random.default_rng(seed)
    model = dm.ImageModel.create_fake_data(shape=shape)
    model.data = rng.normal(1.0, 0.1, shape).astype(np.float32)
    model.dq = np.zeros(shape, np.uint32)
    model.err = rng.uniform(0.1, 1.0, shape).astype(np.float32)
    model.var_poisson = (model.err**2 * 0.7).astype(np.float32)
    model.var_rnoise = (model.err**2 * 0.3).astype(np.float32)
    model["processinfo"] = {"medsky": 1.0, "endslice": np.full(shape, -1, np.int8)}
    return model


def test_finalized_product_validates_and_reopens(tmp_path):
    model = _image()
    err32 = np.array(model.err)
    l2.finalize_l2(
        model,
        cal_steps={"ramp_fit": "COMPLETE", "sky": "SKIPPED"},
        config={"IN": "x.asdf", "SKYORDER": np.int64(2)},
        references={"gain": __file__},
        float32_errors=True,
    )
    path = tmp_path / "out_cal.asdf"
    l2.write_l2(model, path)
    with rdm.open(path) as reopened:
        reopened.validate()
        assert reopened.err.dtype == np.float16
        assert reopened.var_rnoise.dtype == np.float16
        assert reopened.var_flat.dtype == np.float16
        cal_step = dict(reopened.meta.cal_step)
        assert cal_step["ramp_fit"] == "COMPLETE"
        assert cal_step["sky"] == "SKIPPED"
        assert cal_step["photom"] == "INCOMPLETE"
        assert reopened.meta.filename == "out_cal.asdf"
    info = l2.read_processinfo(path)
    np.testing.assert_array_equal(info["err_float32"], err32)
    assert info["config"]["SKYORDER"] == 2
    assert "endslice" not in info  # only with sliceout
    ref = info["references"]["gain"]
    assert ref["size"] == os.path.getsize(__file__)
    assert len(ref["sha256_first_last_mib"]) == 64
    with asdf.open(path) as af:
        assert "processinfo" in af.tree  # top level, as the legacy


def test_values_beyond_float16_are_clipped_and_flagged():
    model = _image()
    model.var_poisson[3, 4] = 1e6
    model.err[5, 6] = np.float32(7e4)
    l2.finalize_l2(model, cal_steps={}, float32_errors=True)
    assert np.isfinite(model.var_poisson).all()
    assert model.var_poisson[3, 4] == np.float16(65504)
    assert model.dq[3, 4] & pixel.UNRELIABLE_ERROR
    assert model.dq[5, 6] & pixel.UNRELIABLE_ERROR
    assert model.dq[0, 0] == 0
    assert model["processinfo"]["var_poisson_float32"][3, 4] == np.float32(1e6)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_float16_cast_in_blocks_matches_one_clip(monkeypatch, threads):
    """The threaded row-block cast against one whole-array np.clip (the definition),
    on more rows than a block and every awkward value: NaN, +-inf, beyond, at and
    just under the float16 maximum, the smallest subnormals."""
    monkeypatch.setenv("RIP_THREADS", threads)
    rng = np.random.default_rng(5)
    shape = (2 * l2._FLOAT16_BLOCK_ROWS + 37, 41)
    value = rng.lognormal(0.0, 6.0, shape).astype(np.float32)
    value *= rng.choice([-1, 1], shape).astype(np.float32)
    awkward = [np.nan, np.inf, -np.inf, 65504.0, 65519.0, 65520.0, -7e4, 1e-8, -3e-8]
    for i, x in enumerate(awkward):
        value[100 * i % shape[0], i] = x
    dq = np.zeros(shape, np.uint32)
    dq[::7] = pixel.HOT
    dq_before = dq.copy()
    half, clipped = l2._float16_flagged(value, dq)
    expected = np.empty(shape, np.float16)
    big = np.abs(value) > l2._FLOAT16_MAX
    np.clip(value, -l2._FLOAT16_MAX, l2._FLOAT16_MAX, out=expected, casting="unsafe")
    np.testing.assert_array_equal(half.view(np.uint16), expected.view(np.uint16))
    assert clipped == int(big.sum()) > 3
    np.testing.assert_array_equal(
        dq, dq_before | np.where(big, np.uint32(pixel.UNRELIABLE_ERROR), 0)
    )
    # chisq/dumo: NaN to 0 first, no flags
    zeroed, _ = l2._float16_flagged(value, None, nan=0.0)
    expected = np.clip(
        np.nan_to_num(value, nan=0.0), -l2._FLOAT16_MAX, l2._FLOAT16_MAX
    ).astype(np.float16)
    np.testing.assert_array_equal(zeroed.view(np.uint16), expected.view(np.uint16))


def _every_float16_case():
    """float32 bit patterns of every exponent, both signs, around each rounding case.

    Mantissas: zero, the smallest, ties to even and odd at every shift a subnormal
    half can take (the bits below the tie decide), the largest; NaN payloads that
    do and do not reach float16's significand.
    """
    mantissas = {0, 1, 0x7FF, 0x800, 0xFFF, 0x7FFFFF, 0x400000, 0x1FFF}
    for shift in range(13, 24):
        tie = 1 << (shift - 1)
        for low in (0, 1):
            mantissas |= {
                tie + low,
                tie - 1,
                tie | (1 << shift),
                (tie | (1 << shift)) + low,
            }
    mantissas = np.array(sorted(m & 0x7FFFFF for m in mantissas), np.uint32)
    exponents = np.arange(256, dtype=np.uint32) << np.uint32(23)
    signs = np.array([0, 0x80000000], np.uint32)
    bits = signs[:, None, None] | exponents[None, :, None] | mantissas[None, None, :]
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 2**32, 4096 * 8, dtype=np.uint32)
    return np.concatenate([bits.ravel(), noise]).view(np.float32)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_compiled_float16_cast_has_numpys_bits(monkeypatch, threads):
    """The compiled clip-and-cast against numpy's, bit for bit: every exponent and
    rounding case of float32 (checked once for all 2**32 patterns, bench/RESULTS.md),
    the range test's flags and count, and NaN filled first; the numpy path (any
    other shape) gives the same."""
    monkeypatch.setenv("RIP_THREADS", threads)
    values = _every_float16_case()
    values = values[: values.size - values.size % 64].reshape(-1, 64)
    limit = l2._FLOAT16_MAX
    dq = np.zeros(values.shape, np.uint32)
    dq[::3] = pixel.HOT
    dq_before = dq.copy()
    half, clipped = l2._float16_flagged(values, dq)
    expected = np.empty(values.shape, np.float16)
    with np.errstate(all="ignore"):
        big = np.abs(values) > limit
        np.clip(values, -limit, limit, out=expected, casting="unsafe")
    np.testing.assert_array_equal(half.view(np.uint16), expected.view(np.uint16))
    assert clipped == int(big.sum()) > 1000
    flagged = np.where(big, np.uint32(pixel.UNRELIABLE_ERROR), np.uint32(0))
    np.testing.assert_array_equal(dq, dq_before | flagged)
    filled, _ = l2._float16_flagged(values, None, nan=0.5)
    with np.errstate(all="ignore"):
        expected = np.clip(np.nan_to_num(values, nan=0.5), -limit, limit)
    np.testing.assert_array_equal(
        filled.view(np.uint16), expected.astype(np.float16).view(np.uint16)
    )
    # the numpy path: a 3-d array of the same values
    cube, cube_clipped = l2._float16_flagged(values[None], None)
    np.testing.assert_array_equal(cube[0].view(np.uint16), half.view(np.uint16))
    assert cube_clipped == clipped


@pytest.mark.parametrize("flag", [pixel.DEAD, pixel.NO_GAIN_VALUE, pixel.NO_FLAT_FIELD])
def test_unusable_pixels_get_do_not_use_outside_legacy_compat(flag):
    flags = {(3, 4): flag | pixel.HOT, (5, 6): pixel.HOT, (7, 8): pixel.LOW_QE}
    for legacy_compat in (False, True):
        model = _image()
        for where, value in flags.items():
            model.dq[where] = value
        l2.finalize_l2(model, cal_steps={}, legacy_compat=legacy_compat)
        expected = {k: np.uint32(v) for k, v in flags.items()}
        if not legacy_compat:
            # the legacy leaves the dq as the mask and the steps made it
            expected[3, 4] |= np.uint32(pixel.DO_NOT_USE)
        for where, value in expected.items():
            assert model.dq[where] == value, (legacy_compat, where)
        assert (model.dq != 0).sum() == len(flags)


def test_float32_copies_only_on_request(tmp_path):
    """By default the file holds err and the variances once, as float16 (the legacy
    layout); ``float32_errors`` adds the float32 planes, equal to the inputs."""
    model = _image(seed=3)
    before = {k: np.array(model[k]) for k in ("err", "var_poisson", "var_rnoise")}
    l2.finalize_l2(model, cal_steps={})
    info = model["processinfo"]
    assert info["float32_errors"] is False
    assert not [k for k in info if k.endswith("_float32")]
    for key, value in before.items():
        np.testing.assert_array_equal(model[key], value.astype(np.float16))
    small, large = tmp_path / "small_cal.asdf", tmp_path / "large_cal.asdf"
    l2.write_l2(model, small)

    model = _image(seed=3)
    l2.finalize_l2(model, cal_steps={}, float32_errors=True)
    l2.write_l2(model, large)
    info = l2.read_processinfo(large)
    assert info["float32_errors"] is True
    for key, value in before.items():
        np.testing.assert_array_equal(info[f"{key}_float32"], value)
    planes = 3 * model.data.size * 4
    grown = os.path.getsize(large) - os.path.getsize(small)
    assert 0.9 * planes < grown < 1.1 * planes, (grown, planes)


def test_sliceout_keeps_endslice():
    model = _image()
    l2.finalize_l2(model, cal_steps={}, sliceout=True)
    assert model["processinfo"]["endslice"].shape == model.data.shape


def test_fits_copy_has_the_legacy_layout(tmp_path):
    model = _image()
    model.dq[10, 10] = pixel.HOT  # PixelMask1: 3x3
    model.dq[30, 30] = pixel.SATURATED  # not masked
    l2.finalize_l2(model, cal_steps={})
    path = tmp_path / "x_cal.asdf"
    l2.write_l2(model, path, fits_output=True)
    with fits.open(tmp_path / "x_cal_asdf_to.fits") as hdul:
        assert len(hdul) == 3
        np.testing.assert_array_equal(hdul[0].data, model.data)
        np.testing.assert_array_equal(hdul[1].data, model.dq)
        masked = hdul[2].data == l2.FITS_MASKED_VALUE
        assert masked[9:12, 9:12].all()
        assert masked.sum() == 9
        assert not masked[30, 30]


def test_failed_write_leaves_the_existing_product_intact(tmp_path, monkeypatch):
    path = tmp_path / "x_cal.asdf"
    path.write_bytes(b"previous")
    model = _image()
    l2.finalize_l2(model, cal_steps={})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(l2, "_write_fits", broken)
    with pytest.raises(OSError, match="disk full"):
        l2.write_l2(model, path, fits_output=True)
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["x_cal.asdf"]


def test_lz4_only_where_it_compresses():
    rng = np.random.default_rng(4)
    noise = rng.normal(1.0, 0.1, (512, 512)).astype(np.float32)
    flags = np.zeros((512, 512), np.uint32)
    flags[100:110, 7] = 4
    assert l2._compression_for(noise) is None
    assert l2._compression_for(noise.astype(np.float16)) is None
    assert l2._compression_for(flags) == "lz4"
    assert l2._compression_for(np.zeros((512, 512), np.float16)) == "lz4"


def test_written_blocks_are_compressed_per_array_and_read_back(tmp_path):
    model = _image(shape=(256, 256))
    model.dq[10:20, 10:20] = np.uint32(pixel.JUMP_DET)
    data = np.array(model.data)
    l2.finalize_l2(model)
    path = tmp_path / "mixed_cal.asdf"
    l2.write_l2(model, path)
    with asdf.open(path, lazy_load=False) as af:
        kinds = {b.header["compression"] for b in af._blocks.blocks}
        roman = af.tree["roman"]
        np.testing.assert_array_equal(roman["data"], data)
        assert roman["dq"][15, 15] == pixel.JUMP_DET
    assert kinds == {b"\0\0\0\0", b"lz4\0"}  # noise planes raw, flags lz4


def _with_no_slope_pixels(keep_nan, seed=3):
    model = _image(seed=seed)
    data = np.array(model.data)
    no_slope = np.zeros(data.shape, bool)
    no_slope[[3, 10, 40], [7, 20, 55]] = True
    data[no_slope] = np.nan
    model.data = data
    for key in ("err", "var_poisson", "var_rnoise"):
        value = np.array(model[key])
        value[no_slope] = np.nan
        model[key] = value
    withsky = data + np.float32(2.0)
    model["data_withsky"] = withsky
    before = {k: np.array(model[k]) for k in ("data", "err", "var_rnoise")}
    l2.finalize_l2(model, keep_nan=keep_nan)
    return model, no_slope, before


def test_pixels_without_a_slope_get_the_documented_finite_values(tmp_path):
    model, no_slope, before = _with_no_slope_pixels(keep_nan=False)
    for key in ("data", "data_withsky", "err", "var_poisson", "var_rnoise"):
        assert np.isfinite(np.asarray(model[key], np.float32)).all(), key
    np.testing.assert_array_equal(model.data[no_slope], l2.NO_SLOPE_DATA)
    np.testing.assert_array_equal(model["data_withsky"][no_slope], 0.0)
    np.testing.assert_array_equal(model.var_poisson[no_slope], 0.0)
    np.testing.assert_array_equal(
        model.var_rnoise[no_slope], np.float16(l2.NO_SLOPE_VAR_RNOISE)
    )
    np.testing.assert_allclose(
        np.float32(model.err[no_slope]) ** 2, l2.NO_SLOPE_VAR_RNOISE, rtol=2e-3
    )
    assert (model.dq[no_slope] & pixel.DO_NOT_USE).all()
    assert not (model.dq[~no_slope] & pixel.DO_NOT_USE).any()
    # every finite value elsewhere is untouched, bit for bit
    np.testing.assert_array_equal(model.data[~no_slope], before["data"][~no_slope])
    info = model["processinfo"]
    np.testing.assert_array_equal(
        model.err[~no_slope], before["err"][~no_slope].astype(np.float16)
    )
    assert info["no_slope_pixels"] == 3 and info["keep_nan"] is False
    path = tmp_path / "finite_cal.asdf"
    l2.write_l2(model, path)
    with rdm.open(path) as reopened:
        assert np.isfinite(reopened.data).all()


def test_keep_nan_keeps_them_and_still_flags():
    model, no_slope, _ = _with_no_slope_pixels(keep_nan=True)
    assert np.isnan(model.data[no_slope]).all()
    assert np.isnan(np.asarray(model.var_rnoise, np.float32)[no_slope]).all()
    assert (model.dq[no_slope] & pixel.DO_NOT_USE).all()
    assert model["processinfo"]["keep_nan"] is True


def _block_checksums(path):
    import mmap

    from romanimpreprocess.datamodels.checksums import _blocks

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as v:
        blocks, problems = _blocks(v, 0)
    assert not problems
    return [checksum for *_, checksum in blocks]


def test_checksums_computed_ahead_are_asdf_s(tmp_path, monkeypatch):
    """The block checksums hashed on threads before the write (RIP_THREADS=2) are
    the ones asdf computes itself (RIP_THREADS=1), and every block verifies."""
    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    hashed = []
    md5 = l2._md5
    monkeypatch.setattr(l2, "_md5", lambda a: hashed.append(a.nbytes) or md5(a))
    monkeypatch.setattr(l2, "_AHEAD_MIN_BYTES", 4096)
    # float32 planes stored as they are, the rest compressed (asdf hashes those)
    monkeypatch.setattr(
        l2, "_compression_for", lambda a: None if a.dtype == np.float32 else "lz4"
    )
    sums = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("RIP_THREADS", threads)
        model = _image(shape=(64, 64))
        l2.finalize_l2(model, cal_steps={})
        path = tmp_path / f"t{threads}_cal.asdf"
        l2.write_l2(model, path)
        assert block_checksum_problems(path) == []
        sums[threads] = _block_checksums(path)
    assert len(hashed) >= 3  # data and the float32 planes of the fake model
    assert sums["1"] == sums["2"]
    assert all(any(c) for c in sums["2"])
    from asdf._block import io as block_io

    assert block_io.calculate_block_checksum.__module__ == "asdf._block.io"


def test_checksums_ahead_with_writers_side_by_side(tmp_path, monkeypatch):
    """Threads writing L2s at the same time: every file verifies and asdf's own
    checksum function is in place afterwards."""
    import threading

    from asdf._block import io as block_io

    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    monkeypatch.setenv("RIP_THREADS", "2")
    monkeypatch.setattr(l2, "_AHEAD_MIN_BYTES", 4096)
    monkeypatch.setattr(
        l2, "_compression_for", lambda a: None if a.dtype == np.float32 else "lz4"
    )
    original = block_io.calculate_block_checksum
    models = []
    for seed in range(4):
        model = _image(shape=(64, 64), seed=seed)
        l2.finalize_l2(model, cal_steps={})
        models.append(model)
    paths = [tmp_path / f"w{k}_cal.asdf" for k in range(4)]
    writers = [
        threading.Thread(target=l2.write_l2, args=(m, p))
        for m, p in zip(models, paths, strict=True)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    for path in paths:
        assert block_checksum_problems(path) == []
    assert block_io.calculate_block_checksum is original


def test_l2_written_around_the_page_cache_is_asdf_s_file(tmp_path, monkeypatch):
    """The L2 written through `utils.direct_write` (O_DIRECT) is byte for byte the
    file asdf writes itself (RIP_DIRECT_WRITE=0)."""
    from unittest import mock

    from astropy.time import Time

    from romanimpreprocess.utils import direct_write

    opened = []
    open_direct = direct_write.open_direct

    def recording(path, *args):
        opened.append(open_direct(path, *args))
        return opened[-1]

    monkeypatch.setattr(direct_write, "open_direct", recording)
    model = _image(shape=(300, 300))
    model.dq = np.where(np.random.default_rng(3).random((300, 300)) < 0.01, 4, 0)
    model.dq = model.dq.astype(np.uint32)
    l2.finalize_l2(model, cal_steps={})
    files = {}
    with mock.patch("astropy.time.Time.now", return_value=Time("2026-01-01T00:00:00")):
        for setting in ("0", "1"):
            monkeypatch.setenv("RIP_DIRECT_WRITE", setting)
            (tmp_path / setting).mkdir()
            path = tmp_path / setting / "x_cal.asdf"
            l2.write_l2(model, path)
            files[setting] = path.read_bytes()
    assert opened[0] is None and isinstance(opened[1], direct_write.DirectFile)
    assert opened[1].closed
    assert files["0"] == files["1"]
