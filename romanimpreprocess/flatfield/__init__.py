"""Flat field with pixel-area normalisation."""

from romanimpreprocess.flatfield.flatfield_step import FlatFieldStep

__all__ = ["FlatFieldStep"]
