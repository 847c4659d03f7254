"""One reader for every calibration reference-file type (docs/reference_files.rst).

Files are the legacy CALDIR layout (a plain ``roman`` tree in an ASDF file); where a
reftype is also a CRDS type (dark, flat, gain, mask, readnoise, saturation) romancal's
reference files work too, because they carry the same ``roman.<field>`` arrays.

A reader opens the file once, checks that every field the caller needs is present with
the right number of dimensions, shape (against the exposure's `Geometry`) and kind of
dtype, and then hands out arrays lazily: an array is read (or memory-mapped) the first
time it is accessed, and never if it is not. Every problem raises `ReferenceFileError`
naming the file, the field and what was expected.
"""

import logging
import os
from dataclasses import dataclass

import asdf
import numpy as np

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.datamodels import reference_checks
from romanimpreprocess.datamodels.checksums import block_checksum_problems
from romanimpreprocess.datamodels.errors import ReferenceFileError
from romanimpreprocess.datamodels.geometry import Geometry
from romanimpreprocess.datamodels.reference_checks import ExposureInfo
from romanimpreprocess.parallel import run_in_threads
from romanimpreprocess.utils import product_cache
from romanimpreprocess.utils.mapped import release_pages
from romanimpreprocess.utils.median import median

__all__ = ["FIELDS", "ExposureInfo", "ReferenceFile", "open_reference"]

# (path, size, mtime) of the files whose ASDF tree passed schema validation.
_SCHEMA_VALIDATED = set()
# (path, size, mtime) of the files whose block checksums matched.
_CHECKSUMS_VALID = set()
# (reftype, path, size, mtime) -> (problems, warnings) of the type and value checks.
_CONTENT_CHECKED = {}
# (path, size, mtime, field) -> number of non-finite values of that array. The steps
# of one run open the same files again (the IPC kernel, 600 MB, by three steps, the
# gain by four): each array is scanned once per process (`_nonfinite_count`).
_NONFINITE_COUNTED = {}
# (path, size, mtime, field, border) -> `ReferenceFile.science_medians` of that array.
_SCIENCE_MEDIANS = {}

log = logging.getLogger(__name__)


def _verify_reference_checksums():
    """True when ``RIP_REFERENCE_CHECKSUMS`` asks for the reference block checksums."""
    value = os.environ.get("RIP_REFERENCE_CHECKSUMS", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Field:
    """Expected layout of one field of a reference file.

    ``shape`` is a tuple of dimension codes resolved against the exposure geometry:
    ``"ny"``/``"nx"`` full frame, ``"sy"``/``"sx"`` science area, ``"n"`` number of
    resultants, an int for a fixed size, ``None`` for any size. ``alt_shape`` is a second
    accepted layout. ``kind`` is the numpy dtype kinds accepted (``"f"`` float, ``"iu"``
    integer, ``"dict"`` a mapping, ``"number"`` a scalar, ``"bool"``).
    """

    shape: tuple | None = None
    kind: str = "f"
    required: bool = True
    alt_shape: tuple | None = None
    finite: bool = False


_FRAME = ("ny", "nx")
_SCIENCE = ("sy", "sx")

FIELDS: dict[str, dict[str, Field]] = {
    "mask": {"dq": Field(_FRAME, "iu")},
    "saturation": {
        "data": Field(_FRAME, "f"),
        "dq": Field(_FRAME, "iu", required=False),
    },
    "dark": {
        "data": Field(("ndark", "ny", "nx"), "f"),
        "dark_slope": Field(_FRAME, "f"),
        "dq": Field(_FRAME, "iu", required=False),
    },
    "gain": {
        "data": Field(_FRAME, "f", finite=True),
        "dq": Field(_FRAME, "iu", required=False),
    },
    "readnoise": {
        "data": Field(_FRAME, "f", finite=True),
        "anc": Field(None, "dict", required=False),
        "amp33": Field(None, "dict", required=False),
        "resetnoise": Field(_FRAME, "f", required=False),
    },
    "linearitylegendre": {
        "data": Field((None, "ny", "nx"), "f"),
        "Smin": Field(_FRAME, "f"),
        "Smax": Field(_FRAME, "f"),
        "Sref": Field(_FRAME, "f"),
        "dq": Field(_FRAME, "iu"),
    },
    "ipc4d": {
        "data": Field(
            (3, 3, "sy", "sx"), "f", alt_shape=(3, 3, "ny", "nx"), finite=True
        ),
    },
    "flat": {
        "data": Field(_FRAME, "f"),
        "dq": Field(_FRAME, "iu", required=False),
    },
    "biascorr": {
        "data": Field(("nbias", "sy", "sx"), "f", finite=True),
        "t0": Field(None, "number", required=False),
    },
    "darkdecaysignal": {"decay_table": Field(None, "dict")},
    # romancal WfiImgPhotomRefModel: phot_table[element] = photmjsr, uncertainty,
    # pixelareasr (values checked by the photom step)
    "photom": {"phot_table": Field(None, "dict")},
}

# Legacy CALDIR key -> reftype (the name used by ``override_<reftype>``).
CALDIR_TO_REFTYPE = {
    "mask": "mask",
    "saturation": "saturation",
    "dark": "dark",
    "gain": "gain",
    "read": "readnoise",
    "linearitylegendre": "linearitylegendre",
    "ipc4d": "ipc4d",
    "flat": "flat",
    "biascorr": "biascorr",
    "dark_decay": "darkdecaysignal",
    "photom": "photom",
}


def _expected_shape(codes, geometry: Geometry, actual):
    """Resolve dimension codes to sizes; ``None`` where any size is accepted."""
    sizes = {
        "ny": geometry.ny,
        "nx": geometry.nx,
        "sy": geometry.science_shape[0],
        "sx": geometry.science_shape[1],
        "n": geometry.nresultants,
    }
    out = []
    for code, got in zip(codes, actual, strict=False):
        if code is None:
            out.append(None)
        elif code == "ndark":
            # A dark cube has one plane per resultant, or one more when it still holds
            # the reference read that an EXTRACT_REF exposure has removed.
            out.append(
                got
                if got in (geometry.nresultants, geometry.nresultants + 1)
                else geometry.nresultants
            )
        elif code == "nbias":
            out.append(max(got, geometry.nresultants))
        elif isinstance(code, int):
            out.append(code)
        else:
            out.append(sizes[code])
    return tuple(out)


def _shape_text(codes, geometry):
    text = []
    for code in codes:
        if code is None:
            text.append("any")
        elif code == "ndark":
            text.append(f"{geometry.nresultants} or {geometry.nresultants + 1}")
        elif code == "nbias":
            text.append(f">={geometry.nresultants}")
        else:
            text.append(str(_expected_shape((code,), geometry, (0,))[0]))
    return "(" + ", ".join(text) + ")"


def _shape_matches(codes, geometry, shape):
    if len(codes) != len(shape):
        return False
    expected = _expected_shape(codes, geometry, shape)
    return all(e is None or e == s for e, s in zip(expected, shape, strict=True))


class ReferenceFile:
    """A validated, lazily read calibration reference file.

    Arrays are attributes (``ref.data``, ``ref.dark_slope``); dict fields come back as
    plain dicts. Use as a context manager or call `close`.

    Parameters
    ----------
    reftype : str
        Reference type (a key of `FIELDS`).
    path : str
        Path of the ASDF file.
    geometry : Geometry or None
        Exposure geometry the arrays must match; ``None`` skips the shape checks.
    fields : iterable of str or None
        Fields the caller will use; only these are checked and required. ``None``
        means every field listed for the reftype.
    exposure : ExposureInfo or None
        Detector, read pattern and frame time the file must agree with where it
        records them; ``None`` skips these checks.

    Whatever ``fields`` and ``geometry`` say, the file must be of type ``reftype``
    (its declared type, else its fields and typical values) and physically
    possible (`reference_checks`).
    """

    def __init__(self, reftype, path, geometry=None, fields=None, exposure=None):
        if reftype not in FIELDS:
            raise ValueError(
                f"unknown reference type {reftype!r}; known: {', '.join(FIELDS)}"
            )
        self.reftype = reftype
        self.path = os.path.abspath(str(path))
        self.geometry = geometry
        self._cache = {}
        spec = FIELDS[reftype]
        self.fields = list(spec) if fields is None else list(fields)
        unknown = [f for f in self.fields if f not in spec]
        if unknown:
            raise ValueError(f"{reftype}: no field(s) {unknown}; known: {list(spec)}")
        self._af = self._open()
        try:
            # The type first: "a gain file given as the flat" says more than the
            # field that the wrong file happens to lack.
            self._check_content(exposure, type_only=True)
            self._validate(spec)
            self._check_content(exposure)
        except Exception:
            self.close()
            raise

    def _error(self, problem, field=None):
        return ReferenceFileError(self.reftype, self.path, problem, field=field)

    def _open(self):
        if not os.path.exists(self.path):
            raise self._error("file does not exist")
        if os.path.isdir(self.path):
            raise self._error("is a directory, not an ASDF file")
        stat = os.stat(self.path)
        if stat.st_size == 0:
            raise self._error("file is empty")
        # the file's version: a file rewritten or replaced since is another one
        identity = (self.path, stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)
        self._identity = identity
        if identity not in _CHECKSUMS_VALID and _verify_reference_checksums():
            # The MD5 of every block: ~5 s a GB here (a full-frame calibration set
            # is 2.6 GB, 14 s), hence opt-in; once a process per file.
            problems = block_checksum_problems(self.path)
            if problems:
                raise self._error("; ".join(problems))
            _CHECKSUMS_VALID.add(identity)
        try:
            # asdf's schema validation of the tree costs 30-90 ms a file; a file is
            # validated the first time this process opens it, and again only if it
            # changed (the pipeline opens each file twice: pre-check and step).
            with asdf.config_context() as config:
                config.validate_on_read = identity not in _SCHEMA_VALIDATED
                af = asdf.open(self.path, lazy_load=True, memmap=True)
            _SCHEMA_VALIDATED.add(identity)
        except Exception as exc:
            raise self._error(
                f"cannot be read as ASDF ({type(exc).__name__}: {exc})"
            ) from exc
        if "roman" not in af.tree or not hasattr(af.tree["roman"], "keys"):
            af.close()
            raise self._error("no top-level 'roman' tree", field="roman")
        return af

    @property
    def identity(self):
        """This file's version as opened: ``(path, size, mtime_ns, inode, device)``.

        The key of every per-process cache of what is read or computed from it
        (validation, checks, medians; `romanimpreprocess.stpipe.between_exposures`).
        """
        return self._identity

    @property
    def tree(self):
        """The ``roman`` tree of the file (arrays not loaded)."""
        return self._af.tree["roman"]

    def _validate(self, spec):
        for name in self.fields:
            field = spec[name]
            if name not in self.tree:
                if field.required:
                    raise self._error(
                        "required field is missing", field=f"roman.{name}"
                    )
                continue
            value = self.tree[name]
            where = f"roman.{name}"
            if field.kind == "dict":
                if not hasattr(value, "keys"):
                    raise self._error(
                        f"expected a mapping, got {type(value).__name__}", field=where
                    )
                continue
            if field.kind == "number":
                if not isinstance(value, int | float | np.number):
                    raise self._error(
                        f"expected a number, got {type(value).__name__}", field=where
                    )
                continue
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise self._error(
                    f"expected an array, got {type(value).__name__}", field=where
                )
            dtype = np.dtype(value.dtype)
            if dtype.kind not in field.kind:
                kinds = {"f": "floating-point", "iu": "integer"}.get(
                    field.kind, field.kind
                )
                raise self._error(
                    f"expected a {kinds} array, got dtype {dtype}", field=where
                )
            if field.shape is not None and self.geometry is not None:
                shape = tuple(value.shape)
                ok = _shape_matches(field.shape, self.geometry, shape)
                if not ok and field.alt_shape is not None:
                    ok = _shape_matches(field.alt_shape, self.geometry, shape)
                if not ok:
                    expected = _shape_text(field.shape, self.geometry)
                    if field.alt_shape is not None:
                        expected += " or " + _shape_text(field.alt_shape, self.geometry)
                    raise self._error(
                        f"shape {shape} does not match the exposure: expected {expected}",
                        field=where,
                    )

    def _check_content(self, exposure, type_only=False):
        """Type, physical possibility and exposure agreement (reference_checks)."""
        identity = (self.reftype, *self._identity)
        border = self.geometry.border if self.geometry is not None else REF_BORDER
        try:
            if type_only:
                key = (*identity, "type")
                if key not in _CONTENT_CHECKED:
                    _CONTENT_CHECKED[key] = reference_checks.type_problem(
                        self.reftype, self.tree, border, values=False
                    )
                if _CONTENT_CHECKED[key]:
                    raise self._error(_CONTENT_CHECKED[key])
                return
            checked = _CONTENT_CHECKED.get(identity)
            if checked is None:
                problem = reference_checks.type_problem(self.reftype, self.tree, border)
                checked = (
                    ([problem], [])
                    if problem
                    else reference_checks.physical_problems(
                        self.reftype, self.tree, border
                    )
                )
                _CONTENT_CHECKED[identity] = checked
                for text in checked[1]:
                    log.warning(
                        "%s reference file %s: %s", self.reftype, self.path, text
                    )
        except ReferenceFileError:
            raise
        except Exception as exc:
            raise self._error(
                f"array cannot be read, the file may be truncated or corrupt "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        problems = list(checked[0])
        mismatch = reference_checks.exposure_problem(self.reftype, self.tree, exposure)
        if mismatch:
            problems.append(mismatch)
        if problems:
            raise self._error("; ".join(problems))

    def __contains__(self, name):
        return name in self.tree

    def get(self, name, default=None):
        """Return field ``name`` (array loaded lazily), or ``default`` if absent."""
        if name not in self.tree:
            return default
        return getattr(self, name)

    def __getattr__(self, name):
        if name.startswith("_") or name in ("reftype", "path", "geometry", "fields"):
            raise AttributeError(name)
        if name in self._cache:
            return self._cache[name]
        if name not in self.tree:
            raise self._error("field is missing", field=f"roman.{name}")
        value = self.tree[name]
        where = f"roman.{name}"
        try:
            if hasattr(value, "shape") and hasattr(value, "dtype"):
                value = np.asarray(value)
            elif hasattr(value, "keys"):
                value = _to_plain(value)
        except Exception as exc:
            raise self._error(
                f"array cannot be read, the file may be truncated or corrupt "
                f"({type(exc).__name__}: {exc})",
                field=where,
            ) from exc
        spec = FIELDS[self.reftype].get(name)
        if spec is not None and spec.finite and isinstance(value, np.ndarray):
            n_bad = _nonfinite_count(self._identity, name, value)
            if n_bad:
                raise self._error(
                    f"{n_bad} non-finite value(s) (NaN or inf)", field=where
                )
        self._cache[name] = value
        return value

    def science_medians(self, name, border=REF_BORDER):
        """Medians of field ``name`` inside ``border``: all values, good values.

        Computed once per process and file version: the dark-current and photom
        steps both need the median gain (`romanimpreprocess.utils.median`: 0.1 s a
        full frame, numpy's 0.3 s).

        Parameters
        ----------
        name : str
            A 2-D array field (``"data"`` of the gain file).
        border : int
            Rows and columns left out on every side (the reference pixels).

        Returns
        -------
        tuple of float
            ``(median of every value, median of the finite positive values)``, each
            exactly as `numpy.median` gives it (the same bits); the second is NaN
            when no value is finite and positive.
        """
        key = (*self._identity, name, border)
        medians = _SCIENCE_MEDIANS.get(key)
        if medians is None:
            array = np.asarray(getattr(self, name))
            science = array[border:-border, border:-border] if border else array
            good = np.isfinite(science) & (science > 0)
            every = median(science)
            if good.all():
                medians = (every, every)
            elif good.any():
                medians = (every, median(science[good]))
            else:
                medians = (every, float("nan"))
            _SCIENCE_MEDIANS[key] = medians
        return medians

    def close(self):
        """Close the file; arrays already read stay valid only if not memory-mapped."""
        af = self.__dict__.get("_af")
        if af is not None:
            af.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<ReferenceFile {self.reftype} {self.path}>"


def _nonfinite_count(identity, name, array) -> int:
    """Non-finite values of field ``name`` of the file version ``identity``.

    Scanned once per process (`_NONFINITE_COUNTED`). A file found finite is noted in
    the product cache (`romanimpreprocess.utils.product_cache`), so that a later run
    on the same file version does not scan it again: the IPC kernel, the linearity
    coefficients and the bias cube of a full frame, 1 GB read on the main thread
    before the first band (0.27 s of a run). A file with a bad value is scanned by
    every run, which stops on it.
    """
    key = (*identity, name)
    n_bad = _NONFINITE_COUNTED.get(key)
    if n_bad is None:
        noted = ("finite", *key)
        if product_cache.load(noted, quiet=True) is not None:
            n_bad = 0
        else:
            n_bad = _count_nonfinite(array)
            if n_bad == 0:
                product_cache.store(noted, (True,), quiet=True)
        _NONFINITE_COUNTED[key] = n_bad
    return n_bad


def _count_nonfinite(array) -> int:
    """Non-finite values of ``array``, counted in blocks of rows, on threads.

    A cube (the 24-resultant bias correction is 1.6 GiB) is never tested whole: no
    cube-sized boolean array, and a memory-mapped plane's pages are given back once
    checked (`romanimpreprocess.utils.mapped`); the steps read the planes again one
    at a time. The blocks run on `romanimpreprocess.parallel.run_in_threads` (2 GB
    of a full frame's references are scanned when a run starts).
    """
    if array.ndim < 2:
        return int(np.count_nonzero(~np.isfinite(array)))
    planes = array.reshape(-1, *array.shape[-2:])
    rows = planes.shape[1]
    block = max(1, -(-rows // 4))  # 4 blocks a plane: both cores busy on a 2-D array
    items = [(i, r0) for i in range(len(planes)) for r0 in range(0, rows, block)]
    counts = np.zeros(len(items), np.int64)

    def count(k):
        i, r0 = items[k]
        part = planes[i, r0 : r0 + block]
        counts[k] = np.count_nonzero(~np.isfinite(part))
        if array.ndim > 2:
            release_pages(part)

    run_in_threads(count, range(len(items)))
    return int(counts.sum())


def _to_plain(node):
    """Copy an ASDF mapping into plain Python dicts, arrays loaded."""
    if hasattr(node, "keys"):
        return {k: _to_plain(node[k]) for k in node}
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return np.asarray(node)
    return node


def open_reference(
    reftype, path, geometry=None, fields=None, exposure=None
) -> ReferenceFile:
    """Open and validate a reference file; see `ReferenceFile`."""
    return ReferenceFile(
        reftype, path, geometry=geometry, fields=fields, exposure=exposure
    )
