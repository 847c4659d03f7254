"""The non-Poisson variance of a slope through the whole calibration (issue 21).

The fit's own read-noise model, ``var_rnoise = σ² Σ w²/N`` for a pixel fitted with
weights ``w``, is white read noise in the resultants. The calibration before the fit
changes that noise, and the exposure carries more of it than the fit's model says:

* **rounding** of the resultants to integers (uint16 L1): ``1/12`` DN² per
  resultant, ``Σ w²/12`` in the slope;
* the **IPC deconvolution** spreads the white noise of each pixel's neighbours into
  it: the white part (read noise and rounding) is multiplied by the per-pixel map
  ``Σ_q (R_pq g_q/g_p)²`` (`romanimpreprocess.ipc.ipc.noise_gain`);
* the **reference-pixel correction** leaves (and adds) noise common to a row of a
  channel: the 1/f noise it does not remove, the amp33 median noise of the row step,
  and the noise of the channel medians (reset offsets included), per resultant
  (`romanimpreprocess.refpix.refpix.residual_row_variance`); in the slope
  ``Σ_k w_k² V_k(row, channel)``. A row pattern is smooth along the row, so the IPC
  inverse passes it with gain ≈ 1.

`calibration_read_variance` adds these to the fit's ``var_rnoise``. The weights are
known per pixel only through ``b = var_rnoise / σ²`` (= ``Σ w²/N``); the terms that
need other sums of the weights (``Σ w²``, ``Σ w_k² V_k``) use the full-ramp weights K
scaled by ``b / ΣK²/N``, exact for the pixels fitted with K (almost all) and close for
the others (ramps cut by saturation or split by jumps).
"""

import numpy as np
from numpy.typing import NDArray

__all__ = ["ROUNDING_VARIANCE", "calibration_read_variance"]

ROUNDING_VARIANCE = 1.0 / 12.0  # DN², a resultant rounded to an integer
BLOCK_ROWS = 256


def calibration_read_variance(
    var_rnoise: NDArray,
    read_noise: NDArray,
    weights: NDArray,
    n_frames: NDArray,
    *,
    ipc_gain: NDArray | None = None,
    row_variance: NDArray | None = None,
    border: int = 4,
    nx: int | None = None,
    inplace: bool = False,
) -> NDArray[np.float32]:
    """The fit's ``var_rnoise`` with rounding, IPC amplification and row noise added.

    Parameters
    ----------
    var_rnoise : ndarray, shape (sy, sx)
        The fit's ``σ² Σ w²/N`` (DN²/s²); NaN stays NaN.
    read_noise : ndarray, shape (sy, sx)
        Single-read noise σ (DN) of the science pixels.
    weights, n_frames : ndarray, shape (n,)
        Full-ramp weights K and frames per resultant.
    ipc_gain : ndarray, shape (sy, sx), optional
        `ipc.noise_gain` of the deconvolution applied (None: no IPC step).
    row_variance : ndarray, shape (n, ny, nchannels), optional
        `refpix.residual_row_variance` of the correction applied (None: none).
    border, nx : int
        Reference border and full-frame width (for the channel of each column).
    inplace : bool
        Overwrite ``var_rnoise`` (float32) instead of returning a new array.

    Returns
    -------
    ndarray, shape (sy, sx), float32
    """
    k2 = np.asarray(weights, dtype=np.float64) ** 2
    coef_full = float(np.sum(k2 / np.asarray(n_frames, dtype=np.float64)))
    out = var_rnoise if inplace else np.array(var_rnoise, dtype=np.float32)
    if coef_full <= 0:
        return out
    rounding = ROUNDING_VARIANCE * float(np.sum(k2)) / coef_full
    sy, sx = out.shape
    if nx is None:
        nx = sx + 2 * border
    per_row = channel = None
    if row_variance is not None:
        w2 = k2 / coef_full
        per_row = np.tensordot(
            w2, row_variance[:, border : border + sy], axes=1
        ).astype(np.float32)
        nchan = row_variance.shape[-1]
        channel = (np.arange(border, border + sx) // (nx // nchan)).clip(0, nchan - 1)
    # Row blocks of float32 temporaries (the terms are good to far better than
    # float32 rounding), in place where possible.
    rounding = np.float32(rounding)
    for y0 in range(0, sy, BLOCK_ROWS):
        y1 = min(y0 + BLOCK_ROWS, sy)
        sigma2 = np.square(read_noise[y0:y1], dtype=np.float32)
        var_r = out[y0:y1]
        with np.errstate(invalid="ignore", divide="ignore"):
            # b = Σ w²/N of the pixel's own weights; K's where σ tells nothing.
            coef = np.divide(var_r, sigma2, dtype=np.float32)
        np.copyto(coef, np.float32(coef_full), where=~(sigma2 > 0))
        coef[~np.isfinite(var_r)] = np.nan
        sigma2 += rounding
        total = np.multiply(coef, sigma2, out=sigma2)
        if ipc_gain is not None:
            total *= ipc_gain[y0:y1]
        if per_row is not None:
            coef *= per_row[y0:y1][:, channel]
            total += coef
        out[y0:y1] = total
    return out
