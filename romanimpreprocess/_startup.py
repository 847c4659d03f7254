"""Start-up of our own programs: the fast stack load and the process-level tweaks.

Importing ``romanimpreprocess`` changes nothing in the process (stpipe imports it in
every process that resolves a step alias, romancal-only runs included). What follows
happens only in processes that are ours: the command-line programs (``rip-batch``,
``rip-simulate``, ``rip-quicklook``, ``rip-legacy-to-asdf``, ``python -m`` of
``gen_cal_image``, ``gen_noise_image``, ``simulate.cli``, ``demo``), which call
`start_cli` first, the workers of the LocalCluster that ``rip-batch`` starts
(`start_worker`, enabled by ``RIP_PROCESS_TWEAKS=1`` in their environment), and a
``strun`` process once it runs one of our steps (`adopt_stpipe_command_line`; its
stack loaded with libyaml by our entry point when that comes before romancal's,
`load_stack_for_stpipe_command_line`).

**The stack's manifests with libyaml** (`load_stack`). roman_datamodels (at import)
and asdf (at the first file opened) parse their extension manifests, about 1.5 MB of
YAML, with ``yaml.safe_load``: PyYAML's pure-Python parser, about 1.3 s of every
run's start-up on the survey machines. The C parser (libyaml, shipped in PyYAML's
wheels) gives the same documents in a fraction of the time. `load_stack` parses them
with it, once per process, and puts ``yaml.safe_load`` back as it was. The garbage
collector is off while it imports, and the objects the import made are frozen
(`gc.freeze`) afterwards: 8 alternating pairs, start-up 1.96 -> 1.83 s mean, and
the run's collections 0.115 -> 0.050 s (bench/RESULTS.md, "Issue 23, round 7").

**Each asdf schema read once** (`parse_each_schema_once`): asdf reads and parses the
YAML of every schema a tree refers to each time it validates one (every file read or
written); in our programs each document is read and parsed once, copied after that.

**crds's package namespace when first used** (`defer_crds_init`): stpipe imports
crds's core modules in every process; importing them ran crds's package
``__init__``, which imports its best-references machinery (astropy tables,
requests): 0.2 s of start-up that a run with every reference file given never
uses. In our programs that ``__init__`` runs when a name of the package itself is
first asked for (a CRDS lookup, ``crds.__version__``), the core modules importing
as they did.

**The libraries' environment** (`set_process_environment`): variables the libraries
read as they load (OpenMP's wait policy), set unless the user has set them.

**Process-level tweaks** (`process_tweaks_enabled`): in our processes the outermost
step freezes the garbage collector's view of the imported objects for the run and
keeps freed full-frame buffers in the process (`romanimpreprocess._memory`, which
changes glibc's malloc settings for the rest of the process), lets go of the
resolvers asdf's validations left in its caches when it ends
(`forget_schema_resolvers`), and
``gen_cal_image``/``gen_noise_image`` end with `exit_now`. In any other process (a
notebook, a romancal run, a user's dask worker) none of this happens unless asked
for with ``RIP_PROCESS_TWEAKS=1``; ``RIP_PROCESS_TWEAKS=0`` turns it off in ours.
"""

import contextlib
import importlib
import importlib.util
import os
import pickle
import sys
import threading
import types

__all__ = [
    "PROCESS_ENVIRONMENT",
    "PROCESS_TWEAKS_ENV",
    "adopt_stpipe_command_line",
    "defer_crds_init",
    "exit_now",
    "forget_schema_resolvers",
    "keeps_memory_between_runs",
    "load_stack",
    "load_stack_for_stpipe_command_line",
    "parse_each_schema_once",
    "process_tweaks_enabled",
    "set_process_environment",
    "start_cli",
    "start_worker",
]

PROCESS_TWEAKS_ENV = "RIP_PROCESS_TWEAKS"
_own_process = False
_batch_worker = False


@contextlib.contextmanager
def _safe_load_with_libyaml():
    import yaml

    if not getattr(yaml, "__with_libyaml__", False):
        yield
        return
    original = yaml.safe_load

    def safe_load(stream):
        return yaml.load(stream, Loader=yaml.CSafeLoader)

    yaml.safe_load = safe_load
    try:
        yield
    finally:
        yaml.safe_load = original


def load_stack():
    """Import roman_datamodels and load asdf's extensions (libyaml for both).

    Called by `start_cli`, before anything imports the stack (loaded already, the
    manifests were parsed by whoever loaded it; a later call costs nothing).
    """
    with _safe_load_with_libyaml():
        import asdf
        import roman_datamodels.datamodels  # noqa: F401 (manifests parsed at import)

        asdf.get_config().extensions  # noqa: B018 (manifests parsed on first access)


def start_cli() -> None:
    """Make this process one of our programs: call first, before other imports.

    Sets the libraries' environment (`set_process_environment`), defers crds's
    package ``__init__`` to its first use (`defer_crds_init`), loads the stack
    with libyaml (`load_stack`), has asdf parse each schema once
    (`parse_each_schema_once`) and enables the process-level tweaks
    (`process_tweaks_enabled`).
    """
    global _own_process
    _own_process = True
    set_process_environment()
    defer_crds_init()
    with _collector_off_for_imports():
        load_stack()
    parse_each_schema_once()


@contextlib.contextmanager
def _collector_off_for_imports(freeze=True):
    """No garbage collection while the stack is imported; its objects frozen after.

    Importing the stack makes about 10⁶ objects, almost none of them garbage, and
    the collector ran about 450 times meanwhile, scanning them again and again
    (0.2 s of CPU), then once more in full when the first step starts (0.07 s).
    Frozen, they are left out of every later collection; the few cycles the imports
    left behind stay (a few hundred objects). ``freeze=False`` leaves the
    collector's view as it was (a process not yet known to be ours).
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


class _SchemaLoaderOnce:
    """asdf's schema loader, each URI read and parsed once, a copy handed out each time.

    ``load(url)`` returns what asdf's own loader returns (the document and its URI);
    the first time, the loader reads the schema (the resource manager reads the file)
    and parses its YAML, and the document is kept pickled; every call gets a new
    document unpickled from it, equal to a fresh parse and shared with no one (what
    one caller changes, the next does not see).
    """

    def __init__(self, make_loader):
        self._make_loader = make_loader
        self._loaded = {}

    def __call__(self):
        """A loader, as ``asdf.schema._make_schema_loader()`` makes one."""
        load = self._make_loader()

        def load_schema(url):
            try:
                pickled, uri = self._loaded[url]
            except KeyError:
                document, uri = load(url)
                pickled = pickle.dumps(document, pickle.HIGHEST_PROTOCOL)
                self._loaded[url] = (pickled, uri)
            return pickle.loads(pickled), uri

        return load_schema


def parse_each_schema_once() -> bool:
    """From now on, asdf reads and parses each schema once in this process.

    asdf validates a tree with a new reference resolver each time (each file read,
    each file written), and the resolver fetches every schema a ``$ref`` names
    again: the file read by the resource manager and its YAML parsed. A full-frame
    run loaded 257 schema documents, 67 distinct, 0.2-0.3 s of the main thread while
    it opens its input and reference files, before any core has work to share.
    `_SchemaLoaderOnce` keeps each document and hands out copies of it: the same
    documents, the same validation (bench/RESULTS.md, "Issue 23, round 8"). Called
    by `start_cli`, so only in our own programs. Returns False (nothing changed) if
    asdf no longer makes its loaders with ``asdf.schema._make_schema_loader``.
    """
    from asdf import schema

    current = getattr(schema, "_make_schema_loader", None)
    if isinstance(current, _SchemaLoaderOnce):
        return True
    if not callable(current):
        return False
    schema._make_schema_loader = _SchemaLoaderOnce(current)
    return True


def forget_schema_resolvers() -> bool:
    """Let go of the reference resolvers asdf's validations made (end of a run).

    asdf validates each tree with a new jsonschema reference resolver (four in a
    pipeline run), and two methods of the resolver class are memoised at class
    level (``functools.lru_cache``, 128 entries, keyed by the resolver): they keep
    up to 128 resolvers alive after their validation, each with its own caches of
    URIs and schemas. A process running exposure after exposure (a rip-batch
    worker, a noise run's many pipeline runs) grew by 73 MB and 110 000 objects
    over its first 30 exposures, and its later exposures took 0.2 s longer (256²
    exposures: 0.62-0.65 against 0.84-0.88 s, bench/RESULTS.md, "Issue 23, round
    13"). A resolver's entries are of no use after its validation: the next
    validation makes a new resolver. Called by the outermost step when it ends, in
    our processes. Returns False (nothing done) if asdf's resolver no longer has
    these caches.
    """
    try:
        from asdf._jsonschema.validators import RefResolver
    except ImportError:
        return False
    cleared = False
    for name in ("_get_subschemas_cache", "_find_in_subschemas"):
        cache_clear = getattr(getattr(RefResolver, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()
            cleared = True
    return cleared


class _PackageInitOnFirstUse(types.ModuleType):
    """A package whose ``__init__`` runs when a name it defines is first asked for.

    The module is the package's own (its spec, ``__path__``), so its submodules
    import as usual; ``__getattr__`` (called only for a name not yet set) runs the
    package's ``__init__`` once, under a lock, and answers from it.
    """

    _init_lock = threading.RLock()
    _running = set()  # id() of the packages whose __init__ is running

    def __getattr__(self, name):
        cls = _PackageInitOnFirstUse
        with cls._init_lock:
            # Another thread waits here until the package is whole; the __init__'s
            # own look-ups of a name not yet set fail, as in a plain import.
            if type(self) is cls and id(self) not in cls._running:
                cls._running.add(id(self))
                try:
                    self.__spec__.loader.exec_module(self)
                    self.__class__ = types.ModuleType
                finally:
                    cls._running.discard(id(self))
        return types.ModuleType.__getattribute__(self, name)


def defer_crds_init() -> bool:
    """crds's package ``__init__`` runs at its first use, not at ``import crds``.

    ``stpipe.crds_client`` and ``stpipe._log`` import ``crds`` and its core modules
    at import; the package's ``__init__`` then imports ``crds.bestrefs`` (astropy's
    tables and ASCII readers), the network client and ``requests``: about 0.2 s of
    every run's start-up (``python -X importtime``: crds 282 ms -> 48 ms), for a
    lookup a run with every reference file given never makes. The package module
    is put in ``sys.modules`` as a `_PackageInitOnFirstUse`: the core modules
    import from it unchanged, and the first name asked of the package itself
    (``crds.getreferences``, ``crds.__version__``, ``from crds import data_file``)
    runs its ``__init__`` then. The ``__init__`` also points crds's web client at
    ``CRDS_SERVER_URL``: a caller of ``crds.core.heavy_client`` that asked the package
    for nothing before would find no server set (stpipe's ``get_context_used`` alone
    could; romancal asks for ``crds.__version__`` first, and every lookup goes through
    ``crds.getreferences``). Called by `start_cli`, so only in our own programs;
    returns False (nothing changed) if crds is imported already or not installed.
    """
    if "crds" in sys.modules:
        return isinstance(sys.modules["crds"], _PackageInitOnFirstUse)
    spec = importlib.util.find_spec("crds")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _PackageInitOnFirstUse
    sys.modules["crds"] = module
    return True


# Read by the libraries when they load (before any of them is loaded here); a value
# the user set is kept.
PROCESS_ENVIRONMENT = {
    # The compiled kernels' OpenMP threads sleep as soon as a parallel loop ends
    # instead of spinning for the next one: between kernels this process runs numpy
    # on one core and, beside it, the work of its other threads (the references ahead,
    # the ramp fit's special pixels), which the spinning took cores from. Full frame,
    # 6 resultants, 6 alternating pairs: 9.01 -> 8.54 s mean, user CPU 0.6 s less
    # (bench/RESULTS.md, "Issue 23, round 6").
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _stpipe_command_line() -> bool:
    """True in a process started as stpipe's command line (``strun``, ``stpipe run``).

    (The program's names are also in `romanimpreprocess.stpipe_entry`, which must
    not import this module before it knows; importing it from here would make a
    circle.)
    """
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return program in ("strun", "stpipe") and (
        "stpipe._cli" in sys.modules or "stpipe.cli" in sys.modules
    )


def _tweaks_asked():
    """What ``RIP_PROCESS_TWEAKS`` asks for: True (on), False (off) or None (unset)."""
    value = os.environ.get(PROCESS_TWEAKS_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def load_stack_for_stpipe_command_line() -> bool:
    """In ``strun``, load the stack with libyaml as stpipe gathers the step aliases.

    Called by our ``stpipe.steps`` entry point (`romanimpreprocess.stpipe_entry`).
    stpipe's command line loads every package's entry point to resolve an alias,
    and romancal's imports roman_datamodels, whose manifests PyYAML's pure-Python
    parser reads (about 0.6 s). When ours comes first, the stack is loaded here the
    way `start_cli` loads it (`load_stack`: libyaml, the collector off meanwhile):
    the same modules and documents, loaded a moment earlier. Only in a process
    started as stpipe's command line, only while the stack is not loaded, never
    with ``RIP_PROCESS_TWEAKS=0``. Returns True when it loaded the stack.
    """
    if "roman_datamodels" in sys.modules or not _stpipe_command_line():
        return False
    if _tweaks_asked() is False:
        return False
    with _collector_off_for_imports(freeze=False):
        load_stack()
    return True


def adopt_stpipe_command_line() -> bool:
    """A ``strun`` process that runs one of our steps becomes one of our programs.

    Called as our outermost step starts. ``strun rip_l1l2 ...`` is a process of its
    own that runs our pipeline and exits, like ``gen_cal_image``; but stpipe's
    command line imports the stack before any of our code runs, so it gets none of
    `start_cli`'s start-up. What can still be had from here on is had: the
    process-level tweaks (`process_tweaks_enabled`: the garbage collector's frozen
    imports, about 1 s of a full-frame run's 14 collections, and the freed buffers
    kept), each asdf schema parsed once (`parse_each_schema_once`) and the
    libraries' environment (`set_process_environment`). ``RIP_PROCESS_TWEAKS=0``
    keeps the process as it is. Returns True when the process was adopted.
    """
    global _own_process
    if _own_process or not _stpipe_command_line() or _tweaks_asked() is False:
        return False
    _own_process = True
    set_process_environment()
    parse_each_schema_once()
    return True


def set_process_environment() -> None:
    """`PROCESS_ENVIRONMENT` into ``os.environ``, where the user has not set it."""
    for name, value in PROCESS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def process_tweaks_enabled() -> bool:
    """True in our own programs' processes, or as ``RIP_PROCESS_TWEAKS`` says."""
    asked = _tweaks_asked()
    return _own_process if asked is None else asked


def start_worker() -> None:
    """First call of a batch task on a dask worker: `start_cli` if the worker is ours.

    ``rip-batch``'s own LocalCluster starts its workers with ``RIP_PROCESS_TWEAKS=1``;
    the workers of a cluster it is given (``--scheduler``, a client) are left as
    they are.
    """
    global _batch_worker
    if not _own_process and process_tweaks_enabled():
        start_cli()
        _batch_worker = True


def keeps_memory_between_runs() -> bool:
    """True in a batch worker set up by `start_worker`: one exposure after another.

    The memory a run freed stays in the process for the next exposure instead of
    going back to the system (`romanimpreprocess._memory.reuse_freed_memory`).
    """
    return _batch_worker


def _launch(target):
    start_cli()
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)()


# Console scripts (pyproject.toml): the process is set up before the program's module
# (and the stack with it) is imported.
def rip_batch():
    """``rip-batch``."""
    return _launch("romanimpreprocess.batch.cli:main")


def rip_simulate():
    """``rip-simulate``."""
    return _launch("romanimpreprocess.simulate.cli:main")


def rip_quicklook():
    """``rip-quicklook``."""
    return _launch("romanimpreprocess.quicklook:main")


def rip_mask():
    """``rip-mask``."""
    return _launch("romanimpreprocess.utils.maskhandling:main")


def rip_legacy_to_asdf():
    """``rip-legacy-to-asdf``."""
    return _launch("romanimpreprocess.pipeline.legacy:convert_main")


def exit_now(code: int) -> None:
    """End a command-line run at once, once its output is complete.

    Tearing the interpreter down after a full-frame run (freeing a few GB of arrays
    object by object, unloading the stack) takes about a second and does nothing
    useful: the products are already written and renamed into place. Logs and the
    standard streams are flushed first. Used only at the end of ``python -m`` runs
    of ``gen_cal_image`` and ``gen_noise_image`` (never by a library call).
    """
    import logging
    import os
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(int(code))
