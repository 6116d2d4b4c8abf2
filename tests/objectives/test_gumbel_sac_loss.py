"""GumbelSACLoss: exact entropy in the actor and alpha losses, Q gradient through the action."""
import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import Bounded, OneHot
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator

from latentrl.modules.distributions import GumbelSoftmax
from latentrl.objectives.gumbel_sac import GumbelSACLoss, categorical_entropy


def test_categorical_entropy_by_hand():
    probs = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    logits = probs.log()  # the second row has a -inf logit
    entropy = categorical_entropy(logits.requires_grad_())
    torch.testing.assert_close(entropy, torch.tensor([1.5 * math.log(2), 0.0]))
    (grad,) = torch.autograd.grad(entropy.sum(), [logits])
    assert torch.isfinite(grad).all()


def _agent(n=3, obs_dim=4, target_entropy=0.5):
    torch.manual_seed(0)
    logits = TensorDictModule(MLP(in_features=obs_dim, out_features=n, num_cells=[8]), ["observation"], ["logits"])
    actor = ProbabilisticActor(
        logits,
        in_keys=["logits"],
        out_keys=["action"],
        spec=OneHot(n),
        distribution_class=GumbelSoftmax,
        distribution_kwargs={"temperature": 1.0, "hard": True},
        return_log_prob=True,
    )
    critic = ValueOperator(MLP(in_features=obs_dim + n, out_features=1, num_cells=[8]), ["observation", "action"])
    loss = GumbelSACLoss(actor, critic, num_qvalue_nets=2, alpha_init=0.7, target_entropy=target_entropy)
    loss.make_value_estimator(gamma=0.9)
    return actor, critic, loss


def _batch(n=3, obs_dim=4, size=16):
    flags = torch.zeros(size, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.randn(size, obs_dim),
            "action": torch.eye(n)[torch.randint(n, (size,))],
            "next": {"observation": torch.randn(size, obs_dim), "reward": torch.randn(size, 1), "done": flags, "terminated": flags},
        },
        [size],
    )


def test_outputs_are_sac_keys_with_exact_entropy():
    actor, _, loss = _agent()
    data = _batch()
    out = loss(data.clone())
    assert {"loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"} <= set(out.keys())
    exact = categorical_entropy(actor.module[0](data.clone())["logits"]).mean()
    torch.testing.assert_close(out["entropy"], exact.detach())
    # alpha loss: -log(alpha) * (-H + target); its gradient raises alpha when H < target
    torch.testing.assert_close(out["loss_alpha"], -math.log(0.7) * (-exact.detach() + 0.5), rtol=1e-5, atol=1e-6)
    (g,) = torch.autograd.grad(out["loss_alpha"], [loss.log_alpha])
    assert (g < 0) == (exact < 0.5)


def test_q_term_reaches_the_actor_through_the_action_only():
    actor, critic, loss = _agent()
    data = _batch()
    with torch.no_grad():
        loss.log_alpha.fill_(-30.0)  # alpha ~ 0: loss_actor is -Q(s, a) alone
    out = loss(data.clone())
    actor_grads = torch.autograd.grad(out["loss_actor"], list(actor.parameters()))
    assert all(torch.isfinite(g).all() for g in actor_grads) and sum(g.abs().sum() for g in actor_grads) > 0
    # and the critic is not trained by the actor loss (SACLoss detaches its parameters there)
    critic_grads = torch.autograd.grad(out["loss_actor"], list(loss.qvalue_network_params.values(True, True)), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in critic_grads)


def test_gaussian_actor_is_refused_with_a_clear_error():
    torch.manual_seed(0)
    spec = Bounded(-1.0, 1.0, (2,))
    net = TensorDictModule(MLP(in_features=4, out_features=4, num_cells=[8]), ["observation"], ["param"])
    split = TensorDictModule(lambda p: (p[..., :2], p[..., 2:].exp()), ["param"], ["loc", "scale"])
    from tensordict.nn import TensorDictSequential

    actor = ProbabilisticActor(
        TensorDictSequential(net, split), in_keys=["loc", "scale"], out_keys=["action"], spec=spec, distribution_class=TanhNormal
    )
    critic = ValueOperator(MLP(in_features=6, out_features=1, num_cells=[8]), ["observation", "action"])
    loss = GumbelSACLoss(actor, critic, num_qvalue_nets=2, target_entropy=-2.0)
    flags = torch.zeros(4, 1, dtype=torch.bool)
    data = TensorDict(
        {"observation": torch.randn(4, 4), "action": torch.zeros(4, 2), "next": {"observation": torch.randn(4, 4), "reward": torch.zeros(4, 1), "done": flags, "terminated": flags}},
        [4],
    )
    with pytest.raises(TypeError, match="one-hot categorical with `logits`.*TanhNormal"):
        loss(data)
