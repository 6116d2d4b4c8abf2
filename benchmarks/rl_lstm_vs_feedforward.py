"""RL-LSTM vs a feed-forward policy on masked CartPole (the numbers in the README).

Trains examples/rl_lstm with its default config for each seed, once with the
LSTM policy and once with ``model.policy=mlp`` (same everything else, no frame
stacking), and prints JSON: final and best evaluation return per run, the
mean over seeds, and wall time.

    python benchmarks/rl_lstm_vs_feedforward.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("rl_lstm_train", ROOT / "examples" / "rl_lstm" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=["lstm", "mlp"], choices=["lstm", "mlp"])
    parser.add_argument("overrides", nargs="*", help="extra config overrides, key=value")
    args = parser.parse_args()
    example = load_example()
    base = OmegaConf.load(ROOT / "examples" / "rl_lstm" / "config.yaml")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for policy in args.policies:
            for seed in args.seeds:
                cfg = OmegaConf.merge(
                    base,
                    OmegaConf.from_dotlist(
                        [f"seed={seed}", f"model.policy={policy}", f"run_dir={tmp}/{policy}_{seed}", "logger.progress_bar=false"]
                        + args.overrides
                    ),
                )
                start = time.perf_counter()
                summary = example.train(cfg)
                runs.append(
                    {
                        "policy": policy,
                        "seed": seed,
                        "frames": summary["frames"],
                        "final_eval_return": round(summary["final_eval_return"], 1),
                        "best_eval_return": round(summary["best_eval_return"], 1),
                        "wall_s": round(time.perf_counter() - start, 1),
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
    means = {
        p: round(sum(r["final_eval_return"] for r in runs if r["policy"] == p) / len(args.seeds), 1) for p in args.policies
    }
    print(json.dumps({"benchmark": "rl_lstm_vs_feedforward", "mean_final_eval_return": means, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
