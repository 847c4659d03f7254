"""``rip-batch``: run many exposures through the L1 -> L2 pipeline on dask.

Exit code: 0 when every exposure is done or skipped, 1 when at least one failed,
2 for a bad command line (nothing was run).
"""

import argparse
import contextlib
import importlib
import logging
import os
import sys

from romanimpreprocess.batch.exposures import (
    BatchInputError,
    exposures_from_configs,
    exposures_from_l1,
)
from romanimpreprocess.batch.outputs import output_problem
from romanimpreprocess.batch.resources import (
    estimate_exposure_memory,
    format_bytes,
    parse_bytes,
    plan_local_cluster,
)
from romanimpreprocess.batch.runner import (
    estimate_batch_memory,
    format_table,
    run_batch,
)

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  rip-batch cfg/*.yaml                      legacy YAML configs, each to its own OUT
  rip-batch cfg/                            every *.yaml/*.yml in cfg/
  rip-batch --params l1_to_l2.asdf --output-dir out/ data/*_uncal.asdf
  rip-batch --scheduler tcp://10.0.0.5:8786 cfg/*.yaml      an existing cluster
  rip-batch --workers 2 --memory-per-exposure 3GB cfg/      size the local cluster

A rerun skips exposures whose output is complete (docs/batch.rst, "Resume");
--overwrite redoes them. Each exposure logs to <output stem>.log.
"""


def build_parser():
    """The argument parser of ``rip-batch``."""
    p = argparse.ArgumentParser(
        prog="rip-batch",
        description=(
            "Run many Roman WFI exposures L1 -> L2 on dask.distributed: a "
            "LocalCluster sized to this machine by default, or an existing "
            "scheduler (dask-jobqueue SLURM/PBS clusters, dask-mpi)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="legacy YAML configs (files, directories, glob patterns); with "
        "--params: L1 ASDF files (files, directories, glob patterns)",
    )
    p.add_argument(
        "--params",
        metavar="PARAMS.asdf",
        help="ASDF pipeline parameter file applied to every L1 input",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="output directory (required with --params: <stem>_cal.asdf; with "
        "YAML configs: replaces the directory of each OUT)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running dask scheduler (e.g. tcp://host:8786)",
    )
    where.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="scheduler file of a running dask cluster (dask-mpi, dask scheduler "
        "--scheduler-file)",
    )
    where.add_argument(
        "--serial",
        action="store_true",
        help="no dask: run the exposures one after the other in this process",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="LocalCluster workers (default: as many as fit in cores and memory)",
    )
    p.add_argument(
        "--memory-per-exposure",
        metavar="SIZE",
        help="peak memory of one exposure, e.g. 3GB (default: estimated from the "
        "input shape)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo exposures whose output is already complete",
    )
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        help="directory of the per-exposure logs (default: next to each output)",
    )
    p.add_argument(
        "--report",
        metavar="FILE.json",
        help="also write the results (status, wall time, error, log) as JSON",
    )
    p.add_argument(
        "--dashboard",
        metavar="ADDRESS",
        help="serve the LocalCluster's dask dashboard here, e.g. :8787 (default: none)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress display on stderr"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the exposures, what would run or be skipped, and the cluster "
        "size; run nothing",
    )
    p.add_argument(
        "--runner",
        metavar="MODULE:FUNCTION",
        help=argparse.SUPPRESS,  # a stand-in for the pipeline (tests, experiments)
    )
    return p


def _load_runner(spec):
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not name:
        raise BatchInputError(f"--runner {spec!r}: expected MODULE:FUNCTION")
    return getattr(importlib.import_module(module), name)


def _redirect_outputs(exposures, output_dir):
    output_dir = os.path.abspath(output_dir)
    for exp in exposures:
        if exp.config is not None:
            exp.output = os.path.join(output_dir, os.path.basename(exp.output))


def _dry_run(exposures, args, per_exposure):
    rows = []
    to_run = 0
    for exp in exposures:
        if exp.error:
            action = f"cannot run: {exp.error}"
        elif args.overwrite:
            action = "run (overwrite)"
            to_run += 1
        else:
            problem = output_problem(exp.output, exp.input)
            action = "skip (output complete)" if problem is None else f"run ({problem})"
            to_run += problem is not None
        rows.append(f"{exp.name}: {action}\n    {exp.source} -> {exp.output}")
    print("\n".join(rows))
    if args.scheduler or args.scheduler_file:
        print(f"{to_run} to run on the scheduler given")
    elif args.serial:
        print(f"{to_run} to run in this process")
    else:
        plan = plan_local_cluster(per_exposure, to_run, workers=args.workers)
        print(
            f"{to_run} to run on a LocalCluster of {plan.n_workers} worker(s) × 1 "
            f"thread, {format_bytes(plan.memory_limit)} each; per exposure "
            f"{format_bytes(per_exposure)} ({plan.reason})"
        )


def main(argv=None):
    """Entry point of ``rip-batch``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    # dask's own INFO chatter (scheduler/nanny start and stop) is not for users here;
    # importing distributed sets its logger levels, so import it first.
    with contextlib.suppress(ImportError):
        import distributed  # noqa: F401
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        if args.params:
            if not args.output_dir:
                parser.error("--params needs --output-dir")
            exposures = exposures_from_l1(args.inputs, args.params, args.output_dir)
        else:
            exposures = exposures_from_configs(args.inputs)
            if args.output_dir:
                _redirect_outputs(exposures, args.output_dir)
        runner = _load_runner(args.runner)
        per_exposure = (
            parse_bytes(args.memory_per_exposure) if args.memory_per_exposure else None
        )
        if args.workers is not None and args.workers < 1:
            raise BatchInputError("--workers must be at least 1")
    except (BatchInputError, ValueError, ImportError, AttributeError) as exc:
        print(f"rip-batch: error: {exc}", file=sys.stderr)
        return 2

    if args.dry_run:
        if per_exposure is None:
            per_exposure = estimate_batch_memory(exposures) or estimate_exposure_memory(
                (6, 4096, 4096)
            )
        _dry_run(exposures, args, per_exposure)
        return 0

    report = run_batch(
        exposures,
        runner=runner,
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
        serial=args.serial,
        workers=args.workers,
        memory_per_exposure=per_exposure,
        overwrite=args.overwrite,
        log_dir=args.log_dir,
        dashboard=args.dashboard,
        progress=not args.no_progress,
    )
    print(format_table(report.results))
    print(report.summary())
    failed = [r for r in report.results if r["status"] == "failed" and r.get("log")]
    if failed:
        print("logs of the failed exposures:")
        for r in failed:
            print(f"  {r['name']}: {r['log']}")
    if args.report:
        report.to_json(args.report)
    return report.exit_code


if __name__ == "__main__":
    from romanimpreprocess._startup import start_cli

    start_cli()
    sys.exit(main())
