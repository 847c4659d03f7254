"""Every module of every step has its API page (docs/<step>/api.rst, autodoc)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "romanimpreprocess"
# docs folder name where it differs from the package folder
DOCS_FOLDER = {"ramp_fitting": "ramp_fit"}
STEP_PACKAGES = sorted(
    p.parent.name for p in PACKAGE.glob("*/*_step.py") if p.parent.name != "stpipe"
)


def test_every_step_package_is_found():
    # the glob above is what the per-step check relies on
    assert {"ramp_fitting", "refpix", "noise", "photom"} <= set(STEP_PACKAGES)


@pytest.mark.parametrize("package", STEP_PACKAGES)
def test_step_api_page_lists_every_module(package):
    page = ROOT / "docs" / DOCS_FOLDER.get(package, package) / "api.rst"
    assert page.is_file(), f"{page} is missing"
    documented = set(
        re.findall(r"^\.\. automodule:: (\S+)$", page.read_text(), re.MULTILINE)
    )
    modules = {
        f"romanimpreprocess.{package}.{p.stem}"
        for p in (PACKAGE / package).glob("*.py")
        if p.stem != "__init__"
    }
    assert modules - documented == set(), f"{page}: modules without an API entry"
    assert documented - modules == set(), f"{page}: entries for modules that are gone"
    index = page.with_name("index.rst").read_text()
    assert re.search(r"^\s+api\s*$", index, re.MULTILINE), (
        f"{page.parent}/index.rst: no api entry"
    )
