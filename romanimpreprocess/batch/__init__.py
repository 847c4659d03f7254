"""Many exposures at once on dask.distributed (``rip-batch``); see ``docs/batch.rst``.

The names below are imported from their modules when first used: a dask worker
unpickles its task function (`runner`) without importing the romancal stack, so that
``rip-batch``'s own workers import it the fast way (`romanimpreprocess._startup`,
called by the task first) instead of before it.
"""

import importlib

# name -> module of romanimpreprocess.batch that defines it
_EXPORTS = {
    "BatchInputError": "exposures",
    "Exposure": "exposures",
    "exposures_from_configs": "exposures",
    "exposures_from_l1": "exposures",
    "output_problem": "outputs",
    "estimate_exposure_memory": "resources",
    "BatchReport": "runner",
    "format_table": "runner",
    "run_batch": "runner",
    "process_exposure": "task",
    "run_pipeline": "task",
}

__all__ = [
    "BatchInputError",
    "BatchReport",
    "Exposure",
    "estimate_exposure_memory",
    "exposures_from_configs",
    "exposures_from_l1",
    "format_table",
    "output_problem",
    "process_exposure",
    "run_batch",
    "run_pipeline",
]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
