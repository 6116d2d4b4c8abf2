"""UPSTREAM.md #9: TorchRL's VTrace takes log pi of the wrong action.

V-trace's importance weight is ``pi(a_s|x_s) / mu(a_s|x_s)`` at the action
``a_s`` the actor took (Espeholt et al. 2018, Sec. 4.1). TorchRL's
``VTrace.forward`` reads ``log mu(a_s|x_s)`` from the stored
``sample_log_prob`` but gets ``log pi`` from ``_call_actor_net``, which draws
an action from the current policy (``InteractionType.RANDOM``) or takes its
mode (the default, ``DETERMINISTIC``) and scores *that* action. The ratio is
then ``pi(mode|x_s) / mu(a_s|x_s)``: V-trace's correction is lost whenever
``a_s`` is not the mode. Ours (``latentrl.objectives.value.VTrace``) scores the
stored action.

Also: ``vtrace_advantage_estimate``'s docstring swaps the two policies
(``log_pi``: "collection actor", ``log_mu``: "current actor") while its code
computes ``exp(log_pi - log_mu)``; the class passes them the right way round.
"""
import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, TensorDictModule, set_interaction_type
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives.value import VTrace as TorchRLVTrace
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from latentrl.objectives.functional import vtrace
from latentrl.objectives.value import VTrace

B, T, OBS, N_ACTIONS, GAMMA = 3, 10, 3, 4, 0.95


def _setup():
    torch.manual_seed(0)
    logits_net = torch.nn.Linear(OBS, N_ACTIONS)
    actor = ProbabilisticActor(
        TensorDictModule(logits_net, ["observation"], ["logits"]),
        in_keys=["logits"],
        out_keys=["action"],
        distribution_class=Categorical,
        return_log_prob=True,
    )
    critic = ValueOperator(torch.nn.Linear(OBS, 1), ["observation"])
    obs = torch.randn(B, T + 1, OBS)
    action = torch.randint(N_ACTIONS, (B, T))  # taken by some behaviour policy mu
    behaviour_log_prob = torch.full((B, T), -(torch.tensor(float(N_ACTIONS)).log()))  # mu uniform
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    td = TensorDict(
        {
            "observation": obs[:, :-1],
            "action": action,
            "next": {"observation": obs[:, 1:], "reward": torch.randn(B, T, 1), "done": flags, "terminated": flags},
        },
        [B, T],
    )
    with torch.no_grad():
        dist = Categorical(logits=logits_net(obs[:, :-1]))
        value, next_value = critic(td.clone())["state_value"], critic(td["next"].clone())["state_value"]
    log_pi_taken = dist.log_prob(action).unsqueeze(-1)
    log_pi_mode = dist.log_prob(dist.probs.argmax(-1)).unsqueeze(-1)
    assert (action != dist.probs.argmax(-1)).any()
    inputs = (value, next_value, td["next", "reward"], flags, flags)
    return actor, critic, td, behaviour_log_prob.unsqueeze(-1), log_pi_taken, log_pi_mode, inputs


def test_torchrl_vtrace_scores_the_mode_not_the_taken_action():
    actor, critic, td, log_mu, log_pi_taken, log_pi_mode, inputs = _setup()
    theirs = TorchRLVTrace(gamma=GAMMA, actor_network=actor, value_network=critic)
    ours = VTrace(gamma=GAMMA, actor_network=actor, value_network=critic)
    td[theirs.tensor_keys.sample_log_prob] = log_mu.squeeze(-1)
    out_theirs, out_ours = theirs(td.clone()), ours(td.clone())

    paper_adv, paper_vs = vtrace_advantage_estimate(GAMMA, log_pi_taken, log_mu, *inputs)  # pi(a_s) / mu(a_s)
    mode_adv, mode_vs = vtrace_advantage_estimate(GAMMA, log_pi_mode, log_mu, *inputs)  # pi(mode) / mu(a_s)
    # TorchRL today: the ratio of the mode's probability to the taken action's
    torch.testing.assert_close(out_theirs["value_target"], mode_vs)
    torch.testing.assert_close(out_theirs["advantage"], mode_adv)
    assert not torch.allclose(out_theirs["value_target"], paper_vs, atol=1e-3)
    # ours: the paper's ratio
    torch.testing.assert_close(out_ours["value_target"], paper_vs)
    torch.testing.assert_close(out_ours["advantage"], paper_adv)


def test_torchrl_vtrace_with_random_interaction_scores_a_fresh_sample():
    actor, critic, td, log_mu, *_ = _setup()
    theirs = TorchRLVTrace(gamma=GAMMA, actor_network=actor, value_network=critic)
    ours = VTrace(gamma=GAMMA, actor_network=actor, value_network=critic)
    td[theirs.tensor_keys.sample_log_prob] = log_mu.squeeze(-1)
    with set_interaction_type(InteractionType.RANDOM):
        torch.manual_seed(1)
        first = theirs(td.clone())["value_target"]
        torch.manual_seed(2)
        second = theirs(td.clone())["value_target"]
        torch.manual_seed(1)
        ours_first = ours(td.clone())["value_target"]
        torch.manual_seed(2)
        ours_second = ours(td.clone())["value_target"]
    assert not torch.allclose(first, second)  # the target is random given the data
    torch.testing.assert_close(ours_first, ours_second, rtol=0, atol=0)


def test_vtrace_advantage_estimate_docstring_swaps_the_policies():
    doc = " ".join(vtrace_advantage_estimate.__doc__.split())
    assert "log_pi (Tensor): collection actor log probability" in doc
    assert "log_mu (Tensor): current actor log probability" in doc
    # ...while the code divides by exp(log_mu): read as documented (log_pi = behaviour), the weights are mu/pi
    *_, log_mu, log_pi_taken, _, inputs = _setup()
    adv, vs = vtrace_advantage_estimate(GAMMA, log_pi_taken, log_mu, *inputs, rho_thresh=10.0, c_thresh=10.0)
    ours_vs, ours_adv, _ = vtrace((log_pi_taken, log_mu), *inputs, gamma=GAMMA, rho_bar=10.0, c_bar=10.0)
    torch.testing.assert_close(vs, ours_vs)
    as_documented, _ = vtrace_advantage_estimate(GAMMA, log_mu, log_pi_taken, *inputs, rho_thresh=10.0, c_thresh=10.0)
    assert not torch.allclose(as_documented, adv, atol=1e-3)
