"""Load the romancal stack's YAML manifests with libyaml.

roman_datamodels (at import) and asdf (at the first file opened) parse their
extension manifests, about 1.5 MB of YAML, with ``yaml.safe_load``: PyYAML's pure
Python parser, about 1.3 s of every run's start-up on the survey machines. The C
parser (libyaml, shipped in PyYAML's wheels) gives the same documents in a fraction
of the time. `load_stack` parses them with it, once per process, and puts
``yaml.safe_load`` back as it was: nothing outside these loads is affected.
"""

import contextlib

__all__ = ["load_stack"]

_loaded = False


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
    """Import roman_datamodels and load asdf's extensions (libyaml for both)."""
    global _loaded
    if _loaded:
        return
    with _safe_load_with_libyaml():
        import asdf
        import roman_datamodels.datamodels  # noqa: F401 (manifests parsed at import)

        asdf.get_config().extensions  # noqa: B018 (manifests parsed on first access)
    _loaded = True
