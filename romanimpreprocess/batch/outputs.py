"""When is an output done? The resume rule, and the leftovers of a killed worker.

An output counts as **complete** (and a rerun skips its exposure unless
``--overwrite``) when all of these hold:

1. the path is a regular, non-empty file;
2. it opens with ``roman_datamodels`` as an ``ImageModel`` (the L2 product);
3. it holds ``data``, ``dq`` and ``err`` as 2-D arrays of the same shape
   (``data``/``err`` floating point, ``dq`` integer);
4. every array of the file decodes completely (a truncated or corrupt block fails);
5. if the exposure's L1 input can be opened, the output's shape is the input's science
   area (the frame minus the reference border on each side).

The check does not compare timestamps or parameters: after changing parameters or
reference files, rerun with ``--overwrite``.

A partial output cannot be mistaken for a complete one: the pipeline writes through
`romanimpreprocess.utils.atomic`, which writes into a hidden temporary directory
``.tmp-rip-<host>-<pid>-*`` next to the output and renames the finished file over the
output path in one step. A worker killed mid-write leaves only that hidden directory,
never a file at the output path; the batch task removes such leftovers of its own
exposure before it runs it again (`remove_stale_temp_dirs`), and only those made on
this host by a process that no longer exists, so the temporary directory of a writer
still running (a slow worker, another node) is left alone.
"""

import logging
import os

import numpy as np

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.utils.atomic import (
    TEMP_PREFIX,
    remove_stale_temporaries,
    stale_temporaries,
)

__all__ = [
    "TEMP_PREFIX",
    "output_problem",
    "remove_stale_temp_dirs",
    "stale_temp_dirs",
]

log = logging.getLogger(__name__)

REQUIRED_ARRAYS = ("data", "dq", "err")


def _input_science_shape(input_path):
    """Science-area shape of the L1 input, or None if it cannot be read cheaply."""
    if not input_path or not os.path.isfile(input_path):
        return None
    import roman_datamodels as rdm

    try:
        with rdm.open(input_path, lazy_load=True) as model:
            shape = tuple(model["data"].shape)
    except Exception:
        return None
    if len(shape) != 3:
        return None
    return (shape[1] - 2 * REF_BORDER, shape[2] - 2 * REF_BORDER)


def output_problem(path, input_path=None):
    """Why ``path`` is not a complete output, or None if it is (module docstring).

    Parameters
    ----------
    path : str
        Output L2 file.
    input_path : str or None
        The exposure's L1 input, for the shape check (skipped when None or
        unreadable).

    Returns
    -------
    str or None
        A one-line reason, or None when the output is complete.
    """
    if not os.path.exists(path):
        return "output does not exist"
    if not os.path.isfile(path):
        return "output path is not a regular file"
    if os.path.getsize(path) == 0:
        return "output file is empty"
    import roman_datamodels as rdm
    from roman_datamodels import datamodels as dm

    try:
        model = rdm.open(path, lazy_load=True)
    except Exception as exc:
        return f"output does not open ({type(exc).__name__}: {exc})"
    try:
        if not isinstance(model, dm.ImageModel):
            return f"output is a {type(model).__name__}, not an L2 ImageModel"
        shapes = {}
        for name in REQUIRED_ARRAYS:
            if name not in model:
                return f"output has no '{name}' array"
            value = model[name]
            if not hasattr(value, "shape") or len(value.shape) != 2:
                return f"output '{name}' is not a 2-D array"
            kind = np.dtype(value.dtype).kind
            if (name == "dq") != (kind in "iu") or kind not in "iuf":
                return f"output '{name}' has unexpected dtype {value.dtype}"
            shapes[name] = tuple(value.shape)
        if len(set(shapes.values())) != 1:
            return f"output arrays differ in shape: {shapes}"
        for name in model:
            value = model[name]
            if hasattr(value, "shape") and hasattr(value, "dtype"):
                try:
                    np.asarray(value).ravel()[-1:].copy()
                except Exception as exc:
                    return (
                        f"output array '{name}' cannot be read "
                        f"({type(exc).__name__}: {exc})"
                    )
    finally:
        model.close()
    expected = _input_science_shape(input_path)
    if expected is not None and shapes["data"] != expected:
        return (
            f"output shape {shapes['data']} does not match the input's science "
            f"area {expected}"
        )
    return None


def stale_temp_dirs(path):
    """Leftover temporary directories of an interrupted write of ``path``.

    Only those holding a file named like ``path``, made on this host by a process
    that no longer exists (`romanimpreprocess.utils.atomic.stale_temporaries`).
    """
    path = os.path.abspath(os.fspath(path))
    return stale_temporaries(os.path.dirname(path), holding=os.path.basename(path))


def remove_stale_temp_dirs(path):
    """Remove the leftovers of an interrupted write of ``path``; return their paths."""
    path = os.path.abspath(os.fspath(path))
    return remove_stale_temporaries(
        os.path.dirname(path), holding=os.path.basename(path)
    )
