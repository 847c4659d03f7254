"""Offline stpipe base classes for romanimpreprocess steps and pipelines."""

from romanimpreprocess.stpipe.core import RipPipeline, RipStep, atomic_save, use_crds

__all__ = ["RipPipeline", "RipStep", "atomic_save", "use_crds"]
