"""The API reference builds from the docstrings with warnings as errors (Sphinx, as TorchRL's docs)."""
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_api_reference_builds_without_warnings(tmp_path):
    import sphinx  # noqa: F401  (the test and docs extras install it)

    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "api" / "objectives.html").read_text()
    for name in ("IMPALALoss", "R2D2Loss", "WorldModelLoss", "DreamerActorCriticLoss", "GumbelSACLoss"):
        assert f'id="latentrl.objectives.{name}"' in api, name
