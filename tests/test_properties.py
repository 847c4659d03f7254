"""Property tests (hypothesis) of the pure-array modules: any finite input is handled.

Each property is checked against an independent statement (a monotonicity bound, an
identity of the weights, the exact slope of a noiseless ramp, the iteration's residual
bound), on small random arrays.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from roman_datamodels import dqflags

from romanimpreprocess.datamodels import resultant_times
from romanimpreprocess.ipc.ipc import ipc_forward, ipc_inverse
from romanimpreprocess.linearity.linearity import legendre_phi
from romanimpreprocess.ramp_fitting.optimal_weights import optimal_weights
from romanimpreprocess.ramp_fitting.ramp_fit import end_slices, fit_ramps

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


@SETTINGS
@given(
    z=hnp.arrays(np.float64, (4, 5), elements=st.floats(-3, 3)),
    c1=st.floats(10.0, 1e4),
    rest=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=5),
)
def test_linearity_is_monotone_when_the_linear_term_dominates(z, c1, rest):
    """C1 > sum |C_l| l(l+1)/2 makes Phi increasing, also on the continuation."""
    order = len(rest) + 1
    scale = c1 / (2.0 * sum(l * (l + 1) / 2 for l in range(2, order + 1)))
    coeffs = np.zeros((order + 1, *z.shape))
    coeffs[1] = c1
    for l, c in enumerate(rest, start=2):
        coeffs[l] = c * scale  # sum_l |C_l| l(l+1)/2 <= c1 / 2
    z_sorted = np.sort(z.ravel()).reshape(z.shape)
    phi, _ = legendre_phi(z_sorted, coeffs)
    assert np.all(np.isfinite(phi))
    assert np.all(np.diff(phi.ravel()) >= -1e-9 * c1)


@SETTINGS
@given(z=hnp.arrays(np.float32, (3, 4), elements=finite))
def test_linearity_of_any_finite_signal_is_finite(z):
    coeffs = np.array([0.0, 1.0, 0.01, -0.002], np.float32)[:, None, None] * np.ones(
        (1, 3, 4), np.float32
    )
    phi, _ = legendre_phi(z / np.float32(1e5), coeffs)
    assert np.all(np.isfinite(phi))


@SETTINGS
@given(
    image=hnp.arrays(np.float64, (12, 16), elements=st.floats(-1e4, 1e4)),
    eps=st.floats(0.001, 0.03),
    iterations=st.integers(1, 4),
)
def test_ipc_inverse_residual_follows_the_iteration_bound(image, eps, iterations):
    """After k iterations of O <- O + I - F(O), |F(O) - I| <= (8 eps)^(k+1) max|I|."""
    kernel = np.full((3, 3, *image.shape), eps)
    kernel[1, 1] = 1.0 - 8.0 * eps
    recovered = ipc_inverse(image, kernel, iterations=iterations)
    residual = np.abs(ipc_forward(recovered, kernel) - image).max()
    bound = (2 * 8 * eps) ** (iterations + 1) * max(np.abs(image).max(), 1e-300)
    assert residual <= bound + 1e-9 * max(np.abs(image).max(), 1.0)


patterns = st.lists(st.integers(1, 4), min_size=3, max_size=8).map(
    lambda sizes: [
        list(range(sum(sizes[:i]), sum(sizes[: i + 1]))) for i in range(len(sizes))
    ]
)


@SETTINGS
@given(read_pattern=patterns, u=st.floats(1e-5, 1.0), start=st.integers(0, 1))
def test_optimal_weights_measure_a_slope(read_pattern, u, start):
    """Sum K = 0 and sum K tbar = 1: a constant gives 0, a ramp gives its slope."""
    tbar, tau, n_frames = resultant_times(read_pattern, 3.04)
    weights = optimal_weights(tbar, tau, n_frames, u=u, start=start)
    assert np.all(weights[:start] == 0)
    assert abs(weights.sum()) < 1e-9 * np.abs(weights).sum()
    assert abs(weights @ tbar - 1.0) < 1e-9


@settings(max_examples=15, deadline=None)
@given(
    rate=hnp.arrays(np.float64, (12, 16), elements=st.floats(0.0, 500.0)),
    read_pattern=patterns,
    saturate_after=st.integers(1, 8),
)
def test_noiseless_ramps_give_their_slope_and_nan_only_where_flagged(
    rate, read_pattern, saturate_after
):
    border = 4
    tbar, tau, n_frames = resultant_times(read_pattern, 3.04)
    n = len(read_pattern)
    data = (1000.0 + rate[None] * tbar[:, None, None]).astype(np.float32)
    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[min(saturate_after, n) :, :, :3] = dqflags.group.SATURATED
    pixeldq = np.zeros(rate.shape, np.uint32)
    ones = np.ones(rate.shape)
    result = fit_ramps(
        data, groupdq, pixeldq, 1.8 * ones, 6.5 * ones, tbar, tau, n_frames, start=1
    )
    sci = (slice(border, -border), slice(border, -border))
    slope = result.slope.astype(np.float64)
    flagged = (result.dq & dqflags.pixel.DO_NOT_USE) != 0
    assert np.all(np.isfinite(slope) | flagged)
    ok = np.isfinite(slope) & ~flagged
    if ok.any():
        np.testing.assert_allclose(slope[ok], rate[sci][ok], rtol=1e-4, atol=2e-3)
    assert result.endslice is None or (
        result.endslice.min() >= -1 and result.endslice.max() < n
    )


@SETTINGS
@given(
    flags=hnp.arrays(np.uint8, (6, 3, 4), elements=st.sampled_from([0, 2])),
)
def test_end_slices_are_the_last_unsaturated_resultant(flags):
    """Brute force: the resultant before the first saturated one (>= 1), else -1."""
    endslice = end_slices(flags)
    n = flags.shape[0]
    for y in range(flags.shape[1]):
        for x in range(flags.shape[2]):
            expected = -1
            for iend in range(1, n):
                if flags[iend, y, x] & 2 and not flags[iend - 1, y, x] & 2:
                    expected = iend - 1
            assert endslice[y, x] == expected


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_ipc_of_a_non_finite_pixel_stays_local(value):
    """A NaN/inf pixel spreads at most to the pixels the iterations reach."""
    image = np.zeros((16, 16))
    image[8, 8] = value
    kernel = np.full((3, 3, 16, 16), 0.01)
    kernel[1, 1] = 0.92
    out = ipc_inverse(image, kernel, iterations=2)
    bad = ~np.isfinite(out)
    ys, xs = np.nonzero(bad)
    assert np.all(np.abs(ys - 8) <= 2)
    assert np.all(np.abs(xs - 8) <= 2)
