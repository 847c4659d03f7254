"""Run many exposures on dask.distributed: one task per exposure, results as a table.

`run_batch` submits `task.process_exposure` once per exposure to

- an existing ``distributed.Client`` (``client=``), or
- a running scheduler (``scheduler="tcp://host:8786"`` or ``scheduler_file=``), e.g.
  one made by dask-jobqueue's ``SLURMCluster``/``PBSCluster`` or ``dask-mpi``, or
- a `distributed.LocalCluster` it makes and closes itself: processes (one thread
  each), as many as fit in the cores and in memory (`resources.plan_local_cluster`), or
- no dask at all (``serial=True``): the exposures run one after the other in this
  process (debugging, or a single SLURM array task).

Only the plain task dict of each exposure is sent; each task returns a plain result
dict. A failure stays with its exposure; a worker that dies (killed, out of memory)
fails that exposure and dask restarts the worker.
"""

import dataclasses
import json
import logging
import os
import sys
import time
import uuid

from romanimpreprocess.batch.resources import (
    estimate_exposure_memory,
    format_bytes,
    input_shape,
    plan_local_cluster,
)
from romanimpreprocess.batch.task import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_SKIPPED,
    log_path_for,
    one_line,
    process_exposure,
)

__all__ = [
    "BatchReport",
    "TextProgress",
    "estimate_batch_memory",
    "format_table",
    "run_batch",
]

log = logging.getLogger(__name__)

# How many of the largest inputs are opened to estimate the per-exposure memory.
N_SHAPE_SAMPLES = 4
# A task whose worker dies is tried on this many workers in total before it is
# reported (dask's default of 3 retries lets one bad exposure kill 4 workers).
ALLOWED_FAILURES = 1
# One thread per worker process: numeric libraries must not start their own pools
# (dask's nanny already sets OMP/MKL/OPENBLAS; numba reads its own variable).
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    # the workers are ours: the process-level savings of our command lines apply
    # (romanimpreprocess._startup); workers of a cluster we are given are left alone
    "RIP_PROCESS_TWEAKS": "1",
}


def _worker_task(task, runner):
    """`process_exposure` on a dask worker, its process set up first if it is ours."""
    from romanimpreprocess._startup import start_worker

    start_worker()
    return process_exposure(task, runner)


@dataclasses.dataclass
class BatchReport:
    """Results of a batch, in the order of the exposures."""

    results: list
    wall_time: float
    n_workers: int | None
    cluster: str
    per_exposure_memory: int | None = None

    def count(self, status):
        """Number of results with ``status``."""
        return sum(1 for r in self.results if r["status"] == status)

    @property
    def exit_code(self):
        """0 when no exposure failed, else 1."""
        return 1 if self.count(STATUS_FAILED) else 0

    def summary(self):
        """One line: counts, wall time, cluster."""
        return (
            f"{len(self.results)} exposure(s): {self.count(STATUS_DONE)} done, "
            f"{self.count(STATUS_SKIPPED)} skipped, {self.count(STATUS_FAILED)} failed "
            f"in {self.wall_time:.1f} s on {self.cluster}"
        )

    def to_json(self, path):
        """Write the results and the summary as JSON."""
        doc = {
            "summary": self.summary(),
            "wall_time": self.wall_time,
            "n_workers": self.n_workers,
            "cluster": self.cluster,
            "per_exposure_memory": self.per_exposure_memory,
            "results": self.results,
        }
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)


class TextProgress:
    """A dependency-free progress display on ``stream``.

    On a terminal one line is redrawn (bar, counts, elapsed time); otherwise (a log
    file, a SLURM output) one line is printed per finished exposure.
    """

    def __init__(self, total, stream=None, enabled=True, width=30):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.width = width
        self.counts = {STATUS_DONE: 0, STATUS_SKIPPED: 0, STATUS_FAILED: 0}
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @property
    def finished(self):
        return sum(self.counts.values())

    def _bar(self):
        filled = int(self.width * self.finished / max(1, self.total))
        return "[" + "#" * filled + "." * (self.width - filled) + "]"

    def _line(self):
        elapsed = time.perf_counter() - self.start
        return (
            f"\r{self._bar()} {self.finished}/{self.total}  "
            f"done {self.counts[STATUS_DONE]}  "
            f"skipped {self.counts[STATUS_SKIPPED]}  "
            f"failed {self.counts[STATUS_FAILED]}  {elapsed:.0f} s"
        )

    def begin(self):
        """Draw the empty bar (terminal only)."""
        if self.enabled and self.tty:
            self.stream.write(self._line())
            self.stream.flush()

    def update(self, result):
        """Count one finished exposure and show it."""
        self.counts[result["status"]] = self.counts.get(result["status"], 0) + 1
        if not self.enabled:
            return
        if self.tty:
            if result["status"] == STATUS_FAILED:
                # failures scroll above the bar as they happen
                text = f"failed: {result['name']}: {_first_line(result['error'], 160)}"
                self.stream.write("\r" + text.ljust(len(self._line())) + "\n")
            self.stream.write(self._line())
            if self.finished == self.total:
                self.stream.write("\n")
        else:
            text = (
                f"[{self.finished}/{self.total}] {result['name']}: {result['status']}"
            )
            text += f" ({result['wall_time']:.1f} s)"
            if result.get("error"):
                text += f" {_first_line(result['error'], 160)}"
            self.stream.write(text + "\n")
        self.stream.flush()


def _first_line(text, limit):
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def format_table(results, error_width=120):
    """The final table: exposure, status, wall time, output, error (one line each)."""
    header = ("exposure", "status", "wall (s)", "output", "error")
    rows = [
        (
            r["name"],
            r["status"],
            f"{r['wall_time']:.1f}",
            r["output"] or "",
            _first_line(r["error"], error_width) if r.get("error") else "",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    widths[4] = len(header[4]) if not any(row[4] for row in rows) else widths[4]

    def fmt(row):
        cells = [
            str(row[0]).ljust(widths[0]),
            str(row[1]).ljust(widths[1]),
            str(row[2]).rjust(widths[2]),
            str(row[3]).ljust(widths[3]),
            str(row[4]),
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(row) for row in rows)])


def estimate_batch_memory(exposures):
    """Per-exposure peak memory (bytes) for a batch: the estimate of its largest inputs.

    The shapes of the `N_SHAPE_SAMPLES` largest input files are read (tree only, no
    arrays); the largest estimate wins. Returns None when no input can be read.
    """
    paths = {e.input for e in exposures if e.input and os.path.isfile(e.input)}
    paths = sorted(paths, key=lambda p: os.path.getsize(p), reverse=True)
    estimates = []
    for path in paths[:N_SHAPE_SAMPLES]:
        shape = input_shape(path)
        if shape is not None:
            estimates.append(estimate_exposure_memory(shape))
    return max(estimates) if estimates else None


def _failed_from_exception(task, exc, start):
    error = one_line(exc)
    name = type(exc).__name__
    if name == "KilledWorker":
        error = (
            "the worker running this exposure died (killed, out of memory, or a "
            f"crash); {error}"
        )
    return {
        "name": task["name"],
        "status": STATUS_FAILED,
        "wall_time": time.perf_counter() - start,
        "output": task["output"],
        "error": error,
        "log": task.get("log"),
        "worker": None,
        "peak_rss_mb": None,
        "cpu_user_s": None,
        "cpu_sys_s": None,
    }


def _run_serial(tasks, runner, progress):
    results = {}
    for task in tasks:
        result = process_exposure(task, runner)
        results[task["name"]] = result
        progress.update(result)
    return results


def _run_on_client(client, tasks, runner, progress):
    from distributed import as_completed

    start = time.perf_counter()
    batch_id = uuid.uuid4().hex[:8]
    futures = {}
    for task in tasks:
        future = client.submit(
            _worker_task,
            task,
            runner,
            key=f"rip-batch-{batch_id}-{task['name']}",
            pure=False,
            retries=0,
        )
        futures[future] = task
    results = {}
    try:
        for future in as_completed(list(futures)):
            task = futures[future]
            try:
                result = future.result()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                result = _failed_from_exception(task, exc, start)
            results[task["name"]] = result
            progress.update(result)
            future.release()
    except BaseException:
        client.cancel(list(futures))
        raise
    return results


# Read by glibc when a worker process starts, so set before it is spawned (dask's
# "pre-spawn" environment, not LocalCluster's ``env``, which is applied after).
# One malloc arena: the exposure runs on a dask thread, not the process's main
# thread, and a thread's own arena holds at most 64 MiB heaps, so every full-frame
# plane (64 MiB float32) of every step was a fresh mapping, given back when freed
# and faulted in again (zeroed) by the next step and the next exposure. In the
# process's main arena the planes are reused (`romanimpreprocess._memory`). A
# worker's warm exposure, one thread in a thread of its own: 6.70-7.02 -> 6.21-6.42
# s, system CPU 0.77-0.92 -> 0.42-0.56 s (bench/RESULTS.md, "Issue 23, round 10").
WORKER_PRE_SPAWN_ENV = {"MALLOC_ARENA_MAX": "1"}

# dask's own settings for the workers of rip-batch's LocalCluster when no dashboard is
# asked for. The statistical profiler wakes each worker's event loop every 10 ms to
# walk the running task's stack: 100 GIL hand-overs a second taken from the exposure,
# for a profile only the dashboard shows (about 2 % of a worker's CPU,
# bench/RESULTS.md, issue 23 round 13). With ``--dashboard`` dask's defaults stand.
WORKER_CONFIG_WITHOUT_DASHBOARD = {"distributed.worker.profile.enabled": False}


def _local_cluster(plan, dashboard=None, quiet=True):
    import dask
    from distributed import LocalCluster

    pre_spawn = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    pre_spawn.update(WORKER_PRE_SPAWN_ENV)
    # the nanny spawns through this process's environment: ours is put back after
    saved = {name: os.environ.get(name) for name in WORKER_PRE_SPAWN_ENV}
    try:
        settings = {
            "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
            "distributed.nanny.pre-spawn-environ": pre_spawn,
        }
        if dashboard is None:
            settings.update(WORKER_CONFIG_WITHOUT_DASHBOARD)
        # each nanny hands this config to its worker
        with dask.config.set(settings):
            return LocalCluster(
                n_workers=plan.n_workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=plan.memory_limit,
                dashboard_address=dashboard,
                silence_logs=logging.ERROR if quiet else logging.WARNING,
                env=dict(WORKER_ENV),
            )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_batch(
    exposures,
    *,
    runner=None,
    client=None,
    scheduler=None,
    scheduler_file=None,
    serial=False,
    workers=None,
    memory_per_exposure=None,
    overwrite=False,
    log_dir=None,
    dashboard=None,
    progress=True,
    stream=None,
):
    """Run ``exposures`` and return a `BatchReport` (module docstring for the modes).

    Parameters
    ----------
    exposures : list of Exposure
        From `exposures_from_configs` or `exposures_from_l1`.
    runner : callable or None
        ``runner(task)`` processing one exposure (default: the L1ToL2 pipeline,
        `task.run_pipeline`). Must be importable on the workers.
    client : distributed.Client or None
        Use this client (its cluster is not closed).
    scheduler, scheduler_file : str or None
        Connect to a running scheduler by address or by scheduler file.
    serial : bool
        Run in this process, one exposure after the other, without dask.
    workers : int or None
        LocalCluster workers (default: as many as fit, see
        `resources.plan_local_cluster`).
    memory_per_exposure : int or None
        Peak memory of one exposure in bytes (default: estimated from the inputs).
    overwrite : bool
        Redo exposures whose output is already complete.
    log_dir : str or None
        Directory of the per-exposure logs (default: next to each output).
    dashboard : str or None
        Address of the LocalCluster's dashboard (e.g. ``":8787"``); None = none.
    progress : bool
        Show progress on ``stream`` (default stderr).
    """
    start = time.perf_counter()
    tasks = [
        e.to_task(
            overwrite=bool(overwrite),
            log=log_path_for(e.output, log_dir) if e.output else None,
        )
        for e in exposures
    ]
    bar = TextProgress(len(tasks), stream=stream, enabled=progress)
    bar.begin()
    # Exposures that cannot run (unreadable config) are reported without a worker.
    results = {}
    runnable = []
    for task in tasks:
        if task.get("error"):
            result = process_exposure(task, runner)
            results[task["name"]] = result
            bar.update(result)
        else:
            runnable.append(task)

    per_exposure = None
    n_workers = None
    cluster_text = "none"
    if runnable:
        if serial:
            cluster_text = "one process (serial)"
            n_workers = 1
            results.update(_run_serial(runnable, runner, bar))
        elif client is not None or scheduler or scheduler_file:
            from distributed import Client

            own = client is None
            if own:
                client = (
                    Client(scheduler_file=scheduler_file)
                    if scheduler_file
                    else Client(scheduler)
                )
            try:
                n_workers = len(client.scheduler_info().get("workers", {}))
                cluster_text = f"scheduler {client.scheduler.address}"
                results.update(_run_on_client(client, runnable, runner, bar))
            finally:
                if own:
                    client.close()
        else:
            from distributed import Client

            per_exposure = memory_per_exposure or estimate_batch_memory(exposures)
            if per_exposure is None:
                per_exposure = estimate_exposure_memory((6, 4096, 4096))
            plan = plan_local_cluster(per_exposure, len(runnable), workers=workers)
            n_workers = plan.n_workers
            cluster_text = (
                f"LocalCluster of {plan.n_workers} worker(s) × 1 thread, "
                f"{format_bytes(plan.memory_limit)} each "
                f"(per exposure {format_bytes(per_exposure)})"
            )
            log.info("Starting %s", cluster_text)
            with (
                _local_cluster(plan, dashboard) as cluster,
                Client(cluster) as own_client,
            ):
                results.update(_run_on_client(own_client, runnable, runner, bar))
    ordered = [results[t["name"]] for t in tasks]
    return BatchReport(
        results=ordered,
        wall_time=time.perf_counter() - start,
        n_workers=n_workers,
        cluster=cluster_text,
        per_exposure_memory=per_exposure,
    )
