"""Keep freed full-frame buffers in the process while a pipeline runs.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and gives it back to the system when it is freed. A full-frame
plane is 64 MiB (float32) or 128 MiB (float64), so every temporary plane of every
step is memory the process touches for the first time. On virtual machines that is
expensive (about 3 ms per MiB on the survey's cloud nodes, paid as system time): it
was 6.4 s of a 17 s full-frame run. Raising the threshold just above a float64 plane
and not trimming the heap lets those planes be reused from one step to the next;
the ramp cube itself (several planes) is still mapped and given back when freed, so
the peak grows little (1.68 -> 1.78 GiB at 6 resultants, `bench/RESULTS.md`).

`reuse_freed_memory` does this for the outermost step of a run and, when the run
ends, gives the kept memory back (``malloc_trim``) and sets both thresholds back to
glibc's starting values; in rip-batch's own workers (``keep``) both stay for the
worker's next exposure. That is not quite malloc's default state: once a program
sets ``M_MMAP_THRESHOLD`` or ``M_TRIM_THRESHOLD``, glibc stops adjusting them
dynamically (the sliding mmap threshold that follows freed large blocks stays off)
for the rest of the process, and there is no call that turns it back on. This is why
it is used only in processes that are ours (our command lines and rip-batch's own
workers, `romanimpreprocess._startup.process_tweaks_enabled`), never in a host
process that merely runs a step. ``RIP_KEEP_FREED_MEMORY=0`` turns it off; it does
nothing where malloc is not glibc's.
"""

import contextlib
import ctypes
import ctypes.util
import logging
import os

__all__ = ["return_freed_memory", "reuse_freed_memory", "stop_reusing_freed_memory"]

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's documented starting values of both (where its dynamic adjustment starts;
# setting them, even to these values, turns that adjustment off for good)
_DEFAULT_THRESHOLD = 128 * 1024
# Just above a float64 full-frame plane (4096² × 8 bytes): planes come from the heap.
KEEP_BELOW = 4096 * 4096 * 8 + 4096
# The heap is not trimmed while the run lasts (mallopt takes an int).
_NO_TRIM = 2**31 - 1


def _libc():
    if os.environ.get("RIP_KEEP_FREED_MEMORY", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl and other C libraries have no mallopt/malloc_trim
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


@contextlib.contextmanager
def reuse_freed_memory(keep=False):
    """Inside the block, freed buffers below `KEEP_BELOW` bytes stay in the process.

    Nested uses are harmless (the inner one finds the settings already made and
    leaves them). On leaving, the memory kept is returned to the system and the two
    thresholds are set to glibc's starting values (their dynamic adjustment stays
    off for the rest of the process: module docstring). With ``keep`` (a batch
    worker, whose next exposure needs the same memory again) the memory and the
    settings stay: the next run reuses the pages instead of faulting fresh ones
    (full frame, 6 resultants, one thread, runs 2 and 3 of a process: system time
    1.30 -> 1.06 s, wall 8.6 -> 8.1 s; bench/RESULTS.md, "Issue 23, round 6").
    """
    libc = _libc()
    if libc is None or getattr(reuse_freed_memory, "active", False):
        yield
        return
    set_mmap = libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW)
    set_trim = libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM)
    if not (set_mmap and set_trim):
        log.debug("mallopt refused; freed memory goes back to the system as usual")
    reuse_freed_memory.active = True
    try:
        yield
    finally:
        reuse_freed_memory.active = False
        if not keep:
            _return_to_defaults(libc)


def _return_to_defaults(libc):
    """glibc's starting thresholds again, and the memory kept returned."""
    libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
    libc.malloc_trim(0)


def return_freed_memory():
    """Give the memory freed so far back to the system now (``malloc_trim``).

    For a run that holds little between big pieces of work inside one
    `reuse_freed_memory` block: the noise step calls it after each R layer's
    calibration, so that what that calibration freed does not stay resident, under
    the arrays the step allocates next, to the end of the step (bench/RESULTS.md,
    the noise run). Does nothing where malloc is not glibc's.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def stop_reusing_freed_memory():
    """Inside a `reuse_freed_memory` block: from now on, freed memory goes back.

    The thresholds are set back to glibc's starting values and the memory kept so
    far is returned, as when the block ends (which then changes nothing). For work
    that holds much between big allocations of other sizes, where kept buffers
    fragment the heap instead of being reused: the noise step's R layers, each a whole
    calibration beside the step's inputs, peaked 0.27 GB higher with them kept (2-layer
    full-frame run: 2 154 752 kB kept, 1 887 980 kB not, the same CPU time;
    bench/RESULTS.md). Does nothing outside such a block or where malloc is not
    glibc's.
    """
    libc = _libc()
    if libc is None or not getattr(reuse_freed_memory, "active", False):
        return
    _return_to_defaults(libc)
