"""WFI18 first-read transient correction."""

from romanimpreprocess.wfi18_transient.wfi18_transient_step import WFI18TransientStep

__all__ = ["WFI18TransientStep"]
