"""Detector geometry of an exposure and the resultant timing derived from its meta."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER

__all__ = ["Geometry", "resultant_times"]


@dataclass(frozen=True)
class Geometry:
    """Shape of an exposure: full frame including the reference border.

    Attributes
    ----------
    nresultants : int
        Number of resultants in the (decoded) ramp.
    ny, nx : int
        Full-frame size in pixels, reference border included.
    border : int
        Width of the reference-pixel border on every side.
    """

    nresultants: int
    ny: int
    nx: int
    border: int = REF_BORDER

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Full-frame image shape ``(ny, nx)``."""
        return (self.ny, self.nx)

    @property
    def science_shape(self) -> tuple[int, int]:
        """Shape of the science (active) area, border removed."""
        return (self.ny - 2 * self.border, self.nx - 2 * self.border)

    @property
    def science_slice(self) -> tuple[slice, slice]:
        """Index of the science area inside a full frame."""
        b = self.border
        return (slice(b, self.ny - b), slice(b, self.nx - b))

    @property
    def amp33_shape(self) -> tuple[int, int, int]:
        """Shape of the reference-output cube ``(nresultants, ny, 128)``."""
        return (self.nresultants, self.ny, AMP33_WIDTH)

    @property
    def channel_width(self) -> int:
        """Columns per readout channel."""
        return self.nx // N_CHANNELS

    @classmethod
    def from_model(cls, model) -> "Geometry":
        """Geometry of a ramp (3-D data) or image (2-D data, science area) model."""
        shape = model.data.shape
        if len(shape) == 3:
            return cls(nresultants=shape[0], ny=shape[1], nx=shape[2])
        nres = len(model.meta.exposure.read_pattern)
        return cls(
            nresultants=nres, ny=shape[0] + 2 * REF_BORDER, nx=shape[1] + 2 * REF_BORDER
        )


def resultant_times(
    read_pattern, frame_time: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Mean read time, variance-weighted time and frame count of each resultant.

    Frame index ``k`` is read at ``k * frame_time`` after the reset; each resultant is
    the mean of the contiguous frames listed in ``read_pattern`` (docs/dq_init/index.rst).

    Parameters
    ----------
    read_pattern : list of list of int
        Frame indices averaged into each resultant.
    frame_time : float
        Time between frame reads, seconds.

    Returns
    -------
    tbar : ndarray, shape (nresultants,), float64
        Mean read time, ``(t0 + (N - 1)/2) * frame_time``.
    tau : ndarray, shape (nresultants,), float64
        Casertano et al. (2022) variance-weighted time,
        ``(t0 + (N - 1)(2N - 1)/(6N)) * frame_time``.
    n_frames : ndarray, shape (nresultants,), int64
        Number of frames ``N`` in each resultant.
    """
    first = np.array([frames[0] for frames in read_pattern], dtype=np.float64)
    n_frames = np.array([len(frames) for frames in read_pattern], dtype=np.int64)
    tbar = (first + (n_frames - 1) / 2.0) * frame_time
    tau = (first + (n_frames - 1) * (2 * n_frames - 1) / (6.0 * n_frames)) * frame_time
    return tbar, tau, n_frames
