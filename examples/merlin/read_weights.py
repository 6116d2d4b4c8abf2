"""The policy's memory read weights over one T-maze episode of a trained MERLIN run.

Loads the newest checkpoint of a run dir, plays one episode with the
policy's mode and plots the policy's read weights (steps x memory rows), with
the row written at the cue step marked. Prints JSON: that row, the policy's
read weight on it at every step, and whether the answer was right.

    python examples/merlin/read_weights.py <run dir> --out read_weights.png [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torchrl.envs import ExplorationType, set_exploration_type

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import make_agent, make_agent_env  # noqa: E402

from latentrl.harness import load_checkpoint, unflatten  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="read_weights.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    payload = load_checkpoint(args.run_dir)
    cfg = unflatten(payload["config"])  # the checkpoint holds the config flattened to dotted keys
    if cfg.env.name != "pomdp:tmaze":
        raise SystemExit(f"read_weights.py: the run trained on {cfg.env.name!r}; the plot marks the T-maze's cue step")
    env = make_agent_env(cfg, 1)
    policy, actor = make_agent(cfg, env)
    policy.load_state_dict(payload["objects"]["policy"])
    env.append_transform(policy.make_tensordict_primer())
    env.set_seed(args.seed)
    torch.manual_seed(args.seed)  # z_t is sampled from the posterior: the same episode on every call
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        episode = env.rollout(cfg.env.delay + 2, actor)
    weights = episode["policy_read_weights"][:, 0]  # [T, N]
    cue_row = int(episode["next", "merlin", "memory_write"][0].argmax())
    success = bool(episode["next", "reward"].sum() > 0)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    image = ax.imshow(weights.T.numpy(), aspect="auto", origin="lower", cmap="viridis")
    ax.axhline(cue_row, color="white", lw=0.8, ls="--")
    ax.set(xlabel="step", ylabel="memory row")
    ax.set_title(f"policy read weights, T-maze delay {cfg.env.delay}\n(cue written to row {cue_row}; "
                 f"{'right' if success else 'wrong'} answer)", fontsize=10)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    result = {"cue_row": cue_row, "weight_on_cue_row": [round(float(w), 3) for w in weights[:, cue_row]],
              "junction_step": int(weights.shape[0] - 1), "success": success, "plot": args.out}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
