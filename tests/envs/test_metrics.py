"""Atari metrics: the normalized aggregates reproduce the DreamerV2 paper's Table 1 rows for Rainbow and C51
(Dopamine, sticky actions, 200M frames; per-game scores as in danijar/dreamerv2 ``scores/baselines.json``),
and only with the corrected James Bond row."""
import pytest

from latentrl.envs import metrics
from latentrl.envs.metrics import (
    ATARI_BASELINES,
    DREAMERV2_GAMES,
    capped_human_normalized_mean,
    clipped_record_mean,
    gamer_normalized_mean,
    gamer_normalized_median,
    normalized_score,
    record_normalized_mean,
)

RAINBOW = {
    "alien": 3456.95, "amidar": 2529.09, "assault": 3228.82, "asterix": 18366.58, "asteroids": 1483.54,
    "atlantis": 802548.0, "bank_heist": 1074.97, "battle_zone": 40060.59, "beam_rider": 6290.48,
    "berzerk": 833.41, "bowling": 42.86, "boxing": 98.56, "breakout": 120.07, "centipede": 6509.87,
    "chopper_command": 12337.51, "crazy_climber": 145389.29, "demon_attack": 17071.26, "double_dunk": 22.12,
    "enduro": 2200.16, "fishing_derby": 41.8, "freeway": 33.69, "frostbite": 8207.72, "gopher": 10641.07,
    "gravitar": 1271.8, "hero": 46675.16, "ice_hockey": -0.18, "james_bond": 1097.12, "kangaroo": 12748.3,
    "krull": 4065.97, "kung_fu_master": 26475.07, "montezuma_revenge": 500.0, "ms_pacman": 3861.01,
    "name_this_game": 9025.75, "phoenix": 8545.35, "pitfall": -19.76, "pong": 20.18, "private_eye": 21333.56,
    "qbert": 17382.94, "riverraid": 20755.91, "road_runner": 54662.07, "robotank": 65.52, "seaquest": 9903.38,
    "skiing": -28707.56, "solaris": 1582.69, "space_invaders": 4130.88, "star_gunner": 57908.72,
    "tennis": -0.22, "time_pilot": 12050.53, "tutankham": 239.07, "up_n_down": 34887.76, "venture": 1528.87,
    "video_pinball": 466894.97, "wizard_of_wor": 7878.62, "yars_revenge": 45542.03, "zaxxon": 14603.02,
}

C51 = {
    "alien": 2474.88, "amidar": 1363.18, "assault": 1800.12, "asterix": 13453.37, "asteroids": 1079.58,
    "atlantis": 824994.31, "bank_heist": 757.65, "battle_zone": 25501.76, "beam_rider": 5331.59,
    "berzerk": 516.69, "bowling": 32.1, "boxing": 81.4, "breakout": 202.39, "centipede": 7594.53,
    "chopper_command": 5718.16, "crazy_climber": 136041.14, "demon_attack": 7098.0, "double_dunk": 1.28,
    "enduro": 1283.8, "fishing_derby": 10.4, "freeway": 33.68, "frostbite": 4284.99, "gopher": 7172.88,
    "gravitar": 686.0, "hero": 33753.23, "ice_hockey": -4.36, "james_bond": 725.56, "kangaroo": 7687.54,
    "krull": 6770.45, "kung_fu_master": 24811.6, "montezuma_revenge": 1044.67, "ms_pacman": 3693.53,
    "name_this_game": 12594.19, "phoenix": 5849.25, "pitfall": -18.39, "pong": 19.34, "private_eye": 4207.11,
    "qbert": 9761.91, "riverraid": 13514.28, "road_runner": 48213.46, "robotank": 60.53, "seaquest": 31025.85,
    "skiing": -22231.09, "solaris": 1961.66, "space_invaders": 3983.6, "star_gunner": 34804.97, "tennis": 21.7,
    "time_pilot": 8117.05, "tutankham": 240.72, "up_n_down": 8279.26, "venture": 1339.41,
    "video_pinball": 405173.28, "wizard_of_wor": 3229.23, "yars_revenge": 11746.61, "zaxxon": 6502.33,
}

# DreamerV2 paper, Table 1: gamer median, gamer mean, record mean, clipped record mean
PUBLISHED = {"rainbow": (RAINBOW, (1.47, 9.12, 0.17, 0.17)), "c51": (C51, (1.09, 7.70, 0.15, 0.15))}


def _aggregates(scores):
    return (gamer_normalized_median(scores), gamer_normalized_mean(scores), record_normalized_mean(scores),
            clipped_record_mean(scores))


@pytest.mark.parametrize("agent", PUBLISHED)
def test_reproduces_the_published_aggregates(agent):
    scores, published = PUBLISHED[agent]
    assert sorted(scores) == sorted(DREAMERV2_GAMES) and len(scores) == 55
    assert [round(x, 2) for x in _aggregates(scores)] == list(published)


def test_the_shifted_james_bond_row_would_not_reproduce_them(monkeypatch):
    monkeypatch.setitem(metrics.ATARI_BASELINES, "james_bond", (7.0, 29.0, 45550.0))  # dreamerv2's json
    assert round(gamer_normalized_mean(RAINBOW), 2) == 9.95  # not the published 9.12


def test_normalization_by_hand_and_the_caps():
    random, gamer, record = ATARI_BASELINES["pong"]
    assert (random, gamer, record) == (-20.7, 14.6, 21.0)
    assert normalized_score("atari:Pong", 14.6) == pytest.approx(1.0)
    assert normalized_score("Pong", -20.7, "record") == 0.0
    scores = {"pong": 21.0, "breakout": 864.0, "james_bond": 29.0}  # record, record, random
    gamer = [(21.0 + 20.7) / 35.3, (864.0 - 1.7) / 28.8, 0.0]
    assert gamer_normalized_mean(scores) == pytest.approx(sum(gamer) / 3)
    assert gamer_normalized_median(scores) == pytest.approx(sorted(gamer)[1])
    assert capped_human_normalized_mean(scores) == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert record_normalized_mean(scores) == pytest.approx(2 / 3) and clipped_record_mean(scores) == pytest.approx(2 / 3)
    over = {"breakout": 2 * 864.0 - 1.7}  # twice the record's distance from random
    assert record_normalized_mean(over) == pytest.approx(2.0) and clipped_record_mean(over) == 1.0


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="unknown Atari game 'atari:NotAGame'.*alien"):
        normalized_score("atari:NotAGame", 1.0)
    with pytest.raises(KeyError, match="'surround' has no record score"):
        record_normalized_mean({"surround": 1.0})
    with pytest.raises(ValueError, match="`reference` must be 'gamer' or 'record'"):
        normalized_score("pong", 1.0, "human")
    with pytest.raises(ValueError, match="at least one game"):
        gamer_normalized_median({})
