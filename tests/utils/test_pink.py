"""The one 1/f read-noise model (romanimpreprocess.utils.pink) and a simulated
exposure's reference pixels against what the read-noise file claims
(docs/reference_files.rst, "The 1/f noise of the read-noise file")."""

import numpy as np
import pytest
from scipy.integrate import quad

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER
from romanimpreprocess.simulate.simulate import SimulationConfig, simulate_exposure
from romanimpreprocess.utils.pink import (
    channel_image,
    readout_pink,
    structure_function,
    unit_pink,
)

B = REF_BORDER


def test_many_series_draw_the_stream_as_one_call_each():
    one = np.random.default_rng(4)
    many = np.random.default_rng(4)
    singles = [unit_pink(500, one) for _ in range(11)]
    batch = unit_pink(500, many, count=11)  # crosses a chunk boundary (8)
    np.testing.assert_array_equal(np.stack(singles), batch)
    assert one.standard_normal() == many.standard_normal()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_series_has_unit_power_per_efold(dtype):
    rng = np.random.default_rng(8)
    n = 4096
    series = unit_pink(n, rng, count=300, dtype=dtype)
    assert series.dtype == dtype
    np.testing.assert_allclose(series.mean(axis=1), 0.0, atol=1e-4)
    # One-sided PSD 1/f: the periodogram of the first n samples (Hann window) at
    # frequency f, times f, is 1, in every octave.
    window = np.hanning(n)
    spectrum = np.fft.rfft(series.astype(np.float64) * window, axis=1)
    psd = 2 * np.mean(np.abs(spectrum) ** 2, axis=0) / np.sum(window**2)
    f = np.fft.rfftfreq(n)
    for lo in (16, 64, 256, 1024):
        band = slice(lo, 2 * lo)
        # 300 series x lo frequencies: a few % statistical error
        assert np.mean(psd[band] * f[band]) == pytest.approx(1.0, rel=0.08)


def test_structure_function_closed_form():
    # D(τ) = 2 ∫_0^1/2 (1 - cos 2πfτ)/f df, by quadrature
    for tau in (1, 3, 17, 128, 1000):
        integral = quad(
            lambda f, t=tau: 2 * (1 - np.cos(2 * np.pi * f * t)) / f,
            0,
            0.5,
            limit=4000,
        )[0]
        assert structure_function(tau) == pytest.approx(integral, rel=1e-4)
    assert structure_function(0) == 0
    # and the generator has it (lags small against the series length)
    series = unit_pink(8192, np.random.default_rng(2), count=400)
    for tau in (1, 5, 40, 300):
        measured = np.mean((series[:, tau:] - series[:, :-tau]) ** 2)
        assert measured == pytest.approx(structure_function(tau), rel=0.03)


def test_channel_image_reads_odd_channels_right_to_left():
    rng = np.random.default_rng(1)
    series = readout_pink(rng, 8, 4, n_channels=4, amp33_width=6)
    assert series.common.shape == (8, 6)  # the row takes amp33's 6 clocks
    image = channel_image(series, 2.0, 0.0)
    np.testing.assert_array_equal(image[:, 0:4], 2.0 * series.common[:, :4])
    np.testing.assert_array_equal(image[:, 4:8], 2.0 * series.common[:, 3::-1])
    own = channel_image(series, 0.0, 1.0)
    np.testing.assert_array_equal(own[:, 12:16], series.own[3][:, ::-1])


# ------------------------------------------------- a simulated exposure's reference
PINK = {"c_pink": 8.0, "u_pink": 4.0, "m_pink": 0.9, "ru_pink": 3.0}


@pytest.fixture(scope="module")
def reference_noise():
    """Resultants 1..23 (2 frames each) of a 256² exposure, less their mean.

    Amplitudes well above the white noise so that the 1/f part is measured to a few
    %, no drifts (they are not 1/f). Subtracting the mean over the K = 23 resultants
    removes the fixed offsets (Sref, reset, amp33 median); each deviation carries the
    1/f of 2 frames (each / 2) times (1 - 1/K): ``scale`` of the single-frame model,
    and white noise (σ²/2 + 1/12)(1 - 1/K). The K deviations are nearly independent
    realisations (correlation -1/(K-1)): their scatter gives the statistical error.
    """
    config = SimulationConfig(
        size=256, read_pattern="survey24", seed=5, drift=0.0, n_sources=4, **PINK
    )
    l1, cal, _, _ = simulate_exposure(config)
    # the file's numbers are the simulator's
    assert cal["read"]["anc"] == {"C_PINK": 8.0, "U_PINK": 4.0}
    assert cal["read"]["amp33"]["M_PINK"] == 0.9
    assert cal["read"]["amp33"]["RU_PINK"] == 3.0
    data = l1["data"][1:].astype(np.float64)
    amp33 = l1["amp33"][1:].astype(np.float64)
    k = data.shape[0]
    keep = 1 - 1 / k
    white = (np.asarray(cal["read"]["data"], np.float64) ** 2 / 2 + 1 / 12) * keep
    amp33_white = np.asarray(cal["read"]["amp33"]["std"], np.float64) ** 2 / 2
    amp33_white = (amp33_white + 1 / 12) * keep
    return {
        "data": data - data.mean(axis=0),
        "amp33": amp33 - amp33.mean(axis=0),
        "white": white,
        "amp33_white": amp33_white,
        "scale": 0.5 * keep,
    }


def _agrees(per_realisation, expected, slack=0.03):
    """Mean over realisations equals ``expected`` within 4 standard errors + slack."""
    ratio = np.asarray(per_realisation) / expected
    err = ratio.std(ddof=1) / np.sqrt(ratio.size)
    return abs(ratio.mean() - 1) < 4 * err + slack, (ratio.mean(), err)


def test_amp33_power_spectrum_is_the_files(reference_noise):
    """amp33 in readout order (ny x 128 clocks): PSD (M²C² + RU²)/f + white."""
    series = reference_noise["amp33"].reshape(reference_noise["amp33"].shape[0], -1)
    series = series - series.mean(axis=1, keepdims=True)
    n = series.shape[1]
    window = np.hanning(n)
    psd = 2 * np.abs(np.fft.rfft(series * window, axis=1)) ** 2 / np.sum(window**2)
    f = np.fft.rfftfreq(n)[1:]
    psd = psd[:, 1:]
    c, m, ru = PINK["c_pink"], PINK["m_pink"], PINK["ru_pink"]
    model = reference_noise["scale"] * (m**2 * c**2 + ru**2) / f
    model += 2 * np.mean(reference_noise["amp33_white"])
    bands = 0
    lo = 32
    while 2 * lo <= n // 2:
        band = slice(lo, 2 * lo)
        ok, got = _agrees(np.mean(psd[:, band] / model[band], axis=1), 1.0)
        assert ok, (lo, got)
        bands += 1
        lo *= 2
    assert bands >= 8  # four decades of frequency


def _increments(x, axis, lag):
    x = np.moveaxis(x, axis, -1)
    return x[..., lag:] - x[..., :-lag]


def test_reference_pixels_along_the_clock(reference_noise):
    """Reference columns and rows, τ = 1..3 clocks within a row: D(τ) of a channel is
    (C² + U²) D(τ), between channels (0 and 31 at the left/right edges, neighbours
    in the reference rows) C² D(τ) (the common mode)."""
    data, white = reference_noise["data"], reference_noise["white"]
    ny = data.shape[1]
    width = ny // N_CHANNELS
    c, u, s = PINK["c_pink"], PINK["u_pink"], reference_noise["scale"]
    left, right = data[:, :, :B], data[:, :, -B:][..., ::-1]  # both at clocks 0..3
    w_left = white[:, :B]
    rows = np.r_[0:B, ny - B : ny]
    chans = [data[:, rows, ch * width : (ch + 1) * width] for ch in range(N_CHANNELS)]
    chans = np.stack([x[..., ::-1] if ch % 2 else x for ch, x in enumerate(chans)], 1)
    for tau in (1, 2, 3):
        d = structure_function(tau)
        step_l, step_r = _increments(left, 2, tau), _increments(right, 2, tau)
        white_l = np.mean(w_left[:, tau:] + w_left[:, :-tau])
        auto = np.mean(step_l**2, axis=(1, 2)) - white_l
        ok, got = _agrees(auto, s * (c**2 + u**2) * d)
        assert ok, ("auto", tau, got)
        ok, got = _agrees(np.mean(step_l * step_r, axis=(1, 2)), s * c**2 * d)
        assert ok, ("left-right", tau, got)
        step = _increments(chans, 3, tau)
        ok, got = _agrees(np.mean(step[:, :-1] * step[:, 1:], axis=(1, 2, 3)),
                          s * c**2 * d)  # fmt: skip
        assert ok, ("neighbour channels", tau, got)


def test_reference_columns_row_to_row(reference_noise):
    """Left (channel 0) and right (channel 31, read right to left) reference columns
    over τ = Δy · 128 clocks: (C² + U²) D(τ) each, C² D(τ) shared, and amp33 read at
    the same clocks shares M C² D(τ)."""
    data, amp33, white = (reference_noise[k] for k in ("data", "amp33", "white"))
    ny = data.shape[1]
    left = data[:, :, :B]
    right = data[:, :, -B:][..., ::-1]
    amp = amp33[:, :, :B]
    w_left = white[:, :B]
    c, u, m, s = (
        PINK["c_pink"],
        PINK["u_pink"],
        PINK["m_pink"],
        reference_noise["scale"],
    )
    clocks = max(ny // N_CHANNELS, AMP33_WIDTH)
    for dy in (1, 3, 10, 30):
        d = structure_function(dy * clocks)
        sl, sr, sa = (_increments(x, 1, dy) for x in (left, right, amp))
        wl = np.mean(w_left[dy:] + w_left[:-dy])
        ok, got = _agrees(np.mean(sl**2, axis=(1, 2)) - wl, s * (c**2 + u**2) * d)
        assert ok, ("auto", dy, got)
        ok, got = _agrees(np.mean(sl * sr, axis=(1, 2)), s * c**2 * d)
        assert ok, ("left-right", dy, got)
        ok, got = _agrees(np.mean(sl * sa, axis=(1, 2)), s * m * c**2 * d)
        assert ok, ("amp33", dy, got)
