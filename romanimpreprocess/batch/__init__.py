"""Many exposures at once on dask.distributed (``rip-batch``); see ``docs/batch.rst``."""

from romanimpreprocess.batch.exposures import (
    BatchInputError,
    Exposure,
    exposures_from_configs,
    exposures_from_l1,
)
from romanimpreprocess.batch.outputs import output_problem
from romanimpreprocess.batch.resources import estimate_exposure_memory
from romanimpreprocess.batch.runner import BatchReport, format_table, run_batch
from romanimpreprocess.batch.task import process_exposure, run_pipeline

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
