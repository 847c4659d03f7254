"""Detector geometry and physical constants, with units, in one place.

Nothing else in the package hard-codes the frame size: arrays carry their own shape,
and the geometry of a frame is described by `romanimpreprocess.datamodels.Geometry`.
"""

from enum import IntEnum

__all__ = [
    "AMP33_WIDTH",
    "ATOD_LIMIT",
    "FULL_FRAME",
    "G_IDEAL",
    "IPC_NOISE_GAIN_KEY",
    "N_CHANNELS",
    "OMEGA_IDEAL",
    "REFPIX_ROW_VARIANCE_KEY",
    "REF_BORDER",
    "Const",
]


class Const(IntEnum):
    """Integer geometry constants of a WFI sensor chip assembly (SCA)."""

    REF_BORDER = 4  # reference-pixel border on every side of the frame, pixels
    N_CHANNELS = 32  # readout channels across the frame
    AMP33_WIDTH = 128  # columns of the reference output ("amp33") block
    FULL_FRAME = 4096  # full-frame size incl. border; default of the simulator only


REF_BORDER = int(Const.REF_BORDER)
N_CHANNELS = int(Const.N_CHANNELS)
AMP33_WIDTH = int(Const.AMP33_WIDTH)
FULL_FRAME = int(Const.FULL_FRAME)

ATOD_LIMIT = 65535.0  # hard DN limit of the 16-bit A-to-D converter
G_IDEAL = 1.458  # e/DN, the gain the flat normalises to (legacy pars.g_ideal)
OMEGA_IDEAL = 2.8440360952308436e-13  # sr, ideal pixel solid angle (0.11 arcsec)^2

# processinfo keys by which the IPC and refpix steps hand their noise models to the
# ramp fit, which removes them (they are not part of the L2 product): the white-noise
# variance gain of the IPC deconvolution (science area) and the row noise left by the
# reference-pixel correction per resultant, row and channel.
IPC_NOISE_GAIN_KEY = "_ipc_noise_gain"
REFPIX_ROW_VARIANCE_KEY = "_refpix_row_variance"
