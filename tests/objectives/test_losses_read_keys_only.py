"""The world-model losses reach no model internals: they call keyed modules and read the keys they write."""
import re
from pathlib import Path

import pytest

OBJECTIVES = Path(__file__).resolve().parents[2] / "latentrl" / "objectives"


@pytest.mark.parametrize("name", ["world_model.py", "dreamer.py"])
def test_no_model_attribute_access(name):
    source = (OBJECTIVES / name).read_text()
    for pattern in (r"\.rssm\b", r"\.features\(", r"\.img_step\(", r"\.obs_step\(", r"\.observe\(",
                    r"\.sample_state\(", r"\.decoder\b", r"\.encoder\b"):
        assert not re.search(pattern, source), f"{name} uses {pattern}"
