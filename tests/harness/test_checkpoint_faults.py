"""Checkpoints that survive faults: durable writes, the newest k kept, fallback
past a damaged file, and errors that name the file and the cause."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_checkpoint import _cfg  # the harness config of the checkpoint tests

from latentrl.harness import (
    CheckpointError,
    ConfigError,
    Experiment,
    checkpoint_files,
    load_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]


def _run_with_checkpoints(tmp_path, frames=(10, 20, 30), keep=2):
    exp = Experiment(_cfg(tmp_path, checkpoint={"keep": keep}))
    net = torch.nn.Linear(2, 2)
    exp.track(net=net)
    for f in frames:
        exp.counters["frames"] = f
        with torch.no_grad():
            net.weight.fill_(f)
        exp.save()
    return exp


def _truncate(path: Path, size: int = 5000) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: min(size, len(data) // 2)])


def test_keeps_the_newest_k(tmp_path):
    _run_with_checkpoints(tmp_path, frames=(10, 20, 30, 40), keep=2)
    assert [p.name for p in checkpoint_files(tmp_path / "run")] == ["step_000000000040.pt", "step_000000000030.pt"]
    _run_with_checkpoints(tmp_path / "three", frames=(10, 20, 30, 40), keep=3)
    assert len(checkpoint_files(tmp_path / "three" / "run")) == 3


def test_write_is_fsynced_file_and_directory(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    exp = Experiment(_cfg(tmp_path))
    exp.track(net=torch.nn.Linear(2, 2))
    exp.save()
    assert len(calls) >= 2  # the file, then its directory
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_truncated_newest_falls_back_to_the_previous_one_saying_which_and_why(tmp_path):
    _run_with_checkpoints(tmp_path)
    newest, previous = checkpoint_files(tmp_path / "run")
    _truncate(newest)
    with pytest.warns(RuntimeWarning, match=rf"resuming from .*{previous.name}.*{newest.name}.*truncated or corrupt"):
        payload = load_checkpoint(tmp_path / "run")
    assert payload["counters"]["frames"] == 20
    exp = Experiment(_cfg(tmp_path, checkpoint={"resume": str(tmp_path / "run")}))
    net = torch.nn.Linear(2, 2)
    exp.track(net=net)
    exp.restore()
    assert exp.counters["frames"] == 20 and torch.all(net.weight == 20)


def test_interrupted_write_leaves_only_a_temporary_file_that_is_ignored(tmp_path):
    _run_with_checkpoints(tmp_path)
    (tmp_path / "run" / "checkpoints" / ".step_000000000040.pt.tmp").write_bytes(b"\x80\x02partial")
    assert load_checkpoint(tmp_path / "run")["counters"]["frames"] == 30


def _damaged_files(tmp_path):
    good = _run_with_checkpoints(tmp_path).run_dir / "checkpoints" / "step_000000000030.pt"
    cases = {}
    cases["truncated"] = tmp_path / "truncated.pt"
    cases["truncated"].write_bytes(good.read_bytes()[:5000])
    cases["empty"] = tmp_path / "empty.pt"
    cases["empty"].write_bytes(b"")
    cases["text"] = tmp_path / "text.pt"
    cases["text"].write_text("not a checkpoint\n")
    cases["foreign_dict"] = tmp_path / "foreign_dict.pt"
    torch.save({"model": torch.zeros(2)}, cases["foreign_dict"])
    cases["foreign_tensor"] = tmp_path / "foreign_tensor.pt"
    torch.save(torch.zeros(3), cases["foreign_tensor"])
    cases["pickled_object"] = tmp_path / "pickled_object.pt"
    torch.save({"config": Path("x")}, cases["pickled_object"])
    cases["wrong_version"] = tmp_path / "wrong_version.pt"
    payload = torch.load(good, weights_only=True)
    payload["version"] = 99
    torch.save(payload, cases["wrong_version"])
    return cases


EXPECTED = {
    "truncated": "truncated or corrupt",
    "empty": "truncated or corrupt",
    "text": "truncated or corrupt",
    "foreign_dict": "not a latentrl checkpoint",
    "foreign_tensor": "not a latentrl checkpoint",
    "pickled_object": "safe \\(weights_only\\) loading refuses",
    "wrong_version": "version 99",
}


def test_each_damaged_file_is_named_with_its_cause(tmp_path):
    for name, path in _damaged_files(tmp_path).items():
        with pytest.raises(CheckpointError, match=rf"{path.name}.*{EXPECTED[name]}"):
            load_checkpoint(path)
        with pytest.raises(ConfigError, match=rf"'checkpoint.resume'.*{path.name}.*{EXPECTED[name]}"):
            Experiment(_cfg(tmp_path, run_dir=str(tmp_path / name), checkpoint={"resume": str(path)}))


def test_run_dir_where_nothing_loads_lists_every_file(tmp_path):
    _run_with_checkpoints(tmp_path)
    files = checkpoint_files(tmp_path / "run")
    for p in files:
        _truncate(p)
    with pytest.raises(CheckpointError, match="no checkpoint loads") as err:
        load_checkpoint(tmp_path / "run")
    assert all(p.name in str(err.value) for p in files)


def test_missing_resume_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"'checkpoint.resume': no such file or directory: /no/such/dir"):
        Experiment(_cfg(tmp_path, checkpoint={"resume": "/no/such/dir"}))
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ConfigError, match="no checkpoint under"):
        Experiment(_cfg(tmp_path, checkpoint={"resume": str(tmp_path / "empty_run")}))


def test_cli_missing_resume_exits_2_naming_the_key(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "rl_lstm" / "train.py"), "checkpoint.resume=/no/such/dir",
         f"run_dir={tmp_path}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "config error: config key 'checkpoint.resume': no such file or directory: /no/such/dir" in out.stderr
    assert "Traceback" not in out.stderr


def test_csv_rows_cut_short_by_a_crash_are_dropped_on_resume(tmp_path):
    exp = _run_with_checkpoints(tmp_path, frames=(10,))
    scalars = exp.run_dir / "logs" / "scalars"
    scalars.mkdir(parents=True, exist_ok=True)
    (scalars / "x.csv").write_text("5,1.0\n10,2.0\n15,3.0\n2")  # a row after the checkpoint and a cut one
    resumed = Experiment(_cfg(tmp_path, checkpoint={"resume": str(exp.run_dir)}))
    resumed.track(net=torch.nn.Linear(2, 2))
    resumed.restore()
    assert (scalars / "x.csv").read_text() == "5,1.0\n10,2.0\n"


def test_checkpoint_from_before_the_format_tag_still_resumes(tmp_path):
    exp = _run_with_checkpoints(tmp_path, frames=(10,))
    payload = torch.load(checkpoint_files(exp.run_dir)[0], weights_only=True)
    del payload["format"], payload["version"]
    legacy = tmp_path / "old" / "checkpoints" / "latest.pt"
    legacy.parent.mkdir(parents=True)
    torch.save(payload, legacy)
    assert load_checkpoint(tmp_path / "old")["counters"]["frames"] == 10
    # checkpoint.keep may change on resume, like stop_at_frames
    Experiment(_cfg(tmp_path, checkpoint={"resume": str(legacy), "keep": 5}))
