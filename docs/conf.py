"""Sphinx configuration of the latentrl API reference (built in the test suite with warnings as errors)."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

project = "latentrl"
author = "latentrl developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures carry torch / tensordict types that do not resolve as references
autodoc_inherit_docstrings = False  # TorchRL's own docstrings are TorchRL's to build
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
