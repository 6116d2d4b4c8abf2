import importlib.util
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]


def load_example(name: str, script: str = "train.py"):
    """Imports examples/<name>/<script> as a module."""
    path = ROOT / "examples" / name / script
    spec = importlib.util.spec_from_file_location(f"example_{name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def example_config(name: str, overrides: dict, config_name: str = "config"):
    cfg = OmegaConf.load(ROOT / "examples" / name / f"{config_name}.yaml")
    return OmegaConf.merge(cfg, OmegaConf.create(overrides))


@pytest.fixture(scope="module")
def rl_lstm():
    return load_example("rl_lstm")


@pytest.fixture(scope="module")
def categorical_vae():
    return load_example("gumbel", "categorical_vae.py")


@pytest.fixture(scope="module")
def gumbel_sac():
    return load_example("gumbel", "sac.py")


@pytest.fixture(scope="module")
def impala():
    return load_example("impala")


@pytest.fixture(scope="module")
def r2d2():
    return load_example("r2d2")


@pytest.fixture(scope="module")
def planet():
    return load_example("planet")


@pytest.fixture(scope="module")
def dreamer_v2():
    return load_example("dreamer_v2")


@pytest.fixture(scope="module")
def dreamer_v3():
    return load_example("dreamer_v3")


@pytest.fixture(scope="module")
def merlin():
    return load_example("merlin")


@pytest.fixture(scope="module")
def ftw():
    return load_example("ftw")
