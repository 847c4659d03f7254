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
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import N_CHANNELS
from romanimpreprocess.utils.pink import row_clocks, structure_function

__all__ = [
    "ResultantTerms",
    "apply_terms",
    "channel_step",
    "correct_resultant",
    "median_variance",
    "pink_alpha",
    "pink_block_variance",
    "pink_residual_variance",
    "residual_row_variance",
    "resultant_terms",
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


@dataclass
class ResultantTerms:
    """What the correction of one resultant subtracts, per frame row.

    ``correction`` (ny,) float64 is the row step's ``alpha (q_r - median q)`` (None
    without a row step); ``lines`` holds ``(slope, offset)`` of each science channel's
    line through its reference medians; ``edges`` are the channel boundaries.
    """

    correction: NDArray[np.float64] | None
    lines: list
    edges: list
    ny: int


def resultant_terms(
    reference_rows: NDArray,
    dark_rows: NDArray,
    amp33: NDArray | None,
    *,
    ny: int,
    amp33_median: NDArray | None,
    alpha,
    border: int,
    n_channels: int = N_CHANNELS,
) -> ResultantTerms:
    """The row step and the channel lines of one resultant, from its reference rows.

    ``reference_rows`` (2 border, nx) are the ``border`` bottom then top rows of the
    resultant, ``dark_rows`` the same rows of its dark plane and ``amp33`` (ny, 128)
    the whole amp33 block (None: no row step). The medians see exactly the values
    `correct_resultant` gives them on the whole frame, so `apply_terms` on any
    rows gives the same bits.
    """
    nx = reference_rows.shape[-1]
    channel = nx // n_channels
    edges = list(range(0, nx + 1, channel))
    work = np.empty(reference_rows.shape, dtype=np.float32)
    np.subtract(reference_rows, dark_rows, out=work, casting="unsafe")
    correction = None
    if amp33 is not None:
        block = np.asarray(amp33, dtype=np.float32)
        if amp33_median is not None:
            block = block - np.asarray(amp33_median, dtype=np.float32)
        block = block - np.median(block)
        q = np.median(block, axis=1)
        ctr = np.median(q)
        correction = np.float64(alpha) * (q - ctr)  # float64, stored back as float32
        held = np.r_[0:border, ny - border : ny]
        np.subtract(work, correction[held][:, None], out=work, casting="same_kind")
    y_bottom = (border - 1) / 2.0
    y_top = ny - border + (border - 1) / 2.0
    design = np.array([[y_bottom, 1.0], [y_top, 1.0]])
    lines = []
    for start, stop in itertools.pairwise(edges):
        bottom = np.median(work[:border, start:stop])
        top = np.median(work[border:, start:stop])
        # The line through the two points, solved by least squares as the legacy
        # does (the last bits of slope and offset then match it exactly).
        slope, offset = np.linalg.lstsq(design, [bottom, top], rcond=None)[0]
        lines.append((slope, offset))
    return ResultantTerms(correction=correction, lines=lines, edges=edges, ny=ny)


def apply_terms(
    frame: NDArray[np.float32],
    dark: NDArray,
    terms: ResultantTerms,
    rows: slice,
    engine: str = "numba",
) -> None:
    """Subtract a resultant's row step and channel lines from frame rows ``rows``.

    ``frame`` (h, nx) holds frame rows ``rows`` of the resultant (modified in place),
    ``dark`` the same rows of its dark plane (subtracted first, added back). A float32
    frame and dark go through the compiled `refpix_kernels.apply_terms_rows` (one
    pass instead of 35, the same bits); anything else through numpy (`engine`).
    """
    from romanimpreprocess.parallel import check_engine

    check_engine(engine)
    if engine == "numba" and frame.dtype == np.float32 and dark.dtype == np.float32:
        from romanimpreprocess.refpix.refpix_kernels import apply_terms_rows

        correction = terms.correction
        correction = (
            np.zeros(0)
            if correction is None
            else np.asarray(correction, dtype=np.float64)[rows]
        )
        apply_terms_rows(
            frame,
            dark,
            correction,
            range(terms.ny)[rows].start,
            np.asarray(terms.edges, dtype=np.int64),
            np.array([line[0] for line in terms.lines], dtype=np.float64),
            np.array([line[1] for line in terms.lines], dtype=np.float64),
        )
        return
    work = np.empty(frame.shape, dtype=np.float32)
    np.subtract(frame, dark, out=work, casting="unsafe")
    if terms.correction is not None:
        np.subtract(
            work, terms.correction[rows][:, None], out=work, casting="same_kind"
        )
    y = np.arange(terms.ny, dtype=np.float64)[rows][:, None]
    for (start, stop), (slope, offset) in zip(
        itertools.pairwise(terms.edges), terms.lines, strict=True
    ):
        block = work[:, start:stop]
        np.subtract(block, y * slope + offset, out=block, casting="same_kind")
    np.add(work, dark, out=frame, casting="unsafe")


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
    """Reference-pixel correct one resultant in place (`resultant_terms`, `apply_terms`).

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
        Row coefficient (`pink_alpha`); None = least-squares slope of the science
        row medians on the amp33 ones (`row_step`, whole frame).
    border : int
        Reference border width.
    block_width : int
        Width of the amp33 block (128).
    n_channels : int
        Readout channels across the frame.

    Returns
    -------
    float or None
        The row coefficient applied (None without ``amp33``).
    """
    ny, nx = frame.shape
    if amp33 is not None and alpha is None:
        work = np.zeros((ny, nx + block_width), dtype=np.float32)
        np.subtract(frame, dark, out=work[:, :nx], casting="unsafe")
        ref = np.asarray(amp33, dtype=np.float32)
        if amp33_median is not None:
            ref = ref - np.asarray(amp33_median, dtype=np.float32)
        work[:, nx:] = ref
        work[:, nx:] -= np.median(work[:, nx:])
        alpha = row_step(work, nx, border, None)
        del work
    held = np.r_[0:border, ny - border : ny]
    terms = resultant_terms(
        frame[held],
        np.asarray(dark)[held],
        amp33,
        ny=ny,
        amp33_median=amp33_median,
        alpha=alpha,
        border=border,
        n_channels=n_channels,
    )
    apply_terms(frame, dark, terms, slice(0, ny))
    return None if amp33 is None else float(alpha)


# ------------------------------------------------------------- noise left behind
def _window_structure(ny: int, clocks: int, width_a: int, width_b: int, grid=None):
    """Mean of D over two row windows ``d`` rows apart, ``d = -(ny-1) … ny-1``.

    Window a holds clocks ``0 … width_a - 1`` of a row, window b clocks
    ``d·clocks + 0 … width_b - 1``; returns ``mean_{c<width_a, c'<width_b}
    D(d·clocks + c - c')`` (`romanimpreprocess.utils.pink.structure_function`) as an
    array indexed by ``d + ny - 1``. ``grid``: D at the integer lags
    ``0 … ny·clocks + width_b`` (computed once by the caller).
    """
    if grid is None:
        grid = structure_function(np.arange(ny * clocks + max(width_a, width_b)))
    m = np.arange(-(width_b - 1), width_a)
    pairs = np.minimum(m + width_b, width_a) - np.maximum(m, 0)  # c - c' = m
    d = np.arange(-(ny - 1), ny)
    table = grid[np.abs(d[:, None] * clocks + m[None, :])]
    return table @ (pairs / (width_a * width_b))


def pink_block_variance(rows: int, width: int, clocks: int) -> float:
    """Spread of unit 1/f noise over a block of reference pixels, one frame.

    The variance about their mean of the samples of ``rows`` consecutive rows x the
    first ``width`` clocks of each row (``clocks`` per row): ``½ mean_ij D(t_i -
    t_j)``. It is noise, not a fixed offset: `RefPixStep` takes it out of the
    measured spread of the reference pixels before calling the rest reset offsets.
    """
    table = _window_structure(rows, clocks, width, width)
    lags = np.arange(rows)[:, None] - np.arange(rows)[None, :]
    return float(0.5 * np.mean(table[lags + rows - 1]))


def pink_residual_variance(
    ny: int,
    *,
    border: int,
    channel_width: int,
    amp33_width: int,
    alpha=None,
    m_pink: float = 0.0,
) -> dict:
    """Variance of the 1/f noise the correction leaves, per unit amplitude, per row.

    For the read-noise file's 1/f model (docs/reference_files.rst, "The 1/f noise of
    the read-noise file"; `romanimpreprocess.utils.pink`), one frame: a science pixel
    keeps its 1/f value ``s(t)`` less the row step ``alpha q_y`` (``q_y`` the amp33
    row, its median taken as the mean of its 1/f part) less the channel line through
    the bottom/top reference medians of ``s - alpha q`` (again means). Each of these
    combinations of samples has weights summing to zero, so its variance is
    ``-½ Σ a_i a_j D(t_i - t_j)`` with the closed-form structure function D: exact for
    the model, whatever the series length. Averaged over the columns of a channel.

    Parameters
    ----------
    ny : int
        Rows of the frame.
    border : int
        Reference rows at the bottom and at the top.
    channel_width, amp33_width : int
        Columns of a channel and of amp33 (a row takes the larger number of clocks).
    alpha : float or None
        Row-step coefficient (None: no row step).
    m_pink : float
        ``M_PINK``: amp33's share of the common series.

    Returns
    -------
    dict of ndarray, shape (ny,)
        ``common``, ``own`` and ``amp33``: the variance (DN², one frame) per unit
        ``C_PINK``, ``U_PINK`` and ``RU_PINK``.
    """
    clocks = row_clocks(channel_width, amp33_width)
    a = 0.0 if alpha is None else float(alpha)
    # D at every integer lag once (sici is the cost), then window means by lookup.
    grid = structure_function(np.arange(ny * clocks + clocks))
    widths = {"c": channel_width, "q": amp33_width}
    tables = {
        (i, j): _window_structure(ny, clocks, widths[i], widths[j], grid)
        for i in widths
        for j in widths
    }
    rows = np.arange(ny)
    bottom = np.arange(border)
    top = np.arange(ny - border, ny)
    x = (rows - (border - 1) / 2.0) / (ny - border)
    # groups: (window, row of the group for every pixel row, weight per pixel row)
    ones = np.ones(ny)

    def line_groups(window, weight):
        out = []
        for rr in bottom:
            out.append((window, np.full(ny, rr), -weight * (1 - x) / border))
        for rr in top:
            out.append((window, np.full(ny, rr), -weight * x / border))
        return out

    def variance(groups):
        total = np.zeros(ny)
        for i, (wi, ri, ai) in enumerate(groups):
            for j, (wj, rj, aj) in enumerate(groups):
                if i == 0 and j == 0 and wi == "p":
                    continue  # the pixel with itself: D(0) = 0
                table = tables[(wi.replace("p", "c"), wj.replace("p", "c"))]
                total += ai * aj * table[rj - ri + ny - 1]
        return -0.5 * total

    common = [("p", rows, ones), ("q", rows, -a * m_pink * ones)]
    common += line_groups("c", ones) + line_groups("q", -a * m_pink * ones)
    own = [("p", rows, ones), *line_groups("c", ones)]
    amp33 = [("q", rows, -a * ones), *line_groups("q", -a * ones)]
    return {
        "common": variance(common),
        "own": variance(own),
        "amp33": variance(amp33) if alpha is not None else np.zeros(ny),
    }


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
    variance (DN²) of a science pixel's read noise that the correction leaves or adds
    beyond the pixel's own white noise: the 1/f noise of the read-noise file's model
    that the row step and the channel line do not remove (`pink_residual_variance`,
    closed form, averaged over the columns of the channel; per frame, so divided by
    ``N_k``), the white noise of the amp33 row medians times ``alpha``, and the noise
    of the bottom/top reference medians through the channel line (`median_variance`
    with the reset offsets). Drifts linear in the row are removed exactly.

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
    pink_var = np.zeros(ny)
    if c_pink or u_pink or ru_pink:
        unit = pink_residual_variance(
            ny,
            border=border,
            channel_width=channel_width,
            amp33_width=amp33_width,
            alpha=alpha,
            m_pink=m_pink,
        )
        pink_var = (
            c_pink**2 * unit["common"]
            + u_pink**2 * unit["own"]
            + ru_pink**2 * unit["amp33"]
        )
    bottom = np.arange(border)
    top = np.arange(ny - border, ny)
    y_bottom = (border - 1) / 2.0
    y_top = ny - border + (border - 1) / 2.0
    x = (np.arange(ny) - y_bottom) / (y_top - y_bottom)
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
            (pink_var / nk + row_white * white_shape)[:, None]
            + ((1 - x) ** 2)[:, None] * med[0][None, :]
            + (x**2)[:, None] * med[1][None, :]
        )
    return out
