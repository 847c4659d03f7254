"""The start-up shortcut: libyaml for the stack's manifests, nothing else changed."""

import importlib.metadata
import importlib.resources
import os

import pytest
import yaml

from romanimpreprocess import _startup
from tests.conftest import run_python


def _manifest_texts():
    """Every YAML manifest roman_datamodels and asdf parse with yaml.safe_load."""
    texts = []
    for package in ("rad", "asdf_standard", "asdf"):
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            continue
        for path in root.rglob("*.yaml"):
            if "manifest" in str(path):
                texts.append((str(path), path.read_bytes()))
    return texts


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_libyaml_gives_the_same_manifests_as_the_python_parser():
    texts = _manifest_texts()
    assert len(texts) >= 5
    for path, text in texts:
        python = yaml.load(text, Loader=yaml.SafeLoader)
        fast = yaml.load(text, Loader=yaml.CSafeLoader)
        assert fast == python, path


def test_safe_load_is_put_back():
    original = yaml.safe_load
    with _startup._safe_load_with_libyaml():
        assert yaml.safe_load("a: [1, 2]") == {"a": [1, 2]}
    assert yaml.safe_load is original


def test_import_leaves_yaml_safe_load_alone():
    code = (
        "import yaml; before = yaml.safe_load; import romanimpreprocess; "
        "import roman_datamodels.datamodels; "
        "assert yaml.safe_load is before; print('ok')"
    )
    assert run_python(code).strip() == "ok"


# What stpipe does in every process that resolves a step alias or a ``class:`` line
# (romancal-only runs included): load every ``stpipe.steps`` entry point and call it.
STPIPE_ENTRY = r"""
import gc, json, sys, time
import importlib_metadata
import yaml

watched = {"yaml.safe_load": yaml.safe_load, "yaml.load": yaml.load,
           "yaml.safe_dump": yaml.safe_dump, "gc.freeze": gc.freeze}
freeze_count = gc.get_freeze_count()
(ours,) = [ep for ep in importlib_metadata.entry_points(group="stpipe.steps")
           if ep.dist.name == "romanimpreprocess"]
before = set(sys.modules)
t0 = time.perf_counter()
steps = ours.load()()
elapsed = time.perf_counter() - t0
new = sorted(set(sys.modules) - before)
changed = [name for name, obj in watched.items()
           if obj is not eval(name, {"yaml": yaml, "gc": gc})]
from stpipe.entry_points import get_steps
listed = [s.class_alias for s in get_steps() if s.package_name == "romanimpreprocess"]
print(json.dumps({"new": new, "changed": changed, "steps": [s[1] for s in steps],
                  "listed": listed, "elapsed": elapsed, "gc_enabled": gc.isenabled(),
                  "freeze_count_same": gc.get_freeze_count() == freeze_count}))
"""


def test_stpipe_entry_point_imports_only_the_face_and_patches_nothing(tmp_path):
    import json

    from romanimpreprocess.stpipe_entry import STEPS

    out = run_python(STPIPE_ENTRY, cwd=tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    # the package face and the entry module, nothing else (of ours or of the stack)
    assert result["new"] == ["romanimpreprocess", "romanimpreprocess.stpipe_entry"]
    assert result["changed"] == []
    assert result["gc_enabled"] and result["freeze_count_same"]
    aliases = [alias for _, alias, _ in STEPS]
    assert result["steps"] == aliases
    assert sorted(result["listed"]) == sorted(aliases)  # stpipe sees every step


# The same, in a process started as ``strun``: stpipe's command line is loaded first.
STRUN_ENTRY = r"""
import gc, json, os, sys
sys.argv = [os.path.join(os.path.dirname(sys.executable), "strun"), "rip_l1l2"]
import stpipe._cli.strun  # noqa: F401 (what the strun script imports)
import yaml
from romanimpreprocess import _startup
loads = []
original_load = _startup.load_stack
_startup.load_stack = lambda: loads.append(1) or original_load()
watched = {"yaml.safe_load": yaml.safe_load, "yaml.load": yaml.load}
freeze_count = gc.get_freeze_count()
from stpipe.entry_points import get_steps
names = [ep.dist.name for ep in __import__("importlib_metadata").entry_points(
    group="stpipe.steps")]
listed = [s.class_alias for s in get_steps() if s.package_name == "romanimpreprocess"]
changed = [name for name, obj in watched.items() if obj is not eval(name, {"yaml": yaml})]
print(json.dumps({"loads": len(loads), "ours_first": names[0] == "romanimpreprocess",
                  "stack": "roman_datamodels" in sys.modules, "changed": changed,
                  "listed": listed, "gc_enabled": gc.isenabled(),
                  "freeze_count_same": gc.get_freeze_count() == freeze_count}))
"""


@pytest.mark.parametrize("tweaks", [None, "0"])
def test_strun_loads_the_stack_the_fast_way_and_patches_nothing(tmp_path, tweaks):
    import json

    env = dict(os.environ)
    env.pop(_startup.PROCESS_TWEAKS_ENV, None)
    if tweaks is not None:
        env[_startup.PROCESS_TWEAKS_ENV] = tweaks
    out = run_python(STRUN_ENTRY, env=env, cwd=tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    # loaded by our entry point when it comes before romancal's (which loads the
    # stack itself), and never with the tweaks off
    expected = int(result["ours_first"] and tweaks is None)
    assert result["loads"] == expected
    assert result["stack"]  # by romancal's entry point otherwise
    assert result["changed"] == []
    assert result["gc_enabled"] and result["freeze_count_same"]
    from romanimpreprocess.stpipe_entry import STEPS

    assert len(result["listed"]) == len(STEPS)


def test_a_strun_process_running_our_step_is_adopted(monkeypatch):
    import stpipe._cli.strun  # noqa: F401

    made = []
    monkeypatch.setattr(_startup, "_own_process", False)
    monkeypatch.setattr(_startup, "parse_each_schema_once", lambda: made.append("s"))
    monkeypatch.setattr(_startup, "set_process_environment", lambda: made.append("e"))
    monkeypatch.delenv(_startup.PROCESS_TWEAKS_ENV, raising=False)
    monkeypatch.setattr("sys.argv", ["/usr/bin/python", "-c"])
    assert not _startup.adopt_stpipe_command_line()  # not strun: a host process
    assert not _startup.process_tweaks_enabled()
    monkeypatch.setattr("sys.argv", ["/venv/bin/strun", "rip_l1l2"])
    monkeypatch.setenv(_startup.PROCESS_TWEAKS_ENV, "0")
    assert not _startup.adopt_stpipe_command_line()  # the user said no
    monkeypatch.delenv(_startup.PROCESS_TWEAKS_ENV)
    assert _startup.adopt_stpipe_command_line()
    assert _startup.process_tweaks_enabled() and sorted(made) == ["e", "s"]
    assert not _startup.adopt_stpipe_command_line()  # once


def test_importing_the_package_loads_nothing_else():
    code = (
        "import sys; before = set(sys.modules); import romanimpreprocess; "
        "print(sorted(set(sys.modules) - before)); "
        "print(romanimpreprocess.__version__)"
    )
    new, version = run_python(code).strip().splitlines()
    assert new == "['romanimpreprocess']"
    assert version == importlib.metadata.version("romanimpreprocess")


def test_process_tweaks_only_in_our_processes(monkeypatch):
    """A host process keeps its gc and malloc; ours (or the option) get the tweaks."""
    monkeypatch.delenv(_startup.PROCESS_TWEAKS_ENV, raising=False)
    monkeypatch.setattr(_startup, "_own_process", False)
    assert not _startup.process_tweaks_enabled()
    monkeypatch.setenv(_startup.PROCESS_TWEAKS_ENV, "1")
    assert _startup.process_tweaks_enabled()
    monkeypatch.setattr(_startup, "_own_process", True)
    monkeypatch.setenv(_startup.PROCESS_TWEAKS_ENV, "0")
    assert not _startup.process_tweaks_enabled()


HOST_RUN = r"""
import gc, json, sys
calls = []
for name in ("freeze", "unfreeze"):
    original = getattr(gc, name)
    setattr(gc, name, lambda original=original, name=name: calls.append(name) or original())
from romanimpreprocess import _memory
from romanimpreprocess.dq_init import DQInitStep
used = []
original_reuse = _memory.reuse_freed_memory
import romanimpreprocess.stpipe.core as core
core.reuse_freed_memory = lambda **kw: used.append(1) or original_reuse(**kw)
DQInitStep.call(sys.argv[1], override_mask=sys.argv[2])
from asdf._jsonschema.validators import RefResolver
held = RefResolver._get_subschemas_cache.cache_info().currsize
print(json.dumps({"gc": calls, "malloc": len(used), "resolvers_held": held}))
"""


@pytest.mark.parametrize("tweaks", [None, "1"])
def test_a_step_in_a_host_process_leaves_gc_and_malloc_alone(simulated_set, tweaks):
    """A host process running a step: no gc freeze/unfreeze, no mallopt, asdf's
    caches left as they are.

    (An unfreeze would undo the host's own ``gc.freeze``; mallopt turns glibc's
    dynamic thresholds off for good.) With ``RIP_PROCESS_TWEAKS=1`` all happen: the
    resolvers the run's validations left in asdf's caches are let go at its end.
    """
    import json

    env = {k: v for k, v in os.environ.items() if k != "RIP_PROCESS_TWEAKS"}
    if tweaks:
        env["RIP_PROCESS_TWEAKS"] = tweaks
    l1, mask = simulated_set.l1, simulated_set.caldir["mask"]
    out = run_python(HOST_RUN, l1, mask, env=env)
    result = json.loads(out.strip().splitlines()[-1])
    if tweaks:
        assert "freeze" in result["gc"] and "unfreeze" in result["gc"]
        assert result["malloc"] == 1
        assert result["resolvers_held"] == 0
    else:
        assert result["gc"] == [] and result["malloc"] == 0
        assert result["resolvers_held"] > 0  # the step did validate: nothing cleared


def test_forget_schema_resolvers_lets_the_validations_resolvers_go(monkeypatch):
    """Each asdf validation makes a resolver that asdf's class-level caches keep
    alive; `forget_schema_resolvers` empties those caches and the resolvers go."""
    import gc
    import io
    import weakref

    import asdf
    import numpy as np
    from asdf._jsonschema.validators import RefResolver

    made = []
    original_init = RefResolver.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(RefResolver, "__init__", recording_init)
    for _ in range(3):
        buffer = io.BytesIO()
        asdf.AsdfFile({"plane": np.arange(4.0)}).write_to(buffer)
        buffer.seek(0)
        with asdf.open(buffer):
            pass
    monkeypatch.undo()
    gc.collect()
    assert len(made) >= 3
    assert any(ref() is not None for ref in made)  # kept by the caches
    assert _startup.forget_schema_resolvers()
    gc.collect()
    assert [ref() for ref in made] == [None] * len(made)
    assert RefResolver._get_subschemas_cache.cache_info().currsize == 0
    assert RefResolver._find_in_subschemas.cache_info().currsize == 0


def test_strun_running_our_step_gets_the_process_savings(simulated_set, tmp_path):
    """The real ``strun``: the run says it adopted the process, and the step ran."""
    import subprocess
    import sys

    strun = os.path.join(os.path.dirname(sys.executable), "strun")
    env = {k: v for k, v in os.environ.items() if k != "RIP_PROCESS_TWEAKS"}
    out = tmp_path / "dq_init.asdf"
    command = [
        strun, "rip_dq_init", simulated_set.l1,
        f"--override_mask={simulated_set.caldir['mask']}", f"--output_file={out}",
    ]  # fmt: skip
    for tweaks, adopted in ((None, True), ("0", False)):
        if tweaks:
            env["RIP_PROCESS_TWEAKS"] = tweaks
        run = subprocess.run(command, capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        assert ("process-level savings are on" in run.stderr) is adopted
        assert out.exists()
        out.unlink()


def _main_blocks():
    """``(module path, calls in its if __name__ == "__main__": block)`` of the package."""
    import ast
    from pathlib import Path

    root = Path(_startup.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            test = getattr(node, "test", None)
            if (
                isinstance(node, ast.If)
                and isinstance(test, ast.Compare)
                and getattr(test.left, "id", None) == "__name__"
            ):
                calls = [
                    n.func.id
                    for n in ast.walk(node)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                ]
                yield path.relative_to(root.parent), calls


def test_every_command_line_sets_up_its_process_first():
    """``python -m`` programs call start_cli before their main; scripts launch via it."""
    blocks = dict(_main_blocks())
    for module in ("L1_to_L2/gen_cal_image.py", "L1_to_L2/gen_noise_image.py"):
        assert f"romanimpreprocess/{module}" in {str(k) for k in blocks}
    for path, calls in blocks.items():
        assert "start_cli" in calls, f"{path}: __main__ block without start_cli()"
        main = calls.index("main") if "main" in calls else len(calls)
        assert calls.index("start_cli") < main, f"{path}: start_cli() after main()"
    scripts = importlib.metadata.distribution("romanimpreprocess").entry_points
    console = [ep for ep in scripts if ep.group == "console_scripts"]
    assert console
    for ep in console:
        assert ep.value.startswith("romanimpreprocess._startup:"), ep
        assert callable(ep.load())


def test_our_processes_set_the_libraries_environment_unless_the_user_did(
    monkeypatch,
):
    """OpenMP's threads sleep between kernels; a value the user set is kept."""
    assert _startup.PROCESS_ENVIRONMENT["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # the test's own value comes back
    monkeypatch.delenv("OMP_WAIT_POLICY")
    _startup.set_process_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _startup.set_process_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_start_cli_sets_the_libraries_environment():
    """A process started as ours has the policy set before any kernel loads."""
    script = (
        "from romanimpreprocess._startup import start_cli; start_cli();"
        "import os, sys; sys.stdout.write(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert run_python(script, env=env) == "PASSIVE"


@pytest.mark.parametrize("tweaks", ["0", "1"])
def test_only_our_batch_workers_keep_memory_between_runs(monkeypatch, tweaks):
    """rip-batch's own workers (tweaks on) keep it; a worker we were given does not."""
    monkeypatch.setattr(_startup, "_own_process", False)
    monkeypatch.setattr(_startup, "_batch_worker", False)
    monkeypatch.setattr(_startup, "start_cli", lambda: None)
    monkeypatch.setenv(_startup.PROCESS_TWEAKS_ENV, tweaks)
    assert not _startup.keeps_memory_between_runs()
    _startup.start_worker()
    assert _startup.keeps_memory_between_runs() == (tweaks == "1")


@pytest.mark.parametrize("enabled", [True, False])
def test_start_cli_imports_the_stack_without_collections(enabled):
    """No collection runs while the stack is imported; its objects are frozen
    afterwards and the collector is left as it was found."""
    script = (
        "import gc, sys\n"
        f"{'' if enabled else 'gc.disable()'}\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "from romanimpreprocess._startup import start_cli\n"
        "before = len(runs)\n"
        "start_cli()\n"
        "assert 'roman_datamodels.datamodels' in sys.modules\n"
        "runs = len(runs) - before\n"
        "sys.stdout.write(f'{runs} {gc.get_freeze_count()} {gc.isenabled()}')\n"
    )
    runs, frozen, still_enabled = run_python(script).split()
    assert int(runs) == 0
    assert int(frozen) > 100_000
    assert still_enabled == str(enabled)


def _roman_schema_uris(count=12):
    import asdf

    manager = asdf.get_config().resource_manager
    uris = sorted(uri for uri in manager if "datamodels/roman/schemas/" in uri)
    assert len(uris) >= count
    return uris[:count]


def test_each_schema_is_loaded_once_and_handed_out_as_a_copy():
    from asdf import schema

    original = schema._make_schema_loader
    loads = []

    def counting_loader():
        load = original()

        def counted(url):
            loads.append(url)
            return load(url)

        return counted

    once = _startup._SchemaLoaderOnce(counting_loader)
    fresh = original()
    uris = _roman_schema_uris()
    for _ in range(3):
        load = once()  # a new loader each time, as each validation makes one
        for uri in uris:
            assert load(uri) == fresh(uri)
    assert sorted(loads) == sorted(uris)  # read and parsed once each
    # a copy each time: what one caller changes, the next one does not see
    first, _ = once()(uris[0])
    first["id"] = "changed"
    first.setdefault("properties", {})["added"] = {}
    second, _ = once()(uris[0])
    assert second == fresh(uris[0])[0]


def test_validation_still_refuses_an_invalid_tree_with_schemas_loaded_once(
    monkeypatch,
):
    import roman_datamodels.datamodels as dm
    from asdf import schema
    from asdf.exceptions import ValidationError

    # put back after the test
    monkeypatch.setattr(schema, "_make_schema_loader", schema._make_schema_loader)
    assert _startup.parse_each_schema_once()
    installed = schema._make_schema_loader
    assert isinstance(installed, _startup._SchemaLoaderOnce)
    assert _startup.parse_each_schema_once()  # a second call changes nothing
    assert schema._make_schema_loader is installed
    for _ in range(2):  # the second validation runs on the documents kept
        model = dm.ImageModel.create_fake_data(shape=(8, 8))
        model.validate()
        model.meta.exposure.type = 12345  # not a string
        with pytest.raises(ValidationError, match="12345 is not of type 'string'"):
            model.validate()
    assert installed._loaded  # the documents were kept


def test_only_our_programs_load_schemas_once():
    code = (
        "import roman_datamodels.datamodels\n"
        "from asdf import schema\n"
        "plain = type(schema._make_schema_loader).__name__\n"
        "from romanimpreprocess._startup import start_cli\n"
        "start_cli()\n"
        "print(plain, type(schema._make_schema_loader).__name__)\n"
    )
    assert run_python(code).split() == ["function", "_SchemaLoaderOnce"]


def test_start_cli_runs_crds_init_at_its_first_use():
    """In our programs stpipe's crds imports leave the best-references machinery
    out until a name of the package is asked for; then the package is whole."""
    out = run_python(
        "import sys\n"
        "from romanimpreprocess._startup import start_cli\n"
        "start_cli()\n"
        "import stpipe.crds_client, stpipe.pipeline\n"
        "print('crds.bestrefs' in sys.modules, 'requests' in sys.modules)\n"
        "import crds, importlib.metadata\n"
        "assert crds.__version__ == importlib.metadata.version('crds')\n"
        "print('crds.bestrefs' in sys.modules, type(crds).__name__)\n"
        "from crds import data_file\n"
        "assert callable(crds.getreferences) and callable(data_file.get_header)\n"
        "assert crds.log is sys.modules['crds.core.log']\n"
    )
    assert out.split() == ["False", "False", "True", "module"]


def test_crds_init_on_first_use_from_two_threads():
    """Two threads asking at once: the package's __init__ runs once, both answered."""
    out = run_python(
        "import sys, threading\n"
        "from romanimpreprocess._startup import defer_crds_init\n"
        "assert defer_crds_init()\n"
        "import crds.core.config\n"
        "runs = []\n"
        "loader = sys.modules['crds'].__spec__.loader\n"
        "exec_module = loader.exec_module\n"
        "loader.exec_module = lambda m: (runs.append(1), exec_module(m))\n"
        "seen = []\n"
        "threads = [threading.Thread(target=lambda: seen.append(crds.getreferences))"
        " for _ in range(4)]\n"
        "import crds\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(runs), len(seen), len(set(map(id, seen))))\n"
    )
    assert out.split() == ["1", "4", "1"]


def test_crds_is_left_alone_outside_our_programs():
    """Importing the package (a user's process) or a crds imported already: as is."""
    out = run_python(
        "import sys\n"
        "import romanimpreprocess.pipeline\n"
        "print('crds.bestrefs' in sys.modules, type(sys.modules['crds']).__name__)\n"
        "from romanimpreprocess._startup import defer_crds_init\n"
        "print(defer_crds_init(), type(sys.modules['crds']).__name__)\n"
    )
    assert out.split() == ["True", "module", "False", "module"]
