"""Legacy entry point: calibrate one exposure described by a legacy YAML config.

Three spellings do the same thing (docs/legacy.rst):

- ``python -m romanimpreprocess.L1_to_L2.gen_cal_image config.yaml``
- ``romanimpreprocess.L1_to_L2.gen_cal_image(config_dict)`` (the documented one; this
  module is callable)
- ``romanimpreprocess.L1_to_L2.gen_cal_image.calibrateimage(config_dict)`` (the
  function legacy scripts call)

The config goes through `L1ToL2Pipeline.from_legacy_config` (every problem reported
at once, before any work; the same path as ``strun rip_l1l2 --legacy_config``,
``gen_noise_image`` and ``rip-batch``) and the pipeline writes ``OUT`` (and the FITS
copy with ``FITSOUT``).
"""

import argparse
import logging
import os
import sys
import types

__all__ = ["calibrateimage", "main", "run_cli"]

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def calibrateimage(
    config, verbose=True, *, base_dir=None, source=None, require_noise=False
):
    """Calibrate the exposure described by the legacy ``config``.

    Parameters
    ----------
    config : dict or str
        Legacy configuration (IN, OUT, CALDIR, ...; docs/legacy.rst), or the path of
        its YAML file.
    verbose : bool
        Show INFO log lines on stderr when the caller has not configured logging.
    base_dir : str or None
        Directory relative paths in ``config`` are relative to (default: cwd).
    source : str or None
        The config's file, named in messages and never overwritten.
    require_noise : bool
        Noise layers follow (``gen_noise_image``): the ``NOISE`` block is checked
        with the rest, before any work.

    Returns
    -------
    str
        Path of the L2 file written (``OUT``).
    """
    from romanimpreprocess.pipeline import L1ToL2Pipeline

    pipeline, input_path = L1ToL2Pipeline.from_legacy_config(
        config, base_dir=base_dir, source=source, require_noise=require_noise
    )
    if verbose and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    result = pipeline.run(input_path)
    if result is not None and hasattr(result, "close"):
        result.close()
    return os.path.abspath(pipeline.output_file)


def run_cli(prog, argv, work):
    """Common command line of the legacy entry points: exit codes and messages.

    ``work(config_path)`` does the job and returns what to print. Exit 0 on success,
    2 for a configuration problem (nothing run), 1 for a problem with the data,
    the reference files or the output (the message names the file); never a
    traceback for a user error (the traceback is logged at DEBUG level).
    """
    from romanimpreprocess.pipeline import legacy

    parser = argparse.ArgumentParser(prog=prog, description=work.__doc__)
    parser.add_argument("config", help="legacy YAML configuration file")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    try:
        message = work(opts.config)
    except (legacy.ConfigFileError, legacy.LegacyConfigError) as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return 2
    except MemoryError:
        log.debug("%s failed", prog, exc_info=True)
        sys.stderr.write(f"{prog}: out of memory\n")
        return 1
    except (ValueError, OSError, TypeError, KeyError, IndexError) as err:
        # Problems with the data, reference files or outputs: the message names
        # them; the traceback is in the log at DEBUG level.
        log.debug("%s failed", prog, exc_info=True)
        sys.stderr.write(f"{prog}: {describe_error(err)}\n")
        return 1
    sys.stdout.write(f"{message}\n")
    return 0


def describe_error(err):
    """One line for a user: the error's class and message (with the file if any)."""
    if isinstance(err, OSError) and err.filename and str(err.filename) not in str(err):
        return f"{type(err).__name__}: {err.filename}: {err.strerror or err}"
    if isinstance(err, OSError) and err.filename:
        return f"{type(err).__name__}: {err.strerror or err}: {err.filename}"
    return f"{type(err).__name__}: {err}"


def main(argv=None):
    """Command line: ``python -m romanimpreprocess.L1_to_L2.gen_cal_image cfg.yaml``."""

    def work(config_path):
        """Calibrate one L1 exposure described by a legacy YAML config."""
        return f"wrote {calibrateimage(config_path, source=config_path)}"

    return run_cli("python -m romanimpreprocess.L1_to_L2.gen_cal_image", argv, work)


class _CallableModule(types.ModuleType):
    """Lets ``romanimpreprocess.L1_to_L2.gen_cal_image(config)`` call `calibrateimage`."""

    def __call__(self, config, verbose=True, **kwargs):
        return calibrateimage(config, verbose, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from romanimpreprocess._startup import exit_now, start_cli

    start_cli()
    exit_now(main())
