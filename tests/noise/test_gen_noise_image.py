"""Legacy noise entry: configuration checks (end to end in test_noise_pipeline.py)."""

import pytest

from romanimpreprocess.L1_to_L2.gen_noise_image import check_noise_config
from romanimpreprocess.pipeline import legacy


@pytest.fixture
def legacy_config(simulated_set, tmp_path):
    """The simulated set's config with a NOISE block writing into ``tmp_path``."""
    base = legacy.load_config(simulated_set.config_yaml)

    def make(**noise):
        block = {
            "LAYER": ["RP", "RS2"],
            "TEMP": str(tmp_path / "t.asdf"),
            "SEED": 15000,
            "OUT": str(tmp_path / "n.asdf"),
        }
        block.update(noise)
        return base | {"OUT": str(tmp_path / "out.asdf"), "NOISE": block}

    return make


def test_valid_config_passes(legacy_config):
    check_noise_config(legacy_config())
    check_noise_config(legacy_config() | {"NOISE_PRECISION": 16})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"NOISE_PRECISION": 64}, "NOISE_PRECISION: must be 16 or 32"),
        ({"NOISE_PRECISION": "16"}, "NOISE_PRECISION: expected int"),
        ({"NOISE": None}, "NOISE: expected mapping"),
    ],
)
def test_top_level_errors(legacy_config, change, match):
    with pytest.raises(ValueError, match=match):
        check_noise_config(legacy_config() | change)


def test_noise_block_is_required_for_noise(legacy_config):
    config = legacy_config()
    del config["NOISE"]
    with pytest.raises(ValueError, match="NOISE: required for noise layers"):
        check_noise_config(config)


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        ({"LAYER": ["RP", "Rx"]}, r"NOISE.LAYER: .*unknown argument 'x'"),
        ({"LAYER": "RP"}, "NOISE.LAYER: .*list of strings"),
        ({"SEED": -1}, "NOISE.SEED"),
        ({"SEED": 1.5}, "NOISE.SEED"),
        ({"OUT": "noise.fits"}, "NOISE.OUT: must be a path ending in .asdf"),
        ({"TEMP": 3}, "NOISE.TEMP"),
    ],
)
def test_noise_block_errors(legacy_config, noise, match):
    with pytest.raises(ValueError, match=match):
        check_noise_config(legacy_config(**noise))


def test_missing_keys_reported_together(legacy_config):
    config = legacy_config()
    del config["NOISE"]["SEED"], config["NOISE"]["TEMP"], config["IN"]
    with pytest.raises(ValueError) as info:
        check_noise_config(config | {"NOISE_PRECISION": 8})
    text = str(info.value)
    for part in (
        "NOISE.SEED: required entry is missing",
        "NOISE.TEMP: required entry is missing",
        "IN: required key is missing",
        "NOISE_PRECISION: must be 16 or 32",
    ):
        assert part in text


def test_gen_cal_image_applies_the_same_noise_rule(legacy_config):
    """One NOISE rule: a calibration-only run refuses the same incomplete block."""
    config = legacy_config()
    del config["NOISE"]["SEED"]
    with pytest.raises(legacy.LegacyConfigError, match="NOISE.SEED: required entry"):
        legacy.pipeline_args(config)
