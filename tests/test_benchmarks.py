"""Benchmarks stay runnable (numbers are measured by running them, not here)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_env_throughput_benchmark_prints_json():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "env_throughput.py"), "--num-envs", "2", "--batches", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert set(result["ratio_to_baseline"]) == {"baseline_single_env", "torchrl_async", "latentrl_sync"}
    assert result["ratio_to_baseline"]["baseline_single_env"] == 1.0
    ratios = result["atari"]["ratio_to_envpool_raw"]
    assert set(ratios) == {"envpool_raw", "envpool_torchrl", "gymnasium_torchrl"} and ratios["envpool_raw"] == 1.0
    assert all(v > 0 for v in result["atari"]["agent_steps_per_s"].values())


def test_vtrace_speed_benchmark_prints_json():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vtrace_speed.py"), "--batch", "4", "--time", "9", "--repeats", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    cpu = result["results"]["cpu"]
    assert cpu["max_abs_diff"]["value_target"] < 1e-5 and cpu["max_abs_diff"]["advantage"] < 1e-5
    assert cpu["ratio_ours_over_torchrl"] > 0


def test_actor_learner_throughput_benchmark_prints_json():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "actor_learner_throughput.py"),
            "--frames", "320", "--learner-ms", "5", "--num-envs", "2", "--unroll-length", "5", "--batch-size", "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert set(result["ratio_to_baseline"]) == {"baseline_single_collector", "actor_learner"}
    assert result["ratio_to_baseline"]["baseline_single_collector"] == 1.0
    assert result["frames_per_s"]["actor_learner"] > 0
    assert sum(result["actor_learner_lag_histogram"].values()) >= 320


def test_r2d2_replay_benchmark_prints_json():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "r2d2_replay.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["storage"]["torchrl_stored_steps"] == result["config"]["steps"]
    assert result["storage"]["latentrl_sequences"] > 0
    ratios = {
        "sampling": {"sequences_per_s", "real_steps_per_s", "priority_updates_per_s"},
        "learner": {"updates_per_s"},
    }
    for part, rates in ratios.items():
        assert set(result[part]) == {"latentrl", "torchrl", "ratio_ours_over_torchrl"}
        assert set(result[part]["ratio_ours_over_torchrl"]) == rates
        assert all(r > 0 for r in result[part]["ratio_ours_over_torchrl"].values())
    assert result["sampling"]["torchrl"]["slices_per_sample"] == result["config"]["batch_size"]
    for side in ("latentrl", "torchrl"):
        assert result["learner"][side]["updates_per_s"] > 0
        assert abs(sum(result["learner"][side]["share"].values()) - 1.0) < 0.01


def test_world_model_speed_benchmark_prints_json():
    out = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "world_model_speed.py"),
            "--batch", "2", "--length", "4", "--horizon", "3", "--deter", "16", "--hidden", "16",
            "--stoch", "4", "--units", "16", "--embed", "16", "--policy-units", "8",
            "--repeats", "1", "--warmup", "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["config"]["imagination_start_states"] == 8
    # the two world models are built to the same size
    assert result["params"]["latentrl"] == result["params"]["torchrl"] > 0
    step = result["world_model_step_ms"]
    assert set(step) == {"latentrl", "torchrl", "ratio_torchrl_over_latentrl"}
    assert all(v > 0 for v in step.values())
    rates = {"latentrl", "torchrl_prior_loop", "torchrl_dreamer_env",
             "ratio_latentrl_over_torchrl_prior_loop", "ratio_latentrl_over_torchrl_dreamer_env"}
    assert set(result["imagination_steps_per_s"]) == {"no_grad", "grad_forward"}
    for mode in result["imagination_steps_per_s"].values():
        assert set(mode) == rates
        assert all(v > 0 for v in mode.values())


def test_world_model_before_after_benchmark_matches_the_baseline():
    """Today's world-model update computes the baseline commit's losses and gradients (the script checks it)."""
    import pytest

    probe = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "cd9e815^{commit}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the baseline commit is not in this checkout's history (shallow clone)")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "world_model_before_after.py"), "--quick", "--repeats", "1",
         "--warmup", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    for name in ("planet", "dreamer_v2"):
        r = result["results"][name]
        assert max(r["relative_loss_diff"].values()) < 1e-4 and max(r["relative_grad_diff"].values()) < 1e-4
        assert r["update_ms"]["before"] > 0 and r["update_ms"]["after"] > 0


def test_dreamer_v3_update_benchmark_prints_json():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dreamer_v3_update.py"), "--batch", "2", "--seq-len", "8",
         "--repeats", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["threads"] == 1 and result["seconds_per_update"] > 0 and result["torchrl_seconds_per_update"] > 0
    assert set(result["phases_seconds"]) == {"world_model_forward", "actor_critic_forward", "backward_and_step"}
    assert result["ratio_ours_over_torchrl"] == result["seconds_per_update"] / result["torchrl_seconds_per_update"]
    assert result["gflops_per_update"] > 0 and 0 < result["flop_efficiency"]


def test_rl_lstm_vs_recurrent_ppo_benchmark_prints_per_seed_values_and_their_iqm():
    import importlib.util

    agents = ["rl_lstm"] + (["recurrent_ppo"] if importlib.util.find_spec("sb3_contrib") else [])
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rl_lstm_vs_recurrent_ppo.py"), "--seeds", "0", "--frames", "2048",
         "--agents", *agents, "--reps", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index('{\n') :])
    assert set(result["final_eval_return"]) == set(agents)
    for agent in agents:
        summary = result["final_eval_return"][agent]
        assert len(summary["per_seed"]) == 1 and summary["ci95_low"] <= summary["iqm"] <= summary["ci95_high"]
    assert all(run["frames_per_s"] > 0 and run["frames"] >= 2048 for run in result["runs"])


def test_rl_lstm_vs_recurrent_ppo_benchmark_passes_its_overrides_to_the_rl_lstm_config():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rl_lstm_vs_recurrent_ppo.py"), "--seeds", "0", "--frames", "2048",
         "--agents", "rl_lstm", "--rl-lstm-overrides", "ppo.epochs=0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0 and "'ppo.epochs'" in out.stderr and "an integer >= 1" in out.stderr


def test_impala_cartpole_benchmark_reports_entropy_and_updates_per_run():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "impala_cartpole.py"), "--seeds", "0", "--variants", "batch8", "batch32",
         "--reps", "200", "--",
         "actors.backend=sync", "actors.num_actors=1", "env.envs_per_actor=4", "learner.total_frames=640",
         "eval.interval_frames=640", "eval.episodes=2", "eval.max_steps=20", "checkpoint.interval_frames=null"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index('{\n') :])
    updates = {run["variant"]: run["updates"] for run in result["runs"]}
    assert updates == {"batch8": 4, "batch32": 1}  # 640 frames of 20-step unrolls
    assert all(0 < run["entropy_last_tenth"] <= 0.6932 for run in result["runs"])
    assert set(result["final_eval_return"]) == {"batch8", "batch32"}


def test_minatar_benchmark_reports_the_training_return_beside_young_and_tian():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "minatar_games.py"), "--agents", "impala", "--games", "Breakout",
         "--window", "200", "--reps", "200", "--", "learner.total_frames=400", "learner.batch_size=2", "actors.backend=sync",
         "actors.num_actors=1", "env.envs_per_actor=4", "eval.episodes=2", "eval.max_steps=50",
         "eval.interval_frames=200", "checkpoint.interval_frames=null"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index('{\n') :])
    impala = result["agents"]["impala"]
    (run,) = impala["runs"]
    assert run["frames"] == 400 and run["train_rows_in_window"] == 200 // (2 * 20)  # one row per update of 2 x 20 frames
    assert impala["train_return_last_window"]["Breakout"]["per_seed"] == [run["train_return_last_window"]]
    assert "young_tian_AC(0.8)_at_400_frames" in impala  # no reference at a frame count the curves were not read at


def test_merlin_vs_rl_lstm_benchmark_reports_both_agents_and_plots(tmp_path):
    plot = tmp_path / "tmaze.png"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "merlin_vs_rl_lstm.py"), "--delay", "3", "--frames", "320",
         "--seeds", "0", "--eval-interval", "320", "--plot", str(plot), "--reps", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index('{\n') :])
    assert set(result["final_success"]) == {"merlin", "rl_lstm"} and plot.stat().st_size > 0
    for run in result["runs"]:
        assert run["frames"] == 320 and 0.0 <= run["final_eval_return"] <= 1.0 and run["frames_per_s"] > 0
    printed = tmp_path / "runs.json"
    printed.write_text(out.stdout)
    replot = tmp_path / "replot.png"
    again = subprocess.run(  # the same summary from the printed runs, without training
        [sys.executable, str(ROOT / "benchmarks" / "merlin_vs_rl_lstm.py"), "--delay", "3", "--frames", "320",
         "--runs-from", str(printed), "--plot", str(replot), "--reps", "200"],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout[again.stdout.index('{\n') :])
    assert summary["final_success"] == result["final_success"] and replot.stat().st_size > 0
    out = subprocess.run(  # a POPGym task: its score is an episode's return in [-1, 1]
        [sys.executable, str(ROOT / "benchmarks" / "merlin_vs_rl_lstm.py"), "--env", "popgym:RepeatFirstEasy", "--frames",
         "320", "--seeds", "0", "--eval-interval", "320", "--reps", "200", "--agents", "merlin", "--merlin-overrides",
         "model.memory_rows=64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index('{\n') :])
    assert result["env"] == "popgym:RepeatFirstEasy" and result["delay"] is None
    for run in result["runs"]:
        assert run["frames"] == 320 and -1.0 <= run["final_eval_return"] <= 1.0


def test_ftw_vs_single_timescale_benchmark_reports_both_variants_and_plots(tmp_path):
    plot = tmp_path / "ftw.png"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ftw_vs_single_timescale.py"), "--delay", "3", "--frames", "320",
         "--seeds", "0", "--eval-interval", "320", "--plot", str(plot), "--reps", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index('{\n') :])
    assert set(result["final_success"]) == {"two_timescale", "single_timescale"} and plot.stat().st_size > 0
    for run in result["runs"]:
        assert run["frames"] == 320 and 0.0 <= run["final_eval_return"] <= 1.0 and run["curve"]


def test_memory_cost_benchmark_prints_json():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory_cost.py"), "--rows", "8", "32", "--repeats", "2",
         "--window", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert [r["rows"] for r in result["memory"]] == [8, 32]
    assert all(r["ms_per_step"] > 0 and r["ratio_to_lstm_step"] > 0 for r in result["memory"])


def test_merlin_tmaze_probe_prints_json_lines():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "merlin_tmaze_probe.py"), "--delay", "1", "--updates", "3",
         "--every", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["update"] for r in rows] == [0, 1, 2] and all(0.0 <= r["success"] <= 1.0 and r["kl"] >= 0 for r in rows)
