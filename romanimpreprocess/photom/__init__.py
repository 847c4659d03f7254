"""Photometric conversion of the L2 (MJy/sr per flattened DN/s per ideal pixel)."""

from romanimpreprocess.photom.photom_step import PhotomStep

__all__ = ["PhotomStep"]
