"""Threads for the compiled (numba) kernels of the steps.

Every heavy per-pixel loop of the package is a numba function compiled with
``parallel=True`` and cached on disk (``cache=True``: the first run in a fresh
installation compiles, later runs load the machine code in milliseconds). The number
of threads follows `romanimpreprocess.stpipe.core.step_threads` (``RIP_THREADS``, or
the cores), so batch workers that set ``RIP_THREADS=1`` stay on one core each.
"""

import contextlib
import os

__all__ = ["kernel_threads", "step_threads"]


def step_threads() -> int:
    """Threads a step may use: ``RIP_THREADS`` if set, else the cores (at most 4).

    Batch workers set ``RIP_THREADS=1`` so that exposures running side by side do
    not oversubscribe the cores.
    """
    return int(os.environ.get("RIP_THREADS", "0")) or min(os.cpu_count() or 1, 4)


@contextlib.contextmanager
def kernel_threads(threads: int | None = None):
    """Run the numba kernels inside the block on ``threads`` threads.

    ``threads`` defaults to `step_threads`; it is capped by the size of numba's
    thread pool (``NUMBA_NUM_THREADS``, the cores by default).
    """
    import numba

    wanted = int(threads or step_threads())
    wanted = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(previous)
