"""Variance gain of white noise through the IPC deconvolution (issue 21)."""

import numpy as np
import pytest

from romanimpreprocess.ipc import ipc
from tests.ipc.test_ipc import random_kernel


def brute_noise_gain(kernel, gain, iterations):
    """``sum_q (R_pq g_q/g_p)^2`` from the explicit matrix of the inverse."""
    sy, sx = gain.shape
    n = sy * sx
    matrix = np.empty((n, n))
    for q in range(n):
        impulse = np.zeros(n)
        impulse[q] = 1.0
        forward = ipc.ipc_forward(impulse.reshape(sy, sx), kernel)
        matrix[:, q] = forward.ravel()
    resolvent = np.zeros((n, n))
    power = np.eye(n)
    for _ in range(iterations + 1):
        resolvent += power
        power = power @ (np.eye(n) - matrix)
    g = gain.ravel()
    return np.sum((resolvent * g[None, :] / g[:, None]) ** 2, axis=1).reshape(sy, sx)


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_noise_gain_is_the_row_norm_of_the_inverse(iterations, engine):
    rng = np.random.default_rng(5)
    shape = (9, 11)
    kernel = random_kernel(rng, shape, 0.03)
    gain = rng.uniform(1.2, 2.4, shape)
    got = ipc.noise_gain(kernel, gain, iterations=iterations, engine=engine)
    want = brute_noise_gain(kernel, gain, iterations)
    np.testing.assert_allclose(got, want, rtol=2e-6 if engine == "numpy" else 2e-5)
    # About (1 + couplings)^2 inside: 8 taps of ~0.03.
    assert 1.3 < np.median(got) < 1.8


def test_identity_kernel_and_no_iterations_give_one():
    shape = (6, 8)
    kernel = np.zeros((3, 3, *shape))
    kernel[1, 1] = 1.0
    gain = np.full(shape, 1.7)
    np.testing.assert_allclose(ipc.noise_gain(kernel, gain), 1.0)
    rng = np.random.default_rng(1)
    other = random_kernel(rng, shape, 0.02)
    np.testing.assert_array_equal(ipc.noise_gain(other, gain, iterations=0), 1.0)


def test_deconvolved_white_noise_has_the_predicted_variance():
    """Monte Carlo: white noise of per-pixel variance v through R(g S)/g."""
    rng = np.random.default_rng(11)
    shape = (32, 32)
    # Couplings that vary strongly from pixel to pixel, so the map is not flat.
    kernel = random_kernel(rng, shape, 0.025) * 1.0
    kernel[:, :, :, 16:] *= 1.6
    kernel[1, 1] = 0
    kernel[1, 1] = 1 - kernel.sum(axis=(0, 1))
    gain = rng.uniform(1.0, 3.0, shape)
    n_real = 4000
    cube = rng.standard_normal((n_real, *shape)).astype(np.float64) * 5.0
    full = np.zeros((n_real, shape[0] + 8, shape[1] + 8))
    full[:, 4:-4, 4:-4] = cube
    full_gain = np.ones(full.shape[1:])
    full_gain[4:-4, 4:-4] = gain
    ipc.deconvolve_cube(full, kernel, full_gain, dtype=np.float64, engine="numpy")
    measured = np.var(full[:, 4:-4, 4:-4], axis=0) / 25.0
    predicted = ipc.noise_gain(kernel, gain)
    # Each pixel's variance estimate has a relative error sqrt(2/n_real) = 2.2 %.
    ratio = measured / predicted
    assert abs(np.mean(ratio) - 1) < 3 * np.sqrt(2 / n_real / ratio.size) + 2e-3
    assert np.std(ratio) < 1.3 * np.sqrt(2 / n_real)
    left, right = predicted[:, :16].mean(), predicted[:, 16:].mean()
    assert right - left > 0.1  # the map follows the kernel
    assert abs(measured[:, 16:].mean() / measured[:, :16].mean() - right / left) < 0.01


def test_compiled_rows_in_chunks_match_the_impulses():
    """A frame wider than one chunk of the compiled pass (256 pixels)."""
    rng = np.random.default_rng(8)
    shape = (12, 600)
    kernel = random_kernel(rng, shape, 0.02)
    gain = rng.uniform(1.2, 2.4, shape)
    gain[3, 7] = 0.01  # clipped to MIN_GAIN by both
    fast = ipc.noise_gain(kernel, gain, engine="numba")
    slow = ipc.noise_gain(kernel, gain, engine="numpy")
    np.testing.assert_allclose(fast, slow, rtol=2e-5)


def test_bands_give_the_bits_of_all_rows_at_once(tmp_path):
    """The compiled map in row bands (halo of 2 rows) = all rows at once, mapped kernel."""
    rng = np.random.default_rng(9)
    shape = (37, 300)
    kernel = random_kernel(rng, shape, 0.02).astype(np.float32)
    path = tmp_path / "kernel.f32"
    kernel.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=kernel.shape)
    gain = rng.uniform(1.2, 2.4, shape)
    whole = ipc.noise_gain(kernel, gain, band_rows=None)
    for band_rows in (1, 2, 3, 5, 8, 36, 37, 100):
        np.testing.assert_array_equal(
            ipc.noise_gain(mapped, gain, band_rows=band_rows),
            whole,
            err_msg=f"band_rows={band_rows}",
        )
