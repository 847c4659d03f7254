"""Likelihood ramp fit with integrated jump detection, through stcal.

Described in docs/ramp_fit/description.rst (The likelihood fit).

The legacy option ``romancal_ramp_fit`` called romancal 1.1.0's
``romancal.ramp_fitting.ramp_fit_step.likely``, which wraps stcal's
``likely_ramp_fit``. That wrapper mutates the model it is given (it adds a leading axis
to ``data``/``groupdq`` and several attributes), casts ``err``/``var_poisson`` to
float16 before returning, and is called by romancal's Step without the
``rejection_threshold`` (docs/ramp_fit/description.rst, The likelihood fit). Here stcal is called
directly on an adapter that holds *views* of the input arrays and a *copy* of the group
flags, with the threshold passed explicitly, so that:

* nothing of the input is modified;
* slope, variances and chisq stay float32 (the L2 writer casts later);
* the result is otherwise the same as romancal's ``likely`` (same stcal call, same
  read-noise scaling, same JumpData setup, same DO_NOT_USE for pixels with at most one
  usable resultant), which a test checks.

Rows are independent in the likelihood fit, so the science area is processed in
blocks of rows (bounded memory) unless snowball expansion is on (it works on the whole
frame, so the frame is passed in one piece, reference border included).
"""

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import yaml
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.ramp_fitting.optimal_weights import uniform_weights

__all__ = [
    "JUMP_KW_DEFAULTS",
    "LIKELY_MIN_RESULTANTS",
    "LikelyResult",
    "fit_likely",
    "parse_jump_kw",
]

log = logging.getLogger(__name__)

LIKELY_MIN_RESULTANTS = 4  # stcal likely_fit.LIKELY_MIN_NGROUPS
BLOCK_ROWS = 128  # rows per stcal call when snowball expansion is off
SQRT2 = np.sqrt(2.0)

# Keys of the legacy JUMP_KW (romancal 1.1.0 ``_setup_jump_data``) and their defaults.
JUMP_KW_DEFAULTS = {
    "expand_large_events": False,
    "min_jump_area": 6.0,
    "min_sat_area": 1.0,
    "expand_factor": 1.9,
    "sat_required_snowball": True,
    "min_sat_radius_extend": 0.5,
    "sat_expand": 2,
    "edge_size": 0,
    "maximum_cores": "1",
}


@dataclass
class LikelyResult:
    """Output of `fit_likely` for the science area.

    Attributes
    ----------
    slope : ndarray, shape (sy, sx), float32
        Count rate, DN/s.
    dq : ndarray, shape (sy, sx), uint32
        Pixel flags (input pixel flags included).
    var_poisson, var_rnoise, err, chisq, dumo : ndarray, shape (sy, sx), float32
        Variances (DN²/s²), total error (DN/s), chi-square of the fit and the uniform-
        weight slope minus the slope (DN/s).
    jumps : ndarray of int, shape (k, 3)
        ``(resultant, y, x)`` of the JUMP_DET group flags set by the fit.
    """

    slope: NDArray[np.float32]
    dq: NDArray[np.uint32]
    var_poisson: NDArray[np.float32]
    var_rnoise: NDArray[np.float32]
    err: NDArray[np.float32]
    chisq: NDArray[np.float32]
    dumo: NDArray[np.float32]
    jumps: NDArray[np.intp]


def parse_jump_kw(value) -> dict:
    """The JUMP_KW mapping from a step parameter: a mapping, or YAML/JSON text.

    Parameters
    ----------
    value : str, mapping or None
        ``""``/None for the defaults; a mapping; or text such as
        ``'{expand_large_events: true, min_jump_area: 8}'`` (YAML flow or JSON).

    Returns
    -------
    dict
        Every key of `JUMP_KW_DEFAULTS`, given values converted to the default's type.

    Raises
    ------
    ValueError
        Unparsable text, unknown keys or values of the wrong type.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        given = {}
    elif isinstance(value, str):
        try:
            given = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"jump_kw: not a YAML/JSON mapping: {value!r}") from exc
        if given is None:
            given = {}
    else:
        given = value
    if not hasattr(given, "items"):
        raise ValueError(f"jump_kw must be a mapping, got {value!r}")
    unknown = sorted(set(given) - set(JUMP_KW_DEFAULTS))
    if unknown:
        raise ValueError(
            f"jump_kw: unknown key(s) {unknown}; allowed: {sorted(JUMP_KW_DEFAULTS)}"
        )
    out = dict(JUMP_KW_DEFAULTS)
    for key, val in given.items():
        default = JUMP_KW_DEFAULTS[key]
        try:
            if isinstance(default, bool):
                if not isinstance(val, bool | np.bool_):
                    raise TypeError
                out[key] = bool(val)
            elif isinstance(default, str):
                out[key] = str(val)
            elif isinstance(default, int):
                if isinstance(val, bool) or float(val) != int(val):
                    raise TypeError
                out[key] = int(val)
            else:
                if isinstance(val, bool):
                    raise TypeError
                out[key] = float(val)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"jump_kw: {key} must be {type(default).__name__}, got {val!r}"
            ) from exc
    return out


def _adapter(data, groupdq, pixeldq, read_pattern, frame_time, rejection_threshold):
    """The attributes stcal's likelihood fit and JumpData read from a RampModel."""
    ny, nx = data.shape[1:]
    return SimpleNamespace(
        data=data[np.newaxis],
        groupdq=groupdq[np.newaxis],
        pixeldq=pixeldq,
        zeroframe=None,
        rejection_threshold=rejection_threshold,
        flags_do_not_use=pixel.DO_NOT_USE,
        flags_saturated=pixel.SATURATED,
        flags_jump_det=pixel.JUMP_DET,
        # read times of every frame of every resultant, s (romancal _get_readtimes)
        read_pattern=[list(np.asarray(r, float) * frame_time) for r in read_pattern],
        average_dark_current=np.zeros((ny, nx)),
        meta=SimpleNamespace(exposure=SimpleNamespace(read_pattern=read_pattern)),
    )


def _fit_piece(data, gdq, pdq, gain, rnoise, read_pattern, frame_time, thr, jump_kw):
    """One stcal call; ``gdq`` (a copy) receives the JUMP_DET flags."""
    from stcal.jump.jump_class import JumpData
    from stcal.ramp_fitting.likely_fit import likely_ramp_fit

    ramp = _adapter(data, gdq, pdq, read_pattern, frame_time, thr)
    jump_data = JumpData(ramp, gain, rnoise, pixel)
    jump_data.set_snowball_info(
        jump_kw["expand_large_events"],
        jump_kw["min_jump_area"],
        jump_kw["min_sat_area"],
        jump_kw["expand_factor"],
        jump_kw["sat_required_snowball"],
        jump_kw["min_sat_radius_extend"],
        jump_kw["sat_expand"] * 2,  # romancal doubles it (radius -> diameter)
        jump_kw["edge_size"],
    )
    jump_data.max_cores = jump_kw["maximum_cores"]
    # stcal expects the CDS read noise; the reference holds the single-read noise.
    info, _, _ = likely_ramp_fit(ramp, rnoise * SQRT2, gain, jump_data=jump_data)
    return info


def fit_likely(
    data: NDArray[np.float32],
    groupdq: NDArray[np.uint8],
    pixeldq: NDArray[np.uint32],
    gain: NDArray,
    read_noise: NDArray,
    read_pattern,
    frame_time: float,
    *,
    rejection_threshold: float = 4.5,
    jump_kw: dict | None = None,
    start: int = 0,
    border: int = REF_BORDER,
) -> LikelyResult:
    """Likelihood ramp fit (stcal) of the science area.

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx), float32
        Resultants, DN, full frame. Not modified.
    groupdq : ndarray, shape (n, ny, nx), uint8
        Group flags (DO_NOT_USE and SATURATED resultants are not used). Not modified.
    pixeldq : ndarray, shape (ny, nx), uint32
        Pixel flags. Not modified.
    gain, read_noise : ndarray, shape (ny, nx)
        Gain (e/DN) and single-read noise (DN).
    read_pattern : list of list of int
        Frames of each resultant.
    frame_time : float
        Frame time, s.
    rejection_threshold : float
        Jump rejection threshold (sigma), legacy REJECTION_THRESHOLD.
    jump_kw : dict or None
        JUMP_KW (see `parse_jump_kw`); None = defaults.
    start : int
        Resultants before ``start`` are not used (DO_NOT_USE in the copy of the group
        flags given to stcal), whatever their flags say.
    border : int
        Reference border width (not part of the output).

    Returns
    -------
    LikelyResult

    Raises
    ------
    ValueError
        With fewer than `LIKELY_MIN_RESULTANTS` resultants.
    """
    n, ny, nx = data.shape
    if n < LIKELY_MIN_RESULTANTS:
        raise ValueError(
            f"the likelihood ramp fit needs at least {LIKELY_MIN_RESULTANTS} "
            f"resultants (stcal), this exposure has {n}; use algorithm='optimal'"
        )
    jump_kw = parse_jump_kw(jump_kw)
    b = border
    sy, sx = ny - 2 * b, nx - 2 * b
    out = {
        key: np.empty((sy, sx), np.float32)
        for key in ("slope", "var_poisson", "var_rnoise", "err", "chisq")
    }
    dq = np.empty((sy, sx), np.uint32)
    jumps = []
    gain = np.asarray(gain)
    read_noise = np.asarray(read_noise)
    if jump_kw["expand_large_events"]:
        # Snowball expansion looks at whole frames: one call on the full frame.
        pieces = [(slice(0, ny), slice(0, nx), slice(b, ny - b), slice(b, nx - b))]
    else:
        pieces = [
            (
                slice(b + r0, b + min(sy, r0 + BLOCK_ROWS)),
                slice(b, nx - b),
                slice(None),
                slice(None),
            )
            for r0 in range(0, sy, BLOCK_ROWS)
        ]
    for ysl, xsl, ycut, xcut in pieces:
        gdq = np.array(groupdq[:, ysl, xsl], dtype=np.uint8)
        gdq[:start] |= np.uint8(group.DO_NOT_USE)
        info = _fit_piece(
            data[:, ysl, xsl],
            gdq,
            np.array(pixeldq[ysl, xsl], dtype=np.uint32),
            np.asarray(gain[ysl, xsl], dtype=np.float64),
            np.asarray(read_noise[ysl, xsl], dtype=np.float64),
            read_pattern,
            frame_time,
            rejection_threshold,
            jump_kw,
        )
        # Rows of the output this piece covers (science coordinates).
        r0 = ysl.start + (ycut.start or 0) - b
        r1 = r0 + (ycut.stop or ysl.stop - ysl.start) - (ycut.start or 0)
        target = (slice(r0, r1), slice(None))
        for key, array in out.items():
            array[target] = info[key][ycut, xcut]
        piece_dq = info["dq"][ycut, xcut].astype(np.uint32)
        # As romancal: DO_NOT_USE where at most one resultant is usable.
        usable = np.count_nonzero(
            (gdq[:, ycut, xcut] & np.uint8(group.SATURATED | group.DO_NOT_USE)) == 0,
            axis=0,
        )
        piece_dq[usable <= 1] |= np.uint32(pixel.DO_NOT_USE)
        dq[target] = piece_dq
        res, yy, xx = np.nonzero(gdq[:, ycut, xcut] & np.uint8(group.JUMP_DET))
        jumps.append(np.column_stack([res, yy + r0, xx]))
        del info, gdq
    tbar = np.array([np.mean(r) for r in read_pattern]) * frame_time
    n_frames = np.array([len(r) for r in read_pattern])
    weights = uniform_weights(tbar, n_frames)
    uniform = np.zeros((sy, sx), np.float64)
    for i in range(n):
        uniform += weights[i] * data[i, b : ny - b, b : nx - b]
    dumo = (uniform - out["slope"]).astype(np.float32)
    return LikelyResult(
        slope=out["slope"],
        dq=dq,
        var_poisson=out["var_poisson"],
        var_rnoise=out["var_rnoise"],
        err=out["err"],
        chisq=out["chisq"],
        dumo=dumo,
        jumps=np.concatenate(jumps).astype(np.intp),
    )
