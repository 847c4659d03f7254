"""Noise realisations of a calibrated exposure (legacy NOISE layers)."""

from romanimpreprocess.noise.noise_step import NoiseStep

__all__ = ["NoiseStep"]
