"""Legacy noise entry: configuration checks (end to end in test_noise_pipeline.py)."""

import pytest

from romanimpreprocess.L1_to_L2.gen_noise_image import check_noise_config


def legacy_config(**noise):
    block = {"LAYER": ["RP", "RS2"], "TEMP": "t.asdf", "SEED": 15000, "OUT": "n.asdf"}
    block.update(noise)
    return {"IN": "in.asdf", "OUT": "out.asdf", "CALDIR": {}, "NOISE": block}


def test_valid_config_passes():
    check_noise_config(legacy_config())
    check_noise_config(legacy_config() | {"NOISE_PRECISION": 16})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"NOISE_PRECISION": 64}, "Unsupported noise precision"),
        ({"NOISE_PRECISION": "16"}, "Unsupported noise precision"),
        ({"NOISE": None}, "NOISE: missing or not a mapping"),
    ],
)
def test_top_level_errors(change, match):
    with pytest.raises(ValueError, match=match):
        check_noise_config(legacy_config() | change)


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
def test_noise_block_errors(noise, match):
    with pytest.raises(ValueError, match=match):
        check_noise_config(legacy_config(**noise))


def test_missing_keys_reported_together():
    config = legacy_config()
    del config["NOISE"]["SEED"], config["NOISE"]["TEMP"], config["IN"]
    with pytest.raises(ValueError) as info:
        check_noise_config(config | {"NOISE_PRECISION": 8})
    text = str(info.value)
    for part in (
        "NOISE.SEED: missing",
        "NOISE.TEMP: missing",
        "IN: missing",
        "Unsupported noise precision",
    ):
        assert part in text
