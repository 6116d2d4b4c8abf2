"""DreamerV3's actor and critic in imagination (Hafner et al. 2023/2025, "Mastering Diverse Domains
through World Models", Section 3; the authors' current code, danijar/dreamerv3 ``agent.py`` ``imag_loss``).

From every replayed posterior state (detached: the world model is trained by
its own loss) the world model imagines ``horizon = 15`` steps under the
actor, giving ``z_0..z_H``. On those ``H + 1`` states the heads predict the
reward ``r_t`` and the continue probability ``c_t`` (whose targets carry the
discount: ``(1 − terminal)·(1 − 1/333)``, ``contdisc``), and the critic its
value ``v_t``, all as expectations of 255-bin symexp two-hot distributions
(TorchRL's ``two_hot_decode``; the critic's slow EMA copy gives ``v̄_t``):

* λ-returns ``R_t = r_{t+1} + c_{t+1} ((1 − λ) v_{t+1} + λ R_{t+1})``,
  ``R_H = v_H``, λ = 0.95, bootstrapped from the online critic
  (``slowtar: False``), through the loss's value estimator
  (:class:`~latentrl.objectives.value.DreamerLambdaEstimator`);
* weights ``w_t = prod_{i <= t} c_i`` (the start state's own continue
  probability included, as in the code);
* percentile return normalization: ``S = max(1, EMA(P95(R)) − EMA(P5(R)))``,
  decay 0.99 (TorchRL's ``PercentileValueNorm``, restored with the loss's
  state dict);
* actor (REINFORCE, discrete and continuous):
  ``−w_t (log π(a_t|z_t) sg((R_t − v_t)/S) + η H[π(·|z_t)])``, η = 3·10⁻⁴;
* critic: ``w_t (−log p_v(R_t | z_t) − β log p_v(v̄_t | z_t))``, two-hot
  cross-entropies, slow-critic regularizer β = 1; the slow critic is an EMA
  of the critic with decay 0.98 (:meth:`DreamerV3ActorCriticLoss.make_target_updater`).

The **replay value loss** (``loss_critic_replay``, scale 0.3, ``repval``)
trains the same critic on the replayed posterior states ``[B, T]``: λ-returns
along the replayed sequence with the data's rewards and terminals, the discount
``1 − 1/333``, bootstrapped at every step from that state's imagined return
``R_0`` (:func:`replay_lambda_return`), and the same slow-critic regularizer.
In TorchRL's layout a step ``t`` leads to state ``t + 1`` of the sequence
unless ``("next", "done")[t]``; at a termination the return is the reward, at
a truncation (and at the last step) the state's own imagined return, and those
steps carry no loss, as the code's ``is_last`` steps.

All features are stopped (``ac_grads: False``): no gradient reaches the world
model, and the rollout runs without autograd.

The 2023 release (preset ``v1_2023``) differs in four switches: ``bins="symlog"``
(reward and critic bins uniform in symlog space, :mod:`latentrl.objectives.two_hot`),
``continuation="mode"`` with ``discount=1 − 1/333`` (its continue head predicts
``1 − terminal``; the returns and weights use ``γ·mode(c)``, ``w_t = γ^t Π_{1≤i≤t} c_i``,
the start state counting as not terminal, ``first_cont``), ``replay_scale=0``,
and ``actor_grad="backprop"`` for continuous actions (dynamics backpropagation:
``−w_t ((R_t − v_t)/S + η H)``, the gradient flowing from the returns through the
imagined rewards, values and states into the actions; the rollout then runs with
autograd, on detached copies of the world model's and the critic's parameters, so
this loss's gradient reaches the actor's parameters only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import PercentileValueNorm
from torchrl.objectives import LossModule, SoftUpdate
from torchrl.objectives.utils import ValueEstimators

from latentrl.checks import check_positive_int, check_range, check_tensors, require_keys

from .two_hot import two_hot_bins, two_hot_loss, two_hot_value
from .value.lambda_return import DreamerLambdaEstimator

__all__ = ["DreamerV3ActorCriticLoss", "replay_lambda_return"]


def _frozen(module: torch.nn.Module):
    """A context in which ``module`` runs on detached copies of its parameters (no gradient reaches them)."""
    return TensorDict.from_module(module).detach().to_module(module)


def replay_lambda_return(reward: torch.Tensor, terminated: torch.Tensor, done: torch.Tensor, boot: torch.Tensor, *,
                         discount: float = 1 - 1 / 333, lmbda: float = 0.95) -> torch.Tensor:
    """λ-returns along replayed sequences ``[B, T]`` (TorchRL's layout), DreamerV3's ``repl_loss`` recursion.

    ``reward[t]``, ``terminated[t]``, ``done[t]`` are step ``t``'s ``"next"``
    entries, ``boot[t]`` the imagined return ``R_0`` from state ``t``. With
    ``live_t = γ (1 − terminated_t)`` and ``cont_t = λ (1 − done_t)``::

        R_t = r_t + live_t ((1 − cont_t) boot_{t+1} + cont_t R_{t+1})
        R_t = boot_t  at a truncation (done, not terminated) and at t = T − 1

    The code's ``lambda_return(last, term, rew, val, boot, disc, lam)``
    bootstraps from ``boot`` only; its episode's final observation is a state
    of the sequence (``is_last``), which TorchRL's layout keeps under
    ``"next"`` only: a termination needs no bootstrap (``live = 0``), and a
    truncated step takes its own state's return (so the step before it gets
    the one-step target through ``boot_t``) and, like the code's ``is_last``
    steps, no loss. Returns ``[B, T]``.
    """
    shapes = {t.shape for t in (reward, terminated, done, boot)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"replay_lambda_return: reward, terminated, done, boot must all be [B, T], got "
                         f"{[tuple(t.shape) for t in (reward, terminated, done, boot)]}")
    live = discount * (1.0 - terminated.to(reward.dtype))
    cont = lmbda * (1.0 - done.to(reward.dtype))
    truncated = done.bool() & ~terminated.bool()
    out = [boot[:, -1]]
    for t in range(reward.shape[1] - 2, -1, -1):
        ret = reward[:, t] + live[:, t] * ((1.0 - cont[:, t]) * boot[:, t + 1] + cont[:, t] * out[-1])
        out.append(torch.where(truncated[:, t], boot[:, t], ret))
    return torch.stack(out[::-1], 1)


class DreamerV3ActorCriticLoss(LossModule):
    """DreamerV3's REINFORCE actor and two-hot critic in imagination (see the module docstring).

    Args:
        actor_network: a ``ProbabilisticActor`` reading the latent state.
        value_network: latent state -> ``value_logits`` ``[*, num_bins]``; its
            slow EMA copy is ``target_value_network_params``.
        imagination: has ``rollout(start, policy, horizon) -> [N, H]``
            (:class:`~latentrl.modules.world_model.RSSMImagine`).
        reward_model: latent state -> ``reward_logits`` ``[*, num_bins]``.
        continue_model: latent state -> ``continue_logit`` ``[*, 1]``.
        horizon: imagination length H (15).
        lmbda: λ (0.95).
        entropy_coef: η (3e-4).
        slow_reg: β, the slow-critic regularizer's scale (1.0).
        slow_decay: the slow critic's EMA decay (0.98: rate 0.02 every update).
        return_percentiles, return_decay, return_limit: the return normalizer (5, 95; 0.99; 1.0).
        num_bins: two-hot bins of the reward and value heads (255).
        replay_scale: scale of the replay value loss (0.3; 0 turns it off and the replay keys are not read).
        replay_discount: its discount (``1 − 1/333``).
        bins: ``"symexp"`` (today's code) or ``"symlog"`` (2023) two-hot bins of the reward and value heads.
        continuation: ``"probability"`` (today's: ``σ(logit)``, its target carries the discount) or
            ``"mode"`` (2023: ``1[logit > 0]``).
        discount: γ applied on top of the continuation in the returns and weights (1.0; 2023: ``1 − 1/333``).
        actor_grad: ``"reinforce"`` (today's, and 2023 for discrete actions) or ``"backprop"`` (2023,
            continuous actions: dynamics backpropagation).
        imagine_last: the code's ``imag_last``: imagine only from the last ``K`` replayed states of each
            sequence ``[B, T]`` (and train the replay value loss on those steps); ``0`` (the code's
            default): from every state. The ``imagination`` key is written only then (its batch is the
            input's).

    Keys (``set_keys``): ``deter``, ``stoch`` (start states ``[*B, D]``), ``action``,
    ``reward_logits``, ``continue_logit``, ``value_logits``, the estimator's
    ``reward``/``discount``/``value`` (under ``"next"``), ``lambda_target``,
    ``weight`` and ``imagination`` (where the ``[*B, H]`` trajectory is written),
    and for the replay value loss the batch's ``replay_reward``,
    ``replay_terminated``, ``replay_done`` (``("next", ...)``, ``[B, T]`` sequences).
    Output: ``loss_actor``, ``loss_critic``, ``loss_critic_replay`` (sum them) and diagnostics.
    """

    @dataclass
    class _AcceptedKeys:
        deter: NestedKey = "deter"
        stoch: NestedKey = "stoch"
        action: NestedKey = "action"
        reward_logits: NestedKey = "reward_logits"
        continue_logit: NestedKey = "continue_logit"
        value_logits: NestedKey = "value_logits"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        discount: NestedKey = "discount"
        lambda_target: NestedKey = "lambda_target"
        weight: NestedKey = "weight"
        imagination: NestedKey = "imagination"
        replay_reward: NestedKey = ("next", "reward")
        replay_terminated: NestedKey = ("next", "terminated")
        replay_done: NestedKey = ("next", "done")

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    value_network: TensorDictModuleBase
    value_network_params: TensorDictBase
    target_value_network_params: TensorDictBase
    out_keys = ["loss_actor", "loss_critic", "loss_critic_replay", "entropy", "value", "slow_value", "lambda_return", "return_scale",
                "advantage", "imagined_reward", "imagined_continue"]

    def __init__(
        self,
        actor_network: TensorDictModuleBase,
        value_network: TensorDictModuleBase,
        imagination: TensorDictModuleBase,
        reward_model: TensorDictModuleBase,
        continue_model: TensorDictModuleBase,
        *,
        horizon: int = 15,
        lmbda: float = 0.95,
        entropy_coef: float = 3e-4,
        slow_reg: float = 1.0,
        slow_decay: float = 0.98,
        return_percentiles: tuple[float, float] = (5.0, 95.0),
        return_decay: float = 0.99,
        return_limit: float = 1.0,
        num_bins: int = 255,
        replay_scale: float = 0.3,
        replay_discount: float = 1 - 1 / 333,
        bins: str = "symexp",
        continuation: str = "probability",
        discount: float = 1.0,
        actor_grad: str = "reinforce",
        imagine_last: int = 0,
    ):
        super().__init__()
        owner = "DreamerV3ActorCriticLoss"
        check_positive_int(owner, "horizon", horizon)
        check_positive_int(owner, "num_bins", num_bins)
        check_range(owner, "lmbda", lmbda, 0.0, 1.0)
        check_range(owner, "entropy_coef", entropy_coef, 0.0)
        check_range(owner, "slow_reg", slow_reg, 0.0)
        check_range(owner, "slow_decay", slow_decay, 0.0, 1.0, hi_open=True)
        check_range(owner, "return_decay", return_decay, 0.0, 1.0, hi_open=True)
        check_range(owner, "return_limit", return_limit, 0.0, lo_open=True)
        check_range(owner, "replay_scale", replay_scale, 0.0)
        check_range(owner, "replay_discount", replay_discount, 0.0, 1.0)
        check_range(owner, "discount", discount, 0.0, 1.0, lo_open=True)
        for name, value, accepted in (("continuation", continuation, ("probability", "mode")),
                                      ("actor_grad", actor_grad, ("reinforce", "backprop"))):
            if value not in accepted:
                raise ValueError(f"{owner}: `{name}` must be one of {list(accepted)}, got {value!r}")
        self.continuation, self.discount, self.actor_grad = continuation, float(discount), actor_grad
        if isinstance(imagine_last, bool) or not isinstance(imagine_last, int) or imagine_last < 0:
            raise ValueError(f"{owner}: `imagine_last` must be an integer >= 0 (0: every state), got {imagine_last!r}")
        self.imagine_last = int(imagine_last)
        self.replay_scale, self.replay_discount = float(replay_scale), float(replay_discount)
        low, high = (float(p) for p in return_percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"{owner}: `return_percentiles` must be (low, high) with 0 <= low < high <= 100, "
                             f"got {return_percentiles!r}")
        self.horizon, self.lmbda, self.entropy_coef = int(horizon), float(lmbda), float(entropy_coef)
        self.slow_reg, self.slow_decay = float(slow_reg), float(slow_decay)
        self.actor_network = actor_network
        self.imagination, self.reward_model, self.continue_model = imagination, reward_model, continue_model
        self.convert_to_functional(value_network, "value_network", create_target_params=True)
        self.register_buffer("bins", two_hot_bins(int(num_bins), bins, owner=owner))
        self.bins_space = bins
        self.return_norm = PercentileValueNorm(shape=1, quantiles=(low / 100.0, high / 100.0),
                                               rate=1.0 - float(return_decay), min_scale=float(return_limit))
        self.make_value_estimator()

    @property
    def in_keys(self):
        keys = self.tensor_keys
        replay = [keys.replay_reward, keys.replay_terminated, keys.replay_done] if self.replay_scale > 0 else []
        return [keys.deter, keys.stoch, *replay]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            self._value_estimator.set_keys(value=self.tensor_keys.value, reward=self.tensor_keys.reward,
                                           discount=self.tensor_keys.discount)

    def make_value_estimator(self, value_type=None, **hyperparams):
        """``TDLambda`` (default): :class:`~latentrl.objectives.value.DreamerLambdaEstimator` with the loss's λ."""
        if value_type not in (None, ValueEstimators.TDLambda):
            raise NotImplementedError(f"DreamerV3ActorCriticLoss: value estimator {value_type} is not supported "
                                      "(TDLambda: the λ-return with the predicted continue as discount)")
        hyperparams.setdefault("lmbda", self.lmbda)
        self._value_estimator = DreamerLambdaEstimator(**hyperparams)
        self.value_type = ValueEstimators.TDLambda
        self._forward_value_estimator_keys()
        return self

    def make_target_updater(self) -> SoftUpdate:
        """The slow critic's EMA (``target <- decay·target + (1 − decay)·online``): ``.step()`` after every update."""
        return SoftUpdate(self, eps=self.slow_decay)

    def _logits(self, module, params, states: TensorDictBase, key: NestedKey) -> torch.Tensor:
        inputs = states.select(*module.in_keys)
        if params is None:
            return module(inputs).get(key)
        with params.to_module(module):
            return module(inputs).get(key)

    def imagine(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``[N, H]`` imagined steps from the flattened start states (without autograd, but for ``backprop``)."""
        keys = self.tensor_keys
        require_keys("DreamerV3ActorCriticLoss", tensordict, {"deter": keys.deter, "stoch": keys.stoch})
        if self.replay_scale > 0:
            require_keys("DreamerV3ActorCriticLoss", tensordict, {
                "replay_reward": keys.replay_reward, "replay_terminated": keys.replay_terminated,
                "replay_done": keys.replay_done})
            if tensordict.ndim != 2:
                raise ValueError("DreamerV3ActorCriticLoss: the replay value loss needs replayed sequences [B, T], got "
                                 f"batch {list(tensordict.batch_size)} (replay_scale=0 turns it off)")
        check_tensors("DreamerV3ActorCriticLoss", {"deter": tensordict.get(keys.deter),
                                                   "stoch": tensordict.get(keys.stoch)},
                      floating=("deter", "stoch"), finite=("deter", "stoch"))
        start = tensordict.select(keys.deter, keys.stoch).reshape(-1).detach()
        if self.actor_grad == "backprop":  # with autograd, on a detached copy of the dynamics' parameters
            with _frozen(self.imagination), set_exploration_type(ExplorationType.RANDOM):
                return self.imagination.rollout(start, self.actor_network, self.horizon)
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            return self.imagination.rollout(start, self.actor_network, self.horizon)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        full = tensordict
        if self.imagine_last:
            if tensordict.ndim != 2:
                raise ValueError("DreamerV3ActorCriticLoss: `imagine_last` needs replayed sequences [B, T], got "
                                 f"batch {list(tensordict.batch_size)}")
            if self.imagine_last < tensordict.shape[1]:
                tensordict = tensordict[:, -self.imagine_last:]
        traj = self.imagine(tensordict)  # [N, H]: z_t, a_t; z_{t+1} under "next"
        N, H = traj.batch_size
        last = traj.get("next")[:, -1:].select(keys.deter, keys.stoch)
        states = torch.cat([traj.select(keys.deter, keys.stoch), last], 1)  # z_0..z_H, [N, H + 1]
        backprop, space = self.actor_grad == "backprop", self.bins_space
        with torch.no_grad():
            logit = self._logits(self.continue_model, None, states, keys.continue_logit).squeeze(-1)
            cont = torch.sigmoid(logit) if self.continuation == "probability" else (logit > 0).to(logit.dtype)
            if self.continuation == "mode":
                cont[:, 0] = 1.0  # the start is a replayed state, never terminal (the 2023 code's first_cont)
            slow = two_hot_value(self._logits(self.value_network, self.target_value_network_params.detach(), states,
                                              keys.value_logits), self.bins, space)
        # backprop: the reward's gradient reaches the imagined states, not the reward head
        with _frozen(self.reward_model) if backprop else torch.no_grad():
            reward = two_hot_value(self._logits(self.reward_model, None, states, keys.reward_logits), self.bins, space)
        # the critic trains on the states without their gradient; the actor's objective (backprop) reads
        # the critic's value at the differentiable states, with its parameters detached
        value_logits = self._logits(self.value_network, self.value_network_params,
                                    states.detach() if backprop else states, keys.value_logits)
        if backprop:
            value = two_hot_value(self._logits(self.value_network, self.value_network_params.detach(), states,
                                               keys.value_logits), self.bins, space)  # [N, H + 1]
        else:
            value = two_hot_value(value_logits.detach(), self.bins, space)
        disc = self.discount * cont

        # R_t over t < H: rewards, continues and bootstrap values of z_{t+1}
        traj.set(("next", keys.reward), reward[:, 1:, None])
        traj.set(("next", keys.discount), disc[:, 1:, None])
        traj.set(("next", keys.value), value[:, 1:, None])
        never = torch.zeros(N, H, 1, dtype=torch.bool, device=value.device)
        traj.set(("next", "done"), never)
        traj.set(("next", "terminated"), never)
        target = self.value_estimator.value_estimate(traj, next_value=value[:, 1:, None], time_dim=1)[..., 0]
        weight = disc.cumprod(1)[:, :H] / self.discount  # [N, H]
        if self.training:
            self.return_norm.update(target.detach().reshape(-1, 1))
        scale = self.return_norm.scale()
        advantage = (target - value[:, :H]) / scale  # carries the dynamics' gradient only for backprop

        dist = self.actor_network.get_dist(traj.select(*self.actor_network.in_keys))
        action = traj.get(keys.action)
        log_prob = dist.log_prob(action)
        entropy = dist.entropy()
        if log_prob.shape != (N, H) or entropy.shape != (N, H):
            raise RuntimeError(f"DreamerV3ActorCriticLoss: the actor's log_prob {tuple(log_prob.shape)} and entropy "
                               f"{tuple(entropy.shape)} must be [N, H] = {[N, H]} (one event per step)")
        objective = advantage if backprop else log_prob * advantage
        loss_actor = -(weight * (objective + self.entropy_coef * entropy)).mean()
        target, value, advantage = target.detach(), value.detach(), advantage.detach()
        critic = two_hot_loss(value_logits[:, :H], target, self.bins, space)
        regularizer = two_hot_loss(value_logits[:, :H], slow[:, :H], self.bins, space)
        loss_critic = (weight * (critic + self.slow_reg * regularizer)).mean()

        loss_replay = torch.zeros((), device=value.device)
        if self.replay_scale > 0:
            # z_0 of every imagined trajectory is a replayed state: its critic logits and slow value are the replay's
            loss_replay = self.replay_scale * self._replay_value_loss(
                tensordict, target[:, 0].detach(), value_logits[:, 0], slow[:, 0])

        traj.set(keys.lambda_target, target[..., None])
        traj.set(keys.weight, weight[..., None])
        traj.set(keys.value, value[:, :H, None])
        if tensordict is full:
            tensordict.set(keys.imagination, traj.reshape(*tensordict.batch_size, H))
        with torch.no_grad():
            out = {
                "entropy": entropy.mean(),
                "value": value.mean(),
                "slow_value": slow.mean(),
                "lambda_return": target.mean(),
                "return_scale": scale.reshape(()),
                "advantage": advantage.mean(),
                "imagined_reward": reward.mean(),
                "imagined_continue": cont.mean(),
            }
        return TensorDict({"loss_actor": loss_actor, "loss_critic": loss_critic, "loss_critic_replay": loss_replay,
                           **out}, batch_size=[])

    def _replay_value_loss(self, tensordict: TensorDictBase, start_return: torch.Tensor, logits: torch.Tensor,
                           slow: torch.Tensor) -> torch.Tensor:
        """The critic on the replayed states (its ``logits`` and the slow critic's value there, flat ``[B·T]``),
        towards :func:`replay_lambda_return` and the slow critic."""
        keys = self.tensor_keys
        B, T = tensordict.batch_size
        logits, slow = logits.reshape(B, T, -1), slow.reshape(B, T)
        with torch.no_grad():
            flags = [tensordict.get(k).reshape(B, T) for k in (keys.replay_terminated, keys.replay_done)]
            reward = tensordict.get(keys.replay_reward).reshape(B, T).to(slow.dtype)
            ret = replay_lambda_return(reward, flags[0], flags[1], start_return.reshape(B, T),
                                       discount=self.replay_discount, lmbda=self.lmbda)
            weight = (~(flags[1].bool() & ~flags[0].bool())).to(slow.dtype)[:, :-1]  # no loss on truncations
        loss = two_hot_loss(logits[:, :-1], ret[:, :-1], self.bins, self.bins_space)
        loss = loss + self.slow_reg * two_hot_loss(logits[:, :-1], slow[:, :-1], self.bins, self.bins_space)
        return (weight * loss).mean()
