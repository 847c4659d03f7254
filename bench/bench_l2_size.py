"""L2 file size and read cost: our L2 (default, with ``FLOAT32_ERRORS``) vs the legacy's.

For each L2 file given: the size, every array block (dtype, shape, stored bytes,
compression), and the cost of reading it in a fresh process under ``/usr/bin/time -v``:

* ``rdm``: ``roman_datamodels.open`` and every array of the model touched (summed),
  as a romancal step or our own readers open it (our venv);
* ``asdf``: ``asdf.open`` and ``roman.data``, ``roman.dq``, ``roman.var_rnoise`` (or
  ``err``) read, as PyIMCOM and roman-hlis-l2-driver read an L2, with the asdf of the
  downstream venv (``--downstream-python``, Python 3.12; skipped if missing).

With ``--codecs`` the asdf block compressions (lz4, zlib, bzp2) are tried on 1024 rows
of each full-frame plane of the first file: stored fraction and compression CPU time
scaled to the whole plane.

Usage::

    python bench/bench_l2_size.py ours_cal.asdf ours32_cal.asdf legacy_cal.asdf --codecs
"""

import argparse
import bz2
import os
import subprocess
import sys
import time
import zlib

import numpy as np

DOWNSTREAM_PY = "/work/downstream-venv/bin/python"

READ_RDM = r"""
import sys, time, asdf, numpy as np, roman_datamodels as rdm
asdf.open(sys.argv[1]).close()  # loads the asdf extensions (same for every file)
start = time.perf_counter()
total = 0.0
with rdm.open(sys.argv[1]) as model:
    for key in list(model.keys()):
        value = model[key]
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            total += float(np.asarray(value, dtype=np.float64).sum())
print(time.perf_counter() - start)
"""

READ_ASDF = r"""
import sys, time, numpy as np, asdf
asdf.open(sys.argv[1]).close()  # loads the asdf extensions (same for every file)
start = time.perf_counter()
with asdf.open(sys.argv[1]) as af:
    roman = af["roman"]
    keys = ["data", "dq", "var_rnoise" if "var_rnoise" in roman else "err"]
    total = sum(float(np.asarray(roman[k], dtype=np.float64).sum()) for k in keys)
print(time.perf_counter() - start)
"""


def blocks(path):
    """``[(tree path, dtype, shape, stored bytes, compression)]`` of every block."""
    import asdf

    rows = []
    with asdf.open(path, lazy_load=True, memmap=False) as af:

        def walk(node, prefix):
            if hasattr(node, "_source") and hasattr(node, "dtype"):
                block = af._blocks.blocks[node._source]
                compression = block.header["compression"].strip(b"\0").decode()
                rows.append(
                    (
                        prefix,
                        str(node.dtype),
                        tuple(node.shape),
                        int(block.header["used_size"]),
                        compression or "none",
                    )
                )
            elif isinstance(node, dict) or (
                hasattr(node, "items") and not hasattr(node, "shape")
            ):
                for key, value in node.items():
                    walk(value, f"{prefix}/{key}")
            elif isinstance(node, list | tuple):
                for index, value in enumerate(node):
                    walk(value, f"{prefix}[{index}]")

        walk(af.tree, "")
    return rows


def timed(python, script, path):
    """Process wall s, reading s (after the imports and asdf's extension loading,
    which cost the same for every file), peak RSS MiB of ``python -c script path``
    under /usr/bin/time -v."""
    start = time.perf_counter()
    run = subprocess.run(
        ["/usr/bin/time", "-v", python, "-c", script, path],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1]}
    rss = next(
        int(line.split()[-1])
        for line in run.stderr.splitlines()
        if "Maximum resident set size" in line
    )
    reading = float(run.stdout.split()[-1])
    return {
        "wall_s": round(wall, 2),
        "read_s": round(reading, 2),
        "peak_mib": round(rss / 1024),
    }


def codecs(path, rows=1024):
    """Stored fraction and CPU s per full plane of each codec on ``rows`` rows."""
    import asdf
    import lz4.block

    functions = {
        "lz4": lz4.block.compress,
        "zlib level 1": lambda b: zlib.compress(b, 1),
        "zlib level 6 (asdf's)": lambda b: zlib.compress(b, 6),
        "bzp2 level 9 (asdf's)": lambda b: bz2.compress(b, 9),
    }
    out = []
    with asdf.open(path, lazy_load=False, memmap=False) as af:
        for name in ("data", "err", "var_poisson", "var_rnoise"):
            plane = np.asarray(af["roman"][name])
            sample = plane[:rows].tobytes()
            scale = plane.shape[0] / rows
            for codec, compress in functions.items():
                start = time.process_time()
                stored = len(compress(sample))
                cpu = (time.process_time() - start) * scale
                out.append((name, codec, stored / len(sample), cpu))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--codecs", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--downstream-python", default=DOWNSTREAM_PY)
    args = parser.parse_args(argv)

    print(
        "| file | size MB | rdm.open + every array: reading s (all runs), process "
        "wall s, peak | asdf 'data, dq, var', downstream venv: the same |"
    )
    print("|---|---|---|---|")
    for path in args.files:
        size = os.path.getsize(path) / 1e6
        cells = []
        for python, script in (
            (sys.executable, READ_RDM),
            (args.downstream_python, READ_ASDF),
        ):
            if not os.path.exists(python):
                cells.append("skipped (no venv)")
                continue
            runs = [timed(python, script, path) for _ in range(args.repeat)]
            if "error" in runs[0]:
                cells.append(runs[0]["error"])
                continue
            reads = ", ".join(str(r["read_s"]) for r in runs)
            walls = ", ".join(str(r["wall_s"]) for r in runs)
            peak = max(r["peak_mib"] for r in runs)
            cells.append(f"{reads}; {walls}; {peak} MiB")
        print(f"| {os.path.basename(path)} | {size:.1f} | {cells[0]} | {cells[1]} |")
    for path in args.files:
        print(f"\n{os.path.basename(path)}:\n")
        print("| array | dtype | shape | stored MB | compression |")
        print("|---|---|---|---|---|")
        for name, dtype, shape, stored, compression in blocks(path):
            if stored > 100_000:
                print(
                    f"| {name} | {dtype} | {shape} | {stored / 1e6:.1f} | "
                    f"{compression} |"
                )
    if args.codecs:
        print(f"\ncodecs on 1024 rows of {os.path.basename(args.files[0])}:\n")
        print("| plane | codec | stored fraction | CPU s per plane |")
        print("|---|---|---|---|")
        for name, codec, fraction, cpu in codecs(args.files[0]):
            print(f"| {name} | {codec} | {fraction:.3f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
