"""The one place that knows the legacy ``gen_cal_image`` configuration keys.

A legacy config (legacy_config.md: ``IN``, ``OUT``, ``FITSWCS``, ``CALDIR{...}``,
``JUMP_DETECT_PARS``, ``RAMP_OPT_PARS``, ``SKYORDER``, ...) becomes a `PipelineArgs`: the
input path, the output path, pipeline parameters and a ``steps={...}`` dict of step
parameters and ``override_<reftype>`` paths for `L1ToL2Pipeline`.

Every problem in a config (unknown or misspelt key, missing required key, wrong type,
missing file) is collected and reported in one `LegacyConfigError` before any
processing starts. Unlike the legacy tool, unknown keys are errors: a misspelt
``SKYORDR`` would otherwise silently run without sky subtraction.

The same mapping backs ``python -m romanimpreprocess.L1_to_L2.gen_cal_image cfg.yaml``,
``strun rip_l1l2 IN.asdf --legacy_config=cfg.yaml``, ``rip-batch`` and the converter
``rip-legacy-to-asdf cfg.yaml params.asdf`` (`convert_main`).
"""

import argparse
import copy
import difflib
import logging
import numbers
import os
import sys
from dataclasses import dataclass, field

import yaml

from romanimpreprocess.datamodels.reference import CALDIR_TO_REFTYPE

__all__ = [
    "CALDIR_KEYS",
    "TOP_LEVEL_KEYS",
    "ConfigFileError",
    "LegacyConfigError",
    "PipelineArgs",
    "convert_main",
    "load_config",
    "pipeline_args",
    "write_parameter_file",
]

log = logging.getLogger(__name__)

# key -> (expected type description, required)
TOP_LEVEL_KEYS = {
    "IN": ("path", True),
    "OUT": ("path", True),
    "FITSWCS": ("path", False),
    "CALDIR": ("mapping", True),
    "EXCLUDE_FIRST": ("bool", False),
    "SATURATION_BACKUP": ("int", False),
    "correct_wfi18_transient": ("bool", False),
    "wfi18_mask_rows": ("bool", False),
    "romancal_ramp_fit": ("bool", False),
    "REJECTION_THRESHOLD": ("number", False),
    "JUMP_KW": ("mapping or null", False),
    "RAMP_OPT_PARS": ("mapping", False),
    "JUMP_DETECT_PARS": ("mapping", False),
    "SKYORDER": ("int or null", False),
    "SLICEOUT": ("bool", False),
    "FITSOUT": ("bool", False),
    "NOISE": ("mapping", False),
    "NOISE_PRECISION": ("int", False),
    "LEGACY_COMPAT": ("bool", False),
}

# CALDIR key -> required (legacy_config.md §2). ``ipc4d`` is optional here: without it
# the IPC deconvolution is skipped everywhere (the legacy crashed in the flat step).
CALDIR_KEYS = {
    "dark": True,
    "flat": True,
    "gain": True,
    "linearitylegendre": True,
    "read": True,
    "saturation": True,
    "ipc4d": False,
    "mask": False,
    "biascorr": False,
    "dark_decay": False,
    "photom": False,
}
_CALDIR_IGNORED = ("NO_AMP33",)  # used only by the legacy simulator

_RAMP_OPT_PARS = {
    "slope": "opt_slope",
    "gain": "opt_gain",
    "sigma_read": "opt_sigma_read",
}
_JUMP_DETECT_PARS = {
    "SthreshA": "sthresh_a",
    "SthreshB": "sthresh_b",
    "IthreshA": "ithresh_a",
    "IthreshB": "ithresh_b",
}
_JUMP_KW = (
    "expand_large_events",
    "min_jump_area",
    "min_sat_area",
    "expand_factor",
    "sat_required_snowball",
    "min_sat_radius_extend",
    "sat_expand",
    "edge_size",
    "maximum_cores",
)
_NOISE_KEYS = {"LAYER": True, "TEMP": False, "SEED": False, "OUT": False}


class ConfigFileError(ValueError):
    """A legacy config file that cannot be read (missing, unreadable, not YAML)."""


class LegacyConfigError(ValueError):
    """Every problem found in a legacy config, reported together."""

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        where = f"legacy config {source}" if source else "legacy config"
        count = len(self.problems)
        lines = [f"{where}: {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass
class PipelineArgs:
    """What a legacy config means for `L1ToL2Pipeline`.

    Attributes
    ----------
    input : str
        Absolute path of the L1 exposure (``IN``).
    output : str
        Absolute path of the L2 product (``OUT``).
    parameters : dict
        Pipeline-level parameters (``legacy_compat``, ``fits_output``, ``sliceout``).
    steps : dict
        ``{step name: {parameter: value}}`` including ``override_<reftype>`` paths.
    config : dict
        The legacy config as given (stored in ``processinfo.config``).
    """

    input: str
    output: str
    parameters: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def call_kwargs(self):
        """Keyword arguments for ``L1ToL2Pipeline.call(self.input, **kwargs)``."""
        return {
            "steps": copy.deepcopy(self.steps),
            "output_file": self.output,
            "save_results": True,
            **self.parameters,
        }


# ------------------------------------------------------------------ reading
def load_config(path):
    """Read a legacy YAML config; errors name the file and the problem."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigFileError(f"legacy config {path}: file not found") from None
    except OSError as err:
        raise ConfigFileError(f"legacy config {path}: cannot read ({err})") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"legacy config {path}: not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise LegacyConfigError(
            [f"the file must hold a mapping of keys, got {type(config).__name__}"],
            source=path,
        )
    return config


# --------------------------------------------------------------- validation
def _is_bool(value):
    return isinstance(value, bool) or (
        isinstance(value, int) and not isinstance(value, bool) and value in (0, 1)
    )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _unknown(key, known, where=""):
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}{key}: unknown key{hint}"


def _resolve(path, base_dir):
    path = os.path.expanduser(os.path.expandvars(str(path)))
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return os.path.normpath(path)


def _check_type(key, value, kind, problems):
    ok = {
        "path": lambda v: isinstance(v, str) and v.strip() != "",
        "mapping": lambda v: isinstance(v, dict),
        "mapping or null": lambda v: v is None or isinstance(v, dict),
        "bool": _is_bool,
        "int": _is_int,
        "int or null": lambda v: v is None or _is_int(v),
        "number": _is_number,
    }[kind](value)
    if not ok:
        problems.append(
            f"{key}: expected {kind.replace('path', 'a file path')}, got "
            f"{type(value).__name__} {value!r}"
        )
    return ok


def _check_file(key, path, problems, *, must_exist=True):
    if must_exist and not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "file not found"
        problems.append(f"{key}: {what}: {path}")
        return False
    return True


def _validate(config, base_dir, check_files):
    """Return (problems, resolved paths) for a legacy config dict."""
    problems = []
    paths = {}
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            problems.append(_unknown(key, TOP_LEVEL_KEYS))
    for key, (kind, required) in TOP_LEVEL_KEYS.items():
        if key not in config:
            if required:
                problems.append(f"{key}: required key is missing")
            continue
        _check_type(key, config[key], kind, problems)

    if isinstance(config.get("IN"), str) and config["IN"].strip():
        paths["IN"] = _resolve(config["IN"], base_dir)
        if check_files:
            _check_file("IN", paths["IN"], problems)
    if isinstance(config.get("OUT"), str) and config["OUT"].strip():
        paths["OUT"] = _resolve(config["OUT"], base_dir)
        if not paths["OUT"].endswith(".asdf"):
            problems.append(f"OUT: must end in '.asdf', got {config['OUT']!r}")
        out_dir = os.path.dirname(paths["OUT"])
        if check_files and not os.path.isdir(out_dir):
            problems.append(f"OUT: directory does not exist: {out_dir}")
        elif check_files and not os.access(out_dir, os.W_OK):
            problems.append(f"OUT: directory is not writable: {out_dir}")
    if "IN" in paths and paths.get("OUT") == paths["IN"]:
        problems.append(f"OUT: is the input file IN ({paths['IN']}); it would be lost")
    if isinstance(config.get("FITSWCS"), str) and config["FITSWCS"].strip():
        paths["FITSWCS"] = _resolve(config["FITSWCS"], base_dir)
        if check_files:
            _check_file("FITSWCS", paths["FITSWCS"], problems)

    caldir = config.get("CALDIR")
    if isinstance(caldir, dict):
        for key in caldir:
            if key not in CALDIR_KEYS and key not in _CALDIR_IGNORED:
                problems.append(_unknown(key, CALDIR_KEYS, where="CALDIR."))
        for key, required in CALDIR_KEYS.items():
            if key not in caldir or caldir[key] is None:
                if required:
                    problems.append(f"CALDIR.{key}: required entry is missing")
                continue
            if _check_type(f"CALDIR.{key}", caldir[key], "path", problems):
                paths[f"CALDIR.{key}"] = _resolve(caldir[key], base_dir)
                if check_files:
                    _check_file(f"CALDIR.{key}", paths[f"CALDIR.{key}"], problems)

    opt = config.get("RAMP_OPT_PARS")
    if isinstance(opt, dict):
        for key in opt:
            if key not in _RAMP_OPT_PARS:
                problems.append(_unknown(key, _RAMP_OPT_PARS, where="RAMP_OPT_PARS."))
        for key in _RAMP_OPT_PARS:
            if key not in opt:
                # The legacy replaces the defaults wholesale and then fails (KeyError).
                problems.append(
                    f"RAMP_OPT_PARS.{key}: missing (give slope, gain and sigma_read "
                    f"together)"
                )
            elif not _is_number(opt[key]):
                problems.append(
                    f"RAMP_OPT_PARS.{key}: expected a number, got {opt[key]!r}"
                )
            elif key in ("gain", "sigma_read") and opt[key] <= 0:
                problems.append(f"RAMP_OPT_PARS.{key}: must be > 0, got {opt[key]!r}")

    jump = config.get("JUMP_DETECT_PARS")
    if isinstance(jump, dict):
        for key, value in jump.items():
            if key not in _JUMP_DETECT_PARS:
                problems.append(
                    _unknown(key, _JUMP_DETECT_PARS, where="JUMP_DETECT_PARS.")
                )
            elif not _is_number(value):
                problems.append(
                    f"JUMP_DETECT_PARS.{key}: expected a number, got {value!r}"
                )
        ia, ib = jump.get("IthreshA", 1.0), jump.get("IthreshB", 1000.0)
        if _is_number(ia) and _is_number(ib):
            if ia <= 0:
                problems.append(f"JUMP_DETECT_PARS.IthreshA: must be > 0, got {ia!r}")
            elif ia >= ib:
                problems.append(
                    f"JUMP_DETECT_PARS: IthreshA ({ia!r}) must be below IthreshB "
                    f"({ib!r})"
                )

    jump_kw = config.get("JUMP_KW")
    if isinstance(jump_kw, dict):
        for key in jump_kw:
            if key not in _JUMP_KW:
                problems.append(_unknown(key, _JUMP_KW, where="JUMP_KW."))

    order = config.get("SKYORDER")
    if _is_int(order) and order < 0:
        problems.append(f"SKYORDER: must be >= 0 (or absent), got {order!r}")
    backup = config.get("SATURATION_BACKUP")
    if _is_int(backup) and backup < 0:
        problems.append(f"SATURATION_BACKUP: must be >= 0, got {backup!r}")
    threshold = config.get("REJECTION_THRESHOLD")
    if _is_number(threshold) and threshold <= 0:
        problems.append(f"REJECTION_THRESHOLD: must be > 0, got {threshold!r}")
    precision = config.get("NOISE_PRECISION")
    if _is_int(precision) and precision not in (16, 32):
        problems.append(f"NOISE_PRECISION: must be 16 or 32, got {precision!r}")

    noise = config.get("NOISE")
    if isinstance(noise, dict):
        for key in noise:
            if key not in _NOISE_KEYS:
                problems.append(_unknown(key, _NOISE_KEYS, where="NOISE."))
        for key, required in _NOISE_KEYS.items():
            if required and key not in noise:
                problems.append(f"NOISE.{key}: required entry is missing")
        layers = noise.get("LAYER")
        if "LAYER" in noise and not (
            isinstance(layers, list) and all(isinstance(s, str) for s in layers)
        ):
            problems.append(f"NOISE.LAYER: expected a list of strings, got {layers!r}")
        if "SEED" in noise and not _is_int(noise["SEED"]):
            problems.append(f"NOISE.SEED: expected an integer, got {noise['SEED']!r}")
    return problems, paths


# ------------------------------------------------------------------ mapping
def _step_reference_types():
    """``{step name: (reftypes, optional reftypes)}`` of the pipeline's steps."""
    from romanimpreprocess.pipeline.l1_to_l2 import L1ToL2Pipeline

    return {
        name: (list(cls.reference_file_types), tuple(cls.optional_reference_types))
        for name, cls in L1ToL2Pipeline.step_defs.items()
    }


def pipeline_args(config, *, base_dir=None, check_files=True, source=None):
    """Turn a legacy config dict into `PipelineArgs`, or raise `LegacyConfigError`.

    Parameters
    ----------
    config : dict
        The legacy configuration (as read by ``yaml.safe_load``).
    base_dir : str or None
        Directory that relative paths are relative to; default the current directory
        (as the legacy tool, which opened paths from the process's working directory).
    check_files : bool
        Check that IN, FITSWCS and every CALDIR file exist and OUT's directory is
        writable.
    source : str or None
        Name of the config (its file) for error messages.

    Returns
    -------
    PipelineArgs
    """
    if not isinstance(config, dict):
        raise LegacyConfigError(
            [f"expected a mapping of keys, got {type(config).__name__}"], source=source
        )
    base_dir = os.path.abspath(base_dir or os.getcwd())
    problems, paths = _validate(config, base_dir, check_files)
    if problems:
        raise LegacyConfigError(problems, source=source)

    steps = {}

    def setp(step, name, value):
        steps.setdefault(step, {})[name] = value

    # Calibration files: every step gets the files of the reftypes it reads; an
    # optional file that is not given is explicitly N/A (no CRDS lookup, one log line).
    caldir = config["CALDIR"]
    by_reftype = {
        CALDIR_TO_REFTYPE[key]: paths[f"CALDIR.{key}"]
        for key in CALDIR_KEYS
        if caldir.get(key) is not None
    }
    for step, (reftypes, optional) in _step_reference_types().items():
        for reftype in reftypes:
            if reftype in by_reftype:
                setp(step, f"override_{reftype}", by_reftype[reftype])
            elif reftype in optional:
                setp(step, f"override_{reftype}", "N/A")

    if "FITSWCS" in paths:
        setp("flatfield", "wcs_header", paths["FITSWCS"])
    if "EXCLUDE_FIRST" in config:
        setp("dq_init", "exclude_first", bool(config["EXCLUDE_FIRST"]))
        setp("ramp_fit", "exclude_first", bool(config["EXCLUDE_FIRST"]))
    if "SATURATION_BACKUP" in config:
        setp("saturation", "backup", int(config["SATURATION_BACKUP"]))
    setp("wfi18_transient", "skip", not bool(config.get("correct_wfi18_transient")))
    if "wfi18_mask_rows" in config:
        setp("wfi18_transient", "mask_rows", bool(config["wfi18_mask_rows"]))
    if config.get("romancal_ramp_fit"):
        setp("ramp_fit", "algorithm", "likely")
    if "REJECTION_THRESHOLD" in config:
        setp("ramp_fit", "rejection_threshold", float(config["REJECTION_THRESHOLD"]))
    if config.get("JUMP_KW"):
        setp(
            "ramp_fit",
            "jump_kw",
            yaml.safe_dump(config["JUMP_KW"], default_flow_style=True).strip(),
        )
    for key, name in _RAMP_OPT_PARS.items():
        if key in (config.get("RAMP_OPT_PARS") or {}):
            setp("ramp_fit", name, float(config["RAMP_OPT_PARS"][key]))
    for key, name in _JUMP_DETECT_PARS.items():
        if key in (config.get("JUMP_DETECT_PARS") or {}):
            setp("ramp_fit", name, float(config["JUMP_DETECT_PARS"][key]))
    if config.get("SKYORDER") is not None:
        setp("sky", "order", int(config["SKYORDER"]))

    parameters = {
        "legacy_compat": bool(config.get("LEGACY_COMPAT", False)),
        "fits_output": bool(config.get("FITSOUT", False)),
        "sliceout": bool(config.get("SLICEOUT", False)),
    }
    return PipelineArgs(
        input=paths["IN"],
        output=paths["OUT"],
        parameters=parameters,
        steps=steps,
        config=copy.deepcopy(config),
    )


# ---------------------------------------------------------------- converter
def write_parameter_file(args, path):
    """Write a romancal-style ASDF parameter file that reproduces ``args``.

    ``strun <path> <args.input>`` (or ``L1ToL2Pipeline.call(input,
    config_file=path)``) then runs the same calibration; the output path is stored as
    the pipeline's ``output_file``.
    """
    import asdf

    from romanimpreprocess.pipeline.l1_to_l2 import L1ToL2Pipeline

    steps = []
    for name, cls in L1ToL2Pipeline.step_defs.items():
        pars = dict(args.steps.get(name, {}))
        steps.append(
            {
                "class": f"{cls.__module__}.{cls.__name__}",
                "name": name,
                "parameters": pars,
            }
        )
    tree = {
        "class": "romanimpreprocess.pipeline.L1ToL2Pipeline",
        "name": "L1ToL2Pipeline",
        "parameters": {
            **args.parameters,
            "output_file": args.output,
            "save_results": True,
        },
        "steps": steps,
    }
    path = os.path.abspath(os.fspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        asdf.AsdfFile(tree).write_to(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def convert_main(argv=None):
    """``rip-legacy-to-asdf cfg.yaml params.asdf``: legacy YAML -> parameter file."""
    parser = argparse.ArgumentParser(
        prog="rip-legacy-to-asdf",
        description=(
            "Convert a legacy gen_cal_image YAML config into a romancal-style ASDF "
            "parameter file for L1ToL2Pipeline. Run it with: strun params.asdf IN.asdf"
        ),
    )
    parser.add_argument("config", help="legacy YAML config")
    parser.add_argument("params", help="ASDF parameter file to write")
    parser.add_argument(
        "--no-check-files",
        action="store_true",
        help="do not check that the files named in the config exist",
    )
    opts = parser.parse_args(argv)
    try:
        config = load_config(opts.config)
        args = pipeline_args(
            config, check_files=not opts.no_check_files, source=opts.config
        )
    except (ConfigFileError, LegacyConfigError) as err:
        sys.stderr.write(f"rip-legacy-to-asdf: {err}\n")
        return 2
    path = write_parameter_file(args, opts.params)
    sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"run it with: strun {path} {args.input}\n")
    return 0
