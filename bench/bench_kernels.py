"""numpy vs numba engines of the saturation and linearity algorithms, full frame.

A synthetic 4096^2 x 6 float32 cube (the bench_ramp_steps_b read pattern, a saturated
blob, a Legendre calibration with a quadratic Phi) goes through
`saturation.flag_saturation` and `linearity.apply_linearity` with each engine. The
first numba call of a process loads the kernels from numba's on-disk cache (or
compiles them when the cache is empty) and is reported separately; the timings are
the best of ``--repeat`` later calls (wall and process CPU time, since the cores may
be shared). ``--cold`` also measures the compilation itself, in a subprocess with an
empty cache directory. Every numba result is checked against numpy's.

Usage::

    python bench/bench_kernels.py                # full frame
    python bench/bench_kernels.py --size 512     # smoke test
    python bench/bench_kernels.py --cold         # + compile time from scratch
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_ramp_steps_b import synthetic_linearity

READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]
FRAME_TIME = 3.16247


def make_inputs(size):
    """Synthetic resultants, saturation threshold and Legendre calibration."""
    rng = np.random.default_rng(0)
    nres = len(READ_PATTERN)
    rate = rng.uniform(5, 500, (size, size)).astype(np.float32)
    data = np.empty((nres, size, size), np.float32)
    for j, frames in enumerate(READ_PATTERN):
        data[j] = 6000 + rate * np.float32(np.mean(frames) * FRAME_TIME)
    blob = slice(size // 4, size // 4 + size // 16)
    data[3:, blob, blob] = 62000  # a saturated star
    threshold = rng.uniform(50000, 60000, (size, size)).astype(np.float32)
    coeffs, smin, smax, sref = synthetic_linearity(size, rng)
    lin_dq = np.zeros((size, size), np.uint32)
    return data, threshold, (coeffs, smin, smax, sref, lin_dq)


def run_saturation(engine, data, threshold, threads):
    from romanimpreprocess.saturation.saturation import flag_saturation

    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[...] = 0  # touch the pages, as the step's existing groupdq
    t0, c0 = time.perf_counter(), time.process_time()
    flags = flag_saturation(
        data, groupdq, threshold, READ_PATTERN, engine=engine, threads=threads
    )
    return time.perf_counter() - t0, time.process_time() - c0, (groupdq, flags)


def run_linearity(engine, data, calibration, threads, dtype):
    from romanimpreprocess.linearity import linearity as lin

    coeffs, smin, smax, sref, lin_dq = calibration
    cube = data.copy()
    groupdq = np.zeros(data.shape, np.uint8)
    t0, c0 = time.perf_counter(), time.process_time()
    invalid = lin.invalid_calibration(
        coeffs, smin, smax, sref, engine=engine, threads=threads
    )
    flags = lin.apply_linearity(
        cube, groupdq, coeffs, smin, smax, sref, lin_dq, do_not_flag_first=True,
        invalid=invalid, dtype=dtype, threads=threads, engine=engine,
    )  # fmt: skip
    return time.perf_counter() - t0, time.process_time() - c0, (cube, flags)


def first_call_seconds(size=64):
    """Wall time of the first numba call of each algorithm in this process."""
    data, threshold, calibration = make_inputs(size)
    out = {}
    t0 = time.perf_counter()
    run_saturation("numba", data, threshold, 1)
    out["saturation"] = time.perf_counter() - t0
    for label, dtype in (
        ("linearity float64", np.float64),
        ("linearity float32", None),
    ):
        t0 = time.perf_counter()
        run_linearity("numba", data, calibration, 1, dtype)
        out[label] = time.perf_counter() - t0
    return {k: round(v, 2) for k, v in out.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cold", action="store_true", help="also time compilation")
    parser.add_argument("--first-call", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_call:
        print(json.dumps(first_call_seconds()))
        return 0

    from romanimpreprocess.parallel import step_threads

    threads = args.threads or step_threads()
    report = {"size": args.size, "threads": threads, "cores": os.cpu_count()}
    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            proc = subprocess.run(
                [sys.executable, __file__, "--first-call"], env=env, check=True,
                capture_output=True, text=True,
            )  # fmt: skip
        report["compile_s (empty cache)"] = json.loads(proc.stdout.splitlines()[-1])
    report["first_call_s (this process, cache)"] = first_call_seconds()

    data, threshold, calibration = make_inputs(args.size)
    cases = {
        "saturation": lambda e: run_saturation(e, data, threshold, threads),
        "linearity float64 (step default)": lambda e: run_linearity(
            e, data, calibration, threads, np.float64
        ),
        "linearity float32 (legacy_compat)": lambda e: run_linearity(
            e, data, calibration, threads, None
        ),
    }
    rows = []
    for name, case in cases.items():
        best = {}
        results = {}
        for engine in ("numpy", "numba"):
            runs = []
            for _ in range(args.repeat):
                wall, cpu, result = case(engine)
                runs.append((wall, cpu))
            results[engine] = result
            best[engine] = (min(r[0] for r in runs), min(r[1] for r in runs))
        identical = all(
            np.array_equal(a, b, equal_nan=True)
            for a, b in zip(results["numpy"], results["numba"], strict=True)
        )
        rows.append((name, best, identical))
        print(name, best, "identical" if identical else "DIFFERENT", flush=True)
    nres = len(READ_PATTERN)
    title = (
        f"bench/bench_kernels.py: {args.size}^2 x {nres} resultants, {threads} "
        f"threads, {os.cpu_count()} cores; best of {args.repeat}"
    )
    header = "| algorithm | numpy wall s | numba wall s | numpy CPU s | numba CPU s |"
    lines = [title, "", header + " identical |", "|---|---|---|---|---|---|"]
    for name, best, identical in rows:
        lines.append(
            f"| {name} | {best['numpy'][0]:.3f} | {best['numba'][0]:.3f} "
            f"| {best['numpy'][1]:.3f} | {best['numba'][1]:.3f} | {identical} |"
        )
    print(json.dumps(report))
    print("\n".join(lines))
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
