"""Sphinx configuration for the romanimpreprocess docs."""

project = "romanimpreprocess"
author = "romanimpreprocess developers"
extensions = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
