"""Compiled (numba) IPC inverse for float32 resultants, identical to `ipc.ipc_inverse`.

One pass computes ``O_next = (O + I) - F(O)`` for every pixel of the region the
kernel covers, with the taps added in the order of `ipc.TAPS` and every product and
sum rounded to float32, as the numpy path does: the two give the same bits. The
interior of the frame runs without branches (so that the compiler vectorises it);
the outermost rows and columns, where some taps fall outside, go through the same
formula with the missing taps left out. The last pass divides by the gain and writes
straight back into the resultant. A cube of ``n`` resultants and ``k`` iterations
costs ``n k`` passes over the kernel and two float32 frames of scratch space (three
for ``k > 2``).
"""

import numpy as np
from numba import njit, prange

__all__ = [
    "deconvolve_cube_f32",
    "deconvolve_region_f32",
    "kernel_rows",
    "noise_gain_order2",
]

_F32 = np.float32


@njit(inline="always")
def _forward_at(src, kernel, y, x, sy, sx):
    """``F(src)`` at (y, x), taps outside the region left out (edge pixels)."""
    acc = _F32(src[y, x] * kernel[1, 1, y, x])
    # Taps in the order of ipc.TAPS: (1,0), (-1,0), (0,1), (0,-1), (1,1), (1,-1),
    # (-1,1), (-1,-1); tap (dy, dx) brings the charge of the source pixel
    # (y-dy, x-dx) with that pixel's kernel[1+dy, 1+dx].
    if y >= 1:
        acc = _F32(acc + _F32(src[y - 1, x] * kernel[2, 1, y - 1, x]))
    if y + 1 < sy:
        acc = _F32(acc + _F32(src[y + 1, x] * kernel[0, 1, y + 1, x]))
    if x >= 1:
        acc = _F32(acc + _F32(src[y, x - 1] * kernel[1, 2, y, x - 1]))
    if x + 1 < sx:
        acc = _F32(acc + _F32(src[y, x + 1] * kernel[1, 0, y, x + 1]))
    if y >= 1 and x >= 1:
        acc = _F32(acc + _F32(src[y - 1, x - 1] * kernel[2, 2, y - 1, x - 1]))
    if y >= 1 and x + 1 < sx:
        acc = _F32(acc + _F32(src[y - 1, x + 1] * kernel[2, 0, y - 1, x + 1]))
    if y + 1 < sy and x >= 1:
        acc = _F32(acc + _F32(src[y + 1, x - 1] * kernel[0, 2, y + 1, x - 1]))
    if y + 1 < sy and x + 1 < sx:
        acc = _F32(acc + _F32(src[y + 1, x + 1] * kernel[0, 0, y + 1, x + 1]))
    return acc


@njit(inline="always")
def _store(plane, gain, dst, image, src, acc, y, x, by, bx, to_plane):
    result = _F32(_F32(src[y, x] + image[y, x]) - acc)
    if to_plane:
        plane[by + y, bx + x] = _F32(result / gain[y, x])
    else:
        dst[y, x] = result


# Resultants deconvolved together when the whole region is done at once: each pass
# reads a row's nine kernel taps once for all of them (the taps, 36 bytes a pixel,
# are most of a pass's memory traffic). Their work planes cost 2 x 4 bytes a pixel
# each (4088 x 528 band: 8.6 MB per plane and buffer). A 536 x 4096 band, two
# threads, alternating, best of 11: 6 resultants 0.049 s one at a time, 0.040 s three
# at a time, 0.041 s six; 24 resultants 0.172, 0.123, 0.113 s. Three keep most of
# the gain for half the work planes of six (a long ramp's peak is near 2 GiB).
PLANES_TOGETHER = 3


def _make_planes_pass(to_plane):
    """One fixed-point pass ``(src + image) - F(src)`` over planes ``p0 ..`` of ``data``.

    The work planes (``image``, ``src``, ``dst``) are 3-d: one per plane of the group
    (a group of one for the row bands of `deconvolve_cube_f32`). The result goes to
    ``dst``, or (``to_plane``, the last pass) divided by the gain into the region of
    the planes, region row ``y`` being row ``by + y`` of ``data`` (column ``b + x``);
    rows ``y_lo .. y_hi`` of the work planes are computed. Two compiled functions
    rather than a runtime flag: a branch in the inner loop stops the compiler from
    vectorising it.
    """

    @njit(parallel=True, nogil=True, cache=True)
    def run(data, gain, kernel, image, src, dst, b, p0, by, y_lo, y_hi):
        sy, sx = gain.shape
        planes = image.shape[0]
        for y in prange(y_lo, y_hi):
            if y == 0 or y == sy - 1 or sx < 3:
                for i in range(planes):
                    for x in range(sx):
                        acc = _forward_at(src[i], kernel, y, x, sy, sx)
                        _store(
                            data[p0 + i], gain, dst[i], image[i], src[i], acc,
                            y, x, by, b, to_plane,
                        )  # fmt: skip
                continue
            k11, k12, k10 = kernel[1, 1, y], kernel[1, 2, y], kernel[1, 0, y]
            k21, k22, k20 = (
                kernel[2, 1, y - 1],
                kernel[2, 2, y - 1],
                kernel[2, 0, y - 1],
            )
            k01, k02, k00 = (
                kernel[0, 1, y + 1],
                kernel[0, 2, y + 1],
                kernel[0, 0, y + 1],
            )
            g = gain[y]
            for i in range(planes):
                plane = data[p0 + i]
                for x in (0, sx - 1):
                    acc = _forward_at(src[i], kernel, y, x, sy, sx)
                    _store(
                        plane, gain, dst[i], image[i], src[i], acc,
                        y, x, by, b, to_plane,
                    )  # fmt: skip
                up, mid, down = src[i, y - 1], src[i, y], src[i, y + 1]
                img = image[i, y]
                out = plane[by + y, b : b + sx] if to_plane else dst[i, y]
                for x in range(1, sx - 1):
                    acc = _F32(mid[x] * k11[x])
                    acc = _F32(acc + _F32(up[x] * k21[x]))
                    acc = _F32(acc + _F32(down[x] * k01[x]))
                    acc = _F32(acc + _F32(mid[x - 1] * k12[x - 1]))
                    acc = _F32(acc + _F32(mid[x + 1] * k10[x + 1]))
                    acc = _F32(acc + _F32(up[x - 1] * k22[x - 1]))
                    acc = _F32(acc + _F32(up[x + 1] * k20[x + 1]))
                    acc = _F32(acc + _F32(down[x - 1] * k02[x - 1]))
                    acc = _F32(acc + _F32(down[x + 1] * k00[x + 1]))
                    result = _F32(_F32(mid[x] + img[x]) - acc)
                    out[x] = _F32(result / g[x]) if to_plane else result

    return run


_planes_to_scratch = _make_planes_pass(False)
_planes_to_plane = _make_planes_pass(True)


@njit(parallel=True, nogil=True, cache=True)
def _electrons_planes(data, gain, by, b, p0, out):
    """``out[i] = g data[p0 + i]`` over the region (float32 product, as numpy's)."""
    planes = out.shape[0]
    sy, sx = gain.shape
    for y in prange(sy):
        for i in range(planes):
            for x in range(sx):
                out[i, y, x] = _F32(data[p0 + i, by + y, b + x] * gain[y, x])


def deconvolve_region_f32(data, kernel, gain, border, iterations, first_row=None):
    """`deconvolve_cube_f32` of the whole region, resultants in groups of `PLANES_TOGETHER`.

    The region's rows are rows ``first_row ..`` of ``data`` (default ``border``, the
    frame's own region): a band's rows are deconvolved in place, nothing above or
    below them read. The arithmetic of each pixel is that of the one-plane passes, in
    the same order: the same bits.
    """
    by = border if first_row is None else int(first_row)
    n = data.shape[0]
    sy, sx = gain.shape
    kernel = np.ascontiguousarray(kernel)
    together = max(1, min(PLANES_TOGETHER, n))
    image = np.empty((together, sy, sx), np.float32)
    scratch = np.empty((together, sy, sx), np.float32)
    spare = np.empty((together, sy, sx), np.float32) if iterations > 2 else scratch
    for p0 in range(0, n, together):
        planes = min(together, n - p0)
        img = image[:planes]
        _electrons_planes(data, gain, by, border, p0, img)
        src = img
        for j in range(iterations):
            if j == iterations - 1:
                _planes_to_plane(
                    data, gain, kernel, img, src, src, border, p0, by, 0, sy
                )
            else:
                dst = (scratch, spare)[j % 2][:planes]
                _planes_to_scratch(
                    data, gain, kernel, img, src, dst, border, p0, by, 0, sy
                )
                src = dst


def kernel_rows(kernel, a, c, flat=None):
    """Rows ``a:c`` of every tap of ``kernel``, C-contiguous, as a copy in ``flat``.

    ``flat`` (1-d, at least ``9 (c - a) nx`` elements of the kernel's dtype) is
    reused from band to band: a new array per band costs its first touch again (about
    3 ms per MiB on a virtual machine). A memory-mapped kernel's rows are read from
    its file (`romanimpreprocess.utils.mapped.copy_mapped`), so none of its pages
    stays in the process. None: the kernel itself (contiguous, no copy).
    """
    from romanimpreprocess.utils.mapped import copy_mapped

    if flat is None:
        return np.ascontiguousarray(kernel)
    shape = (3, 3, c - a, kernel.shape[-1])
    band = flat[: int(np.prod(shape))].reshape(shape)
    copy_mapped(kernel[:, :, a:c], band)
    return band


def deconvolve_cube_f32(data, kernel, gain, border, iterations, band_rows=None):
    """``data[i][region] = R_k(g data[i][region]) / g`` for every resultant, in place.

    The region is done in bands of ``band_rows`` rows, every resultant of a band
    before the next band, so that only a band of the kernel is needed at a time: its
    rows are copied into a contiguous buffer (`kernel_rows`; a memory-mapped kernel's
    rows are read from its file, none of its pages mapped). Each band is computed with
    ``iterations`` rows of halo on either side (row ``y`` of ``R_k`` reaches rows
    ``y - k .. y + k``); the rows just above the next band are kept, in electrons,
    before the band is written back, since the next band's halo needs their values
    before deconvolution. The bits are those of one band over the whole region.

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx), float32
        Resultants; modified in place over the region ``[b:ny-b, b:nx-b]``.
    kernel : ndarray, shape (3, 3, ny - 2b, nx - 2b)
        Per-pixel IPC kernel over the region (float32 or float64; products are
        rounded to float32 as numpy's float32 output does).
    gain : ndarray, shape (ny - 2b, nx - 2b), float32
        Gain over the region (already clipped as the caller wants).
    border : int
        ``b``, the border left out by the kernel.
    iterations : int
        ``k >= 1`` fixed-point iterations.
    band_rows : int, optional
        Rows per band (None: the whole region in one band).
    """
    sy, sx = gain.shape
    band = sy if band_rows is None else max(1, min(int(band_rows), sy))
    if band == sy:
        deconvolve_region_f32(data, kernel, gain, border, iterations)
        return
    halo = iterations
    rows = min(sy, band + 2 * halo)
    # one-plane groups of the planes passes: (1, rows, sx) work planes
    image = np.empty((1, rows, sx), np.float32)
    scratch = np.empty((1, rows, sx), np.float32)
    spare = np.empty((1, rows, sx), np.float32) if iterations > 1 else scratch
    # Electrons of the (up to) ``halo`` rows above the band, before they were written.
    above = np.empty((data.shape[0], halo, sx), np.float32)
    flat = None if band == sy else np.empty(9 * rows * sx, kernel.dtype)
    for y0 in range(0, sy, band):
        y1 = min(sy, y0 + band)
        a, c = max(0, y0 - halo), min(sy, y1 + halo)
        n = c - a
        kernel_band = kernel_rows(kernel, a, c, flat)
        gain_band = gain[a:c]
        kept = y0 - a  # rows of the halo above, already deconvolved in ``data``
        for i in range(data.shape[0]):
            img = image[:, :n]
            img[0, :kept] = above[i, halo - kept :]
            _electrons_planes(data, gain[y0:c], border + y0, border, i, img[:, kept:])
            if y1 < sy:
                t = min(halo, y1)
                above[i, halo - t :] = img[0, y1 - t - a : y1 - a]
            src = img
            for j in range(iterations):
                dst = (scratch, spare)[j % 2][:, :n]
                if j == iterations - 1:
                    _planes_to_plane(
                        data, gain_band, kernel_band, img, src, dst,
                        border, i, border + a, y0 - a, y1 - a,
                    )  # fmt: skip
                else:
                    _planes_to_scratch(
                        data, gain_band, kernel_band, img, src, dst,
                        border, i, border + a, 0, n,
                    )  # fmt: skip
                src = dst


@njit(inline="always")
def _tap(kernel, ty, tx, y, x, sy, sx):
    """``kernel[ty, tx, y, x]``, 0 for a source pixel outside the region."""
    if y < 0 or y >= sy or x < 0 or x >= sx:
        return 0.0
    return np.float64(kernel[ty, tx, y, x])


@njit(nogil=True, cache=True)
def _noise_gain_at(kernel, gain, y, x, row):
    """`noise_gain_order2` at one pixel, taps outside the region left out."""
    sy, sx = gain.shape
    row[:, :] = 0.0
    row[2, 2] = 3.0
    for ey in range(-1, 2):
        for ex in range(-1, 2):
            k1 = _tap(kernel, 1 + ey, 1 + ex, y - ey, x - ex, sy, sx)
            if k1 == 0.0:
                continue
            row[2 + ey, 2 + ex] -= 3.0 * k1
            for fy in range(-1, 2):
                for fx in range(-1, 2):
                    k2 = _tap(kernel, 1 + fy, 1 + fx, y - ey - fy, x - ex - fx, sy, sx)
                    row[2 + ey + fy, 2 + ex + fx] += k1 * k2
    g0 = np.float64(gain[y, x])
    acc = 0.0
    for dy in range(-2, 3):
        qy = y - dy
        if qy < 0 or qy >= sy:
            continue
        for dx in range(-2, 3):
            qx = x - dx
            if qx < 0 or qx >= sx:
                continue
            r = row[2 + dy, 2 + dx] * np.float64(gain[qy, qx])
            acc += r * r
    return acc / (g0 * g0)


_CHUNK = 256  # pixels of a row per pass (25 coefficient rows stay in the L1/L2 cache)


@njit(parallel=True, nogil=True, cache=True)
def noise_gain_order2(kernel, gain, out):
    """``out[p] = sum_q (R_pq g_q / g_p)^2`` for ``R = 3 - 3F + F^2`` (2 iterations).

    Row ``p`` of ``R`` over its 5x5 footprint: ``F[p, p-e] = K[1+e][p-e]`` and
    ``F^2[p, p-e-f] = sum K[1+e][p-e] K[1+f][p-e-f]`` (sources outside the region
    contribute nothing, as in the deconvolution). Pixels at least 2 from the edge are
    done in chunks of a row, one tap pair per pass over the chunk (loops the compiler
    vectorises), in float32 (the map is good to ~1e-6); the two outermost rows and
    columns pixel by pixel in float64.
    """
    sy, sx = gain.shape
    for y in prange(sy):
        row = np.empty((5, 5), np.float64)
        if y < 2 or y >= sy - 2 or sx < 5:
            for x in range(sx):
                out[y, x] = _noise_gain_at(kernel, gain, y, x, row)
            continue
        for x in (0, 1, sx - 2, sx - 1):
            out[y, x] = _noise_gain_at(kernel, gain, y, x, row)
        coef = np.empty((5, 5, _CHUNK), np.float32)
        acc = np.empty(_CHUNK, np.float32)
        for x0 in range(2, sx - 2, _CHUNK):
            n = min(_CHUNK, sx - 2 - x0)
            coef[:, :, :n] = 0.0
            for ey in range(-1, 2):
                for ex in range(-1, 2):
                    k1 = kernel[1 + ey, 1 + ex, y - ey, x0 - ex : x0 - ex + n]
                    c = coef[2 + ey, 2 + ex]
                    for i in range(n):
                        c[i] -= _F32(3.0) * k1[i]
                    for fy in range(-1, 2):
                        for fx in range(-1, 2):
                            k2 = kernel[
                                1 + fy,
                                1 + fx,
                                y - ey - fy,
                                x0 - ex - fx : x0 - ex - fx + n,
                            ]
                            d = coef[2 + ey + fy, 2 + ex + fx]
                            for i in range(n):
                                d[i] += k1[i] * k2[i]
            for i in range(n):
                coef[2, 2, i] += _F32(3.0)
            acc[:n] = 0.0
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    gq = gain[y - dy, x0 - dx : x0 - dx + n]
                    c = coef[2 + dy, 2 + dx]
                    for i in range(n):
                        r = c[i] * gq[i]
                        acc[i] += r * r
            g = gain[y, x0 : x0 + n]
            for i in range(n):
                out[y, x0 + i] = acc[i] / (g[i] * g[i])
