"""Finding the exposures of a batch from the command line (no cluster)."""

import os
import pickle

import pytest
import yaml

from romanimpreprocess.batch.exposures import (
    BatchInputError,
    expand_paths,
    exposures_from_configs,
    exposures_from_l1,
    output_name_for,
)


def _write_yaml(path, doc):
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return str(path)


def test_output_name_strips_known_l1_suffixes():
    assert output_name_for("/d/r0001_uncal.asdf") == "r0001_cal.asdf"
    assert output_name_for("/d/sim1_L1.asdf") == "sim1_cal.asdf"
    assert output_name_for("/d/plain.asdf") == "plain_cal.asdf"
    # a stem that is only the suffix is kept whole
    assert output_name_for("/d/_uncal.asdf") == "_uncal_cal.asdf"


def test_expand_paths_dirs_globs_files_dedup(tmp_path):
    for name in ("b.yaml", "a.yml", "c.txt", ".hidden.yaml"):
        (tmp_path / name).write_text("IN: x\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "z.yaml").write_text("IN: x\n")
    got = expand_paths(
        [str(tmp_path), str(tmp_path / "*.yaml"), str(sub / "z.yaml")],
        (".yaml", ".yml"),
    )
    names = [os.path.relpath(p, tmp_path) for p in got]
    # directory content sorted, hidden and other suffixes ignored, duplicates once
    assert names == ["a.yml", "b.yaml", os.path.join("sub", "z.yaml")]


def test_expand_paths_reports_every_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError) as info:
        expand_paths(
            [
                str(tmp_path / "missing.yaml"),
                str(tmp_path / "no*.yaml"),
                str(tmp_path / "empty"),
            ],
            (".yaml",),
        )
    text = str(info.value)
    assert "missing.yaml: no such file" in text
    assert "pattern matches no file" in text
    assert "holds no .yaml file" in text


def test_configs_paths_made_absolute_and_bad_configs_kept_as_errors(tmp_path):
    good = _write_yaml(tmp_path / "good.yaml", {"IN": "in/a.asdf", "OUT": "o/a.asdf"})
    not_map = _write_yaml(tmp_path / "list.yaml", "- 1\n- 2\n")
    no_out = _write_yaml(tmp_path / "noout.yaml", {"IN": "a.asdf"})
    broken = _write_yaml(tmp_path / "broken.yaml", "IN: [unclosed\n")
    exps = exposures_from_configs([good, not_map, no_out, broken], cwd=str(tmp_path))
    by = {e.name: e for e in exps}
    assert by["good"].error is None
    assert by["good"].input == str(tmp_path / "in" / "a.asdf")
    assert by["good"].output == str(tmp_path / "o" / "a.asdf")
    assert by["good"].config["OUT"] == "o/a.asdf"  # kept as written
    assert by["good"].cwd == str(tmp_path)
    assert "must hold a mapping" in by["list"].error
    assert "OUT" in by["noout"].error
    assert "not valid YAML" in by["broken"].error


def test_configs_with_same_out_are_rejected(tmp_path):
    a = _write_yaml(tmp_path / "a.yaml", {"IN": "a.asdf", "OUT": "same.asdf"})
    b = _write_yaml(tmp_path / "b.yaml", {"IN": "b.asdf", "OUT": "same.asdf"})
    with pytest.raises(BatchInputError, match="both write"):
        exposures_from_configs([a, b], cwd=str(tmp_path))


def test_config_output_equal_to_input_rejected(tmp_path):
    a = _write_yaml(tmp_path / "a.yaml", {"IN": "a.asdf", "OUT": "a.asdf"})
    with pytest.raises(BatchInputError, match="also an input"):
        exposures_from_configs([a], cwd=str(tmp_path))


def test_l1_mode_names_outputs_and_ignores_own_outputs(tmp_path):
    params = tmp_path / "p.asdf"
    params.write_bytes(b"x")
    for name in ("r1_uncal.asdf", "r2_uncal.asdf", "r1_cal.asdf"):
        (tmp_path / name).write_bytes(b"x")
    exps = exposures_from_l1([str(tmp_path)], str(params), str(tmp_path))
    # the parameter file and r1's own output (same directory) are not inputs
    assert [e.name for e in exps] == ["r1_uncal", "r2_uncal"]
    assert exps[0].output == str(tmp_path / "r1_cal.asdf")
    assert all(e.params == str(params) and e.kind == "params" for e in exps)


def test_l1_mode_same_stem_in_two_dirs_conflicts(tmp_path):
    params = tmp_path / "p.asdf"
    params.write_bytes(b"x")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "r_uncal.asdf").write_bytes(b"x")
    with pytest.raises(BatchInputError, match="both write"):
        exposures_from_l1(
            [str(tmp_path / "a"), str(tmp_path / "b")], str(params), str(tmp_path / "o")
        )


def test_l1_mode_missing_params(tmp_path):
    (tmp_path / "r.asdf").write_bytes(b"x")
    with pytest.raises(BatchInputError, match="parameter file"):
        exposures_from_l1([str(tmp_path / "r.asdf")], str(tmp_path / "no.asdf"), "o")


def test_task_dict_is_plain_and_pickles(tmp_path):
    a = _write_yaml(
        tmp_path / "a.yaml",
        {"IN": "a.asdf", "OUT": "o.asdf", "CALDIR": {"gain": "g.asdf"}},
    )
    (exp,) = exposures_from_configs([a], cwd=str(tmp_path))
    task = exp.to_task(overwrite=True, log=None)
    assert isinstance(task, dict)
    assert pickle.loads(pickle.dumps(task)) == task
    assert task["overwrite"] is True and task["config"]["CALDIR"]["gain"] == "g.asdf"
