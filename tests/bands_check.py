"""Shared check of the ramp steps' row bands: banded == whole, bit for bit.

``ramp_inputs`` runs the pipeline's ramp steps one after the other on the simulated
exposure (128 x 128, real geometry) and keeps the ramp each step receives;
`assert_banded_equals_whole` runs one step on it whole (``process``) and in bands of
``height`` rows with the plan's halo (as the pipeline does: each band a copy of its
rows, only the kept rows written back) and compares every array.

`run_simulated` runs the whole pipeline on the simulation's legacy YAML, `read_l2`
reads the L2 it wrote, and `no_thread_left` checks that the threads a run starts
beside its bands are gone.
"""

import copy
import threading

import asdf
import numpy as np

from romanimpreprocess.datamodels.l1 import open_l1, raw_to_ramp
from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy
from romanimpreprocess.stpipe.bands import Band

RAMP_STEPS = (
    "dq_init",
    "saturation",
    "refpix",
    "biascorr",
    "dark_decay",
    "linearity",
    "ipc",
    "ramp_fit",
)
# Band heights: single rows, a few rows, heights that do not divide 128, all of it.
HEIGHTS = (1, 3, 37, 50, 128)
IMAGE_ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise")


def run_simulated(simulated_set, out, keys=None, **parameters):
    """Run the simulation's legacy config (+ ``keys``) with ``OUT = out``."""
    config = legacy.load_config(simulated_set.config_yaml)
    config.update(keys or {})
    config["OUT"] = str(out)
    pipeline, path = L1ToL2Pipeline.from_legacy_config(config, **parameters)
    pipeline.run(path)


def read_l2(out, names):
    """The arrays ``names`` of the L2 ``out``, and its ``meta.ref_file`` ("ref_file")."""
    with asdf.open(out, lazy_load=False) as af:
        tree = af.tree["roman"]
        result = {k: np.array(tree[k]) for k in names}
        result["ref_file"] = dict(tree["meta"]["ref_file"])
    return result


def no_thread_left(prefix):
    """True when no live thread's name starts with ``prefix``."""
    return not any(t.name.startswith(prefix) for t in threading.enumerate())


def configured_pipeline(simulated_set):
    """`L1ToL2Pipeline` configured by the simulation's legacy YAML."""
    config = legacy.load_config(simulated_set.config_yaml)
    pipeline, _ = L1ToL2Pipeline.from_legacy_config(config)
    return pipeline


def ramp_inputs(simulated_set, guide_window=(20, 30, 40, 47)):
    """``{step name: ramp it receives}`` along the ramp steps (each a new copy).

    A guide window is set so that dq_init flags one (a band boundary crosses it).
    """
    pipeline = configured_pipeline(simulated_set)
    raw = open_l1(simulated_set.l1)
    for key, value in zip(
        ("xstart", "xstop", "ystart", "ystop"), guide_window, strict=True
    ):
        raw.meta.guide_star[f"window_{key}"] = value
    model = raw_to_ramp(raw)
    inputs = {}
    for name in RAMP_STEPS:
        inputs[name] = copy.deepcopy(model)
        if name != "ramp_fit":
            model = getattr(pipeline, name).process(model)
    return pipeline, inputs


def run_in_bands(step, model, height):
    """``step`` on ``model`` in bands of ``height`` rows (what the pipeline does)."""
    plan = step.band_plan(model)
    ny = model.data.shape[1]
    data = np.array(model.data)
    groupdq = np.array(model.groupdq)
    pixeldq = np.array(model.pixeldq)
    out_data, out_groupdq, out_pixeldq = data.copy(), groupdq.copy(), pixeldq.copy()
    for r0 in range(0, ny, height):
        r1 = min(ny, r0 + height)
        held = slice(max(0, r0 - plan.halo), min(ny, r1 + plan.halo))
        band = Band(
            data=data[:, held].copy(),
            groupdq=groupdq[:, held].copy(),
            pixeldq=pixeldq[held].copy(),
            amp33=model.amp33[:, held],
            rows=held,
            inner=slice(r0, r1),
            ny=ny,
        )
        plan.apply(band)
        kept = band.inner_local
        out_data[:, r0:r1] = band.data[:, kept]
        out_groupdq[:, r0:r1] = band.groupdq[:, kept]
        out_pixeldq[r0:r1] = band.pixeldq[kept]
    model.data, model.groupdq, model.pixeldq = out_data, out_groupdq, out_pixeldq
    return plan.finish(model)


def assert_banded_equals_whole(pipeline, model, name, height):
    """Whole (``process``) and banded runs of step ``name`` give the same bits."""
    step = getattr(pipeline, name)
    whole = step.process(copy.deepcopy(model))
    banded = run_in_bands(step, copy.deepcopy(model), height)
    keys = IMAGE_ARRAYS if name == "ramp_fit" else ("data", "groupdq", "pixeldq")
    for key in keys:
        expected, got = np.asarray(whole[key]), np.asarray(banded[key])
        assert got.dtype == expected.dtype, key
        assert np.array_equal(got, expected, equal_nan=True), (name, height, key)
    # Every processinfo entry: the ramp fit's endslice and weights, the IPC noise
    # gain handed to the ramp fit (filled band by band), the refpix row variance...
    info_whole = dict(whole.get("processinfo", {}))
    info_banded = dict(banded.get("processinfo", {}))
    assert sorted(info_whole) == sorted(info_banded), name
    for key, a in info_whole.items():
        assert _same(a, info_banded[key]), (name, height, key)
    if name == "ramp_fit":
        for key in ("endslice", "weights"):
            assert key in info_whole, key
    assert dict(whole.meta.cal_step) == dict(banded.meta.cal_step)
    return whole, banded


def _same(a, b):
    """Equal values, arrays bit for bit (NaN equal), mappings and lists item by item."""
    if hasattr(a, "keys"):
        return (
            hasattr(b, "keys")
            and sorted(a) == sorted(b)
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "shape") or hasattr(b, "shape"):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and np.array_equal(
            a, b, equal_nan=a.dtype.kind in "fc"
        )
    return a == b
