"""Independent ramp simulator for the ramp-fit tests (frame level, known truth).

Each frame ``k`` of a pixel is read at ``k * frame_time`` after the reset; the charge
collected between two frames is Poisson(flux * gain * frame_time) electrons; every read
adds Gaussian read noise. A resultant is the mean of the frames listed in the read
pattern. Nothing here uses the code under test.
"""

import numpy as np

SURVEY_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]
FRAME_TIME = 3.04
GAIN = 1.5
SIGMA_READ = 7.0


def times(read_pattern, frame_time=FRAME_TIME):
    """tbar, tau, N written out from their definitions (docs/ramp_fit/description.rst, Resultant times)."""
    n = np.array([len(r) for r in read_pattern], dtype=np.float64)
    tbar = np.array([np.mean(r) for r in read_pattern]) * frame_time
    # tau = (1/N²) Σ_{a,b} min(t_a, t_b): the variance-weighted time of the mean.
    tau = (
        np.array(
            [
                np.mean(np.minimum.outer(np.array(r, float), np.array(r, float)))
                for r in read_pattern
            ]
        )
        * frame_time
    )
    return tbar, tau, n.astype(int)


def simulate(
    flux,
    rng,
    *,
    read_pattern=SURVEY_PATTERN,
    frame_time=FRAME_TIME,
    gain=GAIN,
    sigma_read=SIGMA_READ,
    bias=1000.0,
    jump=None,
    jump_frame=None,
):
    """Resultants (n, npix) float64 for per-pixel fluxes (DN/s).

    Parameters
    ----------
    flux : ndarray, shape (npix,)
        True count rate, DN/s.
    rng : numpy.random.Generator
    jump, jump_frame : ndarray or None
        Optional jump of ``jump`` DN added to every frame ``>= jump_frame`` (per pixel).
    """
    flux = np.asarray(flux, dtype=np.float64)
    nframes = max(max(r) for r in read_pattern) + 1
    npix = flux.size
    electrons = rng.poisson(
        np.broadcast_to(flux * gain * frame_time, (nframes - 1, npix))
    )
    signal = np.zeros((nframes, npix))
    signal[1:] = np.cumsum(electrons, axis=0) / gain
    if jump is not None:
        k = np.arange(nframes)[:, None]
        signal += np.where(k >= np.asarray(jump_frame)[None, :], jump[None, :], 0.0)
    frames = signal + bias + rng.normal(0.0, sigma_read, (nframes, npix))
    return np.stack([frames[r].mean(axis=0) for r in read_pattern])


def to_cube(resultants, shape, border=4, fill=1000.0):
    """Embed (n, npix) resultants into a full-frame cube with a reference border."""
    n = resultants.shape[0]
    sy, sx = shape
    cube = np.full((n, sy + 2 * border, sx + 2 * border), fill, np.float32)
    cube[:, border:-border, border:-border] = resultants.reshape(n, sy, sx)
    return cube
