"""The Level-2 product: one way to finish it (`finalize_l2`) and to write it (`write_l2`).

The in-memory rate image carries err and the variances in float32; the rdm 1.1.0
schema stores them as float16. `finalize_l2` casts them (values beyond the float16
range are clipped to its maximum and flagged UNRELIABLE_ERROR, never inf); with
``float32_errors`` it also keeps the float32 arrays in ``processinfo``
(``err_float32``, ``var_poisson_float32``, ``var_rnoise_float32``: 200 MB on a full
frame, which is why they are not kept by default, docs/output.rst). `write_l2` writes the ASDF file with ``processinfo`` as a
top-level branch beside ``roman`` (the legacy layout) and, on request, the legacy FITS
copy; both files are written to a temporary directory and renamed into place.

Outside ``legacy_compat``, `finalize_l2` also gives DO_NOT_USE to every pixel whose
flags say its value means nothing (`UNUSABLE_FLAGS`), so that downstream tools that
skip only DO_NOT_USE (romancal's resample) skip them too.
"""

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import os
import threading

import asdf
import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import OMEGA_IDEAL, REF_BORDER
from romanimpreprocess.parallel import run_in_threads, step_threads

__all__ = [
    "FLOAT16_FIELDS",
    "UNUSABLE_FLAGS",
    "fill_no_slope",
    "finalize_l2",
    "fits_path",
    "flag_unusable",
    "full_frame_dq",
    "mask_path",
    "plain_tree",
    "read_processinfo",
    "write_l2",
]

log = logging.getLogger(__name__)

FLOAT16_FIELDS = ("err", "var_poisson", "var_rnoise", "var_flat")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_CAL_STATES = ("INCOMPLETE", "N/A", "COMPLETE", "FAILED", "SKIPPED")
FITS_MASKED_VALUE = -1000.0
# Written where a pixel has no slope (and no NaN is wanted): data and data_withsky 0,
# var_rnoise the largest float16 (a weight of ~0 for inverse-variance users),
# var_poisson and var_flat 0, err its square root; the pixel gets DO_NOT_USE.
NO_SLOPE_DATA = 0.0
NO_SLOPE_VAR_RNOISE = _FLOAT16_MAX
NO_SLOPE_ERR = float(np.sqrt(np.float32(_FLOAT16_MAX)))
# Flags whose pixel value carries no information about the sky: a dead pixel (no
# response, its data ~0), a gain or a flat outside the accepted range (clipped, so
# the value is scaled by a made-up number). romancal's tools skip only DO_NOT_USE
# (resample's good_bits, outlier_detection, skymatch), and a mask reference file may
# set these flags without DO_NOT_USE (the simulator's and, nothing in romancal forbids
# it, a real one): without DO_NOT_USE a dead pixel's zero is coadded.
UNUSABLE_FLAGS = pixel.DEAD | pixel.NO_GAIN_VALUE | pixel.NO_FLAT_FIELD


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


@functools.cache
def _software_versions():
    # the same for every exposure a process writes (rip-batch workers write many)
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


def fill_no_slope(model, *, keep_nan=False):
    """Give the pixels without a slope finite values and DO_NOT_USE (in place).

    A pixel has no slope where ``data`` is not finite. There ``data`` and
    ``data_withsky`` become `NO_SLOPE_DATA`, ``var_rnoise`` `NO_SLOPE_VAR_RNOISE`,
    ``var_poisson`` and ``var_flat`` 0 and ``err`` `NO_SLOPE_ERR`; any other non-finite
    value of those arrays gets the same value. Finite values elsewhere are not
    touched. With ``keep_nan`` nothing is changed but DO_NOT_USE. Returns the number
    of pixels without a slope.
    """
    data = np.asarray(model.data)
    no_slope = ~np.isfinite(data)
    count = int(no_slope.sum())
    if count:
        model.dq = np.asarray(model.dq, dtype=np.uint32)
        model.dq[no_slope] |= np.uint32(pixel.DO_NOT_USE)
    if keep_nan:
        return count
    fills = {
        "data": NO_SLOPE_DATA,
        "data_withsky": NO_SLOPE_DATA,
        "err": NO_SLOPE_ERR,
        "var_poisson": 0.0,
        "var_rnoise": NO_SLOPE_VAR_RNOISE,
        "var_flat": 0.0,
    }
    for key, value in fills.items():
        if key not in model or model[key] is None or np.shape(model[key]) != data.shape:
            continue
        array = np.asarray(model[key])
        if array.dtype.kind != "f":
            continue
        bad = ~np.isfinite(array)
        if key != "data":
            bad |= no_slope
        if bad.any():
            array = np.array(array, copy=True)
            array[bad] = value
            model[key] = array
    if count:
        log.info(
            "%d pixel(s) without a slope: data 0, var_rnoise %g, err %.6g, "
            "DO_NOT_USE (keep_nan keeps NaN)",
            count,
            NO_SLOPE_VAR_RNOISE,
            NO_SLOPE_ERR,
        )
    return count


def flag_unusable(dq):
    """OR DO_NOT_USE into ``dq`` (in place) where one of `UNUSABLE_FLAGS` is set.

    Parameters
    ----------
    dq : ndarray of uint32
        Pixel flags of the L2, modified in place.

    Returns
    -------
    int
        The number of pixels that got DO_NOT_USE (they did not have it before).
    """
    unusable = (dq & np.uint32(UNUSABLE_FLAGS)) != 0
    newly = unusable & ((dq & np.uint32(pixel.DO_NOT_USE)) == 0)
    dq[unusable] |= np.uint32(pixel.DO_NOT_USE)
    return int(newly.sum())


# rows per piece of the numpy float16 casts: a few MB per temporary
_FLOAT16_BLOCK_ROWS = 256


def _float16_flagged(value, dq, *, nan=None):
    """``value`` clipped to the float16 range and cast to float16.

    Where ``|value|`` exceeds the float16 maximum, ``dq`` (if given) gets
    UNRELIABLE_ERROR; with ``nan`` set, NaN becomes ``nan`` first. Returns the
    float16 array and the number of values clipped. A 2-d float32 plane goes
    through `float16_kernels.clip_to_half_bits` (one compiled pass, rows on
    `romanimpreprocess.parallel.step_threads` threads: a full frame's six planes in
    0.12 s instead of 0.34 s); anything else through numpy. The bits are those of
    ``np.clip(value, -max, max, out=float16)`` either way.
    """
    value = np.asarray(value)
    half = np.empty(value.shape, dtype=np.float16)
    if value.ndim == 2 and value.dtype == np.float32 and value.size:
        from romanimpreprocess.datamodels.float16_kernels import clip_to_half_bits
        from romanimpreprocess.parallel import kernel_threads

        if dq is None or (dq.shape == value.shape and dq.dtype == np.uint32):
            flags = np.zeros((0, 0), np.uint32) if dq is None else dq
            with kernel_threads():
                clipped = clip_to_half_bits(
                    np.ascontiguousarray(value).view(np.uint32),
                    half.view(np.uint16),
                    flags,
                    np.uint32(pixel.UNRELIABLE_ERROR),
                    np.float32(_FLOAT16_MAX).view(np.uint32),
                    np.float32(0.0 if nan is None else nan).view(np.uint32),
                    nan is not None,
                )
            return half, int(clipped)
    blocks = [Ellipsis]
    if value.ndim == 2:
        blocks = [
            slice(start, start + _FLOAT16_BLOCK_ROWS)
            for start in range(0, value.shape[0], _FLOAT16_BLOCK_ROWS)
        ]
    clipped = [0] * len(blocks)
    flag = np.uint32(pixel.UNRELIABLE_ERROR)

    def cast(index):
        block = blocks[index]
        piece = value[block]
        if nan is not None:
            piece = np.nan_to_num(piece, nan=nan)
        too_big = np.abs(piece) > _FLOAT16_MAX
        if too_big.any():
            clipped[index] = int(too_big.sum())
            if dq is not None:
                dq[block][too_big] |= flag
        np.clip(piece, -_FLOAT16_MAX, _FLOAT16_MAX, out=half[block], casting="unsafe")

    run_in_threads(cast, range(len(blocks)))
    return half, sum(clipped)


def finalize_l2(
    model,
    *,
    cal_steps=None,
    config=None,
    log_text="",
    references=None,
    sliceout=False,
    legacy_compat=False,
    keep_nan=False,
    float32_errors=False,
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
        Recorded in ``processinfo``. When False, pixels with one of
        `UNUSABLE_FLAGS` get DO_NOT_USE (`flag_unusable`); the legacy 1.0.0 leaves
        them without it, and so does ``legacy_compat=True``.
    keep_nan : bool
        Keep NaN where a pixel has no slope; by default those pixels get the finite
        `NO_SLOPE_DATA`, `NO_SLOPE_VAR_RNOISE`, `NO_SLOPE_ERR` (see `fill_no_slope`).
    float32_errors : bool
        Also keep err, var_poisson and var_rnoise in float32 in ``processinfo``
        (``<name>_float32``). Off by default: the three planes are 200 MB of a full
        frame's L2 and do not compress (docs/output.rst, "File size").
    """
    info = dict(model["processinfo"]) if "processinfo" in model else {}
    shape = model.data.shape
    info["no_slope_pixels"] = fill_no_slope(model, keep_nan=keep_nan)
    if not legacy_compat:
        model.dq = np.asarray(model.dq, dtype=np.uint32)
        count = flag_unusable(model.dq)
        if count:
            log.info(
                "%d DEAD / NO_GAIN_VALUE / NO_FLAT_FIELD pixel(s) flagged DO_NOT_USE "
                "(downstream tools skip them)",
                count,
            )
    info["keep_nan"] = bool(keep_nan)
    info["float32_errors"] = bool(float32_errors)

    # float16 fields; the float32 originals kept only on request
    for key in FLOAT16_FIELDS:
        if key in model and model[key] is not None and model[key].shape == shape:
            value = np.asarray(model[key], dtype=np.float32)
        elif key == "var_flat":
            value = np.zeros(shape, dtype=np.float32)
        else:
            continue
        if float32_errors and key != "var_flat":
            # the model gets a float16 array below: the float32 one is not copied
            info[f"{key}_float32"] = value
        half, n_too_big = _float16_flagged(value, model.dq)
        if n_too_big:
            log.warning(
                "%s: %d value(s) beyond the float16 range clipped to %g and flagged "
                "UNRELIABLE_ERROR%s",
                key,
                n_too_big,
                _FLOAT16_MAX,
                " (float32 values in processinfo)" if float32_errors else "",
            )
        model[key] = half
    for key in ("chisq", "dumo"):
        if key in model and model[key] is not None:
            model[key] = _float16_flagged(
                np.asarray(model[key], np.float32), None, nan=0.0
            )[0]
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
    info["software"] = dict(_software_versions())
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
    from romanimpreprocess.utils import maskhandling

    borders = {
        key: model[key]
        for key in (
            f"dq_border_ref_pix_{side}" for side in ("left", "right", "bottom", "top")
        )
        if key in model
    }
    return maskhandling.full_frame_dq(model.dq, borders)


def _science_mask(model):
    """`PixelMask1` of the science area, border flags grown in (the FITS/mask files)."""
    from romanimpreprocess.utils.maskhandling import PixelMask1

    b = REF_BORDER
    return PixelMask1.build(full_frame_dq(model))[b:-b, b:-b]


def _write_fits(model, path, masked=None):
    from astropy.io import fits

    data = np.asarray(model.data, dtype=np.float32)
    if masked is None:
        masked = _science_mask(model)
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

    from romanimpreprocess.utils.direct_write import open_direct

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
            stored_as_is = []
            for array in _arrays(af.tree):
                compression = _compression_for(array)
                af.set_array_compression(array, compression)
                if compression is None:
                    stored_as_is.append(array)
            # around the page cache where it can, as the noise step writes its layers
            with (
                _checksums_ahead(stored_as_is),
                open_direct(path) or open(path, "wb") as out,
            ):
                af.write_to(out)
    finally:
        if had_info:
            node["processinfo"] = info


# arrays smaller than this are hashed by asdf itself as it writes them
_AHEAD_MIN_BYTES = 1 << 20
_AHEAD_LOCK = threading.Lock()


def _md5(array):
    digest = hashlib.new("md5", usedforsecurity=False)
    digest.update(array.reshape(-1).view(np.uint8))
    return digest.digest()


@contextlib.contextmanager
def _checksums_ahead(arrays):
    """asdf's block checksums of ``arrays`` computed on threads while it writes.

    asdf hashes every block (MD5, the header's checksum) just before writing it, on
    the writing thread: 0.6-0.8 s of a full-frame L2, one core. Here the MD5 of each
    large C-contiguous array that is stored uncompressed is started on
    `romanimpreprocess.parallel.step_threads` threads before asdf serialises the
    tree, and asdf's checksum function, for the duration of the write, hands out the
    digest of a block whose bytes are one of those arrays (same memory, same size),
    computing any other block's itself. The file is byte for byte what asdf writes.
    """
    from concurrent.futures import ThreadPoolExecutor

    from asdf._block import io as block_io

    original = getattr(block_io, "calculate_block_checksum", None)
    # the arrays stay referenced (and so at their addresses) until the write ends
    ahead = [
        a
        for a in arrays
        if a.nbytes >= _AHEAD_MIN_BYTES
        and a.flags.c_contiguous
        and not a.dtype.hasobject
    ]
    if original is None or not ahead or step_threads() < 2:
        yield
        return
    # one write at a time swaps asdf's function (threads writing L2s side by side:
    # the others hash as asdf does), so it is always asdf's own that is put back
    if not _AHEAD_LOCK.acquire(blocking=False):
        yield
        return

    def key(buffer):
        interface = np.asarray(buffer).__array_interface__
        return interface["data"][0], np.asarray(buffer).nbytes

    try:
        pool = ThreadPoolExecutor(step_threads())
        digests = {key(a): pool.submit(_md5, a) for a in ahead}

        def checksum(data):
            digest = digests.get(key(data))
            return original(data) if digest is None else digest.result()

        block_io.calculate_block_checksum = checksum
        try:
            yield
        finally:
            block_io.calculate_block_checksum = original
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        _AHEAD_LOCK.release()


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


def mask_path(path):
    """Name of the mask file of an L2 file: ``<stem>_mask.fits`` (survey naming)."""
    return os.fspath(path).removesuffix(".asdf") + "_mask.fits"


def write_l2(model, path, *, fits_output=False, mask_output=False):
    """Write the L2 ASDF (and the FITS copy, the mask file) atomically; return its path.

    Every file is written completely into a hidden temporary directory next to
    ``path`` before any is renamed into place, so a failed write (full disk, a kill)
    leaves every existing file untouched. The renames then replace the files together
    (`romanimpreprocess.utils.atomic.replace_together`): should one fail, those done
    are undone, so the ASDF, its FITS copy and its mask file always come from the same
    run. A failure names the output path. The mask file (``mask_output``,
    `mask_path`) is the `PixelMask1` file of `romanimpreprocess.utils.maskhandling`.
    """
    from romanimpreprocess.utils.atomic import atomic_directory, replace_together

    path = os.path.abspath(os.fspath(path))
    targets = [path]
    try:
        with atomic_directory(path) as tmpdir:
            temporaries = [os.path.join(tmpdir, os.path.basename(path))]
            _write_asdf(model, temporaries[0])
            masked = _science_mask(model) if (fits_output or mask_output) else None
            # the ASDF is renamed last: an ASDF that exists has its companions
            if fits_output:
                targets.insert(0, fits_path(path))
                temporaries.insert(
                    0, os.path.join(tmpdir, os.path.basename(targets[0]))
                )
                _write_fits(model, temporaries[0], masked)
            if mask_output:
                from romanimpreprocess.utils.maskhandling import fits_mask_hdus

                targets.insert(0, mask_path(path))
                temporaries.insert(
                    0, os.path.join(tmpdir, os.path.basename(targets[0]))
                )
                data = np.asarray(model.data, dtype=np.float32)
                fits_mask_hdus(data, masked).writeto(temporaries[0])
            replace_together(temporaries, targets, tmpdir)
    except OSError as err:
        if err.filename is not None and str(err.filename) in targets:
            raise
        raise OSError(
            err.errno, f"cannot write {path}: {err.strerror or err}", path
        ) from err
    for target in targets[:-1]:
        log.info("Wrote %s", target)
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
