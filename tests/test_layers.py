"""CONTRIBUTING.md's import rules, checked on the source: imports go downwards only."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "latentrl"
# layer -> the latentrl layers it may not import
FORBIDDEN = {
    "checks": ("modules", "objectives", "collectors", "envs", "harness"),
    "modules": ("objectives", "collectors", "envs", "harness"),
    "objectives": ("collectors", "envs", "harness"),
    "collectors": ("objectives", "harness"),
    "envs": ("modules", "objectives", "collectors", "harness"),
}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against the file's package
                base = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                yield ".".join(base + tuple(node.module.split(".")))
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_go_downwards(layer):
    files = [PACKAGE / "checks.py"] if layer == "checks" else sorted((PACKAGE / layer).rglob("*.py"))
    bad = [(f.name, m) for f in files for m in _imports(f)
           if any(m == f"latentrl.{other}" or m.startswith(f"latentrl.{other}.") for other in FORBIDDEN[layer])]
    assert not bad, f"latentrl.{layer} imports what CONTRIBUTING.md forbids: {bad}"
