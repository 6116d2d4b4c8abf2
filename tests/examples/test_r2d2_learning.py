"""R2D2 learns masked CartPole (slow); the same agent with the LSTM replaced by a feed-forward layer does not.

Seed 0 of the default config (in-process actors: a seeded run is reproducible:
best eval 466.6, final 181.9, feed-forward best 94.7). Seeds 1-2, the
zero-state baseline and dQ are in the README (``python benchmarks/r2d2_masked_cartpole.py``).
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


@pytest.fixture(scope="module")
def lstm_run(r2d2, tmp_path_factory):
    return _run(r2d2, tmp_path_factory.mktemp("r2d2_lstm"))


def test_lstm_reaches_450_within_200k_steps(lstm_run):
    assert lstm_run["frames"] <= 200_000
    assert lstm_run["best_eval_return"] >= 450, lstm_run


@pytest.mark.xfail(strict=True, reason="measured: greedy evaluations swing between ~500 and ~180; seeds 0-2 end at 181.9, 178.1, 184.8 (README)")
def test_final_eval_at_least_450(lstm_run):
    assert lstm_run["final_eval_return"] >= 450, lstm_run


def test_feedforward_stays_below_200(r2d2, tmp_path):
    summary = _run(r2d2, tmp_path, model={"feedforward": True})
    assert summary["best_eval_return"] < 200, summary
