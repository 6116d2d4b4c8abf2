"""Counts the generated bad-input cases per public part and reports them at the end of the run."""
from collections import Counter

import pytest

CASES: Counter = Counter()


@pytest.fixture
def tried():
    """``tried(part)`` counts one generated case for ``part``."""
    return lambda part: CASES.update([part])


def pytest_terminal_summary(terminalreporter):
    if CASES:
        terminalreporter.section("bad-input cases tried")
        for part, n in sorted(CASES.items()):
            terminalreporter.write_line(f"{part}: {n}")
        terminalreporter.write_line(f"total: {sum(CASES.values())}")
