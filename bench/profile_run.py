"""Where the time and memory of one pipeline run go, step by step.

Runs ``gen_cal_image`` on a legacy YAML in this process and prints, for the start-up,
the L1 opening and decoding, the reference check, every step, and the L2 finishing and
writing: wall time, user and system CPU time, minor page faults, and after each step
the resident memory (anonymous and file-mapped) and the peak so far.

Usage::

    python bench/profile_run.py bench/out/4096_survey6/sim/sim_WFI01_4096_s0.yaml
    python bench/profile_run.py CONFIG.yaml --markdown   # a table for RESULTS.md
    python bench/profile_run.py CONFIG.yaml --part-peaks # peak within each part
    python bench/profile_run.py CONFIG.yaml --library    # as a library call
    python bench/profile_run.py CONFIG.yaml --main-thread  # + main thread's CPU

The process is set up as the command line sets it up (`romanimpreprocess._startup.
start_cli`: libyaml for the stack's manifests, gc freeze, freed buffers kept) unless
``--library`` is given.

With ``--part-peaks`` the peak column is the peak of each part alone (the kernel's
high-water mark is reset when a part starts, ``/proc/self/clear_refs``), which shows
which part sets the run's peak; the whole run's peak is then the largest of them.
"""

import argparse
import re
import resource
import sys
import time

_T0 = time.perf_counter()


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (
        time.perf_counter(),
        r.ru_utime,
        r.ru_stime,
        r.ru_minflt,
        time.thread_time(),
    )


def _memory():
    """(RSS, anonymous, file-mapped, peak) of this process, GiB."""
    with open("/proc/self/status") as status:
        text = status.read()

    def field(name):
        return int(re.search(rf"{name}:\s+(\d+)", text).group(1)) / 2**20

    return field("VmRSS"), field("RssAnon"), field("RssFile"), field("VmHWM")


ROWS = []
PART_PEAKS = False


def _reset_peak():
    """Start a new high-water mark of the resident memory (Linux >= 4.0)."""
    if PART_PEAKS:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")


def _record(name, before, memory=True):
    after = _usage()
    row = {
        "part": name,
        "wall": after[0] - before[0],
        "user": after[1] - before[1],
        "sys": after[2] - before[2],
        "faults": after[3] - before[3],
        "main": after[4] - before[4],
    }
    if memory:
        row["rss"], row["anon"], row["file"], row["peak"] = _memory()
    ROWS.append(row)


def _wrap(owner, name, label=None):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        _reset_peak()
        before = _usage()
        try:
            return original(*args, **kwargs)
        finally:
            _record(label or name, before)

    setattr(owner, name, wrapper)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="legacy gen_cal_image YAML")
    parser.add_argument("--markdown", action="store_true", help="print a table")
    parser.add_argument(
        "--part-peaks", action="store_true", help="peak memory of each part alone"
    )
    parser.add_argument(
        "--library",
        action="store_true",
        help="profile a library call: no start_cli (the default profiles the CLI)",
    )
    parser.add_argument(
        "--main-thread",
        action="store_true",
        help="add the CPU time of the main thread alone (the serial path: on an "
        "idle machine the wall time of a part that only the main thread works on)",
    )
    args = parser.parse_args(argv)
    global PART_PEAKS
    PART_PEAKS = args.part_peaks

    start = (_T0, 0.0, 0.0, 0, 0.0)
    if not args.library:
        # as ``python -m ...gen_cal_image`` does: the stack's manifests through
        # libyaml, and the process-level tweaks (gc freeze, freed buffers kept)
        from romanimpreprocess._startup import start_cli

        start_cli()
    import stpipe.step
    import yaml

    from romanimpreprocess.datamodels import l2
    from romanimpreprocess.L1_to_L2.gen_cal_image import calibrateimage
    from romanimpreprocess.pipeline import l1_to_l2

    _record("start-up (imports)", start)

    base_run = stpipe.step.Step.run

    def run(self, *run_args):
        if self.parent is None:
            return base_run(self, *run_args)
        _reset_peak()
        before = _usage()
        try:
            return base_run(self, *run_args)
        finally:
            _record(f"step {self.name}", before)

    stpipe.step.Step.run = run
    _wrap(l1_to_l2.L1ToL2Pipeline, "open_model", "open the L1")
    _wrap(l1_to_l2.L1ToL2Pipeline, "open_ramp", "decode the L1 to a float32 ramp")
    _wrap(l1_to_l2.L1ToL2Pipeline, "_check_references", "check every reference file")
    _wrap(l2, "finalize_l2", "finalize the L2")
    _wrap(l2, "write_l2", "write the L2")

    with open(args.config) as f:
        config = yaml.safe_load(f)
    before = _usage()
    calibrateimage(config, verbose=False)
    _record("whole pipeline run", before)
    ROWS[:] = [r for r in ROWS if r["part"] != "open the L1" or r["wall"] > 1e-3]

    header = ("part", "wall s", "user s", "sys s", "faults", "RSS", "anon", "file")
    if args.main_thread:
        header = (*header[:4], "main thread s", *header[4:])
    if args.markdown:
        sys.stdout.write("| " + " | ".join(header) + " | peak GiB |\n")
        sys.stdout.write("|" + "---|" * (len(header) + 1) + "\n")
    for r in ROWS:
        mem = (
            (
                f"{r['rss']:.2f}",
                f"{r['anon']:.2f}",
                f"{r['file']:.2f}",
                f"{r['peak']:.2f}",
            )
            if "rss" in r
            else ("", "", "", "")
        )
        cells = (
            r["part"],
            f"{r['wall']:.2f}",
            f"{r['user']:.2f}",
            f"{r['sys']:.2f}",
            *((f"{r['main']:.2f}",) if args.main_thread else ()),
            str(r["faults"]),
            *mem,
        )
        if args.markdown:
            sys.stdout.write("| " + " | ".join(cells) + " |\n")
        else:
            sys.stdout.write("  ".join(f"{c:>10}" for c in cells) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
