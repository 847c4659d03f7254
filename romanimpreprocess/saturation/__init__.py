"""Saturation flagging."""

from romanimpreprocess.saturation.saturation_step import SaturationStep

__all__ = ["SaturationStep"]
