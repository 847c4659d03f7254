"""WFI18 first-read transient: fit and subtract, or mask (docs/wfi18_transient/index.rst).

Detector WFI18 shows a transient in the first read after the reset that decays along
the readout. The anomaly of resultant 0 is estimated per row from the backward
extrapolation of resultants 1 and 2, fitted with a double exponential in the row read
time and subtracted at every pixel's read time; when that is not possible the most
affected rows of resultant 0 are flagged instead. This is romancal 1.1.0's
``correct_anomaly`` for any frame shape (per-pixel times from
`romanimpreprocess.utils.readout.frame_read_times`), with its row-median slip
fixed unless ``legacy_compat``.
"""

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group

from romanimpreprocess.constants import FULL_FRAME, REF_BORDER
from romanimpreprocess.utils.readout import frame_read_times

__all__ = [
    "MASKED_ROWS_FULL_FRAME",
    "MIN_RESULTANTS",
    "TransientFit",
    "correct_transient",
    "double_exponential",
    "fit_transient",
    "illuminated_mask",
    "mask_affected_rows",
    "masked_row_count",
    "resultant_mean_times",
]

log = logging.getLogger(__name__)

WFI18_SCA = 18  # detector number of WFI18 (its readout orientation)
MIN_RESULTANTS = 5  # fewer resultants: the fit is impossible, rows are masked
MASKED_ROWS_FULL_FRAME = 1000  # rows of resultant 0 masked on a full frame
# Rows whose mean read time starts the fit's two time constants, full frame (science
# rows); scaled with the frame height on smaller frames.
_P0_ROWS_FULL_FRAME = (300, 1000)
_SIGMA = 3.0  # sigma-clipping threshold of the per-row mean residual


@dataclass(frozen=True)
class TransientFit:
    """Result of the transient fit: ``a exp(-t/tau_a) + b exp(-t/tau_b)``.

    Attributes
    ----------
    a, b : float
        Amplitudes, DN.
    tau_a, tau_b : float
        Time constants, seconds.
    """

    a: float
    b: float
    tau_a: float
    tau_b: float

    def __call__(self, t):
        """Evaluate the model at times ``t`` (seconds)."""
        return double_exponential(t, self.a, self.b, self.tau_a, self.tau_b)


def double_exponential(t, a: float, b: float, tau_a: float, tau_b: float):
    """``a * exp(-t / tau_a) + b * exp(-t / tau_b)``."""
    return a * np.exp(-t / tau_a) + b * np.exp(-t / tau_b)


def masked_row_count(ny: int) -> int:
    """Rows of resultant 0 to mask: 1000 on a full frame, the same fraction otherwise."""
    if ny == FULL_FRAME:
        return MASKED_ROWS_FULL_FRAME
    return min(ny, math.ceil(MASKED_ROWS_FULL_FRAME * ny / FULL_FRAME))


def mask_affected_rows(groupdq: NDArray[np.uint8]) -> int:
    """Flag the first rows of resultant 0 DO_NOT_USE | WFI18_TRANSIENT, in place.

    Parameters
    ----------
    groupdq : ndarray, shape (nresultants, ny, nx), uint8
        Group flags (full frame), modified in place.

    Returns
    -------
    int
        Number of rows flagged (`masked_row_count`).
    """
    nrows = masked_row_count(groupdq.shape[1])
    groupdq[0, :nrows, :] |= np.uint8(group.DO_NOT_USE | group.WFI18_TRANSIENT)
    return nrows


def resultant_mean_times(read_pattern, frame_time: float) -> NDArray[np.float64]:
    """Mean read time of each resultant, ``mean(r * frame_time)`` over its frames."""
    return np.array(
        [np.mean([r * frame_time for r in frames]) for frames in read_pattern],
        dtype=np.float64,
    )


def illuminated_mask(
    diff: NDArray, *, legacy_compat: bool = False
) -> NDArray[np.bool_]:
    """Pixels left out of the row means: brighter than their row's median.

    Parameters
    ----------
    diff : ndarray, shape (ny, nx)
        A resultant difference (``d[4] - d[3]``) tracing the illumination.
    legacy_compat : bool
        Compare pixel ``(y, x)`` with the median of row ``x`` (romancal 1.1.0
        broadcasts the row medians along the last axis); needs a square array.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        True = excluded from the row mean.
    """
    median = np.median(diff, axis=1)
    if legacy_compat:
        if diff.shape[0] != diff.shape[1]:
            raise ValueError(
                f"legacy_compat row masking needs a square science area, got "
                f"{diff.shape}"
            )
        return diff > median
    return diff > median[:, None]


def fit_transient(
    data: NDArray[np.float32],
    t_pixel: NDArray[np.float64],
    read_pattern,
    frame_time: float,
    *,
    legacy_compat: bool = False,
) -> TransientFit | None:
    """Fit the transient of resultant 0 against the row read time.

    The first resultant is predicted from resultants 1 and 2 by extrapolating their
    slope back in time; the residual ``d[0] - prediction`` is averaged per row
    (sigma-clipped mean over the less illuminated pixels, `illuminated_mask`), and
    ``a exp(-t/tau_a) + b exp(-t/tau_b)`` is fitted to the row means against the mean
    read time of each row, starting from ``(1.1 r0, -0.1 r0, t_row[300], t_row[1000])``
    (rows scaled with the frame height). Arithmetic follows romancal's dtypes (float64
    residual from the float32 cube).

    Parameters
    ----------
    data : ndarray, shape (nresultants, sy, sx)
        Science-area resultants, DN (at least 5). Not modified.
    t_pixel : ndarray, shape (sy, sx), float64
        Read time of each pixel in the frame, seconds.
    read_pattern : list of list of int
        Frame indices of each resultant.
    frame_time : float
        Frame time, seconds.
    legacy_compat : bool
        Reproduce romancal: row medians broadcast along the wrong axis, and any
        non-finite row mean makes the fit fail. Otherwise rows without a finite mean
        are left out of the fit.

    Returns
    -------
    TransientFit or None
        The fitted model, or None if the fit failed.
    """
    from astropy.stats import sigma_clipped_stats
    from astropy.utils.exceptions import AstropyUserWarning
    from scipy import optimize

    t_res = resultant_mean_times(read_pattern, frame_time)
    dt = np.diff(t_res)
    rate = (data[2] - data[1]) / dt[1]
    residual = data[0] - (data[1] - rate * dt[0])
    del rate
    mask = illuminated_mask(data[4] - data[3], legacy_compat=legacy_compat)
    with warnings.catch_warnings():
        # All-masked or non-finite rows give NaN with a warning; handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        row_mean = sigma_clipped_stats(residual, mask=mask, sigma=_SIGMA, axis=1)[0]
    del residual, mask
    row_mean = np.asarray(np.ma.filled(row_mean, np.nan), dtype=np.float64)
    t_row = np.mean(t_pixel, axis=1)
    sy = t_row.shape[0]
    full_sy = FULL_FRAME - 2 * REF_BORDER
    i_a, i_b = (min(sy - 1, (r * sy) // full_sy) for r in _P0_ROWS_FULL_FRAME)
    p0 = [row_mean[0] * 1.1, row_mean[0] * -0.1, t_row[i_a], t_row[i_b]]
    t_fit, y_fit = t_row, row_mean
    if not legacy_compat:
        good = np.isfinite(row_mean)
        if good.sum() < 4 or not np.isfinite(p0).all():
            log.warning("WFI18 transient: too few rows with a finite mean to fit")
            return None
        t_fit, y_fit = t_row[good], row_mean[good]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                "Covariance of the parameters could not be estimated",
                optimize.OptimizeWarning,
            )
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = optimize.curve_fit(double_exponential, t_fit, y_fit, p0=p0)
    except (ValueError, RuntimeError) as exc:
        log.warning("WFI18 transient fit failed (%s)", exc)
        return None
    fit = TransientFit(*(float(p) for p in params))
    if not all(math.isfinite(v) for v in params):
        log.warning("WFI18 transient fit returned non-finite parameters %s", fit)
        return None
    return fit


def correct_transient(
    data: NDArray[np.float32],
    groupdq: NDArray[np.uint8],
    read_pattern,
    frame_time: float,
    *,
    mask_rows: bool = False,
    border: int = REF_BORDER,
    legacy_compat: bool = False,
) -> TransientFit | None:
    """Correct the WFI18 transient of resultant 0 in place, or mask its rows.

    With ``mask_rows``, fewer than `MIN_RESULTANTS` resultants, or a failed fit, the
    first rows of resultant 0 (`masked_row_count`) get DO_NOT_USE | WFI18_TRANSIENT in
    ``groupdq``. Otherwise the fitted model (`fit_transient`) is evaluated at each
    science pixel's read time and subtracted from resultant 0 (float64 model, result
    rounded to the cube's dtype); reference pixels are untouched.

    Parameters
    ----------
    data : ndarray, shape (nresultants, ny, nx)
        Full-frame resultants, DN; resultant 0 modified in place.
    groupdq : ndarray, shape (nresultants, ny, nx), uint8
        Group flags, modified in place when rows are masked.
    read_pattern : list of list of int
        Frame indices of each resultant.
    frame_time : float
        Frame time, seconds.
    mask_rows : bool
        Mask the affected rows instead of fitting.
    border : int
        Reference-pixel border width.
    legacy_compat : bool
        See `fit_transient`.

    Returns
    -------
    TransientFit or None
        The subtracted model, or None if rows were masked.
    """
    nres, ny, nx = data.shape
    if mask_rows or nres < MIN_RESULTANTS:
        if not mask_rows:
            log.info(
                "WFI18 transient: %d resultants (< %d), masking rows instead of fitting",
                nres,
                MIN_RESULTANTS,
            )
        n = mask_affected_rows(groupdq)
        log.info("WFI18 transient: masked rows 0..%d of resultant 0", n - 1)
        return None
    science = (slice(border, ny - border), slice(border, nx - border))
    t_pixel = frame_read_times((ny, nx), frame_time, WFI18_SCA)[science]
    fit = fit_transient(
        data[(slice(None), *science)],
        t_pixel,
        read_pattern,
        frame_time,
        legacy_compat=legacy_compat,
    )
    if fit is None:
        n = mask_affected_rows(groupdq)
        log.warning("WFI18 transient: masked rows 0..%d of resultant 0 instead", n - 1)
        return None
    log.info(
        "WFI18 transient fit: a=%.6g DN, b=%.6g DN, tau_a=%.6g s, tau_b=%.6g s",
        fit.a,
        fit.b,
        fit.tau_a,
        fit.tau_b,
    )
    first = data[0][science]
    np.subtract(first, fit(t_pixel), out=first, casting="unsafe")
    return fit
