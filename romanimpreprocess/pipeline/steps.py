"""The steps of `L1ToL2Pipeline`, in the order they run.

Kept apart from the pipeline class so that the legacy-config mapping
(`romanimpreprocess.pipeline.legacy`) can list the steps' reference types without
importing the pipeline, which imports the mapping: imports go one way.
"""

from romanimpreprocess.biascorr import BiasCorrStep
from romanimpreprocess.dark_current import DarkCurrentStep
from romanimpreprocess.dark_decay import DarkDecayStep
from romanimpreprocess.dq_init import DQInitStep
from romanimpreprocess.flatfield import FlatFieldStep
from romanimpreprocess.ipc import IPCStep
from romanimpreprocess.linearity import LinearityLegendreStep
from romanimpreprocess.noise import NoiseStep
from romanimpreprocess.photom import PhotomStep
from romanimpreprocess.ramp_fitting import RampFitStep
from romanimpreprocess.refpix import RefPixStep
from romanimpreprocess.saturation import SaturationStep
from romanimpreprocess.sky import SkyStep
from romanimpreprocess.wfi18_transient import WFI18TransientStep

__all__ = ["PIPELINE_CLASS", "STEP_DEFS"]

# The name a parameter file's ``class:`` line gives the pipeline.
PIPELINE_CLASS = "romanimpreprocess.pipeline.L1ToL2Pipeline"

STEP_DEFS = {
    "dq_init": DQInitStep,
    "saturation": SaturationStep,
    "refpix": RefPixStep,
    "biascorr": BiasCorrStep,
    "dark_decay": DarkDecayStep,
    "wfi18_transient": WFI18TransientStep,
    "linearity": LinearityLegendreStep,
    "ipc": IPCStep,
    "ramp_fit": RampFitStep,
    "dark_current": DarkCurrentStep,
    "flatfield": FlatFieldStep,
    "photom": PhotomStep,
    "sky": SkyStep,
    "noise": NoiseStep,
}
