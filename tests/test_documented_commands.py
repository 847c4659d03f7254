"""Every command line shown in README.md and docs/running.rst runs as documented.

The commands are read from the documents themselves (their code blocks), so a command
added to the docs is tested, or this test fails until it is. Each runs in a fresh
directory holding the simulated set under the names the docs use; it must exit 0 and
leave a product that opens and validates (or, for ``--help``, print the parameters).
The docs themselves must build with Sphinx, warnings being errors (``tox -e docs``).
"""

import os
import re
import shutil
import subprocess
import sys

import asdf
import pytest
import roman_datamodels as rdm
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
DOCUMENTS = ("README.md", os.path.join("docs", "running.rst"))
COMMAND_STARTS = ("strun ", "rip-", "python -m ", "from romanimpreprocess")

# file names used in the docs -> CALDIR key of the simulated set
REFERENCE_NAMES = {
    "mask.asdf": "mask",
    "saturation.asdf": "saturation",
    "dark.asdf": "dark",
    "read.asdf": "read",
    "gain.asdf": "gain",
    "linearity.asdf": "linearitylegendre",
    "ipc4d.asdf": "ipc4d",
    "flat.asdf": "flat",
    "biascorr.asdf": "biascorr",
}


def _code_blocks(path):
    """The code blocks of a Markdown (fenced) or reST (``::`` literal) document."""
    text = open(os.path.join(ROOT, path)).read()
    if path.endswith(".md"):
        return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            i += 1
            block = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                block.append(lines[i])
                i += 1
            blocks.append(_dedent(block))
        else:
            i += 1
    return blocks


def _dedent(lines):
    body = [line for line in lines if line.strip()]
    if not body:
        return ""
    cut = min(len(line) - len(line.lstrip()) for line in body)
    return "\n".join(line[cut:] for line in lines).strip("\n")


def documented_commands():
    """``(document, command)`` for every command line and Python snippet shown."""
    found = []
    for document in DOCUMENTS:
        for block in _code_blocks(document):
            if block.lstrip().startswith("from romanimpreprocess"):
                found.append((document, block.strip()))
                continue
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                command = line.split("  #")[0].strip()
                if command.startswith(COMMAND_STARTS):
                    found.append((document, command))
    return found


# Snippets shown with placeholders (the driver's c1/c2 configs), each run unchanged by
# another test: they are checked there, on real files.
COVERED_ELSEWHERE = {
    "from romanimpreprocess.from_sim import sim_to_isim": (
        "tests/from_sim/test_driver_workflow.py"
    ),
}
COMMANDS = [
    (document, command)
    for document, command in documented_commands()
    if not any(command.startswith(start) for start in COVERED_ELSEWHERE)
]


def test_the_documents_show_commands():
    """The extraction finds the commands we know are there (it could silently miss)."""
    shown = [command for _, command in COMMANDS]
    assert any(c.startswith("strun rip_l1l2 --legacy_config=") for c in shown)
    assert any("gen_cal_image config.yaml" in c for c in shown)
    assert any(c.startswith("from romanimpreprocess") for c in shown)
    assert len(shown) >= 10
    every = [command for _, command in documented_commands()]
    for start, test in COVERED_ELSEWHERE.items():
        assert any(c.startswith(start) for c in every), start
        assert os.path.exists(os.path.join(ROOT, test)), test


@pytest.fixture(scope="module")
def workspace(simulated_set, tmp_path_factory):
    """The simulated set under the documents' file names, plus params.asdf, ramp.asdf."""
    from romanimpreprocess.dq_init import DQInitStep
    from romanimpreprocess.pipeline import legacy

    work = tmp_path_factory.mktemp("documented")
    for name in ("in_uncal.asdf", "exposure_uncal.asdf"):
        shutil.copy(simulated_set.l1, work / name)
    shutil.copy(simulated_set.wcs_header, work / "in_uncal_asdf_wcshead.txt")
    caldir = {}
    for name, key in REFERENCE_NAMES.items():
        shutil.copy(simulated_set.caldir[key], work / name)
        caldir[key] = name
    caldir["linearitylegendre"] = "linearity.asdf"
    (work / "out").mkdir()
    config = legacy.load_config(simulated_set.config_yaml)
    config.update(
        IN="in_uncal.asdf",
        OUT="out/config_cal.asdf",
        FITSWCS="in_uncal_asdf_wcshead.txt",
        CALDIR=caldir,
        FITSOUT=True,
    )
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        ramp = DQInitStep.call("in_uncal.asdf", override_mask="mask.asdf")
        ramp.save("ramp.asdf")
    finally:
        os.chdir(cwd)
    return work


def _fresh_copy(workspace, tmp_path):
    """A copy of the workspace; params.asdf rewritten there (it holds absolute paths)."""
    from romanimpreprocess.pipeline import legacy

    work = tmp_path / "work"
    shutil.copytree(workspace, work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert legacy.convert_main(["config.yaml", "params.asdf"]) == 0
    finally:
        os.chdir(cwd)
    return work


def _files(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = os.stat(path).st_mtime_ns
    return out


@pytest.mark.parametrize(
    ("document", "command"), COMMANDS, ids=[c[:60] for _, c in COMMANDS]
)
def test_documented_command_runs(document, command, workspace, tmp_path):
    work = _fresh_copy(workspace, tmp_path)
    command = command.replace("/path/to/IN.asdf", str(work / "in_uncal.asdf"))
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env["STPIPE_DISABLE_CRDS_STEPPARS"] = "true"
    before = _files(work)
    if command.startswith("from romanimpreprocess"):
        argv = [sys.executable, "-c", command]
    else:
        argv = ["bash", "-c", command.replace("python -m", f"{sys.executable} -m")]
    proc = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, (document, command, proc.stderr[-3000:])
    if "--help" in command:
        assert "legacy_config" in proc.stdout + proc.stderr
        return
    after = _files(work)
    written = [
        name
        for name, stamp in after.items()
        if name.endswith(".asdf") and before.get(name) != stamp
    ]
    assert written, f"{command}: no product written"
    for name in written:
        if name == "params.asdf":  # a parameter file, not a data product
            with asdf.open(work / name) as af:
                assert af.tree["class"].endswith("L1ToL2Pipeline")
            continue
        with rdm.open(work / name) as model:
            model.validate()
    if (
        "--legacy_config=config.yaml" in command
        or "gen_cal_image config.yaml" in command
    ):
        # OUT of the YAML, with the FITS copy it asks for
        assert "out/config_cal.asdf" in written
        assert (work / "out" / "config_cal_asdf_to.fits").exists()


def test_docs_build_without_warnings(tmp_path):
    """``sphinx-build -W`` (what ``tox -e docs`` runs) succeeds."""
    sphinx = shutil.which("sphinx-build", path=BIN)
    if sphinx is None:
        pytest.fail("sphinx-build is not installed: it is part of the test extra")
    proc = subprocess.run(
        [sphinx, "-W", "-q", "-b", "html", os.path.join(ROOT, "docs"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
