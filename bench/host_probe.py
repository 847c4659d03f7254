"""What this machine gives two processes, and what a fresh page costs it.

Two facts of the host bound the batch and one-exposure goals of issue 23, whatever
the pipeline does; this probe measures them without the pipeline:

- **Two processes side by side.** Each probe runs alone, then as two processes at
  once: a pure-Python loop (the cores alone) and a loop of full-frame float32
  multiplications (memory bandwidth: 64 MiB in, 64 MiB out, as most of our steps
  stream planes). With two independent cores and their own bandwidth, two at once
  take as long as one alone; the ratio is what two rip-batch workers can at best
  gain over one on work of that kind (``2 * alone / side_by_side``).
- **Fresh pages.** One GiB of new memory touched by a new process after a pause
  (pages the host has taken back), then, once it is freed, another GiB at once
  (the pages just freed, which the host has not taken back yet). A virtual
  machine whose balloon reports free pages to the host pays a host fault per page
  on top of the kernel's zeroing; memory a process keeps and reuses costs neither.

Usage::

    python bench/host_probe.py [--rounds 3]

Prints a Markdown table of every round (nothing is written).
"""

import argparse
import resource
import subprocess
import sys
import time

import numpy as np

GIB = 1 << 30


def python_loop():
    start = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i * i
    return time.perf_counter() - start


def plane_stream():
    plane = np.ones(4096 * 4096, np.float32)
    out = np.empty_like(plane)
    for _ in range(3):  # the pages are this process's before the clock starts
        np.multiply(plane, 1.0001, out=out)
    start = time.perf_counter()
    for _ in range(150):
        np.multiply(plane, 1.0001, out=out)
    return time.perf_counter() - start


def fresh_pages():
    """Wall and system seconds to touch 1 GiB of new memory, then 1 GiB again."""
    seconds = []
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        block = np.ones(GIB // 4, np.float32)
        seconds.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        seconds.append(after.ru_stime - before.ru_stime)
        del block
    return seconds


PROBES = {"python": python_loop, "planes": plane_stream}


def _child(name):
    return [sys.executable, __file__, "--child", name]


def _times(name, copies):
    procs = [
        subprocess.Popen(_child(name), stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return [float(p.communicate()[0]) for p in procs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pause",
        type=float,
        default=5.0,
        help="seconds idle before the fresh-page probe",
    )
    parser.add_argument("--child", choices=[*PROBES, "fresh"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "fresh":
        print(" ".join(f"{s:.3f}" for s in fresh_pages()))
        return 0
    if args.child:
        print(f"{PROBES[args.child]():.4f}")
        return 0

    print("| round | probe | alone s | two at once s | best gain of two |")
    print("|---|---|---|---|---|")
    for r in range(1, args.rounds + 1):
        for name in PROBES:
            alone = _times(name, 1)[0]
            both = _times(name, 2)
            gain = 2 * alone / max(both)
            shown = ", ".join(f"{t:.2f}" for t in both)
            print(f"| {r} | {name} | {alone:.2f} | {shown} | {gain:.2f}× |")
    print()
    print(
        "| round | 1 GiB fresh: wall s (system s) | 1 GiB just freed: wall s (system s) |"
    )
    print("|---|---|---|")
    for r in range(1, args.rounds + 1):
        time.sleep(args.pause)
        out = subprocess.run(
            _child("fresh"), capture_output=True, text=True, check=True
        )
        first, first_sys, again, again_sys = (float(x) for x in out.stdout.split())
        print(
            f"| {r} | {first:.2f} ({first_sys:.2f}) | {again:.2f} ({again_sys:.2f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
