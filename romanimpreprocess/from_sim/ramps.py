"""Pure-array parts of `sim_to_isim`: orientation of truth images and ramp building.

Orientation: a truth image is on the SCA's native grid; the detector (science) grid
is the image with its columns reversed for SCAs 3, 6, ..., 18 and its rows reversed
for the others. The TAN-SIP WCS is flipped with it: for a column flip ``x -> nx + 1
- x`` the intermediate pixel offset ``u`` changes sign, so the first CD column
changes sign, and the SIP terms ``A_p_q`` with even ``p`` and ``B_p_q`` with odd ``p``
change sign (``u + A(u, v)`` must become ``-(u' + A'(u', v'))`` with ``u' = -u``); the
inverse terms ``AP``/``BP`` follow ``A``/``B``. A row flip is the same with the roles
of ``u`` and ``v`` (and of ``p`` and ``q``) exchanged.

Ramps: charge (electrons) accumulates frame by frame from Poisson draws of the
electron rate; at a read the charge goes through the per-pixel IPC kernel, the gain
(to linear DN) and the inverse of the Legendre linearity of the calibration file,
solved per pixel by Newton's method: the raw signal ``S`` with ``Phi(S) = Phi(S_reset)
+ linear DN``, ``Phi`` the linearity the pipeline applies (linear continuation beyond
the fitted range included). Resultants are the means of their frames.
"""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.ipc.ipc import ipc_forward

ROW_BLOCK = 256  # rows per block of the Newton solution

__all__ = [
    "flip_axis",
    "flip_header",
    "invert_linearity",
    "linearity_and_slope",
    "orient_truth",
    "ramp_resultants",
]


def flip_axis(sca: int) -> int:
    """Array axis reversed for an SCA: 1 (columns) for 3, 6, ..., 18, else 0 (rows)."""
    return 1 if sca % 3 == 0 else 0


def flip_header(header, axis: int, size: int):
    """A copy of a TAN-SIP FITS header with pixel axis ``axis`` (0 = y) reversed.

    ``size`` is the number of pixels along that axis; CRPIX is 1-based (FITS).
    """
    out = header.copy()
    k = 2 if axis == 0 else 1  # FITS axis number of the flipped array axis
    out[f"CRPIX{k}"] = size + 1 - float(header[f"CRPIX{k}"])
    for i in (1, 2):
        key = f"CD{i}_{k}"
        if key in out:
            out[key] = -float(out[key])
        key = f"PC{i}_{k}"
        if key in out:
            out[key] = -float(out[key])
    # The flipped offset is the first SIP argument for k = 1 (u), the second for k = 2.
    for letter in ("A", "B", "AP", "BP"):
        order_key = f"{letter}_ORDER"
        if order_key not in out:
            continue
        order = int(out[order_key])
        # A/AP correct u: the term flips sign when the correction axis is the flipped
        # one (k = 1) and the monomial is even in the flipped variable, or when it is
        # the other axis and the monomial is odd in it.
        corrects_flipped = (letter in ("A", "AP")) == (k == 1)
        for p in range(order + 1):
            for q in range(order + 1 - p):
                key = f"{letter}_{p}_{q}"
                if key not in out:
                    continue
                power = p if k == 1 else q
                odd = power % 2 == 1
                if corrects_flipped != odd:
                    out[key] = -float(out[key])
    return out


def orient_truth(data: NDArray, header, sca: int):
    """``(data, header)`` on the detector grid (see the module docstring)."""
    axis = flip_axis(sca)
    flipped = np.flip(np.asarray(data), axis=axis)
    return np.ascontiguousarray(flipped), flip_header(header, axis, data.shape[axis])


def linearity_and_slope(signal, coeffs, smin, span):
    """``Phi(S)`` and ``dPhi/dS`` (float64) of the Legendre linearity.

    ``Phi = sum_l C_l P_l(z)``, ``z = -1 + 2 (S - Smin) / span``, continued linearly
    (value and slope at ``z = +-1``) beyond ``|z| = 1``, as the pipeline evaluates it.
    """
    z = -1.0 + 2.0 * (np.asarray(signal, np.float64) - smin) / span
    zc = np.clip(z, -1.0, 1.0)
    p_prev = np.ones_like(zc)
    p_cur = zc.copy()
    d_prev = np.zeros_like(zc)
    d_cur = np.ones_like(zc)
    phi = np.array(coeffs[0], dtype=np.float64)
    dphi = np.zeros_like(zc)
    nterms = coeffs.shape[0]
    for ell in range(1, nterms):
        c = np.asarray(coeffs[ell], dtype=np.float64)
        phi += c * p_cur
        dphi += c * d_cur
        if ell + 1 < nterms:
            p_next = ((2 * ell + 1) * zc * p_cur - ell * p_prev) / (ell + 1)
            d_next = d_prev + (2 * ell + 1) * p_cur
            p_prev, p_cur = p_cur, p_next
            d_prev, d_cur = d_cur, d_next
    phi += dphi * (z - zc)
    return phi, dphi * (2.0 / span)


def invert_linearity(target, coeffs, smin, span, guess, *, iterations=3):
    """Raw signal ``S`` with ``Phi(S) = target`` (Newton's method from ``guess``)."""
    s = np.array(guess, dtype=np.float64)
    for _ in range(iterations):
        phi, slope = linearity_and_slope(s, coeffs, smin, span)
        # A flat or falling Phi (bad calibration) does not move the pixel.
        step = np.divide(
            phi - target, slope, out=np.zeros_like(phi), where=slope > 1e-6
        )
        s -= step
    return s


def ramp_resultants(
    rate_e: NDArray,
    read_pattern,
    frame_time: float,
    *,
    gain: NDArray,
    coeffs: NDArray,
    smin: NDArray,
    smax: NDArray,
    s_reset: NDArray,
    rng: np.random.Generator,
    kernel: NDArray | None = None,
    start_charge: NDArray | None = None,
) -> NDArray[np.float32]:
    """Noiseless-readout resultants (raw DN, float32) of the science area.

    Parameters
    ----------
    rate_e : ndarray, shape (ny, nx)
        Electron rate per pixel (signal, sky and dark), e/s; Poisson-sampled per frame.
    read_pattern : list of list of int
        Frames of each resultant; frame ``k`` is read ``k * frame_time`` after the
        reset, frame 0 being the reset read itself.
    gain : ndarray, shape (ny, nx)
        e/DN.
    coeffs, smin, smax : ndarray
        Legendre linearity (``(p+1, ny, nx)``) and its fitted range, DN_raw.
    s_reset : ndarray, shape (ny, nx)
        Raw level right after the reset (reference level plus reset noise), DN_raw.
    kernel : ndarray, shape (3, 3, ny, nx), optional
        IPC kernel applied to the charge at every read.
    start_charge : ndarray, shape (ny, nx), optional
        Charge at the reset, electrons (e.g. the dark offset of a bias correction).
    """
    ny, nx = rate_e.shape
    which = {f: i for i, frames in enumerate(read_pattern) for f in frames}
    last = max(which)
    sums = np.zeros((len(read_pattern), ny, nx), dtype=np.float32)
    sizes = np.array([len(frames) for frames in read_pattern], dtype=np.float32)
    lam = np.clip(np.asarray(rate_e, np.float64), 0.0, None) * frame_time
    charge = np.zeros((ny, nx), dtype=np.float64)
    if start_charge is not None:
        charge += start_charge
    smin = np.asarray(smin, np.float64)
    span = np.asarray(smax, np.float64) - smin
    gain = np.asarray(gain, np.float64)
    phi_reset, _ = linearity_and_slope(s_reset, coeffs, smin, span)
    signal = np.array(s_reset, dtype=np.float64)
    for frame in range(last + 1):
        if frame:
            charge += rng.poisson(lam)
        if frame not in which:
            continue
        collected = charge if kernel is None else ipc_forward(charge, kernel)
        target = phi_reset + collected / gain
        del collected
        # Newton in blocks of rows (the temporaries stay small); warm start from the
        # previous read: the signal moves little between reads.
        for r0 in range(0, ny, ROW_BLOCK):
            rows = slice(r0, r0 + ROW_BLOCK)
            signal[rows] = invert_linearity(
                target[rows],
                coeffs[:, rows],
                smin[rows],
                span[rows],
                signal[rows],
                iterations=4 if frame == 0 else 3,
            )
        sums[which[frame]] += signal.astype(np.float32)
    sums /= sizes[:, None, None]
    return sums
