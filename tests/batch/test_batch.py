"""Batches on a real 2-worker LocalCluster: failures isolated, resume, killed workers."""

import json
import os

import pytest
import yaml

from romanimpreprocess.batch import exposures_from_configs, output_problem, run_batch
from romanimpreprocess.batch.cli import main
from romanimpreprocess.batch.outputs import TEMP_PREFIX, stale_temp_dirs
from tests.conftest import make_raw_model, run_python

pytest.importorskip("distributed")

STAND_IN = "tests.batch.stand_in"


def _configs(tmp_path, names, corrupt=()):
    """Small L1 exposures and one legacy YAML each; ``corrupt`` ones truncated."""
    paths = []
    for i, name in enumerate(names):
        l1 = tmp_path / "l1" / f"{name}_uncal.asdf"
        l1.parent.mkdir(exist_ok=True)
        make_raw_model(size=64, seed=i).save(l1)
        if name in corrupt:
            with open(l1, "r+b") as f:
                f.truncate(os.path.getsize(l1) // 3)
        cfg = tmp_path / "cfg" / f"{name}.yaml"
        cfg.parent.mkdir(exist_ok=True)
        cfg.write_text(
            yaml.safe_dump(
                {"IN": str(l1), "OUT": str(tmp_path / "out" / f"{name}.asdf")}
            )
        )
        paths.append(str(cfg))
    return paths


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_four_exposures_one_corrupt_then_resume(tmp_path):
    from tests.batch.stand_in import image_runner

    cfgs = _configs(tmp_path, ["e1", "e2", "bad", "e4"], corrupt=("bad",))
    exposures = exposures_from_configs(cfgs)
    report = run_batch(exposures, runner=image_runner, workers=2, progress=False)
    assert report.n_workers == 2
    by = {r["name"]: r for r in report.results}
    assert [r["name"] for r in report.results] == ["e1", "e2", "bad", "e4"]
    for name in ("e1", "e2", "e4"):
        assert by[name]["status"] == "done", by[name]["error"]
        assert output_problem(by[name]["output"], exposures[0].input) is None
    assert by["bad"]["status"] == "failed"
    assert "bad_uncal.asdf" in by["bad"]["error"]
    assert not os.path.exists(by["bad"]["output"])
    assert report.exit_code == 1
    # two worker processes shared the work
    assert len({r["worker"] for r in report.results if r["worker"]}) == 2

    mtimes = {n: os.stat(by[n]["output"]).st_mtime_ns for n in ("e1", "e2", "e4")}
    again = run_batch(exposures, runner=image_runner, workers=2, progress=False)
    by2 = {r["name"]: r for r in again.results}
    for name in ("e1", "e2", "e4"):
        assert by2[name]["status"] == "skipped"
        assert os.stat(by2[name]["output"]).st_mtime_ns == mtimes[name]
    assert by2["bad"]["status"] == "failed" and again.exit_code == 1


def test_system_exit_and_killed_worker_are_isolated(tmp_path, client):
    from tests.batch.stand_in import image_runner, misbehaving_runner

    cfgs = _configs(tmp_path, ["ok1", "exit1", "kill1", "ok2"])
    exposures = exposures_from_configs(cfgs)
    report = run_batch(
        exposures, runner=misbehaving_runner, client=client, progress=False
    )
    by = {r["name"]: r for r in report.results}
    assert by["ok1"]["status"] == by["ok2"]["status"] == "done"
    assert by["exit1"]["status"] == "failed"
    assert by["exit1"]["error"].startswith("SystemExit(-1)")
    assert by["kill1"]["status"] == "failed"
    assert "worker running this exposure died" in by["kill1"]["error"]
    # the killed write left only a hidden temporary directory, not an output
    out = by["kill1"]["output"]
    assert not os.path.exists(out)
    assert len(stale_temp_dirs(out)) == 1
    assert output_problem(out) == "output does not exist"

    # rerun with a well-behaved pipeline: the killed one runs and its leftover goes
    again = run_batch(exposures, runner=image_runner, client=client, progress=False)
    by2 = {r["name"]: r for r in again.results}
    assert by2["kill1"]["status"] == by2["exit1"]["status"] == "done"
    assert by2["ok1"]["status"] == by2["ok2"]["status"] == "skipped"
    assert stale_temp_dirs(out) == []
    leftovers = [
        n for n in os.listdir(os.path.dirname(out)) if n.startswith(TEMP_PREFIX)
    ]
    assert leftovers == []
    assert again.exit_code == 0


def test_cli_table_exit_code_report_overwrite(tmp_path, capsys):
    cfgs = _configs(tmp_path, ["a1", "a2", "bad"], corrupt=("bad",))
    report = tmp_path / "report.json"
    args = [
        str(tmp_path / "cfg"),
        "--serial",
        "--runner",
        f"{STAND_IN}:image_runner",
        "--report",
        str(report),
    ]
    assert main(args) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].split() == ["exposure", "status", "wall", "(s)", "output", "error"]
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert rows["a1"].split()[1] == "done"
    assert rows["bad"].split()[1] == "failed" and "InputFileError" in rows["bad"]
    assert "3 exposure(s): 2 done, 0 skipped, 1 failed" in out.out
    assert "[3/3]" in out.err  # progress lines on stderr (not a terminal)
    doc = json.loads(report.read_text())
    assert [r["status"] for r in doc["results"]] == ["done", "done", "failed"]

    # remove the corrupt config: a rerun has nothing to do and exits 0
    os.remove(cfgs[2])
    assert main(args) == 0
    assert "2 exposure(s): 0 done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0
    assert "2 exposure(s): 2 done, 0 skipped" in capsys.readouterr().out


def test_cli_dry_run_and_bad_command_lines(tmp_path, capsys):
    cfgs = _configs(tmp_path, ["d1"])
    assert main([cfgs[0], "--dry-run", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "d1: run (output does not exist)" in text
    assert "LocalCluster of 1 worker(s)" in text  # no more workers than exposures
    assert main([str(tmp_path / "nothing*.yaml")]) == 2
    assert "pattern matches no file" in capsys.readouterr().err
    assert main([cfgs[0], "--memory-per-exposure", "lots"]) == 2
    with pytest.raises(SystemExit) as info:
        main([cfgs[0], "--params", "p.asdf"])  # --params needs --output-dir
    assert info.value.code == 2


def test_cli_output_dir_redirects_legacy_outputs(tmp_path, capsys):
    cfgs = _configs(tmp_path, ["r1"])
    other = tmp_path / "elsewhere"
    code = main(
        [
            *cfgs,
            "--serial",
            "--runner",
            f"{STAND_IN}:image_runner",
            "--output-dir",
            str(other),
        ]
    )
    assert code == 0
    assert output_problem(str(other / "r1.asdf")) is None
    assert not (tmp_path / "out" / "r1.asdf").exists()


def test_cli_on_an_existing_scheduler(tmp_path, client, capsys):
    cfgs = _configs(tmp_path, ["s1", "s2"])
    address = client.scheduler.address
    args = [*cfgs, "--scheduler", address, "--runner", f"{STAND_IN}:image_runner"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"on scheduler {address}" in out and "2 done" in out
    # the cluster is not ours: it is still up and serving (its nannies may still be
    # bringing back a worker an earlier test killed, which takes a while under load)
    client.wait_for_workers(2, timeout=120)
    assert len(client.scheduler_info()["workers"]) == 2


def test_worker_task_module_imports_without_the_stack():
    """A dask worker unpickles the task function (runner._worker_task) before the
    task runs: that import must not load the romancal stack, which the task's first
    call (`_startup.start_worker`) loads the fast way in our own workers."""
    script = (
        "import sys, pickle\n"
        "from romanimpreprocess.batch import runner\n"
        "payload = pickle.dumps(runner._worker_task)\n"
        "for name in [m for m in sys.modules if m.startswith('romanimpreprocess')]:\n"
        "    del sys.modules[name]\n"
        "pickle.loads(payload)\n"
        "heavy = ('roman_datamodels', 'asdf', 'stpipe', 'romancal', 'astropy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert run_python(script).strip() == "[]"


def test_batch_package_names_resolve_from_their_modules():
    from romanimpreprocess import batch
    from romanimpreprocess.batch import exposures, outputs, resources, runner, task

    modules = {
        "exposures": exposures,
        "outputs": outputs,
        "resources": resources,
        "runner": runner,
        "task": task,
    }
    for name, module in batch._EXPORTS.items():
        assert getattr(batch, name) is getattr(modules[module], name)
        assert name in dir(batch)
    assert sorted(batch.__all__) == sorted(batch._EXPORTS)
    with pytest.raises(AttributeError, match="no attribute 'run_batches'"):
        batch.run_batches  # noqa: B018


def _worker_malloc_environment():
    return {k: os.environ.get(k) for k in ("MALLOC_ARENA_MAX", "RIP_PROCESS_TWEAKS")}


def test_local_cluster_workers_start_with_one_malloc_arena():
    """rip-batch's LocalCluster spawns its workers with MALLOC_ARENA_MAX=1 (glibc
    reads it at process start) and leaves the caller's dask config and environment
    as they were."""
    import dask
    from distributed import Client

    from romanimpreprocess.batch.resources import plan_local_cluster
    from romanimpreprocess.batch.runner import WORKER_PRE_SPAWN_ENV, _local_cluster

    before = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    arena_before = os.environ.get("MALLOC_ARENA_MAX")
    plan = plan_local_cluster(1 << 30, 1, workers=1)
    with _local_cluster(plan) as cluster, Client(cluster) as client:
        found = list(client.run(_worker_malloc_environment).values())
    assert found == [{"MALLOC_ARENA_MAX": "1", "RIP_PROCESS_TWEAKS": "1"}]
    assert WORKER_PRE_SPAWN_ENV == {"MALLOC_ARENA_MAX": "1"}
    assert dict(dask.config.get("distributed.nanny.pre-spawn-environ")) == before
    assert os.environ.get("MALLOC_ARENA_MAX") == arena_before


def _worker_profiling(dask_worker):
    import dask

    return (
        dask.config.get("distributed.worker.profile.enabled"),
        "profile" in dask_worker.periodic_callbacks,
    )


@pytest.mark.parametrize("dashboard", [None, ":0"])
def test_local_cluster_workers_profile_only_for_a_dashboard(dashboard):
    """Without a dashboard, the workers of rip-batch's LocalCluster do not run dask's
    statistical profiler (its 10 ms callback takes the GIL from the exposure); with
    one, dask's default (on) stands. The caller's config is left as it was."""
    import dask
    from distributed import Client

    from romanimpreprocess.batch.resources import plan_local_cluster
    from romanimpreprocess.batch.runner import _local_cluster

    before = dask.config.get("distributed.worker.profile.enabled")
    plan = plan_local_cluster(1 << 30, 1, workers=1)
    with (
        _local_cluster(plan, dashboard=dashboard) as cluster,
        Client(cluster) as client,
    ):
        found = list(client.run(_worker_profiling).values())
    wanted = dashboard is not None and before
    assert found == [(wanted, wanted)]
    assert dask.config.get("distributed.worker.profile.enabled") == before
