"""Reference-pixel correction (docs/refpix/description.rst), pure arrays.

Per resultant, on the frame with the amp33 block glued to its right (the dark cube
subtracted first, so that medians see noise, not the fixed pattern):

1. row step: the common 1/f row noise of the science channels is predicted from the
   amp33 row medians ``q_r`` with the Wiener coefficient ``alpha`` (`pink_alpha`) and
   subtracted from every row;
2. channel step: per 128-column block (32 channels and amp33), the line through the
   medians of the bottom and top reference rows is subtracted.

Everything is vectorised over rows and channels.
"""

import itertools

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import N_CHANNELS

__all__ = [
    "channel_step",
    "correct_resultant",
    "median_variance",
    "pink_alpha",
    "pink_row_covariance",
    "residual_row_variance",
    "row_step",
]


def pink_alpha(m_pink: float, ru_pink: float, c_pink: float, std: NDArray, ny: int):
    """Wiener coefficient of the science-channel 1/f rows on the amp33 row medians.

    ``alpha = M C² / (M² C² + RU² + median(std)² / 128 / ln(ny))``; None when the
    denominator is 0 or not finite (no usable amp33 model).
    """
    width = std.shape[-1]
    # numpy scalar arithmetic as the legacy: the median of the float32 std stays
    # float32 through the square and the division by the width.
    white = float(np.median(std) ** 2 / width / np.log(ny))
    denominator = m_pink**2 * c_pink**2 + ru_pink**2 + white
    if not np.isfinite(denominator) or denominator == 0:
        return None
    alpha = np.float64(m_pink * c_pink**2 / denominator)
    return alpha if np.isfinite(alpha) else None


def row_step(work: NDArray[np.float32], nx: int, border: int, alpha) -> float:
    """Subtract ``alpha (q_r - median q)`` from every row of ``work`` (in place).

    ``work`` is ``(ny, nx + 128)``: frame then amp33 block. Without ``alpha`` the
    least-squares slope of the science row medians on ``q_r`` is used. Returns the
    coefficient applied.
    """
    q = np.median(work[:, nx:], axis=1)
    if alpha is None:
        s = np.median(work[:, border : nx - border], axis=1)
        qc = q.astype(np.float64) - q.mean()
        denominator = float(qc @ qc)
        alpha = np.float64((qc @ (s - s.mean())) / denominator) if denominator else 0.0
    ctr = np.median(q)
    correction = np.float64(alpha) * (q - ctr)  # float64, stored back as float32
    np.subtract(work, correction[:, None], out=work, casting="same_kind")
    return float(alpha)


def channel_step(work: NDArray[np.float32], edges, border: int) -> None:
    """Subtract per column block the line through its bottom/top reference medians.

    ``edges`` are the block boundaries (32 channels then the amp33 block). The line
    goes through the medians of the ``border`` bottom and top rows, placed at their
    mean row indices; it is evaluated in float64 and stored back as float32.
    """
    ny = work.shape[0]
    y_bottom = (border - 1) / 2.0
    y_top = ny - border + (border - 1) / 2.0
    rows = np.arange(ny, dtype=np.float64)[:, None]
    for start, stop in itertools.pairwise(edges):
        block = work[:, start:stop]
        bottom = np.median(block[:border])
        top = np.median(block[ny - border :])
        # The line through the two points, solved by least squares as the legacy
        # does (the last bits of slope and offset then match it exactly).
        design = np.array([[y_bottom, 1.0], [y_top, 1.0]])
        slope, offset = np.linalg.lstsq(design, [bottom, top], rcond=None)[0]
        np.subtract(block, rows * slope + offset, out=block, casting="same_kind")


def correct_resultant(
    frame: NDArray[np.float32],
    amp33: NDArray | None,
    dark: NDArray,
    *,
    amp33_median: NDArray | None,
    alpha,
    border: int,
    block_width: int,
    n_channels: int = N_CHANNELS,
) -> float | None:
    """Reference-pixel correct one resultant in place; return the row coefficient.

    Parameters
    ----------
    frame : ndarray, shape (ny, nx), float32
        Resultant, modified in place.
    amp33 : ndarray, shape (ny, 128) or None
        Reference output of this resultant; None = no row step.
    dark : ndarray, shape (ny, nx)
        Dark-cube plane of this resultant (subtracted, then added back).
    amp33_median : ndarray, shape (ny, 128) or None
        Median amp33 pattern of the read-noise file.
    alpha : float or None
        Row coefficient (`pink_alpha`); None = least-squares slope.
    border : int
        Reference border width.
    block_width : int
        Width of the amp33 block (128).
    n_channels : int
        Readout channels across the frame.
    """
    ny, nx = frame.shape
    width = nx + block_width
    channel = nx // n_channels
    edges = [*range(0, nx + 1, channel), width]
    work = np.zeros((ny, width), dtype=np.float32)
    np.subtract(frame, dark, out=work[:, :nx], casting="unsafe")
    applied = None
    if amp33 is not None:
        ref = np.asarray(amp33, dtype=np.float32)
        if amp33_median is not None:
            ref = ref - np.asarray(amp33_median, dtype=np.float32)
        work[:, nx:] = ref
        work[:, nx:] -= np.median(work[:, nx:])
        applied = row_step(work, nx, border, alpha)
    channel_step(work, edges, border)
    np.add(work[:, :nx], dark, out=frame, casting="unsafe")
    return applied


# ------------------------------------------------------------- noise left behind
def pink_row_covariance(n: int) -> NDArray[np.float64]:
    """Covariance of unit-amplitude 1/f row noise at lags ``0..n-1`` (circular).

    The read-noise file's ``C_PINK``, ``U_PINK``, ``RU_PINK`` are amplitudes of 1/f
    noise with one value per row, generated over the ``n`` rows of a frame by the
    inverse real FFT of ``(a + ib) / sqrt(f)`` (``f = k/n``, k = 1..n/2), normalised
    to unit variance per e-fold of frequency (``romanimpreprocess.simulate``). The
    covariance of that process is ``(L / sum s_k^2) irfft(c) / n`` with
    ``s_k^2 = n/k``, ``c_k = 2 s_k^2`` below Nyquist and ``c_{n/2} = s_{n/2}^2``,
    ``L = max(ln(n/2), 1)``.
    """
    k = np.arange(n // 2 + 1, dtype=np.float64)
    s2 = np.zeros_like(k)
    s2[1:] = n / k[1:]
    c = 2.0 * s2
    if n % 2 == 0:
        c[-1] = s2[-1]
    norm = max(np.log(n / 2.0), 1.0) / np.sum(s2[1:])
    return norm * np.fft.irfft(c, n=n) / n


def median_variance(white_var, offset_sigma, m: int):
    """Variance of the median of ``m`` values ``o_i + e_i`` as the ``e_i`` vary.

    ``o_i`` are fixed offsets (reset noise, drawn once, Gaussian of ``offset_sigma``),
    ``e_i`` independent white noise of variance ``white_var``. For large ``m`` the
    median moves by ``sum_i (1/2 - [x_i < med]) / (m f(med))``, so its variance is
    ``E_o[p (1 - p)] / (m f^2)`` with ``p = Phi((med - o) / s_e)`` and ``f`` the
    density of ``o + e`` at the centre, in closed form
    ``(1/4 - arcsin(s_o²/(s_o² + s_e²)) / 2 pi) 2 pi (s_o² + s_e²) / m``:
    ``(pi/2) s_e^2 / m`` without offsets, growing like ``s_o s_e / m`` with them.
    Arrays broadcast.
    """
    white_var = np.asarray(white_var, dtype=np.float64)
    offset_var = np.asarray(offset_sigma, dtype=np.float64) ** 2
    total = white_var + offset_var
    # E_o[p (1 - p)] = 1/2 - P(Z1 < rT, Z2 < rT) for independent standard normals
    # Z1, Z2, T and r = s_o/s_e: an orthant probability of two normals with
    # correlation rho = s_o²/(s_o² + s_e²), 1/4 + arcsin(rho)/(2 pi).
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(total > 0, offset_var / total, 0.0)
    spread = 0.25 - np.arcsin(rho) / (2.0 * np.pi)
    return spread * 2.0 * np.pi * total / m


def residual_row_variance(
    n_frames,
    ny: int,
    channel_read_var,
    reset_sigma,
    *,
    border: int,
    channel_width: int,
    pink: dict,
    alpha=None,
    amp33_white_var: float = 0.0,
    amp33_width: int = 128,
) -> NDArray[np.float32]:
    """Row noise each resultant keeps after the correction, per row and channel.

    Per resultant ``k`` (``N_k`` frames), row ``y`` and readout channel, the
    variance (DN²) of what the correction leaves or adds that is common to the row
    of the channel: the 1/f noise not removed (common mode ``(1 - alpha M) C``, the
    amp33's own ``alpha RU`` and the channel's own ``U``, each per frame, so divided
    by ``N_k``), the white noise of the amp33 row medians times ``alpha``, and the
    noise of the bottom/top reference medians through the channel line
    (`median_variance` with the reset offsets). The line is fitted to the same
    noise, so what it removes of the 1/f is taken out exactly
    (`pink_row_covariance`). Drifts linear in the row are removed exactly.

    Parameters
    ----------
    n_frames : sequence of int
        Frames per resultant.
    ny : int
        Rows of the frame (reference rows included).
    channel_read_var : ndarray, shape (2, nchannels)
        Single-read variance (DN²) of the bottom and top reference pixels of each
        channel (median over them).
    reset_sigma : ndarray, shape (2, nchannels)
        Reset noise (DN) of those pixels.
    border : int
        Reference rows at the bottom and at the top.
    channel_width : int
        Columns per channel.
    pink : dict
        ``C_PINK``, ``U_PINK``, ``M_PINK``, ``RU_PINK`` (DN; missing = 0).
    alpha : float or None
        Row-step coefficient applied (None: no row step).
    amp33_white_var : float
        Variance (DN², one frame) of an amp33 pixel's white noise (``std²``).
    amp33_width : int
        Pixels per amp33 row (the row median).

    Returns
    -------
    ndarray, shape (nresultants, ny, nchannels), float32
    """
    n_frames = np.asarray(n_frames, dtype=np.float64)
    channel_read_var = np.asarray(channel_read_var, dtype=np.float64)
    reset_sigma = np.asarray(reset_sigma, dtype=np.float64)
    c_pink = float(pink.get("C_PINK", 0.0) or 0.0)
    u_pink = float(pink.get("U_PINK", 0.0) or 0.0)
    m_pink = float(pink.get("M_PINK", 0.0) or 0.0)
    ru_pink = float(pink.get("RU_PINK", 0.0) or 0.0)
    a = 0.0 if alpha is None else float(alpha)
    pink_var = (1.0 - a * m_pink) ** 2 * c_pink**2 + u_pink**2 + (a * ru_pink) ** 2
    gamma = pink_row_covariance(ny)
    rows = np.arange(ny)
    bottom = np.arange(border)
    top = np.arange(ny - border, ny)
    y_bottom = (border - 1) / 2.0
    y_top = ny - border + (border - 1) / 2.0
    x = (rows - y_bottom) / (y_top - y_bottom)

    def mean_cov(a_rows, b_rows):
        return np.mean(gamma[(a_rows[:, None] - b_rows[None, :]) % ny], axis=1)

    g_yb = mean_cov(rows, bottom)
    g_yt = mean_cov(rows, top)
    g_bb = np.mean(mean_cov(bottom, bottom))
    g_tt = np.mean(mean_cov(top, top))
    g_bt = np.mean(mean_cov(bottom, top))
    pink_shape = (
        gamma[0]
        - 2 * (1 - x) * g_yb
        - 2 * x * g_yt
        + (1 - x) ** 2 * g_bb
        + x**2 * g_tt
        + 2 * x * (1 - x) * g_bt
    )
    # White noise of the amp33 row median (rounded resultants: + 1/12), times alpha:
    # its own row, and a quarter of it in each reference median.
    in_ref = np.zeros(ny)
    in_ref[bottom] = 1.0
    in_ref[top] = 1.0
    white_shape = (1.0 - in_ref) + ((1 - x) ** 2 + x**2) / border
    m = border * channel_width
    out = np.empty((len(n_frames), ny, channel_read_var.shape[-1]), np.float32)
    for k, nk in enumerate(n_frames):
        row_white = 0.0
        if alpha is not None:
            row_white = (
                a**2 * (np.pi / 2) * (amp33_white_var / nk + 1 / 12) / amp33_width
            )
        med = median_variance(channel_read_var / nk + 1 / 12, reset_sigma, m)
        out[k] = (
            (pink_var / nk * pink_shape + row_white * white_shape)[:, None]
            + ((1 - x) ** 2)[:, None] * med[0][None, :]
            + (x**2)[:, None] * med[1][None, :]
        )
    return out
