"""Full-frame cost of the ramp-fit step (optimal, optimal legacy_compat, likely).

A synthetic full-frame ramp (4096² by default, the 6-resultant survey read pattern) is
built in memory in each measured process: rates exponentially distributed around
2 DN/s, frame-level Poisson (Gaussian approximation) and read noise from the reference
files, 1 % of the pixels saturating from resultant 3 on, 0.5 % hit by a 500 DN jump in
resultant 4 (so ~0.5 % of the pixels should get JUMP_DET). Reference files (gain, read noise) are written once to
``bench/out/ramp_fit``. Each variant runs ``RampFitStep`` alone in its own process under
``/usr/bin/time -v``; the process reports the step's wall time, the fit's own time (from
the step's log) and its resident memory just before the step, so the table gives the
step's wall time, the peak RSS of the process and the step's increment over its input
(peak minus RSS before; meaningful when the step's peak is above the peak of building
the synthetic ramp, which the JSON also records).

Usage::

    python bench/bench_ramp_fit.py                  # full frame, all variants
    python bench/bench_ramp_fit.py --size 512       # smoke test
    python bench/bench_ramp_fit.py --only optimal
"""

import argparse
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]
FRAME_TIME = 3.04
RUNS = {
    "optimal": {},
    "optimal legacy_compat": {"legacy_compat": True},
    "likely": {"algorithm": "likely"},
}


def write_references(work, size):
    """Gain and read-noise files for a ``size`` frame (written once); overrides."""
    import asdf

    work.mkdir(parents=True, exist_ok=True)
    gain = work / f"gain_{size}.asdf"
    read = work / f"read_{size}.asdf"
    rng = np.random.default_rng(1)
    if not gain.exists():
        tree = {"data": rng.uniform(1.4, 1.6, (size, size))}  # float64, as PIT files
        asdf.AsdfFile({"roman": tree}).write_to(gain)
    if not read.exists():
        tree = {"data": rng.uniform(6.0, 11.0, (size, size)).astype(np.float32)}
        asdf.AsdfFile({"roman": tree}).write_to(read)
    return {"override_gain": str(gain), "override_readnoise": str(read)}


def make_ramp(size, gain, read_noise, seed=0):
    """A full-frame RampModel with synthetic ramps (see module docstring).

    Frame by frame: Gaussian-approximated Poisson increments of the charge (per-pixel
    gain) and read noise (per-pixel single-read sigma), averaged into the resultants of
    the read pattern, so that the ramps follow the fit's covariance model.
    """
    from roman_datamodels import datamodels as dm
    from roman_datamodels.dqflags import group

    from romanimpreprocess.datamodels import raw_to_ramp

    rng = np.random.default_rng(seed)
    n = len(READ_PATTERN)
    raw = dm.ScienceRawModel.create_fake_data(shape=(n, 8, 8))
    raw.meta.exposure.nresultants = n
    raw.meta.exposure.read_pattern = READ_PATTERN
    raw.meta.exposure.frame_time = FRAME_TIME
    raw.amp33 = np.zeros((n, 8, 128), np.uint16)
    ramp = raw_to_ramp(raw)
    flux = rng.exponential(2.0, (size, size)).astype(np.float32)  # DN/s
    step_sd = np.sqrt(flux * np.float32(FRAME_TIME) / gain.astype(np.float32))
    read_noise = read_noise.astype(np.float32)
    signal = np.full((size, size), 1000.0, np.float32)
    data = np.empty((n, size, size), np.float32)
    frame = 0
    for i, frames in enumerate(READ_PATTERN):
        acc = np.zeros((size, size), np.float32)
        for k in frames:
            while frame < k:  # charge collected up to frame k
                signal += flux * np.float32(FRAME_TIME)
                signal += step_sd * rng.standard_normal((size, size), np.float32)
                frame += 1
            acc += signal + read_noise * rng.standard_normal((size, size), np.float32)
        data[i] = acc / np.float32(len(frames))
    del acc, signal, step_sd
    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[0] = group.DO_NOT_USE
    saturating = rng.random((size, size)) < 0.01
    for i in range(3, n):
        groupdq[i][saturating] |= group.SATURATED
    hit = rng.random((size, size)) < 0.005
    data[4:, hit] += 500.0
    ramp.data = data
    ramp.groupdq = groupdq
    ramp.pixeldq = np.zeros((size, size), np.uint32)
    ramp.amp33 = np.zeros((n, size, 128), np.uint16)
    b = 4
    ramp.border_ref_pix_left = data[:, :, :b].copy()
    ramp.border_ref_pix_right = data[:, :, -b:].copy()
    ramp.border_ref_pix_bottom = data[:, :b, :].copy()
    ramp.border_ref_pix_top = data[:, -b:, :].copy()
    for side, shape in (("left", (size, b)), ("right", (size, b))):
        ramp[f"dq_border_ref_pix_{side}"] = np.zeros(shape, np.uint32)
    for side in ("top", "bottom"):
        ramp[f"dq_border_ref_pix_{side}"] = np.zeros((b, size), np.uint32)
    return ramp


def _current_rss_gib():
    """Resident set size of this process now (not the peak), GiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


class _FitTime(logging.Handler):
    seconds = None

    def emit(self, record):
        match = re.search(r"science pixels in ([0-9.]+) s", record.getMessage())
        if match:
            _FitTime.seconds = float(match.group(1))


def child(args):
    """Measured process: build the ramp, run the step, print one JSON line."""
    import asdf

    from romanimpreprocess.ramp_fitting import RampFitStep

    overrides = json.loads(args.overrides)
    with (
        asdf.open(overrides["override_gain"]) as gain,
        asdf.open(overrides["override_readnoise"]) as read,
    ):
        ramp = make_ramp(args.size, gain["roman"]["data"], read["roman"]["data"])
    logging.getLogger("romanimpreprocess").addHandler(_FitTime())
    logging.getLogger("romanimpreprocess").setLevel(logging.INFO)
    generation_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    before = _current_rss_gib()
    began = time.perf_counter()
    image = RampFitStep.call(ramp, **RUNS[args.child], **overrides)
    step_s = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    flagged = int(np.count_nonzero(image.dq & 4))
    print(
        json.dumps(
            {
                "step_s": round(step_s, 2),
                "fit_s": _FitTime.seconds,
                "rss_before_gib": round(before, 3),
                "generation_peak_gib": round(generation_peak, 3),
                "rss_peak_gib": round(peak, 3),
                "jump_pixels": flagged,
            }
        )
    )


def run_one(name, size, overrides, logdir):
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        __file__,
        "--child",
        name,
        "--size",
        str(size),
        "--overrides",
        json.dumps(overrides),
    ]
    env = dict(os.environ, STPIPE_DISABLE_CRDS_STEPPARS="true")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = logdir / f"{name.replace(' ', '_')}_{size}.log"
    log.write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed, see {log}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(
        r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr
    )
    result["process_peak_rss_gib"] = round(int(rss.group(1)) / 2**20, 3)
    result["process_wall"] = wall.group(1)
    result["step_increment_gib"] = round(
        result["process_peak_rss_gib"] - result["rss_before_gib"], 3
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--only", choices=list(RUNS), action="append")
    parser.add_argument("--child", choices=list(RUNS))
    parser.add_argument("--overrides", default="{}")
    args = parser.parse_args()
    if args.child:
        return child(args)
    work = BENCH / "out" / "ramp_fit"
    overrides = write_references(work, args.size)
    results = {
        "size": args.size,
        "resultants": len(READ_PATTERN),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "runs": {},
    }
    for name in args.only or list(RUNS):
        print(f"running {name} ...", flush=True)
        results["runs"][name] = run_one(name, args.size, overrides, work)
    (work / f"results_{args.size}.json").write_text(json.dumps(results, indent=2))
    print(f"{'variant':24s} {'fit s':>7s} {'step s':>7s} {'peak GiB':>9s} {'+GiB':>6s}")
    for name, r in results["runs"].items():
        print(
            f"{name:24s} {r['fit_s']:7.2f} {r['step_s']:7.2f} "
            f"{r['process_peak_rss_gib']:9.2f} {r['step_increment_gib']:6.2f}"
        )


if __name__ == "__main__":
    main()
