"""Synthetic L1 exposures and matching calibration sets with known truth."""

from romanimpreprocess.simulate.simulate import (
    READ_PATTERNS,
    SimulationConfig,
    SimulationPaths,
    simulate_exposure,
    write_simulation,
)

__all__ = [
    "READ_PATTERNS",
    "SimulationConfig",
    "SimulationPaths",
    "simulate_exposure",
    "write_simulation",
]
