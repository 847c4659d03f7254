"""Atomic writes: every output of the package is written here, and only here.

A file is written into a hidden temporary directory next to its final path, under
its final basename, and renamed over the final path in one step (``os.replace``, atomic
on one file system). A reader therefore sees either the old file or the complete new
one, and a writer killed mid-write leaves only the hidden directory.

The temporary directory is named ``.tmp-rip-<host>-<pid>-<random>``. The host and
process id say who owns it: a leftover is removed only when it was made on this host
by a process that no longer exists. A writer still running, here or on another node
of a shared file system, is never disturbed. Every writer (`atomic_write`,
`atomic_directory`, the steps' ``save_model``, the L2 writer and the batch driver's
clean-up before a rerun) goes through the functions of this module.
"""

import contextlib
import logging
import os
import shutil
import socket
import tempfile

__all__ = [
    "TEMP_PREFIX",
    "atomic_directory",
    "atomic_write",
    "remove_stale_temporaries",
    "replace_together",
    "stale_temporaries",
    "temp_owner",
    "temp_prefix",
]

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-rip-"


def temp_prefix() -> str:
    """Prefix of a temporary directory made by this process: host and pid in it."""
    return f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"


def temp_owner(name: str):
    """``(host, pid)`` that made the temporary directory ``name``, or None.

    None for a name that is not one of ours (wrong prefix, no pid, nothing after it).
    Host names may contain ``-``: the pid is the last dash-separated field before the
    random suffix.
    """
    if not name.startswith(TEMP_PREFIX):
        return None
    owner, _, suffix = name[len(TEMP_PREFIX) :].rpartition("-")
    host, _, pid = owner.rpartition("-")
    if not host or not pid.isdigit() or not suffix:
        return None
    return host, int(pid)


def _process_exists(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not).

    A killed writer stays a zombie until its parent (e.g. a dask nanny) reaps it;
    ``kill(pid, 0)`` succeeds on a zombie, so without the state check its temporary
    directory would look like the work of a running writer for that while.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ...": comm may hold spaces and parentheses
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust kill()
    return state not in (b"Z", b"X")


def stale_temporaries(directory, holding=None) -> list[str]:
    """Temporary directories in ``directory`` left by writers that were killed.

    Parameters
    ----------
    directory : str or path-like
        Directory to look in (a missing one has none).
    holding : str or None
        Only those holding a file of this basename (the leftovers of one output).

    Returns
    -------
    list of str
        Paths, sorted. Only directories made on this host by a process that no
        longer exists are listed.
    """
    directory = os.fspath(directory)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    host = socket.gethostname()
    found = []
    for name in names:
        owner = temp_owner(name)
        if owner is None or owner[0] != host or _process_exists(owner[1]):
            continue
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            continue
        if holding is not None and not os.path.exists(os.path.join(path, holding)):
            continue
        found.append(path)
    return found


def remove_stale_temporaries(directory, holding=None) -> list[str]:
    """Remove `stale_temporaries` of ``directory``; return the paths removed."""
    removed = stale_temporaries(directory, holding)
    for path in removed:
        log.info("Removing %s left by a killed writer", path)
        shutil.rmtree(path, ignore_errors=True)
    return removed


@contextlib.contextmanager
def atomic_directory(path):
    """A fresh hidden temporary directory next to ``path``, removed on leaving.

    The parent directory of ``path`` is created if needed and the leftovers of
    killed writers in it are removed first. Write the files under the temporary
    directory and ``os.replace`` them into place before leaving the block (last the
    file whose existence says the output is complete).

    Yields
    ------
    str
        The temporary directory.
    """
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    tmpdir = tempfile.mkdtemp(prefix=temp_prefix(), dir=directory)
    try:
        yield tmpdir
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def atomic_write(path, write) -> str:
    """Write one file through ``write(tmp_path)`` and rename it to ``path``.

    ``tmp_path`` has the final basename (writers that stamp the file name into the
    file, such as ``DataModel.save``, record the right one). On any error the
    temporary file is removed and an existing ``path`` is untouched.

    Returns
    -------
    str
        The absolute output path.
    """
    path = os.path.abspath(os.fspath(path))
    with atomic_directory(path) as tmpdir:
        tmp_path = os.path.join(tmpdir, os.path.basename(path))
        write(tmp_path)
        os.replace(tmp_path, path)
    return path


def replace_together(temporaries, targets, tmpdir):
    """Rename each temporary over its target, all or none.

    The temporaries are complete files in ``tmpdir`` (made by `atomic_directory`).
    Should one rename fail, the targets already replaced get their previous files
    back (kept as hard links in ``tmpdir``), so files that belong together (an L2 and
    its FITS copy) always come from the same run. The error names the target.
    """
    backups = []
    for k, target in enumerate(targets):
        if os.path.exists(target):
            backup = os.path.join(tmpdir, f".previous-{k}")
            try:
                os.link(target, backup)  # same directory, same file system
            except OSError:  # no hard links here: a copy does the same job
                shutil.copy2(target, backup)
            backups.append((backup, target))
    done = []
    try:
        for temporary, target in zip(temporaries, targets, strict=True):
            os.replace(temporary, target)
            done.append(target)
    except OSError as err:
        previous = {t: b for b, t in backups}
        for target in done:
            if target in previous:
                os.replace(previous[target], target)
            else:
                os.remove(target)
        raise OSError(
            err.errno, f"cannot write {targets[-1]}: {err.strerror or err}", targets[-1]
        ) from err
