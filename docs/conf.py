"""Sphinx configuration for the romanimpreprocess docs."""

project = "romanimpreprocess"
author = "romanimpreprocess developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "alabaster"
