"""Path helpers shared by every writer: is this output one of the inputs?"""

import os

__all__ = ["same_file"]


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
