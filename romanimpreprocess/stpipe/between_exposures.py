"""Reference products kept from one exposure to the next in rip-batch's workers.

The dark step's IPC-deconvolved dark slope, the flat step's clipped, deconvolved
flat and the photom step's median gain depend on the reference files alone (and the
step's ``legacy_compat``): the exposures of one SCA in a batch compute the same
arrays again, the first two each a pass over the 0.6 GB IPC kernel of a full frame,
0.9-1.0 s of a one-thread worker's exposure apiece (bench/RESULTS.md, "Issue 23,
round 8"). In a rip-batch worker set up by
`romanimpreprocess._startup.start_worker` (`keeps_memory_between_runs`),
`reuse_between_exposures` keeps the last `KEPT_PRODUCTS` products, keyed by what
they are computed from: the files' versions as opened (`ReferenceFile.identity`:
path, size, modification time, inode; a file rewritten since is computed again) and
the parameters. The arrays kept are made read-only, so that no exposure changes what
the next one gets.

Between processes (one exposure per process, the first exposure of each worker) the
products go through the on-disk cache of `romanimpreprocess.utils.product_cache`:
computed by the first run on a calibration set, mapped from the disk by every later
one (``RIP_PRODUCT_CACHE=0`` turns that off; then each process computes its own).
"""

import logging
import threading
from collections import OrderedDict

import numpy as np

from romanimpreprocess.utils import product_cache

__all__ = [
    "KEPT_PRODUCTS",
    "forget_kept",
    "reference_identity",
    "reuse_between_exposures",
]

log = logging.getLogger(__name__)

# the dark step's product, the flat step's and photom's median gain for one SCA
# (0.18 GB a full frame)
KEPT_PRODUCTS = 3

_KEPT = OrderedDict()
_LOCK = threading.Lock()


def reference_identity(reference):
    """`ReferenceFile.identity` of an opened reference file; None for none (N/A)."""
    return None if reference is None else reference.identity


def reuse_between_exposures(key, compute, what="reference products"):
    """``compute()``, or what it returned for the same ``key`` in this worker.

    Parameters
    ----------
    key : hashable
        Everything the products depend on (`reference_identity` of each file, the
        parameters).
    compute : callable
        Makes the products: a tuple, whose arrays are made read-only once kept.
    what : str
        Named in the log line of a reuse.
    """
    from romanimpreprocess._startup import keeps_memory_between_runs

    keep = keeps_memory_between_runs()
    if keep:
        with _LOCK:
            if key in _KEPT:
                _KEPT.move_to_end(key)
                log.info(
                    "%s: those of this worker's previous exposure (same files)", what
                )
                return _KEPT[key]
    products = product_cache.load(key, what)
    if products is None:
        products = compute()
        product_cache.store(key, products, what)
    if not keep:
        return products
    for value in products:
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    with _LOCK:
        _KEPT[key] = products
        while len(_KEPT) > KEPT_PRODUCTS:
            _KEPT.popitem(last=False)
    return products


def forget_kept():
    """Drop every product kept (tests; a worker that wants its memory back)."""
    with _LOCK:
        _KEPT.clear()
