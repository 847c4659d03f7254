"""Full-frame benchmarks side by side: ours vs legacy 1.0.0 vs romancal's ramp fit.

Every measured program runs in its own process under ``/usr/bin/time -v`` so that wall
time, CPU time and peak RSS are those of the process alone. Results go to
``bench/RESULTS.md`` (the section between the ``run_all`` markers is rewritten; other
sections are left alone) and to ``bench/out/results.json``.

Usage::

    python bench/run_all.py                       # 4096^2, 6/12/24 resultants, all programs
    python bench/run_all.py --size 256 --smoke    # a quick check of the script itself
    python bench/run_all.py --patterns survey6 --skip-legacy
    python bench/run_all.py --patterns survey6 --only romancal_elp   # romancal's ELP

Each run of ours starts with an empty product cache (``RIP_PRODUCT_CACHE``: the dark
and flat products computed, as the legacy computes them every run);
``--product-cache warm`` times the runs after the first on a calibration set.

The legacy package is installed into ``bench/.venv-legacy`` if missing (it is a
yardstick only, never imported by the package).
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
REPO = BENCH.parent
LEGACY_VENV = BENCH / ".venv-legacy"
LEGACY_PY = LEGACY_VENV / "bin" / "python"
MARK_BEGIN = "<!-- run_all:begin -->"
MARK_END = "<!-- run_all:end -->"


def fresh_outputs(paths):
    """Remove ``paths`` (a run's outputs) and flush the page cache's writes: untimed.

    Every timed run, ours and the legacy's alike, then writes new files, as a survey
    run does, and none pays for the run before it: unlinking the previous product of
    the same name (0.15-0.25 s for a 0.25-0.3 GB file) or the kernel writing that
    product back to disk while it runs (sys time on the same cores).
    """
    for path in paths:
        for candidate in (Path(path), Path(path).with_suffix(".fits")):
            if candidate.is_file():
                candidate.unlink()
    os.sync()


def timed(cmd, log_path, env=None, cwd=None, timeout=None, outputs=()):
    """Run ``cmd`` under /usr/bin/time -v; return wall s, cpu s, peak RSS GiB, rc.

    With ``timeout`` (s) the program is stopped then and ``stopped_after_s`` set.
    ``outputs`` are removed first (`fresh_outputs`).
    """
    fresh_outputs(outputs)
    time_bin = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(time_bin):
        return _timed_with_rusage(cmd, log_path, env=env, cwd=cwd)
    full = [time_bin, "-v", *map(str, cmd)]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            full,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)  # the program and /usr/bin/time
            proc.wait()
            return {
                "stopped_after_s": round(time.perf_counter() - t0, 1),
                "returncode": proc.returncode,
                "log": str(log_path),
            }
    wall = time.perf_counter() - t0
    text = Path(log_path).read_text(errors="replace")

    def grab(label):
        m = re.search(rf"{re.escape(label)}:\s*([\d.:]+)", text)
        return m.group(1) if m else None

    user = float(grab("User time (seconds)") or 0)
    system = float(grab("System time (seconds)") or 0)
    rss_kb = float(grab("Maximum resident set size (kbytes)") or 0)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(user + system, 2),
        "user_s": round(user, 2),
        "sys_s": round(system, 2),
        "peak_rss_gib": round(rss_kb / 2**20, 3),
        "returncode": proc.returncode,
        "log": str(log_path),
    }


def best_of(runs):
    """The run with the least wall time, with every run's wall time listed."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    walls = sorted(r["wall_s"] for r in runs)
    best["walls_s"] = walls
    best["median_wall_s"] = walls[len(walls) // 2]
    return best


def _timed_with_rusage(cmd, log_path, env=None, cwd=None):
    """`timed` without /usr/bin/time: wall clock and getrusage of the child."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            list(map(str, cmd)), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        # ru_maxrss of children is the largest child so far (KiB on Linux)
        "peak_rss_gib": round(after.ru_maxrss / 2**20, 3),
        "returncode": proc.returncode,
        "log": str(log_path),
    }


def ensure_legacy_venv():
    """Create the legacy 1.0.0 venv if it is missing; return its python or None."""
    if LEGACY_PY.exists():
        return LEGACY_PY
    print(f"creating {LEGACY_VENV} with romanimpreprocess==1.0.0 ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True)
    rc = subprocess.run(
        [str(LEGACY_PY), "-m", "pip", "install", "-q", "romanimpreprocess==1.0.0"]
    ).returncode
    return LEGACY_PY if rc == 0 else None


def simulate(out_dir, size, pattern, seed):
    """Write a simulated set with rip-simulate; return the legacy config dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_files = list(out_dir.glob("*.yaml"))
    if not cfg_files:
        cmd = [
            sys.executable,
            "-m",
            "romanimpreprocess.simulate.cli",
            "--out",
            str(out_dir),
            "--size",
            str(size),
            "--read-pattern",
            pattern,
            "--seed",
            str(seed),
        ]
        subprocess.run(cmd, check=True)
        cfg_files = list(out_dir.glob("*.yaml"))
    with open(cfg_files[0]) as f:
        return yaml.safe_load(f), cfg_files[0]


def write_config(config, path, **changes):
    cfg = dict(config)
    cfg.update(changes)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def compile_our_bytecode():
    """Write our modules' bytecode before anything is timed (files up to date skipped).

    pip compiles an installed package (the legacy's); an editable install is not, and
    with ``PYTHONDONTWRITEBYTECODE`` set every run would compile our modules again
    (0.12 s of each start-up). Timed as installed, as the Makefile's targets leave it.
    """
    import compileall

    import romanimpreprocess

    compileall.compile_dir(os.path.dirname(romanimpreprocess.__file__), quiet=1)


def product_cache_env(work, algorithm, state):
    """Our run's environment with its product cache (``RIP_PRODUCT_CACHE``).

    ``cold``: emptied before each run, so every run computes the dark and flat
    products as the legacy does (the first run on a calibration set); ``warm``: kept
    from run to run (every later run on the set).
    """
    directory = work / f"product_cache_{algorithm}_{state}"
    if state == "cold":
        shutil.rmtree(directory, ignore_errors=True)
    return {**os.environ, "RIP_PRODUCT_CACHE": str(directory)}


def run_ours(config, work, tag, algorithm, repeat=1, cache_state="cold"):
    changes = {"OUT": str(work / f"ours_{tag}_{algorithm}_cal.asdf")}
    if algorithm == "likely":
        changes["romancal_ramp_fit"] = True
    if algorithm == "compat":
        changes["LEGACY_COMPAT"] = True
    cfg = write_config(config, work / f"ours_{tag}_{algorithm}.yaml", **changes)
    command = [sys.executable, "-m", "romanimpreprocess.L1_to_L2.gen_cal_image", cfg]
    if cache_state == "warm":  # one untimed run stores the products
        timed(
            command,
            work / f"ours_{tag}_{algorithm}_fill.log",
            env=product_cache_env(work, algorithm, cache_state),
            outputs=[changes["OUT"]],
        )
    res = best_of(
        [
            timed(
                command,
                work / f"ours_{tag}_{algorithm}_{k}.log",
                env=product_cache_env(work, algorithm, cache_state),
                outputs=[changes["OUT"]],
            )
            for k in range(max(1, repeat))
        ]
    )
    res["product_cache"] = cache_state
    res["output"] = changes["OUT"]
    res["steps"] = step_times(changes["OUT"])
    return res


def step_times(l2_path):
    """Per-step wall times recorded by the pipeline in processinfo, if present."""
    try:
        import asdf

        with asdf.open(l2_path, lazy_load=True) as af:
            info = af.tree.get("processinfo") or af.tree["roman"].get("processinfo", {})
            for key in ("step_times", "timing", "step_timing"):
                if key in info:
                    return {k: float(v) for k, v in dict(info[key]).items()}
    except Exception as exc:  # a benchmark reports, it does not stop
        return {"error": str(exc)}
    return {}


def run_legacy(config, work, tag, timeout=None):
    py = ensure_legacy_venv()
    if py is None:
        return {"skipped": "legacy venv could not be created"}
    out = work / f"legacy_{tag}_cal.asdf"
    cfg = write_config(config, work / f"legacy_{tag}.yaml", OUT=str(out))
    # The legacy package must not see our package: run from a neutral directory.
    res = timed(
        [py, "-m", "romanimpreprocess.L1_to_L2.gen_cal_image", cfg],
        work / f"legacy_{tag}.log",
        cwd=str(work),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=timeout,
        outputs=[out],
    )
    res["output"] = str(out)
    return res


ROMANCAL_RAMPFIT = r"""
import sys, time
import numpy as np
import roman_datamodels as rdm
from romancal.dq_init.dq_initialization import do_dqinit
from romancal.ramp_fitting.ramp_fit_step import likely
from types import SimpleNamespace
raw = rdm.open(sys.argv[1])
t0 = time.perf_counter()
ramp = do_dqinit(raw, None)
ny, nx = ramp.data.shape[1:]
# romancal reads .data of its readnoise and gain reference models
rn = SimpleNamespace(data=np.full((ny, nx), float(sys.argv[2]), np.float32))
gain = SimpleNamespace(data=np.full((ny, nx), float(sys.argv[3]), np.float32))
likely(ramp, rn, gain, include_var_rnoise=True, record_jumps=False, jump_kw={})
print(f"romancal likely ramp fit: {time.perf_counter() - t0:.1f} s")
"""


def run_romancal_rampfit(config, work, tag):
    """romancal 1.1.0's likelihood ramp fit (dq_init + likely) on the same L1.

    The ramp fit alone, with uniform read noise and gain; `run_romancal_elp` runs
    the whole ExposurePipeline with references converted from ours.
    """
    script = work / "romancal_rampfit.py"
    script.write_text(ROMANCAL_RAMPFIT)
    rampopt = config.get("RAMP_OPT_PARS") or {}
    return timed(
        [
            sys.executable,
            script,
            config["IN"],
            rampopt.get("sigma_read", 6.5),
            rampopt.get("gain", 1.8),
        ],
        work / f"romancal_{tag}.log",
    )


ROMANCAL_ELP = r"""
import json, sys, time
t_start = time.perf_counter()
# romancal stamps a CRDS context into meta.ref_file after every step that used a
# reference file, overrides included, by asking the CRDS client (fatal offline). Every
# reference here is an override, so the context is a fixed string; nothing else is
# patched and no step's computation is touched.
from stpipe import crds_client
crds_client.get_context_used = lambda observatory: "N/A (offline: every reference overridden)"
from romancal.pipeline import ExposurePipeline
l1, out = sys.argv[1], sys.argv[2]
with open(sys.argv[3]) as f:
    steps = json.load(f)
t0 = time.perf_counter()
result = ExposurePipeline.call(l1, steps=steps, save_results=False)
model = result[0] if isinstance(result, tuple) else result
t1 = time.perf_counter()
# With assign_wcs skipped the model has no meta.wcs, which ExposurePipeline.save_model
# (its _wcs product) cannot handle; the schema allows None, so save the L2 here.
if "wcs" not in model.meta:
    model.meta["wcs"] = None
model.save(out)
t2 = time.perf_counter()
print("ROMANCAL_ELP " + json.dumps({
    "cal_step": {k: str(v) for k, v in model.meta.cal_step.items()},
    "import_s": round(t0 - t_start, 2),
    "pipeline_s": round(t1 - t0, 2),
    "save_s": round(t2 - t1, 2),
}))
"""

# ExposurePipeline steps skipped in the romancal_elp run: no reference of ours to build
# theirs from (bench/romancal_refs.py NOT_BUILT), or not meaningful without those.
ELP_SKIPS = {
    "refpix": "no RefpixRef (romancal's 1/f weights) in our set",
    "assign_wcs": "no DistortionRef in our set",
    "photom": "no photometric reference in our set",
    "source_catalog": "needs an ApcorrRef; catalogs are not part of our pipeline",
    "tweakreg": "needs the source catalog and a WCS",
}
ELP_SMALL_FRAME_SKIPS = {
    "dark_decay": "romancal 1.1.0's dark_decay builds a 4096x4096 read-time map",
}


def elp_step_times(log_text):
    """Wall seconds of each step that ran, from stpipe's "running"/"done" log stamps."""
    pattern = (
        r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) - stpipe.step - INFO - "
        r"Step (\w+) (running|done)"
    )
    starts, times = {}, {}
    for m in re.finditer(pattern, log_text, re.MULTILINE):
        stamp = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
        stamp += int(m.group(2)) / 1000
        if m.group(4) == "running":
            starts[m.group(3)] = stamp
        elif m.group(3) in starts:  # a skipped step logs "Step skipped." instead
            times[m.group(3)] = round(stamp - starts.pop(m.group(3)), 2)
    return times


def run_romancal_elp(config, work, tag, size):
    """romancal 1.1.0's whole ExposurePipeline on the same L1, with our calibration.

    The reference files are converted from our CALDIR by ``bench/romancal_refs.py``
    (cached in ``<work>/romancal_refs``, built outside the timed process); steps
    whose reference cannot be built are skipped (``ELP_SKIPS``).
    """
    cfg = write_config(config, work / f"romancal_elp_{tag}.yaml")
    refs_dir = work / "romancal_refs"
    t0 = time.perf_counter()
    build = subprocess.run(
        [
            sys.executable,
            BENCH / "romancal_refs.py",
            "--config",
            cfg,
            "--out",
            refs_dir,
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode:
        return {"error": "romancal_refs failed: " + build.stderr[-2000:]}
    refs = json.loads(build.stdout[build.stdout.index("{") :])["paths"]
    build_s = round(time.perf_counter() - t0, 2)
    skips = dict(ELP_SKIPS, **(ELP_SMALL_FRAME_SKIPS if size != 4096 else {}))
    steps = {
        "dq_init": {"override_mask": refs["mask"]},
        "saturation": {"override_saturation": refs["saturation"]},
        "dark_decay": {"override_darkdecaysignal": refs["darkdecaysignal"]},
        "linearity": {
            "override_linearity": refs["linearity"],
            "override_inverselinearity": refs["inverselinearity"],
            "override_integralnonlinearity": "N/A",  # optional in romancal
        },
        "rampfit": {
            "override_readnoise": refs["readnoise"],
            "override_gain": refs["gain"],
        },
        "dark_current": {"override_dark": refs["dark"]},
        "flatfield": {"override_flat": refs["flat"]},
    }
    for name in skips:
        steps[name] = {"skip": True}
    steps_path = work / f"romancal_elp_{tag}_steps.json"
    steps_path.write_text(json.dumps(steps, indent=1))
    script = work / "romancal_elp.py"
    script.write_text(ROMANCAL_ELP)
    out = work / f"romancal_elp_{tag}_cal.asdf"
    env = dict(os.environ)
    # no CRDS anywhere: step parameters from CRDS off, and a server/cache that cannot
    # answer, so an unexpected lookup fails instead of reaching out
    env.update(
        STPIPE_DISABLE_CRDS_STEPPARS="true",
        CRDS_SERVER_URL="https://crds.invalid",
        CRDS_PATH=str(work / "no_crds_cache"),
    )
    log = work / f"romancal_elp_{tag}.log"
    res = timed([sys.executable, script, config["IN"], out, steps_path], log, env=env)
    text = Path(log).read_text(errors="replace")
    match = re.search(r"^ROMANCAL_ELP (\{.*\})$", text, re.MULTILINE)
    info = json.loads(match.group(1)) if match else {}
    cal = info.pop("cal_step", {})
    res.update(info)
    res.update(
        output=str(out),
        refs=str(refs_dir),
        refs_build_s=build_s,
        cal_step=cal,
        steps_completed=sorted(k for k, v in cal.items() if v == "COMPLETE"),
        steps_skipped=skips,
        step_times=elp_step_times(text),
    )
    return res


READ_ONLY = r"""
import sys, time, numpy as np, asdf
t0 = time.perf_counter()
with asdf.open(sys.argv[1], lazy_load=False) as af:
    np.asarray(af["roman"]["data"]).sum(); np.asarray(af["roman"]["amp33"]).sum()
for path, fields in zip(sys.argv[2::2], sys.argv[3::2]):
    with asdf.open(path, lazy_load=True, memmap=True) as af:
        for f in fields.split(","):
            if f in af["roman"]:
                np.asarray(af["roman"][f]).sum()
print(f"read {time.perf_counter() - t0:.2f} s")
"""

# Arrays the pipeline needs from each CALDIR file (the practical reading floor).
NEEDED = {
    "dark": "data,dark_slope,dq",
    "flat": "data",
    "gain": "data",
    "ipc4d": "data",
    "linearitylegendre": "data,Smin,Smax,Sref,dq",
    "mask": "dq",
    "read": "data",
    "saturation": "data,dq",
    "biascorr": "data",
}


def run_agreement(ours_output, legacy_output, work, name):
    """`compare_l2` of one of our products against the legacy's (JSON summary)."""
    out = work / f"agreement_{name}.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "compare_l2.py"),
            ours_output,
            legacy_output,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode or not out.exists():
        return {"error": proc.stderr[-2000:]}
    return json.loads(out.read_text())


def run_read_floor(config, work, tag):
    script = work / "read_only.py"
    script.write_text(READ_ONLY)
    args = [config["IN"]]
    for key, fields in NEEDED.items():
        path = (config.get("CALDIR") or {}).get(key)
        if path:
            args += [path, fields]
    # drop the page cache effect as far as we can: read once to warm, then time
    timed([sys.executable, script, *args], work / f"readfloor_warm_{tag}.log")
    return timed([sys.executable, script, *args], work / f"readfloor_{tag}.log")


def ratio(a, b):
    try:
        return f"{a / b:.1f}×"
    except (TypeError, ZeroDivisionError):
        return "n/a"


def render(results, args):
    lines = [MARK_BEGIN, "## Full-frame speed and memory (bench/run_all.py)", ""]
    lines.append(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
        f"Python {platform.python_version()}; date {time.strftime('%Y-%m-%d')}."
    )
    merged = " (these programs merged into the earlier results)" if args.only else ""
    lines.append(f"Command: `{' '.join(sys.argv)}`{merged} (size {args.size}).")
    lines.append("")
    lines.append(
        "| pattern | program | wall s (best; all runs) | user s | sys s | "
        "peak RSS GiB | legacy/ours | romancal fit/ours | romancal ELP/ours |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    # one table for every pattern, then each pattern's notes (a note between rows
    # would end the table)
    notes = []
    for tag, res in results.items():
        ours = res.get("ours_optimal", {}).get("wall_s")

        def completed(name, res=res):
            r = res.get(name, {})
            return r.get("wall_s") if r.get("returncode", 1) == 0 else None

        legacy = completed("legacy")
        romancal = completed("romancal_rampfit")
        elp = completed("romancal_elp")
        for name, r in res.items():
            if isinstance(r, dict) and "stopped_after_s" in r:
                lines.append(
                    f"| {tag} | {name} | stopped after {r['stopped_after_s']} s "
                    f"(--legacy-timeout) | | | | | | |"
                )
                continue
            if not isinstance(r, dict) or "wall_s" not in r:
                continue
            rel_legacy = ratio(legacy, r["wall_s"]) if name.startswith("ours") else ""
            rel_rc = ratio(romancal, r["wall_s"]) if name.startswith("ours") else ""
            rel_elp = ratio(elp, r["wall_s"]) if name.startswith("ours") else ""
            rc = "" if r.get("returncode", 0) == 0 else f" (exit {r['returncode']})"
            walls = r.get("walls_s")
            wall = f"{r['wall_s']}" + (
                f" ({', '.join(map(str, walls))})" if walls and len(walls) > 1 else ""
            )
            if r.get("product_cache"):  # which runs of ours: first or later on a set
                name = f"{name} (product cache {r['product_cache']})"
            lines.append(
                f"| {tag} | {name}{rc} | {wall} | {r.get('user_s', '')} | "
                f"{r.get('sys_s', '')} | {r['peak_rss_gib']} | {rel_legacy} | "
                f"{rel_rc} | {rel_elp} |"
            )
        steps = res.get("ours_optimal", {}).get("steps") or {}
        if steps and "error" not in steps:
            total = sum(steps.values())
            parts = ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
            notes.append("")
            notes.append(
                f"{tag}: time per step (s, optimal): {parts}; sum {total:.2f}."
            )
            floor = res.get("read_floor", {}).get("wall_s")
            if floor and ours:
                notes.append(
                    f"{tag}: just reading the inputs takes {floor} s in a fresh process "
                    f"({100 * floor / ours:.0f} % of the whole run)."
                )
        elp_run = res.get("romancal_elp") or {}
        if elp_run.get("cal_step"):
            skipped = "; ".join(
                f"{k}: {v}" for k, v in elp_run["steps_skipped"].items()
            )
            notes.append("")
            notes.append(
                f"{tag}: romancal_elp = romancal's ExposurePipeline with references "
                f"converted from ours (`bench/romancal_refs.py`); steps completed: "
                f"{', '.join(elp_run['steps_completed'])}; skipped: {skipped}."
            )
            parts = ", ".join(
                f"{k} {v:.2f}" for k, v in (elp_run.get("step_times") or {}).items()
            )
            if parts:
                notes.append(f"{tag}: romancal_elp time per step (s): {parts}.")
        for name, agreement in (res.get("agreement") or {}).items():
            notes.append("")
            notes.append(
                f"{tag}: agreement of ours ({name}) with the legacy "
                f"(`bench/compare_l2.py`): `{json.dumps(agreement, default=float)}`"
            )
    lines += notes
    lines.append("")
    lines.append(MARK_END)
    return "\n".join(lines)


def update_results_md(section):
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        _, tail = rest.split(MARK_END, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument(
        "--patterns", nargs="+", default=["survey6", "survey12", "survey24"]
    )
    parser.add_argument("--out", default=str(BENCH / "out"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-legacy", action="store_true")
    parser.add_argument("--skip-romancal", action="store_true")
    parser.add_argument("--skip-likely", action="store_true")
    parser.add_argument(
        "--skip-romancal-elp",
        action="store_true",
        help="do not run romancal's whole ExposurePipeline (romancal_elp)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of ours (optimal); best is kept"
    )
    parser.add_argument(
        "--product-cache",
        choices=("cold", "warm"),
        default="cold",
        help="ours (optimal) with the calibration set's dark and flat products "
        "computed in each run (cold, as the first run on a set) or already stored "
        "(warm, every later run)",
    )
    parser.add_argument(
        "--compat-patterns",
        nargs="*",
        default=["survey6"],
        help="patterns where LEGACY_COMPAT is also run and compared with the legacy",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[
            "optimal",
            "likely",
            "legacy",
            "compat",
            "romancal",
            "romancal_elp",
            "read_floor",
        ],
        help="run only these programs and merge them into the existing results.json "
        "(the others keep their recorded numbers)",
    )
    parser.add_argument(
        "--legacy-timeout",
        type=float,
        default=None,
        help="stop the legacy run after this many seconds (recorded as stopped)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="small check of this script: no legacy/romancal, no RESULTS.md update "
        "(romancal_elp only with --only)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.skip_legacy = args.skip_romancal = args.skip_romancal_elp = True
    results_path = Path(args.out) / "results.json"
    results = {}
    if args.only and results_path.exists():
        results = json.loads(results_path.read_text())

    def wanted(program, skipped=False):
        return (program in args.only) if args.only else not skipped

    compile_our_bytecode()
    for pattern in args.patterns:
        tag = f"{pattern}"
        work = Path(args.out) / f"{args.size}_{pattern}"
        config, _ = simulate(work / "sim", args.size, pattern, args.seed)
        res = results.setdefault(tag, {})
        if wanted("optimal"):
            res["ours_optimal"] = run_ours(
                config, work, tag, "optimal", args.repeat, args.product_cache
            )
        if wanted("likely", args.skip_likely):
            res["ours_likely"] = run_ours(config, work, tag, "likely")
        if wanted("legacy", args.skip_legacy):
            res["legacy"] = run_legacy(config, work, tag, timeout=args.legacy_timeout)
        legacy_ok = (res.get("legacy") or {}).get("returncode") == 0
        # LEGACY_COMPAT and the agreement need the legacy's product: with the legacy
        # run, or alone (--only compat) against the one recorded
        compat = wanted("legacy", args.skip_legacy) or "compat" in (args.only or ())
        if compat and legacy_ok and pattern in args.compat_patterns:
            res["ours_compat"] = run_ours(config, work, tag, "compat")
            agreement = {}
            for name in ("optimal", "compat"):
                mine = res.get(f"ours_{name}", {}).get("output")
                if mine and Path(mine).exists():
                    agreement[name] = run_agreement(
                        mine, res["legacy"]["output"], work, f"{tag}_{name}"
                    )
            res["agreement"] = agreement
        if wanted("romancal", args.skip_romancal):
            res["romancal_rampfit"] = run_romancal_rampfit(config, work, tag)
        if wanted("romancal_elp", args.skip_romancal_elp):
            res["romancal_elp"] = run_romancal_elp(config, work, tag, args.size)
        if wanted("read_floor"):
            res["read_floor"] = run_read_floor(config, work, tag)
        print(json.dumps({tag: res}, indent=1), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=1))
    section = render(results, args)
    print(section)
    if not args.smoke:
        update_results_md(section)
    failed = [
        f"{tag}/{name}"
        for tag, res in results.items()
        for name, r in res.items()
        if name.startswith("ours") and r.get("returncode", 0) != 0
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
