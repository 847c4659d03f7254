"""Data-quality initialisation."""

from romanimpreprocess.dq_init.dq_init_step import DQInitStep

__all__ = ["DQInitStep"]
