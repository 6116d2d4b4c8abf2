"""Categorical VAE with four gradient estimators (Jang et al. 2016, Table 1).

A VAE with 20 categorical latent variables of 10 classes on scikit-learn's
bundled 8x8 digits (binarized, no download), trained once per estimator and
seed:

* ``reinforce``: score function with a moving-average baseline
  (``reinforce_surrogate``); the decoder is trained on discrete samples;
* ``straight_through``: one-hot forward, gradient of the probabilities;
* ``gumbel_softmax``: the relaxed sample goes to the decoder, temperature
  annealed ``tau = max(0.5, exp(-r t))`` as in the paper;
* ``st_gumbel_softmax``: one-hot forward, gradient of the relaxed sample.

Two numbers per model, both in nats on the test split:

* ``negative_elbo``: the same bound for every estimator,
  ``E_q[-log p(x|z)] + KL(q(z|x) || uniform)`` with discrete ``z ~ q``;
* ``objective``: the paper's protocol, each estimator's own training
  objective on the test split. It equals ``negative_elbo`` except for
  Gumbel-softmax, whose decoder reads the relaxed sample at the final
  temperature, with the categorical KL, as in the authors' code
  (ericjang/gumbel-softmax); that relaxed objective is not a bound on the
  discrete model's likelihood.

The script prints and saves both tables (mean and std over seeds) and a plot
of the test curves.

    python examples/gumbel/categorical_vae.py
    python examples/gumbel/categorical_vae.py train.steps=500 seeds=[0]
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchrl.record.loggers import get_logger

from latentrl.harness import (
    HARNESS_CHOICES,
    check_config,
    default_run_dir,
    plot_learning_curve,
    run,
    seed_everything,
)
from latentrl.modules.distributions import (
    GumbelSoftmax,
    StraightThroughOneHotCategorical,
    independent,
)
from latentrl.objectives.baselines import MovingAverageBaseline
from latentrl.objectives.functional import reinforce_surrogate

CONFIG_DIR = Path(__file__).resolve().parent
ESTIMATORS = ("reinforce", "straight_through", "gumbel_softmax", "st_gumbel_softmax")
CONSTRAINTS = {
    "estimators": (lambda v: len(v) > 0 and set(v) <= set(ESTIMATORS), f"a non-empty list drawn from {list(ESTIMATORS)}"),
    "seeds": (lambda v: len(v) > 0 and all(isinstance(s, int) for s in v), "a non-empty list of integers"),
    "train.steps": (lambda v: v > 0, "a positive integer"),
    "train.batch_size": (lambda v: v > 0, "a positive integer"),
    "temperature.minimum": (lambda v: v > 0, "a positive number"),
    "eval.interval": (lambda v: v > 0, "a positive integer"),
    "eval.samples": (lambda v: v > 0, "a positive integer"),
    "eval.iqm_reps": (lambda v: v >= 1, "an integer >= 1"),
}


def load_binarized_digits(seed: int, test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 8x8 digits, pixels >= 8 (of 16) set to 1, split train/test."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().data >= 8, dtype=torch.float32)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_fraction)
    return x[perm[n_test:]], x[perm[:n_test]]


def mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CategoricalVAE(nn.Module):
    def __init__(self, data_dim: int, variables: int, classes: int, hidden: list[int]):
        super().__init__()
        self.variables, self.classes = variables, classes
        self.encoder = mlp([data_dim, *hidden, variables * classes])
        self.decoder = mlp([variables * classes, *reversed(hidden), data_dim])

    def posterior_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).view(*x.shape[:-1], self.variables, self.classes)

    def reconstruction_nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) (Bernoulli pixels), summed over pixels."""
        logits = self.decoder(z.flatten(-2))
        return nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def kl_to_uniform(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || uniform prior), summed over the latent variables."""
        logq = logits.log_softmax(-1)
        return (logq.exp() * (logq + math.log(self.classes))).sum((-1, -2))


def temperature(cfg: DictConfig, step: int) -> float:
    t = cfg.temperature
    return max(t.minimum, t.initial * math.exp(-t.anneal_rate * step))


def loss_for(estimator: str, model: CategoricalVAE, x: torch.Tensor, tau: float, baseline: MovingAverageBaseline):
    """The training loss of one estimator (mean over the batch)."""
    logits = model.posterior_logits(x)
    kl = model.kl_to_uniform(logits)
    if estimator == "reinforce":
        q = independent(StraightThroughOneHotCategorical(logits=logits))
        z = q.sample()
        nll = model.reconstruction_nll(x, z)  # trains the decoder pathwise
        surrogate = reinforce_surrogate(q.log_prob(z), nll, baseline())  # trains the encoder
        baseline.update(nll)
        return (nll + surrogate + kl).mean()
    if estimator == "straight_through":
        z = StraightThroughOneHotCategorical(logits=logits).rsample()
    else:
        z = GumbelSoftmax(tau, logits=logits, hard=estimator == "st_gumbel_softmax").rsample()
    return (model.reconstruction_nll(x, z) + kl).mean()


@torch.no_grad()
def negative_elbo(model: CategoricalVAE, x: torch.Tensor, samples: int, relaxed_temperature: float | None = None) -> float:
    """Test -ELBO in nats per image, with discrete z ~ q(z|x).

    With ``relaxed_temperature`` the decoder reads Gumbel-softmax samples at
    that temperature instead (the Gumbel-softmax estimator's own objective).
    """
    logits = model.posterior_logits(x)
    if relaxed_temperature is None:
        z = StraightThroughOneHotCategorical(logits=logits).sample((samples,))
    else:
        z = GumbelSoftmax(relaxed_temperature, logits=logits).sample((samples,))
    return (model.reconstruction_nll(x, z).mean(0) + model.kl_to_uniform(logits)).mean().item()


def evaluate(cfg: DictConfig, estimator: str, model: CategoricalVAE, x: torch.Tensor, step: int) -> dict[str, float]:
    """``negative_elbo`` (discrete z, every estimator) and ``objective`` (the estimator's own, on test data)."""
    bound = negative_elbo(model, x, cfg.eval.samples)
    own = negative_elbo(model, x, cfg.eval.samples, temperature(cfg, step)) if estimator == "gumbel_softmax" else bound
    return {"negative_elbo": bound, "objective": own}


def train_one(cfg: DictConfig, estimator: str, seed: int, data, logger) -> list[tuple[int, dict[str, float]]]:
    seed_everything(seed)
    train_x, test_x = data
    model = CategoricalVAE(train_x.shape[-1], cfg.latent.variables, cfg.latent.classes, list(cfg.model.hidden)).to(cfg.device)
    baseline = MovingAverageBaseline(cfg.reinforce.baseline_decay).to(cfg.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    train_x, test_x = train_x.to(cfg.device), test_x.to(cfg.device)
    curve = []
    for step in range(1, cfg.train.steps + 1):
        batch = train_x[torch.randint(len(train_x), (cfg.train.batch_size,), device=cfg.device)]
        loss = loss_for(estimator, model, batch, temperature(cfg, step), baseline)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{estimator} seed {seed}: non-finite loss at step {step}: loss = {loss.item()}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % cfg.eval.interval == 0 or step == cfg.train.steps:
            values = evaluate(cfg, estimator, model, test_x, step)
            curve.append((step, values))
            logger.log_scalar(f"{estimator}/seed{seed}/test_neg_elbo", values["negative_elbo"], step=step)
            logger.log_scalar(f"{estimator}/seed{seed}/test_objective", values["objective"], step=step)
            logger.log_scalar(f"{estimator}/seed{seed}/train_loss", loss.item(), step=step)
    return curve


def format_table(results: dict[str, dict[int, float]], reps: int = 50_000) -> str:
    """Per-seed values, mean, std and (with rliable, ``latentrl[results]``) the IQM with its 95% interval."""
    from latentrl.harness.seeds import iqm_interval

    if importlib.util.find_spec("rliable") is None:
        iqm_interval = None
    seeds = sorted({s for r in results.values() for s in r})
    rows = sorted(results.items(), key=lambda kv: sum(kv[1].values()) / len(kv[1]))
    iqm_head = " IQM [95% CI] |" if iqm_interval else ""
    lines = [
        "| estimator | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |" + iqm_head,
        "|---|" + "---|" * (len(seeds) + 2 + bool(iqm_interval)),
    ]
    for name, per_seed in rows:
        values = torch.tensor([per_seed[s] for s in seeds])
        std = values.std(unbiased=False).item() if len(values) > 1 else 0.0
        iqm = ""
        if iqm_interval:
            out = iqm_interval(values.tolist(), reps)
            iqm = f" {out['iqm']:.2f} [{out['ci95_low']:.2f}, {out['ci95_high']:.2f}] |"
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.2f}" for v in values.tolist()) + f" | {values.mean():.2f} | {std:.2f} |" + iqm
        )
    return "\n".join(lines)


def main(cfg: DictConfig) -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), HARNESS_CHOICES, CONSTRAINTS)
    torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = get_logger(cfg.logger.backend, logger_name=str(run_dir), experiment_name="logs")
    data = load_binarized_digits(cfg.seed)
    results: dict[str, dict[str, dict[int, float]]] = {"negative_elbo": {}, "objective": {}}
    mean_curves: dict[str, list[tuple[int, float]]] = {}
    for estimator in cfg.estimators:
        curves = {seed: train_one(cfg, estimator, seed, data, logger) for seed in cfg.seeds}
        for metric, per_estimator in results.items():
            per_estimator[estimator] = {seed: curve[-1][1][metric] for seed, curve in curves.items()}
        for seed in cfg.seeds:
            bound, own = (results[m][estimator][seed] for m in ("negative_elbo", "objective"))
            print(f"{estimator:>18s} seed {seed}: test -ELBO {bound:.2f} nats, own objective {own:.2f}", flush=True)
        steps = [step for step, _ in curves[cfg.seeds[0]]]  # the same evaluation steps for every seed
        mean_curves[estimator] = [
            (step, sum(curve[i][1]["negative_elbo"] for curve in curves.values()) / len(curves))
            for i, step in enumerate(steps)
        ]
    table = format_table(results["negative_elbo"], cfg.eval.iqm_reps)
    paper_table = format_table(results["objective"], cfg.eval.iqm_reps)
    print("\nTest negative ELBO, discrete z (nats, lower is better):\n" + table)
    print("\nTest objective, the paper's protocol (Gumbel-softmax on relaxed z):\n" + paper_table)
    (run_dir / "table.md").write_text(
        "Test negative ELBO, discrete z (nats):\n\n" + table + "\n\nTest objective, the paper's protocol (nats):\n\n" + paper_table + "\n"
    )
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot = plot_learning_curve(
        mean_curves,
        run_dir / "curves.png",
        keys=list(mean_curves),
        title="categorical VAE on digits: test -ELBO, discrete z (mean over seeds)",
        xlabel="training step",
        ylabel="negative ELBO (nats)",
    )
    return {**results, "table": table, "paper_table": paper_table, "run_dir": str(run_dir), "curves": str(plot)}


if __name__ == "__main__":
    run(main, CONFIG_DIR)
