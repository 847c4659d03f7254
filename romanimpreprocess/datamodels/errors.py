"""Exceptions raised for bad input and reference files.

Every message names the file, the field and the problem, so that a user processing
thousands of exposures can fix the right file without a debugger.
"""

__all__ = [
    "InputFileError",
    "MissingReferenceError",
    "ReferenceFileError",
    "WCSHeaderError",
]


class ReferenceFileError(ValueError):
    """A calibration reference file is missing, unreadable or inconsistent."""

    def __init__(self, reftype, path, problem, field=None):
        self.reftype = reftype
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f", field '{field}'" if field else ""
        super().__init__(f"{reftype} reference file {self.path}{where}: {problem}")


class InputFileError(ValueError):
    """The Level-1 input exposure is missing, unreadable or inconsistent."""

    def __init__(self, path, problem, field=None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f", field '{field}'" if field else ""
        super().__init__(f"input exposure {self.path}{where}: {problem}")


class WCSHeaderError(InputFileError):
    """The FITSWCS header text file (``wcs_header``) is missing or unusable."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.field = None
        self.problem = problem
        ValueError.__init__(self, f"WCS header file {self.path}: {problem}")


class MissingReferenceError(ValueError):
    """A step needs a reference file that was not given as an override."""
