"""Honest uncertainties (issue 21): robust scatter of (data - truth)/err on full frames.

For each read pattern a full-frame exposure is simulated with ``rip-simulate``
(realistic noise: read noise with 1/f and amp33 coupling, reset noise, IPC,
nonlinearity, cosmic rays) and calibrated by the default ``L1ToL2Pipeline``. On good
pixels (no DO_NOT_USE, JUMP_DET, SATURATED, NO_GAIN_VALUE, NO_FLAT_FIELD flag, not a
simulated bad pixel) the pull ``(data_withsky - rate_l2)/err`` is binned by the true
rate: the sky (truth < 1.05 x the sky) and four bins of source pixels up to the
pixels that just do not saturate. For each bin: pixel count, robust standard deviation
(IQR/1.349) of the pull with its statistical error (0.82/sqrt(n) for normal pulls),
the median pull, and the median share of var_rnoise in err². Pixels flagged SATURATED
(their slope from the unsaturated resultants only) are listed apart.

Results go to ``bench/RESULTS.md`` between the ``bench_uncertainty`` markers and to
``<work>/results.json``.

Usage::

    python bench/bench_uncertainty.py                          # 4096², survey6 + survey12
    python bench/bench_uncertainty.py --size 512 --no-write    # smoke test
"""

import argparse
import itertools
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
MARK_BEGIN = "<!-- bench_uncertainty:begin -->"
MARK_END = "<!-- bench_uncertainty:end -->"
# Source bins (DN/s of the truth in L2 units); the first starts at twice the sky.
SOURCE_EDGES = (5.0, 30.0, 120.0)
SKY_FACTOR = 1.05


def robust_std(x):
    """IQR / 1.349: the standard deviation of normal deviates, robust to outliers."""
    q25, q75 = np.percentile(x, [25, 75])
    return float((q75 - q25) / 1.3489795)


def simulate(work, size, pattern, seed, sky_rate=None):
    """Simulate once (reused when the directory already holds the files)."""
    sky = "" if sky_rate is None else f"_sky{sky_rate:g}"
    out = Path(work) / f"sim{size}_{pattern}_s{seed}{sky}"
    done = out / "paths.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "romanimpreprocess.simulate.cli",
            "--out",
            str(out),
            "--size",
            str(size),
            "--read-pattern",
            pattern,
            "--seed",
            str(seed),
            *([] if sky_rate is None else ["--sky-rate", str(sky_rate)]),
        ],
        check=True,
    )
    config = min(out.glob("*.yaml"))
    truth = min(out.glob("*_truth.asdf"))
    paths = {
        "config": str(config),
        "truth": str(truth),
        "simulate_s": round(time.perf_counter() - t0, 1),
    }
    done.write_text(json.dumps(paths))
    return paths


def calibrate(config_path):
    """The default pipeline on the simulated exposure; the L2 arrays needed."""
    from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy

    args = legacy.pipeline_args(legacy.load_config(config_path))
    t0 = time.perf_counter()
    model = L1ToL2Pipeline(steps=args.steps, **args.parameters).run(args.input)
    seconds = time.perf_counter() - t0
    arrays = {
        "data": np.asarray(model["data_withsky"], np.float64),
        "err": np.asarray(model.err, np.float64),
        "var_rnoise": np.asarray(model.var_rnoise, np.float64),
        "dq": np.asarray(model.dq),
    }
    return arrays, seconds


def pull_table(arrays, truth_path):
    """Rows ``{bin, n, robust_std, stat_error, median_pull, rnoise_share}``."""
    import asdf
    from roman_datamodels.dqflags import pixel

    with asdf.open(truth_path) as af:
        truth = np.asarray(af["rate_l2"], np.float64)
        bad_pixels = np.asarray(af["bad_pixels"], bool)
        sky = float(af["sky_rate_l2"])
    data, err, dq = arrays["data"], arrays["err"], arrays["dq"]
    bad = (
        pixel.DO_NOT_USE
        | pixel.JUMP_DET
        | pixel.SATURATED
        | pixel.NO_GAIN_VALUE
        | pixel.NO_FLAT_FIELD
    )
    usable = np.isfinite(data) & np.isfinite(err) & (err > 0) & ~bad_pixels
    good = usable & ((dq & bad) == 0)
    saturated = (
        usable & ((dq & pixel.SATURATED) != 0) & ((dq & (bad & ~pixel.SATURATED)) == 0)
    )
    pull = (data - truth) / err
    share = arrays["var_rnoise"] / err**2
    edges = [2.0 * sky, *SOURCE_EDGES, np.inf]
    bins = [("sky", good & (truth < SKY_FACTOR * sky))]
    for lo, hi in itertools.pairwise(edges):
        label = f"{lo:.3g}-{hi:.3g} DN/s" if np.isfinite(hi) else f">= {lo:.3g} DN/s"
        bins.append((f"sources {label}", good & (truth >= lo) & (truth < hi)))
    bins.append(("saturating (SATURATED, shortened fit)", saturated))
    rows = []
    for label, mask in bins:
        n = int(mask.sum())
        if n < 10:
            rows.append({"bin": label, "n": n})
            continue
        rows.append(
            {
                "bin": label,
                "n": n,
                "truth_range": [float(truth[mask].min()), float(truth[mask].max())],
                "robust_std": round(robust_std(pull[mask]), 4),
                "stat_error": round(0.82 / np.sqrt(n), 4),
                "median_pull": round(float(np.median(pull[mask])), 4),
                "rnoise_share": round(float(np.median(share[mask])), 3),
            }
        )
    return rows, sky


def section(results):
    lines = [
        "## Honest uncertainties (bench/bench_uncertainty.py)",
        "",
        (
            f"`{results['command']}`: full-frame `rip-simulate` exposures (seed "
            f"{results['seed']}: read noise with 1/f and amp33 coupling, 10 DN reset "
            "noise, per-pixel IPC, nonlinearity, cosmic rays) through the default "
            "`L1ToL2Pipeline`; pull = (data_withsky - truth rate_l2)/err on good pixels "
            "(no DO_NOT_USE, JUMP_DET, SATURATED, NO_GAIN_VALUE, NO_FLAT_FIELD, not a "
            "simulated bad pixel). Robust std = IQR/1.349, ± its statistical error "
            "0.82/√n; 'rnoise share' = median var_rnoise/err². Target (issue 21): "
            "robust std within 0.97-1.03 in every bin."
        ),
        "",
    ]
    for run in results["runs"]:
        lines += [
            (
                f"### {run['pattern']} ({run['n_resultants']} resultants), "
                f"{run['size']}², sky {run['sky']:.4g} DN/s, pipeline "
                f"{run['seconds']:.1f} s"
            ),
            "",
            (
                "| bin | pixels | truth range (DN/s) | robust std | ± stat "
                "| median pull | rnoise share |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for r in run["rows"]:
            if "robust_std" not in r:
                lines.append(f"| {r['bin']} | {r['n']} | | | | | |")
                continue
            lo, hi = r["truth_range"]
            lines.append(
                f"| {r['bin']} | {r['n']} | {lo:.3g}-{hi:.4g} | {r['robust_std']:.4f} "
                f"| {r['stat_error']:.4f} | {r['median_pull']:+.4f} "
                f"| {r['rnoise_share']:.3f} |"
            )
        lines.append("")
    if results.get("note"):
        lines.append(results["note"])
    return "\n".join(lines).rstrip()


def write_results(text):
    path = BENCH / "RESULTS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{MARK_BEGIN}\n{text}\n{MARK_END}"
    if MARK_BEGIN in current and MARK_END in current:
        head, rest = current.split(MARK_BEGIN, 1)
        current = head + block + rest.split(MARK_END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(current)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--patterns", nargs="+", default=["survey6", "survey12"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sky-rate",
        type=float,
        default=None,
        help="sky of the simulation, e/s (default: the simulator's 1.5)",
    )
    parser.add_argument("--work", default=str(BENCH / "out" / "uncertainty"))
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md")
    parser.add_argument("--note", default="", help="conditions noted under the tables")
    opts = parser.parse_args(argv)
    command = "python bench/bench_uncertainty.py" + (
        f" --size {opts.size}" if opts.size != 4096 else ""
    )
    if opts.patterns != ["survey6", "survey12"]:
        command += " --patterns " + " ".join(opts.patterns)
    if opts.seed:
        command += f" --seed {opts.seed}"
    if opts.sky_rate is not None:
        command += f" --sky-rate {opts.sky_rate:g}"
    results = {
        "command": command,
        "seed": opts.seed,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "runs": [],
        "note": opts.note,
    }
    for pattern in opts.patterns:
        paths = simulate(opts.work, opts.size, pattern, opts.seed, opts.sky_rate)
        arrays, seconds = calibrate(paths["config"])
        rows, sky = pull_table(arrays, paths["truth"])
        del arrays
        from romanimpreprocess.simulate.simulate import READ_PATTERNS

        run = {
            "pattern": pattern,
            "n_resultants": len(READ_PATTERNS[pattern]),
            "size": opts.size,
            "sky": sky,
            "seconds": round(seconds, 1),
            "rows": rows,
        }
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    work = Path(opts.work)
    work.mkdir(parents=True, exist_ok=True)
    sky = "" if opts.sky_rate is None else f"_sky{opts.sky_rate:g}"
    (work / f"results_{opts.size}{sky}.json").write_text(json.dumps(results, indent=2))
    text = section(results)
    print(text)
    if not opts.no_write:
        write_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
