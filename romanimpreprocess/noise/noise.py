"""Noise realisations of a calibrated exposure (legacy NOISE layers, docs/noise/index.rst).

Each layer is a (sy, sx) image in the units of the L2 ``data`` (flattened DN/s) built
from the commands of its layer string (`romanimpreprocess.noise.layers`):

* **R** – read noise: a noise ramp (white read noise σ_read/√N_k on every pixel,
  reset noise on the reference border, correlated 1/f noise common to all channels
  and per channel, the amp33 reference output) is calibrated by the full pipeline
  (a callable supplied by the step) and the difference to a reference calibration is
  the layer. ``z<k>`` clips it at median ± k·IQR/1.34896.
* **O** – pseudo-Poisson layer: per pixel a Pearson-system deviate whose moments are
  the "tilde" moments ν̃₂₁ I, ν̃₃₁ I, 3ν̃₂₁²I² + ν̃₄₁ I of the pixel's ramp-fit weights
  at the measured rate I = gain · data_withsky (e/s), divided by the gain.
* **P…r** – Poisson noise re-sampled frame by frame around a sky level (e/frame =
  sky · gain · t_frame), propagated through the pixel's ramp-fit weights.
* **S<o>** – the order-o Legendre sky fit of the layer is subtracted.

Weights: a pixel whose last unsaturated resultant (``endslice``) is e uses the full
fit weights K if it never saturates, else the two-point weights between the first used
resultant and e (docs/ramp_fit/description.rst); pixels without a usable pair get no O/P noise.

Randomness comes from one `numpy.random.Generator` consumed layer by layer in order,
so a seed reproduces the cube exactly. The legacy tool draws from GalSim's
UniformDeviate: realisations follow the same model but differ draw by draw.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import ATOD_LIMIT, N_CHANNELS, REF_BORDER
from romanimpreprocess.noise.layers import NoiseLayer
from romanimpreprocess.noise.pearson import PEARSON_TYPES, pearson_deviates
from romanimpreprocess.utils.pink import channel_image, readout_pink

__all__ = [
    "IQR_TO_SIGMA",
    "NoiseInputs",
    "clip_layer",
    "endslice_rows",
    "increment_coefficients",
    "make_noise_cube",
    "poisson_layer",
    "pseudo_poisson_layer",
    "pseudo_poisson_moments",
    "read_noise_ramp",
    "sky_polynomial",
    "tilde_moments",
    "weight_table",
]

log = logging.getLogger(__name__)

IQR_TO_SIGMA = 1.34896  # interquartile range of a unit normal (legacy constant)
MIN_RATE = 0.01  # e/s, floor of the rate in the O layer (legacy)
GAIN_RANGE = (1e-4, 1e4)  # e/DN, gain clipping of the O and P layers (legacy)
# O and P layers draw pixel blocks of this size in raster order (bounded memory).
# Changing it changes which draw lands on which pixel, i.e. the cube for a seed.
CHUNK_PIXELS = 1 << 20


# ----------------------------------------------------------------------- weights
def weight_table(
    weights: NDArray, tbar: NDArray, *, start: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Ramp-fit weight vector for each possible last usable resultant.

    Row ``e`` holds the weights applied to a pixel whose last unsaturated resultant
    is ``e``: the full fit weights K for ``e = n − 1``; for ``start < e < n − 1`` the
    two-point slope between resultants ``start`` and ``e``:
    K[e] = 1/(tbar[e] − tbar[start]), K[start] = −K[e] (docs/ramp_fit/description.rst).

    Parameters
    ----------
    weights : ndarray, shape (n,)
        Full-ramp weights K (1/s), 0 for excluded resultants.
    tbar : ndarray, shape (n,)
        Mean read time of each resultant (s).
    start : int
        First resultant used by the fit (1 with EXCLUDE_FIRST, else 0).

    Returns
    -------
    table : ndarray, shape (n, n), float64
        Row e = weight vector; rows without a usable pair are zero.
    valid : ndarray of bool, shape (n,)
        Rows that hold weights (e > start).
    """
    weights = np.asarray(weights, dtype=np.float64)
    tbar = np.asarray(tbar, dtype=np.float64)
    n = weights.size
    if tbar.size != n:
        raise ValueError(f"weights have {n} entries but tbar has {tbar.size}")
    if not 0 <= start < n - 1:
        raise ValueError(f"start {start} leaves no pair of resultants among {n}")
    table = np.zeros((n, n), dtype=np.float64)
    valid = np.zeros(n, dtype=bool)
    table[n - 1] = weights
    valid[n - 1] = True
    for e in range(start + 1, n - 1):
        table[e, e] = 1.0 / (tbar[e] - tbar[start])
        table[e, start] = -table[e, e]
        valid[e] = True
    return table, valid


def endslice_rows(
    endslice: NDArray | None,
    valid: NDArray[np.bool_],
    shape: tuple[int, int],
    *,
    legacy_compat: bool = False,
) -> NDArray[np.int16]:
    """Row of `weight_table` used by each pixel, −1 for no noise.

    Parameters
    ----------
    endslice : ndarray of int, shape (sy, sx), or None
        Last unsaturated resultant, −1 if the pixel never saturates
        (``processinfo.endslice``); None = no pixel saturates.
    valid : ndarray of bool, shape (n,)
        From `weight_table`.
    shape : tuple
        Science-area shape (used when ``endslice`` is None).
    legacy_compat : bool
        Legacy mapping: ``endslice > 0`` selects row ``endslice``, anything else the
        full weights (so a pixel whose last good resultant is 0 counts as
        unsaturated, docs/noise/index.rst, differences from the legacy). Default: ``endslice ≥ 0`` selects its
        row and −1 the full weights.

    Returns
    -------
    ndarray of int16, shape (sy, sx)
    """
    n = valid.size
    if endslice is None:
        return np.full(shape, n - 1, dtype=np.int16)
    endslice = np.asarray(endslice).astype(np.int16)
    if endslice.shape != tuple(shape):
        raise ValueError(f"endslice shape {endslice.shape} differs from {shape}")
    if np.any(endslice >= n) or np.any(endslice < -1):
        raise ValueError(f"endslice values must lie in [-1, {n - 1}]")
    saturated = endslice > 0 if legacy_compat else endslice >= 0
    rows = np.where(saturated, endslice, np.int16(n - 1)).astype(np.int16)
    rows[~valid[rows]] = -1
    return rows


def increment_coefficients(
    table: NDArray[np.float64], read_pattern: Sequence[Sequence[int]]
) -> NDArray[np.float64]:
    """Coefficient of each frame-to-frame charge increment in the fitted slope.

    With L[β, f] = 1/N_β for the frames f of resultant β, the charge n_j collected
    between frames j−1 and j enters resultant β with weight T[β, j] = Σ_{f ≥ j}
    L[β, f], so a slope Σ_β K_β R_β is Σ_j c_j n_j with c = K·T (j ≥ 1; the charge
    before the first frame is common to all resultants and cancels, ΣK = 0).

    Parameters
    ----------
    table : ndarray, shape (nrow, n)
        Weight vectors (`weight_table`), 1/s.
    read_pattern : list of list of int
        Frame indices of each resultant.

    Returns
    -------
    ndarray, shape (nrow, nframes − 1), float64
        c[row, j − 1] for increments j = 1 … last frame, 1/s.
    """
    nframes = max(max(frames) for frames in read_pattern) + 1
    averaging = np.zeros((len(read_pattern), nframes), dtype=np.float64)
    for beta, frames in enumerate(read_pattern):
        averaging[beta, list(frames)] = 1.0 / len(frames)
    tail = np.cumsum(averaging[:, ::-1], axis=1)[:, ::-1]
    return np.asarray(table, dtype=np.float64) @ tail[:, 1:]


def tilde_moments(coefficients: NDArray[np.float64]) -> NDArray[np.float64]:
    """ν̃₂₁, ν̃₃₁, ν̃₄₁ of a linear estimator of Poisson increments.

    With ν_p = Σ_j c_j^p (c dimensionless, the estimate in the units of the Poisson
    mean): ν̃₂₁ = ν₂, ν̃₃₁ = ν₃ − 3ν₂², ν̃₄₁ = ν₄ − 10ν₂ν₃ + 15ν₂³ (the moments of the
    noise evaluated at the *measured* rather than the true intensity; legacy
    ``find_tilnus``, "Noise bias and debiasing in photometric surveys" eq. 32).

    Parameters
    ----------
    coefficients : ndarray, shape (..., nincr)

    Returns
    -------
    ndarray, shape (..., 3)
    """
    c = np.asarray(coefficients, dtype=np.float64)
    nu2 = np.sum(c**2, axis=-1)
    nu3 = np.sum(c**3, axis=-1)
    nu4 = np.sum(c**4, axis=-1)
    return np.stack(
        [nu2, nu3 - 3.0 * nu2**2, nu4 - 10.0 * nu2 * nu3 + 15.0 * nu2**3], axis=-1
    )


def pseudo_poisson_moments(
    coefficients: NDArray[np.float64], frame_time: float, *, legacy_compat: bool = False
) -> NDArray[np.float64]:
    """Per-e/s moment coefficients (A, B, C) of the O layer for each weight row.

    A deviate for a pixel at rate I (e/s) has μ₂ = A·I, μ₃ = B·I, μ₄ = 3μ₂² + C·I
    (e/s units). The tilde moments are defined for an estimate in the units of the
    Poisson mean, i.e. per-frame weights t_fr·c; converting back to e/s gives
    A = ν̃₂₁(t_fr c)/t_fr, B = ν̃₃₁(t_fr c)/t_fr², C = ν̃₄₁(t_fr c)/t_fr³.

    The legacy tool computes the tilde moments from the per-second weights c and
    multiplies by t_fr, t_fr², t_fr³: the same A, but B and C mix units
    (e.g. B = t_fr²ν₃ − 3t_fr²ν₂² instead of t_fr ν₃ − 3t_fr²ν₂²).
    ``legacy_compat=True`` reproduces that.

    Parameters
    ----------
    coefficients : ndarray, shape (nrow, nincr)
        `increment_coefficients` (1/s).
    frame_time : float
        Frame time t_fr (s).
    legacy_compat : bool
        Legacy scaling (see above).

    Returns
    -------
    ndarray, shape (nrow, 3), float64
    """
    c = np.asarray(coefficients, dtype=np.float64)
    if legacy_compat:
        return tilde_moments(c) * np.array([frame_time, frame_time**2, frame_time**3])
    scaled = tilde_moments(c * frame_time)
    return scaled / np.array([frame_time, frame_time**2, frame_time**3])


# ------------------------------------------------------------------ O and P layers
def _clipped_gain(gain):
    return np.clip(np.asarray(gain, dtype=np.float64), *GAIN_RANGE)


def pseudo_poisson_layer(
    rate: NDArray,
    gain: NDArray,
    moments: NDArray[np.float64],
    rows: NDArray[np.int16],
    rng: np.random.Generator,
    *,
    legacy_compat: bool = False,
) -> NDArray[np.float32]:
    """The O layer: a Pearson deviate per pixel with the pseudo-Poisson moments.

    Parameters
    ----------
    rate : ndarray, shape (sy, sx)
        Measured rate before sky subtraction (``data_withsky``, DN/s).
    gain : ndarray, shape (sy, sx)
        e/DN (clipped to [1e-4, 1e4]).
    moments : ndarray, shape (nrow, 3)
        `pseudo_poisson_moments`.
    rows : ndarray of int16, shape (sy, sx)
        `endslice_rows` (−1: no noise).
    rng : numpy.random.Generator
    legacy_compat : bool
        Inadmissible moments (β₂ < β₁ + 1) give 0 as in the legacy tool, instead of
        the two-point distribution.

    Returns
    -------
    ndarray of float32, shape (sy, sx)
        Deviates in DN/s (e/s divided by the gain). Non-finite rates get 0.
    """
    g = _clipped_gain(gain).ravel()
    rate_e = np.clip(np.asarray(rate, dtype=np.float64).ravel() * g, MIN_RATE, None)
    rows_flat = np.asarray(rows).ravel()
    out = np.zeros(rows_flat.size, dtype=np.float32)
    counts = np.zeros(len(PEARSON_TYPES), dtype=np.int64)
    for lo in range(0, rows_flat.size, CHUNK_PIXELS):
        part = slice(lo, lo + CHUNK_PIXELS)
        use = np.flatnonzero((rows_flat[part] >= 0) & np.isfinite(rate_e[part])) + lo
        coef = moments[rows_flat[use]]
        i_use = rate_e[use]
        mu2 = coef[:, 0] * i_use
        mu3 = coef[:, 1] * i_use
        mu4 = 3.0 * mu2**2 + coef[:, 2] * i_use
        deviates, types = pearson_deviates(
            mu2, mu3, mu4, rng, inadmissible="zero" if legacy_compat else "two-point"
        )
        counts += np.bincount(types, minlength=len(PEARSON_TYPES))
        out[use] = deviates / g[use]
    log.info(
        "O layer Pearson types: %s",
        ", ".join(f"{PEARSON_TYPES[k]} {c}" for k, c in enumerate(counts) if c),
    )
    return out.reshape(rows.shape)


def poisson_layer(
    sky: NDArray,
    gain: NDArray,
    coefficients: NDArray[np.float64],
    rows: NDArray[np.int16],
    frame_time: float,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """The P…r layer: frame-by-frame Poisson re-sampling through the fit weights.

    For each charge increment j (frame j−1 → j) a Poisson count with mean
    λ = max(sky · gain · t_fr, 0) electrons is drawn, its mean removed, and
    c_j(row) · (n_j − λ)/gain added (`increment_coefficients`). This equals the
    legacy procedure (cumulate, average into resultants, apply the weight vector of
    the pixel's endslice), linear algebra rearranged; the variance is
    sky · t_fr · Σ_j c_j² / gain.

    Parameters
    ----------
    sky : ndarray, shape (sy, sx)
        Sky level, DN/s.
    gain : ndarray, shape (sy, sx)
        e/DN (clipped to [1e-4, 1e4]).
    coefficients : ndarray, shape (nrow, nincr)
        `increment_coefficients` (1/s).
    rows : ndarray of int16, shape (sy, sx)
        `endslice_rows` (−1: no noise).
    frame_time : float
        s.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float32, shape (sy, sx), DN/s
    """
    g = _clipped_gain(gain).ravel()
    lam = np.asarray(sky, dtype=np.float64).ravel() * g * frame_time
    bad = ~np.isfinite(lam)
    if np.any(bad):
        log.warning("P layer: %d pixels with non-finite sky get no noise", bad.sum())
    lam = np.where(bad, 0.0, np.clip(lam, 0.0, None))
    rows_flat = np.asarray(rows).ravel()
    # The increment before the first read frame enters every resultant alike and
    # cancels (ΣK = 0): columns that are zero up to rounding are not drawn.
    # Increments with identical coefficients in every row (frames skipped by the
    # read pattern) are merged: a sum of Poisson counts is Poisson with the summed
    # mean.
    scale = np.max(np.abs(coefficients)) if coefficients.size else 0.0
    columns, multiplicity = [], []
    for j in range(coefficients.shape[1]):
        column = coefficients[:, j]
        if not np.any(np.abs(column) > 1e-6 * scale):
            continue
        for i, seen in enumerate(columns):
            if np.array_equal(seen, column):
                multiplicity[i] += 1
                break
        else:
            columns.append(column)
            multiplicity.append(1)
    out = np.zeros(rows_flat.size, dtype=np.float32)
    for lo in range(0, rows_flat.size, CHUNK_PIXELS):
        part = slice(lo, lo + CHUNK_PIXELS)
        use = np.flatnonzero(rows_flat[part] >= 0) + lo
        lam_use = lam[use]
        inv_g = 1.0 / g[use]
        row_use = rows_flat[use]
        acc = np.zeros(use.size, dtype=np.float64)
        for column, times in zip(columns, multiplicity, strict=True):
            mean = lam_use * times
            acc += column[row_use] * ((rng.poisson(mean) - mean) * inv_g)
        out[use] = acc
    return out.reshape(rows.shape)


# ------------------------------------------------------------------- read noise
def _to_uint16(values, *, truncate=False):
    values = np.asarray(values, dtype=np.float32)
    if not truncate:
        values = np.round(values)
    return np.clip(values, 0, ATOD_LIMIT).astype(np.uint16)


def read_noise_ramp(
    data: NDArray,
    amp33: NDArray | None,
    *,
    read_noise: NDArray,
    n_frames: Sequence[int],
    rng: np.random.Generator,
    reset_noise: NDArray | None = None,
    c_pink: float = 0.0,
    u_pink: float = 0.0,
    amp33_model: dict | None = None,
    border_base: NDArray | None = None,
    replace_amp33: bool = True,
    border: int = REF_BORDER,
    n_channels: int = N_CHANNELS,
) -> tuple[NDArray[np.uint16], NDArray[np.uint16] | None]:
    """Add a read-noise realisation to a raw ramp (legacy ``fill_in_refdata_and_1f``).

    Per resultant k (N_k frames):

    * every pixel gets white noise σ_read/√N_k;
    * reference-border pixels are ``border_base`` (default: ``data``) + that white
      noise + one reset-noise draw per pixel (σ_reset, common to all resultants);
    * the 1/f noise of the read-noise file (docs/reference_files.rst, "The 1/f noise
      of the read-noise file"; drawn by `romanimpreprocess.utils.pink`, the
      simulator's model): each channel gets (C_PINK · common + U_PINK · own)/√N_k in
      readout order, and with a valid amp33 model the reference output becomes
      (``med`` if ``replace_amp33`` else ``amp33``) + (σ_amp33 white + RU_PINK · own +
      M_PINK · C_PINK · common)/√N_k;
    * the result is rounded and clipped to [0, 65535] (once; the legacy tool rounds
      the active pixels twice).

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx)
        Raw (decoded) resultants, DN. Not modified.
    amp33 : ndarray, shape (n, ny, w) or None
        Raw reference output, DN. Not modified.
    read_noise : ndarray, shape (ny, nx)
        Single-frame read noise σ_read, DN.
    n_frames : sequence of int, length n
        Frames averaged in each resultant.
    rng : numpy.random.Generator
    reset_noise : ndarray, shape (ny, nx), optional
        Reset noise σ, DN (border only).
    c_pink, u_pink : float
        1/f amplitudes common to all channels and per channel (DN per unit log
        frequency).
    amp33_model : dict, optional
        ``valid``, ``med``, ``std`` (ny, w) and ``M_PINK``, ``RU_PINK``; ignored
        unless ``valid``.
    border_base : ndarray, shape (n, ny, nx), optional
        Noiseless values of the border pixels (legacy: the dark cube).
    replace_amp33 : bool
        Build amp33 from ``med`` (legacy) rather than adding noise to ``amp33``.
    border : int
        Reference-border width.
    n_channels : int
        Readout channels across the frame.

    Returns
    -------
    data : ndarray of uint16, shape (n, ny, nx)
    amp33 : ndarray of uint16 or None
    """
    nres, ny, nx = data.shape
    if nx % n_channels:
        raise ValueError(f"frame width {nx} does not divide into {n_channels} channels")
    width = nx // n_channels
    read_noise = np.asarray(read_noise, dtype=np.float32)
    model = amp33_model if amp33_model and amp33_model.get("valid", False) else None
    if model is not None and amp33 is None and not replace_amp33:
        raise ValueError("adding amp33 noise needs the amp33 cube")
    out = np.empty((nres, ny, nx), dtype=np.uint16)
    out_amp33 = None if amp33 is None else np.array(amp33, dtype=np.uint16)
    if model is not None:
        med = np.asarray(model["med"], dtype=np.float32)
        std = np.asarray(model["std"], dtype=np.float32)
        out_amp33 = np.empty((nres, *med.shape), dtype=np.uint16)
    inner = np.zeros((ny, nx), dtype=bool)
    inner[border : ny - border, border : nx - border] = True
    # The 1/f series are functions of the readout clock (romanimpreprocess.utils.pink):
    # channel pixel (row, col) and amp33 pixel (row, col) are read at the same time.
    w33 = out_amp33.shape[-1] if model is not None else 0
    reset = None
    if reset_noise is not None:
        reset = np.asarray(reset_noise, dtype=np.float32) * rng.standard_normal(
            (ny, nx), dtype=np.float32
        )
    for k in range(nres):
        root_n = np.float32(np.sqrt(n_frames[k]))
        frame = np.asarray(data[k], dtype=np.float32).copy()
        if border_base is not None:
            frame[~inner] = np.asarray(border_base[k], dtype=np.float32)[~inner]
        frame += read_noise * rng.standard_normal((ny, nx), dtype=np.float32) / root_n
        if reset is not None:
            frame[~inner] += reset[~inner]
        series = readout_pink(rng, ny, width, n_channels=n_channels, amp33_width=w33)
        frame += (channel_image(series, c_pink, u_pink) / root_n).astype(np.float32)
        out[k] = _to_uint16(frame)
        if model is not None:
            noise33 = (
                std * rng.standard_normal(med.shape, dtype=np.float32)
                + float(model.get("RU_PINK", 0.0)) * series.own33
                + float(model.get("M_PINK", 0.0)) * (c_pink * series.common[:, :w33])
            ) / root_n
            base33 = med if replace_amp33 else np.asarray(amp33[k], dtype=np.float32)
            out_amp33[k] = _to_uint16(base33 + noise33)
    return out, out_amp33


# ------------------------------------------------------------------- utilities
def clip_layer(layer: NDArray, k: float) -> NDArray[np.float32]:
    """Clip ``layer`` to median ± k · IQR/1.34896 (the ``z<k>`` option of R).

    Percentiles are numpy's (linear interpolation) over all pixels, as the legacy.
    """
    q25, q50, q75 = np.percentile(layer, [25, 50, 75])
    half = k * (q75 - q25) / IQR_TO_SIGMA
    return np.clip(layer, q50 - half, q50 + half).astype(np.float32)


def sky_polynomial(image: NDArray, order: int) -> NDArray:
    """Order-``order`` Legendre sky model of ``image`` (legacy ``medfit``, docs/sky/index.rst).

    Uses the sky step's `medfit` so the model is the one subtracted from the data.
    """
    from romanimpreprocess.sky import sky

    return sky.medfit(np.asarray(image), order=order)[1]


# ---------------------------------------------------------------- orchestration
@dataclass
class NoiseInputs:
    """Everything the layers read, as arrays (built by `NoiseStep`).

    Science-area arrays are (sy, sx); full-frame ones (ny, nx) with the border.
    Fields only some layers need may be None when no layer needs them.

    Attributes
    ----------
    data : ndarray (sy, sx)
        L2 ``data`` (reference of ``Ra`` layers).
    data_withsky : ndarray (sy, sx)
        L2 rate before sky subtraction (O and P layers).
    gain : ndarray (sy, sx)
        e/DN.
    read_pattern : list of list of int
    frame_time : float
    tbar : ndarray (n,)
    weights : ndarray (n,) or None
        Ramp-fit weights K (None after the likelihood fit: no O/P layers).
    start : int
        First resultant used by the fit.
    endslice : ndarray (sy, sx) or None
    l1_data, l1_amp33 : ndarray or None
        Decoded raw resultants (n, ny, nx) uint16 and amp33 (n, ny, w).
    dark : ndarray (n or n+1, ny, nx) or None
        Dark cube (noiseless raw ramp of the reference calibration).
    read_noise, reset_noise : ndarray (ny, nx) or None
    c_pink, u_pink : float
    amp33_model : dict or None
    calibrate : callable or None
        ``calibrate(data_uint16, amp33_uint16, *, reference=False) -> (sy, sx)``:
        L2 ``data`` of the raw ramp run through the same calibration as the
        exposure (``reference`` is True for the noiseless dark ramp).
    """

    data: NDArray | None = None
    data_withsky: NDArray | None = None
    gain: NDArray | None = None
    read_pattern: list = field(default_factory=list)
    frame_time: float = 0.0
    tbar: NDArray | None = None
    weights: NDArray | None = None
    start: int = 1
    endslice: NDArray | None = None
    l1_data: NDArray | None = None
    l1_amp33: NDArray | None = None
    dark: NDArray | None = None
    read_noise: NDArray | None = None
    reset_noise: NDArray | None = None
    c_pink: float = 0.0
    u_pink: float = 0.0
    amp33_model: dict | None = None
    calibrate: Callable | None = None


def _need(inputs, names, what):
    missing = [n for n in names if getattr(inputs, n) is None]
    if missing:
        raise ValueError(f"{what} needs {', '.join(missing)}, which is not available")


def _dark_ramp(inputs, *, legacy_compat):
    nres = inputs.l1_data.shape[0]
    dark = inputs.dark
    extra = dark.shape[0] - nres
    if extra not in (0, 1):
        raise ValueError(
            f"dark cube has {dark.shape[0]} planes for {nres} resultants: expected "
            f"{nres} or {nres + 1} (with the reference read)"
        )
    return _to_uint16(dark[extra:], truncate=legacy_compat), dark[extra:]


class _ReadNoise:
    """Builds R layers; the noiseless reference calibration is computed once."""

    def __init__(self, inputs, rng, legacy_compat, border, n_channels):
        self.inputs = inputs
        self.rng = rng
        self.legacy_compat = legacy_compat
        self.border = border
        self.n_channels = n_channels
        self._reference = None

    def _amp33_valid(self):
        model = self.inputs.amp33_model
        return bool(model and model.get("valid", False))

    def _dark_amp33(self):
        """amp33 of the noiseless reference ramp: ``med`` (valid model) or the L1's."""
        if self._amp33_valid() and not self.legacy_compat:
            med = _to_uint16(self.inputs.amp33_model["med"])
            return np.broadcast_to(med, (self.inputs.l1_data.shape[0], *med.shape))
        return self.inputs.l1_amp33

    def reference(self):
        if self._reference is None:
            dark16, _ = _dark_ramp(self.inputs, legacy_compat=self.legacy_compat)
            log.info("R layers: calibrating the noiseless reference (dark) ramp")
            self._reference = np.asarray(
                self.inputs.calibrate(
                    dark16, np.array(self._dark_amp33()), reference=True
                ),
                dtype=np.float32,
            )
        return self._reference

    def layer(self, add):
        inp = self.inputs
        n_frames = [len(frames) for frames in inp.read_pattern]
        common = {
            "read_noise": inp.read_noise,
            "n_frames": n_frames,
            "rng": self.rng,
            "reset_noise": inp.reset_noise,
            "c_pink": inp.c_pink,
            "u_pink": inp.u_pink,
            "amp33_model": inp.amp33_model,
            "border": self.border,
            "n_channels": self.n_channels,
        }
        if add:
            _need(inp, ("data",), "an 'Ra' layer")
            border_base = None
            if self.legacy_compat:
                _, border_base = _dark_ramp(inp, legacy_compat=True)
            else:
                # The exposure's border already carries its own reset offsets; a
                # second draw would widen their spread, and the reference-pixel
                # medians are noisier for a wider spread (docs/noise, "Variance"):
                # the layer would then hold more noise than the exposure has.
                common["reset_noise"] = None
            noisy, amp33 = read_noise_ramp(
                inp.l1_data,
                inp.l1_amp33,
                border_base=border_base,
                replace_amp33=self.legacy_compat,
                **common,
            )
            reference = np.asarray(inp.data, dtype=np.float32)
        else:
            reference = self.reference()
            dark16, _ = _dark_ramp(inp, legacy_compat=self.legacy_compat)
            noisy, amp33 = read_noise_ramp(
                dark16, np.array(self._dark_amp33()), replace_amp33=True, **common
            )
            del dark16
        result = np.asarray(inp.calibrate(noisy, amp33), dtype=np.float32)
        return result - reference


def make_noise_cube(
    layers: Sequence[NoiseLayer],
    inputs: NoiseInputs,
    rng: np.random.Generator,
    *,
    legacy_compat: bool = False,
    border: int = REF_BORDER,
    n_channels: int = N_CHANNELS,
) -> NDArray[np.float32]:
    """Build every layer (docs/noise/index.rst) in order from one random stream.

    Parameters
    ----------
    layers : sequence of NoiseLayer
        Parsed layer strings (`romanimpreprocess.noise.layers.parse_layers`).
    inputs : NoiseInputs
    rng : numpy.random.Generator
        Shared by all layers, consumed in layer order.
    legacy_compat : bool
        Reproduce the legacy model where it differs (weights mapping, O-layer
        units, reference amp33/border of R layers, inadmissible O moments).
    border : int
        Reference-border width of the raw frames.
    n_channels : int
        Readout channels.

    Returns
    -------
    ndarray of float32, shape (nlayer, sy, sx)
    """
    layers = list(layers)
    shape = None
    for candidate in (inputs.data, inputs.data_withsky, inputs.endslice):
        if candidate is not None:
            shape = np.shape(candidate)
            break
    if shape is None:
        raise ValueError("noise inputs carry no science-area image")
    cube = np.zeros((len(layers), *shape), dtype=np.float32)

    rows = coefficients = moments = None
    if any(layer.pseudo_poisson or layer.poisson_resample for layer in layers):
        if inputs.weights is None:
            raise ValueError(
                "O and P layers need the ramp-fit weights K (processinfo.weights); "
                "the likelihood ramp fit has none: use the optimal (legacy) fit"
            )
        _need(inputs, ("tbar", "gain", "data_withsky"), "O/P layers")
        table, valid = weight_table(inputs.weights, inputs.tbar, start=inputs.start)
        rows = endslice_rows(inputs.endslice, valid, shape, legacy_compat=legacy_compat)
        coefficients = increment_coefficients(table, inputs.read_pattern)
        moments = pseudo_poisson_moments(
            coefficients, inputs.frame_time, legacy_compat=legacy_compat
        )
    reader = None
    if any(layer.read for layer in layers):
        _need(
            inputs,
            ("l1_data", "read_noise", "calibrate", "dark"),
            "R layers",
        )
        reader = _ReadNoise(inputs, rng, legacy_compat, border, n_channels)

    for index, layer in enumerate(layers):
        log.info("Noise layer %d/%d: %r", index + 1, len(layers), layer.text)
        diff = np.zeros(shape, dtype=np.float32)
        if layer.read:
            diff = reader.layer(layer.read_add)
            if layer.read_clip is not None:
                diff = clip_layer(diff, layer.read_clip)
        if layer.pseudo_poisson:
            diff += pseudo_poisson_layer(
                inputs.data_withsky,
                inputs.gain,
                moments,
                rows,
                rng,
                legacy_compat=legacy_compat,
            )
        if layer.poisson:
            if layer.poisson_resample:
                if layer.poisson_sky_order is None:
                    sky = inputs.data_withsky
                else:
                    sky = sky_polynomial(inputs.data_withsky, layer.poisson_sky_order)
                diff += poisson_layer(
                    sky, inputs.gain, coefficients, rows, inputs.frame_time, rng
                )
            else:
                log.warning(
                    "Noise layer %r: 'P' without 'r' adds nothing (legacy)", layer.text
                )
        if layer.sky_order is not None:
            diff -= sky_polynomial(diff, layer.sky_order).astype(np.float32)
        cube[index] = diff
        log.info(
            "Noise layer %r: percentiles 5/50/95 = %s",
            layer.text,
            np.percentile(diff, [5, 50, 95]),
        )
    return cube
