"""Legacy entry point: calibrate one exposure described by a legacy YAML config.

Three spellings do the same thing (docs/legacy.rst):

- ``python -m romanimpreprocess.L1_to_L2.gen_cal_image config.yaml``
- ``romanimpreprocess.L1_to_L2.gen_cal_image(config_dict)`` (the documented one; this
  module is callable)
- ``romanimpreprocess.L1_to_L2.gen_cal_image.calibrateimage(config_dict)`` (the
  function legacy scripts call)

The config goes through `romanimpreprocess.pipeline.legacy.pipeline_args` (every
problem reported at once, before any work) and then `L1ToL2Pipeline` runs with the
resulting parameters and writes ``OUT`` (and the FITS copy with ``FITSOUT``).
"""

import argparse
import logging
import sys
import types

__all__ = ["calibrateimage", "main"]

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def calibrateimage(config, verbose=True, *, base_dir=None):
    """Calibrate the exposure described by the legacy ``config`` dict.

    Parameters
    ----------
    config : dict
        Legacy configuration (IN, OUT, CALDIR, ...; docs/legacy.rst).
    verbose : bool
        Show INFO log lines on stderr when the caller has not configured logging.
    base_dir : str or None
        Directory relative paths in ``config`` are relative to (default: cwd).

    Returns
    -------
    str
        Path of the L2 file written (``OUT``).
    """
    from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy

    args = legacy.pipeline_args(config, base_dir=base_dir)
    pipeline = L1ToL2Pipeline(steps=args.steps, **args.parameters)
    pipeline.output_file = args.output
    pipeline.save_results = True
    pipeline.legacy_config_dict = args.config
    if verbose and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    result = pipeline.run(args.input)
    if result is not None and hasattr(result, "close"):
        result.close()
    return args.output


def main(argv=None):
    """Command line: ``python -m romanimpreprocess.L1_to_L2.gen_cal_image cfg.yaml``."""
    from romanimpreprocess.pipeline import legacy

    parser = argparse.ArgumentParser(
        prog="python -m romanimpreprocess.L1_to_L2.gen_cal_image",
        description="Calibrate one L1 exposure described by a legacy YAML config.",
    )
    parser.add_argument("config", help="legacy YAML configuration file")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    try:
        config = legacy.load_config(opts.config)
        legacy.pipeline_args(config, source=opts.config)
        out = calibrateimage(config)
    except (legacy.ConfigFileError, legacy.LegacyConfigError) as err:
        sys.stderr.write(f"gen_cal_image: {err}\n")
        return 2
    except (ValueError, OSError) as err:
        # Problems with the data or reference files: the message names them; the
        # traceback is in the log at DEBUG level.
        log.debug("gen_cal_image failed", exc_info=True)
        sys.stderr.write(f"gen_cal_image: {type(err).__name__}: {err}\n")
        return 1
    sys.stdout.write(f"wrote {out}\n")
    return 0


class _CallableModule(types.ModuleType):
    """Lets ``romanimpreprocess.L1_to_L2.gen_cal_image(config)`` call `calibrateimage`."""

    def __call__(self, config, verbose=True, **kwargs):
        return calibrateimage(config, verbose, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from romanimpreprocess._startup import exit_now, start_cli

    start_cli()
    exit_now(main())
