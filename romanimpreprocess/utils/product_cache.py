"""Reference products kept on disk, shared by every run on the same calibration set.

The dark step's IPC-deconvolved dark slope and the flat step's clipped, deconvolved
flat depend on the reference files alone (and the step's ``legacy_compat``). On a
full frame each is a pass over the 0.6 GB IPC kernel: 1.3 s and 0.5 s of one core in
an exposure's first run, with about 0.2 GB of fresh memory (bench/RESULTS.md, "Issue
23, round 11"). Every exposure of an SCA uses the same ones, and users run one process
per exposure as often as batches, so they are computed once and stored here; the
next run on the same files maps them (``numpy.load(..., mmap_mode="r")``): the pages
come from the page cache, shared by every process that maps them. The photom step's
median gain is kept the same way, and so is a note that a reference array was found
finite (`romanimpreprocess.datamodels.reference`: the scan of 1 GB a full frame is
not repeated; "Issue 23, round 12").

**Where.** ``RIP_PRODUCT_CACHE``: a directory, or ``0``/``off``/``no``/``false`` to
turn the cache off. Default: ``romanimpreprocess-<uid>/products`` in the system's
temporary directory (`tempfile.gettempdir`, so ``TMPDIR``): node-local on a cluster,
never in a home quota. That directory and its parent must belong to the user (mode
0700 when made here); otherwise the cache is off for the process, with a warning. A
directory given is used as it is (a team's shared cache: entries get the umask's
permissions).

**How much.** ``RIP_PRODUCT_CACHE_GB`` (default 2): after a store the least recently
used entries go until the rest fits. A full frame's two products are 0.19 GB
(float32; twice that with ``legacy_compat``'s float64).

**What makes an entry.** Its key is everything the products depend on: the step, its
parameters, each reference file's version as opened (`ReferenceFile.identity`: path,
size, modification time, inode, device; a file rewritten since is computed again),
numpy's version, numba's installation and a digest of this package's source (an
upgrade or an edit of the code computes again). The entry keeps its key; a load that
does not find the same key, or cannot read a file, is a miss (the entry is removed
and the products computed). Entries are written to a temporary directory and
renamed (`romanimpreprocess.utils.atomic`), so a reader never sees half of one; two
runs storing the same entry at once keep one. Arrays, numpy scalars (their dtype
kept: the median gain goes to the L2 as stored) and plain values are stored;
products of any other type are not cached.
"""

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile

import numpy as np

from romanimpreprocess.utils.atomic import TEMP_PREFIX, atomic_directory

__all__ = [
    "CACHE_ENV",
    "CACHE_SIZE_ENV",
    "DEFAULT_CACHE_GB",
    "cache_directory",
    "load",
    "store",
]

log = logging.getLogger(__name__)

CACHE_ENV = "RIP_PRODUCT_CACHE"
CACHE_SIZE_ENV = "RIP_PRODUCT_CACHE_GB"
DEFAULT_CACHE_GB = 2.0
_OFF = ("0", "off", "no", "false", "none")
_FORMAT = 1
_KEY_FILE = "key.json"
_LAYOUT_FILE = "layout.json"
_warned = set()


def _warn_once(message, *args):
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning(text)


@functools.cache
def _code_digest():
    """Digest of this package's Python source, numpy's version and numba's install.

    (Once a process. numba, which compiles the kernels that make the products, is
    named by its installed ``__init__.py`` and that file's modification time: an
    upgrade rewrites it; importing numba, or reading its metadata, would cost the
    run more.)
    """
    import importlib.util

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha1(np.__version__.encode())
    spec = importlib.util.find_spec("numba")
    if spec is not None and spec.origin:
        with contextlib.suppress(OSError):
            numba_init = os.stat(spec.origin)
            digest.update(f"{spec.origin}:{numba_init.st_mtime_ns}".encode())
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, package).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def cache_directory():
    """The cache's directory (made if missing), or None when it is off or unusable.

    A directory the user names is taken as it is (a team's shared cache, a link to
    a scratch disk). The default one is in a directory every user can write to: it
    and its parent must be real directories of this user (made with mode 0700), or
    another user could have put products there.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        directory = os.path.abspath(os.path.expanduser(value))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            _warn_once("Product cache off: cannot use %s (%s)", directory, exc)
            return None
        return directory
    uid = os.getuid() if hasattr(os, "getuid") else None
    parent = os.path.join(
        tempfile.gettempdir(), f"romanimpreprocess-{'user' if uid is None else uid}"
    )
    directory = os.path.join(parent, "products")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        infos = [(path, os.lstat(path)) for path in (parent, directory)]
    except OSError as exc:
        _warn_once("Product cache off: cannot use %s (%s)", directory, exc)
        return None
    for path, info in infos:
        if (uid is not None and info.st_uid != uid) or not stat.S_ISDIR(info.st_mode):
            _warn_once(
                "Product cache off: %s is not a directory of this user (set %s)",
                path,
                CACHE_ENV,
            )
            return None
    return directory


def _key_text(key):
    return json.dumps([_FORMAT, _code_digest(), repr(key)])


def _entry_name(key):
    first = key[0] if isinstance(key, tuple) and key else ""
    prefix = "".join(c if c.isalnum() else "-" for c in str(first))[:40]
    digest = hashlib.sha1(_key_text(key).encode()).hexdigest()[:24]
    return f"{prefix}-{digest}" if prefix else digest


def load(key, what="reference products", quiet=False):
    """The products stored under ``key``, arrays memory-mapped read-only; None if not.

    ``quiet``: the use is logged at DEBUG, not INFO (a check's result, not a product).
    """
    directory = cache_directory()
    if directory is None:
        return None
    entry = os.path.join(directory, _entry_name(key))
    if not os.path.isdir(entry):
        return None
    try:
        with open(os.path.join(entry, _KEY_FILE)) as f:
            if f.read() != _key_text(key):
                raise ValueError("another key")
        with open(os.path.join(entry, _LAYOUT_FILE)) as f:
            layout = json.load(f)
        products = []
        for i, item in enumerate(layout):
            if item["kind"] == "value":
                products.append(item["value"])
                continue
            array = np.load(os.path.join(entry, f"{i}.npy"), mmap_mode="r")
            products.append(array if item["kind"] == "array" else array[()])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "%s: product cache entry %s unusable (%s): computed again", what, entry, exc
        )
        shutil.rmtree(entry, ignore_errors=True)
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # its last use, for the eviction
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s: from the product cache (%s)",
        what,
        entry,
    )
    return tuple(products)


def _layout(products):
    """How each product is stored, or None if one cannot be."""
    layout = []
    for value in products:
        if isinstance(value, np.ndarray) and value.dtype != object:
            layout.append({"kind": "array"})
        elif isinstance(value, np.generic) and not isinstance(value, np.object_):
            layout.append({"kind": "scalar"})
        elif value is None or isinstance(value, (bool, int, float, str)):
            layout.append({"kind": "value", "value": value})
        else:
            return None
    return layout


def store(key, products, what="reference products", quiet=False):
    """Store ``products`` (a tuple) under ``key``; nothing raised if it cannot.

    ``quiet``: the store is logged at DEBUG, not INFO.
    """
    directory = cache_directory()
    if directory is None:
        return
    layout = _layout(products)
    if layout is None:
        log.debug("%s: not cached (a product is not an array or a plain value)", what)
        return
    name = _entry_name(key)
    entry = os.path.join(directory, name)
    try:
        # the package's atomic writes: a killed run's leftovers are removed by the next
        with atomic_directory(entry) as tmpdir:
            temp = os.path.join(tmpdir, name)
            os.mkdir(temp)
            for i, (value, item) in enumerate(zip(products, layout, strict=True)):
                if item["kind"] != "value":
                    _save(os.path.join(temp, f"{i}.npy"), np.asarray(value))
            with open(os.path.join(temp, _LAYOUT_FILE), "w") as f:
                json.dump(layout, f)
            with open(os.path.join(temp, _KEY_FILE), "w") as f:
                f.write(_key_text(key))
            try:
                os.rename(temp, entry)
            except OSError:  # stored meanwhile by another run: keep that one
                if not os.path.isdir(entry):
                    raise
                return
    except OSError as exc:
        _warn_once("%s: not stored in the product cache %s (%s)", what, directory, exc)
        return
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s: stored in the product cache (%s)",
        what,
        entry,
    )
    try:
        _evict(directory, keep=name)
    except OSError as exc:  # the directory removed meanwhile, say: the run goes on
        _warn_once("Product cache %s: entries not evicted (%s)", directory, exc)


def _save(path, array, block_bytes=8 << 20):
    """``numpy.save`` of ``array``, a view of a larger array (the science area) too.

    ``numpy.save`` writes an array that is not contiguous through small buffers:
    0.8 s of CPU for a full-frame flat's science area. Here it goes in blocks of rows
    made contiguous (8 MB), with the same ``.npy`` header: no mapping of the file,
    whose pages would count in the run's resident memory while they are copied.
    """
    if array.ndim == 0 or array.size == 0 or array.flags.c_contiguous:
        np.save(path, array)  # (numpy.ascontiguousarray would make a 0-d array 1-d)
        return
    rows = max(1, block_bytes // array[0].nbytes)
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,  # the blocks are written in C order
        "shape": array.shape,
    }
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.writelines(
            np.ascontiguousarray(array[start : start + rows]).data
            for start in range(0, array.shape[0], rows)
        )


def _size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _limit_bytes():
    value = os.environ.get(CACHE_SIZE_ENV, "").strip()
    try:
        gb = float(value) if value else DEFAULT_CACHE_GB
    except ValueError:
        _warn_once(
            "%s=%r is not a number of GB: %g GB used",
            CACHE_SIZE_ENV,
            value,
            DEFAULT_CACHE_GB,
        )
        gb = DEFAULT_CACHE_GB
    return max(gb, 0.0) * 1e9


def _evict(directory, keep):
    """Remove least recently used entries until the cache fits."""
    entries = []
    with os.scandir(directory) as it:
        for item in it:
            if item.name.startswith(TEMP_PREFIX):  # a store under way
                continue
            try:
                mtime = item.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if item.is_dir(follow_symlinks=False):
                entries.append((mtime, item.name, _size(item.path)))
    total = sum(size for _, _, size in entries)
    limit = _limit_bytes()
    for _, name, size in sorted(entries):
        if total <= limit:
            break
        if name == keep:
            continue
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        log.info(
            "Product cache: %s removed (least recently used; cap %.3g GB)",
            name,
            limit / 1e9,
        )
        total -= size
