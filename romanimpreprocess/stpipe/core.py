"""Offline base classes: `RipStep` and `RipPipeline`.

They differ from romancal's `RomanStep`/`RomanPipeline` in what a survey run needs
(docs/running.rst):

- CRDS is never contacted unless ``RIP_USE_CRDS`` is true: reference files come from
  ``override_<reftype>``; a missing required one is one clear error naming the step,
  the reftype and the parameter that sets it; optional reftypes are skipped with a log
  line.
- Reference files are opened once per run (cached on the outermost step) and read
  lazily through `romanimpreprocess.datamodels.open_reference`.
- ``meta.cal_step`` is recorded by each step under its ``cal_step_key``.
- Logs of the ``romanimpreprocess`` loggers show under ``strun``.
- Outputs are written atomically and ``output_file`` is honoured as given.
- ``get_pars`` keeps the ``override_*`` paths, so exported parameter files reproduce
  the run.
"""

import functools
import gc
import importlib.metadata
import logging
import os
from os.path import abspath, join, split

from roman_datamodels import datamodels as dm
from romancal.stpipe import RomanPipeline, RomanStep
from stpipe import Pipeline

from romanimpreprocess._memory import reuse_freed_memory
from romanimpreprocess._startup import (
    PROCESS_TWEAKS_ENV,
    adopt_stpipe_command_line,
    forget_schema_resolvers,
    keeps_memory_between_runs,
    process_tweaks_enabled,
)
from romanimpreprocess.datamodels import (
    ExposureInfo,
    Geometry,
    InputFileError,
    MissingReferenceError,
    large_reads,
    open_l1,
    open_reference,
    raw_to_ramp,
    validate_l1,
)
from romanimpreprocess.parallel import blas_on_one_thread
from romanimpreprocess.paths import overwrite_problems
from romanimpreprocess.stpipe.bands import Band
from romanimpreprocess.utils.atomic import atomic_write

__all__ = [
    "RipPipeline",
    "RipStep",
    "atomic_save",
    "use_crds",
]

log = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "y", "t", "on")


def use_crds() -> bool:
    """True when the user opted in to CRDS with ``RIP_USE_CRDS``."""
    return os.environ.get("RIP_USE_CRDS", "").strip().lower() in _TRUE


@functools.cache
def _installed_version(distribution):
    """The installed version of ``distribution`` (read once a process: each step's
    `RipStep.finalize_result` records it)."""
    return importlib.metadata.version(distribution)


def atomic_save(model, path, writer=None):
    """Write ``model`` to ``path`` so that ``path`` is never left half-written.

    The file is written into a hidden temporary directory next to ``path`` under its
    final basename (``DataModel.save`` stamps ``meta.filename`` with it), then renamed
    over ``path`` in one step (`romanimpreprocess.utils.atomic`). On any error the
    temporary files are removed and an existing ``path`` is untouched.

    Parameters
    ----------
    model : DataModel
        Model to write.
    path : str
        Final output path.
    writer : callable or None
        ``writer(model, tmp_path)``; default ``model.save(tmp_path)``.

    Returns
    -------
    str
        The absolute output path.
    """
    if writer is None:
        return atomic_write(path, model.save)
    return atomic_write(path, lambda tmp_path: writer(model, tmp_path))


class RipStep(RomanStep):
    """Base class of every romanimpreprocess step (offline, see module docstring).

    Subclasses set ``class_alias`` (``rip_<name>``), ``cal_step_key`` (the
    ``meta.cal_step`` key they fill: romancal's where one exists, else their name),
    ``spec``, ``reference_file_types`` and, for reftypes the step can do without,
    ``optional_reference_types``.
    """

    cal_step_key = None
    optional_reference_types = ()

    # ------------------------------------------------------------------ logging
    @staticmethod
    def get_stpipe_loggers():
        """Loggers stpipe configures: ours first, then romancal's list."""
        return ("romanimpreprocess", *RomanStep.get_stpipe_loggers())

    def run(self, *args):
        """stpipe's ``run``, BLAS on one thread; in our processes, two more savings.

        In any process, the outermost step runs with the BLAS libraries on one
        thread (`romanimpreprocess.parallel.blas_on_one_thread`); their own thread
        counts are back when it ends.

        The two process-level savings happen only where
        `romanimpreprocess._startup.process_tweaks_enabled` (our command lines,
        rip-batch's own workers, or ``RIP_PROCESS_TWEAKS=1``); elsewhere a host
        process (a notebook, a romancal run) keeps its garbage collector and malloc
        as they were.

        stpipe runs a full garbage collection before every step. The outermost step
        freezes the objects that exist when it starts (the imported stack, ~1e6
        objects), and every step those made since, so those collections cost
        milliseconds instead of ~0.1 s each; the outermost step unfreezes them all
        when it ends (a frozen cycle made during the run is then collected as usual).
        It also keeps freed full-frame buffers for the next step to reuse while it
        runs (`romanimpreprocess._memory.reuse_freed_memory`), and in rip-batch's
        own workers for the next exposure
        (`romanimpreprocess._startup.keeps_memory_between_runs`). When it ends, the
        resolvers asdf's validations left in its caches are let go
        (`romanimpreprocess._startup.forget_schema_resolvers`): a process running
        one exposure after another does not grow with them.
        """
        if self.parent is not None:
            if process_tweaks_enabled():
                # the reference trees and logs made since: out of reach too
                gc.freeze()
            return super().run(*args)
        if adopt_stpipe_command_line():
            log.info(
                "strun: this process runs %s alone; its process-level savings are on "
                "(%s=0 turns them off)",
                type(self).__name__,
                PROCESS_TWEAKS_ENV,
            )
        with blas_on_one_thread():
            if not process_tweaks_enabled():
                return super().run(*args)
            gc.collect()
            gc.freeze()
            try:
                with reuse_freed_memory(keep=keeps_memory_between_runs()):
                    return super().run(*args)
            finally:
                gc.unfreeze()
                forget_schema_resolvers()

    # --------------------------------------------------------------------- CRDS
    @classmethod
    def get_config_from_reference(cls, dataset, disable=None, crds_observatory=None):
        """No CRDS parameter references unless ``RIP_USE_CRDS`` is set."""
        if not use_crds():
            return cls._empty_config()
        return super().get_config_from_reference(dataset, disable, crds_observatory)

    def get_reference_file(self, input_file, reference_file_type):
        """Path of the reference file for ``reference_file_type`` (override only).

        Returns ``"N/A"`` for a skipped optional reftype. Raises
        `MissingReferenceError` for a required one without an override.
        """
        override = self.get_ref_override(reference_file_type)
        if override is None and not use_crds():
            if reference_file_type in self.optional_reference_types:
                return "N/A"
            raise MissingReferenceError(
                self._missing_reference_message(reference_file_type)
            )
        return super().get_reference_file(input_file, reference_file_type)

    def _missing_reference_message(self, reftype):
        name = self.name or type(self).__name__
        text = (
            f"step '{name}' ({self.class_alias}) needs a '{reftype}' reference file "
            f"and none was given (CRDS is not used). Give it with "
            f"--override_{reftype}=<path> (strun) or override_{reftype}='<path>' "
            f"(Step.call)"
        )
        if self.parent is not None:
            text += (
                f"; in a pipeline: --steps.{name}.override_{reftype}=<path> or "
                f"steps={{'{name}': {{'override_{reftype}': '<path>'}}}}"
            )
        if reftype in self.optional_reference_types:
            text += "; 'N/A' skips it"
        return text

    def finalize_result(self, model, reference_files_used):
        """Record software version and reference files in the model, without CRDS."""
        if model is None or not hasattr(model, "meta"):
            return
        meta = model.meta
        meta.calibration_software_name = "romanimpreprocess"
        meta.calibration_software_version = _installed_version("romanimpreprocess")
        if isinstance(model, dm.ImageModel):
            meta.cal_logs = self.log_records
        if reference_files_used and "ref_file" in meta:
            for reftype, path in reference_files_used:
                meta.ref_file[reftype] = str(path)
            # the installed version, without importing crds's package namespace
            # (`romanimpreprocess._startup.defer_crds_init`)
            meta.ref_file["crds"] = {
                "version": _installed_version("crds"),
                "context": "N/A",
            }

    def get_pars(self, full_spec=True):
        """Step parameters, including string ``override_*`` paths (stpipe drops them)."""
        pars = super().get_pars(full_spec)
        if not isinstance(self, Pipeline):
            for reftype in self.reference_file_types:
                value = getattr(self, f"override_{reftype}", None)
                if isinstance(value, str):
                    pars[f"override_{reftype}"] = value
        return pars

    # ------------------------------------------------- reference-only products
    def reference_work(self, model):
        """What this step computes from its reference files alone, as a function.

        A step whose heavy preparation depends only on its reference files and the
        exposure's metadata (not its pixels) overrides it: it opens the files
        (``load_reference(..., cache=False)``) and returns a function of no argument
        that computes the products and closes the files. The pipeline runs that
        function on a spare core while the ramp steps run (`start_reference_work`);
        a step run alone calls it in ``process`` (`reference_products`). None:
        nothing to compute ahead.
        """
        return

    def start_reference_work(self, model, pool):
        """Submit `reference_work` to the executor ``pool`` (the pipeline's)."""
        self._reference_files_used = []
        work = self.reference_work(model)
        if work is not None:
            self._reference_future = pool.submit(_on_one_thread, work)
            # stpipe's run starts a new list; `reference_products` puts them back.
            self._prepared_references = list(self._reference_files_used)

    def reference_products(self, model):
        """The products of `reference_work`: submitted ahead, or computed now."""
        future = self.__dict__.pop("_reference_future", None)
        if future is None:
            work = self.reference_work(model)
            return None if work is None else work()
        self._reference_files_used += self.__dict__.pop("_prepared_references", [])
        return future.result()

    def drop_reference_work(self):
        """Forget work submitted and not taken (a run that stopped early)."""
        future = self.__dict__.pop("_reference_future", None)
        self.__dict__.pop("_prepared_references", None)
        if future is not None:
            future.cancel()

    # ------------------------------------------------------------------ bands
    def band_plan(self, model):
        """This step's work as a `romanimpreprocess.stpipe.bands.BandPlan`.

        Ramp steps that can run on row bands override it; None = cannot.
        """
        return

    def run_planned(self, model, plan):
        """``run`` a step whose ``plan`` was already applied to every band.

        stpipe's ``run`` (logging, skip, meta) calls ``process``, which then only
        finishes the plan (`process_bands`).
        """
        self._applied_plan = plan
        # The reference files the preparation opened: stpipe's run starts a new
        # list (for meta.ref_file); `process_bands` puts them back.
        self._planned_references = list(self._reference_files_used)
        try:
            return self.run(model)
        finally:
            self.__dict__.pop("_applied_plan", None)
            self.__dict__.pop("_planned_references", None)

    def process_bands(self, dataset):
        """``process`` of a ramp step: prepare, apply to the whole frame, finish.

        In the pipeline's row-band path the plan was applied band by band
        (`run_planned`): only its finish is left.
        """
        model = self.open_ramp(dataset)
        plan = self.__dict__.pop("_applied_plan", None)
        self._reference_files_used += self.__dict__.pop("_planned_references", [])
        if plan is None:
            plan = self.band_plan(model)
            plan.apply(Band.whole(model))
        return plan.finish(model)

    # ------------------------------------------------------------ model helpers
    def open_model(self, dataset, *, checksums=None):
        """Open ``dataset`` (path or model); an L1 file is validated first.

        ``checksums`` (`romanimpreprocess.datamodels.l1.ChecksumsAhead` of this
        path): an L1's block checksums are being computed for the caller, who checks
        them before working on the data (`open_l1`).
        """
        if isinstance(dataset, str | os.PathLike):
            path = os.fspath(self.make_input_path(os.fspath(dataset)))
            import roman_datamodels as rdm

            with large_reads():
                try:
                    model = rdm.open(path, lazy_load=True, memmap=True)
                except Exception:
                    # Let open_l1 produce the clear error naming the file.
                    return open_l1(path)
                if isinstance(model, dm.ScienceRawModel):
                    return open_l1(path, model, checksums=checksums)
            return model
        return dataset

    def open_ramp(self, dataset):
        """Open ``dataset`` as a float32 `RampModel` (L1 decoded once)."""
        model = self.open_model(dataset)
        if isinstance(model, dm.ScienceRawModel):
            validate_l1(model)
            model = raw_to_ramp(model)
        if not isinstance(model, dm.RampModel):
            if isinstance(dataset, str | os.PathLike):
                name = os.fspath(dataset)
            else:
                name = getattr(getattr(model, "meta", None), "filename", "the input")
            kind = type(model).__name__
            hint = " (an L2 product?)" if kind == "ImageModel" else ""
            raise InputFileError(
                name,
                f"is a {kind}{hint}; step '{self.name}' works on ramps: an L1 "
                f"exposure (ScienceRawModel) or a RampModel",
            )
        return model

    def _root(self):
        step = self
        while step.parent is not None:
            step = step.parent
        return step

    def load_reference(self, model, reftype, fields=None, cache=True):
        """Open the ``reftype`` reference for ``model``, or None if N/A or skipped.

        The file is validated against the model's geometry for ``fields`` (default:
        every field of the reftype) and cached on the outermost step for the run, so
        a file used by several steps is opened once. With ``cache=False`` it is
        opened apart from the cache (`close_references` leaves it open) and the
        caller closes it.
        """
        path = self.get_reference_file(model, reftype)
        if path in ("N/A", "", None):
            log.info("%s reference file: N/A, not used by step %s", reftype, self.name)
            return None
        if not isinstance(path, str):
            raise TypeError(
                f"override_{reftype}: an in-memory model is not supported; give a path"
            )
        geometry = Geometry.from_model(model)
        root = self._root()
        cached = root.__dict__.setdefault("_rip_reference_cache", {})
        key = (reftype, abspath(path), geometry, tuple(fields) if fields else None)
        ref = cached.get(key) if cache else None
        if ref is None:
            ref = open_reference(
                reftype,
                path,
                geometry=geometry,
                fields=fields,
                exposure=ExposureInfo.from_model(model),
            )
            if cache:
                cached[key] = ref
        log.info("Using %s reference file: %s", reftype.upper(), ref.path)
        return ref

    def close_references(self):
        """Close the reference files cached during this run."""
        cache = self.__dict__.pop("_rip_reference_cache", {})
        for ref in cache.values():
            ref.close()

    def record_cal_step(self, model, status):
        """Set ``meta.cal_step[cal_step_key]`` (COMPLETE, SKIPPED, INCOMPLETE, FAILED)."""
        if status not in ("COMPLETE", "SKIPPED", "INCOMPLETE", "FAILED", "N/A"):
            raise ValueError(f"invalid cal_step status {status!r}")
        meta = getattr(model, "meta", None)
        if meta is not None and "cal_step" in meta and self.cal_step_key:
            meta.cal_step[self.cal_step_key] = status

    def skip_model(self, model, reason):
        """Log why the step is skipped, record SKIPPED and return ``model``."""
        log.warning("Step %s skipped: %s", self.name, reason)
        self.record_cal_step(model, "SKIPPED")
        return model

    @staticmethod
    def processinfo(model):
        """The legacy ``processinfo`` dict carried by ``model`` (created on demand)."""
        if "processinfo" not in model:
            model["processinfo"] = {}
        return model["processinfo"]

    # -------------------------------------------------------------------- output
    @staticmethod
    def _make_output_path(step, basepath=None, ext=None, suffix=None, **components):
        """stpipe's naming, except that an explicit ``output_file`` is used as given."""
        explicit = step.search_attr("output_file")
        if (
            explicit
            and (basepath is None or basepath == explicit)
            and not any(v is not None for v in components.values())
        ):
            directory, name = split(os.path.expanduser(explicit))
            if not directory:
                directory = step.search_attr("output_dir", default="") or ""
            return join(os.path.expandvars(os.path.expanduser(directory)), name)
        return RomanStep._make_output_path(
            step, basepath=basepath, ext=ext, suffix=suffix, **components
        )

    def save_model(
        self, model, suffix=None, idx=None, output_file=None, force=False, **components
    ):
        """Save like stpipe, but atomically (`atomic_save`)."""
        if not isinstance(model, dm.DataModel):
            return super().save_model(
                model,
                suffix=suffix,
                idx=idx,
                output_file=output_file,
                force=force,
                **components,
            )
        if output_file is None or output_file == "":
            output_file = self.output_file
        if not force and not self.save_results and not output_file:
            return None
        if self.output_use_model or (
            output_file is None and not self.search_output_file
        ):
            output_file = model.meta.filename
            idx = None
        path = self.make_output_path(
            basepath=output_file, suffix=suffix, idx=idx, **components
        )
        self._refuse_overwriting_an_input(path)
        path = self._write(model, path)
        log.info("Saved model in %s", path)
        return path

    def _refuse_overwriting_an_input(self, path):
        """Raise ValueError if ``path`` is this run's input or one of its references."""
        inputs = {"the input": self.search_attr("_input_filename")}
        for reftype in self.reference_file_types:
            inputs[f"override_{reftype}"] = self.get_ref_override(reftype)
        inputs = {
            what: source
            for what, source in inputs.items()
            if isinstance(source, str) and source not in ("", "N/A")
        }
        problems = overwrite_problems({"output_file": path}, inputs)
        if problems:
            raise ValueError(problems[0])

    def _write(self, model, path):
        """Write ``model`` to ``path`` atomically; return the absolute path."""
        return atomic_save(model, path, writer=self.output_writer())

    def output_writer(self):
        """Function ``writer(model, path)`` used by `save_model`; None = model.save."""
        return


class RipPipeline(RomanPipeline, RipStep):
    """Base class of our pipelines (offline reference handling, see `RipStep`)."""

    def _precache_references(self, input_file):
        """Check that every string override opens; never call CRDS."""
        from stpipe import crds_client

        for reftype in self.reference_file_types:
            override = self.get_ref_override(reftype)
            if isinstance(override, str) and override not in ("", "N/A"):
                crds_client.check_reference_open(override)

    def get_pars(self, full_spec=True):
        """Pipeline parameters with each child's (override-preserving) parameters."""
        return Pipeline.get_pars(self, full_spec)


def _on_one_thread(work):
    """``work()`` with one thread for its compiled kernels and thread pools."""
    from romanimpreprocess.parallel import threads_of_this_thread

    with threads_of_this_thread(1):
        return work()
