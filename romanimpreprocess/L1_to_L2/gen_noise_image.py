"""Legacy entry for noise realisations: ``gen_noise_image config.yaml``.

``python -m romanimpreprocess.L1_to_L2.gen_noise_image config.yaml`` calibrates the
exposure with ``SLICEOUT: True`` (writing ``OUT``, as
`romanimpreprocess.L1_to_L2.gen_cal_image.calibrateimage`) and then writes the noise
layers of ``NOISE`` to ``NOISE.OUT`` with `romanimpreprocess.noise.NoiseStep`
(legacy_config.md §5, algorithms.md §17). The ``NOISE`` keys and ``NOISE_PRECISION``
are checked before anything runs.
"""

import argparse
import copy
import logging
import os

import yaml

from romanimpreprocess.noise.layers import noise_dtype, parse_layers

__all__ = [
    "calibrateimage",
    "check_noise_config",
    "generate_all_noise",
    "main",
    "make_noise_step",
    "open_l2",
]

log = logging.getLogger(__name__)

_NOISE_KEYS = ("LAYER", "TEMP", "SEED", "OUT")


def check_noise_config(config):
    """Check the ``NOISE`` block and ``NOISE_PRECISION`` of a legacy config.

    Raises
    ------
    ValueError
        Naming every problem found (missing keys, wrong types, bad layer strings,
        unsupported precision).
    """
    problems = []
    block = config.get("NOISE")
    if not isinstance(block, dict):
        problems.append("NOISE: missing or not a mapping (keys LAYER, TEMP, SEED, OUT)")
        block = {}
    for key in _NOISE_KEYS:
        if block and key not in block:
            problems.append(f"NOISE.{key}: missing")
    if "LAYER" in block:
        try:
            parse_layers(block["LAYER"])
        except ValueError as exc:
            problems.append(f"NOISE.LAYER: {exc}")
    for key in ("TEMP", "OUT"):
        value = block.get(key)
        if key in block and not (isinstance(value, str) and value.endswith(".asdf")):
            problems.append(
                f"NOISE.{key}: must be a path ending in .asdf, got {value!r}"
            )
    seed = block.get("SEED")
    if "SEED" in block and (
        isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
    ):
        problems.append(f"NOISE.SEED: must be a non-negative integer, got {seed!r}")
    if "NOISE_PRECISION" in config:
        try:
            noise_dtype(config["NOISE_PRECISION"])
        except ValueError as exc:
            problems.append(f"NOISE_PRECISION: {exc}")
    for key in ("IN", "OUT"):
        if key not in config:
            problems.append(f"{key}: missing")
    caldir = config.get("CALDIR")
    if not isinstance(caldir, dict):
        problems.append("CALDIR: missing or not a mapping")
    if problems:
        raise ValueError("noise configuration: " + "; ".join(problems))


def calibrateimage(config, verbose=True, *, base_dir=None):
    """Calibrate the exposure of ``config`` (the calibration of ``gen_cal_image``).

    The survey driver calls it from here as
    ``gen_noise_image.calibrateimage(config | {"SLICEOUT": True})`` before
    `generate_all_noise`; it is
    `romanimpreprocess.L1_to_L2.gen_cal_image.calibrateimage`. Returns ``OUT``.
    """
    from romanimpreprocess.L1_to_L2.gen_cal_image import calibrateimage as calibrate

    return calibrate(config, verbose, base_dir=base_dir)


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
    from romanimpreprocess.L1_to_L2.gen_cal_image import calibrateimage
    from romanimpreprocess.stpipe import atomic_save

    temp = config["NOISE"]["TEMP"]
    stem = os.path.splitext(temp)[0]

    def calibrate(l1):
        atomic_save(l1, temp)
        out = stem + "_L2.asdf"
        run = copy.deepcopy(config)
        run.update({"IN": temp, "OUT": out, "SLICEOUT": False, "FITSOUT": False})
        run.pop("NOISE", None)
        calibrateimage(run)
        return open_l2(out)

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
    parser = argparse.ArgumentParser(
        prog="python -m romanimpreprocess.L1_to_L2.gen_noise_image",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("config", help="legacy YAML configuration with a NOISE block")
    args = parser.parse_args(argv)
    with open(args.config) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise TypeError(f"{args.config}: not a YAML mapping")
    check_noise_config(config)
    calibrateimage(config | {"SLICEOUT": True})
    generate_all_noise(config)
    return 0


if __name__ == "__main__":
    from romanimpreprocess._startup import exit_now

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    exit_now(main())
