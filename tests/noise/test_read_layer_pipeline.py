"""R layers through the real L1ToL2Pipeline on a simulated 256² exposure.

The acceptance of the read-noise layer (issue 21): the layer's variance is the
variance the fit reports, ``var_rnoise``, which carries the uint16 rounding of the
ramp (1/12 DN² per resultant), the IPC deconvolution's amplification of white noise,
Σ_q (R_pq g_q/g_p)² (checked here against the inverse applied to impulses, apart from
the pipeline), and the noise of the reference-pixel medians with reset offsets.
"""

import copy

import asdf
import numpy as np
import pytest
import yaml

from romanimpreprocess.ipc.ipc import DEFAULT_ITERATIONS, ipc_inverse
from romanimpreprocess.simulate import SimulationConfig, write_simulation

SIZE = 256  # full frame with the 4-pixel border: science area 248², 32 channels of 8
BORDER = 4
N_LAYERS = 3
# Good pixels: ≈ 60 000 of the 61 504 science pixels (hot/dead/low-QE pixels, sources
# that saturate or jump removed). mean(layer²)/mean(var) over n independent Gaussian
# pixels has a relative standard error sqrt(2/n); over N_LAYERS layers of ≈ 6e4 pixels
# that is sqrt(2 / 1.8e5) = 0.33 %, so the 3 % acceptance is 9 standard errors and the
# closed-form checks below use 4 (1.3 %).
MIN_GOOD_PIXELS = 55_000


def _rewrite(path, change):
    with asdf.open(path, lazy_load=False, memmap=False) as af:
        tree = copy.deepcopy(af.tree["roman"])
    change(tree)
    asdf.AsdfFile({"roman": tree}).write_to(path)


@pytest.fixture(scope="module")
def white_read_set(tmp_path_factory):
    """A simulation without 1/f whose read file describes white read noise only.

    The R layer draws its noise from the read file (the L1's own noise does not enter
    a layer without ``a``): reset noise, both 1/f amplitudes and the amp33 coupling
    are set to 0, so nothing but the white read noise is generated. The exposure has
    no 1/f either: the reference-pixel step measures the reset offsets on it, and
    1/f the read file does not declare would count as offsets. A second IPC file
    holds the identity kernel.
    """
    return _read_set(tmp_path_factory, "white_read_set", c_pink=0.0, u_pink=0.0,
                     ru_pink=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def pink_read_set(tmp_path_factory):
    """The same with the simulator's 1/f in the exposure (the read file's 1/f is set
    by the test)."""
    return _read_set(tmp_path_factory, "pink_read_set")


def _read_set(tmp_path_factory, name, **simulation):
    directory = tmp_path_factory.mktemp(name)
    paths = write_simulation(
        directory, SimulationConfig(size=SIZE, seed=3, **simulation)
    )
    caldir = paths.caldir

    def white_only(tree):
        tree["resetnoise"] = np.zeros_like(np.asarray(tree["resetnoise"]))
        tree["anc"]["C_PINK"] = 0.0
        tree["anc"]["U_PINK"] = 0.0
        tree["amp33"]["M_PINK"] = 0.0
        tree["amp33"]["RU_PINK"] = 0.0

    _rewrite(caldir["read"], white_only)
    with asdf.open(caldir["ipc4d"], lazy_load=False, memmap=False) as af:
        kernel = np.array(af.tree["roman"]["data"])
        tree = copy.deepcopy(af.tree["roman"])
    identity = np.zeros_like(kernel)
    identity[1, 1] = 1.0
    tree["data"] = identity
    identity_path = str(directory / "ipc4d_identity.asdf")
    asdf.AsdfFile({"roman": tree}).write_to(identity_path)
    with open(paths.config_yaml) as f:
        config = yaml.safe_load(f)
    with asdf.open(caldir["read"]) as af:
        sigma = np.array(af.tree["roman"]["data"], np.float64)
    with asdf.open(caldir["gain"]) as af:
        gain = np.array(af.tree["roman"]["data"], np.float64)
    return {
        "config": config,
        "directory": directory,
        "kernel": kernel,
        "identity_ipc": identity_path,
        "sigma": sigma,
        "gain": gain,
    }


def _run_r_layers(
    white_read_set, name, *, seed, n_layers, identity_ipc, read=None, refpix=False
):
    """Calibrate with R layers (refpix off by default); return (cube, L2 model)."""
    from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy

    config = copy.deepcopy(white_read_set["config"])
    directory = white_read_set["directory"]
    config["OUT"] = str(directory / f"{name}_cal.asdf")
    if identity_ipc:
        config["CALDIR"]["ipc4d"] = white_read_set["identity_ipc"]
    if read is not None:
        config["CALDIR"]["read"] = read
    args = legacy.pipeline_args(config)
    steps = copy.deepcopy(args.steps)
    steps["refpix"]["skip"] = not refpix
    noise_file = str(directory / f"{name}_noise.asdf")
    steps["noise"].update(
        skip=False, layers=["R"] * n_layers, seed=seed, noise_file=noise_file
    )
    pipeline = L1ToL2Pipeline(steps=steps, **args.parameters)
    model = pipeline.run(args.input)
    with asdf.open(noise_file) as af:
        cube = np.array(af["noise"], dtype=np.float64)
    return cube, model


def _fit_terms(model, sigma, ipc_gain=1.0):
    """Per pixel: var_rnoise, the flat factor², σ², Σ K²/N and Σ K² of the fit.

    ``ipc_gain``: the IPC amplification the fit's var_rnoise carries (1: identity).
    """
    info = model["processinfo"]
    weights = np.asarray(info["weights"], dtype=np.float64)
    frames = np.array([len(r) for r in model.meta.exposure.read_pattern], float)
    var_rnoise = np.asarray(model.var_rnoise, dtype=np.float64)
    sci = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    sigma2 = sigma[sci] ** 2
    sum_k2_n = float(np.sum(weights**2 / frames))
    sum_k2 = float(np.sum(weights**2))
    # Without refpix, var_rnoise = (σ² Σ K²/N + Σ K²/12) A / f_eff² (flat and pixel
    # area) on the full-ramp pixels: f_eff² per pixel.
    flat2 = (sigma2 * sum_k2_n + sum_k2 / 12) * ipc_gain / var_rnoise
    good = np.asarray(model.dq) == 0
    return var_rnoise, flat2, sigma2, sum_k2_n, sum_k2, good


def _ipc_amplification(kernel, gain, weights_per_source):
    """Σ_q (R_pq g_q / g_p)² w_q for every science pixel p (R: the pipeline's inverse).

    The inverse has a 5×5 footprint, so impulses 5 pixels apart never overlap: 25
    passes give every R_pq once.
    """
    ny, nx = gain.shape
    total = np.zeros((ny, nx))
    for oy in range(5):
        for ox in range(5):
            impulses = np.zeros((ny, nx))
            impulses[oy::5, ox::5] = np.sqrt(weights_per_source[oy::5, ox::5])
            response = ipc_inverse(
                impulses * gain,
                kernel.astype(np.float64),
                iterations=DEFAULT_ITERATIONS,
            )
            total += (response / gain) ** 2
    return total


def test_read_layer_variance_is_the_fit_variance(white_read_set):
    """White read noise, identity IPC: mean(layer²)/mean(var_rnoise) = 1.

    var_rnoise holds the uint16 rounding of the ramp (ΣK²/12, ≈ 1.7 % here), which
    the layer has too: the ratio is 1 to its statistical error.
    """
    cube, model = _run_r_layers(
        white_read_set, "identity", seed=21, n_layers=N_LAYERS, identity_ipc=True
    )
    var_rnoise, flat2, sigma2, sum_k2_n, _, good = _fit_terms(
        model, white_read_set["sigma"]
    )
    assert good.sum() >= MIN_GOOD_PIXELS
    measured = np.mean(cube[:, good] ** 2) / np.mean(var_rnoise[good])
    error = np.sqrt(2 / (N_LAYERS * good.sum()))
    assert abs(measured - 1) < 4 * error
    # Without the rounding term (the fit's white read noise alone) the layer would be
    # 1.7 % wider: 5 statistical errors.
    white = np.mean((sigma2 * sum_k2_n / flat2)[good]) / np.mean(var_rnoise[good])
    assert 1 / white - 1 > 4 * error
    # Zero mean, and the layers are independent realisations.
    assert abs(cube[:, good].mean()) < 5 * np.sqrt(
        np.mean(var_rnoise[good]) / (N_LAYERS * good.sum())
    )
    for i in range(1, N_LAYERS):
        r = np.corrcoef(cube[0, good], cube[i, good])[0, 1]
        assert abs(r) < 5 / np.sqrt(good.sum())


def test_read_layer_ipc_amplification(white_read_set):
    """With the IPC inverse the layer is Σ_q (R_pq g_q/g_p)² (≈ 1.15) times wider,
    and var_rnoise says so: the ratio is 1 to its statistical error."""
    from romanimpreprocess.ipc.ipc import noise_gain

    cube, model = _run_r_layers(
        white_read_set, "ipc", seed=22, n_layers=N_LAYERS, identity_ipc=False
    )
    sci = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    amplification = noise_gain(white_read_set["kernel"], white_read_set["gain"][sci])
    var_rnoise, flat2, sigma2, sum_k2_n, sum_k2, good = _fit_terms(
        model, white_read_set["sigma"], amplification
    )
    assert good.sum() >= MIN_GOOD_PIXELS
    measured = np.mean(cube[:, good] ** 2) / np.mean(var_rnoise[good])
    error = np.sqrt(2 / (N_LAYERS * good.sum()))
    assert abs(measured - 1) < 4 * error
    # Variance of each source pixel's noise in the ramp-fit slope (read + rounding),
    # spread by the inverse and divided by the flat of the receiving pixel.
    source = sigma2 * sum_k2_n + sum_k2 / 12
    spread = _ipc_amplification(
        white_read_set["kernel"], white_read_set["gain"][sci], source
    )
    # Against the fit's white part alone the layer is wider by the amplification.
    white = np.mean((source / flat2)[good])
    expected = np.mean(spread[good] / flat2[good]) / white
    assert expected > 1.1  # the amplification is far above the statistical error
    assert abs(np.mean(cube[:, good] ** 2) / white - expected) < 4 * error * expected


def _refpix_layer_ratio(read_set, name, *, seed, pink=None):
    """mean(layer²)/mean(var_rnoise) over good pixels, IPC and refpix on.

    The read file is the set's with 10 DN reset noise and, if given, the 1/f
    amplitudes ``pink`` ({"anc": {...}, "amp33": {...}}) set.
    """
    read = str(read_set["directory"] / f"read_{name}.asdf")
    with asdf.open(read_set["config"]["CALDIR"]["read"]) as af:
        tree = copy.deepcopy(af.tree["roman"])
    tree["resetnoise"] = np.full_like(np.asarray(tree["resetnoise"]), 10.0)
    for branch, values in (pink or {}).items():
        tree[branch].update(values)
    asdf.AsdfFile({"roman": tree}).write_to(read)
    cube, model = _run_r_layers(
        read_set,
        name,
        seed=seed,
        n_layers=N_LAYERS,
        identity_ipc=False,
        read=read,
        refpix=True,
    )
    good = np.asarray(model.dq) == 0
    assert good.sum() >= MIN_GOOD_PIXELS
    var_rnoise = np.asarray(model.var_rnoise, np.float64)
    return np.mean(cube[:, good] ** 2) / np.mean(var_rnoise[good])


def test_read_layer_with_refpix_and_reset_noise(white_read_set):
    """IPC and refpix on, 10 DN reset noise on the reference pixels: the channel
    medians' noise (≈ 11 % of the white variance at this size) is in var_rnoise.

    No 1/f here (C_PINK = U_PINK = 0): `test_read_layer_with_one_over_f` adds it.
    """
    measured = _refpix_layer_ratio(white_read_set, "refpix", seed=24)
    # The medians' term is one line per channel, resultant and layer: 32 x 6 x 3
    # lines carry ~11 % of the variance, so the ratio scatters by about
    # 0.11 sqrt(2/576) = 0.6 %; the median-variance formula is good to ~10 % of the
    # term at 32 pixels per median (~1 %). Issue 21's 3 % holds with room.
    assert abs(measured - 1) < 0.03, measured


def test_read_layer_with_one_over_f(pink_read_set):
    """Issue 21's acceptance with 1/f on: IPC and refpix on, 10 DN reset noise and
    the simulator's 1/f (C_PINK 1, U_PINK 0.5, M_PINK 1, RU_PINK 0.3 DN): what the
    reference-pixel correction leaves of the 1/f (≈ +20 % of the white variance per
    frame at this size) is in var_rnoise, and mean(layer²)/mean(var_rnoise) is 1
    within 3 %."""
    pink = {"anc": {"C_PINK": 1.0, "U_PINK": 0.5}}
    pink["amp33"] = {"M_PINK": 1.0, "RU_PINK": 0.3}
    measured = _refpix_layer_ratio(pink_read_set, "pink", seed=25, pink=pink)
    assert abs(measured - 1) < 0.03, measured


def test_read_layer_seed_through_the_pipeline(white_read_set):
    """Same seed: the first layer is bit-identical; another seed: independent."""
    first, _ = _run_r_layers(
        white_read_set, "seed_a", seed=21, n_layers=1, identity_ipc=True
    )
    other, model = _run_r_layers(
        white_read_set, "seed_b", seed=23, n_layers=1, identity_ipc=True
    )
    reference, _ = _run_r_layers(
        white_read_set, "seed_c", seed=21, n_layers=1, identity_ipc=True
    )
    np.testing.assert_array_equal(first, reference)
    good = np.asarray(model.dq) == 0
    r = np.corrcoef(first[0, good], other[0, good])[0, 1]
    assert abs(r) < 5 / np.sqrt(good.sum())
