"""Per-pixel inter-pixel capacitance (IPC): forward operator and its inverse (docs/ipc/index.rst).

``K[1+dy, 1+dx, y, x]`` is the fraction of the charge collected in pixel ``(y, x)``
that appears in pixel ``(y+dy, x+dx)``. The forward operator on an image ``I`` is

    F(I)[y, x] = sum_{dy, dx in {-1, 0, 1}} I[y-dy, x-dx] K[1+dy, 1+dx, y-dy, x-dx]

with nothing coming from outside the array. Its inverse is approximated by ``k``
fixed-point iterations ``O <- O + I - F(O)`` from ``O = I``, i.e. the truncated
Neumann series ``R_k = sum_{j=0..k} (1 - F)^j``; then ``R_k F = 1 - (1 - F)^(k+1)``, so
the error is ``-(1 - F)^(k+1) I``: of order ``eps^(k+1)`` for off-centre weights
``eps``. The footprint of ``R_k`` is ``(2k+1) x (2k+1)``.

Images in DN are deconvolved in electrons, ``R(g I) / g`` with the gain ``g`` (e/DN).
"""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.utils.mapped import release_pages

__all__ = [
    "DEFAULT_BAND_ROWS",
    "DEFAULT_ITERATIONS",
    "MIN_GAIN",
    "SINGLE_PLANE_BAND_ROWS",
    "TAPS",
    "deconvolve_cube",
    "deconvolve_rows",
    "ipc_forward",
    "ipc_inverse",
    "kernel_border",
    "noise_gain",
]

DEFAULT_ITERATIONS = 2  # fixed-point iterations of the legacy inverse (order 2)
# Rows of the region per band of the compiled paths: a band of the kernel (9 x 1024
# rows x 4088 float32 = 0.15 GB on a full frame) is copied while the mapped file's
# pages are given back, instead of the whole kernel (0.6 GB) staying resident with
# the cube. Not smaller: every band costs each resultant three parallel launches,
# about 10 ms each on a loaded machine (bench/RESULTS.md, memory at long ramps).
DEFAULT_BAND_ROWS = 1024
# Rows per band for one image (the dark slope, the flat): with one plane the launches
# are few, and the band of the kernel is fresh memory each run (0.15 GB at 1024 rows,
# 0.04 GB at 256): two single-plane deconvolutions on one thread, 0.93-1.33 s (system
# 0.76-1.09 s) at 1024 rows against 0.53-0.55 s (system 0.32 s) at 256
# (bench/RESULTS.md, "Issue 23, round 12").
SINGLE_PLANE_BAND_ROWS = 256
MIN_GAIN = 0.1  # e/DN; gains at or below are unusable (NO_GAIN_VALUE), as the flat does
# Off-centre taps (dy, dx) in the order the legacy accumulates them.
TAPS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))


def _shift_slices(d: int, n: int) -> tuple[slice, slice]:
    """``(dst, src)`` slices along one axis for a shift by ``d`` (charge src -> dst)."""
    dst = slice(max(d, 0), n + min(d, 0))
    src = slice(max(-d, 0), n - max(d, 0))
    return dst, src


def ipc_forward(
    image: NDArray,
    kernel: NDArray,
    *,
    out: NDArray | None = None,
    work: NDArray | None = None,
) -> NDArray:
    """Apply the IPC forward operator ``F`` to an image.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Input image (charge per source pixel). Not modified. Its dtype is the
        arithmetic dtype.
    kernel : ndarray, shape (3, 3, ny, nx)
        Per-pixel kernel ``K[1+dy, 1+dx, y, x]``; read one tap at a time.
    out : ndarray, shape (ny, nx), optional
        Output array (must not be ``image``); new if None.
    work : ndarray, shape (ny, nx), optional
        Scratch space of the dtype of ``image``; allocated if None.

    Returns
    -------
    ndarray, shape (ny, nx)
        ``F(image)``, in ``out`` if given.
    """
    ny, nx = image.shape
    if kernel.shape != (3, 3, ny, nx):
        raise ValueError(f"kernel shape {kernel.shape} does not match image {ny}x{nx}")
    if out is None:
        out = np.empty_like(image)
    if work is None:
        work = np.empty_like(image)
    np.multiply(image, kernel[1, 1], out=out)
    for dy, dx in TAPS:
        ydst, ysrc = _shift_slices(dy, ny)
        xdst, xsrc = _shift_slices(dx, nx)
        part = work[ysrc, xsrc]
        np.multiply(image[ysrc, xsrc], kernel[1 + dy, 1 + dx, ysrc, xsrc], out=part)
        out[ydst, xdst] += part
    return out


def ipc_inverse(
    image: NDArray,
    kernel: NDArray,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    out: NDArray | None = None,
    buffers: tuple[NDArray, NDArray] | None = None,
) -> NDArray:
    """Approximate ``F^-1 image`` by ``iterations`` steps of ``O <- (O + I) - F(O)``.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Image ``I``. Not modified. Its dtype is the arithmetic dtype.
    kernel : ndarray, shape (3, 3, ny, nx)
        Per-pixel kernel.
    iterations : int
        Number of fixed-point iterations ``k`` (0 returns a copy of ``image``).
    out : ndarray, shape (ny, nx), optional
        Output array (must not be ``image``); new if None.
    buffers : tuple of two ndarray, optional
        Scratch arrays like ``image``; allocated if None.

    Returns
    -------
    ndarray, shape (ny, nx)
        ``R_k(image) = sum_{j=0..k} (1 - F)^j image``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if out is None:
        out = np.empty_like(image)
    if buffers is None:
        buffers = (np.empty_like(image), np.empty_like(image))
    forward, work = buffers
    np.copyto(out, image)
    for _ in range(iterations):
        ipc_forward(out, kernel, out=forward, work=work)
        out += image
        out -= forward
    return out


def kernel_border(frame_shape: tuple[int, int], kernel_shape: tuple[int, ...]) -> int:
    """Border left out by a kernel: 0 for a full-frame kernel, else half the excess.

    Raises ValueError unless the kernel covers the frame minus an equal border on
    every side.
    """
    ny, nx = frame_shape
    ky, kx = kernel_shape[-2:]
    by, bx = ny - ky, nx - kx
    if by != bx or by < 0 or by % 2:
        raise ValueError(
            f"kernel of {ky}x{kx} pixels does not fit the {ny}x{nx} frame with an "
            f"equal border"
        )
    return by // 2


def deconvolve_cube(
    data: NDArray[np.float32],
    kernel: NDArray,
    gain: NDArray,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    dtype=np.float32,
    clip_gain: bool = True,
    threads: int | None = None,
    engine: str = "numba",
    band_rows: int | None = DEFAULT_BAND_ROWS,
) -> NDArray[np.bool_]:
    """IPC-deconvolve every resultant in place: ``data[i] = R(g data[i]) / g``.

    Only the region covered by the kernel is processed (the science area for a
    kernel of the science size; reference pixels are then untouched).

    Parameters
    ----------
    data : ndarray, shape (nresultants, ny, nx)
        Resultants, DN; modified in place.
    kernel : ndarray, shape (3, 3, ky, kx)
        Per-pixel kernel over the frame (ky = ny) or the science area (ky = ny - 2b).
    gain : ndarray, shape (ny, nx)
        Gain, e/DN, over the full frame.
    iterations : int
        Fixed-point iterations of the inverse; 0 leaves ``data`` untouched.
    dtype : numpy dtype
        Arithmetic dtype (the legacy uses the gain's dtype, float64 for its files).
    clip_gain : bool
        Use ``max(g, MIN_GAIN)``; False divides by the gain as given (legacy).
    threads : int
        Threads (numba kernel: rows in parallel; numpy: resultants in parallel, each
        thread with its own work arrays); None = `romanimpreprocess.parallel.
        step_threads`. Results do not depend on it.
    engine : {"numba", "numpy"}
        ``"numba"``: the compiled kernel of `ipc_kernels` for float32 arithmetic on a
        float32 cube (the same bits as the numpy path, 3-5 times faster on a full
        frame); other dtypes always take the numpy path.
    band_rows : int or None
        Compiled path: rows of the region per band (all resultants of a band, then
        the next; a memory-mapped kernel's pages are given back band by band). None
        does the whole region at once. Results do not depend on it.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        Pixels of the processed region whose gain is ``<= MIN_GAIN`` or not finite
        (to flag NO_GAIN_VALUE).
    """
    nres, ny, nx = data.shape
    if gain.shape != (ny, nx):
        raise ValueError(f"gain shape {gain.shape} does not match the frame {ny}x{nx}")
    b = kernel_border((ny, nx), kernel.shape)
    region = (slice(b, ny - b), slice(b, nx - b))
    dtype = np.dtype(dtype)
    g = np.asarray(gain[region], dtype=dtype)
    with np.errstate(invalid="ignore"):
        low = ~(g > MIN_GAIN)
    if clip_gain:
        g = np.where(low, MIN_GAIN, g).astype(dtype, copy=False)
    release_pages(gain)  # read once into ``g``
    bad = np.zeros((ny, nx), dtype=bool)
    bad[region] = low
    if iterations == 0:  # R_0 is the identity: leave the data as they are
        return bad
    from romanimpreprocess.parallel import check_engine, resolve_threads, run_in_threads

    check_engine(engine)
    if (
        engine == "numba"
        and dtype == np.float32
        and data.dtype == np.float32
        and data.flags.c_contiguous
    ):
        from romanimpreprocess.ipc.ipc_kernels import deconvolve_cube_f32
        from romanimpreprocess.parallel import kernel_threads

        with kernel_threads(threads):
            deconvolve_cube_f32(
                data,
                kernel,
                np.ascontiguousarray(g, dtype=np.float32),
                b,
                iterations,
                band_rows=band_rows,
            )
        return bad
    threads = max(1, min(resolve_threads(threads), nres))

    def worker(indices):
        # Each thread owns its work arrays; numpy releases the GIL in the loops.
        image = np.empty(g.shape, dtype=dtype)
        result = np.empty_like(image)
        buffers = (np.empty_like(image), np.empty_like(image))
        for i in indices:
            np.multiply(data[i][region], g, out=image)
            ipc_inverse(
                image, kernel, iterations=iterations, out=result, buffers=buffers
            )
            result /= g
            data[i][region] = result

    run_in_threads(worker, [range(k, nres, threads) for k in range(threads)], threads)
    return bad


def deconvolve_rows(
    data: NDArray[np.float32],
    rows: slice,
    kernel: NDArray,
    gain: NDArray,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    clip_gain: bool = True,
    threads: int | None = None,
    dtype=np.float32,
) -> NDArray[np.bool_]:
    """`deconvolve_cube` of rows ``rows`` of ``data`` alone, in place (a band's rows).

    The rows are the whole region of this call: a tap that would reach a row above
    or below them is left out, as at the edge of a frame's region, and nothing
    outside them is read or written. This is what `deconvolve_cube` does on a cube
    holding these rows with ``b`` rows of padding above and below, without the
    cube: the IPC step gives it the rows of its band that the kernel covers.

    Parameters
    ----------
    data : ndarray, shape (n, h, nx), float32, C-contiguous
        Resultants; rows ``rows``, columns ``b .. nx - b`` are deconvolved.
    rows : slice
        Rows of ``data`` (step 1).
    kernel : ndarray, shape (3, 3, len(rows), nx - 2b)
        The kernel of these rows (``b`` its column border).
    gain : ndarray, shape (len(rows), nx)
        The gain of these rows.
    iterations, clip_gain, threads, dtype
        As `deconvolve_cube`.

    Returns
    -------
    ndarray of bool, shape (len(rows), nx)
        Pixels of the rows' region whose gain is ``<= MIN_GAIN`` or not finite.
    """
    start, stop, step = rows.indices(data.shape[1])
    h, nx = stop - start, data.shape[2]
    if step != 1 or h <= 0:
        raise ValueError(f"rows must be a non-empty contiguous slice, not {rows}")
    if gain.shape != (h, nx) or kernel.shape[2] != h:
        raise ValueError(
            f"kernel {kernel.shape} / gain {gain.shape} do not cover rows {start}:{stop}"
            f" of a {nx}-column ramp"
        )
    b = (nx - kernel.shape[3]) // 2
    if not (
        data.dtype == np.float32
        and np.dtype(dtype) == np.float32
        and data.flags.c_contiguous
        and iterations >= 1
    ):
        # the general path, on a padded copy of the rows
        cube = np.zeros((data.shape[0], h + 2 * b, nx), dtype=data.dtype)
        cube[:, b : b + h] = data[:, rows]
        padded = np.zeros((h + 2 * b, nx), dtype=np.asarray(gain).dtype)
        padded[b : b + h] = gain
        bad = deconvolve_cube(
            cube, kernel, padded, iterations=iterations, clip_gain=clip_gain,
            threads=threads, band_rows=None, dtype=dtype,
        )  # fmt: skip
        data[:, rows] = cube[:, b : b + h]
        return bad[b : b + h]
    g = np.asarray(gain[:, b : nx - b], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        low = ~(g > MIN_GAIN)
    if clip_gain:
        g = np.where(low, np.float32(MIN_GAIN), g)
    bad = np.zeros((h, nx), dtype=bool)
    bad[:, b : nx - b] = low
    from romanimpreprocess.ipc.ipc_kernels import deconvolve_region_f32
    from romanimpreprocess.parallel import kernel_threads

    with kernel_threads(threads):
        deconvolve_region_f32(
            data, kernel, np.ascontiguousarray(g), b, iterations, first_row=start
        )
    return bad


def noise_gain(
    kernel: NDArray,
    gain: NDArray,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    clip_gain: bool = True,
    engine: str = "numba",
    band_rows: int | None = DEFAULT_BAND_ROWS,
) -> NDArray[np.float32]:
    """Variance gain of white noise through the deconvolution, per pixel.

    A resultant pixel ``q`` carrying independent noise of variance ``v`` (DN²) leaves
    ``sum_q (R_pq g_q / g_p)^2 v`` in pixel ``p`` of ``R(g S) / g``; this returns
    that factor (1 for the identity kernel; about ``(1 + sum of couplings)^2`` for a
    small kernel). Noise that is the same in neighbouring pixels (a row pattern) is
    not amplified: this applies to white noise only.

    Parameters
    ----------
    kernel : ndarray, shape (3, 3, sy, sx)
        Per-pixel kernel over the region it covers.
    gain : ndarray, shape (sy, sx)
        Gain over the same region, e/DN (clipped to `MIN_GAIN` as the deconvolution
        does, unless ``clip_gain`` is False).
    iterations : int
        Fixed-point iterations of the inverse (as `deconvolve_cube`).
    engine : {"numba", "numpy"}
        ``"numba"``: the rows of ``R`` formed per pixel in float32 (2 iterations,
        the default); ``"numpy"`` (or other iterations): ``(2k+1)^2`` impulse images
        through `ipc_inverse` in float64, each with one impulse every ``2k+1``
        pixels.
    band_rows : int or None
        Compiled path: rows per band (a memory-mapped kernel's pages are given back
        band by band, as in `deconvolve_cube`); None: all rows at once. Results do
        not depend on it.

    Returns
    -------
    ndarray, shape (sy, sx), float32
    """
    from romanimpreprocess.parallel import check_engine

    check_engine(engine)
    if gain.shape != kernel.shape[-2:]:
        raise ValueError(
            f"gain shape {gain.shape} does not match the kernel {kernel.shape[-2:]}"
        )
    if iterations == 0:
        return np.ones(gain.shape, np.float32)
    fast = engine == "numba" and iterations == 2
    g = np.asarray(gain, dtype=np.float32 if fast else np.float64)
    if clip_gain:
        with np.errstate(invalid="ignore"):
            g = np.where(g > MIN_GAIN, g, g.dtype.type(MIN_GAIN))
    release_pages(gain)  # read once into ``g``
    if fast:
        from romanimpreprocess.ipc.ipc_kernels import kernel_rows, noise_gain_order2

        sy = g.shape[0]
        band = sy if band_rows is None else max(1, min(int(band_rows), sy))
        halo = 2  # row y of R_2 reaches rows y - 2 .. y + 2
        out = np.empty(g.shape, np.float32)
        g = np.ascontiguousarray(g)
        rows = min(sy, band + 2 * halo)
        # The kernel's own dtype (a float64 file is not copied to float32).
        flat = None if band == sy else np.empty(9 * rows * g.shape[1], kernel.dtype)
        band_flat = np.empty(rows * g.shape[1], np.float32)
        for y0 in range(0, sy, band):
            y1 = min(sy, y0 + band)
            a, c = max(0, y0 - halo), min(sy, y1 + halo)
            kernel_band = kernel_rows(kernel, a, c, flat)
            band_out = band_flat[: (c - a) * g.shape[1]].reshape(c - a, g.shape[1])
            noise_gain_order2(kernel_band, g[a:c], band_out)
            # Rows of the halo see the band's edge as the region's: left out.
            out[y0:y1] = band_out[y0 - a : y1 - a]
        return out
    return _noise_gain_impulses(np.asarray(kernel), g, iterations)


def _noise_gain_impulses(kernel, g, iterations):
    """`noise_gain` by impulses: one impulse every ``2k+1`` pixels per image."""
    step = 2 * iterations + 1
    total = np.zeros(g.shape, np.float64)
    for oy in range(step):
        for ox in range(step):
            impulses = np.zeros(g.shape, np.float64)
            impulses[oy::step, ox::step] = 1.0
            response = ipc_inverse(impulses * g, kernel, iterations=iterations) / g
            # Each output pixel sees exactly one impulse of this image: the response
            # there is R_pq g_q / g_p for that q.
            total += response**2
    return total.astype(np.float32)
