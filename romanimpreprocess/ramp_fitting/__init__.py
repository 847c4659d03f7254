"""Ramp fitting with jump detection (fixed-weight optimal fit or romancal likelihood)."""

from romanimpreprocess.ramp_fitting.ramp_fit_step import RampFitStep

__all__ = ["RampFitStep"]
