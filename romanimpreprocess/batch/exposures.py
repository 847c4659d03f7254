"""What a batch is made of: one `Exposure` per L1 input, found from the command line.

Two kinds of input (the batch never mixes them):

- legacy YAML configurations, one per exposure: each names its input (``IN``) and its
  output (``OUT``); a directory stands for every ``*.yaml``/``*.yml`` file in it;
- L1 files with one ASDF parameter file for all of them; the output of
  ``<dir>/<stem>_uncal.asdf`` is ``<output_dir>/<stem>_cal.asdf``; a directory stands
  for every ``*.asdf`` file in it.

A pattern with glob characters (``*``, ``?``, ``[``) is expanded here too, so a quoted
pattern works when the shell does not expand it (or the argument list would be too long).

Everything an `Exposure` holds is a plain value (strings, numbers, a YAML dict), so
`Exposure.to_task` is what is shipped to a worker: paths and plain parameters, never a
DataModel (a DataModel does not pickle: an opened one fails on a weak reference, one
built in memory recurses without end).
"""

import dataclasses
import glob
import logging
import os

from romanimpreprocess.pipeline import legacy

__all__ = [
    "BatchInputError",
    "Exposure",
    "expand_paths",
    "exposures_from_configs",
    "exposures_from_l1",
    "output_name_for",
]

log = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml")
L1_SUFFIXES = (".asdf",)
# Suffixes stripped from an L1 stem before ``_cal`` is appended (romancal's naming).
L1_STEM_SUFFIXES = ("_uncal", "_L1", "_l1")
OUTPUT_SUFFIX = "_cal"


class BatchInputError(ValueError):
    """The command line does not describe a runnable batch (nothing was started)."""


@dataclasses.dataclass
class Exposure:
    """One unit of work: an L1 input turned into one L2 output.

    Attributes
    ----------
    name : str
        Label shown in the progress line and the final table.
    kind : str
        ``"legacy"`` (a legacy YAML config) or ``"params"`` (L1 + ASDF parameters).
    input : str
        Absolute path of the L1 file ("" if a legacy config does not name one).
    output : str
        Absolute path of the L2 output.
    source : str
        The file the exposure came from (the YAML, or the L1 file).
    config : dict or None
        Legacy configuration (``kind == "legacy"``), as read from the YAML, with
        ``IN`` and ``OUT`` made absolute.
    params : str or None
        Absolute path of the ASDF parameter file (``kind == "params"``).
    cwd : str
        Directory relative paths in a legacy config are resolved against (the
        directory ``rip-batch`` was started in; the legacy tool resolves them
        against the process's working directory).
    error : str or None
        Set when the exposure cannot even be submitted (unreadable YAML, no ``IN``
        or ``OUT``); it is then reported as failed without running.
    """

    name: str
    kind: str
    input: str
    output: str
    source: str
    config: dict | None = None
    params: str | None = None
    cwd: str = ""
    error: str | None = None

    def to_task(self, **extra) -> dict:
        """Plain dict shipped to a worker (paths and parameters only)."""
        task = dataclasses.asdict(self)
        task.update(extra)
        return task


def _has_magic(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def expand_paths(items, suffixes) -> list[str]:
    """Expand directories and glob patterns into a sorted, de-duplicated file list.

    Parameters
    ----------
    items : iterable of str or os.PathLike
        Files, directories or glob patterns, in the order given.
    suffixes : tuple of str
        File suffixes a directory is searched for (not recursive).

    Returns
    -------
    list of str
        Absolute paths; order of first appearance, files inside a directory or
        matched by a pattern sorted by name.

    Raises
    ------
    BatchInputError
        A pattern matched nothing, a directory holds no matching file, or a named
        file does not exist.
    """
    out = []
    seen = set()

    def add(path):
        path = os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            out.append(path)

    problems = []
    for item in items:
        item = os.path.expanduser(os.fspath(item))
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name)
                for name in os.listdir(item)
                if name.endswith(suffixes)
                and not name.startswith(".")
                and os.path.isfile(os.path.join(item, name))
            )
            if not found:
                problems.append(f"{item}: directory holds no {'/'.join(suffixes)} file")
            for path in found:
                add(path)
        elif _has_magic(item) and not os.path.exists(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not found:
                problems.append(f"{item}: pattern matches no file")
            for path in found:
                add(path)
        elif os.path.isfile(item):
            add(item)
        else:
            problems.append(f"{item}: no such file or directory")
    if problems:
        raise BatchInputError("bad input(s):\n  " + "\n  ".join(problems))
    return out


def _stem(path: str) -> str:
    stem = os.path.basename(path)
    for suffix in (*L1_SUFFIXES, *YAML_SUFFIXES):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem


def output_name_for(l1_path: str) -> str:
    """Basename of the L2 output of ``l1_path``: ``<stem>_cal.asdf``.

    A trailing ``_uncal``, ``_L1`` or ``_l1`` of the stem is dropped first, as
    romancal names its products (``r0001_uncal.asdf`` -> ``r0001_cal.asdf``).
    """
    stem = _stem(l1_path)
    for suffix in L1_STEM_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + OUTPUT_SUFFIX + ".asdf"


def _unique_names(exposures):
    """Make display names unique (``name``, ``name#2``, ...)."""
    counts = {}
    for exp in exposures:
        n = counts.get(exp.name, 0) + 1
        counts[exp.name] = n
        if n > 1:
            exp.name = f"{exp.name}#{n}"


def _check_outputs(exposures):
    """Two exposures writing the same output, or an output equal to an input."""
    by_output = {}
    problems = []
    inputs = {exp.input for exp in exposures if exp.input}
    for exp in exposures:
        if exp.error:
            continue
        if exp.output in by_output:
            problems.append(
                f"{exp.source} and {by_output[exp.output].source} both write "
                f"{exp.output}"
            )
        else:
            by_output[exp.output] = exp
        if exp.output in inputs:
            problems.append(f"{exp.source}: output {exp.output} is also an input")
    if problems:
        raise BatchInputError("conflicting outputs:\n  " + "\n  ".join(problems))


def exposures_from_configs(items, cwd=None) -> list[Exposure]:
    """One `Exposure` per legacy YAML configuration.

    Parameters
    ----------
    items : iterable of str
        YAML files, directories of them, or glob patterns.
    cwd : str or None
        Directory relative paths in the configs are resolved against (default: the
        current directory, as the legacy tool does).

    Returns
    -------
    list of Exposure
        A config that cannot be read, is not a mapping, or lacks ``IN``/``OUT``
        gives an exposure with ``error`` set (reported as failed, never run); the
        full validation of the config is done by the pipeline's legacy mapping on
        the worker, where its error is reported for that exposure only.

    Raises
    ------
    BatchInputError
        Missing files, empty directories, or two configs writing the same ``OUT``.
    """
    cwd = os.path.abspath(cwd or os.getcwd())
    exposures = []
    for path in expand_paths(items, YAML_SUFFIXES):
        name = _stem(path)
        exp = Exposure(name=name, kind="legacy", input="", output="", source=path)
        exp.cwd = cwd
        exposures.append(exp)
        try:
            config = legacy.load_config(path)
        except (legacy.ConfigFileError, legacy.LegacyConfigError) as exc:
            exp.error = " ".join(str(exc).split())
            continue
        missing = [k for k in ("IN", "OUT") if not isinstance(config.get(k), str)]
        if missing:
            exp.error = f"{path}: key(s) {', '.join(missing)} missing or not a path"
            continue
        # Resolved as the pipeline resolves them (legacy.resolve_path); the config
        # itself is kept as written, for processinfo.config.
        exp.input = legacy.resolve_path(config["IN"], cwd)
        exp.output = legacy.resolve_path(config["OUT"], cwd)
        exp.config = config
    _unique_names(exposures)
    _check_outputs(exposures)
    return exposures


def exposures_from_l1(items, params, output_dir) -> list[Exposure]:
    """One `Exposure` per L1 file, all run with the ASDF parameter file ``params``.

    Parameters
    ----------
    items : iterable of str
        L1 files, directories of them, or glob patterns.
    params : str
        ASDF parameter file of the pipeline (``strun``-style, with the reference
        overrides).
    output_dir : str
        Directory of the outputs (``<stem>_cal.asdf``, see `output_name_for`).

    Raises
    ------
    BatchInputError
        Missing files, a missing parameter file, or two inputs with the same output
        name.
    """
    params = os.path.abspath(os.path.expanduser(os.fspath(params)))
    if not os.path.isfile(params):
        raise BatchInputError(f"parameter file {params}: no such file")
    output_dir = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    exposures = []
    for path in expand_paths(items, L1_SUFFIXES):
        if path == params:
            continue  # a directory holding the parameter file next to the inputs
        output = os.path.join(output_dir, output_name_for(path))
        exposures.append(
            Exposure(
                name=_stem(path),
                kind="params",
                input=path,
                output=output,
                source=path,
                params=params,
                cwd=os.getcwd(),
            )
        )
    # An output of this batch found next to the inputs (a rerun with the output
    # directory equal to the input directory) is not an input.
    outputs = {exp.output for exp in exposures}
    exposures = [exp for exp in exposures if exp.input not in outputs]
    if not exposures:
        raise BatchInputError("no L1 input file given")
    _unique_names(exposures)
    _check_outputs(exposures)
    return exposures
