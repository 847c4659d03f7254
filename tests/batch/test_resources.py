"""Memory estimate and LocalCluster sizing (pure arithmetic, no cluster)."""

import pytest

from romanimpreprocess.batch import resources
from romanimpreprocess.batch.resources import (
    GIB,
    estimate_exposure_memory,
    input_shape,
    parse_bytes,
    plan_local_cluster,
)
from tests.conftest import make_raw_model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6GB", 6 * 10**9),
        ("6 GiB", 6 * 2**30),
        ("512MiB", 512 * 2**20),
        ("2.5e9", 2_500_000_000),
        ("100k", 100_000),
        (1234, 1234),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "6 parsecs", "-1GB", "0"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="memory size"):
        parse_bytes(text)


def test_estimate_is_linear_in_resultants_and_pixels():
    a = estimate_exposure_memory((6, 1024, 1024))
    b = estimate_exposure_memory((12, 1024, 1024))
    c = estimate_exposure_memory((18, 1024, 1024))
    assert b - a == c - b == resources.PER_PIXEL_RESULTANT * 6 * 1024 * 1024
    d = estimate_exposure_memory((6, 2048, 2048))
    assert d - resources.BASE == 4 * (a - resources.BASE)


def test_input_shape_reads_without_arrays(tmp_path):
    path = tmp_path / "r.asdf"
    make_raw_model(size=64).save(path)
    assert input_shape(str(path)) == (5, 64, 64)
    assert input_shape(str(tmp_path / "missing.asdf")) is None
    junk = tmp_path / "junk.asdf"
    junk.write_text("not asdf")
    assert input_shape(str(junk)) is None


def test_plan_fits_memory_and_cores():
    # 10 GiB budget, 3 GiB per exposure -> 3 fit; 8 cores; 100 tasks
    plan = plan_local_cluster(3 * GIB, 100, cores=8, memory=10 * GIB)
    assert plan.n_workers == 3
    assert plan.n_workers * plan.per_exposure <= 10 * GIB
    assert plan.memory_limit >= plan.per_exposure
    # cores limit
    assert plan_local_cluster(GIB, 100, cores=2, memory=64 * GIB).n_workers == 2
    # no more workers than tasks
    assert plan_local_cluster(GIB, 1, cores=8, memory=64 * GIB).n_workers == 1
    # nothing fits: still one worker, with a limit of at least one exposure
    plan = plan_local_cluster(20 * GIB, 5, cores=8, memory=10 * GIB)
    assert plan.n_workers == 1 and plan.memory_limit >= 20 * GIB


def test_plan_requested_workers_win_with_warning(caplog):
    plan = plan_local_cluster(4 * GIB, 10, workers=3, cores=2, memory=8 * GIB)
    assert plan.n_workers == 3
    assert "exceeds the memory budget" in caplog.text
