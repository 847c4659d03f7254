"""Sky level: mode estimate and Legendre polynomial sky (docs/sky/index.rst).

The bad-pixel mask of the estimates is `PixelMask1`
(`romanimpreprocess.utils.maskhandling`, re-exported here as `pixel_mask1` and
`PIXEL_MASK1`).
"""

import warnings

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.parallel import run_in_threads
from romanimpreprocess.utils.maskhandling import PIXEL_MASK1, pixel_mask1

__all__ = ["PIXEL_MASK1", "bin4x4", "medfit", "pixel_mask1", "smooth_mode"]


def bin4x4(image: NDArray) -> NDArray:
    """Mean over 4x4 blocks (a NaN poisons its block); extra rows/cols dropped."""
    ny, nx = (s - s % 4 for s in image.shape)
    trimmed = image[:ny, :nx]
    return trimmed.reshape(ny // 4, 4, nx // 4, 4).mean(axis=(1, 3))


def smooth_mode(values: NDArray, *, pksmooth: float = 0.5, niter: int = 3):
    """Mode of ``values`` (NaN ignored): Gaussian-smoothed histogram peak.

    Start at the median with sigma from the interquartile range; ``niter`` times,
    evaluate the kernel density on 21 points over ``ctr +- sigma`` and refine ``ctr``
    by a parabola through the peak. Returns ``(ctr, pksmooth * sigma)``.
    """
    arr = np.asarray(values)
    arr = arr[np.isfinite(arr)]
    c1, c2, c3 = np.percentile(arr, [25, 50, 75])
    ctr = c2
    sigma = (c3 - c1) / 1.3489795
    if not sigma > 0:
        return float(ctr), 0.0
    width = pksmooth * sigma
    for _ in range(niter):
        z = ctr + sigma * (-1 + np.arange(21) / 10.0)
        h = np.zeros(21)

        def density(k, z=z, h=h):
            h[k] = np.sum(np.exp(-0.5 * ((z[k] - arr) / width) ** 2))

        # the 19 sums are independent (numpy releases the GIL): each is computed
        # exactly as in one thread, so the mode does not depend on the threads
        run_in_threads(density, range(1, 20))
        p = int(np.argmax(h))
        b = (h[p + 1] - h[p - 1]) / 2
        a = (h[p + 1] + h[p - 1]) / 2 - h[p]
        ctr = z[p] + (z[1] - z[0]) * (-b / (2 * a))
    return float(ctr), float(width)


def _legendre(order, t):
    """``[P_0(t), ..., P_order(t)]`` (scipy's evaluation, as the legacy)."""
    from scipy.special import legendre_p

    t = np.asarray(t, dtype=np.float64)
    out = []
    for k in range(order + 1):
        value = np.asarray(legendre_p(k, t))
        # scipy >= 1.15 returns a leading axis for the derivatives (none here)
        out.append(value.reshape(t.shape) if value.size == t.size else value[0])
    return out


def medfit(
    image: NDArray,
    *,
    cells: int = 8,
    order: int = 2,
    clip: float | None = None,
    legacy_evaluation: bool = True,
):
    """Fit a 2-D Legendre polynomial to cell medians; return (coefs, model).

    The image is cut into ``cells x cells`` cells (centred; remainder rows/cols
    outside); each cell's NaN-median is a sample at the cell centre. Basis
    ``P_i(u) P_j(v)`` for ``i = 0..order``, ``j = 0..order - i``. With ``clip``,
    cells whose residual exceeds ``clip`` robust sigmas (a cell dominated by a
    large source) are dropped and the fit repeated (twice at most); the legacy
    fit (``clip=None``) keeps every cell.

    ``legacy_evaluation`` sums the model term by term over the whole frame in
    float64, as the legacy does (its bits); otherwise the model is one matrix
    product per block of rows, ``A @ L_x`` with ``A[y, i] = sum_j c_ij P_j(v_y)``:
    the same polynomial to float64 rounding, without the full-frame float64
    temporaries (0.05 s instead of 0.6 s on a full frame).
    """
    ny, nx = image.shape
    kx, ky = nx // cells, ny // cells
    px, py = (nx % cells) // 2, (ny % cells) // 2
    med = np.empty((cells, cells))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
        # one cell at a time: a 1 MB copy each instead of the whole frame transposed
        for j in range(cells):
            for i in range(cells):
                y0, x0 = py + j * ky, px + i * kx
                med[j, i] = np.nanmedian(image[y0 : y0 + ky, x0 : x0 + kx])
    u = 2 * (px - 0.5 + kx * np.linspace(0.5, cells - 0.5, cells)) / nx - 1
    v = 2 * (py - 0.5 + ky * np.linspace(0.5, cells - 0.5, cells)) / ny - 1
    uu, vv = np.meshgrid(u, v)
    pu, pv = _legendre(order, uu), _legendre(order, vv)
    basis = np.array(
        [pu[i] * pv[j] for i in range(order + 1) for j in range(order + 1 - i)]
    )

    def solve(use):
        # Normal equations accumulated cell by cell (x outer, y inner).
        a = np.zeros((len(basis), len(basis)))
        rhs = np.zeros(len(basis))
        for i in range(cells):
            for j in range(cells):
                if use[j, i]:
                    column = basis[:, j, i]
                    a += np.outer(column, column)
                    rhs += med[j, i] * column
        return np.linalg.solve(a, rhs)

    good = np.isfinite(med)
    coefs = solve(good)
    for _ in range(2 if clip else 0):
        residual = med - np.tensordot(coefs, basis, axes=1)
        mad = np.nanmedian(np.abs(residual[good] - np.nanmedian(residual[good])))
        keep = good & (np.abs(residual) <= clip * 1.4826 * max(mad, 1e-12))
        if keep.sum() == good.sum() or keep.sum() < len(basis):
            break
        good = keep
        coefs = solve(good)
    lx = _legendre(order, np.linspace(-1, 1 - 2 / nx, nx))
    ly = _legendre(order, np.linspace(-1, 1 - 2 / ny, ny))
    if legacy_evaluation:
        model = np.zeros((ny, nx))
        k = 0
        for i in range(order + 1):
            for j in range(order + 1 - i):
                model += coefs[k] * np.outer(ly[j], lx[i])
                k += 1
        return coefs, model.astype(image.dtype)
    row_terms = np.zeros((ny, order + 1))  # A[y, i] = sum_j c_ij P_j(v_y)
    k = 0
    for i in range(order + 1):
        for j in range(order + 1 - i):
            row_terms[:, i] += coefs[k] * ly[j]
            k += 1
    columns = np.array(lx)  # (order + 1, nx)
    model = np.empty((ny, nx), dtype=image.dtype)
    for r0 in range(0, ny, 256):
        model[r0 : r0 + 256] = row_terms[r0 : r0 + 256] @ columns
    return coefs, model
