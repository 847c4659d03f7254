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

The pieces live beside this module: the ramp-fit weights and moments of the O and P
layers in `romanimpreprocess.noise.weights`, the noisy raw ramps of the R layers in
`romanimpreprocess.noise.read_ramp`; here the layers are made and assembled into the
cube.

Randomness comes from one `numpy.random.Generator` consumed layer by layer in order,
so a seed reproduces the cube exactly. The legacy tool draws from GalSim's
UniformDeviate: realisations follow the same model but differ draw by draw.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import N_CHANNELS, REF_BORDER
from romanimpreprocess.noise.layers import NoiseLayer
from romanimpreprocess.noise.pearson import PEARSON_TYPES, pearson_deviates
from romanimpreprocess.noise.read_ramp import read_noise_ramp, to_uint16
from romanimpreprocess.noise.weights import (
    endslice_rows,
    increment_coefficients,
    pseudo_poisson_moments,
    weight_table,
)
from romanimpreprocess.utils.mapped import release_pages

__all__ = [
    "IQR_TO_SIGMA",
    "NoiseInputs",
    "clip_layer",
    "make_noise_cube",
    "poisson_layer",
    "pseudo_poisson_layer",
    "sky_polynomial",
]

log = logging.getLogger(__name__)

IQR_TO_SIGMA = 1.34896  # interquartile range of a unit normal (legacy constant)
MIN_RATE = 0.01  # e/s, floor of the rate in the O layer (legacy)
GAIN_RANGE = (1e-4, 1e4)  # e/DN, gain clipping of the O and P layers (legacy)
# O and P layers draw pixel blocks of this size in raster order (bounded memory).
# Changing it changes which draw lands on which pixel, i.e. the cube for a seed.
CHUNK_PIXELS = 1 << 20


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

    ``gain``, ``read_noise``, ``reset_noise`` and ``dark`` may be read-only
    memory-mapped arrays of the reference files: their pages are given back after
    each use (`romanimpreprocess.utils.mapped.release_pages`), so they are not
    resident while an R layer is calibrated (docs/noise/index.rst, "Memory").

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
    load_l1 : callable or None
        ``load_l1() -> (l1_data, l1_amp33)``, used by ``Ra`` layers when
        ``l1_data`` is None: the decoded resultants are then made when a layer
        needs them and not held in between.
    dark : ndarray (n or n+1, ny, nx) or None
        Dark cube (noiseless raw ramp of the reference calibration).
    read_noise, reset_noise : ndarray (ny, nx) or None
    c_pink, u_pink : float
    amp33_model : dict or None
    calibrate : callable or None
        ``calibrate(ramp, *, reference=False) -> (sy, sx)``: L2 ``data`` of the raw
        ramp ``ramp = [data_uint16, amp33_uint16]`` run through the same
        calibration as the exposure (``reference`` is True for the noiseless dark
        ramp). The list is handed over: the callable takes the arrays out of it
        (``data, amp33 = ramp; ramp.clear()``), so that no one else holds them
        while it runs.
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
    load_l1: Callable | None = None
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


def _dark_planes(inputs):
    """The planes of the dark cube that match the resultants (reference read dropped)."""
    nres = len(inputs.read_pattern)
    dark = inputs.dark
    extra = dark.shape[0] - nres
    if extra not in (0, 1):
        raise ValueError(
            f"dark cube has {dark.shape[0]} planes for {nres} resultants: expected "
            f"{nres} or {nres + 1} (with the reference read)"
        )
    return dark[extra:]


def _dark_ramp(inputs, *, legacy_compat):
    """The noiseless raw ramp of the R layers: the dark cube as uint16.

    Converted one plane at a time (a mapped dark cube's pages are given back plane
    by plane); the values are those of `to_uint16` on the whole cube.
    """
    planes = _dark_planes(inputs)
    ramp = np.empty(planes.shape, dtype=np.uint16)
    for k, plane in enumerate(planes):
        ramp[k] = to_uint16(plane, truncate=legacy_compat)
        release_pages(plane)
    return ramp


def _l1_arrays(inputs):
    """The decoded raw ramp (data, amp33): held, or made by ``load_l1``."""
    if inputs.l1_data is not None:
        return inputs.l1_data, inputs.l1_amp33
    return inputs.load_l1()


def _release(*arrays):
    """Give back the pages of memory-mapped inputs once a layer has read them."""
    for array in arrays:
        if array is not None:
            for plane in np.reshape(array, (-1, *np.shape(array)[-2:])):
                release_pages(plane)


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
            med = to_uint16(self.inputs.amp33_model["med"])
            return np.broadcast_to(med, (len(self.inputs.read_pattern), *med.shape))
        return self.inputs.l1_amp33

    def reference(self):
        if self._reference is None:
            ramp = [
                _dark_ramp(self.inputs, legacy_compat=self.legacy_compat),
                np.array(self._dark_amp33()),
            ]
            _release(self.inputs.dark)
            log.info("R layers: calibrating the noiseless reference (dark) ramp")
            self._reference = np.asarray(
                self.inputs.calibrate(ramp, reference=True), dtype=np.float32
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
                border_base = _dark_planes(inp)
            else:
                # The exposure's border already carries its own reset offsets; a
                # second draw would widen their spread, and the reference-pixel
                # medians are noisier for a wider spread (docs/noise, "Variance"):
                # the layer would then hold more noise than the exposure has.
                common["reset_noise"] = None
            l1_data, l1_amp33 = _l1_arrays(inp)
            noisy, amp33 = read_noise_ramp(
                l1_data,
                l1_amp33,
                border_base=border_base,
                replace_amp33=self.legacy_compat,
                **common,
            )
            del l1_data, l1_amp33, border_base
            reference = np.asarray(inp.data, dtype=np.float32)
        else:
            reference = self.reference()
            dark16 = _dark_ramp(inp, legacy_compat=self.legacy_compat)
            noisy, amp33 = read_noise_ramp(
                dark16, np.array(self._dark_amp33()), replace_amp33=True, **common
            )
            del dark16
        _release(inp.read_noise, inp.reset_noise, inp.dark)
        ramp = [noisy, amp33]
        del noisy, amp33
        result = np.asarray(inp.calibrate(ramp), dtype=np.float32)
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
        _need(inputs, ("read_noise", "calibrate", "dark"), "R layers")
        if inputs.load_l1 is None and any(layer.read_add for layer in layers):
            _need(inputs, ("l1_data",), "an 'Ra' layer")
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
        if layer.pseudo_poisson or layer.poisson:
            _release(inputs.gain)
        if layer.sky_order is not None:
            diff -= sky_polynomial(diff, layer.sky_order).astype(np.float32)
        cube[index] = diff
        log.info(
            "Noise layer %r: percentiles 5/50/95 = %s",
            layer.text,
            np.percentile(diff, [5, 50, 95]),
        )
    return cube
