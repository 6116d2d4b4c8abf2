"""The package as it was at a given commit, importable beside today's as ``latentrl_baseline``.

Speed claims compare today's code with the code it replaced in one process
(``python benchmarks/world_model_before_after.py``). The old code is not kept
in the tree: this extracts ``latentrl/`` at ``commit`` with ``git archive``
into a temporary folder and renames its absolute imports.
"""
from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_baseline(commit: str):
    """``latentrl`` at ``commit`` as the module ``latentrl_baseline`` (raises ``RuntimeError`` without git history)."""
    try:
        blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, "latentrl"],
                              check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise RuntimeError(f"cannot read commit {commit} from git (a shallow clone?): {err}") from err
    folder = Path(tempfile.mkdtemp(prefix="latentrl_baseline_"))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "latentrl").rename(folder / "latentrl_baseline")
    for path in (folder / "latentrl_baseline").rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\blatentrl\.", "latentrl_baseline.", text))
    sys.path.insert(0, str(folder))
    return importlib.import_module("latentrl_baseline")
