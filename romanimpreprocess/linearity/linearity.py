"""Classical linearity correction with a per-pixel Legendre model (docs/linearity/index.rst).

The raw signal ``S`` (DN_raw) of each pixel is mapped to ``z = -1 + 2 (S - Smin) /
(Smax - Smin)`` and the linearised signal (DN_lin, 0 at ``Sref``) is ``Phi(S) =
sum_l C_l P~_l(z)``, where ``P~_l`` is the Legendre polynomial ``P_l`` inside the fitted
range ``|z| <= 1`` and its tangent line at ``z = +-1`` beyond it. Evaluation follows the
legacy float32 order exactly (see `legendre_phi`), one resultant at a time, so the
memory is a few frames besides the coefficient cube.
"""

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.parallel import (
    ENGINES,
    check_engine,
    resolve_threads,
    run_in_threads,
)

__all__ = [
    "BLOCK_PIXELS",
    "ENGINES",
    "apply_linearity",
    "invalid_calibration",
    "legendre_phi",
    "normalized_signal",
]

_USE_RAW = np.uint32(pixel.NO_LIN_CORR | pixel.REFERENCE_PIXEL)
BLOCK_PIXELS = 2**19  # pixels per block of rows (4 MB per float64 temporary)


def normalized_signal(
    signal: NDArray, smin: NDArray, span: NDArray, *, clip: bool = False
) -> NDArray:
    """``z = -1 + 2 (S - Smin) / (Smax - Smin)``, evaluated in that order.

    Parameters
    ----------
    signal : ndarray, shape (ny, nx)
        Raw signal ``S``, DN_raw.
    smin : ndarray, shape (ny, nx)
        Lower end of the fitted range, DN_raw.
    span : ndarray, shape (ny, nx)
        ``Smax - Smin``, DN_raw.
    clip : bool
        Clip ``z`` to [-1, 1].

    Returns
    -------
    ndarray, shape (ny, nx)
        ``z`` in the promoted dtype of the inputs (float32 for float32 inputs).
    """
    z = signal - smin
    z *= 2
    z /= span
    z -= 1
    if clip:
        np.clip(z, -1, 1, out=z)
    return z


def legendre_phi(z: NDArray, coeffs: NDArray) -> tuple[NDArray, NDArray[np.bool_]]:
    """Legendre series with linear continuation beyond ``|z| = 1``.

    ``Phi = C_0 + sum_{l>=1} C_l P~_l(z)`` with ``P~_l(z) = P_l(z)`` for ``|z| <= 1``
    and ``sign(z)^l (1 + l(l+1)/2 (|z| - 1))`` beyond (the value and slope of ``P_l``
    at ``+-1``). ``P_l`` comes from the recursion ``P_{l+1} = [(2l+1)/(l+1)] z P_l -
    [l/(l+1)] P_{l-1}`` with the scalar ratios rounded to the array dtype first, and
    the terms are accumulated in order of ``l``: the legacy float32 arithmetic, bit
    for bit.

    Parameters
    ----------
    z : ndarray, shape (ny, nx)
        Normalised signal.
    coeffs : ndarray, shape (p+1, ny, nx)
        Legendre coefficients ``C_l``, DN_lin. Read one plane at a time.

    Returns
    -------
    phi : ndarray, shape (ny, nx)
        Linearised signal, DN_lin, in the promoted dtype of ``z`` and ``coeffs``.
    exflag : ndarray of bool, shape (ny, nx)
        True where ``|z| > 1`` (extrapolated).
    """
    dtype = np.result_type(z, coeffs)
    z = np.asarray(z, dtype=dtype)
    abs_z = np.abs(z)
    exflag = abs_z > 1
    inside = ~exflag
    any_out = bool(exflag.any())
    abs_z -= 1  # |z| - 1, the distance beyond the range
    sign = np.sign(z)
    phi = np.array(coeffs[0], dtype=dtype, copy=True)
    prev = np.ones_like(z)
    poly = z.copy()
    term = np.empty_like(z)
    nterms = coeffs.shape[0]
    for ell in range(1, nterms):
        if any_out:
            np.multiply(abs_z, dtype.type(ell * (ell + 1) / 2.0), out=term)
            term += 1
            if ell % 2:
                term *= sign
            np.copyto(term, poly, where=inside)
        else:
            term[...] = poly
        term *= coeffs[ell]
        phi += term
        if ell + 1 < nterms:
            nxt = dtype.type((2 * ell + 1) / (ell + 1)) * z
            nxt *= poly
            prev *= dtype.type(ell / (ell + 1))
            nxt -= prev
            prev, poly = poly, nxt
    return phi, exflag


def invalid_calibration(
    coeffs: NDArray,
    smin: NDArray,
    smax: NDArray,
    sref: NDArray,
    *,
    engine: str = "numba",
    threads: int | None = None,
) -> NDArray[np.bool_]:
    """Pixels whose calibration cannot be evaluated.

    Any non-finite coefficient, ``Smin``, ``Smax`` or ``Sref``, or ``Smax <= Smin``
    (the legacy divides by zero there).

    Parameters
    ----------
    coeffs : ndarray, shape (p+1, ny, nx)
        Legendre coefficients.
    smin, smax, sref : ndarray, shape (ny, nx)
        Fitted range and reference level.
    engine : {"numba", "numpy"}
        "numba": one compiled pass over the planes (float arrays), else numpy.
    threads : int, optional
        Threads of the numba kernel (default: `romanimpreprocess.parallel`'s
        ``step_threads``).

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        True where the pixel's linearity calibration is unusable.
    """
    check_engine(engine)
    arrays = (coeffs, smin, smax, sref)
    if engine == "numba" and all(
        isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)
        for a in arrays
    ):
        from romanimpreprocess.linearity import linearity_kernels as kernels
        from romanimpreprocess.parallel import kernel_threads

        bad = np.empty(smin.shape, bool)
        with kernel_threads(threads):
            kernels.invalid_calibration(coeffs, smin, smax, sref, bad)
        return bad
    bad = ~(np.isfinite(smin) & np.isfinite(smax) & np.isfinite(sref))
    with np.errstate(invalid="ignore"):
        bad |= ~(smax > smin)
    for plane in coeffs:
        bad |= ~np.isfinite(plane)
    return bad


def apply_linearity(
    data: NDArray[np.float32],
    groupdq: NDArray[np.uint8],
    coeffs: NDArray,
    smin: NDArray,
    smax: NDArray,
    sref: NDArray,
    lin_dq: NDArray,
    *,
    do_not_flag_first: bool,
    legacy_compat: bool = False,
    invalid: NDArray[np.bool_] | None = None,
    dtype=None,
    block_rows: int | None = None,
    threads: int | None = None,
    engine: str = "numba",
) -> NDArray[np.uint32]:
    """Linearise every resultant in place and return the pixel flags to OR in.

    For each resultant ``j``, ``Phi`` (`legendre_phi`) of ``z`` (`normalized_signal`,
    clipped to [-1, 1] for ``j = 0`` when ``do_not_flag_first``) replaces ``S``, except
    on pixels that get ``S - Sref``: those whose linearity-file ``dq`` has NO_LIN_CORR
    or REFERENCE_PIXEL, and pixels with an unusable calibration
    (`invalid_calibration`, which also get NO_LIN_CORR | DO_NOT_USE; ``Sref`` taken as
    0 where it is not finite). A pixel gets NO_LIN_CORR when ``|z| > 1`` in a
    resultant that is not SATURATED (and not resultant 0 when ``do_not_flag_first``).

    Default: every resultant of a pixel gets the same treatment, the extrapolated
    ``Phi`` past the range (fixes docs/linearity/index.rst, differences from the legacy). ``legacy_compat``: as the
    legacy, a pixel flagged NO_LIN_CORR at resultant ``j`` gets ``S - Sref`` from
    resultant ``j + 1`` on (the linearity switches off mid-ramp).

    Parameters
    ----------
    data : ndarray, shape (nresultants, ny, nx), float32
        Resultants, DN_raw in, DN_lin out (in place).
    groupdq : ndarray, shape (nresultants, ny, nx), uint8
        Group flags (SATURATED resultants are corrected but never flagged). Not
        modified.
    coeffs : ndarray, shape (p+1, ny, nx)
        Legendre coefficients, DN_lin.
    smin, smax, sref : ndarray, shape (ny, nx)
        Fitted range and reference level, DN_raw.
    lin_dq : ndarray, shape (ny, nx), integer
        Linearity-file flags.
    do_not_flag_first : bool
        Resultant 0 is the reset frame alone: clip it to the range, never flag it.
    legacy_compat : bool
        Reproduce the legacy mid-ramp switch-off.
    invalid : ndarray of bool, shape (ny, nx), optional
        `invalid_calibration` of these arrays, if already computed.
    dtype : numpy dtype, optional
        Arithmetic dtype of ``z`` and ``Phi``; None = the promoted dtype of the inputs
        (float32 for float32 files, the legacy arithmetic). float64 brings the
        evaluation error from ~1e-2 DN to the float32 rounding of the output.
    block_rows : int, optional
        Rows processed at a time by the numpy engine (default: about
        `BLOCK_PIXELS` pixels).
    threads : int, optional
        Threads (numba kernel, or numpy row blocks in parallel threads); default:
        `romanimpreprocess.parallel`'s ``step_threads``. Identical results.
    engine : {"numba", "numpy"}
        "numba": the compiled kernel (`linearity_kernels.linearize`), used when it
        reproduces the numpy arithmetic exactly (see `_kernel_dtype`: float data,
        working dtype float32 or float64 and no input wider than it), else numpy;
        "numpy": the numpy row blocks (the reference). Same bits.

    Returns
    -------
    ndarray, shape (ny, nx), uint32
        Flags to OR into the pixel dq: the linearity-file dq, NO_LIN_CORR, and
        NO_LIN_CORR | DO_NOT_USE on unusable calibrations (a new array).
    """
    check_engine(engine)
    threads = resolve_threads(threads)
    nres = data.shape[0]
    dq = np.array(lin_dq, dtype=np.uint32, copy=True)
    if invalid is None:
        invalid = invalid_calibration(
            coeffs, smin, smax, sref, engine=engine, threads=threads
        )
    bad = invalid
    any_bad = bool(bad.any())
    work = _kernel_dtype(data, groupdq, coeffs, smin, smax, sref, dtype)
    if engine == "numba" and work is not None:
        from romanimpreprocess.linearity import linearity_kernels as kernels
        from romanimpreprocess.parallel import kernel_threads

        with kernel_threads(threads):
            kernels.linearize(
                data, groupdq, coeffs, smin, smax, sref, dq,
                np.asarray(bad, dtype=bool), any_bad, bool(do_not_flag_first),
                bool(legacy_compat), np.ones(1, work),
                *kernels.recursion_constants(coeffs.shape[0], work),
            )  # fmt: skip
        return dq
    use_raw = (dq & _USE_RAW) != 0
    if any_bad:
        use_raw |= bad
        sref = np.where(np.isfinite(sref), sref, 0).astype(sref.dtype, copy=False)
    ny, nx = data.shape[1:]
    out_of_range = np.zeros((ny, nx), dtype=bool)
    sat = np.uint8(group.SATURATED)
    # Unusable calibrations give inf/NaN in Phi; those pixels are replaced below.
    errstate = "ignore" if any_bad else "warn"
    rows = block_rows or max(1, BLOCK_PIXELS // nx)

    # Blocks of rows keep the temporaries small (cache-friendly, no page faults);
    # every pixel is independent, so the blocking does not change any value.
    def process_block(r0):
        blk = slice(r0, min(ny, r0 + rows))
        b_smin, b_smax, b_sref = (
            np.asarray(a[blk], dtype=dtype) for a in (smin, smax, sref)
        )
        b_span = b_smax - b_smin
        b_coeffs = coeffs[:, blk]
        b_use_raw = use_raw[blk]
        b_out = out_of_range[blk]
        for j in range(nres):
            first = j == 0 and do_not_flag_first
            signal = np.asarray(data[j, blk], dtype=dtype)
            with np.errstate(divide=errstate, invalid=errstate, over=errstate):
                z = normalized_signal(signal, b_smin, b_span, clip=first)
                phi, exflag = legendre_phi(z, b_coeffs)
            raw = signal - b_sref
            mask = b_use_raw | b_out if legacy_compat else b_use_raw
            np.copyto(phi, raw, where=mask)
            data[j, blk] = phi
            if not first:
                exflag &= (groupdq[j, blk] & sat) == 0
                b_out |= exflag

    # Blocks write disjoint rows; numpy releases the GIL in the array loops.
    run_in_threads(process_block, range(0, ny, rows), threads)
    dq[out_of_range] |= np.uint32(pixel.NO_LIN_CORR)
    if any_bad:
        dq[bad] |= np.uint32(pixel.NO_LIN_CORR | pixel.DO_NOT_USE)
    return dq


def _kernel_dtype(data, groupdq, coeffs, smin, smax, sref, dtype) -> np.dtype | None:
    """Working dtype of the numba kernel, or None when it would not match numpy.

    The numpy path converts the signal and ``Smin``, ``Smax``, ``Sref`` to
    ``dtype`` (None: keeps theirs) and evaluates ``Phi`` in the promoted dtype of
    ``z`` and the coefficients. The kernel converts everything to one working
    dtype on loading, so it applies when that is float32 or float64 and no array
    it computes with promotes beyond it.
    """
    arrays = (data, coeffs, smin, smax, sref)
    if not all(isinstance(a, np.ndarray) for a in (*arrays, groupdq)):
        return None
    if not all(np.issubdtype(a.dtype, np.floating) for a in arrays):
        return None
    if groupdq.dtype != np.uint8 or data.ndim != 3:
        return None
    work = np.dtype(dtype) if dtype is not None else data.dtype
    if work not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    # with dtype None the inputs keep their dtype: all must already be ``work``
    promoted = arrays if dtype is None else (coeffs,)
    if np.result_type(work, *(a.dtype for a in promoted)) != work:
        return None
    return work
