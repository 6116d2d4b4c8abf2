"""PBT's decision rule: ready, truncation and binary exploits, explore within bounds, errors."""
import random

import pytest

from latentrl.checks import InputError
from latentrl.collectors.pbt import Hyperparameter, PBTRule

HP = {"lr": Hyperparameter(1e-5, 1e-2, log=True), "entropy_cost": Hyperparameter(0.0, 0.05),
      "unroll": Hyperparameter(5, 50, integer=True)}


def test_ready_after_the_configured_frames_since_the_last_exploit():
    rule = PBTRule(HP, ready_frames=1000)
    assert not rule.ready(999, 0) and rule.ready(1000, 0) and not rule.ready(2500, 1600) and rule.ready(2600, 1600)


def test_truncation_bottom_fifth_copies_a_uniform_top_fifth_member():
    rule = PBTRule(HP, ready_frames=1, exploit="truncation", quantile=0.2)
    fitness = {f"m{i}": float(i) for i in range(10)}  # m0, m1 bottom 20%; m8, m9 top 20%
    rng = random.Random(0)
    donors = [rule.exploit("m0", fitness, rng) for _ in range(2000)]
    assert set(donors) == {"m8", "m9"} and abs(donors.count("m8") / len(donors) - 0.5) < 0.05  # uniform
    assert {rule.exploit("m1", fitness, rng) for _ in range(50)} == {"m8", "m9"}
    for middle in ("m2", "m5", "m7", "m9"):  # not in the bottom 20%: keeps its own
        assert rule.exploit(middle, fitness, rng) is None


def test_truncation_in_a_population_of_four_is_worst_copies_best():
    rule = PBTRule(HP, ready_frames=1, quantile=0.25)
    fitness = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.5}
    assert rule.exploit("d", fitness, random.Random(0)) == "a"
    assert rule.exploit("b", fitness, random.Random(0)) is None


def test_binary_rule_copies_only_a_member_better_by_the_threshold():
    rule = PBTRule(HP, ready_frames=1, exploit="binary", threshold=0.05)
    rng = random.Random(1)
    assert rule.exploit("a", {"a": 100.0, "b": 105.0}, rng) is None  # 5% exactly is not "better by 5%"
    assert rule.exploit("a", {"a": 100.0, "b": 105.1}, rng) == "b"
    assert rule.exploit("a", {"a": -100.0, "b": -94.0}, rng) == "b"  # relative to |fitness|
    donors = {rule.exploit("a", {"a": 0.0, "b": 1.0, "c": 2.0}, rng) for _ in range(100)}
    assert donors == {"b", "c"}  # the other member is drawn uniformly


@pytest.mark.parametrize("explore", ["perturb", "resample"])
def test_explore_stays_within_bounds_and_keeps_integers(explore):
    rule = PBTRule(HP, ready_frames=1, explore=explore, resample_probability=0.5)
    rng = random.Random(2)
    values = {"lr": 1e-2, "entropy_cost": 0.0, "unroll": 50, "not_adapted": "kept"}
    seen = set()
    for _ in range(500):
        values = rule.explore(values, rng)
        assert 1e-5 <= values["lr"] <= 1e-2 and 0.0 <= values["entropy_cost"] <= 0.05 and 5 <= values["unroll"] <= 50
        assert isinstance(values["unroll"], int) and values["not_adapted"] == "kept"
        seen.add(values["unroll"])
    assert len(seen) > 5  # it moves


def test_perturb_multiplies_by_the_factors():
    rule = PBTRule({"lr": Hyperparameter(0.0, 1.0)}, ready_frames=1, explore="perturb", factors=(0.8, 1.2))
    rng = random.Random(3)
    outs = {round(rule.explore({"lr": 0.5}, rng)["lr"], 12) for _ in range(100)}
    assert outs == {0.4, 0.6}


def test_bad_arguments_name_them():
    with pytest.raises(InputError, match="`exploit` must be one of"):
        PBTRule(HP, ready_frames=1, exploit="tournament")
    with pytest.raises(InputError, match="`explore` must be one of"):
        PBTRule(HP, ready_frames=1, explore="mutate")
    with pytest.raises(InputError, match="ready_frames.*integer >= 1"):
        PBTRule(HP, ready_frames=0)
    with pytest.raises(InputError, match="quantile"):
        PBTRule(HP, ready_frames=1, quantile=0.7)
    with pytest.raises(InputError, match="log-uniform prior needs `low` > 0"):
        Hyperparameter(0.0, 1.0, log=True)
    rule = PBTRule(HP, ready_frames=1)
    with pytest.raises(InputError, match="no fitness for member 'z'"):
        rule.exploit("z", {"a": 1.0}, random.Random(0))
    with pytest.raises(InputError, match="NaN for \\['b'\\]"):
        rule.exploit("a", {"a": 1.0, "b": float("nan")}, random.Random(0))
    with pytest.raises(InputError, match="lack \\['unroll'\\]"):
        rule.explore({"lr": 1e-3, "entropy_cost": 0.01}, random.Random(0))
