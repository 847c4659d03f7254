"""Roman WFI Level-1 to Level-2 image preprocessing as an stpipe step suite."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("romanimpreprocess")
except PackageNotFoundError:  # running from a bare checkout
    __version__ = "unknown"

__all__ = ["__version__"]
