"""Remake the legacy goldens in ``tests/golden/legacy/`` with romanimpreprocess 1.0.0.

The legacy-parity tests compare our ``legacy_compat`` code paths with what the legacy
package returned for fixed small inputs, stored in ``tests/golden/legacy/*.npz``
(``tests/linearity/legacy.py`` explains the mechanism). This script runs those tests
in writing mode: each makes its inputs, runs its legacy snippet with the legacy
python, stores inputs and outputs, then compares as usual.

Usage::

    python bench/make_legacy_goldens.py            # legacy venv: bench/.venv-legacy
    python bench/make_legacy_goldens.py --legacy-python /path/to/python

The legacy venv is created (``romanimpreprocess==1.0.0``) by ``bench/run_all.py`` if
missing; this script only uses it. Regenerate after changing a test's inputs or its
legacy snippet, then commit the ``.npz`` files.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The tests that read a legacy golden (tests/linearity/legacy.py: legacy_case).
GOLDEN_TESTS = [
    "tests/ramp_fitting/test_legacy_parity.py::test_legacy_compat_matches_legacy",
    (
        "tests/linearity/test_linearity.py::"
        "test_legacy_compat_matches_legacy_multilin_bit_for_bit"
    ),
    "tests/ipc/test_ipc.py::test_legacy_compat_matches_legacy_correct_cube_bit_for_bit",
    "tests/sky/test_sky_legacy.py",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--legacy-python",
        default=str(REPO / "bench" / ".venv-legacy" / "bin" / "python"),
        help="python of a venv with romanimpreprocess==1.0.0",
    )
    args = parser.parse_args(argv)
    legacy = Path(args.legacy_python)
    if not legacy.exists():
        sys.stderr.write(
            f"{legacy} does not exist: create it with `python -m venv bench/.venv-legacy"
            " && bench/.venv-legacy/bin/pip install romanimpreprocess==1.0.0`\n"
        )
        return 2
    version = "import importlib.metadata as m; print(m.version('romanimpreprocess'))"
    check = subprocess.run(
        [str(legacy), "-c", version], capture_output=True, text=True, cwd="/"
    )
    if check.stdout.strip() != "1.0.0":
        sys.stderr.write(
            f"{legacy} has romanimpreprocess {check.stdout.strip() or '?'}, not 1.0.0\n"
        )
        return 2
    env = dict(os.environ, RIP_WRITE_LEGACY_GOLDENS="1", RIP_LEGACY_PYTHON=str(legacy))
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0"]
    return subprocess.run([*cmd, *GOLDEN_TESTS], cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
