"""FTWLoss and the keyed unroll: the re-run matches the collector, gradients reach what they must, keys."""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker, TransformedEnv

from latentrl.checks import InputError
from latentrl.envs import make_env
from latentrl.envs.previous import PreviousActionReward
from latentrl.modules import make_ftw_agent, unroll_keyed
from latentrl.objectives import FTWLoss


def _batch(period=3, grad_scale=1.0, frames=40, seed=0):
    torch.manual_seed(seed)
    env = TransformedEnv(make_env("pomdp:tmaze", num_envs=4, delay=4), Compose(InitTracker(), PreviousActionReward()))
    step, actor, core = make_ftw_agent(env.observation_spec["observation"].shape[-1], env.action_spec, period=period,
                                       grad_scale=grad_scale, embedding=8, fast_hidden=8, slow_hidden=8, z_dim=4,
                                       head_hidden=8)
    env.append_transform(core.make_tensordict_primer())
    env.set_seed(seed)
    collector = Collector(env, actor, frames_per_batch=frames, total_frames=frames)
    batch = next(iter(collector))
    collector.shutdown()
    return step, core, batch


class _RunningSum(TensorDictModuleBase):
    """A deterministic keyed recurrent step: s_t = s_{t-1} * (1 - is_init) + x_t; writes y = 2 s_t."""

    in_keys = ["x", "is_init", "s"]
    out_keys = ["y", ("next", "s")]

    def forward(self, td):
        s = td["s"] * (~td["is_init"]).float() + td["x"]
        td["y"] = 2 * s
        td["next", "s"] = s
        return td


def test_unroll_keyed_reruns_the_recursion_from_the_stored_first_state():
    x = torch.arange(12.0).reshape(2, 6, 1)
    is_init = torch.zeros(2, 6, 1, dtype=torch.bool)
    is_init[1, 3] = True
    stored = torch.full((2, 6, 1), -100.0)  # only t = 0 may be read
    stored[:, 0] = torch.tensor([[1.0], [5.0]])
    out = unroll_keyed(_RunningSum(), TensorDict({"x": x, "is_init": is_init, "s": stored}, batch_size=[2, 6]), ["s"])
    want = torch.zeros(2, 6, 1)
    for b in range(2):
        s = stored[b, 0, 0].item()
        for t in range(6):
            s = (0.0 if is_init[b, t, 0] else s) + x[b, t, 0].item()
            want[b, t, 0] = 2 * s
    torch.testing.assert_close(out["y"], want)


def test_the_unroll_matches_what_the_collector_computed():
    step, core, batch = _batch()
    out = unroll_keyed(step, batch, core.state_keys())
    assert torch.equal(out["tick"], batch["tick"])  # the slow core ticks at the same steps
    torch.testing.assert_close(out["prior_mean"][:, 0], batch["prior_mean"][:, 0])  # deterministic before any sample


def test_loss_terms_are_finite_and_the_kl_is_computed_at_ticks():
    step, core, batch = _batch()
    loss = FTWLoss(step, core.state_keys())
    out = loss(batch)
    expected = {"loss_objective", "loss_critic", "loss_entropy", "loss_kl", "loss_prior"}
    assert expected <= set(out.keys()) and all(torch.isfinite(out[k]) for k in expected)
    assert out["kl"] > 0 and out["kl_prior"] > 0


@pytest.mark.parametrize("kl_coef,reaches", [(0.0, False), (1.0, True)])
def test_with_grad_scale_zero_only_the_kl_trains_the_slow_core(kl_coef, reaches):
    step, core, batch = _batch(grad_scale=0.0)
    loss = FTWLoss(step, core.state_keys(), kl_coef=kl_coef, prior_coef=kl_coef)
    total = sum(v for k, v in loss(batch).items() if k.startswith("loss_"))
    total.backward()
    slow = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in core.core.slow.parameters()])
    fast = torch.cat([p.grad.flatten() for p in core.core.fast.parameters()])
    assert bool(slow.abs().sum() > 0) == reaches
    assert fast.abs().sum() > 0  # the policy gradient trains the fast core either way


def test_bad_batches_name_the_key():
    step, core, batch = _batch()
    loss = FTWLoss(step, core.state_keys())
    with pytest.raises(KeyError, match=r"FTWLoss.*\('next', 'reward'\).*set_keys\(reward="):
        loss(batch.exclude(("next", "reward")))
    with pytest.raises(KeyError, match="FTWLoss.*no 'observation', an input of the `step module`"):
        loss(batch.exclude("observation"))
    with pytest.raises(ValueError, match=r"\[B, T\] windows"):
        loss(batch[:, 0])
    with pytest.raises(InputError, match="prior_sigma"):
        FTWLoss(step, core.state_keys(), prior_sigma=0.0)
    with pytest.raises(TypeError, match="keyed module"):
        FTWLoss(torch.nn.Linear(2, 2), core.state_keys())
