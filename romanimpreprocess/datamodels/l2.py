"""The Level-2 product: one way to finish it (`finalize_l2`) and to write it (`write_l2`).

The in-memory rate image carries err and the variances in float32; the rdm 1.1.0
schema stores them as float16. `finalize_l2` casts them (values beyond the float16
range are clipped to its maximum and flagged UNRELIABLE_ERROR, never inf) and keeps
the float32 arrays in ``processinfo`` (``err_float32``, ``var_poisson_float32``,
``var_rnoise_float32``). `write_l2` writes the ASDF file with ``processinfo`` as a
top-level branch beside ``roman`` (the legacy layout) and, on request, the legacy FITS
copy; both files are written to a temporary directory and renamed into place.
"""

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile

import asdf
import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import OMEGA_IDEAL, REF_BORDER

__all__ = [
    "FLOAT16_FIELDS",
    "finalize_l2",
    "fits_path",
    "full_frame_dq",
    "plain_tree",
    "read_processinfo",
    "write_l2",
]

log = logging.getLogger(__name__)

FLOAT16_FIELDS = ("err", "var_poisson", "var_rnoise", "var_flat")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_CAL_STATES = ("INCOMPLETE", "N/A", "COMPLETE", "FAILED", "SKIPPED")
FITS_MASKED_VALUE = -1000.0


def _required_cal_steps():
    schema = asdf.schema.load_schema(
        "asdf://stsci.edu/datamodels/roman/schemas/meta/l2_cal_step-2.0.0"
    )
    return list(schema["required"])


def plain_tree(node):
    """ASDF-friendly copy: numpy scalars to Python, tuples to lists."""
    if isinstance(node, dict):
        return {str(k): plain_tree(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [plain_tree(v) for v in node]
    if isinstance(node, np.generic):
        return node.item()
    return node


def file_fingerprint(path, chunk=1 << 20):
    """Size, mtime and SHA-256 of the first and last MiB of ``path``.

    A full SHA-256 of a full-frame calibration set (several GB) would cost seconds
    per exposure; the fingerprint identifies the file version at negligible cost.
    """
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        if st.st_size > 2 * chunk:
            f.seek(-chunk, os.SEEK_END)
            digest.update(f.read(chunk))
    return {
        "path": os.path.abspath(path),
        "size": int(st.st_size),
        "mtime": float(st.st_mtime),
        "sha256_first_last_mib": digest.hexdigest(),
    }


def _software_versions():
    out = {}
    for name in (
        "romanimpreprocess",
        "romancal",
        "stcal",
        "stpipe",
        "roman_datamodels",
        "asdf",
        "numpy",
        "scipy",
        "astropy",
        "gwcs",
    ):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def finalize_l2(
    model,
    *,
    cal_steps=None,
    config=None,
    log_text="",
    references=None,
    sliceout=False,
    legacy_compat=False,
):
    """Make the rate `ImageModel` a schema-valid L2 product (in place; returned).

    Parameters
    ----------
    model : ImageModel
        Output of the image steps (float32 err/variances in memory).
    cal_steps : dict
        ``{cal_step key: status}`` of our steps; every required romancal key not
        given is INCOMPLETE (``assign_wcs`` COMPLETE when ``meta.wcs`` is set).
    config : dict or None
        The legacy config, stored as ``processinfo.config``.
    log_text : str
        The run's log, stored as ``processinfo.log``.
    references : dict
        ``{reftype: path}``; fingerprints are stored in ``processinfo.references``.
    sliceout : bool
        Keep ``processinfo.endslice`` (legacy SLICEOUT); otherwise it is dropped.
    legacy_compat : bool
        Unused by the arrays; recorded in ``processinfo``.
    """
    info = dict(model["processinfo"]) if "processinfo" in model else {}
    shape = model.data.shape

    # float16 fields, float32 originals kept
    for key in FLOAT16_FIELDS:
        if key in model and model[key] is not None and model[key].shape == shape:
            value = np.asarray(model[key], dtype=np.float32)
        elif key == "var_flat":
            value = np.zeros(shape, dtype=np.float32)
        else:
            continue
        if key != "var_flat":
            # the model gets a float16 array below: the float32 one is not copied
            info[f"{key}_float32"] = value
        too_big = np.abs(value) > _FLOAT16_MAX
        if too_big.any():
            model.dq[too_big] |= np.uint32(pixel.UNRELIABLE_ERROR)
            log.warning(
                "%s: %d value(s) beyond the float16 range clipped to %g and flagged "
                "UNRELIABLE_ERROR (float32 values in processinfo)",
                key,
                int(too_big.sum()),
                _FLOAT16_MAX,
            )
        half = np.empty(shape, dtype=np.float16)
        np.clip(value, -_FLOAT16_MAX, _FLOAT16_MAX, out=half, casting="unsafe")
        model[key] = half
    for key in ("chisq", "dumo"):
        if key in model and model[key] is not None:
            value = np.nan_to_num(np.asarray(model[key], np.float32), nan=0.0)
            model[key] = np.clip(value, -_FLOAT16_MAX, _FLOAT16_MAX).astype(np.float16)
    model.data = np.asarray(model.data, dtype=np.float32)
    model.dq = np.asarray(model.dq, dtype=np.uint32)
    if "data_withsky" in model:
        model["data_withsky"] = np.asarray(model["data_withsky"], dtype=np.float32)

    # cal_step: every romancal key, ours, no stpipe rip_* aliases
    recorded = dict(model.meta.cal_step) if "cal_step" in model.meta else {}
    recorded = {k: v for k, v in recorded.items() if not str(k).startswith("rip_")}
    recorded.update(cal_steps or {})
    for key in _required_cal_steps():
        recorded.setdefault(key, "INCOMPLETE")
    if model.meta.get("wcs") is not None and recorded["assign_wcs"] == "INCOMPLETE":
        recorded["assign_wcs"] = "COMPLETE"
    for key, value in recorded.items():
        if value not in _CAL_STATES:
            recorded[key] = "INCOMPLETE"
    model.meta.cal_step = recorded

    meta = model.meta
    meta.calibration_software_name = "romanimpreprocess"
    meta.calibration_software_version = importlib.metadata.version("romanimpreprocess")
    meta.product_type = "l2"
    # The data are flattened DN/s per ideal pixel (area-normalised): the pixel area
    # that converts them to surface brightness is Omega_ideal. The conversion to MJy/sr
    # is the photom step's; without it an L1's value (other units) or the -999999
    # placeholder must not reach FluxStep: None makes it stop instead.
    if recorded.get("photom") != "COMPLETE":
        meta.photometry = {
            "conversion_megajanskys": None,
            "conversion_megajanskys_uncertainty": None,
            "pixel_area": OMEGA_IDEAL,
        }
    else:
        meta.photometry.pixel_area = OMEGA_IDEAL

    if not sliceout:
        info.pop("endslice", None)
    elif info.get("endslice") is None:
        raise ValueError("sliceout: no endslice (too many resultants, >= 128)")
    info.setdefault("medsky", float("nan"))
    info.setdefault("skyorder", -1)
    info.setdefault("skycoefs", np.zeros(0, np.float32))
    info["config"] = plain_tree(config) if config is not None else None
    info["log"] = log_text
    info["software"] = _software_versions()
    info["legacy_compat"] = bool(legacy_compat)
    refs = {}
    for reftype, path in (references or {}).items():
        try:
            refs[reftype] = file_fingerprint(path)
        except OSError as err:
            refs[reftype] = {"path": str(path), "error": str(err)}
    info["references"] = refs
    model["processinfo"] = plain_tree(info)
    return model


def fits_path(path):
    """Name of the legacy FITS copy of an L2 file: ``<stem>_asdf_to.fits``."""
    path = os.fspath(path)
    stem = path.removesuffix(".asdf")
    return stem + "_asdf_to.fits"


def full_frame_dq(model):
    """The science dq re-embedded in the frame with the border dq around it."""
    b = REF_BORDER
    ny, nx = model.dq.shape
    dq = np.zeros((ny + 2 * b, nx + 2 * b), dtype=np.uint32)
    dq[b:-b, b:-b] = model.dq
    for side, index in (
        ("left", (slice(None), slice(0, b))),
        ("right", (slice(None), slice(-b, None))),
        ("bottom", (slice(0, b), slice(None))),
        ("top", (slice(-b, None), slice(None))),
    ):
        key = f"dq_border_ref_pix_{side}"
        if key in model and model[key].shape == dq[index].shape:
            dq[index] |= np.asarray(model[key], dtype=np.uint32)
    return dq


def _write_fits(model, path):
    from astropy.io import fits

    from romanimpreprocess.sky.sky import pixel_mask1

    b = REF_BORDER
    data = np.asarray(model.data, dtype=np.float32)
    masked = pixel_mask1(full_frame_dq(model))[b:-b, b:-b]
    good_data = np.where(masked, np.float32(FITS_MASKED_VALUE), data)
    fits.HDUList(
        [
            fits.PrimaryHDU(data),
            fits.ImageHDU(np.asarray(model.dq, dtype=np.uint32), name="DQ"),
            fits.ImageHDU(good_data.astype(np.float32), name="MASKED"),
        ]
    ).writeto(path)


def _write_asdf(model, path):
    from astropy.time import Time
    from roman_datamodels.datamodels._utils import (
        temporary_update_filedate,
        temporary_update_filename,
    )

    info = model.get("processinfo", {})
    node = model._instance
    had_info = "processinfo" in node
    if had_info:
        del node["processinfo"]
    try:
        with (
            temporary_update_filename(model, os.path.basename(path)),
            temporary_update_filedate(model, Time.now()),
        ):
            # write_to validates the whole tree against the schemas (and refuses an
            # invalid one): no separate model.validate(), which costs as much again.
            af = asdf.AsdfFile({"processinfo": info})
            af["roman"] = node
            for array in _arrays(af.tree):
                af.set_array_compression(array, _compression_for(array))
            af.write_to(path)
    finally:
        if had_info:
            node["processinfo"] = info


# lz4 is used for an array only when a sample of it compresses to less than this
# fraction: the float32/float16 rate and error planes hold noise and do not compress
# (ratio 0.99-1.00, ~1.2 s of CPU per full frame for nothing), flags and constant
# planes shrink 50-250 times.
LZ4_USEFUL_RATIO = 0.9
_LZ4_SAMPLE_BYTES = 1 << 20


def _compression_for(array):
    """``"lz4"`` if a sample of ``array`` compresses usefully, else None."""
    import lz4.block

    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if flat.size < 4096:
        return "lz4"
    # samples from the start, middle and end: flags cluster, noise does not
    step = max(1, flat.size // 3)
    pieces = [flat[i : i + _LZ4_SAMPLE_BYTES // 3] for i in range(0, flat.size, step)]
    sample = np.concatenate(pieces[:3]).tobytes()
    compressed = lz4.block.compress(sample, store_size=False)
    return "lz4" if len(compressed) < LZ4_USEFUL_RATIO * len(sample) else None


def _arrays(node):
    """Every numpy array in an ASDF tree (dicts, lists, tagged nodes)."""
    if isinstance(node, np.ndarray):
        yield node
    elif isinstance(node, dict) or hasattr(node, "items"):
        for value in node.values():
            yield from _arrays(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _arrays(value)


def write_l2(model, path, *, fits_output=False):
    """Write the L2 ASDF (and the FITS copy) atomically; return the ASDF path.

    Both files are written into a hidden temporary directory next to ``path`` and
    renamed into place (FITS first, the ASDF last: an ASDF that exists is complete).
    On any error nothing is left and existing files are untouched.
    """
    from romanimpreprocess.stpipe.core import _temp_prefix, remove_stale_temporaries

    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    tmpdir = tempfile.mkdtemp(prefix=_temp_prefix(), dir=directory)
    try:
        tmp_asdf = os.path.join(tmpdir, os.path.basename(path))
        _write_asdf(model, tmp_asdf)
        if fits_output:
            target = fits_path(path)
            tmp_fits = os.path.join(tmpdir, os.path.basename(target))
            _write_fits(model, tmp_fits)
            os.replace(tmp_fits, target)
            log.info("Wrote FITS copy %s", target)
        os.replace(tmp_asdf, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    log.info("Wrote L2 product %s", path)
    return path


def read_processinfo(path):
    """The ``processinfo`` branch of an L2 file (arrays loaded)."""
    with asdf.open(path, lazy_load=False) as af:
        info = af.tree.get("processinfo")
        if info is None and "processinfo" in af.tree.get("roman", {}):
            info = af.tree["roman"]["processinfo"]
        return _materialise(info)


def _materialise(node):
    if isinstance(node, dict):
        return {k: _materialise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_materialise(v) for v in node]
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return np.array(node)
    return node
