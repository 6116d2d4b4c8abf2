"""R2D2Loss's targets through make_value_estimator: the default is the rescaled n-step
double-Q recursion, TorchRL's TD0 swaps in by keys, set_keys reaches the estimator."""
import pytest
import torch
from oracles import rescaled_n_step_targets_loop
from tensordict import TensorDict
from test_r2d2_loss import _net, _sequences
from torchrl.objectives import ValueEstimators
from torchrl.objectives.value.functional import td0_return_estimate

from latentrl.objectives.r2d2 import R2D2Loss
from latentrl.objectives.value import RescaledNStepDoubleQ

GAMMA, N, EPS = 0.9, 2, 1e-3


def _double_q(loss, td):
    """Qbar_t = Q_target(s_t, argmax_a Q_online(s_t, a)), by unrolling each network from zeros (no burn-in)."""
    with torch.no_grad():
        q = loss._unroll(loss.value_network_params, td, grad=False)
        q_target = loss._unroll(loss.target_value_network_params, td, grad=False)
    return q, q_target.gather(-1, q.argmax(-1, keepdim=True)).squeeze(-1)


def _perturb_target(loss):
    with torch.no_grad():
        for p in loss.target_value_network_params.values(True, True):
            p.add_(0.05 * torch.randn_like(p))


def test_default_estimator_is_ours_and_matches_the_plain_recursion():
    torch.manual_seed(0)
    loss = R2D2Loss(_net(), burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    assert isinstance(loss.value_estimator, RescaledNStepDoubleQ)
    _perturb_target(loss)
    td = _sequences(3, 6, ends={0: (2, True), 1: (3, False)})
    out = loss(td.clone())
    q, qbar = _double_q(loss, td)
    has_state = td["valid"] | td["bootstrap"]
    target, tmask = rescaled_n_step_targets_loop(
        td["next", "reward"][..., 0], td["next", "done"][..., 0], td["next", "terminated"][..., 0], qbar,
        has_state, gamma=GAMMA, n=N, eps=EPS)
    q_taken = (q * td["action"]).sum(-1)
    mask = td["mask"] & tmask
    torch.testing.assert_close(out["loss_mask"], mask)
    torch.testing.assert_close(out["td_error"], ((target - q_taken).abs() * mask))


def test_torchrl_td0_swaps_in_by_make_value_estimator():
    torch.manual_seed(0)
    loss = R2D2Loss(_net(), burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    _perturb_target(loss)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=0.5)
    assert type(loss.value_estimator).__name__ == "TD0Estimator"
    td = _sequences(2, 5, ends={0: (1, True), 1: (2, False)})
    out = loss(td.clone())
    q, qbar = _double_q(loss, td)
    # TorchRL's one-step target on the double-Q values of s_{t+1}, no rescaling
    next_value = torch.cat([qbar[:, 1:], torch.zeros_like(qbar[:, :1])], 1)
    r, term = td["next", "reward"], td["next", "terminated"]
    expected = td0_return_estimate(0.5, next_value.unsqueeze(-1), r, terminated=term)[..., 0]
    has_state = td["valid"] | td["bootstrap"]
    defined = term[..., 0] | torch.cat([has_state[:, 1:], torch.zeros_like(has_state[:, :1])], 1)
    mask = td["mask"] & defined
    q_taken = (q * td["action"]).sum(-1)
    torch.testing.assert_close(out["loss_mask"], mask)
    torch.testing.assert_close(out["td_error"], (expected - q_taken).abs() * mask)
    # and it differs from the default (rescaled, n = 2): the swap took effect
    default = R2D2Loss(_net(), burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    default.load_state_dict(loss.state_dict(), strict=False)
    assert not torch.allclose(default(td.clone())["td_error"], out["td_error"])


def test_an_estimator_instance_and_set_keys_forwarding():
    torch.manual_seed(0)
    loss = R2D2Loss(_net(), burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    loss.make_value_estimator(RescaledNStepDoubleQ(gamma=GAMMA, n_steps=1, rescale_eps=EPS))
    loss.set_keys(value="double_q", has_state="state_here")
    keys = loss.value_estimator.tensor_keys
    assert (keys.value, keys.has_state) == ("double_q", "state_here")
    td = _sequences(2, 4)
    out = loss(td.clone())
    q, qbar = _double_q(loss, td)
    y = torch.zeros(2, 4, dtype=q.dtype)
    from latentrl.objectives.value import value_rescale, value_rescale_inverse
    y[:, :-1] = value_rescale(td["next", "reward"][:, :-1, 0] + GAMMA * value_rescale_inverse(qbar[:, 1:], EPS), EPS)
    q_taken = (q * td["action"]).sum(-1)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[:, -1] = False
    torch.testing.assert_close(out["loss_mask"], mask)
    torch.testing.assert_close(out["td_error"], (y - q_taken).abs() * mask)


def test_estimator_refuses_a_value_network_and_bad_hyperparameters():
    with pytest.raises(ValueError, match="value_network"):
        RescaledNStepDoubleQ(value_network=torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="n_steps"):
        RescaledNStepDoubleQ(n_steps=0)
    est = RescaledNStepDoubleQ()
    with pytest.raises(KeyError, match="has_state"):
        est(TensorDict({"state_value": torch.zeros(2, 3, 1),
                        "next": {"reward": torch.zeros(2, 3, 1), "done": torch.zeros(2, 3, 1, dtype=torch.bool),
                                 "terminated": torch.zeros(2, 3, 1, dtype=torch.bool)}}, [2, 3]))


def test_an_unsupported_estimator_member_is_named_with_the_accepted_ones():
    loss = R2D2Loss(_net(), burn_in=0, n_steps=N, gamma=GAMMA)
    for member in (ValueEstimators.GAE, ValueEstimators.VTrace):
        with pytest.raises(NotImplementedError, match=f"R2D2Loss: no value estimator for {member}.*TD0, TD1, TDLambda"):
            loss.make_value_estimator(member)
    assert isinstance(loss.value_estimator, RescaledNStepDoubleQ)  # the refused call left the loss as it was
