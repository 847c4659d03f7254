"""Classical (Legendre) linearity correction."""

from romanimpreprocess.linearity.linearity_step import LinearityLegendreStep

__all__ = ["LinearityLegendreStep"]
