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
