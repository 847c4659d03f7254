"""Batch throughput: N exposures through ``rip-batch``'s runner with 1 vs 2 workers.

One simulated exposure and its calibration set are written once (``rip-simulate``'s
Python API); the batch is N copies of the L1 file (``exp<i>_uncal.asdf``), one legacy
YAML each, all sharing the calibration set as exposures of one SCA do. For each worker
count a ``LocalCluster`` is started (timed separately), the N exposures run with
``--overwrite`` semantics, and the wall time from submission to the last result gives
the throughput. With ``--repeat R`` the worker counts alternate R times and the
speed-up of each round and their median are reported (on a shared virtual machine one
round's speed-up moved between 1.41× and 1.87× within 10 minutes). The per-exposure peak RSS measured in the workers is compared with the
estimate of ``romanimpreprocess.batch.resources``.

A second measurement answers whether a per-worker cache of reference files would pay:
two exposures run one after the other in this process with the reference reader timed
(opening + validating + reading the arrays used); the time of the second exposure's
reference reading is what a cache could save.

Results go to ``bench/RESULTS.md`` between the ``bench_batch`` markers (section
"Batch throughput"; the rest of the file is left alone) and to
``bench/out/batch/results.json``.

Usage::

    python bench/bench_batch.py                     # 8 exposures of 1024^2, 1 and 2 workers
    python bench/bench_batch.py --size 512 --n 8
    python bench/bench_batch.py --size 128 --n 4 --no-write    # smoke test
    python bench/bench_batch.py --size 4096 --n 4 --repeat 3 --no-reference-timing
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
MARK_BEGIN = "<!-- bench_batch:begin -->"
MARK_END = "<!-- bench_batch:end -->"


def simulate(work, size, seed):
    """One simulated set; returns its legacy config dict (reused if present)."""
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    sim = work / f"sim{size}"
    cfgs = sorted(sim.glob("*.yaml")) if sim.exists() else []
    if not cfgs:
        sim.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths = write_simulation(str(sim), SimulationConfig(size=size, seed=seed))
        print(f"simulated {size}^2 in {time.perf_counter() - t0:.1f} s", flush=True)
        cfg_path = Path(paths.config_yaml)
    else:
        cfg_path = cfgs[0]
    with open(cfg_path) as f:
        return yaml.safe_load(f)


def make_batch(work, config, n, tag):
    """N copies of the L1 input, one YAML each; returns the YAML paths."""
    l1_dir = work / "l1"
    l1_dir.mkdir(parents=True, exist_ok=True)
    cfg_dir = work / f"cfg_{tag}"
    if cfg_dir.exists():
        shutil.rmtree(cfg_dir)
    cfg_dir.mkdir()
    out_dir = work / f"out_{tag}"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    paths = []
    for i in range(n):
        l1 = l1_dir / f"exp{i}_uncal.asdf"
        if not l1.exists():
            shutil.copyfile(config["IN"], l1)
        cfg = dict(config)
        cfg["IN"] = str(l1)
        cfg["OUT"] = str(out_dir / f"exp{i}_cal.asdf")
        path = cfg_dir / f"exp{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(str(path))
    return paths


_FILLED = set()  # warm caches filled by this invocation


def product_cache(work, state, config):
    """Point the runs' product cache (``RIP_PRODUCT_CACHE``) at the state asked for.

    ``cold``: an empty directory, as for the first batch on a calibration set (each
    worker's first exposure computes the dark and flat products). ``warm``: the
    products of this calibration set already stored, as for every later batch and
    one-exposure run on it: one untimed exposure per invocation stores them (entries
    left by an earlier invocation may be of another version of the code, which
    computes again).
    """
    directory = work / f"product_cache_{state}"
    if state == "cold":
        shutil.rmtree(directory, ignore_errors=True)
    os.environ["RIP_PRODUCT_CACHE"] = str(directory)
    if state == "warm" and directory not in _FILLED:
        _FILLED.add(directory)
        from romanimpreprocess.batch import exposures_from_configs, run_batch

        exposures = exposures_from_configs(make_batch(work, config, 1, "fill"))
        t0 = time.perf_counter()
        report = run_batch(exposures, serial=True, overwrite=True, progress=False)
        print(
            f"product cache filled by one exposure ({report.results[0]['status']}, "
            f"{time.perf_counter() - t0:.1f} s)",
            flush=True,
        )


def run_workers(work, config, n, workers, cache_state="warm"):
    """Run the batch on a LocalCluster of ``workers``; return the measurements."""
    from distributed import Client

    from romanimpreprocess.batch import exposures_from_configs, run_batch
    from romanimpreprocess.batch.resources import plan_local_cluster
    from romanimpreprocess.batch.runner import _local_cluster, estimate_batch_memory

    product_cache(work, cache_state, config)  # the workers inherit the environment
    exposures = exposures_from_configs(make_batch(work, config, n, f"w{workers}"))
    per_exposure = estimate_batch_memory(exposures)
    plan = plan_local_cluster(per_exposure, n, workers=workers)
    # The products of the run before (another worker count) are written to disk
    # now, not by the kernel while this one runs (run_all.fresh_outputs).
    os.sync()
    t0 = time.perf_counter()
    with _local_cluster(plan) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = run_batch(exposures, client=client, overwrite=True, progress=False)
        wall = time.perf_counter() - t1
    statuses = [r["status"] for r in report.results]
    failed = [r for r in report.results if r["status"] != "done"]
    for r in failed:
        print(f"  {r['name']}: {r['status']} {r['error']}", flush=True)
    task_walls = [r["wall_time"] for r in report.results]
    rss = [r["peak_rss_mb"] for r in report.results if r["peak_rss_mb"]]
    user = [r["cpu_user_s"] for r in report.results if r["cpu_user_s"] is not None]
    system = [r["cpu_sys_s"] for r in report.results if r["cpu_sys_s"] is not None]
    return {
        "workers": workers,
        "exposures": n,
        "product_cache": cache_state,
        "cluster_startup_s": round(startup, 2),
        "wall_s": round(wall, 2),
        "throughput_per_min": round(60 * n / wall, 2),
        "task_wall_median_s": round(statistics.median(task_walls), 2),
        "task_wall_max_s": round(max(task_walls), 2),
        "task_wall_sum_s": round(sum(task_walls), 2),
        "task_user_median_s": round(statistics.median(user), 2) if user else None,
        "task_sys_median_s": round(statistics.median(system), 2) if system else None,
        "peak_rss_mb_max": round(max(rss), 1) if rss else None,
        "estimate_mb": round(per_exposure / 2**20, 1),
        "statuses": {s: statuses.count(s) for s in set(statuses)},
        # each exposure, in submission order: which worker, its wall and CPU times
        "tasks": [
            {
                "name": r["name"],
                "worker": r["worker"],
                "wall_s": r["wall_time"],
                "user_s": r["cpu_user_s"],
                "sys_s": r["cpu_sys_s"],
                "peak_rss_mb": r["peak_rss_mb"],
            }
            for r in report.results
        ],
    }


def reference_timing(work, config):
    """Time spent in the reference reader for two exposures run in this process."""
    from romanimpreprocess.batch import exposures_from_configs, run_batch
    from romanimpreprocess.datamodels import reference

    spent = {"open": 0.0, "read": 0.0}
    cls = reference.ReferenceFile
    orig_init, orig_getattr = cls.__init__, cls.__getattr__

    def timed_init(self, *a, **k):
        t = time.perf_counter()
        try:
            return orig_init(self, *a, **k)
        finally:
            spent["open"] += time.perf_counter() - t

    def timed_getattr(self, name):
        t = time.perf_counter()
        try:
            return orig_getattr(self, name)
        finally:
            spent["read"] += time.perf_counter() - t

    exposures = exposures_from_configs(make_batch(work, config, 2, "reftime"))
    rows = []
    cls.__init__, cls.__getattr__ = timed_init, timed_getattr
    try:
        for exp in exposures:
            spent.update(open=0.0, read=0.0)
            t = time.perf_counter()
            report = run_batch([exp], serial=True, overwrite=True, progress=False)
            total = time.perf_counter() - t
            rows.append(
                {
                    "exposure": exp.name,
                    "status": report.results[0]["status"],
                    "total_s": round(total, 2),
                    "ref_open_s": round(spent["open"], 3),
                    "ref_read_s": round(spent["read"], 3),
                }
            )
    finally:
        cls.__init__, cls.__getattr__ = orig_init, orig_getattr
    return rows


def reader_timing(work, size, nres=6):
    """Reference reading cost, uncompressed (memory-mapped) vs lz4, cold vs warm.

    Writes one synthetic legacy-layout file per reftype a run reads (random values),
    then opens + validates them and touches every page of every array twice. The
    second pass is what a per-worker cache would save for the next exposure of the
    same SCA. The files are removed afterwards.
    """
    import asdf
    import numpy as np

    from romanimpreprocess.datamodels import Geometry, open_reference

    rng = np.random.default_rng(0)

    def f32(*shape):
        return rng.random(shape, dtype=np.float32) + 0.5

    n, s = size, size - 8
    spec = {
        "mask": {"dq": np.zeros((n, n), np.uint32)},
        "saturation": {"data": f32(n, n) * 6e4},
        "dark": {"data": f32(nres, n, n), "dark_slope": f32(n, n)},
        "gain": {"data": f32(n, n)},
        "readnoise": {"data": f32(n, n)},
        "linearitylegendre": {
            "data": f32(6, n, n),
            "Smin": f32(n, n),
            "Smax": f32(n, n),
            "Sref": f32(n, n),
            "dq": np.zeros((n, n), np.uint32),
        },
        "ipc4d": {"data": f32(3, 3, s, s)},
        "flat": {"data": f32(n, n)},
    }
    directory = work / f"reader{size}"
    directory.mkdir(parents=True, exist_ok=True)
    geometry = Geometry(nresultants=nres, ny=n, nx=n)
    rows = []
    try:
        for comp in (None, "lz4"):
            paths = {}
            for reftype, tree in spec.items():
                path = directory / f"{reftype}_{comp}.asdf"
                af = asdf.AsdfFile({"roman": tree})
                if comp:
                    for value in tree.values():
                        af.set_array_compression(value, comp)
                af.write_to(path)
                paths[reftype] = path
            for rep in ("first", "second"):
                t_open = t_read = 0.0
                refs = []
                for reftype, path in paths.items():
                    t = time.perf_counter()
                    ref = open_reference(reftype, path, geometry=geometry)
                    t_open += time.perf_counter() - t
                    t = time.perf_counter()
                    for field in spec[reftype]:
                        np.asarray(getattr(ref, field)).ravel()[::1024].sum()
                    t_read += time.perf_counter() - t
                    refs.append(ref)
                for ref in refs:
                    ref.close()
                rows.append(
                    {
                        "compression": comp or "none (memmap)",
                        "pass": rep,
                        "open_s": round(t_open, 2),
                        "read_s": round(t_read, 2),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return rows


def markdown(results, args):
    lines = [
        MARK_BEGIN,
        "## Batch throughput",
        "",
        (
            f"`python bench/bench_batch.py --size {args.size} --n {args.n}"
            f"{f' --repeat {args.repeat}' if args.repeat > 1 else ''}"
            f"{' --product-cache cold' if args.product_cache == 'cold' else ''}` on "
            f"{platform.node()} ({os.cpu_count()} cores, Python "
            f"{platform.python_version()}), {time.strftime('%Y-%m-%d')}. "
            f"{args.n} copies of one simulated {args.size}² exposure (legacy YAMLs "
            "sharing one calibration set; product cache "
            f"{args.product_cache}: `--product-cache`), run by "
            "`romanimpreprocess.batch.run_batch` "
            "on a LocalCluster (processes, 1 thread each); wall = first submission to "
            "last result (cluster start-up listed apart; worker imports included)."
        ),
        "",
        (
            "| round | workers | wall (s) | exposures/h | exposures/h per core | speed-up "
            "| task median (s) | task max (s) | task CPU user / sys, median (s) "
            "| cluster start (s) | peak RSS / exposure (MiB) | estimate (MiB) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {}
    for r in results["runs"]:
        round_ = r.get("round", 1)
        base.setdefault(round_, r["wall_s"])  # the round's first worker count
        per_hour = 3600 * r["exposures"] / r["wall_s"]
        lines.append(
            f"| {round_} | {r['workers']} | {r['wall_s']} | {per_hour:.0f} | "
            f"{per_hour / r['workers']:.0f} | "
            f"{base[round_] / r['wall_s']:.2f}× | {r['task_wall_median_s']} | "
            f"{r['task_wall_max_s']} | {r.get('task_user_median_s')} / "
            f"{r.get('task_sys_median_s')} | {r['cluster_startup_s']} | "
            f"{r['peak_rss_mb_max']} | {r['estimate_mb']} |"
        )
    if len(results.get("speedups", ())) > 1:
        speedups = results["speedups"]
        each = ", ".join(f"{x:.2f}×" for x in speedups)
        median = statistics.median(speedups)
        lines += ["", f"Speed-up of each round: {each}; median **{median:.2f}×**."]
    if results.get("reference_timing"):
        lines += [
            "",
            (
                "Reference reading per exposure, two exposures of the same SCA in one "
                "process (what a per-worker reference cache could save on the second):"
            ),
            "",
            "| exposure | total (s) | open + validate (s) | read arrays (s) |",
            "|---|---|---|---|",
        ]
        for r in results["reference_timing"]:
            lines.append(
                f"| {r['exposure']} | {r['total_s']} | {r['ref_open_s']} | "
                f"{r['ref_read_s']} |"
            )
    if results.get("reader_timing"):
        size = results["reader_size"]
        lines += [
            "",
            (
                f"Reader alone on synthetic {size}² reference files (every reftype a run "
                "reads; `--reader-timing`), open + validate and read every page, twice "
                "in one process:"
            ),
            "",
            "| compression | pass | open + validate (s) | read (s) |",
            "|---|---|---|---|",
        ]
        for r in results["reader_timing"]:
            lines.append(
                f"| {r['compression']} | {r['pass']} | {r['open_s']} | {r['read_s']} |"
            )
    if results.get("notes"):
        lines += ["", results["notes"]]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_results_md(section):
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        _, tail = rest.split(MARK_END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(BENCH / "out" / "batch"))
    p.add_argument("--no-reference-timing", action="store_true")
    p.add_argument(
        "--reader-timing",
        type=int,
        metavar="SIZE",
        help="also time the reference reader on synthetic SIZE^2 files",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the worker counts, alternating (speed-up of each round and "
        "their median reported)",
    )
    p.add_argument(
        "--product-cache",
        choices=("warm", "cold"),
        default="warm",
        help="the dark and flat products of the calibration set already stored "
        "(warm: every batch after the first on a set) or not (cold: the first)",
    )
    p.add_argument("--notes", default="", help="text added under the tables")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    from run_all import compile_our_bytecode  # timed as installed (run_all.py)

    compile_our_bytecode()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = simulate(work, args.size, args.seed)
    results = {"size": args.size, "n": args.n, "runs": [], "speedups": []}
    counts = [int(x) for x in args.workers.split(",")]
    for round_ in range(1, max(1, args.repeat) + 1):
        # the worker counts alternate: a slow spell of the host falls on all of them
        runs = []
        for w in counts:
            r = run_workers(work, config, args.n, w, args.product_cache)
            r["round"] = round_
            print(json.dumps(r), flush=True)
            runs.append(r)
        results["runs"] += runs
        if len(runs) > 1:
            speedup = runs[0]["wall_s"] / runs[-1]["wall_s"]
            results["speedups"].append(round(speedup, 2))
            print(f"speed-up {speedup:.2f}x", flush=True)
    if len(results["speedups"]) > 1:
        print(f"speed-up median {statistics.median(results['speedups']):.2f}x")
    if not args.no_reference_timing:
        results["reference_timing"] = reference_timing(work, config)
        print(json.dumps(results["reference_timing"]), flush=True)
    if args.reader_timing:
        results["reader_size"] = args.reader_timing
        results["reader_timing"] = reader_timing(work, args.reader_timing)
    results["notes"] = args.notes
    (work / "results.json").write_text(json.dumps(results, indent=1))
    if not args.no_write:
        write_results_md(markdown(results, args))
    ok = all(r["statuses"].get("done", 0) == r["exposures"] for r in results["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
