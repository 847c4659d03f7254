"""Start numba on a spare thread while a run opens its inputs.

The first call of any compiled kernel in a process costs about 0.45 s on this
project's 2-core machines whatever the kernel (numba's compiler and code loader
start, then the kernel's cached machine code is read); every later kernel's first
call costs 10-30 ms. A pipeline run's first kernel is the saturation step's, after
the L1 is opened, the reference files checked and the steps prepared: about a second
of work on one core. `start` makes a tiny cached kernel's first call on a daemon
thread when the run begins, so that start-up happens on the idle core meanwhile. The
kernel changes nothing; a step that needs numba before it is done waits on numba's
own lock, as it would have waited for its own start-up.
"""

import threading

import numba
import numpy as np

__all__ = ["start"]

_started = threading.Event()


@numba.njit(parallel=True, nogil=True, cache=True)
def _touch(values):
    for i in numba.prange(values.size):
        values[i] += 1.0


def _warm():
    _touch(np.zeros(64, np.float32))


def start():
    """Warm numba on a daemon thread, once per process (later calls do nothing)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_warm, name="rip-numba-warm-up", daemon=True).start()
