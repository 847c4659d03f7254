"""Legacy entry points: ``gen_cal_image`` (calibration) and ``gen_noise_image`` (noise).

``romanimpreprocess.L1_to_L2.gen_cal_image`` is both the module run by
``python -m romanimpreprocess.L1_to_L2.gen_cal_image config.yaml`` and a function:
``gen_cal_image(config_dict)`` calibrates one exposure, as the legacy docs spell it.
"""

import importlib

__all__ = ["gen_cal_image", "gen_noise_image"]


def __getattr__(name):
    # Imported on first use so that ``python -m ...gen_cal_image`` does not find the
    # module already imported by its package.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
