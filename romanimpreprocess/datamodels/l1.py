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

__all__ = [
    "ChecksumsAhead",
    "decode_rows",
    "decoded_uint16",
    "large_reads",
    "lz4_chunk_rows",
    "open_l1",
    "ramp_skeleton",
    "raw_to_ramp",
    "validate_l1",
]

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


def open_l1(path, model=None, *, checksums=None) -> dm.ScienceRawModel:
    """Open an L1 exposure file and check it before any work starts.

    Parameters
    ----------
    path : str or os.PathLike
        ASDF file holding a ``ScienceRawModel``.
    model : ScienceRawModel, optional
        The file already opened (lazily) by the caller; it is checked and its
        arrays read instead of opening the file again.
    checksums : ChecksumsAhead, optional
        The blocks' checksums, being computed for the caller, who must call its
        ``check`` before any work on the data; the file is not hashed again here.

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
        return _check_and_load(model, path, checksums)
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
        return _check_and_load(model, path, checksums)


class ChecksumsAhead:
    """The MD5 checksums of an L1's blocks, computed on a thread of their own.

    `check` waits for them and refuses the file as `open_l1` would. The MD5 of a
    full-frame L1 is 0.36 s of one core (one block holds nearly all of it); started
    as the file is opened, it runs beside the opening, the reference checks and the
    steps' preparations, which keep one core busy (`open_l1(..., checksums=...)`).
    """

    def __init__(self, path):
        import threading

        self.path = os.fspath(path)
        self._outcome = None
        self._thread = threading.Thread(
            target=self._compute, name="rip-l1-checksums", daemon=True
        )
        self._thread.start()

    def _compute(self):
        self._outcome = _checksum_outcome(self.path)

    def wait(self):
        """Wait for the checksums (nothing raised)."""
        self._thread.join()

    def check(self):
        """Wait; raise `InputFileError` if a block does not match or cannot be read."""
        self.wait()
        _refuse_on(self.path, self._outcome)


def _checksum_outcome(path):
    """The problems `block_checksum_problems` finds in ``path``, or its OSError."""
    from romanimpreprocess.datamodels.checksums import block_checksum_problems

    try:
        return block_checksum_problems(path)
    except OSError as exc:
        return exc


def _refuse_on(path, outcome):
    if isinstance(outcome, OSError):
        raise InputFileError(path, f"cannot be read ({outcome})") from outcome
    if outcome:
        raise InputFileError(path, "; ".join(outcome))


def _check_checksums(path):
    """Refuse an L1 whose blocks do not match their MD5 checksums (bit rot, bad copy)."""
    if os.path.isfile(path):
        _refuse_on(path, _checksum_outcome(path))


def _check_and_load(model, path, checksums=None):
    if checksums is None:
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
                    if _Lz4Rows.of(model, path) is None:
                        model[name] = np.asarray(model[name])
                    # else: an lz4 cube stays lazy; its chunks were checked
                    # (`_Lz4Rows`) and the row bands decompress only theirs.
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


def raw_to_ramp(raw, threads=None, *, skeleton=False) -> dm.RampModel:
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

    With ``skeleton``, the cube is not decoded (the row-band path of the pipeline
    decodes it band by band with `decode_rows`): ``data`` and ``groupdq`` are
    read-only zero-stride placeholders of the cube's shape that take no memory,
    the top and bottom border copies are decoded from the reference rows alone, and
    the left and right ones are zeros for the caller to fill as it decodes the rows.
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
    if skeleton:
        shape = tuple(raw.data.shape)
        ramp.data = np.broadcast_to(np.float32(0), shape)
    else:
        source = _stored_rows(raw, slice(0, raw.data.shape[1]), threads)
        ramp.data = _decode_resultants(source, reference_read, offset, threads)
        del source
        shape = ramp.data.shape
    ramp.pixeldq = np.zeros(shape[1:], dtype=np.uint32)
    if skeleton:
        if "resultantdq" in ramp:
            del ramp.resultantdq  # read band by band (`decode_rows`)
        ramp.groupdq = np.broadcast_to(np.uint8(0), shape)
    elif "resultantdq" in ramp:
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
    if skeleton:
        # The same values as slices of the decoded cube: decoding is per element.
        ramp.border_ref_pix_bottom = decode_rows(raw, slice(0, b), threads).data
        ramp.border_ref_pix_top = decode_rows(raw, slice(ny - b, ny), threads).data
        # The left and right columns are filled band by band by the caller
        # (`decode_rows` of every row): reading them here would read the cube.
        ramp.border_ref_pix_left = np.zeros((shape[0], ny, b), np.float32)
        ramp.border_ref_pix_right = np.zeros((shape[0], ny, b), np.float32)
    else:
        ramp.border_ref_pix_left = ramp.data[:, :, :b].copy()
        ramp.border_ref_pix_right = ramp.data[:, :, -b:].copy()
        ramp.border_ref_pix_bottom = ramp.data[:, :b, :].copy()
        ramp.border_ref_pix_top = ramp.data[:, -b:, :].copy()
    ramp.dq_border_ref_pix_left = np.zeros((ny, b), np.uint32)
    ramp.dq_border_ref_pix_right = np.zeros((ny, b), np.uint32)
    ramp.dq_border_ref_pix_bottom = np.zeros((b, nx), np.uint32)
    ramp.dq_border_ref_pix_top = np.zeros((b, nx), np.uint32)
    return ramp


def ramp_skeleton(raw, threads=None) -> dm.RampModel:
    """`raw_to_ramp` without the cube: meta, amp33, pixeldq, borders (see there)."""
    return raw_to_ramp(raw, threads, skeleton=True)


class DecodedRows:
    """Rows ``rows`` of an L1 decoded as `raw_to_ramp` decodes them.

    Attributes
    ----------
    data : ndarray, shape (n, h, nx), float32
        The decoded resultants of the rows.
    groupdq : ndarray, shape (n, h, nx), uint8
        The L1 ``resultantdq`` of the rows (a copy), or zeros.
    rows : slice
        Frame rows held (``start`` and ``stop`` set).
    """

    def __init__(self, data, groupdq, rows):
        self.data = data
        self.groupdq = groupdq
        self.rows = rows


def decode_rows(raw, rows, threads=None) -> DecodedRows:
    """Decode frame rows ``rows`` (a slice) of an L1 ``ScienceRawModel``.

    The values are those of the same rows of `raw_to_ramp`'s cube, bit for bit (the
    decode works element by element). The read pages of a memory-mapped L1 are
    given back once decoded.
    """
    from romanimpreprocess.utils.mapped import release_pages

    ny = raw.data.shape[1]
    start, stop, _ = rows.indices(ny)
    rows = slice(start, stop)
    reference_read = raw.get("reference_read") if "reference_read" in raw else None
    if reference_read is not None:
        reference_read = np.asarray(reference_read)[rows]
    offset = int(raw.meta.instrument.get("data_encoding_offset", 0) or 0)
    source = _stored_rows(raw, rows, threads)
    data = _decode_resultants(source, reference_read, offset, threads)
    release_pages(source)
    del source
    if "resultantdq" in raw:
        groupdq = np.array(raw.resultantdq[:, rows], dtype=np.uint8, copy=True)
    else:
        groupdq = np.zeros(data.shape, dtype=np.uint8)
    return DecodedRows(data, groupdq, rows)


def _stored_rows(raw, rows, threads=None):
    """uint16 resultants of frame rows ``rows`` (a slice), as the L1 stores them.

    An lz4 cube left lazy by `open_l1` is read by its chunks (`_Lz4Rows`), never by
    asdf's lazy array from the decode's threads (several threads loading it at once
    failed on a full frame: "Decompressed data wrong size"); any other cube is
    loaded once, here, and viewed.
    """
    reader = _Lz4Rows.of(raw)
    if reader is not None:
        return reader.rows(rows, threads)
    return np.asarray(raw.data)[:, rows]


class _Lz4Rows:
    """Rows of an L1 cube stored as one lz4-compressed ASDF block, read in pieces.

    asdf writes an lz4 block as chunks (4-byte big-endian compressed length, then
    an lz4 block with its 4-byte little-endian decompressed size), 4 MiB of data
    each; reading the array decompresses all of it (0.8 GB at 24 resultants, held
    to the end of the run). This reader indexes the chunks once (a truncated or
    inconsistent block is refused here) and decompresses only the chunks that hold
    the rows asked for, so a band of rows costs its own size.
    """

    @classmethod
    def of(cls, model, path=None):
        """The reader of ``model``'s ``data`` (made once), or None if not lz4.

        Raises `InputFileError` for a block whose chunks do not add up.
        """
        reader = None
        try:
            source = model._instance["data"]
            # (asdf's lazy array loads itself on any unknown attribute: __dict__)
            if "_rip_lz4_rows" in vars(source):
                return vars(source)["_rip_lz4_rows"]
            block = model._asdf._blocks.blocks[source._source]
            header = block.header
            if (
                isinstance(source._source, int)
                and header["compression"].rstrip(b"\0") == b"lz4"
                and np.dtype(source.dtype) == np.uint16
                and source._array is None
            ):
                uri = str(model._asdf.uri or "")
                path = uri[len("file://") :] if uri.startswith("file://") else path
                reader = cls(
                    path,
                    block.data_offset,
                    int(header["used_size"]),
                    tuple(source.shape),
                )
        except InputFileError:
            raise
        except Exception:  # not an asdf block we can read ourselves: read it all
            reader = None
        if reader is not None:
            vars(source)["_rip_lz4_rows"] = reader  # indexed once per opened file
        return reader

    def __init__(self, path, data_offset, used_size, shape):
        import struct

        self.path = os.fspath(path)
        self.shape = shape
        self.row_bytes = shape[-1] * 2
        starts, offsets, sizes = [0], [], []
        with open(self.path, "rb") as fd:
            position = 0
            while position < used_size:
                fd.seek(data_offset + position)
                head = fd.read(8)
                if len(head) < 8:
                    raise InputFileError(
                        self.path, "lz4 block is truncated", "roman.data"
                    )
                size = struct.unpack("!I", head[:4])[0]
                decompressed = struct.unpack("<I", head[4:])[0]
                offsets.append(data_offset + position + 4)
                sizes.append(size)
                starts.append(starts[-1] + decompressed)
                position += 4 + size
            end = fd.seek(0, os.SEEK_END)
        nbytes = int(np.prod(shape)) * 2
        if (
            position != used_size
            or starts[-1] != nbytes
            or data_offset + used_size > end
        ):
            raise InputFileError(
                self.path,
                f"lz4 block does not hold the {nbytes} bytes of the cube (chunks "
                f"give {starts[-1]}); the file may be truncated or corrupt",
                field="roman.data",
            )
        self.starts = np.asarray(starts, dtype=np.int64)
        self.offsets = offsets
        self.sizes = sizes

    def _read(self, fd, start, stop, out):
        """Decompressed bytes ``start:stop`` of the block into ``out`` (uint8)."""
        import lz4.block

        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        done = 0
        for k in range(first, len(self.sizes)):
            c0, c1 = int(self.starts[k]), int(self.starts[k + 1])
            if c0 >= stop:
                break
            fd.seek(self.offsets[k])
            chunk = lz4.block.decompress(fd.read(self.sizes[k]))
            a, b = max(start, c0) - c0, min(stop, c1) - c0
            out[done : done + b - a] = np.frombuffer(chunk, np.uint8, b - a, a)
            done += b - a

    # Rows of the last request kept for the next one (the halo rows two bands share).
    TAIL_ROWS = 64

    @property
    def chunk_rows(self) -> int:
        """Rows per lz4 chunk when chunks hold whole rows (0 otherwise)."""
        size = int(self.starts[1]) if len(self.starts) > 1 else 0
        return size // self.row_bytes if size and size % self.row_bytes == 0 else 0

    def rows(self, rows, threads=None):
        """uint16 ``(n, h, nx)``: frame rows ``rows`` of every resultant.

        Rows the previous request ended with (up to `TAIL_ROWS`) are copied from it:
        bands that overlap by their halos decompress the shared chunk once.
        """
        n, ny, nx = self.shape
        h = rows.stop - rows.start
        out = np.empty((n, h, nx), dtype=np.uint16)
        first = rows.start
        tail = getattr(self, "_tail", None)
        if tail is not None and tail[0].start <= rows.start < tail[0].stop:
            kept = min(tail[0].stop, rows.stop) - rows.start
            out[:, :kept] = tail[1][:, rows.start - tail[0].start :][:, :kept]
            first = rows.start + kept
        flat = out.reshape(n, -1).view(np.uint8)
        offset = (first - rows.start) * self.row_bytes

        def plane(j):
            start = (j * ny + first) * self.row_bytes
            with open(self.path, "rb") as fd:
                self._read(
                    fd, start, (j * ny + rows.stop) * self.row_bytes, flat[j, offset:]
                )

        if first < rows.stop:
            run_in_threads(plane, range(n), threads)
        keep = min(h, self.TAIL_ROWS)
        self._tail = (slice(rows.stop - keep, rows.stop), out[:, h - keep :].copy())
        return out


def lz4_chunk_rows(raw) -> int:
    """Rows per chunk of an L1 cube read by lz4 chunks (`decode_rows`); 0 if not."""
    reader = _Lz4Rows.of(raw) if isinstance(raw, dm.ScienceRawModel) else None
    return reader.chunk_rows if reader is not None else 0


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
