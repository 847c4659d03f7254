"""Noise layers on plain arrays: grammar, weights, and each layer against its model."""

import numpy as np
import pytest

from romanimpreprocess.noise import noise, read_ramp, weights
from romanimpreprocess.noise.layers import (
    LayerSyntaxError,
    NoiseLayer,
    noise_dtype,
    parse_layer,
    parse_layers,
)

READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]
FRAME_TIME = 3.04


def resultant_times(read_pattern, frame_time):
    """tbar, tau and N of each resultant (docs/dq_init/index.rst, written out here)."""
    n = np.array([len(f) for f in read_pattern], dtype=float)
    first = np.array([f[0] for f in read_pattern], dtype=float)
    tbar = (first + (n - 1) / 2) * frame_time
    tau = (first + (n - 1) * (2 * n - 1) / (6 * n)) * frame_time
    return tbar, tau, n


def optimal_weights(read_pattern, frame_time, *, u=0.4 / 1.8 / 6.5**2, start=1):
    """GLS slope weights K of docs/ramp_fit/description.rst, computed independently here."""
    tbar, tau, n = resultant_times(read_pattern, frame_time)
    idx = np.arange(start, len(read_pattern))
    cov = np.empty((idx.size, idx.size))
    for a, i in enumerate(idx):
        for b, j in enumerate(idx):
            cov[a, b] = 1 / n[i] + u * tau[i] if i == j else u * tbar[min(i, j)]
    w = np.linalg.inv(cov)
    one, t = np.ones(idx.size), tbar[idx]
    f0, f1, f2 = one @ w @ one, one @ w @ t, t @ w @ t
    k = np.zeros(len(read_pattern))
    k[idx] = (f0 * (w @ t) - f1 * (w @ one)) / (f0 * f2 - f1**2)
    return k


# ------------------------------------------------------------------------ grammar
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RP", NoiseLayer("RP", read=True, poisson=True)),
        ("RS2", NoiseLayer("RS2", read=True, sky_order=2)),
        (
            "Rz4S2C1",
            NoiseLayer("Rz4S2C1", read=True, read_clip=4.0, sky_order=2, comment="1"),
        ),
        ("O", NoiseLayer("O", pseudo_poisson=True)),
        (
            "Prb2",
            NoiseLayer(
                "Prb2", poisson=True, poisson_resample=True, poisson_sky_order=2
            ),
        ),
        (
            "Pb",
            NoiseLayer("Pb", poisson=True, poisson_sky_order=0),
        ),
        ("Pr", NoiseLayer("Pr", poisson=True, poisson_resample=True)),
        ("RS0C0", NoiseLayer("RS0C0", read=True, sky_order=0, comment="0")),
        ("Raz2.5", NoiseLayer("Raz2.5", read=True, read_add=True, read_clip=2.5)),
        ("Rz2a", NoiseLayer("Rz2a", read=True, read_add=True, read_clip=2.0)),
        ("S", NoiseLayer("S", sky_order=0)),
        ("S12", NoiseLayer("S12", sky_order=12)),
        ("C", NoiseLayer("C")),
        (
            "SOCabcRa",
            NoiseLayer(
                "SOCabcRa",
                read=True,
                read_add=True,
                pseudo_poisson=True,
                sky_order=0,
                comment="abc",
            ),
        ),
    ],
)
def test_parse_layer(text, expected):
    assert parse_layer(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("X", "unknown command 'X'"),
        ("r", "unexpected 'r' at position 0"),
        ("R a", "unexpected ' '"),
        ("R-", "unexpected '-'"),
        ("RR", "given twice"),
        ("RSS2", "given twice"),
        ("Rq", "unknown argument 'q'"),
        ("Rz", "needs a clipping level"),
        ("Rz0", "must be > 0"),
        ("Rzz1", "cannot parse|given twice"),
        ("Ra1", "'a' takes no number"),
        ("Oa", "O takes no arguments"),
        ("Pq", "unknown argument 'q'"),
        ("Pr3", "'r' takes no number"),
        ("Pb1.5", "non-negative integer"),
        ("Sx", "non-negative integer"),
        ("S1.5", "non-negative integer"),
    ],
)
def test_parse_layer_errors(text, match):
    with pytest.raises(LayerSyntaxError, match=match):
        parse_layer(text)


def test_parse_layers():
    layers = parse_layers(["Rz4S2C1", "O", "Prb2"])
    assert [layer.text for layer in layers] == ["Rz4S2C1", "O", "Prb2"]
    with pytest.raises(LayerSyntaxError, match="list of strings"):
        parse_layers("RS2")
    with pytest.raises(LayerSyntaxError, match="no noise layers"):
        parse_layers([])
    with pytest.raises(LayerSyntaxError, match="must be a string"):
        parse_layers(["O", 3])
    with pytest.raises(LayerSyntaxError, match="'Q'"):
        parse_layers(["O", "Q"])
    assert issubclass(LayerSyntaxError, ValueError)


@pytest.mark.parametrize(("value", "dtype"), [(16, np.float16), (32, np.float32)])
def test_noise_dtype(value, dtype):
    assert noise_dtype(value) is dtype


@pytest.mark.parametrize("value", [64, 8, "32", None, True, 16.5])
def test_noise_dtype_errors(value):
    with pytest.raises(ValueError, match="Unsupported noise precision"):
        noise_dtype(value)


# ------------------------------------------------------------------------ weights
def test_weight_table_rows():
    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    k = optimal_weights(READ_PATTERN, FRAME_TIME)
    table, valid = weights.weight_table(k, tbar, start=1)
    np.testing.assert_array_equal(valid, [False, False, True, True, True, True])
    np.testing.assert_array_equal(table[:2], 0.0)
    np.testing.assert_allclose(table[-1], k)
    for e in (2, 3, 4):
        # A slope estimator: no response to a constant, unit response to t.
        np.testing.assert_allclose(table[e].sum(), 0.0, atol=1e-15)
        np.testing.assert_allclose(table[e] @ tbar, 1.0, rtol=1e-12)
        assert np.count_nonzero(table[e]) == 2
        assert table[e, 1] < 0 < table[e, e]
    with pytest.raises(ValueError, match="no pair"):
        weights.weight_table(k, tbar, start=5)


def test_endslice_rows_fixed_and_legacy():
    valid = np.array([False, False, True, True, True, True])
    endslice = np.array([[-1, 0, 1], [2, 3, 4]])
    fixed = weights.endslice_rows(endslice, valid, (2, 3))
    legacy = weights.endslice_rows(endslice, valid, (2, 3), legacy_compat=True)
    # Fixed: endslice 0 and 1 (no usable pair with start = 1) get no noise.
    np.testing.assert_array_equal(fixed, [[5, -1, -1], [2, 3, 4]])
    # Legacy: endslice 0 counts as unsaturated (full weights), docs/noise/index.rst, differences from the legacy.
    np.testing.assert_array_equal(legacy, [[5, 5, -1], [2, 3, 4]])
    np.testing.assert_array_equal(weights.endslice_rows(None, valid, (2, 3)), 5)
    with pytest.raises(ValueError, match="endslice values"):
        weights.endslice_rows(np.array([[7]]), valid, (1, 1))


def test_increment_coefficients_reproduce_the_fit(rng):
    """Σ_j c_j n_j equals fitting resultants built from increments n_j, exactly."""
    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    k = optimal_weights(READ_PATTERN, FRAME_TIME)
    table, _ = weights.weight_table(k, tbar, start=1)
    coef = weights.increment_coefficients(table, READ_PATTERN)
    nframes = READ_PATTERN[-1][-1] + 1
    assert coef.shape == (6, nframes - 1)
    increments = rng.poisson(50.0, size=(1000, nframes)).astype(float)
    frames = np.cumsum(increments, axis=1)  # frame f holds increments 0..f
    res = np.stack([frames[:, f].mean(axis=1) for f in READ_PATTERN], axis=1)
    for row in (2, 3, 5):
        np.testing.assert_allclose(
            res @ table[row], increments[:, 1:] @ coef[row], rtol=1e-12, atol=1e-9
        )
    # Per-frame weights sum to 1: the slope of a unit-rate ramp is 1 per frame.
    np.testing.assert_allclose(coef[5].sum() * FRAME_TIME, 1.0, rtol=1e-12)


def test_tilde_moments_closed_form():
    c = np.array([[0.5, 0.5], [1.0, 0.0]])
    # ν₂ = 0.5, ν₃ = 0.25, ν₄ = 0.125 → ν̃ = (0.5, 0.25 − 0.75, 0.125 − 1.25 + 1.875).
    np.testing.assert_allclose(
        weights.tilde_moments(c), [[0.5, -0.5, 0.75], [1.0, -2.0, 6.0]]
    )


def test_pseudo_poisson_moments_units():
    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    k = optimal_weights(READ_PATTERN, FRAME_TIME)
    table, _ = weights.weight_table(k, tbar, start=1)
    c = weights.increment_coefficients(table, READ_PATTERN)[[2, 5]]
    t = FRAME_TIME
    nu2, nu3, nu4 = (np.sum(c**p, axis=1) for p in (2, 3, 4))
    fixed = weights.pseudo_poisson_moments(c, t)
    legacy = weights.pseudo_poisson_moments(c, t, legacy_compat=True)
    # Variance coefficient: Poisson variance of the slope per e/s, t·Σc², both ways.
    np.testing.assert_allclose(fixed[:, 0], t * nu2, rtol=1e-12)
    np.testing.assert_allclose(legacy[:, 0], t * nu2, rtol=1e-12)
    # Third: per-frame units give t ν₃ − 3 t² ν₂²; the legacy scaling t²(ν₃ − 3ν₂²).
    np.testing.assert_allclose(fixed[:, 1], t * nu3 - 3 * t**2 * nu2**2, rtol=1e-12)
    np.testing.assert_allclose(legacy[:, 1], t**2 * (nu3 - 3 * nu2**2), rtol=1e-12)
    np.testing.assert_allclose(
        fixed[:, 2],
        t * nu4 - 10 * t**2 * nu2 * nu3 + 15 * t**3 * nu2**3,
        rtol=1e-12,
    )


# ------------------------------------------------------------------- O and P layers
def _rows_and_coefficients(endslice=None, shape=(256, 256), legacy=False):
    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    k = optimal_weights(READ_PATTERN, FRAME_TIME)
    table, valid = weights.weight_table(k, tbar, start=1)
    rows = weights.endslice_rows(endslice, valid, shape, legacy_compat=legacy)
    return table, rows, weights.increment_coefficients(table, READ_PATTERN)


def test_poisson_layer_variance_matches_weights(rng):
    """Var = sky · t_fr · Σc² / gain per weight row (sky·gain e/frame Poisson)."""
    shape = (512, 512)
    endslice = np.full(shape, -1, dtype=np.int8)
    endslice[:, 256:] = 3  # half the pixels saturate after resultant 3
    _, rows, coef = _rows_and_coefficients(endslice, shape)
    sky = np.full(shape, 1.2)
    gain = np.full(shape, 1.7)
    gain[::2] = 2.1
    layer = noise.poisson_layer(sky, gain, coef, rows, FRAME_TIME, rng)
    assert layer.dtype == np.float32
    for row, cols in ((5, slice(0, 256)), (3, slice(256, None))):
        for g, rsel in ((2.1, slice(0, None, 2)), (1.7, slice(1, None, 2))):
            x = layer[rsel, cols].astype(float)
            expected = 1.2 * FRAME_TIME * np.sum(coef[row] ** 2) / g
            n = x.size
            # Relative standard error of a variance ≈ sqrt((κ4/σ⁴ + 2)/n) ≈ sqrt(2/n).
            np.testing.assert_allclose(x.var(), expected, rtol=5 * np.sqrt(2.2 / n))
            assert abs(x.mean()) < 5 * np.sqrt(expected / n)


def test_poisson_layer_equals_legacy_procedure():
    """Same Poisson counts → same layer as cumulate/average/apply-weights (legacy)."""
    shape = (8, 8)
    endslice = np.full(shape, -1, dtype=np.int8)
    endslice[:3] = 2
    endslice[5:] = 4
    table, rows, coef = _rows_and_coefficients(endslice, shape)
    sky = np.linspace(0.5, 3.0, 64).reshape(shape)
    gain = np.full(shape, 1.5)
    lam = sky * gain * FRAME_TIME
    draws = np.random.default_rng(3).poisson(lam, size=(coef.shape[1] + 1, *shape))

    # Increments whose coefficient is zero for every row (here the one before the
    # first used frame) are not drawn by poisson_layer.
    used = iter(
        [j + 1 for j in range(coef.shape[1]) if np.any(np.abs(coef[:, j]) > 1e-9)]
    )

    class Replay:
        def poisson(self, lam_):
            return draws[next(used)][rows >= 0]

    layer = noise.poisson_layer(sky, gain, coef, rows, FRAME_TIME, Replay())
    cum = np.cumsum((draws - lam) / gain, axis=0)
    res = np.stack([cum[f].mean(axis=0) for f in READ_PATTERN])
    expected = np.einsum("ryx,ryx->yx", table[rows].transpose(2, 0, 1), res)
    np.testing.assert_allclose(layer, expected, rtol=1e-5, atol=1e-6)


def test_pseudo_poisson_layer_moments(rng):
    """The O layer (× gain, e/s) has μ₂ = A·I, μ₃ = B·I, μ₄ = 3μ₂² + C·I."""
    shape = (1000, 1000)
    _, rows, coef = _rows_and_coefficients(None, shape)
    moments = weights.pseudo_poisson_moments(coef, FRAME_TIME)
    gain = np.full(shape, 1.8)
    rate_dn = 40.0  # DN/s
    layer = noise.pseudo_poisson_layer(
        np.full(shape, rate_dn), gain, moments, rows, rng
    )
    x = layer.astype(np.float64).ravel() * 1.8
    i_e = rate_dn * 1.8
    a, b, c = moments[5]
    target = [0.0, a * i_e, b * i_e, 3 * (a * i_e) ** 2 + c * i_e]
    for k, t in zip((1, 2, 3, 4), target, strict=True):
        xk = x**k
        assert abs(xk.mean() - t) < 5 * xk.std() / np.sqrt(x.size), k


def test_pseudo_poisson_layer_skips_and_floors(rng):
    shape = (4, 4)
    endslice = np.full(shape, -1, dtype=np.int8)
    endslice[0] = 1  # no usable pair
    _, rows, coef = _rows_and_coefficients(endslice, shape)
    moments = weights.pseudo_poisson_moments(coef, FRAME_TIME)
    rate = np.full(shape, 5.0)
    rate[1, 0] = np.nan
    rate[1, 1] = -100.0  # floored at 0.01 e/s: still gets (tiny) noise
    layer = noise.pseudo_poisson_layer(rate, np.full(shape, 2.0), moments, rows, rng)
    np.testing.assert_array_equal(layer[0], 0.0)
    assert layer[1, 0] == 0.0
    assert np.all(layer[2:] != 0.0)
    assert layer[1, 1] != 0.0


# ------------------------------------------------------------------- read noise
def _read_inputs(shape=(64, 64), nres=6):
    return {
        "read_noise": np.full(shape, 6.5),
        "n_frames": [len(f) for f in READ_PATTERN[:nres]],
    }


def test_read_noise_ramp_white_and_reset(rng):
    ny = nx = 128
    data = np.full((6, ny, nx), 5000.0)
    kw = _read_inputs((ny, nx))
    out, amp33 = read_ramp.read_noise_ramp(
        data, None, reset_noise=np.full((ny, nx), 10.0), rng=rng, **kw
    )
    assert out.dtype == np.uint16 and amp33 is None
    act = out[:, 4:-4, 4:-4].astype(float) - 5000
    for k, n in enumerate(kw["n_frames"]):
        expected = 6.5**2 / n + 1 / 12  # white noise + rounding
        np.testing.assert_allclose(
            act[k].var(), expected, rtol=5 * np.sqrt(2 / act[k].size)
        )
    # Reset noise: one draw per border pixel, common to every resultant.
    b = np.concatenate([out[:, :4].reshape(6, -1), out[:, -4:].reshape(6, -1)], 1)
    b = b.astype(float) - 5000
    diff01 = b[3] - b[0]  # reset cancels; white noise of both remains
    expected = 6.5**2 / 5 + 6.5**2 + 2 / 12
    np.testing.assert_allclose(
        diff01.var(), expected, rtol=5 * np.sqrt(2 / diff01.size)
    )
    assert b.var(axis=1).mean() > 80  # 10² reset noise on top


def test_read_noise_ramp_border_base_and_amp33(rng):
    ny, nx = 64, 64
    data = np.full((6, ny, nx), 5000.0)
    dark = np.full((6, ny, nx), 1000.0)
    med = np.full((ny, 128), 3000.0)
    model = {
        "valid": True,
        "med": med,
        "std": np.full((ny, 128), 2.0),
        "M_PINK": 0.0,
        "RU_PINK": 0.0,
    }
    amp33 = np.full((6, ny, 128), 7000, dtype=np.uint16)
    kw = _read_inputs((ny, nx))
    kw["read_noise"] = np.zeros((ny, nx))
    out, a33 = read_ramp.read_noise_ramp(
        data, amp33, border_base=dark, amp33_model=model, rng=rng, **kw
    )
    assert np.all(out[:, 4:-4, 4:-4] == 5000)
    assert np.all(out[:, :4] == 1000) and np.all(out[:, :, -4:] == 1000)
    assert abs(a33.astype(float).mean() - 3000) < 0.1
    assert a33.astype(float)[0].std() == pytest.approx(2.0, rel=0.1)
    # Add mode keeps the exposure's amp33 and adds the noise.
    _, a33_add = read_ramp.read_noise_ramp(
        data, amp33, amp33_model=model, replace_amp33=False, rng=rng, **kw
    )
    assert abs(a33_add.astype(float).mean() - 7000) < 0.1
    # An invalid model leaves amp33 untouched.
    _, a33_inv = read_ramp.read_noise_ramp(
        data, amp33, amp33_model={**model, "valid": False}, rng=rng, **kw
    )
    np.testing.assert_array_equal(a33_inv, amp33)


def test_read_noise_ramp_one_over_f_channels(rng):
    """1/f noise is one series per channel, read along rows, odd channels mirrored."""
    ny, nx = 64, 64  # channel width 2
    data = np.full((6, ny, nx), 20000.0)
    kw = _read_inputs((ny, nx))
    kw["read_noise"] = np.zeros((ny, nx))
    out, _ = read_ramp.read_noise_ramp(
        data, None, c_pink=30.0, u_pink=0.0, rng=rng, **kw
    )
    x = out[0].astype(float) - 20000
    # Common mode only: every even channel equals channel 0, odd channels mirrored.
    for ch in range(2, 32, 2):
        np.testing.assert_allclose(x[:, 2 * ch : 2 * ch + 2], x[:, 0:2], atol=1.0)
    np.testing.assert_allclose(x[:, 2:4], x[:, 0:2][:, ::-1], atol=1.0)
    assert x.std() > 30.0  # ≈ 30·sqrt(ln 128 + 0.58)


def _linear_calibration(k, border=4):
    """Stand-in calibration: the weights K applied to the science area."""

    def calibrate(ramp, *, reference=False):
        data, _ = ramp
        ramp.clear()  # handed over (NoiseInputs.calibrate)
        sci = data[:, border:-border, border:-border].astype(np.float64)
        return np.tensordot(k, sci, axes=1).astype(np.float32)

    return calibrate


def _noise_inputs(shape=(256, 256), seed=0, **extra):
    ny, nx = shape
    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    k = optimal_weights(READ_PATTERN, FRAME_TIME)
    r = np.random.default_rng(seed)
    dark = 1000 + 50 * r.random((6, ny, nx)) + 10 * np.arange(6)[:, None, None]
    sky_dn = 2.0
    sci = (ny - 8, nx - 8)
    fields = {
        "data": np.zeros(sci, np.float32),
        "data_withsky": np.full(sci, sky_dn, np.float32),
        "gain": np.full(sci, 1.8),
        "read_pattern": READ_PATTERN,
        "frame_time": FRAME_TIME,
        "tbar": tbar,
        "weights": k,
        "start": 1,
        "endslice": np.full(sci, -1, np.int8),
        "l1_data": np.round(dark + 5).astype(np.uint16),
        "l1_amp33": np.full((6, ny, 128), 3000, np.uint16),
        "dark": dark,
        "read_noise": np.full((ny, nx), 6.5),
        "calibrate": _linear_calibration(k),
    }
    fields.update(extra)
    return noise.NoiseInputs(**fields), k


def test_read_layer_variance_matches_fit(rng):
    """R layer through a linear fit: variance σ_read² Σ K²/N within 3 %."""
    inputs, k = _noise_inputs()
    calls = []
    base = inputs.calibrate

    def counting(ramp, *, reference=False):
        calls.append(reference)
        return base(ramp)

    inputs.calibrate = counting
    n = np.array([len(f) for f in READ_PATTERN])
    cube = noise.make_noise_cube(parse_layers(["R", "R"]), inputs, rng)
    reported = 6.5**2 * np.sum(k**2 / n)
    for layer in cube:
        np.testing.assert_allclose(layer.var(), reported, rtol=0.03)
        assert abs(layer.mean()) < 5 * np.sqrt(reported / layer.size)
    # Reference calibrated once, then one calibration per layer.
    assert calls == [True, False, False]
    # Two layers are independent realisations.
    r = np.corrcoef(cube[0].ravel(), cube[1].ravel())[0, 1]
    assert abs(r) < 5 / np.sqrt(cube[0].size)


def test_read_layer_add_mode_and_clip(rng):
    inputs, k = _noise_inputs()
    inputs.data = inputs.calibrate([inputs.l1_data, None])
    cube = noise.make_noise_cube(parse_layers(["Ra", "Raz1"]), inputs, rng)
    n = np.array([len(f) for f in READ_PATTERN])
    reported = 6.5**2 * np.sum(k**2 / n)
    np.testing.assert_allclose(cube[0].var(), reported, rtol=0.03)
    med = np.median(cube[1])
    q25, q75 = np.percentile(cube[1], [25, 75])
    assert cube[1].max() <= med + (q75 - q25) / 1.34896 * 1.01
    assert cube[1].min() >= med - (q75 - q25) / 1.34896 * 1.01


def test_read_layer_add_mode_keeps_the_exposure_reset(rng):
    """Ra: the exposure's border keeps its own reset offsets, no second draw.

    A second reset draw would widen the spread of the reference pixels, which makes
    their medians (reference-pixel correction) noisier than in the exposure. The
    legacy replaces the border by the dark cube plus a reset draw.
    """
    shape = (96, 96)
    inputs, _ = _noise_inputs(shape)
    inputs.reset_noise = np.full(shape, 50.0)
    inputs.read_noise = np.full(shape, 1.0)
    base = inputs.calibrate
    inputs.data = base([inputs.l1_data, None])
    ramps = []

    def capture(ramp, *, reference=False):
        ramps.append(np.asarray(ramp[0], dtype=np.float64))
        return base(ramp)

    inputs.calibrate = capture
    border = np.ones(shape, bool)
    border[4:-4, 4:-4] = False
    noise.make_noise_cube(parse_layers(["Ra"]), inputs, rng)
    added = ramps[0][:, border] - inputs.l1_data[:, border]
    # White noise 1/√N (N = 1..5) and rounding only: far below the 50 DN reset.
    assert added.std() < 1.5
    ramps.clear()
    noise.make_noise_cube(parse_layers(["Ra"]), inputs, rng, legacy_compat=True)
    added = ramps[0][:, border] - inputs.dark[:, border]
    np.testing.assert_allclose(added.std(), 50.0, rtol=0.1)
    # One reset draw per pixel, common to all resultants: resultant differences
    # hold white noise only.
    assert np.std(added[3] - added[0]) < 2.0


def test_sky_command_removes_a_fitted_polynomial():
    """S2 subtracts the order-2 sky fit: a quadratic added to the layer is removed.

    The stand-in calibration adds a known quadratic surface (≈ 30 σ across the
    frame) to every noisy calibration. With the same seed ``R`` and ``RS2`` hold the
    same noise, so ``R − RS2`` is the fitted surface: it must equal the injected one
    to the fit's noise (64 cell medians of 225 pixels: ≲ 0.1 σ).
    """
    shape = (128, 128)
    inputs, k = _noise_inputs(shape)
    n = np.array([len(f) for f in READ_PATTERN])
    sigma = 6.5 * np.sqrt(np.sum(k**2 / n))
    y, x = np.mgrid[0:120, 0:120] / 119.0
    surface = sigma * (5 + 20 * x - 10 * y + 15 * x * x - 8 * x * y + 12 * y * y)
    base = inputs.calibrate

    def calibrate(ramp, *, reference=False):
        out = base(ramp)
        return out if reference else out + surface.astype(np.float32)

    inputs.calibrate = calibrate
    plain = noise.make_noise_cube(parse_layers(["R"]), inputs, np.random.default_rng(4))
    fitted = noise.make_noise_cube(
        parse_layers(["RS2"]), inputs, np.random.default_rng(4)
    )
    removed = plain[0].astype(np.float64) - fitted[0]
    assert np.max(np.abs(removed - surface)) < 0.3 * sigma
    np.testing.assert_allclose(fitted[0].std(), sigma, rtol=0.05)
    assert plain[0].std() > 5 * sigma


def test_cube_reproducible_and_independent():
    layers = parse_layers(["R", "O", "Pr", "ROPr"])
    cubes = [
        noise.make_noise_cube(
            layers, _noise_inputs((96, 96))[0], np.random.default_rng(s)
        )
        for s in (11, 11, 12)
    ]
    assert cubes[0].dtype == np.float32 and cubes[0].shape == (4, 88, 88)
    np.testing.assert_array_equal(cubes[0], cubes[1])
    for a, b in zip(cubes[0], cubes[2], strict=True):
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) < 5 / np.sqrt(a.size)
    # Layers of one cube are independent too (one stream, consumed in order).
    r = np.corrcoef(cubes[0][1].ravel(), cubes[0][2].ravel())[0, 1]
    assert abs(r) < 5 / np.sqrt(cubes[0][1].size)


def test_cube_errors():
    inputs, _ = _noise_inputs((96, 96))
    inputs.weights = None
    with pytest.raises(ValueError, match="ramp-fit weights"):
        noise.make_noise_cube(parse_layers(["O"]), inputs, np.random.default_rng(0))
    inputs, _ = _noise_inputs((96, 96))
    inputs.dark = inputs.dark[:4]
    with pytest.raises(ValueError, match="dark cube has 4 planes"):
        noise.make_noise_cube(parse_layers(["R"]), inputs, np.random.default_rng(0))
    inputs, _ = _noise_inputs((96, 96))
    inputs.calibrate = None
    with pytest.raises(ValueError, match="calibrate"):
        noise.make_noise_cube(parse_layers(["R"]), inputs, np.random.default_rng(0))


def test_poisson_layer_read_pattern_with_gaps(rng):
    """Skipped frames (merged increments) keep the variance sky·t·Σc²/gain."""
    pattern = [[0], [3, 4], [8], [12, 13], [20]]
    tbar, _, _ = resultant_times(pattern, FRAME_TIME)
    k = optimal_weights(pattern, FRAME_TIME)
    table, valid = weights.weight_table(k, tbar, start=1)
    shape = (400, 400)
    rows = weights.endslice_rows(None, valid, shape)
    coef = weights.increment_coefficients(table, pattern)
    layer = noise.poisson_layer(
        np.full(shape, 0.8), np.full(shape, 2.0), coef, rows, FRAME_TIME, rng
    )
    expected = 0.8 * FRAME_TIME * np.sum(coef[-1] ** 2) / 2.0
    np.testing.assert_allclose(
        layer.var(), expected, rtol=5 * np.sqrt(2.2 / layer.size)
    )
