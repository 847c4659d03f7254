"""Read-noise ramps of the R layers (docs/noise/index.rst): a raw ramp plus one
realisation of the read-noise file's noise (white, reset, 1/f in readout order and
the amp33 reference output; the 1/f model is `romanimpreprocess.utils.pink`).
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import ATOD_LIMIT, N_CHANNELS, REF_BORDER
from romanimpreprocess.utils.pink import channel_image, readout_pink

__all__ = ["read_noise_ramp", "to_uint16"]


def to_uint16(values, *, truncate=False):
    """Round (or truncate) and clip to the A-to-D range, as uint16."""
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
        out[k] = to_uint16(frame)
        if model is not None:
            noise33 = (
                std * rng.standard_normal(med.shape, dtype=np.float32)
                + float(model.get("RU_PINK", 0.0)) * series.own33
                + float(model.get("M_PINK", 0.0)) * (c_pink * series.common[:, :w33])
            ) / root_n
            base33 = med if replace_amp33 else np.asarray(amp33[k], dtype=np.float32)
            out_amp33[k] = to_uint16(base33 + noise33)
    return out, out_amp33
