"""The 1/f read noise of the readout: one model for the simulator, the noise step and
the error of the ramp fit (docs/reference_files.rst, section "The 1/f noise of the
read-noise file", which says what ``C_PINK``, ``U_PINK``, ``M_PINK``, ``RU_PINK`` mean).

The noise is a function of the readout clock. Every output (the 32 channels and the
reference output amp33) reads one pixel per clock, row after row; a row takes
``row_clocks = max(channel width, amp33 width)`` clocks (the full frame: 128 for
both; a narrower simulated frame keeps amp33's 128 columns, so its channels read the
first ``width`` clocks of each row). Within one frame:

* channel pixel ``(y, c)`` in readout order (odd channels are read right to left, so
  column ``x`` of channel ``ch`` is ``c = x - ch·width``, or ``width - 1 - c`` for odd
  ``ch``) is read at clock ``t = y·row_clocks + c`` and carries
  ``C_PINK·p(t) + U_PINK·u_ch(t)``;
* amp33 pixel ``(y, j)`` is read at ``t = y·row_clocks + j`` and carries
  ``M_PINK·C_PINK·p(t) + RU_PINK·u_33(t)`` (plus its white noise);
* ``p``, ``u_ch``, ``u_33`` are independent unit 1/f series (`unit_pink`): one-sided
  power spectral density ``1/f`` (f in cycles per clock, up to 1/2), i.e. unit
  variance per e-fold of frequency;
* every frame has its own draw, so a resultant of N frames carries the amplitudes
  divided by √N.

`structure_function` is the closed form of the model's second moments used by the
ramp fit's error (`romanimpreprocess.refpix.refpix.residual_row_variance`).
"""

import os

import numpy as np
import scipy.fft
from numpy.typing import NDArray
from scipy.special import sici

__all__ = [
    "EULER_GAMMA",
    "ReadoutPink",
    "channel_image",
    "readout_pink",
    "row_clocks",
    "structure_function",
    "unit_pink",
]

EULER_GAMMA = 0.5772156649015329
SERIES_PER_CHUNK = 8
FFT_WORKERS = max(1, min(os.cpu_count() or 1, 4))


def unit_pink(
    n: int, rng: np.random.Generator, count: int | None = None, dtype=np.float64
) -> NDArray:
    """Unit 1/f series of ``n`` samples: PSD 1/f, unit variance per e-fold.

    Each series is generated over 2n samples (frequencies k/(2n), k = 1 … n, complex
    amplitude ∝ k^(−½) with random phases) and truncated to its first n, so it is not
    periodic; its mean is removed. The variance of a sample is Σ_{k=1}^{n} 1/k ≈
    ln n + 0.58 less the removed mean's share.

    Parameters
    ----------
    n : int
        Samples per series.
    rng : numpy.random.Generator
        Draws ``2n`` normals per series (real parts, then imaginary parts), series after
        series: ``count`` series consume the stream exactly as ``count`` calls.
    count : int, optional
        Number of independent series (None: one, returned 1-D).
    dtype : numpy dtype
        float64 (the noise step) or float32 (the simulator: half the memory and
        faster draws and transforms; a different stream for the same seed).

    Returns
    -------
    ndarray, shape (n,) or (count, n), of ``dtype``
    """
    dtype = np.dtype(dtype)
    total = 1 if count is None else int(count)
    out = np.empty((total, n), dtype=dtype)
    scale = 0.5 * (2 * n) / np.sqrt(np.arange(1, n + 1, dtype=np.float64))
    scale = scale.astype(dtype)
    # A few series at a time bound the temporaries (normals, spectrum, 2n-sample
    # transform: ~5x the output); consecutive chunks draw the stream in order.
    step = max(1, min(total, SERIES_PER_CHUNK))
    for lo in range(0, total, step):
        hi = min(lo + step, total)
        out[lo:hi] = _unit_pink_chunk(n, rng, hi - lo, scale, dtype)
    return out[0] if count is None else out


def _unit_pink_chunk(n, rng, count, scale, dtype):
    m = 2 * n
    normals = rng.standard_normal((count, 2, n), dtype=dtype)
    spectrum = np.zeros((count, n + 1), dtype=np.result_type(dtype, np.complex64))
    spectrum[:, 1:].real = normals[:, 0] * scale
    spectrum[:, 1:].imag = normals[:, 1] * -scale
    del normals
    # irfft keeps only the real part of the Nyquist term: give it the full variance.
    spectrum[:, n] = spectrum[:, n].real * 2
    if dtype == np.float64:
        series = np.fft.irfft(spectrum, m, axis=-1)[:, :n]
    else:  # the simulator's float32 path: scipy's transform runs on both cores
        series = scipy.fft.irfft(spectrum, m, axis=-1, workers=FFT_WORKERS)[:, :n]
    del spectrum
    series -= series.mean(axis=-1, keepdims=True)
    return series


def row_clocks(width: int, amp33_width: int = 0) -> int:
    """Clocks per row: the widest output (channel or amp33) sets the row time."""
    return max(int(width), int(amp33_width))


class ReadoutPink:
    """Unit 1/f series of one frame in readout order (`readout_pink`).

    Attributes
    ----------
    common : ndarray, shape (ny, row_clocks)
        ``p(t)``, shared by every channel and amp33 (clock ``y·row_clocks + c``).
    own : ndarray, shape (n_channels, ny, width)
        ``u_ch(t)`` of each channel at its read clocks.
    own33 : ndarray, shape (ny, amp33_width) or None
        ``u_33(t)`` of amp33.
    """

    def __init__(self, common, own, own33):
        self.common = common
        self.own = own
        self.own33 = own33


def readout_pink(
    rng: np.random.Generator,
    ny: int,
    width: int,
    *,
    n_channels: int,
    amp33_width: int = 0,
    dtype=np.float64,
) -> ReadoutPink:
    """Draw the unit 1/f series of one frame: common, each channel's, amp33's own.

    Draw order (fixes the stream): the common series, then one per channel, then
    amp33's own when ``amp33_width`` > 0; each of ``ny·row_clocks`` samples (clock
    ``y·row_clocks + c``), of which a channel keeps its first ``width`` per row and
    amp33 its first ``amp33_width``.

    Parameters
    ----------
    rng : numpy.random.Generator
    ny : int
        Rows of the frame.
    width : int
        Columns per channel.
    n_channels : int
        Readout channels.
    amp33_width : int
        Columns of amp33; 0 = no amp33 series.
    dtype : numpy dtype
        See `unit_pink`.

    Returns
    -------
    ReadoutPink
    """
    clocks = row_clocks(width, amp33_width)
    common = unit_pink(ny * clocks, rng, dtype=dtype).reshape(ny, clocks)
    own = unit_pink(ny * clocks, rng, count=n_channels, dtype=dtype)
    own = own.reshape(n_channels, ny, clocks)
    if width < clocks:  # a narrow frame's channel idles while amp33 reads on
        own = np.ascontiguousarray(own[:, :, :width])
    own33 = None
    if amp33_width:
        own33 = unit_pink(ny * clocks, rng, dtype=dtype).reshape(ny, clocks)
        own33 = np.ascontiguousarray(own33[:, :amp33_width])
    return ReadoutPink(common, own, own33)


def channel_image(
    series: ReadoutPink, c_pink: float, u_pink: float, *, out: NDArray | None = None
) -> NDArray:
    """The 1/f noise of the channels as an image: ``C·p + U·u_ch``, odd channels mirrored.

    Parameters
    ----------
    series : ReadoutPink
    c_pink, u_pink : float
        Amplitudes (DN, one frame).
    out : ndarray, shape (ny, n_channels·width), optional
        Written in place (its dtype is kept).

    Returns
    -------
    ndarray, shape (ny, n_channels·width)
    """
    n_channels, ny, width = series.own.shape
    if out is None:
        out = np.empty((ny, n_channels * width), dtype=series.own.dtype)
    common = c_pink * series.common[:, :width]
    for ch in range(n_channels):
        block = common + u_pink * series.own[ch]
        if ch % 2:
            block = block[:, ::-1]
        out[:, ch * width : (ch + 1) * width] = block
    return out


def structure_function(lag: NDArray) -> NDArray[np.float64]:
    """``D(τ) = E[(p(t + τ) − p(t))²]`` of a unit 1/f series, τ in clocks.

    For the one-sided spectrum ``S(f) = 1/f`` on ``(0, 1/2]``:
    ``D(τ) = 2 ∫ (1 − cos 2πfτ) / f df = 2 (γ + ln πτ − Ci(πτ))``, D(0) = 0. It
    does not depend on the lowest frequency of the series, so any combination of
    samples whose weights sum to zero has the variance ``−½ Σ_ij a_i a_j D(t_i − t_j)``
    whatever the length of the series (the generator's cut at 1/(2n) and its mean
    removal change it by O(τ/n)).
    """
    tau = np.abs(np.asarray(lag, dtype=np.float64))
    out = np.zeros_like(tau)
    pos = tau > 0
    x = np.pi * tau[pos]
    out[pos] = 2.0 * (EULER_GAMMA + np.log(x) - sici(x)[1])
    return out
