"""Cost of the noise layers (legacy NOISE keys) on a simulated exposure.

One exposure and its calibration set are simulated (``romanimpreprocess.simulate``),
calibrated once with ``SLICEOUT`` (``gen_cal_image.calibrateimage``), and then each layer
kind runs alone in its own process under ``/usr/bin/time -v``, so wall time, CPU time
and peak RSS belong to that layer: ``O`` (pseudo-Poisson), ``Prb2`` (Poisson
re-sampling around an order-2 sky fit), ``Rz4S2C1`` (read noise through two pipeline
runs: the shared noiseless reference and the noisy ramp) and ``Ra`` (one run). The
calibration itself is timed the same way for comparison.

Results go to ``bench/RESULTS.md`` between the ``bench_noise`` markers (the rest of the
file is left alone) and to ``bench/out/noise/results.json``.

Usage::

    python bench/bench_noise.py                      # full frame (4096^2)
    python bench/bench_noise.py --size 256 --no-write   # smoke test
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
MARK_BEGIN = "<!-- bench_noise:begin -->"
MARK_END = "<!-- bench_noise:end -->"
LAYERS = ["O", "Prb2", "Rz4S2C1", "Ra"]


def timed(cmd, log_path):
    """Run ``cmd`` under /usr/bin/time -v; wall s, CPU s, peak RSS GiB, exit code."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [time_bin, "-v", *map(str, cmd)], stdout=log, stderr=subprocess.STDOUT
        )
    wall = time.perf_counter() - t0
    text = Path(log_path).read_text(errors="replace")

    def grab(label):
        m = re.search(rf"{re.escape(label)}:\s*([\d.]+)", text)
        return float(m.group(1)) if m else 0.0

    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(grab("User time (seconds)") + grab("System time (seconds)"), 1),
        "peak_rss_gib": round(grab("Maximum resident set size (kbytes)") / 2**20, 2),
        "rc": proc.returncode,
    }


def simulate(work, size, seed):
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    sim = work / f"sim{size}"
    found = sorted(sim.glob("*.yaml")) if sim.exists() else []
    if found:
        path = found[0]
    else:
        sim.mkdir(parents=True, exist_ok=True)
        paths = write_simulation(str(sim), SimulationConfig(size=size, seed=seed))
        path = Path(paths["config_yaml"])
    with open(path) as f:
        return yaml.safe_load(f)


def one_layer(config_path, layer):
    """Inner mode: run one noise layer on the calibrated exposure of ``config``."""
    from romanimpreprocess.L1_to_L2.gen_noise_image import generate_all_noise

    with open(config_path) as f:
        config = yaml.safe_load(f)
    config["NOISE"]["LAYER"] = [layer]
    t0 = time.perf_counter()
    generate_all_noise(config)
    print(f"layer {layer}: {time.perf_counter() - t0:.1f} s", flush=True)


def write_results(section):
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{MARK_BEGIN}\n{section}\n{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", default=str(BENCH / "out" / "noise"))
    parser.add_argument("--layers", nargs="+", default=LAYERS)
    parser.add_argument(
        "--no-write", action="store_true", help="do not touch RESULTS.md"
    )
    parser.add_argument("--one-layer", nargs=2, metavar=("CONFIG", "LAYER"))
    args = parser.parse_args(argv)
    if args.one_layer:
        one_layer(*args.one_layer)
        return 0

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = simulate(work, args.size, args.seed)
    run_dir = work / f"run{args.size}"
    run_dir.mkdir(exist_ok=True)
    config["OUT"] = str(run_dir / "expo_cal.asdf")
    config["SLICEOUT"] = True
    config["FITSOUT"] = False
    config["NOISE"] = {
        "LAYER": ["O"],
        "TEMP": str(run_dir / "noise_tmp.asdf"),
        "SEED": 15000,
        "OUT": str(run_dir / "noise.asdf"),
    }
    config_path = run_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    results = {}
    print("calibrating ...", flush=True)
    results["calibration"] = timed(
        [sys.executable, "-m", "romanimpreprocess.L1_to_L2.gen_cal_image", config_path],
        run_dir / "calibration.log",
    )
    print(results["calibration"], flush=True)
    for layer in args.layers:
        print(f"layer {layer} ...", flush=True)
        results[layer] = timed(
            [sys.executable, __file__, "--one-layer", config_path, layer],
            run_dir / f"layer_{layer}.log",
        )
        print(results[layer], flush=True)

    info = {
        "size": args.size,
        "read_pattern": config.get("read_pattern"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "results": results,
    }
    (work / "results.json").write_text(json.dumps(info, indent=2))
    lines = [
        "## Noise layers (bench/bench_noise.py)",
        "",
        (
            f"Simulated {args.size}² exposure, {info['machine']}. Each row is one process "
            "under `/usr/bin/time -v` (noise rows: open the L2, build that one layer, write "
            "the cube; R layers include their pipeline runs)."
        ),
        "",
        "| run | wall s | CPU s | peak RSS GiB | exit |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_gib']} | {r['rc']} |"
        )
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
