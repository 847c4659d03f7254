"""Bias correction."""

from romanimpreprocess.biascorr.biascorr_step import BiasCorrStep

__all__ = ["BiasCorrStep"]
