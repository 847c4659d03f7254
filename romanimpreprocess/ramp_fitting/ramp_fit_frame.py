"""Frame bookkeeping shared by the default and the legacy fixed-weight ramp fits.

`ramp_fit.fit_ramps` (default) and `ramp_fit_legacy.fit_ramps_legacy`
(``legacy_compat``) walk the science area the same way (docs/ramp_fit/description.rst,
computation): blocks of rows whose ordinary pixels one matrix product fits, then the
few *special* pixels gathered and fitted per usage pattern. This module holds what the
two share: the result and plan types, the block walk, the group-flag summary, the
significance of the jump tests, and `FrameFit`, which collects the outputs and builds
the `RampFitResult`.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.ramp_fitting.jumps import JumpTests

__all__ = [
    "BLOCK_PIXELS",
    "GAIN_CLIP",
    "MAX_ENDSLICE_RESULTANTS",
    "Block",
    "FrameFit",
    "RampFitResult",
    "SlopePlan",
    "SpecialInputs",
    "check_shapes",
    "end_slices",
    "row_blocks",
    "saturation_and_dnu_flags",
    "significance",
]

BLOCK_PIXELS = 2**16  # pixels per block of rows (0.5 MB per float64 plane)
GAIN_CLIP = (1e-4, 1e4)  # e/DN, clip of the gain in the Poisson variance (legacy)
MAX_ENDSLICE_RESULTANTS = 128  # endslice is int8 (legacy SLICEOUT limit)

SAT = np.uint8(group.SATURATED)
DNU = np.uint8(group.DO_NOT_USE)
P_SAT = np.uint32(pixel.SATURATED)
P_DNU = np.uint32(pixel.DO_NOT_USE)
P_JUMP = np.uint32(pixel.JUMP_DET)
P_REF = np.uint32(pixel.REFERENCE_PIXEL)


@dataclass
class RampFitResult:
    """Output of `ramp_fit.fit_ramps` for the science area (border removed).

    Attributes
    ----------
    slope : ndarray, shape (sy, sx), float32
        Count rate, DN/s (NaN where not determined, default mode).
    var_poisson, var_rnoise : ndarray, shape (sy, sx), float32
        Poisson and read-noise variance of the slope, DN²/s².
    dq : ndarray, shape (sy, sx), uint32
        Input pixel flags with the fit's flags OR-ed in (not where REFERENCE_PIXEL).
    weights : ndarray, shape (n,)
        Full-ramp weights K (float32 in legacy mode, as stored by the legacy).
    jumps : ndarray of int, shape (k, 3)
        ``(resultant, y, x)`` of every JUMP_DET set by the fit (science coordinates).
    endslice : ndarray of int8, shape (sy, sx), or None
        Last unsaturated resultant, -1 if none saturates (None for >= 128 resultants).
    counts : dict
        Diagnostics: pixels fitted per kind (``full``, ``two_point``, ``segments``,
        ``no_slope``, ``jump``).
    """

    slope: NDArray[np.float32]
    var_poisson: NDArray[np.float32]
    var_rnoise: NDArray[np.float32]
    dq: NDArray[np.uint32]
    weights: NDArray
    jumps: NDArray[np.intp]
    endslice: NDArray[np.int8] | None
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SlopePlan:
    """Slope weights, their variance coefficients and the jump tests of a pattern.

    Attributes
    ----------
    slope : ndarray, shape (n,), float64, or None
        Slope weights (None when the pattern determines no slope).
    coef_poisson, coef_read : float
        Variance coefficients of the slope (`optimal_weights.
        slope_variance_coefficients`).
    tests : JumpTests
        The jump tests of the pattern.
    kind : str
        ``full``, ``two_point``, ``segments`` or ``no_slope`` (`RampFitResult.counts`).
    """

    slope: NDArray[np.float64] | None
    coef_poisson: float
    coef_read: float
    tests: JumpTests
    kind: str


@dataclass(frozen=True)
class Block:
    """One block of rows of the science area, flattened to pixels (columns).

    Attributes
    ----------
    rows : slice
        Science rows of the block.
    offset : int
        Flat science index of the block's first pixel.
    d : ndarray, shape (n, m), float64
        Resultants.
    gq : ndarray, shape (n, m), uint8
        Group flags.
    gain : ndarray, shape (m,), float64
        Gain clipped to `GAIN_CLIP`.
    read_noise : ndarray, shape (m,), float64
        Single-read noise, DN.
    """

    rows: slice
    offset: int
    d: NDArray[np.float64]
    gq: NDArray[np.uint8]
    gain: NDArray[np.float64]
    read_noise: NDArray[np.float64]


def check_shapes(data: NDArray, groupdq: NDArray, pixeldq: NDArray) -> None:
    """Raise ValueError unless the group and pixel flags match the data's shape.

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx)
        Resultants.
    groupdq : ndarray
        Group flags, shape (n, ny, nx).
    pixeldq : ndarray
        Pixel flags, shape (ny, nx).
    """
    if groupdq.shape != data.shape or pixeldq.shape != data.shape[1:]:
        raise ValueError(
            f"groupdq {groupdq.shape} / pixeldq {pixeldq.shape} do not match data "
            f"{data.shape}"
        )


def _as_block(array, ysl, xsl, dtype):
    return np.asarray(array[ysl, xsl], dtype=dtype).ravel()


def row_blocks(data, groupdq, gain, read_noise, border) -> Iterator[Block]:
    """The science area in blocks of about `BLOCK_PIXELS` pixels (whole rows).

    Parameters
    ----------
    data, groupdq : ndarray, shape (n, ny, nx)
        Resultants and group flags, full frame.
    gain, read_noise : ndarray, shape (ny, nx)
        Gain (e/DN) and single-read noise (DN), full frame.
    border : int
        Width of the reference border (left out).

    Yields
    ------
    Block
    """
    n, ny, nx = data.shape
    sy, sx = ny - 2 * border, nx - 2 * border
    rows = max(1, BLOCK_PIXELS // max(sx, 1))
    for r0 in range(0, sy, rows):
        r1 = min(sy, r0 + rows)
        ysl, xsl = slice(border + r0, border + r1), slice(border, border + sx)
        yield Block(
            rows=slice(r0, r1),
            offset=r0 * sx,
            d=np.asarray(data[:, ysl, xsl], dtype=np.float64).reshape(n, -1),
            gq=np.asarray(groupdq[:, ysl, xsl]).reshape(n, -1),
            gain=np.clip(_as_block(gain, ysl, xsl, np.float64), *GAIN_CLIP),
            read_noise=_as_block(read_noise, ysl, xsl, np.float64),
        )


def end_slices(groupdq: NDArray[np.uint8]) -> NDArray[np.int8]:
    """Last unsaturated resultant of each pixel, -1 when none saturates.

    Legacy SLICEOUT definition (docs/output.rst): for ``iend = 1..n-1`` ascending,
    ``endslice = iend - 1`` where resultant ``iend`` is SATURATED and ``iend - 1`` is
    not.

    Parameters
    ----------
    groupdq : ndarray, shape (n, ...), uint8
        Group flags.

    Returns
    -------
    ndarray of int8, shape groupdq.shape[1:]
    """
    out = np.full(groupdq.shape[1:], -1, dtype=np.int8)
    sat_prev = (groupdq[0] & SAT) != 0
    for iend in range(1, groupdq.shape[0]):
        sat = (groupdq[iend] & SAT) != 0
        out[sat & ~sat_prev] = iend - 1
        sat_prev = sat
    return out


def saturation_and_dnu_flags(
    gq: NDArray[np.uint8], sat: NDArray[np.bool_]
) -> tuple[NDArray[np.uint8], NDArray[np.uint32]]:
    """What both modes take from the group flags (docs/ramp_fit/description.rst).

    Parameters
    ----------
    gq : ndarray, shape (n, m), uint8
        Group flags.
    sat : ndarray, shape (n, m), bool
        Where ``gq`` has SATURATED.

    Returns
    -------
    nonsat : ndarray, shape (m,), uint8
        OR of the group flags of the unsaturated resultants (each mode carries its
        own choice of these bits to the pixel flags).
    flags : ndarray, shape (m,), uint32
        DO_NOT_USE where every resultant is DO_NOT_USE, SATURATED where any is.
    """
    nonsat = np.bitwise_or.reduce(np.where(sat, np.uint8(0), gq), axis=0)
    all_dnu = (np.bitwise_and.reduce(gq, axis=0) & DNU) != 0
    flags = np.zeros(gq.shape[1], np.uint32)
    flags[all_dnu] |= P_DNU
    flags[sat.any(axis=0)] |= P_SAT
    return nonsat, flags


def significance(
    stats: NDArray, tests: JumpTests, dvardt: NDArray, rn2: NDArray
) -> NDArray[np.float64]:
    """``z`` of each test (rows) for each pixel (columns); 0 where variance is 0.

    Parameters
    ----------
    stats : ndarray, shape (t, m)
        Test statistics ``w·d``.
    tests : JumpTests
        The tests (their variance coefficients).
    dvardt : ndarray, shape (m,) or (t, m)
        ``max(slope, 0)/gain`` per pixel, or per test and pixel.
    rn2 : ndarray, shape (m,)
        Single-read variance, DN².

    Returns
    -------
    ndarray, shape (t, m)
    """
    if dvardt.ndim == 1:
        var = np.multiply.outer(tests.poisson, dvardt)
    else:
        var = tests.poisson[:, None] * dvardt
    var += np.multiply.outer(tests.read, rn2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = stats / np.sqrt(var)
    z[~(var > 0)] = 0.0
    return z


@dataclass(frozen=True)
class SpecialInputs:
    """The special pixels' data, gathered from the full frame.

    Attributes
    ----------
    index : ndarray of int, shape (m,)
        Flat science indices.
    ys, xs : ndarray of int, shape (m,)
        Full-frame coordinates.
    d : ndarray, shape (n, m), float64
        Resultants.
    gain : ndarray, shape (m,), float64
        Gain clipped to `GAIN_CLIP`.
    rn2 : ndarray, shape (m,), float64
        Single-read variance, DN².
    """

    index: NDArray[np.intp]
    ys: NDArray[np.intp]
    xs: NDArray[np.intp]
    d: NDArray[np.float64]
    gain: NDArray[np.float64]
    rn2: NDArray[np.float64]


class FrameFit:
    """The outputs of a fit over the science area, filled block by block.

    Parameters
    ----------
    n, sy, sx : int
        Resultants and science-area shape.
    """

    def __init__(self, n: int, sy: int, sx: int):
        self.sx = sx
        self.slope = np.empty((sy, sx), np.float32)
        self.var_poisson = np.empty((sy, sx), np.float32)
        self.var_rnoise = np.empty((sy, sx), np.float32)
        self.flags = np.zeros((sy, sx), np.uint32)
        self.endslice = (
            np.empty((sy, sx), np.int8) if n < MAX_ENDSLICE_RESULTANTS else None
        )
        self.special = []  # flat science indices of the special pixels, per block
        self.jumps = []  # (resultant, flat science index) arrays
        self.counts = {
            "full": 0,
            "two_point": 0,
            "segments": 0,
            "no_slope": 0,
            "jump": 0,
        }

    def put_block(self, block: Block, slope, var_poisson, var_rnoise, flags) -> None:
        """Store a block's fit (flat arrays of its pixels) and its end slices."""
        rows = block.rows
        shape = (rows.stop - rows.start, self.sx)
        self.slope[rows] = slope.reshape(shape)
        self.var_poisson[rows] = var_poisson.reshape(shape)
        self.var_rnoise[rows] = var_rnoise.reshape(shape)
        self.flags[rows] = flags.reshape(shape)
        if self.endslice is not None:
            self.endslice[rows] = end_slices(block.gq.reshape(-1, *shape))

    def special_inputs(self, data, gain, read_noise, border) -> SpecialInputs | None:
        """Gather the special pixels' inputs (None if there are none)."""
        special = np.concatenate(self.special) if self.special else np.zeros(0, np.intp)
        if not special.size:
            return None
        ys, xs = np.divmod(special, self.sx)
        ys += border
        xs += border
        return SpecialInputs(
            index=special,
            ys=ys,
            xs=xs,
            d=np.asarray(data[:, ys, xs], dtype=np.float64),
            gain=np.clip(np.asarray(gain[ys, xs], dtype=np.float64), *GAIN_CLIP),
            rn2=np.square(np.asarray(read_noise[ys, xs], dtype=np.float64)),
        )

    def put_special(self, special: NDArray[np.intp], fitted) -> None:
        """Store the fit of the special pixels.

        ``fitted`` = ``(slope, var_poisson, var_rnoise, jump, no_slope, kinds)``:
        per pixel, ``jump`` (m, n) bool marks the resultants flagged JUMP_DET and
        ``no_slope`` the pixels without a slope; ``kinds`` counts pixels per kind.
        """
        slope, var_poisson, var_rnoise, jump, no_slope, kinds = fitted
        self.slope.ravel()[special] = slope
        self.var_poisson.ravel()[special] = var_poisson
        self.var_rnoise.ravel()[special] = var_rnoise
        flat_flags = self.flags.ravel()
        flat_flags[special[jump.any(axis=1)]] |= P_JUMP
        flat_flags[special[no_slope]] |= P_DNU
        pix, res_idx = np.nonzero(jump)
        self.jumps.append(np.column_stack([res_idx, special[pix]]))
        for kind, number in kinds.items():
            self.counts[kind] = self.counts.get(kind, 0) + number

    def result(self, pixeldq, border: int, weights) -> RampFitResult:
        """The `RampFitResult`: jumps in science coordinates, pixel flags merged."""
        jumps = np.concatenate(self.jumps) if self.jumps else np.zeros((0, 2), np.intp)
        jy, jx = np.divmod(jumps[:, 1], self.sx)
        jumps = np.column_stack([jumps[:, 0], jy, jx]).astype(np.intp)
        self.counts["jump"] = int(np.unique(jumps[:, 1] * self.sx + jumps[:, 2]).size)
        sy = self.slope.shape[0]
        pdq = np.asarray(pixeldq[border : border + sy, border : border + self.sx])
        # In place in ``flags``, by row blocks: no full-frame temporaries (they set
        # the peak of a run at 12 resultants).
        rows = max(1, BLOCK_PIXELS // max(self.sx, 1))
        for r0 in range(0, sy, rows):
            block, pdq_block = self.flags[r0 : r0 + rows], pdq[r0 : r0 + rows]
            block[(pdq_block & P_REF) != 0] = 0
            block |= pdq_block.astype(np.uint32, copy=False)
        return RampFitResult(
            slope=self.slope,
            var_poisson=self.var_poisson,
            var_rnoise=self.var_rnoise,
            dq=self.flags.astype(np.uint32, copy=False),
            weights=weights,
            jumps=jumps,
            endslice=self.endslice,
            counts=self.counts,
        )
