"""Sky estimate and subtraction."""

from romanimpreprocess.sky.sky_step import SkyStep

__all__ = ["SkyStep"]
