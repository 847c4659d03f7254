"""Is a calibration file the type its slot expects, and is it physically possible?

Three kinds of evidence, strongest first (issue 18, classes 3 and 5):

1. The file's own declared type: ``roman.meta.reftype`` (romancal's ``GAIN``, the
   legacy PIT's and our simulator's ``gain``, ``read``, ``pflat``, ...) or the class of a
   romancal reference model (``GainRef``). A declared type that is another known type
   is an error; a declared type we do not know is left to the signature.
2. A structural signature where nothing is declared: the fields present (a
   ``dark_slope`` makes a dark, ``Smin``/``Smax``/``Sref`` a linearity file, ``anc`` or
   ``amp33`` a read-noise file, a 4-D ``data`` an IPC kernel, ``dq`` alone a mask) and,
   for the files that are one 2-D ``data`` array, its typical value: a gain is 1-4
   e/DN, a flat near 1, a read noise 2.5-200 DN, saturation thresholds thousands of DN.
3. Physical possibility, whatever the type says: a gain that is zero, negative or NaN
   everywhere, saturation thresholds at or below zero everywhere, an IPC kernel whose
   sum is far from 1 or whose deconvolution (a Neumann series) cannot converge.

The values are judged on a regular subsample of the active area (at most ~256 x 256
points), so the check costs milliseconds on a full frame.

Also the exposure itself: the detector a file declares (``meta.instrument.detector``)
and, where a file records them, its read pattern and frame time must be the
exposure's.
"""

import logging
import re
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ExposureInfo", "declared_type", "exposure_problem", "type_problem"]

# Declared type (lower case, as meta.reftype or a romancal model class) -> our reftype.
DECLARED_TYPES = {
    "mask": "mask",
    "saturation": "saturation",
    "dark": "dark",
    "gain": "gain",
    "readnoise": "readnoise",
    "read": "readnoise",
    "linearitylegendre": "linearitylegendre",
    # romancal's LINEARITY is a polynomial, not Legendre: its fields tell it apart
    # (Smin/Smax/Sref are required); a file declaring it is not refused on the name.
    "linearity": "linearitylegendre",
    "ipc4d": "ipc4d",
    "ipc": "ipc4d",
    "flat": "flat",
    "pflat": "flat",
    "biascorr": "biascorr",
    "darkdecaysignal": "darkdecaysignal",
    "darkdecay": "darkdecaysignal",
    "dark_decay": "darkdecaysignal",
    # romancal's WFI imaging photom reference (the photom step's optional file)
    "photom": "photom",
    "wfi_img_photom": "photom",
    "wfiimgphotom": "photom",
}

# Other romancal reference types: never right in any slot of ours.
FOREIGN_TYPES = {
    "superbias",
    "refpix",
    "inverselinearity",
    "integralnonlinearity",
    "area",
    "pixelarea",
    "distortion",
    "apcorr",
    "epsf",
    "abvegaoffset",
    "matable",
    "detectorstatus",
    "skycells",
    "etc",
}

# Typical value (median of the active area) of the one-2-D-array files.
VALUE_RANGES = {
    "gain": (1.0, 4.0, "e/DN"),
    "flat": (0.3, 1.7, ""),
    "readnoise": (2.5, 200.0, "DN"),
    "saturation": (1000.0, 70000.0, "DN"),
}


@dataclass(frozen=True)
class ExposureInfo:
    """What a calibration file must agree with besides the shape."""

    detector: str | None = None
    read_pattern: tuple | None = None
    frame_time: float | None = None

    @classmethod
    def from_model(cls, model):
        """From an L1, ramp or image model (missing items are None)."""
        meta = getattr(model, "meta", None)
        if meta is None:
            return cls()
        instrument = meta.get("instrument", {}) if hasattr(meta, "get") else {}
        exposure = meta.get("exposure", {}) if hasattr(meta, "get") else {}
        detector = instrument.get("detector") if hasattr(instrument, "get") else None
        pattern = exposure.get("read_pattern") if hasattr(exposure, "get") else None
        frame_time = exposure.get("frame_time") if hasattr(exposure, "get") else None
        return cls(
            detector=str(detector) if detector else None,
            read_pattern=_pattern(pattern),
            frame_time=float(frame_time) if _is_number(frame_time) else None,
        )


def _is_number(value):
    return isinstance(value, int | float | np.number) and np.isfinite(value)


def _pattern(value):
    try:
        return tuple(tuple(int(f) for f in r) for r in value) if value else None
    except (TypeError, ValueError):
        return None


def _meta(tree):
    meta = tree.get("meta") if hasattr(tree, "get") else None
    return meta if hasattr(meta, "get") else {}


def declared_type(tree):
    """``(declared name, where)`` from meta.reftype or the model class, or None."""
    reftype = _meta(tree).get("reftype")
    if isinstance(reftype, str) and reftype.strip():
        return reftype.strip(), "meta.reftype"
    name = type(tree).__name__
    if name.endswith("Ref") and len(name) > 3:
        return name, "romancal model class"
    return None


def _normalise(name):
    return name.lower().removesuffix("ref").replace("-", "_")


def _sample(array, border):
    """Regular subsample (<= ~256 per axis) of the active area of the last 2 axes."""
    ny, nx = array.shape[-2:]
    b = border if ny > 2 * border and nx > 2 * border else 0
    sy, sx = max(1, (ny - 2 * b) // 256), max(1, (nx - 2 * b) // 256)
    index = (Ellipsis, slice(b, ny - b, sy), slice(b, nx - b, sx))
    return np.asarray(array[index], dtype=np.float64)


def _median(array, border):
    sample = _sample(array, border)
    finite = sample[np.isfinite(sample)]
    return float(np.median(finite)) if finite.size else None


def signature(tree, border, values=True):
    """Reftypes the fields and values of ``tree`` fit, with the evidence."""

    def has(name):
        return name in tree

    data = tree["data"] if has("data") else None
    ndim = len(data.shape) if hasattr(data, "shape") else None
    if has("decay_table"):
        return {"darkdecaysignal"}, "a 'decay_table'"
    if has("dark_slope"):
        return {"dark"}, "a 'dark_slope' array"
    if has("Smin") or has("Smax") or has("Sref"):
        return {"linearitylegendre"}, "'Smin'/'Smax'/'Sref' arrays"
    if has("anc") or has("amp33") or has("resetnoise"):
        return {"readnoise"}, "'anc'/'amp33'/'resetnoise' fields"
    if data is None:
        if has("dq"):
            return {"mask"}, "a 'dq' array and no 'roman.data' array"
        return None
    if ndim == 4:
        return {"ipc4d"}, "a 4-D 'data' array"
    if ndim == 3:
        return {"dark", "biascorr", "linearitylegendre"}, "a 3-D 'data' array"
    if not values or ndim != 2 or np.dtype(data.dtype).kind != "f":
        return None
    median = _median(data, border)
    if median is None:
        return None
    fits = {
        reftype
        for reftype, (low, high, _) in VALUE_RANGES.items()
        if low <= median <= high
    }
    return fits, f"one 2-D 'data' array of median {median:.4g}"


def type_problem(reftype, tree, border, values=True):
    """Why the file cannot be a ``reftype`` file, or None if it may be.

    ``values=False`` judges by the declared type and the fields only (no array
    read), for a check before the fields' shapes are known to be right.
    """
    declared = declared_type(tree)
    if declared is not None:
        name, where = declared
        key = _normalise(name)
        ours = DECLARED_TYPES.get(key)
        if ours == reftype:
            return None
        if ours is not None or key in FOREIGN_TYPES:
            return f"the file is a {name} file ({where}), not a {reftype} file"
        log.debug("%s: unknown declared type %r, judged by its fields", reftype, name)
    found = signature(tree, border, values)
    if found is None:
        return None
    fits, evidence = found
    if reftype in fits:
        return None
    if reftype in VALUE_RANGES and evidence.startswith("one 2-D"):
        low, high, unit = VALUE_RANGES[reftype]
        expected = f"a {reftype} file has a median in [{low:g}, {high:g}] {unit}"
        looks = f"; it looks like a {' or '.join(sorted(fits))} file" if fits else ""
        return (
            f"no declared type (meta.reftype) and {evidence}: {expected.strip()}"
            f"{looks}, not a {reftype} file"
        )
    return (
        f"no declared type (meta.reftype) and {evidence}: it looks like a "
        f"{' or '.join(sorted(fits))} file, not a {reftype} file"
    )


def physical_problems(reftype, tree, border):
    """``(errors, warnings)``: values no real file of ``reftype`` can have."""
    errors, warnings = [], []
    data = tree.get("data")
    is_frame = data is not None and len(data.shape) == 2
    # The sample first; the whole array only to confirm.
    if reftype == "gain" and is_frame and not np.any(_sample(data, border) > 0):
        b = border if min(data.shape) > 2 * border else 0
        active = np.asarray(data)[b : data.shape[0] - b, b : data.shape[1] - b]
        if not np.any(active > 0):
            errors.append(
                "field 'roman.data': the gain is zero, negative or NaN everywhere"
            )
    if reftype == "saturation" and is_frame:
        sample = _sample(data, border)
        if (
            sample.size
            and np.all(sample[np.isfinite(sample)] <= 0)
            and np.any(np.isfinite(sample))
        ):
            b = border if min(data.shape) > 2 * border else 0
            active = np.asarray(data)[b : data.shape[0] - b, b : data.shape[1] - b]
            if not np.any(active > 0):
                errors.append(
                    "field 'roman.data': every saturation threshold is <= 0 DN, so "
                    "every pixel would be saturated"
                )
    # Model parameters (not per-pixel arrays): a NaN in one of them poisons every
    # pixel (the amp33 row regression, the dark-decay signal), so it cannot be
    # flagged away and the file is refused.
    if reftype == "readnoise":
        amp33 = tree.get("amp33")
        if hasattr(amp33, "get") and amp33.get("valid", True) is not False:
            errors.extend(_nonfinite(amp33, "roman.amp33"))
        errors.extend(_nonfinite(tree.get("anc"), "roman.anc"))
    if reftype == "darkdecaysignal":
        errors.extend(_nonfinite(tree.get("decay_table"), "roman.decay_table"))
    if reftype == "ipc4d" and data is not None and tuple(data.shape[:2]) == (3, 3):
        kernel = _sample(data, 0).reshape(9, -1)
        finite = np.all(np.isfinite(kernel), axis=0)
        kernel = kernel[:, finite]
        if kernel.size:
            total = kernel.sum(axis=0)
            centre = kernel[4]
            # The deconvolution sums (1 - K)^j: it converges where
            # |1 - K_centre| + sum |K_other| < 1.
            norm = np.abs(1 - centre) + np.abs(kernel).sum(axis=0) - np.abs(centre)
            median_sum = float(np.median(total))
            if abs(median_sum - 1) > 0.1:
                errors.append(
                    f"field 'roman.data': the IPC kernel sums to {median_sum:.4g} "
                    f"(median over pixels), far from 1"
                )
            elif (off := np.abs(total - 1) > 0.05).any():
                warnings.append(
                    f"field 'roman.data': the IPC kernel sum is off 1 by more than "
                    f"0.05 at {off.mean():.2%} of the pixels sampled"
                )
            if (diverge := norm >= 1).any():
                errors.append(
                    f"field 'roman.data': the IPC kernel is singular or not invertible "
                    f"by the deconvolution (|1 - centre| + sum |neighbours| >= 1 at "
                    f"{diverge.mean():.2%} of the pixels sampled)"
                )
    return errors, warnings


def _nonfinite(node, where):
    """Problems for every non-finite number or array under a mapping."""
    if node is None:
        return []
    if hasattr(node, "keys"):
        out = []
        for key in node:
            out.extend(_nonfinite(node[key], f"{where}.{key}"))
        return out
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        array = np.asarray(node)
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            count = int(np.sum(~np.isfinite(array)))
            return [f"field '{where}': {count} non-finite value(s) (NaN or inf)"]
        return []
    if isinstance(node, float | np.floating) and not np.isfinite(node):
        return [f"field '{where}': {node} is not a finite number"]
    return []


def _detector_number(name):
    """``WFI07``, ``wfi07``, ``SCA07`` and ``SCA7`` are the same detector: 7."""
    text = str(name).strip().upper()
    digits = re.search(r"(\d+)$", text)
    return int(digits.group(1)) if digits else text


def exposure_problem(reftype, tree, exposure):
    """Why the file does not fit the exposure (detector, read pattern), or None."""
    if exposure is None:
        return None
    meta = _meta(tree)
    problems = []
    instrument = meta.get("instrument", {})
    detector = instrument.get("detector") if hasattr(instrument, "get") else None
    # A dark-decay table holds every detector: its own detector says nothing.
    if (
        reftype != "darkdecaysignal"
        and detector
        and exposure.detector
        and _detector_number(detector) != _detector_number(exposure.detector)
    ):
        problems.append(
            f"field 'roman.meta.instrument.detector': the file is for {detector}, the "
            f"exposure is {exposure.detector}"
        )
    recorded = meta.get("exposure", {})
    if not hasattr(recorded, "get"):
        return "; ".join(problems) or None
    pattern = _pattern(recorded.get("read_pattern"))
    # An EXTRACT_REF exposure has lost its first resultant (the reference read).
    if (
        pattern
        and exposure.read_pattern
        and exposure.read_pattern not in (pattern, pattern[1:])
    ):
        problems.append(
            f"field 'roman.meta.exposure.read_pattern': the file was made for "
            f"read pattern {[list(r) for r in pattern]}, the exposure has "
            f"{[list(r) for r in exposure.read_pattern]}"
        )
    frame_time = recorded.get("frame_time")
    if (
        _is_number(frame_time)
        and exposure.frame_time
        and abs(float(frame_time) - exposure.frame_time) > 1e-3 * exposure.frame_time
    ):
        problems.append(
            f"field 'roman.meta.exposure.frame_time': the file was made for "
            f"frame time {float(frame_time):.6g} s, the exposure has "
            f"{exposure.frame_time:.6g} s"
        )
    return "; ".join(problems) or None
