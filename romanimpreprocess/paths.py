"""Path helpers shared by every writer: is this output one of the inputs?"""

import os

__all__ = ["overwrite_problems", "same_file"]


def same_file(a, b):
    """True when paths ``a`` and ``b`` name one file.

    Equal after resolving symbolic links, or (both existing) the same inode: a hard
    link or a bind mount of an input is an input too.
    """
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def overwrite_problems(outputs, inputs):
    """Every output that would replace an input or another output.

    Parameters
    ----------
    outputs, inputs : dict
        ``{what: path}``; ``what`` names the key or parameter for the message.

    Returns
    -------
    list of str
        One message per clash, naming both sides.
    """
    problems = []
    for out_key, out_path in outputs.items():
        for in_key, in_path in inputs.items():
            if same_file(out_path, in_path):
                problems.append(
                    f"{out_key}: {out_path} is {in_key} ({in_path}); it would be "
                    f"overwritten (choose another output)"
                )
    keys = list(outputs)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if same_file(outputs[first], outputs[second]):
                problems.append(
                    f"{second}: {outputs[second]} is also {first}; one would "
                    f"overwrite the other"
                )
    return problems
