"""How many workers fit: per-exposure memory estimate and the LocalCluster size.

Per-exposure peak memory (bytes) is estimated from the shape of the L1 input,
``nres`` resultants of ``ny × nx`` pixels (``npix = ny·nx``)::

    peak ≈ BASE + PER_PIXEL_RESULTANT · nres · npix + PER_PIXEL · npix

- ``BASE``: the Python process with numpy, astropy, roman_datamodels, romancal and
  stpipe imported, plus the dask worker (~0.45 GiB measured, rounded up);
- ``PER_PIXEL_RESULTANT``: bytes per pixel and resultant: the uint16 L1 resultants
  (2), the float32 ramp (4), the group DQ (1), and the working copies of the ramp
  steps and of the ramp fit (differences, weights, jump tests);
- ``PER_PIXEL``: bytes per pixel that do not scale with the resultants: pixel DQ,
  the reference arrays that are read (gain, flat, dark slope, saturation, read noise,
  the Legendre linearity coefficients, the 3×3 IPC kernels, ...), and the L2 arrays.

The coefficients are calibrated on measured peaks (``peak_rss_mb`` of the batch
results; `bench/bench_batch.py`) and rounded up; see ``docs/batch.rst`` for the numbers.
``--memory-per-exposure`` overrides the estimate.
"""

import logging
import os
import re

__all__ = [
    "ClusterSize",
    "available_memory",
    "estimate_exposure_memory",
    "format_bytes",
    "input_shape",
    "parse_bytes",
    "plan_local_cluster",
]

log = logging.getLogger(__name__)

GIB = 1024**3
BASE = int(0.6 * GIB)
PER_PIXEL_RESULTANT = 20
PER_PIXEL = 80
# Fraction of the available memory the local cluster may use.
MEMORY_FRACTION = 0.8

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_bytes(text) -> int:
    """``"6GB"``, ``"6 GiB"``, ``"512MiB"``, ``"2.5e9"`` -> bytes."""
    if isinstance(text, int | float):
        return int(text)
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read a memory size from {text!r} (e.g. 6GB, 512MiB)")
    try:
        value = float(match.group(1))
    except ValueError:
        raise ValueError(f"cannot read a memory size from {text!r}") from None
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return int(value * _UNITS[match.group(2).lower()])


def format_bytes(n) -> str:
    """Bytes as a short human string (GiB/MiB)."""
    if n is None:
        return "?"
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


def input_shape(path):
    """``(nresultants, ny, nx)`` of an L1 file without reading its arrays, or None."""
    if not path or not os.path.isfile(path):
        return None
    import roman_datamodels as rdm

    try:
        with rdm.open(path, lazy_load=True) as model:
            shape = tuple(int(s) for s in model["data"].shape)
    except Exception:
        return None
    return shape if len(shape) == 3 else None


def estimate_exposure_memory(shape) -> int:
    """Estimated peak memory (bytes) of one exposure of L1 shape ``(nres, ny, nx)``."""
    nres, ny, nx = shape
    npix = int(ny) * int(nx)
    return int(BASE + PER_PIXEL_RESULTANT * int(nres) * npix + PER_PIXEL * npix)


def available_memory() -> int:
    """Memory available to new processes now (psutil), in bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ClusterSize:
    """The LocalCluster plan: ``n_workers`` with ``memory_limit`` bytes each."""

    def __init__(self, n_workers, memory_limit, per_exposure, reason):
        self.n_workers = n_workers
        self.memory_limit = memory_limit
        self.per_exposure = per_exposure
        self.reason = reason

    def __repr__(self):
        return (
            f"ClusterSize(n_workers={self.n_workers}, "
            f"memory_limit={format_bytes(self.memory_limit)}, "
            f"per_exposure={format_bytes(self.per_exposure)})"
        )


def plan_local_cluster(
    per_exposure,
    n_tasks,
    *,
    workers=None,
    cores=None,
    memory=None,
) -> ClusterSize:
    """Size a LocalCluster so that ``workers × per_exposure`` fits in memory.

    Parameters
    ----------
    per_exposure : int
        Peak memory of one exposure, bytes (estimate or user value).
    n_tasks : int
        Exposures to run (no more workers than that).
    workers : int or None
        Requested worker count (capped at ``n_tasks``); None = as many as fit
        (≤ cores).
    cores : int or None
        Cores to use (default: the cores this process may run on).
    memory : int or None
        Memory budget, bytes (default: `MEMORY_FRACTION` of the available memory).

    Returns
    -------
    ClusterSize
        ``memory_limit`` is the budget divided by the workers (dask's per-worker
        limit; a worker going over it is restarted and its exposure reported).
    """
    cores = cores or cpu_count()
    budget = int(memory if memory is not None else MEMORY_FRACTION * available_memory())
    fit = max(1, budget // max(1, int(per_exposure)))
    if workers is not None:
        n = max(1, min(int(workers), max(1, n_tasks)))
        reason = "requested" if n == int(workers) else f"requested, capped at {n} tasks"
        if n * per_exposure > budget:
            log.warning(
                "%d workers × %s per exposure exceeds the memory budget %s",
                n,
                format_bytes(per_exposure),
                format_bytes(budget),
            )
            reason = "requested (over the memory budget)"
    else:
        n = max(1, min(cores, fit, max(1, n_tasks)))
        reason = (
            f"min(cores={cores}, fit in {format_bytes(budget)}={fit}, tasks={n_tasks})"
        )
    memory_limit = max(int(per_exposure), budget // n)
    return ClusterSize(n, memory_limit, int(per_exposure), reason)
