"""romancal 1.1.0 reference files built from our calibration set (benchmarks only).

romancal's ExposurePipeline reads roman_datamodels reference models (MaskRef,
SaturationRef, LinearityRef, ...); our pipeline reads its own files
(docs/reference_files.rst). To run romancal on the same simulated
exposure as ours, this module writes one romancal file per reference type that our set
can fill, with our numbers, so that every romancal step that runs gets an
``override_<reftype>`` and no CRDS lookup is needed. The meta is romancal's filler
(``create_fake_data``) with our detector and a description of the source; an
optical element our file does not name keeps the filler (F062), which nothing checks
when the file is given as an override.

What each file is made of (``SOURCES`` lists the CALDIR keys):

``mask``, ``saturation``, ``readnoise``, ``gain``, ``darkdecaysignal``
    copied (cast to the schema's dtypes: our gain is float64, romancal's float32).
``dark``
    ``dark_slope`` and ``dq`` copied; ``dark_slope_error`` is ours if the file has
    one, else zeros. romancal 1.1.0's DarkRef has no per-resultant cube, so our
    ``data`` cube (used only by our refpix) is not needed. Ours is IPC-convolved and
    our pipeline deconvolves it; romancal has no IPC step and subtracts it as is.
``flat``
    the active 4088² part of our P-flat (romancal divides the border-trimmed rate by
    it), ``err`` zeros (our set has none), ``dq`` zeros: our pipeline does not read
    the P-flat dq (docs/reference_files.rst), so neither does this conversion.
``linearity`` (approximate at the float32 level)
    our per-pixel Legendre series ``Phi(S) = sum_l C_l P_l(z)``, ``z = -1 + 2 (S -
    Smin) / (Smax - Smin)``, rewritten exactly (in float64) as an ordinary power
    series in the raw signal ``S`` (DN), then rounded to float32, which is how stcal
    evaluates it (Horner in float32). Inside ``[Smin, Smax]`` the two agree to the
    float32 rounding (``report["linearity"]["max_abs_error_dn"]``). Outside it ours
    continues each Legendre polynomial along its tangent and flags NO_LIN_CORR, while
    the power series simply continues the polynomial. Pixels that ours gives ``S -
    Sref`` (NO_LIN_CORR or REFERENCE_PIXEL in our dq, or an unusable calibration) get
    the coefficients of ``S - Sref``; unusable ones also get NO_LIN_CORR | DO_NOT_USE
    as in ours (stcal then uses the identity for NO_LIN_CORR pixels, an offset that
    no slope sees).
``inverselinearity`` (approximate: a fit)
    romancal's read-level linearity needs the inverse ``S(Phi)`` as a power series in
    the linearised DN. Our set has no inverse, so it is fitted per pixel: a degree
    ``INVERSE_DEGREE`` least-squares polynomial through ``INVERSE_NODES`` Chebyshev
    nodes of ``[Smin, Smax]`` (in a scaled variable, converted to a power series
    afterwards); ``report["inverselinearity"]`` gives the round-trip error
    ``|S(Phi(S)) - S|`` on a pixel sample. Beyond ``Phi(Smax)`` (reads that romancal
    reconstructs past saturation, which it caps at 1.2 times the saturation level
    and does not use) the fitted polynomial is extrapolated.

Types our set has no counterpart for are not built (see ``NOT_BUILT``); the steps
needing them are skipped by ``bench/run_all.py``. Our IPC kernel (``ipc4d``) and bias
correction (``biascorr``) have no romancal 1.1.0 step at all.

The files are written uncompressed, as our simulated set is, so that neither side
pays for decompression that the other does not. A file is rebuilt only when it is
missing or older than one of its sources or than this module.

Usage::

    python bench/romancal_refs.py --config bench/out/4096_survey6/ours_survey6_optimal.yaml \
        --out bench/out/4096_survey6/romancal_refs
    python bench/romancal_refs.py --caldir bench/out/4096_survey6/sim --out DIR
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asdf
import numpy as np
from numpy.polynomial import legendre as npleg
from roman_datamodels import datamodels as dm
from roman_datamodels.dqflags import pixel

# romancal reftype -> the CALDIR keys of ours it is built from
SOURCES = {
    "mask": ("mask",),
    "saturation": ("saturation",),
    "linearity": ("linearitylegendre",),
    "inverselinearity": ("linearitylegendre",),
    "darkdecaysignal": ("dark_decay",),
    "dark": ("dark",),
    "readnoise": ("read",),
    "gain": ("gain",),
    "flat": ("flat",),
}

# romancal reftypes read by ExposurePipeline steps that our set cannot fill, and why
NOT_BUILT = {
    "refpix": "RefpixRef holds the Fourier-domain weights (gamma, zeta, alpha) of "
    "romancal's IRRC 1/f correction, fitted from darks; our read file has 1/f "
    "amplitudes and amp33 statistics, not such weights",
    "distortion": "DistortionRef is an astropy model from detector to V2/V3; our set "
    "has only a TAN-SIP celestial header per exposure (FITSWCS)",
    "photom": "WfiImgPhotomRef (per-filter flux conversion): our set has no "
    "photometric calibration",
    "integralnonlinearity": "our set has no per-channel integral nonlinearity table "
    "(optional in romancal: given as N/A)",
    "apcorr": "source catalog aperture corrections: no counterpart (catalogs are "
    "outside our L1->L2 pipeline)",
}

# Our CALDIR key -> file-name type of the PIT convention roman_wfi_<type>_<TAG>.asdf
FILE_TYPES = {"flat": "pflat", "dark_decay": "darkdecay"}

INVERSE_DEGREE = 5  # 3 leaves 0.6 DN, 4 0.03 DN, 5 the float32 rounding (~0.008 DN)
INVERSE_NODES = 12
# rows per block: 2 MB per float64 plane, 25 MB per array of nodes (4096 wide)
BLOCK_ROWS = 64
BORDER = 4
_USE_RAW = int(pixel.NO_LIN_CORR | pixel.REFERENCE_PIXEL)
_INVALID_FLAGS = np.uint32(pixel.NO_LIN_CORR | pixel.DO_NOT_USE)
AUTHOR = "romanimpreprocess bench/romancal_refs.py"


def caldir_from_config(path):
    """The CALDIR mapping of a legacy-style YAML config (our pipeline's input)."""
    import yaml

    with open(path) as f:
        return dict(yaml.safe_load(f)["CALDIR"])


def caldir_from_directory(directory):
    """CALDIR keys -> files ``roman_wfi_<type>_*.asdf`` found in ``directory``."""
    caldir = {}
    for key in {k for keys in SOURCES.values() for k in keys}:
        found = sorted(
            Path(directory).glob(f"roman_wfi_{FILE_TYPES.get(key, key)}_*.asdf")
        )
        if found:
            caldir[key] = str(found[0])
    return caldir


def _up_to_date(target, sources):
    """True if ``target`` exists and is newer than every source and this module."""
    if not target.exists():
        return False
    newest = max(os.stat(s).st_mtime for s in [*sources, __file__])
    return target.stat().st_mtime >= newest


def _save(model, path):
    """Validate and write ``model`` to ``path`` atomically, arrays uncompressed.

    roman_datamodels stamps ``meta.filename`` with the name written, so the file is
    written under its final name in a temporary directory next to it and moved.
    """
    path = Path(path)
    tmpdir = tempfile.mkdtemp(prefix=".tmp-", dir=path.parent)
    try:
        tmp = Path(tmpdir) / path.name
        model.save(tmp, all_array_compression=None)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _new_model(cls, source_meta, description):
    """An empty reference model with our detector and a description of its origin."""
    # a tiny fake model: its arrays are all replaced, only its valid meta is kept
    model = cls.create_fake_data(shape=(1, 1, 1))
    meta = model.meta
    meta.author = AUTHOR
    meta.pedigree = "DUMMY"
    meta.origin = "romanimpreprocess benchmark"
    meta.description = description
    instrument = dict((source_meta or {}).get("instrument") or {})
    if str(instrument.get("detector", "")).startswith("WFI"):
        meta.instrument.detector = str(instrument["detector"])
    if "optical_element" in meta.instrument and instrument.get("optical_element"):
        meta.instrument.optical_element = str(instrument["optical_element"])
    return model


def _open(path):
    # uncompressed arrays are memory-mapped: blocks of rows are read as needed
    return asdf.open(path, lazy_load=True, memmap=True)


def _plain(tree):
    """asdf tree nodes -> plain dicts/scalars (for copying small tables)."""
    if hasattr(tree, "items"):
        return {str(k): _plain(v) for k, v in tree.items()}
    return tree


# --------------------------------------------------------------- linearity maths
def legendre_to_power_matrix(nterms):
    """M with ``a = M @ C``: Legendre coefficients C -> power coefficients a (in z)."""
    columns = []
    for ell in range(nterms):
        power = npleg.leg2poly(np.eye(nterms)[ell])  # P_ell in powers of z
        columns.append(np.pad(power, (0, nterms - power.size)))
    return np.stack(columns, axis=1)


def substitute_affine(coeffs, alpha, beta):
    """Power series in ``u`` -> power series in ``x`` where ``u = alpha x + beta``.

    ``sum_n a_n u^n = sum_m x^m sum_{n >= m} a_n binom(n, m) alpha^m beta^(n - m)``,
    per pixel; ``coeffs`` has the series along axis 0.
    """
    nterms = coeffs.shape[0]
    out = np.zeros_like(coeffs)
    for m in range(nterms):
        for n in range(m, nterms):
            out[m] += coeffs[n] * (math.comb(n, m) * alpha**m * beta ** (n - m))
    return out


def horner32(coeffs, x):
    """stcal's evaluation: Horner's rule in float32 (``apply_polynomial``)."""
    coeffs = coeffs.astype(np.float32)
    x = np.asarray(x, np.float32)
    result = coeffs[-1] * x
    for c in coeffs[-2:0:-1]:
        result += c
        result *= x
    return result + coeffs[0]


def linearity_blocks(legendre, smin, smax, sref, lin_dq, degree, nodes):
    """Power-series linearity and fitted inverse for one block of rows (float64).

    Returns the forward coefficients (p+1, ny, nx), the inverse coefficients
    (degree+1, ny, nx), the dq of the block and the mask of pixels written as
    ``S - Sref`` (no fit).
    """
    legendre = np.asarray(legendre, np.float64)
    smin = np.asarray(smin, np.float64)
    smax = np.asarray(smax, np.float64)
    sref = np.asarray(sref, np.float64)
    dq = np.array(lin_dq, np.uint32)
    nterms = legendre.shape[0]

    with np.errstate(invalid="ignore", divide="ignore"):
        invalid = ~(np.isfinite(smin) & np.isfinite(smax) & np.isfinite(sref))
        invalid |= ~(smax > smin)
        invalid |= ~np.all(np.isfinite(legendre), axis=0)
        raw = invalid | ((dq & _USE_RAW) != 0)
        span = np.where(raw, 1.0, smax - smin)
        lo = np.where(raw, 0.0, smin)
        alpha = 2.0 / span
        beta = -1.0 - 2.0 * lo / span
    dq[invalid] |= _INVALID_FLAGS

    power_z = np.tensordot(legendre_to_power_matrix(nterms), np.nan_to_num(legendre), 1)
    forward = substitute_affine(power_z, alpha, beta)

    # sample Phi on Chebyshev nodes of [Smin, Smax] and fit S(Phi) in a scaled variable
    u = np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)[:, None, None]
    s_nodes = lo + 0.5 * span * (1.0 + u)
    z_nodes = -1.0 + 2.0 * (s_nodes - lo) / span
    phi = npleg.legval(z_nodes, np.nan_to_num(legendre), tensor=False)
    phi_lo, phi_hi = phi.min(axis=0), phi.max(axis=0)
    monotonic = np.all(np.diff(phi[np.argsort(u[:, 0, 0])], axis=0) > 0, axis=0)
    centre = 0.5 * (phi_hi + phi_lo)
    half = np.where(phi_hi > phi_lo, 0.5 * (phi_hi - phi_lo), 1.0)
    t = (phi - centre) / half
    # normal equations from power sums: sum_j t_j^(k+l) and sum_j t_j^k S_j, so no
    # (nodes, ny, nx, degree+1) Vandermonde array is held
    powers = np.ones_like(t)
    moments, rhs = [], []
    for k in range(2 * degree + 1):
        moments.append(powers.sum(axis=0))
        if k <= degree:
            rhs.append((powers * s_nodes).sum(axis=0))
        powers = powers * t
    idx = np.add.outer(np.arange(degree + 1), np.arange(degree + 1))
    normal = np.moveaxis(np.stack(moments)[idx], (0, 1), (-2, -1))  # (ny, nx, k, l)
    rhs = np.moveaxis(np.stack(rhs), 0, -1)  # (ny, nx, k)
    bad_fit = raw | ~monotonic
    normal[bad_fit] = np.eye(degree + 1)  # keeps the batched solve regular there
    rhs[bad_fit] = 0.0
    in_t = np.moveaxis(np.linalg.solve(normal, rhs[..., None])[..., 0], -1, 0)
    inverse = substitute_affine(in_t, 1.0 / half, -centre / half)

    # S - Sref and its inverse Phi + Sref where ours does not linearise (and where the
    # calibration is not monotonic, which the fit cannot invert: flagged like invalid)
    dq[~monotonic & ~raw] |= _INVALID_FLAGS
    keep_raw = bad_fit
    sref0 = np.where(np.isfinite(sref), sref, 0.0)
    forward[:, keep_raw] = 0.0
    forward[0, keep_raw] = -sref0[keep_raw]
    forward[1, keep_raw] = 1.0
    inverse[:, keep_raw] = 0.0
    inverse[0, keep_raw] = sref0[keep_raw]
    inverse[1, keep_raw] = 1.0
    return forward, inverse, dq, keep_raw


def linearity_errors(legendre, smin, smax, forward32, inverse32, raw, nodes=33):
    """Largest float32 errors of the converted series on the pixels given.

    ``forward``: |horner32(forward, S) - Phi(S)| with Phi our Legendre series in
    float64, ``inverse``: |horner32(inverse, Phi(S)) - S|, both over ``nodes`` points
    of ``[Smin, Smax]`` of each pixel ours linearises.
    """
    ok = ~raw
    if not ok.any():
        return 0.0, 0.0
    legendre = np.asarray(legendre, np.float64)[:, ok]
    smin = np.asarray(smin, np.float64)[ok]
    smax = np.asarray(smax, np.float64)[ok]
    frac = np.linspace(0.0, 1.0, nodes)[:, None]
    s = smin + (smax - smin) * frac
    phi = npleg.legval(-1.0 + 2.0 * frac + 0.0 * s, legendre, tensor=False)
    fwd = horner32(forward32[:, ok][:, None, :], s.astype(np.float32))
    inv = horner32(inverse32[:, ok][:, None, :], phi.astype(np.float32))
    return float(np.max(np.abs(fwd - phi))), float(np.max(np.abs(inv - s)))


# --------------------------------------------------------------- builders
def build_linearity(
    source, out_lin, out_inv, degree=INVERSE_DEGREE, nodes=INVERSE_NODES
):
    """LinearityRef and InverselinearityRef from our linearitylegendre file."""
    with _open(source) as af:
        tree = af["roman"]
        legendre, smin, smax, sref = (tree[k] for k in ("data", "Smin", "Smax", "Sref"))
        lin_dq = tree["dq"]
        nterms, ny, nx = legendre.shape
        forward = np.empty((nterms, ny, nx), np.float32)
        inverse = np.empty((degree + 1, ny, nx), np.float32)
        dq = np.empty((ny, nx), np.uint32)
        n_raw = 0
        err_fwd = err_inv = 0.0
        for y0 in range(0, ny, BLOCK_ROWS):
            rows = slice(y0, min(ny, y0 + BLOCK_ROWS))
            blk = (legendre[:, rows], smin[rows], smax[rows], sref[rows])
            fwd, inv, dq[rows], raw = linearity_blocks(
                *blk, lin_dq[rows], degree, nodes
            )
            forward[:, rows] = fwd
            inverse[:, rows] = inv
            n_raw += int(raw.sum())
            # error check on every 16th row and column of the block (the sample)
            sub = (slice(None), slice(None, None, 16), slice(None, None, 16))
            e_f, e_i = linearity_errors(
                np.asarray(blk[0])[sub],
                np.asarray(blk[1])[sub[1:]],
                np.asarray(blk[2])[sub[1:]],
                forward[:, rows][sub],
                inverse[:, rows][sub],
                raw[sub[1:]],
            )
            err_fwd, err_inv = max(err_fwd, e_f), max(err_inv, e_i)
        meta = _plain(tree.get("meta"))

    lin = _new_model(
        dm.LinearityRefModel,
        meta,
        f"power series in raw DN converted from the Legendre linearity {Path(source).name}",
    )
    lin.coeffs, lin.dq = forward, dq
    _save(lin, out_lin)
    del lin
    inv_model = _new_model(
        dm.InverselinearityRefModel,
        meta,
        f"degree-{degree} least-squares inverse of the Legendre linearity "
        f"{Path(source).name} on {nodes} Chebyshev nodes of [Smin, Smax]",
    )
    inv_model.coeffs, inv_model.dq = inverse, dq
    _save(inv_model, out_inv)
    return {
        "linearity": {
            "legendre_terms": int(nterms),
            "pixels_as_S_minus_Sref": n_raw,
            "max_abs_error_dn": err_fwd,
        },
        "inverselinearity": {
            "degree": degree,
            "nodes": nodes,
            "max_abs_error_dn": err_inv,
        },
    }


def _build_simple(reftype, source, target):
    """Every reference type but the linearity pair: copies and casts."""
    with _open(source) as af:
        tree = af["roman"]
        meta = _plain(tree.get("meta"))
        note = f"from {Path(source).name}"
        if reftype == "mask":
            model = _new_model(dm.MaskRefModel, meta, f"mask {note}")
            model.dq = np.array(tree["dq"], np.uint32)
        elif reftype == "saturation":
            model = _new_model(dm.SaturationRefModel, meta, f"saturation {note}")
            model.data = np.array(tree["data"], np.float32)
            model.dq = np.array(tree["dq"], np.uint32)
        elif reftype == "dark":
            model = _new_model(dm.DarkRefModel, meta, f"dark slope and dq {note}")
            model.dark_slope = np.array(tree["dark_slope"], np.float32)
            model.dq = np.array(tree["dq"], np.uint32)
            if "dark_slope_err" in tree:
                model.dark_slope_error = np.array(tree["dark_slope_err"], np.float32)
            else:
                model.dark_slope_error = np.zeros_like(model.dark_slope)
        elif reftype == "readnoise":
            model = _new_model(dm.ReadnoiseRefModel, meta, f"single-read noise {note}")
            model.data = np.array(tree["data"], np.float32)
        elif reftype == "gain":
            model = _new_model(dm.GainRefModel, meta, f"gain {note}")
            model.data = np.array(tree["data"], np.float32)
        elif reftype == "flat":
            model = _new_model(
                dm.FlatRefModel, meta, f"active part of the P-flat {note}"
            )
            data = np.asarray(tree["data"])
            if data.shape[0] > 2 * BORDER and data.shape == (
                data.shape[0],
                data.shape[0],
            ):
                data = data[BORDER:-BORDER, BORDER:-BORDER]
            model.data = np.array(data, np.float32)
            model.dq = np.zeros(model.data.shape, np.uint32)
            model.err = np.zeros(model.data.shape, np.float32)
        elif reftype == "darkdecaysignal":
            model = _new_model(dm.DarkdecaysignalRefModel, meta, f"decay table {note}")
            model.decay_table = {
                det: {
                    "amplitude": float(entry["amplitude"]),
                    "time_constant": float(entry["time_constant"]),
                }
                for det, entry in _plain(tree["decay_table"]).items()
            }
        else:
            raise ValueError(f"no builder for {reftype}")
    _save(model, target)
    return {}


def build_romancal_refs(caldir, out_dir, *, force=False, verbose=True):
    """Write romancal reference files from our CALDIR; return their paths and a report.

    Parameters
    ----------
    caldir : dict
        Our CALDIR mapping (keys of `SOURCES`' values -> file paths). Types whose
        source is missing are not built (and listed in the report).
    out_dir : path
        Directory for the files ``<reftype>.asdf`` and ``report.json``.
    force : bool
        Rebuild even the files that are up to date.

    Returns
    -------
    paths : dict
        romancal reftype -> absolute path, for ``override_<reftype>``.
    report : dict
        Per type: source, whether it was rebuilt, seconds, conversion errors.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    paths = {}
    for reftype, keys in SOURCES.items():
        sources = [caldir.get(k) for k in keys]
        target = out_dir / f"{reftype}.asdf"
        if not all(sources):
            report[reftype] = {"missing_source": list(keys)}
            continue
        paths[reftype] = str(target)
        if reftype == "inverselinearity":
            continue  # written with the linearity, from the same fit
        # the linearity pair is one build: stale if either file is
        targets = [target]
        if reftype == "linearity":
            targets.append(out_dir / "inverselinearity.asdf")
        if not force and all(_up_to_date(t, sources) for t in targets):
            for t in targets:
                report.setdefault(t.stem, {})["rebuilt"] = False
            continue
        t0 = time.perf_counter()
        if reftype == "linearity":
            info = build_linearity(sources[0], *targets)
        else:
            info = {reftype: _build_simple(reftype, sources[0], target)}
        seconds = round(time.perf_counter() - t0, 2)
        for name, entry in info.items():
            report[name] = {
                "from": sources[0],
                **entry,
                "rebuilt": True,
                "seconds": seconds,
            }
        if verbose:
            print(
                f"romancal_refs: wrote {', '.join(map(str, targets))} ({seconds} s)",
                flush=True,
            )
    report_path.write_text(json.dumps(report, indent=1))
    return paths, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="legacy-style YAML config (its CALDIR is used)")
    src.add_argument("--caldir", help="directory with roman_wfi_<type>_*.asdf files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--force", action="store_true", help="rebuild every file")
    args = parser.parse_args(argv)
    if args.config:
        caldir = caldir_from_config(args.config)
    else:
        caldir = caldir_from_directory(args.caldir)
    paths, report = build_romancal_refs(caldir, args.out, force=args.force)
    print(json.dumps({"paths": paths, "report": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
