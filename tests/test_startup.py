"""The start-up shortcut: libyaml for the stack's manifests, nothing else changed."""

import importlib.resources
import subprocess
import sys

import pytest
import yaml

from romanimpreprocess import _startup


def _manifest_texts():
    """Every YAML manifest roman_datamodels and asdf parse with yaml.safe_load."""
    texts = []
    for package in ("rad", "asdf_standard", "asdf"):
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            continue
        for path in root.rglob("*.yaml"):
            if "manifest" in str(path):
                texts.append((str(path), path.read_bytes()))
    return texts


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_libyaml_gives_the_same_manifests_as_the_python_parser():
    texts = _manifest_texts()
    assert len(texts) >= 5
    for path, text in texts:
        python = yaml.load(text, Loader=yaml.SafeLoader)
        fast = yaml.load(text, Loader=yaml.CSafeLoader)
        assert fast == python, path


def test_safe_load_is_put_back():
    original = yaml.safe_load
    with _startup._safe_load_with_libyaml():
        assert yaml.safe_load("a: [1, 2]") == {"a": [1, 2]}
    assert yaml.safe_load is original


def test_import_leaves_yaml_safe_load_alone():
    code = (
        "import yaml; before = yaml.safe_load; import romanimpreprocess; "
        "import roman_datamodels.datamodels; "
        "assert yaml.safe_load is before; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"
