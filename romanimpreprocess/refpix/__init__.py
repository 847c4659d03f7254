"""Reference-pixel correction."""

from romanimpreprocess.refpix.refpix_step import RefPixStep

__all__ = ["RefPixStep"]
