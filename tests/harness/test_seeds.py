"""Multi-seed summaries: per-seed final/best from the CSV logs, IQM with rliable's bootstrap interval."""
import json

import pytest

from latentrl.harness.seeds import iqm_interval, main, seed_summary


def _run(tmp_path, name, rows):
    path = tmp_path / name / "logs" / "scalars" / "eval"
    path.mkdir(parents=True)
    (path / "return.csv").write_text("".join(f"{f},{v}\n" for f, v in rows))
    return tmp_path / name


def test_iqm_is_the_mean_of_the_middle_half():
    out = iqm_interval([1.0, 2.0, 3.0, 4.0], reps=1000)
    assert out["iqm"] == pytest.approx(2.5)  # (2 + 3) / 2: the lowest and highest quarter dropped
    assert 1.0 <= out["ci95_low"] <= out["iqm"] <= out["ci95_high"] <= 4.0
    assert out["ci95_low"] < out["ci95_high"]
    assert iqm_interval([5.0, 5.0, 5.0], reps=500) == {"iqm": 5.0, "ci95_low": 5.0, "ci95_high": 5.0}


def test_seed_summary_reads_final_and_best_within_the_budget(tmp_path, capsys):
    a = _run(tmp_path, "s0", [(10, 1.0), (20, 9.0), (30, 4.0)])
    b = _run(tmp_path, "s1", [(10, 2.0), (20, 3.0), (30, 8.0)])
    out = seed_summary([a, b], until=20, reps=500)
    assert [s["final"] for s in out["seeds"]] == [9.0, 3.0]
    assert [s["best"] for s in out["seeds"]] == [9.0, 3.0]
    assert out["final"]["iqm"] == pytest.approx(6.0)
    full = seed_summary([a, b], reps=500)
    assert [s["best"] for s in full["seeds"]] == [9.0, 8.0] and [s["final"] for s in full["seeds"]] == [4.0, 8.0]
    main([str(a), str(b), "--until", "10", "--reps", "500"])
    assert json.loads(capsys.readouterr().out)["final"]["iqm"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no eval/return row at or before frame 5"):
        seed_summary([a], until=5)
    with pytest.raises(FileNotFoundError, match="eval/nothing"):
        seed_summary([a], metric="eval/nothing")


def test_values_from_a_table_get_their_iqm(tmp_path, capsys):
    main(["--values", "1", "2", "3", "4", "--reps", "500"])
    out = json.loads(capsys.readouterr().out)
    assert out["values"] == [1.0, 2.0, 3.0, 4.0] and out["iqm"] == pytest.approx(2.5)
    assert out == {"values": [1.0, 2.0, 3.0, 4.0], **iqm_interval([1, 2, 3, 4], reps=500)}
    for argv in ([], [str(_run(tmp_path, "s0", [(10, 1.0)])), "--values", "1"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "give run dirs (one per seed) or --values" in capsys.readouterr().err
