"""Full-frame cost of every pipeline step on a simulated set, one step per process.

For each step a child process decodes the simulated L1 (``rip-simulate`` output),
runs the steps before it (untimed), then the step itself, and reports the step's wall
time, the resident memory just before it and the process peak (``ru_maxrss``). The
increment (peak - before) is the step's own memory cost; mapped reference-file pages
count as resident, as they do for ``/usr/bin/time``.

Usage::

    python bench/bench_steps_sim.py bench/out/ff6/sim_WFI01_4096_s0.yaml
    python bench/bench_steps_sim.py CONFIG.yaml --steps saturation refpix biascorr
"""

import argparse
import json
import resource
import subprocess
import sys
import time

ORDER = [
    "dq_init",
    "saturation",
    "refpix",
    "biascorr",
    "dark_decay",
    "linearity",
    "ipc",
    "ramp_fit",
    "dark_current",
    "flatfield",
    "sky",
]


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(config_path, target):
    import logging

    logging.disable(logging.INFO)
    from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy

    args = legacy.pipeline_args(legacy.load_config(config_path))
    pipe = L1ToL2Pipeline(steps=args.steps, **args.parameters)
    model = pipe.open_ramp(args.input)
    for name in ORDER:
        step = getattr(pipe, name)
        if name == target:
            before = _rss_mib()
            start = time.perf_counter()
            model = step.run(model)
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print(
                json.dumps(
                    {
                        "step": name,
                        "wall_s": wall,
                        "rss_before_mib": before,
                        "peak_mib": peak,
                    }
                )
            )
            return
        model = step.run(model)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--steps", nargs="+", default=ORDER)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.config, args.child)
        return 0
    rows = []
    for name in args.steps:
        proc = subprocess.run(
            [sys.executable, __file__, args.config, "--child", name],
            capture_output=True,
            text=True,
            check=False,
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if proc.returncode or not line:
            sys.stdout.write(f"{name}: failed\n{proc.stderr[-1500:]}\n")
            continue
        rows.append(json.loads(line[-1]))
        r = rows[-1]
        sys.stdout.write(
            f"{name:14s} {r['wall_s']:7.2f} s  before {r['rss_before_mib'] / 1024:5.2f} GiB"
            f"  peak {r['peak_mib'] / 1024:5.2f} GiB  step +"
            f"{(r['peak_mib'] - r['rss_before_mib']) / 1024:5.2f} GiB\n"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
