"""PlaNet and DreamerV2 learn dm_control cartpole from proprioceptive observations (slow, seeded).

Targets of issues 5 and 12: PlaNet >= 600 on cartpole-swingup within 100
episodes; DreamerV2 >= 900 on cartpole-balance within 100k env steps; two
seeds each. Measured numbers and run times are in the README (PlaNet,
DreamerV2 sections); a target not met on a seed is a non-strict xfail
whose reason says what was measured.
"""
import pytest
from conftest import example_config
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow

DREAMER_V2 = ("measured 2026-12-02, seed 0: 100k env steps, final 568.9, best 643.5 (README: likely gamma 0.995 and the "
              "discount head where the authors use 0.99 and none on DMC); seed 1 not run")


def _run(module, name, tmp_path, seed=0, **over):
    cfg = OmegaConf.merge(
        example_config(name, {}),
        OmegaConf.create({"run_dir": str(tmp_path), "logger": {"progress_bar": False}, "seed": seed, "threads": 1,
                          **over}),
    )
    return module.train(cfg)


@pytest.mark.parametrize("seed", [
    0,  # measured 2026-12-01: best 601.8 at episode 80, final 558.5 (README)
    1,  # measured 2026-12-02: best 656.3 at episode 100 (README)
])
def test_planet_reaches_600_on_cartpole_swingup_within_100_episodes(planet, tmp_path, seed):
    summary = _run(planet, "planet", tmp_path, seed=seed)
    assert summary["frames"] == 100 * 125  # 100 episodes of 1000 env steps at action repeat 8
    assert summary["best_eval_return"] >= 600, summary


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.xfail(strict=False, reason=DREAMER_V2)
def test_dreamer_v2_reaches_900_on_cartpole_balance_within_100k_env_steps(dreamer_v2, tmp_path, seed):
    summary = _run(dreamer_v2, "dreamer_v2", tmp_path, seed=seed)
    assert summary["frames"] * 2 <= 100_000
    assert summary["best_eval_return"] >= 900, summary
