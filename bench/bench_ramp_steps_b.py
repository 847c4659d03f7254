"""Full-frame cost of the ramp steps dark_decay, wfi18_transient, linearity and ipc.

A synthetic full-frame exposure (4096^2 by default, 6 resultants) is built in memory
in each measured process, and reference files matching it are written once to
``bench/out/ramp_steps_b``. Each step (and each ``legacy_compat`` variant) runs alone
in its own process under ``/usr/bin/time -v``; the process reports the step's own wall
time and its resident memory before the step, so the table gives the step's wall time,
the process peak RSS and the step's increment over the input (peak - before).

Usage::

    python bench/bench_ramp_steps_b.py                 # full frame
    python bench/bench_ramp_steps_b.py --size 256      # smoke test
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]
FRAME_TIME = 3.16247
RUNS = {
    "dark_decay": ("romanimpreprocess.dark_decay.DarkDecayStep", {}),
    "wfi18_transient": ("romanimpreprocess.wfi18_transient.WFI18TransientStep", {}),
    "wfi18_transient legacy_compat": (
        "romanimpreprocess.wfi18_transient.WFI18TransientStep",
        {"legacy_compat": True},
    ),
    "linearity": ("romanimpreprocess.linearity.LinearityLegendreStep", {}),
    "linearity legacy_compat": (
        "romanimpreprocess.linearity.LinearityLegendreStep",
        {"legacy_compat": True},
    ),
    "ipc": ("romanimpreprocess.ipc.IPCStep", {}),
    "ipc legacy_compat": ("romanimpreprocess.ipc.IPCStep", {"legacy_compat": True}),
}


def synthetic_linearity(size, rng):
    """Legendre coefficients of ``Phi = d + 2e-6 d^2`` with scattered ranges.

    Returns ``(coeffs, smin, smax, sref)`` (float32) for a ``size`` x ``size`` frame.
    """
    smin = (5000 + rng.uniform(-200, 200, (size, size))).astype(np.float32)
    smax = (60000 + rng.uniform(-3000, 3000, (size, size))).astype(np.float32)
    sref = smin + np.float32(300)
    half = (smax - smin) / 2
    offset = smin - sref + half
    coeffs = np.zeros((4, size, size), np.float32)
    coeffs[0] = offset + 2e-6 * (offset**2 + half**2 / 3)
    coeffs[1] = half * (1 + 4e-6 * offset)
    coeffs[2] = 2e-6 * half**2 * 2 / 3
    return coeffs, smin, smax, sref


def write_references(work, size):
    """Write the reference files for a ``size`` frame (once); return overrides."""
    import asdf

    work.mkdir(parents=True, exist_ok=True)
    paths = {
        "linearitylegendre": work / f"linearity_{size}.asdf",
        "ipc4d": work / f"ipc4d_{size}.asdf",
        "gain": work / f"gain_{size}.asdf",
        "darkdecaysignal": work / "darkdecay.asdf",
    }
    rng = np.random.default_rng(0)
    if not paths["linearitylegendre"].exists():
        coeffs, smin, smax, sref = synthetic_linearity(size, rng)
        tree = {"data": coeffs, "Smin": smin, "Smax": smax, "Sref": sref,
                "dq": np.zeros((size, size), np.uint32)}  # fmt: skip
        asdf.AsdfFile({"roman": tree}).write_to(paths["linearitylegendre"])
        del coeffs, tree
    if not paths["ipc4d"].exists():
        n = size - 8
        kernel = np.empty((3, 3, n, n), np.float32)
        kernel[...] = 0.005
        kernel[1, 1] = 0.96
        asdf.AsdfFile({"roman": {"data": kernel}}).write_to(paths["ipc4d"])
        del kernel
    if not paths["gain"].exists():
        gain = rng.uniform(1.4, 1.6, (size, size))  # float64, as the PIT files
        asdf.AsdfFile({"roman": {"data": gain}}).write_to(paths["gain"])
    if not paths["darkdecaysignal"].exists():
        table = {f"WFI{i:02d}": {"amplitude": 3.0, "time_constant": 2.0} for i in
                 range(1, 19)}  # fmt: skip
        asdf.AsdfFile({"roman": {"decay_table": table}}).write_to(
            paths["darkdecaysignal"]
        )
    return {k: str(v) for k, v in paths.items()}


def make_ramp(size):
    """A synthetic WFI18 full-frame ramp (6 resultants) inside the linearity range."""
    from roman_datamodels import datamodels as dm

    from romanimpreprocess.constants import AMP33_WIDTH
    from romanimpreprocess.datamodels import raw_to_ramp

    nres = len(READ_PATTERN)
    raw = dm.ScienceRawModel.create_fake_data(shape=(nres, size, size))
    rng = np.random.default_rng(1)
    rate = rng.uniform(5, 500, (size, size)).astype(np.float32)
    t = np.array([np.mean(r) * FRAME_TIME for r in READ_PATTERN], np.float32)
    data = np.empty((nres, size, size), np.uint16)
    for i in range(nres):
        data[i] = np.clip(6000 + rate * t[i], 0, 65535).astype(np.uint16)
    raw.data = data
    raw.amp33 = np.full((nres, size, AMP33_WIDTH), 6000, np.uint16)
    raw.meta.exposure.nresultants = nres
    raw.meta.exposure.read_pattern = READ_PATTERN
    raw.meta.exposure.frame_time = FRAME_TIME
    raw.meta.instrument.detector = "WFI18"
    for key in ("xstart", "xstop", "ystart", "ystop"):
        raw.meta.guide_star[f"window_{key}"] = -1
    ramp = raw_to_ramp(raw)
    del raw, data
    return ramp


def one_step(name, size, work):
    """Inner mode: build the ramp, run one step, print its own timing as JSON."""
    import importlib

    cls_path, params = RUNS[name]
    module, cls_name = cls_path.rsplit(".", 1)
    step_cls = getattr(importlib.import_module(module), cls_name)
    overrides = write_references(work, size)
    ramp = make_ramp(size)
    kwargs = dict(params)
    for reftype in step_cls.reference_file_types:
        kwargs[f"override_{reftype}"] = overrides[reftype]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    result = step_cls.call(ramp, **kwargs)
    wall = time.perf_counter() - t0
    status = result.meta.cal_step[step_cls.cal_step_key]
    print(json.dumps({"step_s": round(wall, 2), "before_gib": round(before, 3),
                      "status": status}))  # fmt: skip


def timed(cmd, log_path):
    """Run ``cmd`` under /usr/bin/time -v; wall, CPU, peak RSS and the step's JSON."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [time_bin, "-v", *map(str, cmd)], stdout=subprocess.PIPE, stderr=log,
            text=True,
        )  # fmt: skip
    wall = time.perf_counter() - t0
    text = Path(log_path).read_text(errors="replace")

    def grab(label):
        m = re.search(rf"{re.escape(label)}:\s*([\d.]+)", text)
        return float(m.group(1)) if m else 0.0

    inner = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            inner = json.loads(line)
    peak = grab("Maximum resident set size (kbytes)") / 2**20
    return {
        "process_s": round(wall, 1),
        "cpu_s": round(grab("User time (seconds)") + grab("System time (seconds)"), 1),
        "peak_rss_gib": round(peak, 2),
        "step_s": inner.get("step_s"),
        "step_extra_gib": round(peak - inner["before_gib"], 2) if inner else None,
        "status": inner.get("status"),
        "rc": proc.returncode,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--work", default=str(BENCH / "out" / "ramp_steps_b"))
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--one-step", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.one_step:
        one_step(args.one_step, args.size, work)
        return 0

    write_references(work, args.size)
    results = {}
    for name in args.runs:
        print(f"{name} ...", flush=True)
        log = work / f"{name.replace(' ', '_')}_{args.size}.log"
        results[name] = timed(
            [sys.executable, __file__, "--size", args.size, "--work", work,
             "--one-step", name],
            log,
        )  # fmt: skip
        print(results[name], flush=True)
    info = {
        "size": args.size,
        "nresultants": len(READ_PATTERN),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "results": results,
    }
    (work / f"results_{args.size}.json").write_text(json.dumps(info, indent=2))
    title = (
        f"Ramp steps (bench/bench_ramp_steps_b.py), {args.size}^2 x "
        f"{len(READ_PATTERN)} resultants, {info['machine']}"
    )
    lines = [
        title,
        "",
        "| step | step wall s | process peak RSS GiB | step increment GiB | status |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['step_s']} | {r['peak_rss_gib']} | {r['step_extra_gib']} "
            f"| {r['status']} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
