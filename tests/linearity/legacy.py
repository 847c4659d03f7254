"""Run a snippet of the legacy package (romanimpreprocess 1.0.0) on arrays.

The legacy package lives in ``bench/.venv-legacy`` (created by ``bench/run_all.py``);
tests that use it are skipped when it is absent (e.g. on CI). The snippet runs in a
separate process in an empty directory, so it imports the legacy package, never ours.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

LEGACY_PY = Path(__file__).resolve().parents[2] / "bench" / ".venv-legacy" / "bin"
LEGACY_PY = LEGACY_PY / "python"

needs_legacy = pytest.mark.skipif(
    not LEGACY_PY.exists(), reason="legacy venv bench/.venv-legacy not installed"
)


def run_legacy(workdir, script, **arrays):
    """Run ``script`` with the legacy python; return the dict it saves.

    ``arrays`` are available to the script as ``inp[name]``; the script stores its
    results in the dict ``out``.
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
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(workdir / "out.npz"))
