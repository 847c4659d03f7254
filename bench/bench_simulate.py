"""Full-frame simulator benchmark: wall time and peak RSS of ``rip-simulate``.

Usage::

    python bench/bench_simulate.py [--size 4096] [--out bench/out/sim_bench]

Runs ``rip-simulate`` in a child process under ``/usr/bin/time -v`` and prints the
simulate / write times it reports and the peak resident memory.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--read-pattern", default="survey6")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "out" / "sim_bench")
    )
    args = parser.parse_args(argv)
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "romanimpreprocess.simulate.cli",
        "--out",
        args.out,
        "--size",
        str(args.size),
        "--read-pattern",
        args.read_pattern,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    inner = re.search(r"time:\s+simulate ([\d.]+) s, write ([\d.]+) s", text)
    sys.stdout.write(
        f"size {args.size}, {args.read_pattern}: wall {wall.group(1) if wall else '?'}, "
        f"peak RSS {int(rss.group(1)) / 2**20 if rss else float('nan'):.2f} GiB, "
        f"simulate {inner.group(1) if inner else '?'} s, "
        f"write {inner.group(2) if inner else '?'} s\n"
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
