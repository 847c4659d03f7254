"""Inter-pixel capacitance deconvolution."""

from romanimpreprocess.ipc.ipc_step import IPCStep

__all__ = ["IPCStep"]
