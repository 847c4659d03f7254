"""Legacy entry for noise realisations: ``gen_noise_image config.yaml``.

``python -m romanimpreprocess.L1_to_L2.gen_noise_image config.yaml`` calibrates the
exposure with ``SLICEOUT: True`` (writing ``OUT``, as
`romanimpreprocess.L1_to_L2.gen_cal_image.calibrateimage`) and then writes the noise
layers of ``NOISE`` to ``NOISE.OUT`` with `romanimpreprocess.noise.NoiseStep`
(docs/legacy.rst, docs/noise/index.rst). The ``NOISE`` keys and ``NOISE_PRECISION``
are checked before anything runs.
"""

import copy
import logging

__all__ = [
    "calibrateimage",
    "check_noise_config",
    "generate_all_noise",
    "main",
    "make_noise_step",
    "open_l2",
]

log = logging.getLogger(__name__)


def check_noise_config(config, *, source=None, base_dir=None):
    """Check a legacy config for a noise run: the whole config and its ``NOISE`` block.

    The same validation as every other legacy entry point
    (`romanimpreprocess.pipeline.legacy.validate`), with ``NOISE`` required.

    Raises
    ------
    LegacyConfigError
        Naming every problem found.
    """
    from romanimpreprocess.pipeline import legacy

    legacy.pipeline_args(config, source=source, base_dir=base_dir, require_noise=True)


def calibrateimage(config, verbose=True, **kwargs):
    """Calibrate the exposure of ``config`` (the calibration of ``gen_cal_image``).

    The survey driver calls it from here as
    ``gen_noise_image.calibrateimage(config | {"SLICEOUT": True})`` before
    `generate_all_noise`; it is
    `romanimpreprocess.L1_to_L2.gen_cal_image.calibrateimage`. Returns ``OUT``.
    """
    from romanimpreprocess.L1_to_L2.gen_cal_image import calibrateimage as calibrate

    return calibrate(config, verbose, **kwargs)


def open_l2(path):
    """Open an L2 file with its top-level ``processinfo`` attached to the model."""
    import roman_datamodels as rdm

    model = rdm.open(path)
    tree = getattr(getattr(model, "_asdf", None), "tree", {}) or {}
    if "processinfo" not in model and "processinfo" in tree:
        model["processinfo"] = tree["processinfo"]
    return model


def _calibrate_function(config):
    """L1 model → L2 model, calibrated exactly as the exposure (``config``)."""
    from romanimpreprocess._memory import return_freed_memory
    from romanimpreprocess.L1_to_L2.gen_cal_image import calibrateimage
    from romanimpreprocess.noise.noise_step import temp_files
    from romanimpreprocess.stpipe import atomic_save

    temp = config["NOISE"]["TEMP"]

    def calibrate(handover):
        # the L1 is read back from its file: the model goes once written, and the
        # memory it and the writing used leaves the process before the calibration
        # (the noise step keeps freed buffers otherwise)
        atomic_save(handover.pop(), temp)
        return_freed_memory()
        out = temp_files(temp)["L2"]
        run = copy.deepcopy(config)
        run.update({"IN": temp, "OUT": out, "SLICEOUT": False, "FITSOUT": False})
        run.pop("NOISE", None)
        calibrateimage(run)
        return open_l2(out)

    calibrate.takes_handover = True
    return calibrate


def make_noise_step(config):
    """A configured `NoiseStep` for a legacy config (R layers via the calibration)."""
    from romanimpreprocess.noise import NoiseStep

    block = config["NOISE"]
    caldir = config.get("CALDIR", {})
    overrides = {}
    for key, reftype in (("gain", "gain"), ("read", "readnoise"), ("dark", "dark")):
        if key in caldir:
            overrides[f"override_{reftype}"] = caldir[key]
    step = NoiseStep(
        layers=list(block["LAYER"]),
        seed=int(block["SEED"]),
        noise_file=block["OUT"],
        precision=int(config.get("NOISE_PRECISION", 32)),
        fits_output=bool(config.get("FITSOUT", False)),
        legacy_compat=bool(config.get("LEGACY_COMPAT", False)),
        **overrides,
    )
    step.l1 = config["IN"]
    step.calibrate = _calibrate_function(config)
    from romanimpreprocess.datamodels.l2 import plain_tree

    step.config_tree = plain_tree(config)
    return step


def generate_all_noise(config):
    """Write the ``NOISE`` layers of an exposure already calibrated to ``OUT``."""
    check_noise_config(config)
    step = make_noise_step(config)
    with open_l2(config["OUT"]) as l2:
        step.run(l2)
    return config["NOISE"]["OUT"]


def main(argv=None):
    """Command line: calibrate with SLICEOUT, then generate the noise layers."""
    from romanimpreprocess.L1_to_L2.gen_cal_image import run_cli
    from romanimpreprocess.pipeline import legacy

    def work(config_path):
        """Calibrate one L1 exposure (SLICEOUT) and write its noise layers (NOISE)."""
        config = legacy.load_config(config_path)
        # one validation before any work, the NOISE block included
        out = calibrateimage(
            config | {"SLICEOUT": True}, source=config_path, require_noise=True
        )
        noise = generate_all_noise(config)
        return f"wrote {out}\nwrote {noise}"

    return run_cli("python -m romanimpreprocess.L1_to_L2.gen_noise_image", argv, work)


if __name__ == "__main__":
    from romanimpreprocess._startup import exit_now, start_cli

    start_cli()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    exit_now(main())
