"""Flat field: clipping and flags, IPC in electrons, area normalisation, the step."""

import logging

import numpy as np
from astropy.io import fits
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import OMEGA_IDEAL
from romanimpreprocess.datamodels import wcs as wcs_tools
from romanimpreprocess.flatfield import FlatFieldStep, flatfield
from romanimpreprocess.ipc.ipc import ipc_forward
from tests.conftest import cross_kernel, make_rate_image

N = 72  # full frame with the 4-pixel border
S = N - 8


def test_prepare_flat_clips_flags_and_deconvolves(rng):
    flat = rng.uniform(0.8, 1.2, (N, N)).astype(np.float32)
    flat[10, 10], flat[20, 20] = 0.01, 50.0
    gain = rng.uniform(1.6, 2.0, (N, N))
    gain[30, 30] = 0.05
    F, out_of_range, bad_gain = flatfield.prepare_flat(
        flat, cross_kernel(S), gain, 4, iterations=12, dtype=np.float64
    )
    assert F.shape == (S, S)
    assert out_of_range[6, 6] and out_of_range[16, 16] and out_of_range.sum() == 2
    assert bad_gain[26, 26] and bad_gain.sum() == 1
    # The forward IPC of F g (in electrons) gives back the clipped flat file x g.
    g = np.maximum(gain[4:-4, 4:-4], 0.1)
    clipped = np.clip(flat[4:-4, 4:-4], 0.1, 10)
    forward = ipc_forward(F.astype(np.float64) * g, cross_kernel(S).astype(np.float64))
    np.testing.assert_allclose(forward / g, clipped, rtol=2e-5)


def _files(make_ref_file, rng, flat_value=0.8):
    flat = np.full((N, N), flat_value, np.float32)
    flat[12, 12] = 0.0
    gain = np.full((N, N), 1.8)
    return {
        "override_flat": make_ref_file("flat.asdf", {"data": flat}),
        "override_gain": make_ref_file("gain.asdf", {"data": gain}),
        "override_ipc4d": "N/A",
    }


def _image(rng):
    return make_rate_image(S, rng.uniform(1, 2, (S, S)).astype(np.float32))


def test_effective_flat_in_threaded_blocks_is_the_whole_frame_formula(rng, monkeypatch):
    """Row blocks on threads against F / (Area / Omega) over the whole frame."""
    flat = rng.uniform(0.5, 1.5, (301, 77)).astype(np.float32)
    area = rng.uniform(0.9, 1.1, (301, 77)) * OMEGA_IDEAL
    expected = (flat / (area / OMEGA_IDEAL)).astype(np.float32)
    for threads in ("1", "2"):
        monkeypatch.setenv("RIP_THREADS", threads)
        asked = []

        def area_of_rows(start, stop, asked=asked):
            asked.append((start, stop))
            return area[start:stop]

        got, (smallest, largest) = flatfield.effective_flat(
            flat, area_of_rows, OMEGA_IDEAL, block_rows=16
        )
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
        assert (smallest, largest) == (area.min(), area.max())
        # every row once, 16 at a time: the area map is never made whole
        assert sorted(asked) == [(a, min(a + 16, 301)) for a in range(0, 301, 16)]


def test_step_without_wcs_divides_by_the_flat_only(make_ref_file, rng, caplog):
    model = _image(rng)
    data = np.array(model.data)
    with caplog.at_level(logging.WARNING):
        out = FlatFieldStep.call(model, **_files(make_ref_file, rng))
    assert "pixel-area normalisation skipped" in caplog.text
    np.testing.assert_allclose(out.data[0, 0], data[0, 0] / 0.8, rtol=1e-6)
    np.testing.assert_allclose(out.var_poisson[0, 0], 0.16 / 0.64, rtol=1e-6)
    np.testing.assert_allclose(out.err[0, 0], 0.5 / 0.8, rtol=1e-6)
    assert out.dq[8, 8] & pixel.NO_FLAT_FIELD
    assert out["processinfo"]["area_normalization"] is False


def test_step_with_a_wcs_header_normalises_the_area(make_ref_file, rng, tmp_path):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CRPIX1"] = h["CRPIX2"] = (S - 1) / 2
    h["CRVAL1"], h["CRVAL2"] = 10.0, 20.0
    scale = 0.12 / 3600  # not the ideal pixel: area factor ~1.19
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale, 0.0, 0.0, scale
    h["A_ORDER"] = h["B_ORDER"] = 2
    h["A_2_0"] = 1e-6
    path = tmp_path / "wcs.txt"
    h.tofile(path)
    area = wcs_tools.pixel_area_map(h, (S, S))
    model = _image(rng)
    data = np.array(model.data)
    out = FlatFieldStep.call(model, wcs_header=str(path), **_files(make_ref_file, rng))
    flat = np.full((S, S), 0.8)
    flat[8, 8] = 0.1  # the file's 0 is clipped to the range
    expected = data * (area / OMEGA_IDEAL) / flat
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    assert out.meta.wcs is not None
    legacy = FlatFieldStep.call(
        _image(np.random.default_rng(0)),
        wcs_header=str(path),
        legacy_compat=True,
        **_files(make_ref_file, rng),
    )
    shifted = wcs_tools.pixel_area_map(h, (S, S), offset=4)
    ratio = legacy.data / _image(np.random.default_rng(0)).data
    np.testing.assert_allclose(ratio, shifted / OMEGA_IDEAL / flat, rtol=1e-6)
