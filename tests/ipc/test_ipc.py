"""IPC forward operator and its iterative inverse on plain arrays."""

import numpy as np
import pytest

from romanimpreprocess.ipc import ipc
from tests.linearity.legacy import legacy_case


def random_kernel(rng, shape, eps):
    """Per-pixel kernels with off-centre weights ~eps, each normalised to 1."""
    k = rng.uniform(0.5, 1.5, (3, 3, *shape)) * eps
    k[1, 1] = 0
    k[1, 1] = 1 - k.sum(axis=(0, 1))
    return k


def legacy_test_kernel(shape):
    """A kernel of docs/ipc/index.rst, the same for every pixel."""
    k = np.zeros((3, 3, *shape))
    k[0, 1] = k[2, 1] = 0.015
    k[1, 0] = k[1, 2] = 0.013
    k[0, 0] = k[0, 2] = k[2, 0] = k[2, 2] = 0.002
    k[1, 1] = 0.936
    return k


def forward_brute(image, kernel):
    """Distribute each source pixel's charge to its neighbours, one pixel at a time."""
    ny, nx = image.shape
    out = np.zeros_like(image, dtype=np.float64)
    for y in range(ny):
        for x in range(nx):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if 0 <= y + dy < ny and 0 <= x + dx < nx:
                        out[y + dy, x + dx] += (
                            image[y, x] * kernel[1 + dy, 1 + dx, y, x]
                        )
    return out


def forward_matrix(kernel):
    """Dense matrix of F for a small image (column = unit charge at a source)."""
    ny, nx = kernel.shape[2:]
    n = ny * nx
    m = np.zeros((n, n))
    for i in range(n):
        m[:, i] = forward_brute(np.eye(n)[i].reshape(ny, nx), kernel).ravel()
    return m


def test_forward_matches_charge_distribution(rng):
    kernel = random_kernel(rng, (9, 11), 0.03)
    image = rng.normal(100, 10, (9, 11))
    np.testing.assert_allclose(
        ipc.ipc_forward(image, kernel), forward_brute(image, kernel), rtol=1e-14
    )
    assert image.dtype == np.float64  # unchanged input


@pytest.mark.parametrize("eps", [0.01, 0.03])
def test_residual_is_the_truncated_neumann_remainder(rng, eps):
    # R_k F - 1 = -(1 - F)^(k+1): checked against dense matrix powers.
    shape = (8, 10)
    kernel = random_kernel(rng, shape, eps)
    image = rng.normal(1000, 100, shape)
    m = forward_matrix(kernel)
    convolved = ipc.ipc_forward(image, kernel)
    one_minus_f = np.eye(m.shape[0]) - m
    previous = np.inf
    for k in range(5):
        residual = ipc.ipc_inverse(convolved, kernel, iterations=k) - image
        predicted = -(np.linalg.matrix_power(one_minus_f, k + 1) @ image.ravel())
        np.testing.assert_allclose(residual.ravel(), predicted, rtol=1e-9, atol=1e-9)
        size = np.abs(residual).max()
        assert size < previous  # more iterations shrink the residual
        previous = size


def test_residual_scales_as_eps_to_the_k_plus_one(rng):
    shape = (12, 12)
    image = rng.normal(1000, 100, shape)
    base = random_kernel(rng, shape, 1.0)  # off-centre weights in [0.5, 1.5]
    for k in (1, 2, 3):
        sizes = []
        for eps in (0.004, 0.002):
            kernel = base * eps
            kernel[1, 1] = 0
            kernel[1, 1] = 1 - kernel.sum(axis=(0, 1))
            convolved = ipc.ipc_forward(image, kernel)
            res = ipc.ipc_inverse(convolved, kernel, iterations=k) - image
            sizes.append(np.abs(res[2:-2, 2:-2]).max())
        # Halving eps divides the residual by ~2^(k+1).
        assert sizes[0] / sizes[1] == pytest.approx(2 ** (k + 1), rel=0.1)


def test_legacy_kernel_delta_residual_golden():
    # the IPC kernel and its inverse (docs/ipc/index.rst): max |R(F(delta)) - delta| = 4.07e-4 for 2 iterations.
    shape = (15, 15)
    kernel = legacy_test_kernel(shape)
    delta = np.zeros(shape)
    delta[7, 7] = 1
    res = ipc.ipc_inverse(ipc.ipc_forward(delta, kernel), kernel) - delta
    assert np.abs(res).max() == pytest.approx(4.07e-4, abs=5e-7)


def test_constant_image_and_footprint():
    shape = (15, 15)
    kernel = legacy_test_kernel(shape)
    const = np.full(shape, 250.0)
    out = ipc.ipc_inverse(ipc.ipc_forward(const, kernel), kernel)
    np.testing.assert_allclose(out[3:-3, 3:-3], 250.0, rtol=1e-14)
    delta = np.zeros(shape)
    delta[7, 7] = 1
    spread = ipc.ipc_inverse(delta, kernel, iterations=2)
    rows, cols = np.nonzero(spread)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 9, 5, 9)  # 5x5


def test_gain_sandwich_and_constant_gain_cancels(rng):
    nres, ny, nx, b = 2, 16, 16, 4
    kernel = random_kernel(rng, (ny - 2 * b, nx - 2 * b), 0.02)
    data = rng.normal(1000, 50, (nres, ny, nx)).astype(np.float32)
    gain = rng.uniform(1.4, 1.6, (ny, nx))
    out = data.copy()
    ipc.deconvolve_cube(out, kernel, gain, dtype=np.float64)
    sci = (slice(b, ny - b), slice(b, nx - b))
    for i in range(nres):
        g = gain[sci]
        expect = ipc.ipc_inverse(data[i][sci] * g, kernel) / g
        np.testing.assert_allclose(out[i][sci], expect, rtol=1e-7)
    # reference pixels untouched
    border = np.ones((ny, nx), bool)
    border[sci] = False
    np.testing.assert_array_equal(out[:, border], data[:, border])
    # a constant gain cancels
    const, unit = data.copy(), data.copy()
    ipc.deconvolve_cube(const, kernel, np.full((ny, nx), 1.7), dtype=np.float64)
    ipc.deconvolve_cube(unit, kernel, np.ones((ny, nx)), dtype=np.float64)
    np.testing.assert_allclose(const, unit, rtol=1e-6)


def test_full_frame_kernel_processes_the_border(rng):
    kernel = random_kernel(rng, (16, 16), 0.02)
    data = rng.normal(1000, 50, (1, 16, 16)).astype(np.float32)
    out = data.copy()
    ipc.deconvolve_cube(out, kernel, np.ones((16, 16)), dtype=np.float64)
    expect = ipc.ipc_inverse(data[0].astype(np.float64), kernel)
    np.testing.assert_allclose(out[0], expect, rtol=1e-7)
    with pytest.raises(ValueError, match="does not fit"):
        ipc.deconvolve_cube(out, kernel[:, :, :15, :15], np.ones((16, 16)))


def test_float32_arithmetic_agrees_with_float64(rng):
    kernel = random_kernel(rng, (56, 56), 0.02).astype(np.float32)
    data = rng.normal(20000, 5000, (3, 64, 64)).astype(np.float32)
    gain = rng.uniform(1.4, 1.6, (64, 64))
    a, b = data.copy(), data.copy()
    ipc.deconvolve_cube(a, kernel, gain, dtype=np.float32)
    ipc.deconvolve_cube(b, kernel, gain, dtype=np.float64)
    # A few float32 ulps of the signal level (the sums cancel near zero values).
    ulp = np.spacing(np.float32(np.abs(data).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=4 * ulp)


def test_low_gain_is_clipped_and_reported(rng):
    kernel = random_kernel(rng, (8, 8), 0.02)
    data = rng.normal(1000, 50, (2, 16, 16)).astype(np.float32)
    gain = np.full((16, 16), 1.5)
    gain[6, 7] = 0.0
    gain[0, 0] = -1.0  # reference pixel: outside the processed region
    out = data.copy()
    bad = ipc.deconvolve_cube(out, kernel, gain)
    np.testing.assert_array_equal(np.argwhere(bad), [[6, 7]])
    assert np.isfinite(out).all()
    legacy = data.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ipc.deconvolve_cube(legacy, kernel, gain, clip_gain=False)
    assert not np.isfinite(legacy[:, 6, 7]).any()  # the legacy divides by 0


CORRECT_CUBE_SCRIPT = """
import asdf
from romanimpreprocess.utils import ipc_linearity
asdf.AsdfFile({"roman": {"data": inp["kernel"]}}).write_to("ipc.asdf")
asdf.AsdfFile({"roman": {"data": inp["gain"]}}).write_to("gain.asdf")
d = inp["data"].copy()
ipc_linearity.correct_cube(d, "ipc.asdf", None, gain_file="gain.asdf")
out["data"] = d
"""


def correct_cube_inputs(rng):
    ny = nx = 40
    return {
        "kernel": random_kernel(rng, (ny - 8, nx - 8), 0.02).astype(np.float32),
        "gain": rng.uniform(1.4, 1.6, (ny, nx)),  # float64, as the PIT files
        "data": rng.normal(20000, 5000, (4, ny, nx)).astype(np.float32),
    }


def test_legacy_compat_matches_legacy_correct_cube_bit_for_bit(rng):
    case = legacy_case(
        "ipc_correct_cube", CORRECT_CUBE_SCRIPT, lambda: correct_cube_inputs(rng)
    )
    kernel, gain, data = (case.inputs[k] for k in ("kernel", "gain", "data"))
    legacy = case.outputs["data"]
    ours = data.copy()
    ipc.deconvolve_cube(
        ours, kernel, gain, dtype=np.result_type(data, gain), clip_gain=False
    )
    np.testing.assert_array_equal(ours, legacy)
    default = data.copy()
    ipc.deconvolve_cube(default, kernel, gain)
    assert np.abs(default - legacy).max() <= 4 * np.spacing(np.abs(legacy)).max()


def test_zero_iterations_leave_data_untouched(rng):
    kernel = random_kernel(rng, (8, 8), 0.02)
    data = rng.normal(1000, 50, (2, 16, 16)).astype(np.float32)
    out = data.copy()
    ipc.deconvolve_cube(out, kernel, rng.uniform(1.4, 1.6, (16, 16)), iterations=0)
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize(
    ("nres", "ny", "nx", "border", "iterations"),
    [(3, 40, 56, 4, 2), (2, 33, 31, 0, 1), (2, 24, 40, 4, 3), (1, 16, 16, 4, 4)],
)
@pytest.mark.parametrize("kernel_dtype", [np.float32, np.float64])
def test_numba_kernel_gives_the_bits_of_the_numpy_path(
    nres, ny, nx, border, iterations, kernel_dtype
):
    rng = np.random.default_rng(nres * 100 + ny)
    data = rng.uniform(-50, 5e4, (nres, ny, nx)).astype(np.float32)
    sy, sx = ny - 2 * border, nx - 2 * border
    kernel = rng.uniform(0.005, 0.02, (3, 3, sy, sx))
    kernel[1, 1] = 1 - kernel.sum(axis=(0, 1)) + kernel[1, 1]
    kernel = kernel.astype(kernel_dtype)
    gain = rng.uniform(0.05, 2.2, (ny, nx)).astype(np.float32)  # some clipped
    reference = data.copy()
    bad_ref = ipc.deconvolve_cube(
        reference, kernel, gain, iterations=iterations, engine="numpy"
    )
    for threads in (1, 2):
        compiled = data.copy()
        bad = ipc.deconvolve_cube(
            compiled,
            kernel,
            gain,
            iterations=iterations,
            engine="numba",
            threads=threads,
        )
        np.testing.assert_array_equal(compiled, reference)
        np.testing.assert_array_equal(bad, bad_ref)
    # the kernel did something: not the identity
    assert np.abs(reference - data).max() > 1


def test_numba_kernel_removes_the_ipc_of_a_float32_cube():
    rng = np.random.default_rng(7)
    ny = nx = 48
    truth = rng.uniform(100, 2e4, (2, ny, nx))
    kernel = rng.uniform(0.002, 0.012, (3, 3, ny - 8, nx - 8))
    kernel[1, 1] = 1 - kernel.sum(axis=(0, 1)) + kernel[1, 1]
    gain = np.full((ny, nx), 1.7)
    observed = truth.copy()
    for i in range(2):
        observed[i, 4:-4, 4:-4] = (
            ipc.ipc_forward(truth[i, 4:-4, 4:-4] * 1.7, kernel) / 1.7
        )
    cube = observed.astype(np.float32)
    ipc.deconvolve_cube(cube, kernel.astype(np.float32), gain, iterations=4)
    # residual (1 - F)^(k+1): at most (8 eps)^(k+1) = 8e-6 of the brightest pixel
    # (eps = 0.012, k = 4), plus float32 rounding (6e-8 relative per operation)
    error = np.abs(cube - truth).max() / truth.max()
    assert error < 1.5e-5
    assert error > 0  # float32 arithmetic: not exactly the truth


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine"):
        ipc.deconvolve_cube(
            np.zeros((1, 8, 8), np.float32),
            np.zeros((3, 3, 8, 8), np.float32),
            np.ones((8, 8)),
            engine="cuda",
        )


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_bands_give_the_bits_of_the_whole_region(tmp_path, iterations):
    """Row bands with halos (the memory-saving path) = one band over the region.

    Real geometry in small: a 4-pixel reference border around a science region fed a
    read-only memory-mapped kernel (the pages are given back band by band), and
    band heights that do and do not divide the region's 64 rows, down to one row
    (fewer rows than the halo).
    """
    rng = np.random.default_rng(23 + iterations)
    nres, ny, nx, border = 3, 72, 40, 4
    sy, sx = ny - 2 * border, nx - 2 * border
    data = rng.uniform(-50, 5e4, (nres, ny, nx)).astype(np.float32)
    kernel = random_kernel(rng, (sy, sx), 0.02).astype(np.float32)
    path = tmp_path / "kernel.f32"
    kernel.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=kernel.shape)
    gain = rng.uniform(0.05, 2.2, (ny, nx)).astype(np.float32)
    whole = data.copy()
    bad_whole = ipc.deconvolve_cube(
        whole, kernel, gain, iterations=iterations, band_rows=None
    )
    numpy_path = data.copy()
    ipc.deconvolve_cube(numpy_path, kernel, gain, iterations=iterations, engine="numpy")
    np.testing.assert_array_equal(whole, numpy_path)
    for band_rows in (1, 2, 5, 7, 16, 63, 64, 300):
        banded = data.copy()
        bad = ipc.deconvolve_cube(
            banded, mapped, gain, iterations=iterations, band_rows=band_rows
        )
        np.testing.assert_array_equal(banded, whole, err_msg=f"band_rows={band_rows}")
        np.testing.assert_array_equal(bad, bad_whole)
    # reference pixels untouched, science pixels changed
    np.testing.assert_array_equal(whole[:, :border], data[:, :border])
    assert np.abs(whole - data).max() > 1


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_resultants_in_groups_give_the_bits_of_the_numpy_path(iterations):
    """The whole region with more resultants than one group (and a partial last one)."""
    from romanimpreprocess.ipc.ipc_kernels import PLANES_TOGETHER

    rng = np.random.default_rng(40 + iterations)
    nres, ny, nx, border = PLANES_TOGETHER + 2, 30, 44, 4
    data = rng.uniform(-50, 5e4, (nres, ny, nx)).astype(np.float32)
    kernel = random_kernel(rng, (ny - 2 * border, nx - 2 * border), 0.02)
    kernel = kernel.astype(np.float32)
    gain = rng.uniform(0.05, 2.2, (ny, nx)).astype(np.float32)
    numpy_path = data.copy()
    ipc.deconvolve_cube(numpy_path, kernel, gain, iterations=iterations, engine="numpy")
    for threads in (1, 2):
        grouped = data.copy()
        ipc.deconvolve_cube(
            grouped, kernel, gain, iterations=iterations, band_rows=None,
            threads=threads,
        )  # fmt: skip
        np.testing.assert_array_equal(grouped, numpy_path)
    assert np.abs(numpy_path - data)[:, border:-border, border:-border].min() > 0


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_in_place_give_the_bits_of_a_padded_cube(iterations, dtype):
    """`deconvolve_rows` on a band's rows = `deconvolve_cube` on a cube of those rows.

    The cube holds the rows with ``b`` rows of zero padding above and below (what
    the IPC step built before); rows outside ``rows`` stay as they were.
    """
    rng = np.random.default_rng(60 + iterations)
    n, h, nx, b = 4, 21, 40, 4
    band = rng.uniform(-50, 5e4, (n, h + 7, nx)).astype(np.float32)
    rows = slice(2, 2 + h)
    kernel = random_kernel(rng, (h, nx - 2 * b), 0.02).astype(np.float32)
    gain = rng.uniform(0.05, 2.2, (h, nx)).astype(np.float32)
    cube = np.zeros((n, h + 2 * b, nx), np.float32)
    cube[:, b : b + h] = band[:, rows]
    padded = np.zeros((h + 2 * b, nx), np.float32)
    padded[b : b + h] = gain
    bad_cube = ipc.deconvolve_cube(
        cube, kernel, padded, iterations=iterations, band_rows=None, dtype=dtype
    )
    got = band.copy()
    bad = ipc.deconvolve_rows(
        got, rows, kernel, gain, iterations=iterations, dtype=dtype
    )
    np.testing.assert_array_equal(got[:, rows], cube[:, b : b + h])
    np.testing.assert_array_equal(got[:, :2], band[:, :2])
    np.testing.assert_array_equal(got[:, 2 + h :], band[:, 2 + h :])
    np.testing.assert_array_equal(bad, bad_cube[b : b + h])
    assert bad.any()  # some gains are clipped
    assert np.abs(got - band)[:, rows, b:-b].min() > 0
