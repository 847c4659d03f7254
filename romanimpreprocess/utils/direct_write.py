"""Write a new file around the page cache (``O_DIRECT``), for the L2 product.

A full-frame L2 is about 250 MB. Written the ordinary way, each of its pages goes
into the page cache first: a page the kernel must take from its free memory, zero
and fill before the disk sees it. On a virtual machine whose free memory is handed
back to the host (virtio-balloon free page reporting, as on the project's 2-core
machines), taking those pages is the slow part: ``dd`` of 240 MiB took 0.58 s
buffered and 0.16 s with ``O_DIRECT`` on the same disk (bench/RESULTS.md, "Issue 23,
round 10"). `DirectFile` passes the bytes through page-aligned buffers straight to
the disk instead. The file's bytes are the same; what changes is that they are not
left in the page cache (a reader of the file reads it from disk) and that the write
is done when `DirectFile.close` returns.

Where the file system refuses ``O_DIRECT`` (tmpfs, some network or FUSE file
systems: at ``open`` or at the first write) the same object writes through the page
cache as usual; `open_direct` returns None where the platform has no ``O_DIRECT``
or ``RIP_DIRECT_WRITE=0`` is set (the caller then writes the ordinary way).
"""

import contextlib
import errno
import fcntl
import io
import mmap
import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["DIRECT_WRITE_ENV", "DirectFile", "open_direct"]

DIRECT_WRITE_ENV = "RIP_DIRECT_WRITE"

# O_DIRECT needs the buffer address, the file offset and the length to be multiples
# of the device's logical block size (512 or 4096 bytes): the buffer is page-aligned
# (mmap) and every write but the last is a whole number of buffers.
_ALIGNMENT = 4096
_BUFFER_BYTES = 4 << 20


def open_direct(path, buffer_bytes=_BUFFER_BYTES):
    """A new `DirectFile` at ``path`` (created or truncated), or None.

    None (the caller writes the ordinary way) where the platform has no ``O_DIRECT``
    or where ``RIP_DIRECT_WRITE=0`` says not to (a file system on which direct
    writes are slow, or a reader that wants the file in the page cache).
    """
    if not hasattr(os, "O_DIRECT") or os.environ.get(DIRECT_WRITE_ENV, "1") == "0":
        return None
    return DirectFile(path, buffer_bytes)


class DirectFile(io.RawIOBase):
    """A file written from start to end with ``O_DIRECT``, through aligned buffers.

    Supports what a sequential writer needs: ``write``, ``tell`` and ``seek`` to the
    current position or forward (the gap reads as zeros). ``fileno`` is not offered:
    a caller writing to the descriptor itself would bypass the buffers (asdf then
    writes through ``write``). ``direct`` tells whether the bytes went around the
    page cache (False when the file system refused it).

    Two buffers take turns: while the disk writes a full one (``pwrite`` on a
    thread, without the GIL), the caller fills the other, so the disk's time is
    spent beside the caller's work (hashing, compressing, serialising) instead of
    after it. A write error is raised by the next ``write`` or by ``close``.
    """

    def __init__(self, path, buffer_bytes=_BUFFER_BYTES):
        super().__init__()
        self.name = os.fspath(path)
        buffer_bytes = max(_ALIGNMENT, buffer_bytes - buffer_bytes % _ALIGNMENT)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self.direct = True
        try:
            self._fd = os.open(self.name, flags | os.O_DIRECT, 0o666)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            self.direct = False
            self._fd = os.open(self.name, flags, 0o666)
        self._buffers = [mmap.mmap(-1, buffer_bytes) for _ in range(2)]
        self._views = [memoryview(buffer) for buffer in self._buffers]
        self._in_flight = [None, None]  # the pending write of each buffer
        self._current = 0
        self._view = self._views[0]
        self._filled = 0  # bytes in the current buffer, not yet written
        self._written = 0  # bytes handed to the disk (a multiple of the buffer size)
        self._disk = None  # the writing thread, started at the first full buffer

    # ------------------------------------------------------------ io.RawIOBase
    def writable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._written + self._filled

    def write(self, data):
        source = memoryview(data).cast("B")
        total = len(source)
        done = 0
        capacity = len(self._view)
        while done < total:
            take = min(total - done, capacity - self._filled)
            self._view[self._filled : self._filled + take] = source[done : done + take]
            self._filled += take
            done += take
            if self._filled == capacity:
                self._hand_to_disk(capacity)
        return total

    def seek(self, offset, whence=io.SEEK_SET):
        here = self.tell()
        if whence == io.SEEK_SET:
            target = offset
        elif whence in (io.SEEK_CUR, io.SEEK_END):  # the end is where we are
            target = here + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < here:
            raise io.UnsupportedOperation(
                f"{self.name}: written from start to end, cannot seek back to {target}"
            )
        gap = target - here
        zeros = bytes(min(gap, len(self._view)))
        while gap:
            gap -= self.write(zeros[: min(gap, len(zeros))])
        return target

    def close(self):
        if self.closed:
            return
        try:
            size = self.tell()
            if self._filled:
                # the last piece: written padded to the alignment, then cut to size
                padded = -(-self._filled // _ALIGNMENT) * _ALIGNMENT
                self._view[self._filled : padded] = bytes(padded - self._filled)
                self._hand_to_disk(padded)
            for index in (0, 1):
                self._wait(index)
            if self._written != size:
                os.ftruncate(self._fd, size)
        finally:
            if self._disk is not None:
                self._disk.shutdown(wait=True)
            os.close(self._fd)
            for view, buffer in zip(self._views, self._buffers, strict=True):
                view.release()
                # (a slice still held by a failed write's traceback: freed with it)
                with contextlib.suppress(BufferError):
                    buffer.close()
            super().close()

    # ---------------------------------------------------------------- internals
    def _hand_to_disk(self, length):
        """Start writing the current buffer's first ``length`` bytes; switch buffers."""
        if self._disk is None:
            self._disk = ThreadPoolExecutor(1, thread_name_prefix="rip-direct-write")
        index = self._current
        self._in_flight[index] = self._disk.submit(
            self._pwrite, self._views[index], length, self._written
        )
        self._written += length
        self._filled = 0
        self._current = 1 - index
        self._view = self._views[self._current]
        self._wait(self._current)  # its previous write must be done before refilling

    def _wait(self, index):
        pending, self._in_flight[index] = self._in_flight[index], None
        if pending is not None:
            pending.result()

    def _pwrite(self, buffer_view, length, offset):
        done = 0
        with buffer_view[:length] as view:
            while done < length:
                try:
                    done += os.pwrite(self._fd, view[done:], offset + done)
                except OSError as err:
                    # a file system that took O_DIRECT at open but refuses its
                    # writes: the rest goes through the page cache
                    if err.errno != errno.EINVAL or not self.direct:
                        raise
                    fcntl.fcntl(
                        self._fd,
                        fcntl.F_SETFL,
                        fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT,
                    )
                    self.direct = False
