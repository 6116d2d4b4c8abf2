"""IMPALA on Atari with the paper's Table G1 hyperparameters (``atari.yaml``).

    python examples/impala/atari.py                          # Pong
    python examples/impala/atari.py env.name=envpool:Breakout actors.num_actors=8
"""
from __future__ import annotations

import functools

from train import CONFIG_DIR, train

from latentrl.harness import run

main = functools.partial(train, config_name="atari")

if __name__ == "__main__":
    run(main, CONFIG_DIR, "atari")
