"""Grammar of the noise-layer strings (legacy ``NOISE.LAYER``, docs/noise/index.rst).

A layer string is a sequence of commands, each a capital letter followed by its
lower-case/digit arguments, e.g. ``"Rz4S2C1"``, ``"O"``, ``"Prb2"``:

``R[a][z<k>]``
    read noise, propagated through the calibration. ``a``: add it to the real
    exposure and difference against the main L2 (else: against a noiseless
    calibration of the dark cube). ``z<k>``: clip the difference at its median ±
    k·IQR/1.34896 (k > 0, decimal allowed).
``O``
    pseudo-Poisson layer (Pearson-system deviates).
``P[b[<o>]][r]``
    Poisson noise re-sampled frame by frame (``r``) around the sky: with ``b`` the
    sky is the order-``o`` (default 0) Legendre fit of ``data_withsky``, else
    ``data_withsky`` itself. ``P`` without ``r`` adds nothing (legacy).
``S[<o>]``
    subtract the order-``o`` (default 0) Legendre sky fit of the layer.
``C<text>``
    comment (lower-case letters and digits); ignored.

The commands act in the fixed order R, z-clip, O, P, S whatever their order in the
string (legacy). A command may appear once (``C`` any number of times). Anything else
is a `LayerSyntaxError` naming the layer and the problem.
"""

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LayerSyntaxError",
    "NoiseLayer",
    "noise_dtype",
    "parse_layer",
    "parse_layers",
]

_TOKEN = re.compile(r"([A-Z])([a-z0-9.]*)")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_COMMANDS = {
    "R": "read noise",
    "O": "pseudo-Poisson",
    "P": "Poisson",
    "S": "sky subtraction",
    "C": "comment",
}


class LayerSyntaxError(ValueError):
    """A noise-layer string does not follow the grammar."""


@dataclass(frozen=True)
class NoiseLayer:
    """One parsed noise layer (see the module docstring for the grammar).

    Attributes
    ----------
    text : str
        The layer string as given.
    read : bool
        ``R``: read-noise realisation through the calibration.
    read_add : bool
        ``R…a``: add to the real exposure, difference against the main L2.
    read_clip : float or None
        ``R…z<k>``: clip at median ± k·IQR/1.34896.
    pseudo_poisson : bool
        ``O`` layer.
    poisson_resample : bool
        ``P…r``: Poisson re-sampling.
    poisson_sky_order : int or None
        ``P…b<o>``: Legendre order of the sky level; None = ``data_withsky`` itself.
    sky_order : int or None
        ``S<o>``: order of the sky polynomial subtracted at the end.
    comment : str
        Text of the ``C`` commands, joined.
    """

    text: str
    read: bool = False
    read_add: bool = False
    read_clip: float | None = None
    pseudo_poisson: bool = False
    poisson: bool = False
    poisson_resample: bool = False
    poisson_sky_order: int | None = None
    sky_order: int | None = None
    comment: str = ""


def _error(text, problem):
    return LayerSyntaxError(f"noise layer {text!r}: {problem}")


def _flags(text, command, args, allowed):
    """Split ``args`` into flag letters with optional numbers, each allowed once."""
    found = {}
    pos = 0
    for match in re.finditer(rf"([a-z])({_NUMBER})?", args):
        if match.start() != pos:
            break
        letter, number = match.group(1), match.group(2)
        if letter not in allowed:
            raise _error(
                text,
                f"{command}: unknown argument {letter!r} "
                f"(allowed: {', '.join(sorted(allowed))})",
            )
        if letter in found:
            raise _error(text, f"{command}: argument {letter!r} given twice")
        found[letter] = number
        pos = match.end()
    if pos != len(args):
        raise _error(text, f"{command}: cannot parse arguments {args!r}")
    return found


def _integer(text, command, value, default=0):
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise _error(
            text, f"{command}: order must be a non-negative integer, got {value!r}"
        )
    return int(value)


def parse_layer(text: str) -> NoiseLayer:
    """Parse one layer string.

    Parameters
    ----------
    text : str
        e.g. ``"Rz4S2C1"``.

    Returns
    -------
    NoiseLayer

    Raises
    ------
    LayerSyntaxError
        Empty string, characters outside ``[A-Z][a-z0-9.]*`` tokens, an unknown
        command or argument, a repeated command, a missing or malformed number.
    """
    if not isinstance(text, str):
        raise LayerSyntaxError(
            f"noise layer must be a string, got {type(text).__name__}"
        )
    if not text:
        raise _error(text, "empty (use e.g. 'C0' for an all-zero layer)")
    pos = 0
    commands = {}
    comments = []
    for match in _TOKEN.finditer(text):
        if match.start() != pos:
            break
        pos = match.end()
        command, args = match.group(1), match.group(2)
        if command not in _COMMANDS:
            raise _error(
                text,
                f"unknown command {command!r} "
                f"(known: {', '.join(f'{k} ({v})' for k, v in _COMMANDS.items())})",
            )
        if command == "C":
            comments.append(args)
            continue
        if command in commands:
            raise _error(text, f"command {command!r} given twice")
        commands[command] = args
    if pos != len(text):
        raise _error(
            text,
            f"unexpected {text[pos]!r} at position {pos}: a layer is commands made "
            "of one capital letter and lower-case/digit arguments",
        )

    fields = {"text": text, "comment": " ".join(comments)}
    if "R" in commands:
        flags = _flags(text, "R", commands["R"], {"a", "z"})
        fields["read"] = True
        fields["read_add"] = "a" in flags
        if "a" in flags and flags["a"] is not None:
            raise _error(text, "R: 'a' takes no number")
        if "z" in flags:
            if flags["z"] is None:
                raise _error(text, "R: 'z' needs a clipping level, e.g. 'Rz4'")
            clip = float(flags["z"])
            if not clip > 0:
                raise _error(text, f"R: clipping level must be > 0, got {clip}")
            fields["read_clip"] = clip
    if "O" in commands:
        if commands["O"]:
            raise _error(text, f"O takes no arguments, got {commands['O']!r}")
        fields["pseudo_poisson"] = True
    if "P" in commands:
        flags = _flags(text, "P", commands["P"], {"b", "r"})
        if "r" in flags and flags["r"] is not None:
            raise _error(text, "P: 'r' takes no number")
        fields["poisson"] = True
        fields["poisson_resample"] = "r" in flags
        if "b" in flags:
            fields["poisson_sky_order"] = _integer(text, "P: b", flags["b"])
    if "S" in commands:
        fields["sky_order"] = _integer(text, "S", commands["S"])
    return NoiseLayer(**fields)


def parse_layers(layers) -> list[NoiseLayer]:
    """Parse a list of layer strings (legacy ``NOISE.LAYER``).

    Raises
    ------
    LayerSyntaxError
        If ``layers`` is not a non-empty list of strings, or for the first bad layer.
    """
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise LayerSyntaxError(
            f"noise layers must be a list of strings, got {type(layers).__name__}"
        )
    layers = list(layers)
    if not layers:
        raise LayerSyntaxError("no noise layers given")
    return [parse_layer(text) for text in layers]


def noise_dtype(precision) -> type:
    """numpy dtype of the noise cube for a ``NOISE_PRECISION`` value (16 or 32).

    Raises
    ------
    ValueError
        "Unsupported noise precision." for anything else (as the legacy tool).
    """
    if isinstance(precision, bool) or precision not in (16, 32):
        raise ValueError(
            f"Unsupported noise precision. NOISE_PRECISION must be 16 or 32, got "
            f"{precision!r}"
        )
    return np.float16 if int(precision) == 16 else np.float32
