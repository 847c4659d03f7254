"""Smoke test of the benchmark script on a small frame (benchmarks are not tests)."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_run_all_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    import run_all

    code = run_all.main(
        [
            "--size",
            "128",
            "--patterns",
            "survey6",
            "--smoke",
            "--skip-likely",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    ours = results["survey6"]["ours_optimal"]
    assert ours["returncode"] == 0
    assert ours["wall_s"] > 0
    assert set(ours["steps"]) >= {"dq_init", "ramp_fit", "sky"}
    assert Path(ours["output"]).exists()
    sys.modules.pop("run_all", None)


def test_profile_run_reports_every_step(simulated_set, tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.syspath_prepend(str(BENCH))
    import profile_run

    with open(simulated_set.config_yaml) as f:
        config = yaml.safe_load(f)
    config["OUT"] = str(tmp_path / "profiled_cal.asdf")
    cfg = tmp_path / "profiled.yaml"
    cfg.write_text(yaml.safe_dump(config))
    from romanimpreprocess import _startup

    # profile_run sets the process up as the CLI does (start_cli): undone afterwards
    monkeypatch.setattr(_startup, "_own_process", _startup._own_process)
    profile_run.ROWS.clear()
    assert profile_run.main([str(cfg), "--markdown", "--main-thread"]) == 0
    assert _startup.process_tweaks_enabled()
    parts = [row["part"] for row in profile_run.ROWS]
    for step in ("dq_init", "saturation", "ipc", "ramp_fit", "flatfield", "sky"):
        assert f"step {step}" in parts
    assert "write the L2" in parts
    whole = profile_run.ROWS[-1]
    assert whole["part"] == "whole pipeline run"
    steps = sum(r["wall"] for r in profile_run.ROWS if r["part"].startswith("step "))
    assert 0 < steps <= whole["wall"]
    assert all(r["peak"] >= r["rss"] for r in profile_run.ROWS if "rss" in r)
    assert (tmp_path / "profiled_cal.asdf").exists()
    # the main thread's CPU time is part of the process's
    assert all(r["main"] <= r["user"] + r["sys"] + 0.05 for r in profile_run.ROWS)
    out = capsys.readouterr().out
    assert "| step ramp_fit |" in out
    assert "| main thread s |" in out
    sys.modules.pop("profile_run", None)
