"""The L1 -> L2 pipeline and the legacy configuration mapping."""

from romanimpreprocess.pipeline.l1_to_l2 import L1ToL2Pipeline

__all__ = ["L1ToL2Pipeline"]
