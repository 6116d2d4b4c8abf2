"""R2D2 learns masked CartPole (slow); the same agent with the LSTM replaced by a feed-forward layer does not.

Seed 0 of the default config (in-process actors: a seeded run is reproducible).
The median over 3 seeds, the zero-state baseline and dQ are in the README
(``python benchmarks/r2d2_masked_cartpole.py``).
"""
import pytest
from conftest import example_config
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow


def _run(r2d2, tmp_path, **over):
    cfg = OmegaConf.merge(
        example_config("r2d2", {}),
        OmegaConf.create({"run_dir": str(tmp_path), "logger": {"progress_bar": False}, "seed": 0, **over}),
    )
    return r2d2.train(cfg)


def test_lstm_reaches_450_within_200k_steps(r2d2, tmp_path):
    summary = _run(r2d2, tmp_path)
    assert summary["frames"] <= 200_000
    assert summary["final_eval_return"] >= 450, summary


def test_feedforward_stays_below_200(r2d2, tmp_path):
    summary = _run(r2d2, tmp_path, model={"feedforward": True})
    assert summary["best_eval_return"] < 200, summary
