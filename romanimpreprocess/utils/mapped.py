"""Give back the pages of a memory-mapped reference array once they are read.

Reference files are opened memory-mapped (``asdf.open(..., memmap=True)``): a plane
read from a mapped cube stays resident in this process, and counts in its resident
memory, until the file is closed. A full-frame dark cube at 24 resultants is 1.7 GB
and the bias-correction cube 1.6 GB; the reference-pixel and bias steps read them
one plane at a time, so without help every plane stays mapped to the end of the
step and the peak of a 24-resultant run was set there (4.2 GiB, bench/RESULTS.md).
`release_pages` tells the kernel that the pages of one such plane are no longer
needed (``madvise(MADV_DONTNEED)``): they leave this process at once (they stay in
the page cache, shared, and are read back from it if touched again).

Only read-only file mappings are released: discarding the pages of a private
writable mapping would lose what was written there, and anonymous memory would read
back as zeros. Anything else (an ordinary array, a platform without ``madvise``) is
left alone, so calling this on any array is safe.

`copy_mapped` copies a block of such an array into a buffer with ``pread`` from the
file itself instead of through the mapping. Copying through the mapping costs a page
fault per page not yet mapped in this process; with two threads faulting at once
they also wait on each other (the kernel serialises a process's faults on its
memory map). On a full frame the IPC step and the reference work read the 0.6 GB
IPC kernel three times: 0.39 s in all with ``pread`` against 1.2 s through the
mapping (bench/RESULTS.md, issue 23 round 5).
"""

import mmap
import os
import threading
import weakref

import numpy as np

try:  # numpy >= 2
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy 1.x
    from numpy import byte_bounds

__all__ = ["RowBuffers", "copy_mapped", "mapped_buffer", "release_pages"]


def mapped_buffer(array):
    """The ``mmap.mmap`` object ``array``'s memory belongs to, or None."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        if isinstance(base, np.memmap) and isinstance(
            getattr(base, "_mmap", None), mmap.mmap
        ):
            return base._mmap
        base = getattr(base, "base", None)
    return None


def release_pages(array) -> bool:
    """Drop the resident pages of a read-only memory-mapped ``array`` (a view is fine).

    Parameters
    ----------
    array : array-like
        A plane (or any contiguous or strided view) of a memory-mapped reference
        array, or an object whose ``np.asarray`` is one (asdf's lazy ``NDArrayType``
        of a reference model). Its values stay readable: pages touched again are
        read back from the page cache or the file.

    Returns
    -------
    bool
        True if pages were released; False when ``array`` is not a read-only file
        mapping (nothing is done).
    """
    array = np.asarray(array)
    if array.size == 0 or array.flags.writeable:
        return False
    buffer = mapped_buffer(array)
    if buffer is None or not hasattr(buffer, "madvise"):
        return False
    try:
        # The mapping's own start address: madvise's offsets are relative to it.
        start = np.frombuffer(buffer, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError, BufferError):
        return False
    low, high = byte_bounds(array)
    page = mmap.PAGESIZE
    # Whole pages inside the array's span: a page shared with a neighbouring array
    # may be released too (harmless: it is read back if needed), never one outside
    # the mapping.
    first = ((low - start) // page) * page
    last = min(-(-(high - start) // page) * page, len(buffer))
    if last <= first:
        return False
    try:
        buffer.madvise(mmap.MADV_DONTNEED, first, last - first)
    except (OSError, ValueError, AttributeError):
        return False
    return True


# mmap object -> read-only descriptor of its file (None: not a readable file mapping)
_FILES = weakref.WeakKeyDictionary()
_FILES_LOCK = threading.Lock()


def _mapping_start(buffer) -> int:
    return np.frombuffer(buffer, dtype=np.uint8).ctypes.data


def _mapped_file(buffer, start):
    """``(path, inode, device)`` of the file mapped at ``start``, from /proc/self/maps.

    None when the mapping is not found (not Linux, anonymous memory, a deleted file).
    """
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or int(fields[0].split("-")[0], 16) != start:
                    continue
                if int(fields[2], 16) != 0:
                    return None  # not mapped from the file's start
                major, minor = (int(x, 16) for x in fields[3].split(":"))
                path = fields[5].rstrip("\n")
                if path.endswith(" (deleted)") or not path.startswith("/"):
                    return None
                return path, int(fields[4]), os.makedev(major, minor)
    except (OSError, ValueError):
        return None
    return None


def _file_descriptor(buffer, start):
    """A read-only descriptor of the file behind ``buffer``, opened once; or None.

    The file is opened by the path the kernel reports for the mapping and kept only
    if it is the same file (inode and device): a file renamed over that path since it
    was mapped is not read in its place.
    """
    with _FILES_LOCK:
        if buffer in _FILES:
            return _FILES[buffer]
        fd = None
        found = _mapped_file(buffer, start)
        if found is not None:
            path, inode, device = found
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                fd = None
            else:
                info = os.fstat(fd)
                if info.st_ino != inode or info.st_dev != device:
                    os.close(fd)
                    fd = None
        _FILES[buffer] = fd
        if fd is not None:
            weakref.finalize(buffer, os.close, fd)
        return fd


def copy_mapped(source, out) -> None:
    """``out[...] = source``, read with ``pread`` when ``source`` is a mapped file.

    Parameters
    ----------
    source : ndarray
        A view of a read-only memory-mapped array (asdf's ``memmap=True``) whose
        rows along the last axis are contiguous, e.g. ``cube[..., a:c, :]`` of a
        C-contiguous cube; any other array is copied with ``np.copyto``.
    out : ndarray
        C-contiguous, the shape and dtype of ``source``.

    The values are those of ``np.copyto`` (the same bytes of the same file); what
    changes is that no page of ``source`` is mapped into the process.
    """
    source = np.asarray(source)
    if out.shape != source.shape or out.dtype != source.dtype:
        raise ValueError(
            f"copy_mapped: out is {out.shape} {out.dtype}, source {source.shape} "
            f"{source.dtype}"
        )
    buffer = mapped_buffer(source) if not source.flags.writeable else None
    fd = None
    if (
        buffer is not None
        and out.flags.c_contiguous
        and source.ndim >= 2
        and source.size
        and hasattr(os, "preadv")
    ):
        start = _mapping_start(buffer)
        fd = _file_descriptor(buffer, start)
    if fd is None or not _rows_contiguous(source):
        np.copyto(out, source)
        return
    # one read per block of rows that is contiguous in the file
    for index in np.ndindex(*source.shape[:-2]):
        block, target = source[index], out[index]
        offset = block.ctypes.data - start
        view = memoryview(target.reshape(-1).view(np.uint8))
        done = 0
        while done < target.nbytes:
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:  # the file got shorter than its mapping: copy what is mapped
                np.copyto(out, source)
                return
            done += got


def _rows_contiguous(source) -> bool:
    """True if each 2-d block (last two axes) of ``source`` is one contiguous run."""
    item = source.dtype.itemsize
    ny, nx = source.shape[-2:]
    return source.strides[-1] == item and (ny == 1 or source.strides[-2] == nx * item)


class RowBuffers:
    """Contiguous copies of reference rows, band after band, in buffers kept between bands.

    ``read(name, source)`` returns ``source`` (rows of a reference array, e.g.
    ``cube[..., rows, :]``) copied with `copy_mapped` into the buffer kept under
    ``name``; the next ``read`` of that name overwrites it, so a band must be done
    with its rows before the next band reads. A buffer is made once, at its largest
    size (a new one per band would cost its first touch again: about 3 ms per MiB on
    a virtual machine), and `clear` lets them go.
    """

    def __init__(self):
        self._buffers = {}

    def read(self, name, source):
        source = np.asarray(source)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != source.dtype or buffer.size < source.size:
            buffer = np.empty(source.size, source.dtype)
            self._buffers[name] = buffer
        out = buffer[: source.size].reshape(source.shape)
        copy_mapped(source, out)
        return out

    def clear(self):
        self._buffers.clear()
