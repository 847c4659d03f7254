"""Noise realisations of a calibrated exposure (legacy NOISE layers)."""

import importlib

__all__ = ["NoiseStep"]


def __getattr__(name):
    # The Step (and stpipe with it) loads on first use: the legacy ``gen_noise_image``
    # imports `romanimpreprocess.noise.layers` before its process is set up.
    if name == "NoiseStep":
        return importlib.import_module(f"{__name__}.noise_step").NoiseStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
