"""Every ```python block of the README runs as written, each in a fresh namespace, so the recipes cannot rot."""
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _title(block: str) -> str:
    for line in block.splitlines():
        if line.startswith("from latentrl"):
            return line.split(" import ")[1].split(",")[0].strip("( ")
    return "block"


def test_the_readme_has_recipes():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{i}-{_title(b)}" for i, b in enumerate(BLOCKS)])
def test_readme_block_runs(index):
    torch.manual_seed(0)
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": f"readme_block_{index}"})
