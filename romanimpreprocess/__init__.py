"""Roman WFI Level-1 to Level-2 image preprocessing as an stpipe step suite."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("romanimpreprocess")
except PackageNotFoundError:  # running from a bare checkout
    __version__ = "unknown"

__all__ = ["__version__"]

# Every entry point needs roman_datamodels and asdf; load them now, with the fast
# YAML parser for their manifests (`romanimpreprocess._startup`).
from romanimpreprocess._startup import load_stack as _load_stack

_load_stack()
