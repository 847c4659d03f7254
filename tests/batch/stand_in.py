"""Stand-in runners for the batch tests: importable on dask workers, fast.

`image_runner` does what the pipeline does to the file system, without the science:
it opens the L1 input with the package's reader (a corrupt input fails as it would in
the pipeline), and writes an L2 ImageModel of the science area through `atomic_save`.
The others misbehave on purpose.
"""

import os
import time

import numpy as np
from roman_datamodels import datamodels as dm

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.datamodels import open_l1
from romanimpreprocess.stpipe import atomic_save


def _input(task):
    return task["input"]


def image_runner(task):
    """Read the L1, write a plausible L2 of the science area at ``task['output']``."""
    raw = open_l1(_input(task))
    data = np.asarray(raw.data, dtype=np.float32)
    rate = (data[-1] - data[0])[REF_BORDER:-REF_BORDER, REF_BORDER:-REF_BORDER]
    shape = rate.shape
    model = dm.ImageModel.create_fake_data(shape=shape)
    model.data = rate.astype(model.data.dtype)
    model.dq = np.zeros(shape, model.dq.dtype)
    model.err = np.ones(shape, model.err.dtype)
    atomic_save(model, task["output"])
    time.sleep(float(os.environ.get("RIP_TEST_RUNNER_SLEEP", "0")))


def exit_runner(task):
    """A task that calls sys.exit, as the CRDS client does offline."""
    raise SystemExit(-1)


def killed_runner(task):
    """Die (hard, no cleanup) in the middle of writing the output."""

    def writer(model, tmp_path):
        with open(tmp_path, "wb") as f:
            f.write(b"#ASDF 1.0.0\n" + b"\0" * 1000)
            f.flush()
        os._exit(17)

    raw = open_l1(_input(task))
    atomic_save(raw, task["output"], writer=writer)


def misbehaving_runner(task):
    """By the L1 file name: ``kill*`` dies mid-write, ``exit*`` calls sys.exit."""
    name = os.path.basename(_input(task))
    if name.startswith("kill"):
        killed_runner(task)
    elif name.startswith("exit"):
        exit_runner(task)
    else:
        image_runner(task)
