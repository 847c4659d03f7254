"""Entry point for stpipe's ``stpipe.steps`` group (``strun <alias>``, ``stpipe list``).

Keep imports out of this module: stpipe imports it for every ``strun`` call. In a
process started as stpipe's command line, `get_steps` has the stack loaded the fast
way before romancal's entry point loads it the slow way
(`romanimpreprocess._startup.load_stack_for_stpipe_command_line`).
"""

__all__ = ["STEPS", "get_steps"]

# (fully-qualified class name, class_alias, is_pipeline)
STEPS = [
    ("romanimpreprocess.pipeline.L1ToL2Pipeline", "rip_l1l2", True),
    ("romanimpreprocess.dq_init.DQInitStep", "rip_dq_init", False),
    ("romanimpreprocess.saturation.SaturationStep", "rip_saturation", False),
    ("romanimpreprocess.refpix.RefPixStep", "rip_refpix", False),
    ("romanimpreprocess.biascorr.BiasCorrStep", "rip_biascorr", False),
    ("romanimpreprocess.dark_decay.DarkDecayStep", "rip_dark_decay", False),
    (
        "romanimpreprocess.wfi18_transient.WFI18TransientStep",
        "rip_wfi18_transient",
        False,
    ),
    ("romanimpreprocess.linearity.LinearityLegendreStep", "rip_linearity", False),
    ("romanimpreprocess.ipc.IPCStep", "rip_ipc", False),
    ("romanimpreprocess.ramp_fitting.RampFitStep", "rip_ramp_fit", False),
    ("romanimpreprocess.dark_current.DarkCurrentStep", "rip_dark_current", False),
    ("romanimpreprocess.flatfield.FlatFieldStep", "rip_flatfield", False),
    ("romanimpreprocess.photom.PhotomStep", "rip_photom", False),
    ("romanimpreprocess.sky.SkyStep", "rip_sky", False),
    ("romanimpreprocess.noise.NoiseStep", "rip_noise", False),
]


def get_steps():
    """Return the steps and pipelines this package registers with stpipe.

    Returns
    -------
    list of tuple
        ``(class name, class alias, is pipeline)`` for every registered class.
    """
    import os
    import sys

    # stpipe's programs (as `romanimpreprocess._startup._stpipe_command_line`, which
    # is imported only then: the other processes get nothing more than this module)
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("strun", "stpipe"):
        from romanimpreprocess._startup import load_stack_for_stpipe_command_line

        load_stack_for_stpipe_command_line()
    return list(STEPS)
