"""Load the romancal stack's YAML manifests with libyaml.

roman_datamodels (at import) and asdf (at the first file opened) parse their
extension manifests, about 1.5 MB of YAML, with ``yaml.safe_load``: PyYAML's pure
Python parser, about 1.3 s of every run's start-up on the survey machines. The C
parser (libyaml, shipped in PyYAML's wheels) gives the same documents in a fraction
of the time. `load_stack` parses them with it, once per process, and puts
``yaml.safe_load`` back as it was: nothing outside these loads is affected.
"""

import contextlib

__all__ = ["exit_now", "load_stack"]


@contextlib.contextmanager
def _safe_load_with_libyaml():
    import yaml

    if not getattr(yaml, "__with_libyaml__", False):
        yield
        return
    original = yaml.safe_load

    def safe_load(stream):
        return yaml.load(stream, Loader=yaml.CSafeLoader)

    yaml.safe_load = safe_load
    try:
        yield
    finally:
        yaml.safe_load = original


def load_stack():
    """Import roman_datamodels and load asdf's extensions (libyaml for both).

    Called once, by the package's ``__init__``; a later call finds both loaded and
    costs nothing.
    """
    with _safe_load_with_libyaml():
        import asdf
        import roman_datamodels.datamodels  # noqa: F401 (manifests parsed at import)

        asdf.get_config().extensions  # noqa: B018 (manifests parsed on first access)


def exit_now(code: int) -> None:
    """End a command-line run at once, once its output is complete.

    Tearing the interpreter down after a full-frame run (freeing a few GB of arrays
    object by object, unloading the stack) takes about a second and does nothing
    useful: the products are already written and renamed into place. Logs and the
    standard streams are flushed first.
    """
    import logging
    import os
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(int(code))
