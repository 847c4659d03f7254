"""What runs on a worker: one exposure, from paths and plain parameters to a result.

`process_exposure` is the dask task. It receives the plain dict of
`Exposure.to_task` and returns a plain dict (`RESULT_FIELDS`); nothing else crosses
the wire. The pipeline is built and the model opened on the worker. Around the actual
work (`run_pipeline`, or any *runner* with the same signature) it

- skips the exposure when its output is already complete (`outputs.output_problem`)
  unless ``overwrite`` is set;
- removes the leftovers of an earlier killed write of the same output;
- sends the log records of this exposure (romanimpreprocess, stpipe, romancal, stcal,
  roman_datamodels, CRDS, Python warnings) to one file per exposure, ``<output stem>.log``
  by default, so the logs of concurrent exposures never interleave;
- turns any exception **and** ``SystemExit`` into a ``failed`` result with the message
  (a ``SystemExit`` that escaped a task would kill the dask worker);
- checks that the output it was asked for now exists and is complete;
- measures the wall time and the peak resident memory of the task.
"""

import contextlib
import logging
import os
import socket
import time
import traceback
import warnings

from romanimpreprocess.batch.outputs import output_problem, remove_stale_temp_dirs

__all__ = [
    "RESULT_FIELDS",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_SKIPPED",
    "log_path_for",
    "one_line",
    "process_exposure",
    "run_pipeline",
]

log = logging.getLogger(__name__)

STATUS_DONE = "done"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
RESULT_FIELDS = (
    "name",
    "status",
    "wall_time",
    "output",
    "error",
    "log",
    "worker",
    "peak_rss_mb",
    "cpu_user_s",
    "cpu_sys_s",
)
# Loggers whose records go to the per-exposure log (RipStep.get_stpipe_loggers()).
LOGGERS = (
    "romanimpreprocess",
    "romancal",
    "stcal",
    "roman_datamodels",
    "stpipe",
    "tweakwcs",
    "py.warnings",
    "CRDS",
)
LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def log_path_for(output, log_dir=None):
    """Per-exposure log file: ``<output without .asdf>.log`` (in ``log_dir`` if set)."""
    stem = os.path.splitext(os.path.basename(output))[0]
    directory = log_dir or os.path.dirname(os.path.abspath(output))
    return os.path.join(directory, stem + ".log")


# ---------------------------------------------------------------- the real runner
def run_pipeline(task):
    """Run `L1ToL2Pipeline` for one exposure; the output lands at ``task["output"]``.

    ``kind == "legacy"``: the legacy config dict goes through
    `L1ToL2Pipeline.from_legacy_config`, exactly as ``gen_cal_image`` does (the output
    is ``task["output"]``, which ``--output-dir`` may have moved). ``kind == "params"``: the L1 file is run
    with the ASDF parameter file. Logging is left to the caller
    (``configure_log=False``).
    """
    from romanimpreprocess.pipeline import L1ToL2Pipeline

    # One exposure per single-threaded worker: steps that can use threads (IPC)
    # must not oversubscribe the cores the other workers use.
    os.environ.setdefault("RIP_THREADS", "1")
    if task["kind"] == "legacy":
        pipeline, input_path = L1ToL2Pipeline.from_legacy_config(
            task["config"],
            source=task.get("source") or None,
            base_dir=task.get("cwd") or None,
            output_file=task["output"],
        )
        return pipeline.run(input_path)
    if task["kind"] == "params":
        return L1ToL2Pipeline.call(
            task["input"],
            config_file=task["params"],
            output_file=task["output"],
            save_results=True,
            configure_log=False,
        )
    raise ValueError(f"unknown exposure kind {task['kind']!r}")


# ---------------------------------------------------------------- helpers
def _reset_peak_rss():
    """Reset the kernel's peak-RSS counter of this process (Linux); False if not."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_times():
    """(user, system) CPU seconds of this process so far, or None if unknown."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _peak_rss_mb():
    """Peak resident memory of this process in MiB (since the last reset on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:
        return None


@contextlib.contextmanager
def _exposure_logging(log_file, level=logging.INFO):
    """Send the records of `LOGGERS` to ``log_file`` for the duration of the block.

    Yields the file path, or None if it could not be opened (the task still runs).
    The loggers' levels, ``propagate`` flags and warning capture are restored after.
    """
    handler = None
    if log_file:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
            handler = logging.FileHandler(log_file, mode="w", delay=False)
        except OSError:
            handler = None
    if handler is None:
        yield None
        return
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(level)
        # Records stop here: a worker's own stderr handlers (dask's) stay quiet.
        logger.propagate = False
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield log_file
    finally:
        logging.captureWarnings(False)
        for logger, lvl, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(lvl)
            logger.propagate = propagate
        handler.close()


@contextlib.contextmanager
def _working_directory(path):
    """Run in ``path`` (where relative paths of a legacy config resolve)."""
    if not path or not os.path.isdir(path) or path == os.getcwd():
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def one_line(exc):
    """``Type: message`` of an exception, on one line."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) raised while processing (sys.exit called)"
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


# ---------------------------------------------------------------- the task
def process_exposure(task, runner=None):
    """Process one exposure; the dask task (module docstring).

    Parameters
    ----------
    task : dict
        `Exposure.to_task` plus ``overwrite`` (bool) and ``log`` (path or None).
    runner : callable or None
        ``runner(task)`` does the work and writes ``task["output"]``; default
        `run_pipeline`. Tests inject a stand-in here.

    Returns
    -------
    dict
        `RESULT_FIELDS`: ``status`` is ``"done"``, ``"skipped"`` (output already
        complete) or ``"failed"`` (``error`` holds the one-line message; the
        traceback is in the log file).
    """
    runner = runner or run_pipeline
    start = time.perf_counter()
    output = task.get("output", "")
    result = {
        "name": task.get("name", output),
        "status": STATUS_FAILED,
        "wall_time": 0.0,
        "output": output,
        "error": None,
        "log": None,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "peak_rss_mb": None,
        "cpu_user_s": None,
        "cpu_sys_s": None,
    }
    cpu_start = _cpu_times()

    def finish(status, error=None):
        result["status"] = status
        result["error"] = error
        result["wall_time"] = time.perf_counter() - start
        # CPU of the worker process during the task (its one task thread and any
        # library threads): against wall_time it tells computing from waiting, and
        # tasks of 1 and 2 workers compared tell contention for the cores' shared
        # resources from overhead (bench/bench_batch.py)
        if cpu_start is not None:
            user, system = _cpu_times()
            result["cpu_user_s"] = user - cpu_start[0]
            result["cpu_sys_s"] = system - cpu_start[1]
        return result

    if task.get("error"):
        return finish(STATUS_FAILED, task["error"])
    if not task.get("overwrite", False):
        try:
            problem = output_problem(output, task.get("input"))
        except Exception as exc:  # the check itself must never break the batch
            problem = one_line(exc)
        if problem is None:
            return finish(STATUS_SKIPPED)

    log_file = task.get("log") or log_path_for(output)
    measured = _reset_peak_rss()
    with _exposure_logging(log_file) as used_log, _working_directory(task.get("cwd")):
        result["log"] = used_log
        try:
            log.info(
                "rip-batch: exposure %s (%s) on %s",
                result["name"],
                task.get("source"),
                result["worker"],
            )
            remove_stale_temp_dirs(output)
            runner(task)
            problem = output_problem(output, task.get("input"))
            if problem is not None:
                raise RuntimeError(f"the run ended but {problem}: {output}")
            status, error = STATUS_DONE, None
            log.info(
                "rip-batch: exposure %s done in %.1f s",
                result["name"],
                time.perf_counter() - start,
            )
        except (Exception, SystemExit) as exc:
            status, error = STATUS_FAILED, one_line(exc)
            log.error(
                "rip-batch: exposure %s failed: %s\n%s",
                result["name"],
                error,
                traceback.format_exc(),
            )
    if measured:
        result["peak_rss_mb"] = _peak_rss_mb()
    return finish(status, error)
