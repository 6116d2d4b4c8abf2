"""Atari evaluation metrics: human- and record-normalized aggregates over games.

Per game, a score ``s`` is normalized between two reference scores:
``(s - random) / (reference - random)``. References, per game, in
:data:`ATARI_BASELINES` as ``(random, gamer, record)``:

* ``random`` and ``gamer`` (the "human" of DQN, a professional games tester):
  Mnih et al. 2015, "Human-level control through deep reinforcement learning"
  (Extended Data Table 2); van Hasselt et al. 2016 for the games added since;
* ``record``: the human world record, Toromanoff et al. 2019, "Is Deep
  Reinforcement Learning Really Superhuman on Atari?" (Table 1).

The values are those of danijar/dreamerv2 ``scores/baselines.json`` except
James Bond, whose row there is shifted (random 7, gamer 29: the neighbouring
columns); the published values are random 29.0, gamer 302.8 (DQN; dqn_zoo and
danijar/dreamerv3 use them, and the DreamerV2 paper's aggregates are only
reproduced with them: ``tests/envs/test_metrics.py``).

Aggregates (Hafner et al. 2021, "Mastering Atari with Discrete World Models",
Section 4; Espeholt et al. 2018 for the capped mean):

* :func:`gamer_normalized_median` and :func:`gamer_normalized_mean`;
* :func:`record_normalized_mean` and :func:`clipped_record_mean` (each game's
  record-normalized score capped at 1, the world record);
* :func:`capped_human_normalized_mean`: the gamer-normalized score capped at
  1 (100%), averaged (IMPALA's and PBT's fitness over the suite).

Game names are ALE's in snake case (``"ms_pacman"``); ``"atari:MsPacman"``-style
names of :func:`~latentrl.envs.make_env` are accepted too.
"""
from __future__ import annotations

import re
import statistics
from collections.abc import Mapping

__all__ = [
    "ATARI_BASELINES",
    "ATARI_57",
    "DREAMERV2_GAMES",
    "normalized_score",
    "gamer_normalized_median",
    "gamer_normalized_mean",
    "record_normalized_mean",
    "clipped_record_mean",
    "capped_human_normalized_mean",
]

# game: (random, gamer, record); record None where Toromanoff et al. give none
ATARI_BASELINES: dict[str, tuple[float, float, float | None]] = {
    "alien": (228.8, 7127.7, 251916.0),
    "amidar": (5.8, 1719.5, 104159.0),
    "assault": (222.4, 742.0, 8647.0),
    "asterix": (210.0, 8503.3, 1000000.0),
    "asteroids": (719.1, 47388.7, 10506650.0),
    "atlantis": (12850.0, 29028.1, 10604840.0),
    "bank_heist": (14.2, 753.1, 82058.0),
    "battle_zone": (2360.0, 37187.5, 801000.0),
    "beam_rider": (363.9, 16926.5, 999999.0),
    "berzerk": (123.7, 2630.4, 1057940.0),
    "bowling": (23.1, 160.7, 300.0),
    "boxing": (0.1, 12.1, 100.0),
    "breakout": (1.7, 30.5, 864.0),
    "centipede": (2090.9, 12017.0, 1301709.0),
    "chopper_command": (811.0, 7387.8, 999999.0),
    "crazy_climber": (10780.5, 35829.4, 219900.0),
    "defender": (2874.5, 18688.9, 6010500.0),
    "demon_attack": (152.1, 1971.0, 1556345.0),
    "double_dunk": (-18.6, -16.4, 22.0),
    "enduro": (0.0, 860.5, 9500.0),
    "fishing_derby": (-91.7, -38.7, 71.0),
    "freeway": (0.0, 29.6, 38.0),
    "frostbite": (65.2, 4334.7, 454830.0),
    "gopher": (257.6, 2412.5, 355040.0),
    "gravitar": (173.0, 3351.4, 162850.0),
    "hero": (1027.0, 30826.4, 1000000.0),
    "ice_hockey": (-11.2, 0.9, 36.0),
    "james_bond": (29.0, 302.8, 45550.0),
    "kangaroo": (52.0, 3035.0, 1424600.0),
    "krull": (1598.0, 2665.5, 104100.0),
    "kung_fu_master": (258.5, 22736.3, 1000000.0),
    "montezuma_revenge": (0.0, 4753.3, 1219200.0),
    "ms_pacman": (307.3, 6951.6, 290090.0),
    "name_this_game": (2292.3, 8049.0, 25220.0),
    "phoenix": (761.4, 7242.6, 4014440.0),
    "pitfall": (-229.4, 6463.7, 114000.0),
    "pong": (-20.7, 14.6, 21.0),
    "private_eye": (24.9, 69571.3, 101800.0),
    "qbert": (163.9, 13455.0, 2400000.0),
    "riverraid": (1338.5, 17118.0, 1000000.0),
    "road_runner": (11.5, 7845.0, 2038100.0),
    "robotank": (2.2, 11.9, 76.0),
    "seaquest": (68.4, 42054.7, 999999.0),
    "skiing": (-17098.1, -4336.9, -3272.0),
    "solaris": (1236.3, 12326.7, 111420.0),
    "space_invaders": (148.0, 1668.7, 621535.0),
    "star_gunner": (664.0, 10250.0, 77400.0),
    "surround": (-10.0, 6.5, None),
    "tennis": (-23.8, -8.3, 21.0),
    "time_pilot": (3568.0, 5229.2, 65300.0),
    "tutankham": (11.4, 167.6, 5384.0),
    "up_n_down": (533.4, 11693.2, 82840.0),
    "venture": (0.0, 1187.5, 38900.0),
    "video_pinball": (16256.9, 17667.9, 89218328.0),
    "wizard_of_wor": (563.5, 4756.5, 395300.0),
    "yars_revenge": (3092.9, 54576.9, 15000105.0),
    "zaxxon": (32.5, 9173.3, 83700.0),
}

ATARI_57 = tuple(sorted(ATARI_BASELINES))
# the 55 games of the DreamerV2 paper: the 57 without Defender and Surround
DREAMERV2_GAMES = tuple(g for g in ATARI_57 if g not in ("defender", "surround"))
_REFERENCES = {"gamer": 1, "record": 2}


def _game(name: str) -> str:
    """``"atari:MsPacman"``, ``"MsPacman"``, ``"ALE/MsPacman-v5"`` or ``"ms_pacman"`` -> ``"ms_pacman"``."""
    raw = name.split(":")[-1].split("/")[-1]
    raw = re.sub(r"(NoFrameskip)?-v\d+$", "", raw)
    snake = raw if raw.islower() else re.sub(r"(?<!^)(?=[A-Z])", "_", raw).lower()
    if snake not in ATARI_BASELINES:
        compact = {g.replace("_", ""): g for g in ATARI_BASELINES}
        snake = compact.get(snake.replace("_", ""), snake)
    if snake not in ATARI_BASELINES:
        raise KeyError(f"metrics: unknown Atari game {name!r}; known: {', '.join(ATARI_57)}")
    return snake


def normalized_score(game: str, score: float, reference: str = "gamer") -> float:
    """``(score - random) / (reference - random)`` for ``reference`` ``"gamer"`` or ``"record"``."""
    if reference not in _REFERENCES:
        raise ValueError(f"normalized_score: `reference` must be 'gamer' or 'record', got {reference!r}")
    row = ATARI_BASELINES[_game(game)]
    high = row[_REFERENCES[reference]]
    if high is None:
        raise KeyError(f"normalized_score: {game!r} has no {reference} score (Toromanoff et al. 2019 give none)")
    return (float(score) - row[0]) / (high - row[0])


def _normalized(scores: Mapping[str, float], reference: str) -> list[float]:
    if not scores:
        raise ValueError("metrics: `scores` must map at least one game to its score")
    return [normalized_score(game, score, reference) for game, score in scores.items()]


def gamer_normalized_median(scores: Mapping[str, float]) -> float:
    """Median over games of the gamer-normalized score."""
    return statistics.median(_normalized(scores, "gamer"))


def gamer_normalized_mean(scores: Mapping[str, float]) -> float:
    """Mean over games of the gamer-normalized score (dominated by a few games: report it with the median)."""
    return statistics.fmean(_normalized(scores, "gamer"))


def record_normalized_mean(scores: Mapping[str, float]) -> float:
    """Mean over games of the record-normalized score."""
    return statistics.fmean(_normalized(scores, "record"))


def clipped_record_mean(scores: Mapping[str, float]) -> float:
    """Mean over games of ``min(1, record-normalized score)``: no game counts beyond the world record."""
    return statistics.fmean(min(1.0, x) for x in _normalized(scores, "record"))


def capped_human_normalized_mean(scores: Mapping[str, float]) -> float:
    """Mean over games of ``min(1, gamer-normalized score)`` (Espeholt et al. 2018; Jaderberg et al. 2017)."""
    return statistics.fmean(min(1.0, x) for x in _normalized(scores, "gamer"))
