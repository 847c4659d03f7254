"""The one place that knows the legacy ``gen_cal_image`` configuration keys.

A legacy config (docs/legacy.rst: ``IN``, ``OUT``, ``FITSWCS``, ``CALDIR{...}``,
``JUMP_DETECT_PARS``, ``RAMP_OPT_PARS``, ``SKYORDER``, ...) becomes a `PipelineArgs`: the
input path, the output path, pipeline parameters and a ``steps={...}`` dict of step
parameters and ``override_<reftype>`` paths for `L1ToL2Pipeline`.

Every problem in a config (unknown or misspelt key, missing required key, wrong type,
missing file) is collected and reported in one `LegacyConfigError` before any
processing starts. Unlike the legacy tool, unknown keys are errors: a misspelt
``SKYORDR`` would otherwise silently run without sky subtraction.

`L1ToL2Pipeline.from_legacy_config` is the one way from a config to a run: it backs
``python -m romanimpreprocess.L1_to_L2.gen_cal_image cfg.yaml``, ``gen_noise_image``,
``strun rip_l1l2 --legacy_config=cfg.yaml`` and ``rip-batch``; the converter
``rip-legacy-to-asdf cfg.yaml params.asdf`` (`convert_main`) uses the same mapping.
This module imports no pipeline: the steps come from `romanimpreprocess.pipeline.steps`.
"""

import argparse
import copy
import difflib
import logging
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from functools import partial

import yaml

from romanimpreprocess.datamodels.l2 import fits_path, mask_path
from romanimpreprocess.datamodels.reference import CALDIR_TO_REFTYPE
from romanimpreprocess.datamodels.wcs import read_wcs_header
from romanimpreprocess.noise.noise_step import temp_files
from romanimpreprocess.paths import overwrite_problems, same_file
from romanimpreprocess.pipeline.steps import PIPELINE_CLASS, STEP_DEFS
from romanimpreprocess.utils.atomic import atomic_write

__all__ = [
    "CALDIR_KEYS",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_SKYORDER",
    "NOISE_KEYS",
    "TOP_LEVEL_KEYS",
    "ConfigFileError",
    "LegacyConfigError",
    "PipelineArgs",
    "convert_main",
    "load_config",
    "output_files",
    "parse_config",
    "pipeline_args",
    "resolve_path",
    "validate",
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
    "MASKOUT": ("bool", False),
    "FLOAT32_ERRORS": ("bool", False),
    "NOISE": ("mapping", False),
    "NOISE_PRECISION": ("int", False),
    "LEGACY_COMPAT": ("bool", False),
}

# CALDIR key -> required (docs/legacy.rst). ``ipc4d`` is optional here: without it
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
# The NOISE block (gen_noise_image): where it is given, all four keys are needed.
NOISE_KEYS = ("LAYER", "TEMP", "SEED", "OUT")


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
# A legacy config is a page of keys and paths. Anything much larger is not a config
# (an L1 given in its place, a generated file gone wrong), and YAML aliases that
# expand past a few thousand values would be copied into every L2's processinfo.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
# The sky model is fitted to 8 x 8 cell medians; order 9 has 55 terms, order 10 has
# 66, more than there are cells.
MAX_SKYORDER = 9

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):
    """YAML safe loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeConstructor reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (lines {first.start_mark.line + 1} "
                    f"and {key_node.start_mark.line + 1}); keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def _count_values(node, limit):
    """Number of values in ``node`` with aliases expanded, counting stops past ``limit``."""
    count = 0
    stack = [node]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count


def parse_config(text, source="<string>"):
    """Parse the text of a legacy YAML config; every error names ``source``.

    Raises
    ------
    ConfigFileError
        Not valid YAML, a key given twice, aliases expanding past
        `MAX_CONFIG_VALUES` values.
    LegacyConfigError
        The document is not a mapping of keys.
    """
    try:
        config = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise ConfigFileError(
            f"legacy config {source}: not valid YAML ({err})"
        ) from None
    if not isinstance(config, dict):
        raise LegacyConfigError(
            [f"the file must hold a mapping of keys, got {type(config).__name__}"],
            source=source,
        )
    if _count_values(config, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigFileError(
            f"legacy config {source}: expands to more than {MAX_CONFIG_VALUES} values "
            f"(YAML anchors/aliases repeated?); write the values out"
        )
    return config


def load_config(path):
    """Read a legacy YAML config; errors name the file and the problem."""
    path = os.fspath(path)
    try:
        if os.path.isdir(path):
            raise ConfigFileError(f"legacy config {path}: is a directory, not a file")
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ConfigFileError(
                f"legacy config {path}: {size} bytes is not a config (at most "
                f"{MAX_CONFIG_BYTES} bytes; an exposure given in its place?)"
            )
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigFileError(f"legacy config {path}: file not found") from None
    except OSError as err:
        raise ConfigFileError(f"legacy config {path}: cannot read ({err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigFileError(
            f"legacy config {path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at "
            f"offset {err.start}); save it as UTF-8"
        ) from None
    return parse_config(text, source=path)


# --------------------------------------------------------------- validation
def _is_bool(value):
    return isinstance(value, bool) or (
        isinstance(value, int) and not isinstance(value, bool) and value in (0, 1)
    )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _unknown(key, known, where=""):
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}{key}: unknown key{hint}"


def resolve_path(path, base_dir):
    """``path`` of a legacy config made absolute: ``~`` and ``$VAR`` expanded, relative
    paths taken from ``base_dir``."""
    path = os.path.expanduser(os.path.expandvars(str(path)))
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return os.path.normpath(path)


_KIND_CHECKS = {
    "path": lambda v: isinstance(v, str) and v.strip() != "",
    "mapping": lambda v: isinstance(v, dict),
    "mapping or null": lambda v: v is None or isinstance(v, dict),
    "bool": _is_bool,
    "int": _is_int,
    "int or null": lambda v: v is None or _is_int(v),
    "number": _is_number,
}


def _check_type(key, value, kind, problems):
    ok = _KIND_CHECKS[kind](value)
    if not ok:
        expected = kind.replace("path", "a file path").replace(
            "number", "a finite number"
        )
        problems.append(
            f"{key}: expected {expected}, got {type(value).__name__} {value!r}"
        )
    return ok


def _check_file(key, path, problems, *, must_exist=True):
    if must_exist and not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "file not found"
        problems.append(f"{key}: {what}: {path}")
        return False
    return True


def _check_keys(config, problems):
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            problems.append(_unknown(key, TOP_LEVEL_KEYS))
    for key, (kind, required) in TOP_LEVEL_KEYS.items():
        if key not in config:
            if required:
                problems.append(f"{key}: required key is missing")
            continue
        _check_type(key, config[key], kind, problems)


def _check_paths(config, base_dir, check_files, problems, paths):
    """IN, OUT and FITSWCS: present, readable, OUT writable and not a directory."""
    if isinstance(config.get("IN"), str) and config["IN"].strip():
        paths["IN"] = resolve_path(config["IN"], base_dir)
        if check_files:
            _check_file("IN", paths["IN"], problems)
    if isinstance(config.get("OUT"), str) and config["OUT"].strip():
        paths["OUT"] = out = resolve_path(config["OUT"], base_dir)
        if not out.endswith(".asdf"):
            problems.append(f"OUT: must end in '.asdf', got {config['OUT']!r}")
        out_dir = os.path.dirname(out)
        if check_files:
            if os.path.isdir(out):
                problems.append(f"OUT: is an existing directory: {out}")
            elif not os.path.isdir(out_dir):
                problems.append(f"OUT: directory does not exist: {out_dir}")
            elif not os.access(out_dir, os.W_OK):
                problems.append(f"OUT: directory is not writable: {out_dir}")
    if isinstance(config.get("FITSWCS"), str) and config["FITSWCS"].strip():
        paths["FITSWCS"] = resolve_path(config["FITSWCS"], base_dir)
        if check_files and _check_file("FITSWCS", paths["FITSWCS"], problems):
            try:
                read_wcs_header(paths["FITSWCS"])
            except ValueError as err:
                problems.append(f"FITSWCS: {err}")


def _check_caldir(config, base_dir, check_files, problems, paths):
    caldir = config.get("CALDIR")
    if not isinstance(caldir, dict):
        return
    for key in caldir:
        if key not in CALDIR_KEYS and key not in _CALDIR_IGNORED:
            problems.append(_unknown(key, CALDIR_KEYS, where="CALDIR."))
    for key, required in CALDIR_KEYS.items():
        if key not in caldir or caldir[key] is None:
            if required:
                problems.append(f"CALDIR.{key}: required entry is missing")
            continue
        if _check_type(f"CALDIR.{key}", caldir[key], "path", problems):
            paths[f"CALDIR.{key}"] = resolve_path(caldir[key], base_dir)
            if check_files:
                _check_file(f"CALDIR.{key}", paths[f"CALDIR.{key}"], problems)


def _check_ramp_opt_pars(config, problems):
    opt = config.get("RAMP_OPT_PARS")
    if not isinstance(opt, dict):
        return
    for key in opt:
        if key not in _RAMP_OPT_PARS:
            problems.append(_unknown(key, _RAMP_OPT_PARS, where="RAMP_OPT_PARS."))
    for key in _RAMP_OPT_PARS:
        if key not in opt:
            # The legacy replaces the defaults wholesale and then fails (KeyError).
            problems.append(
                f"RAMP_OPT_PARS.{key}: missing (give slope, gain and sigma_read together)"
            )
        elif not _is_number(opt[key]):
            problems.append(
                f"RAMP_OPT_PARS.{key}: expected a finite number, got {opt[key]!r}"
            )
        elif key in ("gain", "sigma_read") and opt[key] <= 0:
            problems.append(f"RAMP_OPT_PARS.{key}: must be > 0, got {opt[key]!r}")
        elif key == "slope" and opt[key] < 0:
            problems.append(f"RAMP_OPT_PARS.slope: must be >= 0, got {opt[key]!r}")


def _check_jump_detect_pars(config, problems):
    jump = config.get("JUMP_DETECT_PARS")
    if not isinstance(jump, dict):
        return
    for key, value in jump.items():
        if key not in _JUMP_DETECT_PARS:
            problems.append(_unknown(key, _JUMP_DETECT_PARS, where="JUMP_DETECT_PARS."))
        elif not _is_number(value):
            problems.append(
                f"JUMP_DETECT_PARS.{key}: expected a finite number, got {value!r}"
            )
        elif key in ("SthreshA", "SthreshB") and value <= 0:
            problems.append(
                f"JUMP_DETECT_PARS.{key}: a jump threshold must be > 0 sigma, got "
                f"{value!r}"
            )
    ia, ib = jump.get("IthreshA", 1.0), jump.get("IthreshB", 1000.0)
    if _is_number(ia) and _is_number(ib):
        if ia <= 0:
            problems.append(f"JUMP_DETECT_PARS.IthreshA: must be > 0, got {ia!r}")
        elif ia >= ib:
            problems.append(
                f"JUMP_DETECT_PARS: IthreshA ({ia!r}) must be below IthreshB ({ib!r})"
            )


def _check_jump_kw(config, problems):
    jump_kw = config.get("JUMP_KW")
    if isinstance(jump_kw, dict):
        for key in jump_kw:
            if key not in _JUMP_KW:
                problems.append(_unknown(key, _JUMP_KW, where="JUMP_KW."))


def _check_ranges(config, problems):
    order = config.get("SKYORDER")
    if _is_int(order) and not 0 <= order <= MAX_SKYORDER:
        problems.append(
            f"SKYORDER: must be 0..{MAX_SKYORDER} (or absent for no sky subtraction), "
            f"got {order!r}"
        )
    backup = config.get("SATURATION_BACKUP")
    if _is_int(backup) and not 0 <= backup <= 16:
        problems.append(f"SATURATION_BACKUP: must be 0..16, got {backup!r}")
    threshold = config.get("REJECTION_THRESHOLD")
    if _is_number(threshold) and threshold <= 0:
        problems.append(f"REJECTION_THRESHOLD: must be > 0, got {threshold!r}")
    precision = config.get("NOISE_PRECISION")
    if _is_int(precision) and precision not in (16, 32):
        problems.append(f"NOISE_PRECISION: must be 16 or 32, got {precision!r}")


def _check_noise(config, base_dir, problems, paths, require_noise):
    """The ``NOISE`` block: one rule wherever it is read (see `NOISE_KEYS`)."""
    from romanimpreprocess.noise.layers import parse_layers

    noise = config.get("NOISE")
    if noise is None and "NOISE" not in config:
        if require_noise:
            problems.append("NOISE: required for noise layers (LAYER, TEMP, SEED, OUT)")
        return
    if not isinstance(noise, dict):
        return  # reported by the type check
    for key in noise:
        if key not in NOISE_KEYS:
            problems.append(_unknown(key, NOISE_KEYS, where="NOISE."))
    for key in NOISE_KEYS:
        if key not in noise:
            problems.append(f"NOISE.{key}: required entry is missing")
    if "LAYER" in noise:
        layers = noise["LAYER"]
        if not (
            isinstance(layers, list)
            and layers
            and all(isinstance(s, str) for s in layers)
        ):
            problems.append(
                f"NOISE.LAYER: expected a non-empty list of strings, got {layers!r}"
            )
        else:
            try:
                parse_layers(layers)
            except ValueError as err:
                problems.append(f"NOISE.LAYER: {err}")
    seed = noise.get("SEED")
    if "SEED" in noise and not (_is_int(seed) and seed >= 0):
        problems.append(f"NOISE.SEED: expected a non-negative integer, got {seed!r}")
    for key in ("TEMP", "OUT"):
        value = noise.get(key)
        if key not in noise:
            continue
        if not (isinstance(value, str) and value.endswith(".asdf")):
            problems.append(
                f"NOISE.{key}: must be a path ending in .asdf, got {value!r}"
            )
            continue
        paths[f"NOISE.{key}"] = resolve_path(value, base_dir)


def output_files(config, paths):
    """``{key: path}`` of every file a run of ``config`` writes (see `pipeline_args`)."""
    outputs = {}
    if "OUT" in paths:
        outputs["OUT"] = paths["OUT"]
        if config.get("FITSOUT"):
            outputs["OUT (FITS copy)"] = fits_path(paths["OUT"])
        if config.get("MASKOUT"):
            outputs["OUT (mask file)"] = mask_path(paths["OUT"])
    if "NOISE.OUT" in paths:
        outputs["NOISE.OUT"] = paths["NOISE.OUT"]
        if config.get("FITSOUT"):
            outputs["NOISE.OUT (FITS copy)"] = fits_path(paths["NOISE.OUT"])
    if "NOISE.TEMP" in paths:
        for what, path in temp_files(paths["NOISE.TEMP"]).items():
            outputs["NOISE.TEMP" if what == "L1" else f"NOISE.TEMP ({what})"] = path
    return outputs


def _check_overwrites(config, paths, source, problems):
    """No output may be an input (or a link to one), nor another output."""
    inputs = {
        key: path
        for key, path in paths.items()
        if key in ("IN", "FITSWCS") or key.startswith("CALDIR.")
    }
    if source and os.path.isfile(os.fspath(source)):
        inputs["the config file itself"] = os.path.abspath(os.fspath(source))
    problems += overwrite_problems(output_files(config, paths), inputs)


def validate(
    config, *, base_dir=None, check_files=True, source=None, require_noise=False
):
    """Every problem of a legacy config dict, and its paths resolved.

    Parameters
    ----------
    config : dict
        The legacy configuration.
    base_dir : str or None
        Directory relative paths are relative to (default: the current directory).
    check_files : bool
        Check that the input files exist (and the FITSWCS header parses) and that
        OUT's directory is writable.
    source : str or None
        The config's file: named in messages and protected from being overwritten.
    require_noise : bool
        The run writes noise layers, so a ``NOISE`` block is required.

    Returns
    -------
    problems : list of str
        One line per problem, each naming its key.
    paths : dict
        ``{key: absolute path}`` for IN, OUT, FITSWCS, ``CALDIR.<key>``,
        ``NOISE.OUT`` and ``NOISE.TEMP``.
    """
    base_dir = os.path.abspath(base_dir or os.getcwd())
    problems = []
    paths = {}
    _check_keys(config, problems)
    _check_paths(config, base_dir, check_files, problems, paths)
    _check_caldir(config, base_dir, check_files, problems, paths)
    _check_ramp_opt_pars(config, problems)
    _check_jump_detect_pars(config, problems)
    _check_jump_kw(config, problems)
    _check_ranges(config, problems)
    _check_noise(config, base_dir, problems, paths, require_noise)
    _check_overwrites(config, paths, source, problems)
    return problems, paths


# ------------------------------------------------------------------ mapping
def pipeline_args(
    config,
    *,
    base_dir=None,
    check_files=True,
    source=None,
    require_noise=False,
):
    """Turn a legacy config dict into `PipelineArgs`, or raise `LegacyConfigError`.

    Parameters
    ----------
    config : dict
        The legacy configuration (as read by `load_config`).
    base_dir : str or None
        Directory that relative paths are relative to; default the current directory
        (as the legacy tool, which opened paths from the process's working directory).
    check_files : bool
        Check that IN, FITSWCS and every CALDIR file exist (and the FITSWCS header
        parses) and that OUT's directory is writable.
    source : str or None
        Name of the config (its file) for error messages; the file is also
        protected from being overwritten by an output.
    require_noise : bool
        The run writes noise layers (``gen_noise_image``): ``NOISE`` is required.

    Returns
    -------
    PipelineArgs
    """
    if not isinstance(config, dict):
        raise LegacyConfigError(
            [f"expected a mapping of keys, got {type(config).__name__}"], source=source
        )
    problems, paths = validate(
        config,
        base_dir=base_dir,
        check_files=check_files,
        source=source,
        require_noise=require_noise,
    )
    if problems:
        raise LegacyConfigError(problems, source=source)

    steps = _reference_overrides(config, paths)
    _set_step_parameters(config, paths, steps)

    parameters = {
        "legacy_compat": bool(config.get("LEGACY_COMPAT", False)),
        "fits_output": bool(config.get("FITSOUT", False)),
        "sliceout": bool(config.get("SLICEOUT", False)),
        "mask_output": bool(config.get("MASKOUT", False)),
        "float32_errors": bool(config.get("FLOAT32_ERRORS", False)),
    }
    return PipelineArgs(
        input=paths["IN"],
        output=paths["OUT"],
        parameters=parameters,
        steps=steps,
        config=copy.deepcopy(config),
    )


def _setp(steps, step, name, value):
    steps.setdefault(step, {})[name] = value


def _reference_overrides(config, paths):
    """``{step: {override_<reftype>: path or "N/A"}}`` from CALDIR."""
    steps = {}
    setp = partial(_setp, steps)
    # Calibration files: every step gets the files of the reftypes it reads; an
    # optional file that is not given is explicitly N/A (no CRDS lookup, one log line).
    caldir = config["CALDIR"]
    by_reftype = {
        CALDIR_TO_REFTYPE[key]: paths[f"CALDIR.{key}"]
        for key in CALDIR_KEYS
        if caldir.get(key) is not None
    }
    for step, cls in STEP_DEFS.items():
        optional = tuple(cls.optional_reference_types)
        for reftype in cls.reference_file_types:
            if reftype in by_reftype:
                setp(step, f"override_{reftype}", by_reftype[reftype])
            elif reftype in optional:
                setp(step, f"override_{reftype}", "N/A")
    return steps


def _set_step_parameters(config, paths, steps):
    """Add the step parameters that the legacy keys map to (docs/legacy.rst)."""
    setp = partial(_setp, steps)
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


# ---------------------------------------------------------------- converter
def write_parameter_file(args, path):
    """Write a romancal-style ASDF parameter file that reproduces ``args``.

    ``strun <path> <args.input>`` (or ``L1ToL2Pipeline.call(input,
    config_file=path)``) then runs the same calibration; the output path is stored as
    the pipeline's ``output_file``.
    """
    import asdf

    steps = []
    for name, cls in STEP_DEFS.items():
        pars = dict(args.steps.get(name, {}))
        steps.append(
            {
                "class": f"{cls.__module__}.{cls.__name__}",
                "name": name,
                "parameters": pars,
            }
        )
    tree = {
        "class": PIPELINE_CLASS,
        "name": "L1ToL2Pipeline",
        "parameters": {
            **args.parameters,
            "output_file": args.output,
            "save_results": True,
        },
        "steps": steps,
    }
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    # a parameter file goes where the user said: no directory is made for it
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, "directory does not exist", directory)
    return atomic_write(path, asdf.AsdfFile(tree).write_to)


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
    target = os.path.abspath(opts.params)
    protected = {"the config": opts.config, "IN": args.input}
    for step_pars in args.steps.values():
        for key, value in step_pars.items():
            if key.startswith("override_") and value != "N/A":
                protected[key.removeprefix("override_")] = value
    for what, path in protected.items():
        if os.path.exists(path) and same_file(target, path):
            sys.stderr.write(
                f"rip-legacy-to-asdf: {target} is {what} ({path}); it would be "
                f"overwritten (choose another parameter file)\n"
            )
            return 2
    if not target.endswith(".asdf"):
        sys.stderr.write(
            f"rip-legacy-to-asdf: {target}: the parameter file must end in .asdf\n"
        )
        return 2
    try:
        path = write_parameter_file(args, target)
    except OSError as err:
        sys.stderr.write(
            f"rip-legacy-to-asdf: cannot write {target}: {err.strerror or err}\n"
        )
        return 1
    sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"run it with: strun {path} {args.input}\n")
    return 0
