"""RL-LSTM learns masked CartPole; a feed-forward policy trained the same way does not.

Seeded, default config (400k frames). Slow tests (``python -m pytest -m slow``):
on this project's 2-core CPU machine the LSTM run took 368 s and the
feed-forward one 113 s on 2026-12-02 (quiet machine), 80% of the default
suite's 826 s, so they left it for the 10-minute budget.
"""
import pytest
from conftest import example_config

pytestmark = pytest.mark.slow


def _run(rl_lstm, tmp_path, policy, seed=0):
    cfg = example_config(
        "rl_lstm",
        {"seed": seed, "model": {"policy": policy}, "run_dir": str(tmp_path / policy), "logger": {"progress_bar": False}},
    )
    return rl_lstm.train(cfg)


def test_rl_lstm_learns_masked_cartpole(rl_lstm, tmp_path):
    summary = _run(rl_lstm, tmp_path, "lstm")
    assert summary["frames"] == 401_408
    assert summary["final_eval_return"] >= 300, summary


def test_feedforward_policy_stays_clearly_below(rl_lstm, tmp_path):
    summary = _run(rl_lstm, tmp_path, "mlp")
    # positions alone cannot balance the pole: a memoryless policy stays far below the LSTM's >= 300
    assert summary["best_eval_return"] < 150, summary


@pytest.mark.parametrize("seed", [1, 2])
def test_rl_lstm_learns_other_seeds(rl_lstm, tmp_path, seed):
    assert _run(rl_lstm, tmp_path, "lstm", seed)["final_eval_return"] >= 300
