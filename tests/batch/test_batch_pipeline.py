"""rip-batch with the real L1ToL2Pipeline on simulated exposures (issue acceptance).

Four small simulated exposures, one corrupt, on a 2-worker LocalCluster: three valid
L2 products, one failure reported with the file named, a non-zero exit code; a rerun
does no work for the three.
"""

import os
import shutil

import pytest
import roman_datamodels as rdm
import yaml

from romanimpreprocess.batch import exposures_from_configs, run_batch

pytest.importorskip("distributed")


def test_real_pipeline_four_exposures_one_corrupt(simulated_set, tmp_path):
    base = yaml.safe_load(open(simulated_set.config_yaml))
    configs = []
    for name in ("e1", "e2", "bad", "e4"):
        l1 = tmp_path / f"{name}_uncal.asdf"
        shutil.copy(simulated_set.l1, l1)
        if name == "bad":
            with open(l1, "r+b") as f:
                f.truncate(os.path.getsize(l1) // 3)
        cfg = tmp_path / f"{name}.yaml"
        config = dict(base, IN=str(l1), OUT=str(tmp_path / "out" / f"{name}_cal.asdf"))
        cfg.write_text(yaml.safe_dump(config))
        configs.append(str(cfg))
    (tmp_path / "out").mkdir()
    exposures = exposures_from_configs(configs)
    report = run_batch(exposures, workers=2, progress=False)
    by = {r["name"]: r for r in report.results}
    for name in ("e1", "e2", "e4"):
        assert by[name]["status"] == "done", by[name]["error"]
        with rdm.open(by[name]["output"]) as model:
            model.validate()
            assert model.meta.cal_step["ramp_fit"] == "COMPLETE"
    assert by["bad"]["status"] == "failed"
    assert "bad_uncal.asdf" in by["bad"]["error"]
    assert not os.path.exists(by["bad"]["output"])
    assert report.exit_code != 0

    mtimes = {n: os.stat(by[n]["output"]).st_mtime_ns for n in ("e1", "e2", "e4")}
    again = run_batch(exposures, workers=2, progress=False)
    by2 = {r["name"]: r for r in again.results}
    for name in ("e1", "e2", "e4"):
        assert by2[name]["status"] == "skipped"
        assert os.stat(by2[name]["output"]).st_mtime_ns == mtimes[name]
    assert again.exit_code != 0
