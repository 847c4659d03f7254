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
"""

import mmap

import numpy as np

try:  # numpy >= 2
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy 1.x
    from numpy import byte_bounds

__all__ = ["mapped_buffer", "release_pages"]


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
