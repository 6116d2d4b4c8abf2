"""RL-LSTM against sb3-contrib's RecurrentPPO on masked CartPole, at equal frames, side by side.

RecurrentPPO runs with rl-baselines3-zoo's tuned ``ppo_lstm`` hyperparameters
for CartPoleNoVel-v1 (the same task: CartPole-v1 with the velocities removed):
8 envs, n_steps 32, batch 256, 20 epochs, gamma 0.98, GAE lambda 0.8, lr 1e-3
and clip 0.2 both annealed linearly to 0, no entropy bonus, LSTM 64 with a
separate critic LSTM, ReLU heads [64], no orthogonal init, VecNormalize on
observations. It trains for as many env frames as the RL-LSTM config
(``collector.total_frames``) and is evaluated like the RL-LSTM: 10
deterministic episodes (one per env, from a fresh reset) of at most 500 steps,
with the normalization statistics frozen.

Prints JSON: per run the final evaluation return, wall-clock seconds and
frames/s; per agent the per-seed values with their IQM and rliable's 95%
interval. Per-seed values vary across machines. Needs the benchmark extra
(``pip install -e ".[bench]"``).

    OMP_NUM_THREADS=1 python benchmarks/rl_lstm_vs_recurrent_ppo.py --seeds 0 1 2 [--agents rl_lstm recurrent_ppo]
        [--rl-lstm-overrides ppo.epochs=20]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _runs import ROOT, add_reps_argument, per_variant, run_variants
from omegaconf import OmegaConf

from latentrl.envs import CARTPOLE_POSITION_INDICES


def _masked_cartpole():
    import gymnasium as gym

    class Positions(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            low, high = env.observation_space.low, env.observation_space.high
            idx = list(CARTPOLE_POSITION_INDICES)
            self.observation_space = gym.spaces.Box(low[idx], high[idx], dtype=np.float32)

        def observation(self, obs):
            return obs[list(CARTPOLE_POSITION_INDICES)].astype(np.float32)

    return Positions(gym.make("CartPole-v1"))


def _linear(start: float):
    return lambda progress_remaining: progress_remaining * start


def recurrent_ppo(seed: int, frames: int, episodes: int = 10, max_steps: int = 500) -> dict:
    """Trains and evaluates RecurrentPPO with the zoo's hyperparameters (see the module docstring)."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(_masked_cartpole, n_envs=8, seed=seed), norm_obs=True, norm_reward=False)
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
        learning_rate=_linear(1e-3), clip_range=_linear(0.2), ent_coef=0.0, seed=seed, device="cpu",
        policy_kwargs=dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64,
                           enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])),
    )
    start = time.perf_counter()
    model.learn(total_timesteps=frames)
    wall = time.perf_counter() - start

    eval_env = VecNormalize(make_vec_env(_masked_cartpole, n_envs=episodes, seed=seed + 10_000), norm_obs=True,
                            norm_reward=False, training=False)
    eval_env.obs_rms = env.obs_rms
    obs, state = eval_env.reset(), None
    starts = np.ones(episodes, dtype=bool)
    returns, finished = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    for _ in range(max_steps):
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, reward, done, _ = eval_env.step(action)
        returns += reward * ~finished
        finished |= done
        starts = done
        if finished.all():
            break
    return {"variant": "recurrent_ppo", "seed": seed, "frames": int(model.num_timesteps),
            "final_eval_return": round(float(returns.mean()), 1), "wall_s": round(wall, 1),
            "frames_per_s": round(model.num_timesteps / wall)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", default=["rl_lstm", "recurrent_ppo"], choices=["rl_lstm", "recurrent_ppo"])
    parser.add_argument("--frames", type=int, default=None, help="default: the RL-LSTM config's collector.total_frames")
    parser.add_argument("--rl-lstm-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotlist overrides of the RL-LSTM config, e.g. ppo.epochs=20")
    add_reps_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = args.frames or int(OmegaConf.load(ROOT / "examples" / "rl_lstm" / "config.yaml").collector.total_frames)
    runs = []
    if "rl_lstm" in args.agents:
        over = [f"collector.total_frames={frames}"] if args.frames else []
        for run in run_variants("rl_lstm", {"rl_lstm": list(args.rl_lstm_overrides)}, args.seeds, over):
            run["frames_per_s"] = round(run["frames"] / run["wall_s"])
            runs.append(run)
    if "recurrent_ppo" in args.agents:
        for seed in args.seeds:
            runs.append(recurrent_ppo(seed, frames))
            print(json.dumps(runs[-1]), flush=True)
    print(json.dumps({"benchmark": "rl_lstm_vs_recurrent_ppo", "frames": frames, "torch_threads": torch.get_num_threads(),
                      "final_eval_return": per_variant(runs, reps=args.reps), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
