"""Row bands of a ramp: how the ramp steps run on part of the frame (docs/running.rst).

A ramp step splits its work into a whole-frame preparation (``step.band_plan(model)``:
references, statistics of the reference rows, metadata) and a per-band application
(``plan.apply(band)``) that changes only the band's arrays, then ``plan.finish(model)``
(log counts, ``processinfo``, ``cal_step``). ``process()`` is the preparation, one
band of the whole frame and the finish, so a step run alone is the same as before,
and the pipeline can run every ramp step on a band of rows (plus ``halo`` rows of
context on each side) before the next band, without the whole cube in memory.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Band", "BandPlan", "is_placeholder"]


@dataclass
class Band:
    """Frame rows ``rows`` of a ramp: what a `BandPlan` works on.

    Attributes
    ----------
    data : ndarray, shape (n, h, nx), float32
        Resultants of the rows (modified in place by the steps).
    groupdq : ndarray, shape (n, h, nx), uint8
        Group flags of the rows.
    pixeldq : ndarray, shape (h, nx), uint32
        Pixel flags of the rows.
    amp33 : ndarray, shape (n, h, 128)
        The amp33 block of the rows.
    rows : slice
        Frame rows held (``start``, ``stop``).
    inner : slice
        Frame rows whose results are kept (``rows`` less the halo, except at the
        frame edges); the rows outside are context only.
    ny : int
        Rows of the whole frame.
    """

    data: np.ndarray
    groupdq: np.ndarray
    pixeldq: np.ndarray
    amp33: np.ndarray
    rows: slice
    inner: slice
    ny: int

    @classmethod
    def whole(cls, model):
        """The whole frame of a `RampModel` as one band (views of its arrays)."""
        ny = model.data.shape[1]
        return cls(
            data=model.data,
            groupdq=model.groupdq,
            pixeldq=model.pixeldq,
            amp33=model.amp33,
            rows=slice(0, ny),
            inner=slice(0, ny),
            ny=ny,
        )

    def local(self, frame_rows: slice) -> slice:
        """Band-local slice of frame rows ``frame_rows`` (clipped to the band)."""
        start = max(frame_rows.start, self.rows.start)
        stop = max(min(frame_rows.stop, self.rows.stop), start)
        return slice(start - self.rows.start, stop - self.rows.start)

    @property
    def inner_local(self) -> slice:
        """Band-local slice of the kept rows."""
        return self.local(self.inner)

    @property
    def last(self) -> bool:
        """True for the band that reaches the frame's last row (the pipeline's last).

        A plan lets its band-to-band buffers go after it: the plans live until the
        finish of every ramp step, past the ramp fit of the last band, where a long
        ramp's run has its peak.
        """
        return self.rows.stop >= self.ny


@dataclass
class BandPlan:
    """A ramp step's work, prepared on the whole frame, to apply band by band.

    Subclasses set ``halo`` (rows of context a band needs on each side for its kept
    rows to be exact) and override `apply` and `finish`. ``counts`` sums what the
    bands report for the log.
    """

    halo: int = 0
    counts: dict = field(default_factory=dict)

    def apply(self, band: Band) -> None:
        """Do the step's work on ``band`` in place."""

    def finish(self, model):
        """Log, record metadata on ``model`` (the whole ramp); return the model."""
        return model

    def close(self) -> None:
        """End work the plan still has in flight (a run that stops early).

        `finish` does it for a run that completes; a second call does nothing.
        """

    def count(self, key: str, value: int) -> None:
        """Add ``value`` to ``counts[key]`` (kept rows only, by the caller)."""
        self.counts[key] = self.counts.get(key, 0) + int(value)


def is_placeholder(array) -> bool:
    """Whether ``array`` is the zero-stride stand-in of a cube not held in memory.

    (`romanimpreprocess.datamodels.l1.ramp_skeleton`: the pipeline decodes such a
    cube band by band.)
    """
    array = np.asarray(array)
    return array.size > 1 and not any(array.strides)
