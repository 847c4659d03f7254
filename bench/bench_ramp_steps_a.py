"""Full-frame cost of the ramp steps saturation, biascorr and refpix.

Same harness as ``bench_ramp_steps_b.py`` (its synthetic 6-resultant ramp and its
``/usr/bin/time -v`` runner): each step (and ``legacy_compat`` variant) runs alone in
its own process; reference files are written once to ``bench/out/ramp_steps_a``.

Usage::

    python bench/bench_ramp_steps_a.py                 # full frame
    python bench/bench_ramp_steps_a.py --size 256      # smoke test
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ramp_steps_b as harness

BENCH = Path(__file__).resolve().parent
RUNS = {
    "saturation": ("romanimpreprocess.saturation.SaturationStep", {}),
    "saturation legacy_compat": (
        "romanimpreprocess.saturation.SaturationStep",
        {"legacy_compat": True},
    ),
    "biascorr": ("romanimpreprocess.biascorr.BiasCorrStep", {}),
    "refpix": ("romanimpreprocess.refpix.RefPixStep", {}),
    "refpix legacy_compat": (
        "romanimpreprocess.refpix.RefPixStep",
        {"legacy_compat": True},
    ),
}


def write_references(work, size):
    """Write the reference files for a ``size`` frame (once); return overrides."""
    import asdf

    from romanimpreprocess.constants import AMP33_WIDTH, REF_BORDER

    work.mkdir(parents=True, exist_ok=True)
    nres = len(harness.READ_PATTERN)
    paths = {
        "saturation": work / f"saturation_{size}.asdf",
        "dark": work / f"dark_{size}.asdf",
        "readnoise": work / f"readnoise_{size}.asdf",
        "biascorr": work / f"biascorr_{size}.asdf",
    }
    rng = np.random.default_rng(0)
    if not paths["saturation"].exists():
        thr = rng.uniform(50000, 60000, (size, size)).astype(np.float32)
        tree = {"data": thr, "dq": np.zeros((size, size), np.uint32)}
        asdf.AsdfFile({"roman": tree}).write_to(paths["saturation"])
    if not paths["dark"].exists():
        dark = np.empty((nres + 1, size, size), np.float32)
        for j in range(nres + 1):
            dark[j] = rng.normal(6000, 20, (size, size))
        tree = {"data": dark, "dark_slope": np.zeros((size, size), np.float32)}
        asdf.AsdfFile({"roman": tree}).write_to(paths["dark"])
        del dark, tree
    if not paths["readnoise"].exists():
        tree = {
            "data": np.full((size, size), 6.0, np.float32),
            "amp33": {
                "M_PINK": 0.9,
                "RU_PINK": 1.0,
                "valid": True,
                "med": np.full((size, AMP33_WIDTH), 6000, np.float32),
                "std": np.full((size, AMP33_WIDTH), 5.0, np.float32),
            },
            "anc": {"C_PINK": 3.0},
        }
        asdf.AsdfFile({"roman": tree}).write_to(paths["readnoise"])
    if not paths["biascorr"].exists():
        s = size - 2 * REF_BORDER
        bias = rng.normal(0, 3, (nres + 1, s, s)).astype(np.float32)
        asdf.AsdfFile({"roman": {"data": bias, "t0": 1.0}}).write_to(paths["biascorr"])
        del bias
    return {k: str(v) for k, v in paths.items()}


def one_step(name, size, work):
    """Inner mode: build the ramp, run one step, print its own timing as JSON."""
    import importlib

    cls_path, params = RUNS[name]
    module, cls_name = cls_path.rsplit(".", 1)
    step_cls = getattr(importlib.import_module(module), cls_name)
    overrides = write_references(work, size)
    ramp = harness.make_ramp(size)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--work", default=str(BENCH / "out" / "ramp_steps_a"))
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
        results[name] = harness.timed(
            [sys.executable, __file__, "--size", args.size, "--work", work,
             "--one-step", name],
            log,
        )  # fmt: skip
        print(results[name], flush=True)
    info = {
        "size": args.size,
        "nresultants": len(harness.READ_PATTERN),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "results": results,
    }
    (work / f"results_{args.size}.json").write_text(json.dumps(info, indent=2))
    lines = [
        (
            f"Ramp steps (bench/bench_ramp_steps_a.py), {args.size}^2 x "
            f"{len(harness.READ_PATTERN)} resultants, {info['machine']}"
        ),
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
