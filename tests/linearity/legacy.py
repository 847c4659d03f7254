"""Legacy goldens: what romanimpreprocess 1.0.0 returned for fixed small inputs.

A legacy-parity test names a case, the snippet of legacy code it runs and how to make
its inputs. The case's inputs and the legacy's outputs are stored once in
``tests/golden/legacy/<case>.npz`` (with the snippet's text), so the comparison runs
in every ``make test``, without the legacy package. The test feeds the stored inputs
to our code and compares with the stored outputs.

The goldens are (re)made by ``bench/make_legacy_goldens.py``: it runs the
legacy-parity tests with ``RIP_WRITE_LEGACY_GOLDENS=1``, in which mode `legacy_case`
makes the inputs, runs the snippet with the legacy python (``bench/.venv-legacy``,
romanimpreprocess==1.0.0) in an empty directory, so that it imports the legacy
package and never ours, and writes the file. A snippet that no longer matches the
stored one fails the test: the golden would not be what the test says it is.
"""

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "golden" / "legacy"
LEGACY_PY = Path(
    os.environ.get(
        "RIP_LEGACY_PYTHON", REPO / "bench" / ".venv-legacy" / "bin" / "python"
    )
)
WRITE = os.environ.get("RIP_WRITE_LEGACY_GOLDENS", "") == "1"


@dataclass
class LegacyCase:
    """Stored inputs and the legacy's outputs of one case."""

    inputs: dict
    outputs: dict


def run_legacy(workdir, script, **arrays):
    """Run ``script`` with the legacy python; return the dict it saves.

    ``arrays`` are available to the script as ``inp[name]``; the script stores its
    results in the dict ``out``. The script runs in ``workdir`` (files it writes
    there, such as reference files made from ``inp``, are seen by relative name).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(workdir / "inp.npz", **arrays)
    code = (
        "import numpy as np\n"
        "inp = dict(np.load('inp.npz'))\n"
        "out = {}\n" + script + "\nnp.savez('out.npz', **out)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    proc = subprocess.run(
        [str(LEGACY_PY), "-c", code],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(workdir / "out.npz"))


def golden_path(name):
    return GOLDEN_DIR / f"{name}.npz"


def legacy_case(name, script, make_inputs):
    """The inputs and legacy outputs of case ``name`` (module docstring).

    Parameters
    ----------
    name : str
        Case name: the golden file is ``tests/golden/legacy/<name>.npz``.
    script : str
        Legacy snippet (see `run_legacy`).
    make_inputs : callable
        ``make_inputs() -> dict`` of arrays (and scalars); called only when the
        golden is written.
    """
    path = golden_path(name)
    if WRITE:
        inputs = {k: np.asarray(v) for k, v in make_inputs().items()}
        with tempfile.TemporaryDirectory() as tmp:
            outputs = run_legacy(tmp, script, **inputs)
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            script=np.array(script),
            **{f"in.{k}": v for k, v in inputs.items()},
            **{f"out.{k}": v for k, v in outputs.items()},
        )
    if not path.exists():
        pytest.fail(f"{path} is missing: run bench/make_legacy_goldens.py")
    with np.load(path) as stored:
        if str(stored["script"]) != script:
            pytest.fail(
                f"{path} was made by another legacy snippet than the test's: "
                "run bench/make_legacy_goldens.py"
            )
        inputs = {k[3:]: stored[k] for k in stored.files if k.startswith("in.")}
        outputs = {k[4:]: stored[k] for k in stored.files if k.startswith("out.")}
    return LegacyCase(inputs, outputs)
