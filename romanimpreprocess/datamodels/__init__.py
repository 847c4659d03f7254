"""Readers for the L1 input and the calibration reference files; L2 product helpers."""

from romanimpreprocess.datamodels.errors import (
    InputFileError,
    MissingReferenceError,
    ReferenceFileError,
)
from romanimpreprocess.datamodels.geometry import Geometry, resultant_times
from romanimpreprocess.datamodels.l1 import (
    large_reads,
    open_l1,
    raw_to_ramp,
    validate_l1,
)
from romanimpreprocess.datamodels.reference import (
    CALDIR_TO_REFTYPE,
    FIELDS,
    ExposureInfo,
    ReferenceFile,
    open_reference,
)

__all__ = [
    "CALDIR_TO_REFTYPE",
    "FIELDS",
    "ExposureInfo",
    "Geometry",
    "InputFileError",
    "MissingReferenceError",
    "ReferenceFile",
    "ReferenceFileError",
    "large_reads",
    "open_l1",
    "open_reference",
    "raw_to_ramp",
    "resultant_times",
    "validate_l1",
]
