"""The categorical VAE example: smoke run, config errors, every estimator trains both networks."""
import json
import math

import pytest
import torch
from conftest import example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError
from latentrl.objectives.baselines import MovingAverageBaseline


def _cfg(tmp_path, **over):
    """The example's config, tiny: 40 steps, one seed, writing to tmp_path."""
    small = {"train": {"steps": 40}, "eval": {"interval": 20, "samples": 2, "iqm_reps": 100}, "seeds": [0], "run_dir": str(tmp_path)}
    return OmegaConf.merge(example_config("gumbel", small), OmegaConf.create(over))


def test_smoke_all_estimators_table_and_files(categorical_vae, tmp_path):
    out = categorical_vae.main(_cfg(tmp_path))
    results = out["negative_elbo"]
    assert set(results) == {"reinforce", "straight_through", "gumbel_softmax", "st_gumbel_softmax"}
    for per_seed in results.values():
        # below the -ELBO of a model that ignores the data entirely: 64 pixels at log 2 each
        assert 0 < per_seed[0] < 64 * math.log(2)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["negative_elbo"].keys() == saved["objective"].keys() == results.keys()
    # the estimators trained on discrete z are scored by their own objective: the bound itself
    for name in ("reinforce", "straight_through", "st_gumbel_softmax"):
        assert out["objective"][name] == results[name]
    assert out["objective"]["gumbel_softmax"] != results["gumbel_softmax"]
    table = (tmp_path / "table.md").read_text()
    assert table.count("| gumbel_softmax |") == 2 and "paper's protocol" in table
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_bad_estimator_is_named(categorical_vae, tmp_path):
    with pytest.raises(ConfigError, match="'estimators'.*reinforce"):
        categorical_vae.main(_cfg(tmp_path, estimators=["reinforce", "vimco"]))


@pytest.mark.parametrize("estimator", ["reinforce", "straight_through", "gumbel_softmax", "st_gumbel_softmax"])
def test_every_estimator_trains_encoder_and_decoder(categorical_vae, estimator):
    torch.manual_seed(0)
    model = categorical_vae.CategoricalVAE(64, 4, 3, [16])
    x = (torch.rand(8, 64) > 0.5).float()
    loss = categorical_vae.loss_for(estimator, model, x, 1.0, MovingAverageBaseline())
    loss.backward()
    for net in (model.encoder, model.decoder):
        grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        assert torch.isfinite(grads).all() and grads.abs().sum() > 0


def test_negative_elbo_by_enumeration(categorical_vae):
    """With one binary latent the ELBO can be written out: E_q[-log p(x|z)] + KL(q || uniform)."""
    torch.manual_seed(0)
    model = categorical_vae.CategoricalVAE(6, 1, 2, [5])
    x = (torch.rand(3, 6) > 0.5).float()
    q = model.posterior_logits(x).softmax(-1)  # [3, 1, 2]
    nll = torch.stack([model.reconstruction_nll(x, torch.eye(2)[k].expand(3, 1, 2)) for k in range(2)], -1)
    exact = ((q[:, 0] * nll).sum(-1) + (q[:, 0] * (q[:, 0].log() + math.log(2))).sum(-1)).mean().item()
    torch.manual_seed(1)
    estimate = categorical_vae.negative_elbo(model, x, samples=20_000)
    assert abs(estimate - exact) < 0.02


def test_paper_objective_is_relaxed_for_gumbel_softmax_only(categorical_vae):
    """Only Gumbel-softmax is scored on relaxed z: the bound itself as T -> 0, something else at T = 1."""
    torch.manual_seed(0)
    model = categorical_vae.CategoricalVAE(6, 2, 3, [5])
    x = (torch.rand(4, 6) > 0.5).float()
    cfg = example_config("gumbel", {"eval": {"samples": 20_000}, "temperature": {"initial": 1.0, "minimum": 0.01}})
    torch.manual_seed(1)
    bound = categorical_vae.negative_elbo(model, x, 20_000)
    for name in ("reinforce", "straight_through", "st_gumbel_softmax"):
        torch.manual_seed(1)
        assert categorical_vae.evaluate(cfg, name, model, x, step=1)["objective"] == bound
    cold = categorical_vae.evaluate(cfg, "gumbel_softmax", model, x, step=10**6)  # T = 0.01: nearly one-hot z
    assert abs(cold["objective"] - cold["negative_elbo"]) < 0.05
    # at T = 1, written out with torch's RelaxedOneHotCategorical on the same random stream
    torch.manual_seed(2)
    warm = categorical_vae.evaluate(cfg, "gumbel_softmax", model, x, step=0)["objective"]
    torch.manual_seed(2)
    categorical_vae.negative_elbo(model, x, 20_000)  # evaluate draws the discrete bound first
    logits = model.posterior_logits(x).detach()
    z = torch.distributions.RelaxedOneHotCategorical(torch.tensor(1.0), logits=logits).sample((20_000,))
    q = logits.softmax(-1)
    by_hand = model.reconstruction_nll(x, z).mean(0) + (q * (q.log() + math.log(3))).sum((-1, -2))
    assert warm == pytest.approx(by_hand.mean().item(), abs=1e-4)


def test_cli_end_to_end(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "gumbel" / "categorical_vae.py"),
            "train.steps=30",
            "eval.interval=10",
            "eval.iqm_reps=100",
            "seeds=[0,1]",
            "estimators=[straight_through,gumbel_softmax]",
            f"run_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| estimator | seed 0 | seed 1 | mean | std | IQM [95% CI] |" in out.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "gumbel" / "categorical_vae.py"), "train.stepz=3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "Did you mean 'train.steps'" in bad.stderr


@pytest.fixture(scope="module")
def full_tables(categorical_vae, tmp_path_factory):
    """The default run: 4 estimators x 3 seeds x 3000 steps (about 3 minutes); means over seeds."""
    cfg = example_config("gumbel", {"run_dir": str(tmp_path_factory.mktemp("vae_full"))})
    out = categorical_vae.main(cfg)
    return {
        metric: {name: sum(v.values()) / len(v) for name, v in out[metric].items()}
        for metric in ("negative_elbo", "objective")
    }


@pytest.mark.slow
def test_ordering_paper_protocol(full_tables):
    """Jang et al. 2016, Table 1: Gumbel-softmax best, the straight-through variants next, REINFORCE worst."""
    t = full_tables["objective"]
    assert t["gumbel_softmax"] < min(t["st_gumbel_softmax"], t["straight_through"])
    assert max(t["st_gumbel_softmax"], t["straight_through"]) < t["reinforce"]


@pytest.mark.slow
def test_ordering_discrete_bound_relaxed_and_straight_through_beat_reinforce(full_tables):
    t = full_tables["negative_elbo"]
    best_gumbel = max(t["gumbel_softmax"], t["st_gumbel_softmax"])
    assert best_gumbel < t["straight_through"] < t["reinforce"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: on the discrete bound ST Gumbel-softmax 20.21 vs Gumbel-softmax 20.29 (tied within one std)")
def test_ordering_discrete_bound_gumbel_softmax_best(full_tables):
    t = full_tables["negative_elbo"]
    assert t["gumbel_softmax"] < t["st_gumbel_softmax"]
