"""Roman WFI Level-1 to Level-2 image preprocessing as an stpipe step suite.

Importing the package defines names and nothing else: no other module (of the
package, of the romancal stack or of the standard library) is imported and nothing is
patched, because stpipe imports this package in every process that resolves a step
alias, romancal-only runs included. ``__version__`` is read from the installed
metadata on first use. Our command-line programs and batch workers prepare their own
process (`romanimpreprocess._startup`).
"""

__all__ = ["__version__"]


def __getattr__(name):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("romanimpreprocess")
        except PackageNotFoundError:  # running from a bare checkout
            return "unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
