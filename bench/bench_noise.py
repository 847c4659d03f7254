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

``--budget`` instead measures the variance budget of the R layer on small simulated
frames: for each configuration of the read file / IPC / reference-pixel correction,
mean(layer²)/mean(var_rnoise) of R layers through the real pipeline, next to the
closed forms (uint16 rounding, IPC amplification) and a Monte Carlo of the
reference-pixel channel step at the small and the full-frame geometry. Results go to
``bench/RESULTS.md`` between the ``bench_noise_budget`` markers.

Usage::

    python bench/bench_noise.py                      # full frame (4096^2)
    python bench/bench_noise.py --size 256 --no-write   # smoke test
    python bench/bench_noise.py --budget             # R-layer variance budget (256^2)
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
        path = Path(paths.config_yaml)
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


def write_results(section, begin=MARK_BEGIN, end=MARK_END):
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    elif begin == MARK_BEGIN and BUDGET_BEGIN in text:
        # The full-frame table heads the "Noise layers" section, above the budget.
        head, tail = text.split(BUDGET_BEGIN, 1)
        text = head + block + "\n\n" + BUDGET_BEGIN + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


# ------------------------------------------------------------- variance budget
BUDGET_BEGIN = "<!-- bench_noise_budget"  # + "_<size>:begin -->"
WHITE = {"reset": 0.0, "C_PINK": 0.0, "U_PINK": 0.0, "M_PINK": 0.0, "RU_PINK": 0.0}
# (label, read-file values, simulator IPC kernel (else identity), refpix step on)
BUDGET_CASES = [
    ("white read noise, identity IPC, no refpix", WHITE, False, False),
    ("+ refpix (channel step; reset 0)", WHITE, False, True),
    ("+ refpix, reset noise 10 DN", {**WHITE, "reset": 10.0}, False, True),
    ("white, simulator IPC, no refpix", WHITE, True, False),
    ("refpix, per-channel 1/f U_PINK 0.5", {**WHITE, "U_PINK": 0.5}, False, True),
    (
        "refpix, common 1/f C_PINK 1, amp33 M_PINK 1, RU_PINK 0.3 (row step)",
        {**WHITE, "C_PINK": 1.0, "M_PINK": 1.0, "RU_PINK": 0.3},
        False,
        True,
    ),
    ("simulator defaults (all of the above)", None, True, True),
]


def _rewrite_tree(path, change):
    import copy

    import asdf

    with asdf.open(path, lazy_load=False, memmap=False) as af:
        tree = copy.deepcopy(af.tree["roman"])
    change(tree)
    asdf.AsdfFile({"roman": tree}).write_to(path)


def refpix_channel_excess(
    ny, channel_width, sigma, reset, weights, n_frames, rng, n_real, border=4
):
    """Monte Carlo: variance the channel step adds to a slope, over σ²ΣK²/N.

    Per resultant k the reference rows of one channel hold round(σ/√N_k · white +
    reset) + the fractional part of the dark (the pipeline subtracts the float dark
    cube, the ramp is built on its rounded values); the step subtracts the line
    through the bottom and top medians. The slope sees Σ_k K_k line_k(row).
    """
    import numpy as np

    m = border * channel_width
    y_bottom, y_top = (border - 1) / 2, ny - border + (border - 1) / 2
    x = (np.arange(ny) - y_bottom) / (y_top - y_bottom)
    total = 0.0
    for _ in range(n_real):
        fraction = rng.uniform(-0.5, 0.5, (2, m))
        offsets = reset * rng.standard_normal((2, m))
        medians = np.empty((len(weights), 2))
        for k in range(len(weights)):
            noisy = sigma / np.sqrt(n_frames[k]) * rng.standard_normal((2, m))
            medians[k] = np.median(np.round(noisy + offsets) + fraction, axis=1)
        bottom, top = weights @ medians
        total += np.mean((bottom + (top - bottom) * x) ** 2)
    return total / n_real / (sigma**2 * np.sum(weights**2 / n_frames))


def budget_case(work, size, seed, values, sim_ipc, refpix, n_layers):
    """mean(layer²)/mean(var_rnoise) of R layers and the closed-form pieces."""
    import copy

    import asdf
    import numpy as np

    from romanimpreprocess.ipc.ipc import DEFAULT_ITERATIONS, ipc_inverse
    from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    paths = write_simulation(work, SimulationConfig(size=size, seed=seed))
    caldir = paths.caldir

    def set_read(tree):
        tree["resetnoise"] = np.full_like(
            np.asarray(tree["resetnoise"]), values["reset"]
        )
        tree["anc"]["C_PINK"] = values["C_PINK"]
        tree["anc"]["U_PINK"] = values["U_PINK"]
        tree["amp33"]["M_PINK"] = values["M_PINK"]
        tree["amp33"]["RU_PINK"] = values["RU_PINK"]

    if values is not None:
        _rewrite_tree(caldir["read"], set_read)
    with asdf.open(caldir["ipc4d"], lazy_load=False, memmap=False) as af:
        kernel = np.array(af.tree["roman"]["data"], np.float64)
    if not sim_ipc:

        def identity(tree):
            k = np.zeros_like(np.asarray(tree["data"]))
            k[1, 1] = 1.0
            tree["data"] = k

        _rewrite_tree(caldir["ipc4d"], identity)
    with open(paths.config_yaml) as f:
        config = yaml.safe_load(f)
    args = legacy.pipeline_args(config)
    steps = copy.deepcopy(args.steps)
    steps["refpix"]["skip"] = not refpix
    noise_file = str(Path(work) / "noise.asdf")
    steps["noise"].update(
        skip=False, layers=["R"] * n_layers, seed=seed + 100, noise_file=noise_file
    )
    pipeline = L1ToL2Pipeline(steps=steps, **args.parameters)
    model = pipeline.run(args.input)
    with asdf.open(noise_file) as af:
        cube = np.array(af["noise"], np.float64)
    info = model["processinfo"]
    weights = np.asarray(info["weights"], np.float64)
    n_frames = np.array([len(r) for r in model.meta.exposure.read_pattern], float)
    var_r = np.asarray(model.var_rnoise, np.float64)
    good = np.asarray(model.dq) == 0
    b = 4
    with asdf.open(caldir["read"]) as af:
        sigma2 = np.array(af.tree["roman"]["data"], np.float64)[b:-b, b:-b] ** 2
    with asdf.open(caldir["gain"]) as af:
        gain = np.array(af.tree["roman"]["data"], np.float64)[b:-b, b:-b]
    flat2 = sigma2 * np.sum(weights**2 / n_frames) / var_r
    rounding = np.sum(weights**2) / 12 / flat2
    ratio = np.mean(cube[:, good] ** 2) / np.mean(var_r[good])
    # IPC: each source pixel's slope noise spread by the inverse (5x5 footprint).
    source = sigma2 * np.sum(weights**2 / n_frames) + np.sum(weights**2) / 12
    spread = np.zeros_like(source)
    use_kernel = kernel if sim_ipc else None
    for oy in range(5):
        for ox in range(5):
            impulses = np.zeros_like(source)
            impulses[oy::5, ox::5] = np.sqrt(source[oy::5, ox::5])
            if use_kernel is None:
                response = impulses
            else:
                response = (
                    ipc_inverse(
                        impulses * gain, use_kernel, iterations=DEFAULT_ITERATIONS
                    )
                    / gain
                )
            spread += response**2
    return {
        "ratio": float(ratio),
        "stat_error": float(ratio * np.sqrt(2 / (n_layers * good.sum()))),
        "good_pixels": int(good.sum()),
        "rounding": float(np.mean(rounding[good]) / np.mean(var_r[good])),
        "white_ipc_rounding": float(
            np.mean((spread / flat2)[good]) / np.mean(var_r[good])
        ),
        "weights": weights.tolist(),
        "n_frames": n_frames.tolist(),
    }


def variance_budget(work, size, seed, n_layers, write):
    import numpy as np

    work = Path(work) / f"budget{size}"
    rows = []
    weights = n_frames = None
    for index, (label, values, sim_ipc, refpix) in enumerate(BUDGET_CASES):
        t0 = time.perf_counter()
        case_dir = work / f"case{index}"
        if case_dir.exists():
            shutil.rmtree(case_dir)
        result = budget_case(case_dir, size, seed, values, sim_ipc, refpix, n_layers)
        result["label"] = label
        result["seconds"] = round(time.perf_counter() - t0, 1)
        weights, n_frames = np.array(result["weights"]), np.array(result["n_frames"])
        rows.append(result)
        print(
            json.dumps(
                {k: v for k, v in result.items() if k not in ("weights", "n_frames")}
            ),
            flush=True,
        )
    rng = np.random.default_rng(seed)
    mc = {}
    for ny, width, n_real in ((size, size // 32, 4000), (4096, 128, 1000)):
        for reset in (0.0, 10.0, 27.5):
            mc[(ny, reset)] = refpix_channel_excess(
                ny, width, 6.5, reset, weights, n_frames, rng, n_real
            )
            print(f"refpix MC ny={ny} reset={reset}: {mc[(ny, reset)]:.4f}", flush=True)
    lines = [
        f"### R-layer variance budget (bench/bench_noise.py --budget, {size}², seed {seed})",
        "",
        (
            f"mean(layer²)/mean(var_rnoise) of {n_layers} R layers through the real "
            "L1ToL2Pipeline on good pixels (dq = 0), var_rnoise = the fit's read-noise "
            "variance (σ_read² ΣK²/N through the flat). The read file is edited so the "
            "layer generates only the listed noise (the R layer draws from the read "
            'file, not from the L1). "closed form" = white read noise + uint16 '
            "rounding (ΣK²/12) spread by the pipeline's IPC inverse (Σ_q (R_pq g_q/g_p)²), "
            "computed from the kernel by impulses; it has no refpix or 1/f term."
        ),
        "",
        "| configuration | measured | ± stat | closed form | rounding alone |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['ratio']:.4f} | {r['stat_error']:.4f} | "
            f"{r['white_ipc_rounding']:.4f} | {1 + r['rounding']:.4f} |"
        )
    lines += [
        "",
        (
            "The refpix rows have a larger error than ± stat: their excess is one offset "
            f"per channel and resultant (32 channels × {n_layers} layers)."
        ),
        "",
        (
            "Monte Carlo of the refpix channel step alone (σ_read 6.5 DN, survey6 "
            "weights): excess variance / (σ² ΣK²/N)"
        ),
        "",
        "| geometry | reset 0 | reset 10 DN | reset 27.5 DN |",
        "|---|---|---|---|",
    ]
    for ny, width in ((size, size // 32), (4096, 128)):
        lines.append(
            f"| {ny} rows, {4 * width} reference pixels per median | "
            + " | ".join(f"{mc[(ny, r)]:.4f}" for r in (0.0, 10.0, 27.5))
            + " |"
        )
    section = "\n".join(lines)
    print(section)
    if write:
        write_results(
            section,
            f"{BUDGET_BEGIN}_{size}:begin -->",
            f"{BUDGET_BEGIN}_{size}:end -->",
        )


def results_section(info):
    """The full-frame table of ``results.json`` (``info``) as markdown."""
    lines = [
        "## Noise layers (bench/bench_noise.py)",
        "",
        (
            f"`python bench/bench_noise.py --size {info['size']}`: simulated "
            f"{info['size']}² survey6 exposure, {info['machine']}, Python "
            f"{info['python']}. Each row is one process under `/usr/bin/time -v` "
            "(calibration: `gen_cal_image` with SLICEOUT; noise rows: "
            "`generate_all_noise` with that one layer: open the L2, build the layer, "
            "write the cube; R layers include their pipeline runs through the legacy "
            "NOISE.TEMP files: `Rz4S2C1` = noiseless reference + noisy ramp, `Ra` = "
            "the noisy ramp only)."
        ),
        "",
        "| run | wall s | CPU s | peak RSS GiB | exit |",
        "|---|---|---|---|---|",
    ]
    for name, r in info["results"].items():
        lines.append(
            f"| {name} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_gib']} | {r['rc']} |"
        )
    if info.get("note"):
        lines += ["", info["note"]]
    return "\n".join(lines)


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
    parser.add_argument("--note", default="", help="conditions noted under the table")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="only rewrite the RESULTS.md table from <work>/results.json",
    )
    parser.add_argument(
        "--budget", action="store_true", help="R-layer variance budget (small frame)"
    )
    parser.add_argument(
        "--n-layers", type=int, default=3, help="R layers per budget case"
    )
    args = parser.parse_args(argv)
    if args.one_layer:
        one_layer(*args.one_layer)
        return 0
    if args.from_json:
        info = json.loads((Path(args.work) / "results.json").read_text())
        if args.note:
            info["note"] = args.note
        write_results(results_section(info))
        return 0
    if args.budget:
        size = args.size if args.size != 4096 else 256
        variance_budget(args.work, size, args.seed, args.n_layers, not args.no_write)
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
    if args.note:
        info["note"] = args.note
    (work / "results.json").write_text(json.dumps(info, indent=2))
    section = results_section(info)
    print(section)
    if not args.no_write:
        write_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
