"""Threads for the compiled (numba) kernels of the steps.

Every heavy per-pixel loop of the package is a numba function compiled with
``parallel=True`` and cached on disk (``cache=True``: the first run in a fresh
installation compiles, later runs load the machine code in milliseconds). The number
of threads follows `romanimpreprocess.stpipe.core.step_threads` (``RIP_THREADS``, or
the cores), so batch workers that set ``RIP_THREADS=1`` stay on one core each.
"""

import contextlib
import os
import threading

__all__ = [
    "ENGINES",
    "blas_on_one_thread",
    "check_engine",
    "kernel_threads",
    "resolve_threads",
    "run_in_threads",
    "step_threads",
    "threads_of_this_thread",
]

# Engines of the array functions that have a compiled kernel: "numba" (the default)
# or "numpy" (the reference path the kernels are tested against).
ENGINES = ("numba", "numpy")


_THIS_THREAD = threading.local()


def step_threads() -> int:
    """Threads a step may use: ``RIP_THREADS`` if set, else the cores (at most 4).

    Batch workers set ``RIP_THREADS=1`` so that exposures running side by side do
    not oversubscribe the cores. Inside `threads_of_this_thread` the number given
    there.
    """
    override = getattr(_THIS_THREAD, "threads", None)
    if override:
        return override
    return int(os.environ.get("RIP_THREADS", "0")) or min(os.cpu_count() or 1, 4)


@contextlib.contextmanager
def threads_of_this_thread(threads: int):
    """`step_threads` is ``threads`` for the work this thread does in the block.

    For work running beside the steps (the pipeline's reference work): one thread
    of its own, not a second team of compiled-kernel threads competing with the
    steps' for the same cores.
    """
    previous = getattr(_THIS_THREAD, "threads", None)
    _THIS_THREAD.threads = max(1, int(threads))
    try:
        yield
    finally:
        _THIS_THREAD.threads = previous


def resolve_threads(threads: int | None) -> int:
    """``threads`` as given, or `step_threads` when it is None (or 0)."""
    return int(threads) if threads else step_threads()


def check_engine(engine: str) -> None:
    """Raise ValueError unless ``engine`` is one of `ENGINES`."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")


@contextlib.contextmanager
def kernel_threads(threads: int | None = None):
    """Run the numba kernels inside the block on ``threads`` threads.

    ``threads`` defaults to `step_threads`; it is capped by the size of numba's
    thread pool (``NUMBA_NUM_THREADS``, the cores by default).
    """
    import numba

    wanted = max(1, min(resolve_threads(threads), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(previous)


_BLAS_LOCK = threading.Lock()
_BLAS_RUNS = 0
_BLAS_LIMITS = None


@contextlib.contextmanager
def blas_on_one_thread():
    """Inside the block, the BLAS libraries loaded (numpy's, scipy's) use one thread.

    Our matrix products are thin (a few dozen resultants by many pixels) and run
    while the compiled kernels keep every core busy. A threaded OpenBLAS call
    leaves its helper threads spinning, waiting for the next call, on the cores
    the kernels need: on a full frame at 6 resultants that spinning was 1.1 s of
    CPU of a 13 s run (``perf``: ``blas_thread_server``), for products that gain
    nothing from threads. Blocks may nest or run at once in several threads: the
    first one in sets the limit, the last one out puts the libraries' own
    threads back. Without threadpoolctl, nothing is changed.
    """
    global _BLAS_RUNS, _BLAS_LIMITS
    with _BLAS_LOCK:
        if _BLAS_RUNS == 0:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                _BLAS_LIMITS = None
            else:
                _BLAS_LIMITS = threadpool_limits(limits=1, user_api="blas")
        _BLAS_RUNS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_RUNS -= 1
            if _BLAS_RUNS == 0 and _BLAS_LIMITS is not None:
                _BLAS_LIMITS.restore_original_limits()
                _BLAS_LIMITS = None


def run_in_threads(function, items, threads: int | None = None) -> None:
    """Call ``function(item)`` for every item, on up to ``threads`` threads.

    For numpy work that releases the GIL and writes disjoint parts of its output.
    ``threads`` defaults to `step_threads`; with one thread (or one item) the calls
    run in order in this thread. The calling thread takes items too, beside the
    threads of a pool kept for the process (`_helpers`): a run makes about 90
    such calls, and starting fresh threads for each took 0.16 s of a full-frame
    run. Every item is called even if another fails; the error of the first
    failing item (in the order of ``items``) is raised here once all are done.
    """
    items = list(items)
    threads = min(resolve_threads(threads), len(items))
    if threads <= 1 or getattr(_HELPER, "active", False):
        # (a call from a helper runs inline: it must not wait for its own pool)
        for item in items:
            function(item)
        return
    next_index = iter(range(len(items)))
    take = threading.Lock()
    failures = {}
    stopped = []

    def work():
        while True:
            with take:
                index = None if stopped else next(next_index, None)
            if index is None:
                return
            try:
                function(items[index])
            except Exception as err:  # raised in the caller, in order
                failures[index] = err

    from concurrent.futures import wait

    pool = _helpers(threads - 1)
    helpers = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    except BaseException:
        stopped.append(True)  # an interrupt: no new items; the helpers finish theirs
        raise
    finally:
        wait(helpers)
    for helper in helpers:
        helper.result()
    if failures:
        raise failures[min(failures)]


_HELPER = threading.local()
_HELPERS_LOCK = threading.Lock()
_HELPERS = None
_HELPERS_SIZE = 0


def _mark_helper():
    _HELPER.active = True


def _helpers(count):
    """The process's pool of helper threads for `run_in_threads`, ``count`` at least."""
    global _HELPERS, _HELPERS_SIZE
    from concurrent.futures import ThreadPoolExecutor

    with _HELPERS_LOCK:
        if _HELPERS is None or count > _HELPERS_SIZE:
            if _HELPERS is not None:
                _HELPERS.shutdown(wait=False)  # its queued work still runs
            _HELPERS = ThreadPoolExecutor(
                count, thread_name_prefix="rip-helper", initializer=_mark_helper
            )
            _HELPERS_SIZE = count
        return _HELPERS


def _forget_helpers():
    """In a forked child: the helpers' threads did not come along."""
    global _HELPERS, _HELPERS_LOCK, _HELPERS_SIZE
    _HELPERS = None
    _HELPERS_SIZE = 0
    _HELPERS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)
