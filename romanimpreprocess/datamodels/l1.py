"""The Level-1 input: open and validate an exposure, and decode it into a ramp.

The L1 file is a roman_datamodels ``ScienceRawModel`` (uint16 resultants of the full
frame with its reference border, the amp33 reference-output block, the read pattern and
frame time). Decoding (docs/dq_init/index.rst) adds back a stored reference read and
removes the data-encoding offset, exactly once, when the ramp model is made.
"""

import contextlib
import itertools
import logging
import os
import re

import numpy as np
import roman_datamodels as rdm
from roman_datamodels import datamodels as dm

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER
from romanimpreprocess.datamodels.errors import InputFileError
from romanimpreprocess.datamodels.geometry import Geometry
from romanimpreprocess.parallel import run_in_threads

__all__ = ["decoded_uint16", "large_reads", "open_l1", "raw_to_ramp", "validate_l1"]

log = logging.getLogger(__name__)

_DETECTOR = re.compile(r"^WFI(0[1-9]|1[0-8])$")


# asdf reads a compressed block (an lz4 L1) in pieces of the file system's block size,
# 4 KiB: 50 000 Python-level reads for a full-frame L1. Pieces of 4 MiB, the size of
# asdf's own lz4 chunks, take 0.2-0.5 s less (bench/RESULTS.md). Reading only: asdf
# also pads written blocks to this size.
_READ_PIECE = 1 << 22


@contextlib.contextmanager
def large_reads():
    """ASDF files opened inside the block read compressed blocks in 4 MiB pieces."""
    import asdf

    with asdf.config_context() as config:
        config.io_block_size = _READ_PIECE
        yield


def open_l1(path, model=None) -> dm.ScienceRawModel:
    """Open an L1 exposure file and check it before any work starts.

    Parameters
    ----------
    path : str or os.PathLike
        ASDF file holding a ``ScienceRawModel``.
    model : ScienceRawModel, optional
        The file already opened (lazily) by the caller; it is checked and its
        arrays read instead of opening the file again.

    Returns
    -------
    ScienceRawModel

    Raises
    ------
    InputFileError
        Missing, empty, unreadable or inconsistent file; the message names the field.
    """
    path = os.fspath(path)
    if model is not None:
        return _check_and_load(model, path)
    if not os.path.exists(path):
        raise InputFileError(path, "file does not exist")
    if os.path.isdir(path):
        raise InputFileError(path, "is a directory, not an ASDF file")
    if os.path.getsize(path) == 0:
        raise InputFileError(path, "file is empty")
    with large_reads():
        try:
            model = rdm.open(path, lazy_load=True, memmap=True)
        except Exception as exc:
            raise InputFileError(
                path,
                f"cannot be read as a Roman ASDF file ({type(exc).__name__}: {exc})",
            ) from exc
        return _check_and_load(model, path)


def _check_checksums(path):
    """Refuse an L1 whose blocks do not match their MD5 checksums (bit rot, bad copy)."""
    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    if not os.path.isfile(path):
        return
    try:
        problems = block_checksum_problems(path)
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc})") from exc
    if problems:
        raise InputFileError(path, "; ".join(problems))


def _check_and_load(model, path):
    try:
        _check_checksums(path)
    except Exception:
        model.close()
        raise
    if not isinstance(model, dm.ScienceRawModel):
        model.close()
        raise InputFileError(
            path, f"expected a Level-1 ScienceRawModel, got {type(model).__name__}"
        )
    try:
        validate_l1(model, path)
    except Exception:
        model.close()
        raise
    # Map the arrays now: every resultant is used, and a truncated or corrupt file
    # must fail here, naming the file, before any processing starts (an
    # uncompressed block is memory-mapped, and a block that does not fit in the
    # file is refused when it is mapped; a compressed one is read and decoded).
    # The decode to float32 then reads the page cache directly: no 16-bit copy.
    for name in ("data", "amp33", "reference_read", "reference_amp33", "resultantdq"):
        if name in model:
            try:
                # Only the resultants stay mapped (read once, by the decode); the
                # small arrays are copied so that nothing mapped (read-only)
                # reaches the ramp model, whose arrays the steps modify.
                if name == "data":
                    model[name] = np.asarray(model[name])
                else:
                    model[name] = np.array(model[name], copy=True)
            except Exception as exc:
                model.close()
                raise InputFileError(
                    path,
                    f"array cannot be read, the file may be truncated or corrupt "
                    f"({type(exc).__name__}: {exc})",
                    field=f"roman.{name}",
                ) from exc
    return model


def validate_l1(model, path=None):
    """Check shapes, dtypes and the read pattern of an L1 model.

    Returns the exposure `Geometry`. Raises `InputFileError` naming the field.
    """
    path = path or getattr(model.meta, "filename", "<in-memory model>")
    if "data" not in model:
        raise InputFileError(path, "required array is missing", field="roman.data")
    data = model._instance["data"]
    shape = tuple(data.shape)
    if len(shape) != 3:
        raise InputFileError(
            path,
            f"expected a 3-D resultant cube, got shape {shape}",
            field="roman.data",
        )
    if np.dtype(data.dtype) != np.uint16:
        raise InputFileError(
            path,
            f"expected dtype uint16, got {np.dtype(data.dtype)}",
            field="roman.data",
        )
    nres, ny, nx = shape
    if nx % N_CHANNELS or ny <= 2 * REF_BORDER or nx <= 2 * REF_BORDER:
        raise InputFileError(
            path,
            f"frame {ny}x{nx} is not a WFI frame: the width must divide into "
            f"{N_CHANNELS} channels and exceed the {REF_BORDER}-pixel border",
            field="roman.data",
        )
    if "amp33" not in model:
        raise InputFileError(path, "required array is missing", field="roman.amp33")
    amp33 = model._instance["amp33"]
    if tuple(amp33.shape) != (nres, ny, AMP33_WIDTH):
        raise InputFileError(
            path,
            f"shape {tuple(amp33.shape)} does not match the resultants: expected "
            f"({nres}, {ny}, {AMP33_WIDTH})",
            field="roman.amp33",
        )
    exposure = model.meta.exposure
    read_pattern = exposure.get("read_pattern") if hasattr(exposure, "get") else None
    if not read_pattern:
        raise InputFileError(
            path, "read pattern is missing or empty", field="meta.exposure.read_pattern"
        )
    read_pattern = [list(r) for r in read_pattern]
    if len(read_pattern) != nres:
        raise InputFileError(
            path,
            f"read pattern has {len(read_pattern)} resultants but the data has {nres}",
            field="meta.exposure.read_pattern",
        )
    for i, frames in enumerate(read_pattern):
        if not frames or any(b - a != 1 for a, b in itertools.pairwise(frames)):
            raise InputFileError(
                path,
                f"resultant {i} frames {frames} are not a contiguous run",
                field="meta.exposure.read_pattern",
            )
    if any(read_pattern[i + 1][0] <= read_pattern[i][-1] for i in range(nres - 1)):
        raise InputFileError(
            path,
            "resultants are not in increasing frame order",
            field="meta.exposure.read_pattern",
        )
    frame_time = exposure.get("frame_time")
    if frame_time is None or not np.isfinite(frame_time) or frame_time <= 0:
        raise InputFileError(
            path,
            f"frame time must be a positive number, got {frame_time!r}",
            field="meta.exposure.frame_time",
        )
    detector = str(model.meta.instrument.get("detector", ""))
    if not _DETECTOR.match(detector):
        raise InputFileError(
            path,
            f"unknown detector {detector!r}; expected WFI01..WFI18",
            field="meta.instrument.detector",
        )
    return Geometry(nresultants=nres, ny=ny, nx=nx)


def raw_to_ramp(raw, threads=None) -> dm.RampModel:
    """Decode an L1 ``ScienceRawModel`` into a float32 ``RampModel``.

    The reference read (if stored) is added back to every resultant and the
    data-encoding offset is removed from data and amp33 (amp33 stays uint16, with
    modular arithmetic, as the L1 encoding uses). ``groupdq`` starts from the L1
    ``resultantdq`` if present; ``pixeldq`` starts at zero; every required
    ``cal_step`` is INCOMPLETE. A ``RampModel`` is returned unchanged.

    The model is made as romancal's ``dq_init.to_ramp_model`` makes it (a test
    compares them), except that the resultants are decoded plane by plane in
    ``threads`` threads (None = `romanimpreprocess.parallel.step_threads`): on a
    full frame the float32 cube is 0.4 GB of new memory, whose first touch costs
    about 1 s on one core.
    """
    if isinstance(raw, dm.RampModel):
        return raw
    if not isinstance(raw, dm.ScienceRawModel):
        raise TypeError(f"expected a ScienceRawModel or RampModel, got {type(raw)}")
    ramp = dm.RampModel.create_from_model({**raw, "data": None})
    ramp.meta.cal_step = {}
    required = ramp.schema_info("required")["roman"]["meta"]["cal_step"]["required"]
    for step_name in required.info:
        ramp.meta.cal_step[step_name] = raw.meta.get("cal_step", {}).get(
            step_name, "INCOMPLETE"
        )
    reference_read = raw.get("reference_read") if "reference_read" in raw else None
    offset = int(raw.meta.instrument.get("data_encoding_offset", 0) or 0)
    ramp.data = _decode_resultants(raw.data, reference_read, offset, threads)
    shape = ramp.data.shape
    ramp.pixeldq = np.zeros(shape[1:], dtype=np.uint32)
    if "resultantdq" in ramp:
        ramp.groupdq = ramp.pop("resultantdq")
    else:
        ramp.groupdq = np.zeros(shape, dtype=np.uint8)
    if isinstance(data_problem := ramp.meta.exposure.get("data_problem"), bool):
        ramp.meta.exposure.data_problem = "True" if data_problem else None
    if "reference_read" in ramp:
        del ramp.reference_read
    ramp.amp33 = _decoded_amp33(ramp, offset)
    if "reference_amp33" in ramp:
        del ramp.reference_amp33
    if offset:
        log.info("Removed data-encoding offset %d DN from data and amp33", offset)
    b = REF_BORDER
    ny, nx = ramp.data.shape[1:]
    ramp.border_ref_pix_left = ramp.data[:, :, :b].copy()
    ramp.border_ref_pix_right = ramp.data[:, :, -b:].copy()
    ramp.border_ref_pix_bottom = ramp.data[:, :b, :].copy()
    ramp.border_ref_pix_top = ramp.data[:, -b:, :].copy()
    ramp.dq_border_ref_pix_left = np.zeros((ny, b), np.uint32)
    ramp.dq_border_ref_pix_right = np.zeros((ny, b), np.uint32)
    ramp.dq_border_ref_pix_bottom = np.zeros((b, nx), np.uint32)
    ramp.dq_border_ref_pix_top = np.zeros((b, nx), np.uint32)
    return ramp


def _decoded_amp33(model, offset):
    """amp33 + stored reference amp33 - offset, uint16 (modular, as the L1 encoding)."""
    amp33 = model.amp33
    if "reference_amp33" in model:
        amp33 = amp33 + np.asarray(model.reference_amp33, dtype=np.uint16)
    if offset:
        amp33 = amp33 - np.uint16(offset)
    return np.array(amp33, dtype=np.uint16, copy=True)


def decoded_uint16(raw, planes=True):
    """The decoded L1 resultants rounded to uint16, made one plane at a time.

    Equal to ``np.clip(np.round(raw_to_ramp(raw).data), 0, 65535)`` as uint16 (the
    same float32 decoding, plane by plane) and the decoded amp33 of `raw_to_ramp`,
    without the float32 cube (0.4 GB on a full frame of 6 resultants) and its
    rounding temporaries: the noise step's read-noise layers re-use the raw ramp
    (docs/noise/index.rst).

    Parameters
    ----------
    raw : ScienceRawModel
    planes : bool
        False: only the amp33 is decoded (``data`` is None).

    Returns
    -------
    data : ndarray of uint16, shape (n, ny, nx), or None
    amp33 : ndarray of uint16, shape (n, ny, w)
    """
    if not isinstance(raw, dm.ScienceRawModel):
        raise TypeError(f"expected a ScienceRawModel, got {type(raw)}")
    reference_read = raw.get("reference_read") if "reference_read" in raw else None
    offset = int(raw.meta.instrument.get("data_encoding_offset", 0) or 0)
    amp33 = _decoded_amp33(raw, offset)
    if not planes:
        return None, amp33
    resultants = raw.data
    data = np.empty(resultants.shape, dtype=np.uint16)
    for k in range(resultants.shape[0]):
        plane = _decode_resultants(resultants[k : k + 1], reference_read, offset, 1)
        data[k] = np.clip(np.round(plane[0]), 0, 65535)
    return data, amp33


def _decode_resultants(data, reference_read, offset, threads):
    """float32 resultants: ``data + reference_read - offset``, plane by plane.

    The arithmetic is the one of converting the whole cube and then adding and
    subtracting in float32, so the bits do not depend on ``threads``.
    """
    out = np.empty(data.shape, dtype=np.float32)
    ref = None if reference_read is None else np.asarray(reference_read, np.float32)

    def decode(j):
        out[j] = data[j]
        if ref is not None:
            out[j] += ref
        if offset:
            out[j] -= np.float32(offset)

    run_in_threads(decode, range(data.shape[0]), threads)
    return out
