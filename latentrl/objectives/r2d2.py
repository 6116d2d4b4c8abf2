"""R2D2 loss: burn-in from the stored state, rescaled n-step double Q, sequence priorities.

Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
Reinforcement Learning", Section 2 and 3 (hyper-parameters in Table 2).

A replayed sequence (layout of :mod:`latentrl.collectors.sequence_cutter`) is
``[B, burn_in + m]``: ``burn_in`` steps that only warm up the LSTM, then ``m``
training steps. For the online network *and* the target network:

1. start from the recurrent state the actor stored at the first valid step
   (or zeros, the paper's zero-state ablation, chosen when cutting);
2. unroll over the burn-in steps without gradients;
3. unroll over the training steps from the state reached (with gradients for
   the online network).

Targets (our :class:`~latentrl.objectives.value.RescaledNStepDoubleQ` estimator, by
default; any TorchRL estimator through ``make_value_estimator``):

    y_t = h( sum_{k<n} gamma^k r_{t+k} + gamma^n h^-1( Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a)) ) )

with ``h(x) = sign(x)(sqrt(|x|+1) - 1) + eps x``, no bootstrap past a
``terminated`` step, and bootstrapping from the final next-state at a
truncation. The loss is the importance-weighted squared error over the
training (non-burn-in, non-padded) steps; the new sequence priorities
``eta max_t |delta_t| + (1 - eta) mean_t |delta_t|`` are returned with it.

TorchRL's ``DQNLoss`` writes the squared TD error as priority (R2D2 and PER
use ``|delta|``), its ``BurnInTransform`` burns in only the online network,
and nothing aggregates priorities per sequence: this module does all three.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import LossModule, ValueEstimators

from latentrl.checks import require_keys, require_module_inputs
from latentrl.objectives._estimator_keys import forward_keys, torchrl_estimator
from latentrl.objectives.functional import sequence_priority
from latentrl.objectives.value.n_step_double_q import RescaledNStepDoubleQ

__all__ = ["R2D2Loss", "delta_q"]


def _state_keys(network) -> list[str]:
    lstm = getattr(network, "lstm_module", None)
    if lstm is None:
        return []
    return [k for k in lstm.in_keys if isinstance(k, str) and k.startswith("recurrent_state")]


class R2D2Loss(LossModule):
    """R2D2's recurrent double-Q loss with burn-in over stored-state sequences.

    Args:
        value_network: a recurrent Q-network writing ``"action_value"``
            (:func:`latentrl.modules.q_networks.make_recurrent_q_network`); its
            recurrent state keys are found from its ``lstm_module`` (none for
            the feed-forward variant).

    Keyword Args:
        burn_in: steps at the start of every sequence used only to unroll the
            networks (no loss, no priority). Paper: 40. Must match the replay
            buffer's layout.
        n_steps: the n of the n-step return. Paper: 5.
        gamma: discount. Paper: 0.997.
        rescale_eps: ``eps`` of the value rescaling ``h``. Paper: 1e-3.
        priority_eta: ``eta`` of the sequence priority. Paper: 0.9.

    The target network's parameters are TorchRL target parameters: update
    them with :class:`~latentrl.objectives.target_updates.HardUpdateEvery` ``(loss, value_network_update_interval=2500)``
    (paper: every 2500 learner steps).

    Input keys (``[B, L]``, see ``set_keys``): the network's inputs and
    recurrent state, ``"action"`` (one-hot), ``"is_init"``, ``"mask"``,
    ``"valid"``, ``"bootstrap"``, ``("next", "reward" | "done" | "terminated")``
    and optionally the importance weights ``"_weight"`` ``[B]`` or ``[B, L]``.

    A batch without ``"mask"``, ``"valid"`` and ``"bootstrap"`` (e.g. TorchRL's
    ``SliceSampler`` sample, reshaped to ``[B, slice_len]``; each row one
    episode's consecutive steps, with the recurrent state the collector's
    policy wrote) is read as: every step valid, the steps after ``burn_in``
    trained, nothing to bootstrap from past the row's end (the last ``n_steps``
    steps get no target unless their episode terminates). Either all three
    keys or none.

    The loss runs the network in TorchRL's recurrent mode
    (``set_recurrent_mode(True)``: the LSTM unrolls the whole row from the
    state it is given), whatever mode the caller is in.

    Targets come from ``self.value_estimator`` (``make_value_estimator``):
    by default :class:`~latentrl.objectives.value.RescaledNStepDoubleQ` with
    this loss's ``gamma``, ``n_steps`` and ``rescale_eps``. The loss writes
    the double-Q bootstrap ``Q_target(s_t, argmax_a Q(s_t, a))`` under the
    ``value`` key and the same shifted one step under ``("next", value)``
    (what TorchRL's TD estimators read), and ``has_state``; it reads
    ``value_target`` and, if the estimator writes it, ``target_mask``
    (otherwise a target is defined where ``s_{t+1}`` exists or ``t``
    terminates). ``make_value_estimator(ValueEstimators.TD0, gamma=...)``
    swaps in TorchRL's one-step target (no rescaling).

    Output: ``loss`` (scalar), ``priority`` ``[B]`` (detached), ``td_error``
    ``[B, L - burn_in]`` (``|delta|``, detached, zero where not trained),
    ``loss_mask`` and diagnostics (``q_mean``, ``target_mean``).
    """

    @dataclass
    class _AcceptedKeys:
        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        is_init: NestedKey = "is_init"
        mask: NestedKey = "mask"
        valid: NestedKey = "valid"
        bootstrap: NestedKey = "bootstrap"
        priority_weight: NestedKey = "_weight"
        value: NestedKey = "state_value"
        value_target: NestedKey = "value_target"
        has_state: NestedKey = "has_state"
        target_mask: NestedKey = "target_mask"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    value_network: TensorDictModuleBase
    value_network_params: TensorDictBase
    target_value_network_params: TensorDictBase
    out_keys = ["loss", "priority", "td_error", "loss_mask", "q_mean", "target_mean", "trained_steps"]

    def __init__(
        self,
        value_network: TensorDictModuleBase,
        *,
        burn_in: int = 40,
        n_steps: int = 5,
        gamma: float = 0.997,
        rescale_eps: float = 1e-3,
        priority_eta: float = 0.9,
    ):
        super().__init__()
        if int(burn_in) < 0:
            raise ValueError(f"R2D2Loss: `burn_in` must be >= 0, got {burn_in}")
        if int(n_steps) < 1:
            raise ValueError(f"R2D2Loss: `n_steps` must be >= 1, got {n_steps}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"R2D2Loss: `gamma` must be in [0, 1], got {gamma}")
        if not 0.0 <= priority_eta <= 1.0:
            raise ValueError(f"R2D2Loss: `priority_eta` must be in [0, 1], got {priority_eta}")
        self.burn_in, self.n_steps = int(burn_in), int(n_steps)
        self.gamma, self.rescale_eps, self.priority_eta = float(gamma), float(rescale_eps), float(priority_eta)
        self.state_keys = _state_keys(value_network)
        self.convert_to_functional(value_network, "value_network", create_target_params=True)
        self.make_value_estimator()

    default_value_estimator = None
    _TORCHRL_ESTIMATORS = (ValueEstimators.TD0, ValueEstimators.TD1, ValueEstimators.TDLambda)

    def make_value_estimator(self, value_type=None, **hyperparams):
        """Builds the target estimator (TorchRL's ``make_value_estimator``).

        ``None``: :class:`~latentrl.objectives.value.RescaledNStepDoubleQ`
        with this loss's ``gamma``, ``n_steps``, ``rescale_eps`` (overridden
        by ``hyperparams``). ``ValueEstimators.TD0 | TD1 | TDLambda``:
        TorchRL's estimator with ``value_network=None``, ``gamma`` defaulting
        to the loss's. A ``ValueEstimatorBase`` instance or subclass is used
        as given. The loss's keys are forwarded to the estimator.
        """
        if value_type is None:
            hp = dict(gamma=self.gamma, n_steps=self.n_steps, rescale_eps=self.rescale_eps, **hyperparams)
            value_type, hyperparams = RescaledNStepDoubleQ(**hp), {}
        elif isinstance(value_type, ValueEstimators):
            value_type = torchrl_estimator(self, value_type, self._TORCHRL_ESTIMATORS, "None (ours)", **hyperparams)
            hyperparams = {}
        super().make_value_estimator(value_type, **hyperparams)
        self._forward_value_estimator_keys()
        return self

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        forward_keys(self, ("value", "value_target", "reward", "done", "terminated", "has_state", "target_mask"))

    @property
    def in_keys(self):
        keys = self.tensor_keys
        out = [k for k in self.value_network.in_keys]
        for key in (keys.action, keys.is_init, keys.mask, keys.valid, keys.bootstrap,
                    ("next", keys.reward), ("next", keys.done), ("next", keys.terminated)):
            if key not in out:
                out.append(key)
        return out

    def _with_layout(self, td: TensorDictBase) -> TensorDictBase:
        """The replay layout's ``mask``/``valid``/``bootstrap``; made up for a plain ``[B, L]`` slice batch."""
        keys = self.tensor_keys
        names = {"mask": keys.mask, "valid": keys.valid, "bootstrap": keys.bootstrap}
        present = {name for name, key in names.items() if key in td.keys(True)}
        if present == set(names):
            return td
        if present:
            missing = sorted(set(names) - present)
            raise KeyError(
                f"R2D2Loss: the input tensordict has {sorted(present)} but no {names[missing[0]]!r} (the "
                f"`{missing[0]}` key; rename it with set_keys({missing[0]}=...)): give all of mask, valid and "
                "bootstrap (SequenceReplayBuffer's layout) or none (a SliceSampler batch: every step valid, the "
                "steps after burn_in trained)"
            )
        B, L = td.shape
        valid = torch.ones(B, L, dtype=torch.bool, device=td.device)
        td = td.clone(False)
        td.set(keys.valid, valid)
        td.set(keys.mask, valid & (torch.arange(L, device=td.device) >= self.burn_in))
        td.set(keys.bootstrap, torch.zeros_like(valid))
        return td

    # ------------------------------------------------------------ unrolling
    def _unroll(self, params, td: TensorDictBase, grad: bool) -> torch.Tensor:
        """Action values over the training part, after a gradient-free burn-in from the stored state."""
        b = self.burn_in
        keys = self.tensor_keys
        train = td[:, b:].clone(False)
        with params.to_module(self.value_network), set_recurrent_mode(True):
            if self.state_keys:
                is_init = td.get(keys.is_init)
                start_is_first = is_init[:, b].reshape(-1)  # the training part starts the sequence
                if b > 0:
                    with torch.no_grad():
                        prefix = td[:, :b].clone(False)
                        self.value_network(prefix)
                for key in self.state_keys:
                    stored = td.get(key)[:, b]
                    if b > 0:
                        after = prefix.get(("next", key))[:, -1]
                        shape = (-1,) + (1,) * (stored.ndim - 1)
                        stored = torch.where(start_is_first.view(shape), stored, after)
                    state = train.get(key).clone()
                    state[:, 0] = stored
                    train.set(key, state)
                restart = torch.zeros_like(train.get(keys.is_init))
                restart[:, 0] = True
                train.set(keys.is_init, restart)
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                self.value_network(train)
        return train.get(keys.action_value)

    def _targets(self, bootstrap_value, reward, done, terminated, has_state):
        """``(value_target, target_mask)`` ``[B, T]`` from ``self.value_estimator``."""
        keys = self.tensor_keys
        est_keys = self.value_estimator.tensor_keys
        col = lambda x: x.unsqueeze(-1)  # noqa: E731  (TorchRL's [*B, T, 1] layout)
        shift = lambda x, fill: torch.cat([x[:, 1:], torch.full_like(x[:, :1], fill)], 1)  # noqa: E731
        data = TensorDict(
            {keys.value: col(bootstrap_value), keys.has_state: col(has_state),
             "next": {keys.reward: col(reward), keys.done: col(done), keys.terminated: col(terminated),
                      keys.value: col(shift(bootstrap_value, 0.0))}},
            batch_size=reward.shape,
        )
        with torch.no_grad():
            self.value_estimator(data)
        target = data.get(est_keys.value_target).reshape(reward.shape)
        mask_key = getattr(est_keys, "target_mask", None)
        if mask_key is not None and mask_key in data.keys(True):
            target_mask = data.get(mask_key).reshape(reward.shape).bool()
        else:  # a TorchRL estimator: defined where s_{t+1} exists in the sequence, or t terminates
            target_mask = terminated | shift(has_state, False)
        return target, target_mask

    # --------------------------------------------------------------- forward
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        td = tensordict
        if td.batch_dims != 2:
            raise ValueError(
                f"R2D2Loss: expected sequences with batch [B, L], got batch size {list(td.batch_size)} "
                "(a SliceSampler sample is flat: reshape it with .reshape(-1, slice_len))"
            )
        require_keys("R2D2Loss", td, {
            "action": keys.action, "reward": ("next", keys.reward), "done": ("next", keys.done),
            "terminated": ("next", keys.terminated), **({"is_init": keys.is_init} if self.state_keys else {}),
        })
        require_module_inputs("R2D2Loss", td, {"value_network": self.value_network})
        td = self._with_layout(td)
        b = self.burn_in
        if td.shape[1] <= b:
            raise ValueError(f"R2D2Loss: sequences of length {td.shape[1]} leave no training steps after burn_in={b}")
        mask_full = td.get(keys.mask).reshape(td.shape)
        if b and bool(mask_full[:, :b].any()):
            raise ValueError(
                f"R2D2Loss: the '{keys.mask}' key marks training steps inside the first burn_in={b} positions; "
                "the replay buffer's burn_in must equal the loss's"
            )
        q = self._unroll(self.value_network_params, td, grad=True)  # [B, T, A]
        with torch.no_grad():
            q_target = self._unroll(self.target_value_network_params, td, grad=False)
            greedy = q.detach().argmax(-1, keepdim=True)
            bootstrap_value = q_target.gather(-1, greedy).squeeze(-1)

        part = td[:, b:]
        shape = part.shape
        reward = part.get(("next", keys.reward)).reshape(shape).to(q.dtype)
        done = part.get(("next", keys.done)).reshape(shape).bool()
        terminated = part.get(("next", keys.terminated)).reshape(shape).bool()
        mask = part.get(keys.mask).reshape(shape).bool()
        has_state = part.get(keys.valid).reshape(shape).bool() | part.get(keys.bootstrap).reshape(shape).bool()
        target, target_mask = self._targets(bootstrap_value, reward, done, terminated, has_state)
        action = part.get(keys.action).to(q.dtype)
        q_taken = (q * action).sum(-1)
        loss_mask = mask & target_mask
        m = loss_mask.to(q.dtype)
        delta = target.detach() - q_taken
        per_sequence = 0.5 * (delta.square() * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        weight = td.get(keys.priority_weight, None)
        if weight is not None:
            weight = weight.reshape(weight.shape[0], -1)[:, 0]  # [B] or [B, L] (constant along L, as the buffer gives it)
            per_sequence = per_sequence * weight.to(per_sequence.dtype)
        loss = per_sequence.mean()
        abs_delta = (delta.detach().abs() * m)
        priority = sequence_priority(abs_delta, loss_mask, eta=self.priority_eta)
        steps = m.sum().clamp_min(1.0)
        return TensorDict(
            {
                "loss": loss,
                "priority": priority,
                "td_error": abs_delta,
                "loss_mask": loss_mask,
                "q_mean": ((q_taken.detach() * m).sum() / steps),
                "target_mean": ((target * m).sum() / steps),
                "trained_steps": m.sum(),
            },
            batch_size=[],
        )


@torch.no_grad()
def delta_q(
    value_network: TensorDictModuleBase,
    episode: TensorDictBase,
    starts,
    *,
    burn_in: int,
    seq_len: int,
    stored_state: bool = True,
    action_value_key: NestedKey = "action_value",
    is_init_key: NestedKey = "is_init",
) -> dict[str, float]:
    """R2D2's recurrent-state staleness ΔQ (Kapturowski et al. 2019, Section 3, Fig. 1).

        ΔQ = || q(o_t; ĥ_t; θ) − q(o_t; h_t; θ) ||_2 / | max_{a} q(o_t; h_t; θ)_a |

    ``h_t`` is the state the *current* network reaches unrolling the whole
    episode from its start; ``ĥ_t`` the state reached from the state the actor
    stored (``stored_state=True``) or from zeros (the zero-state strategy), at
    the start of a replay window, after ``burn_in`` steps. Measured at the
    first and the last training step of each window ``[t0, t0 + seq_len)``
    for ``t0`` in ``starts``.

    Args:
        episode: one complete episode ``[T]`` as collected (observations,
            previous action/reward, the actor's stored recurrent state).
        starts: training start indices ``t0`` (burn-in from ``max(0, t0 - burn_in)``).

    Returns: ``{"first": mean ΔQ at t0, "last": mean ΔQ at the window's last step}``.
    """
    keys = _state_keys(value_network)
    if not keys:
        raise ValueError("delta_q: the network has no recurrent state (feed-forward variant)")
    ep = episode.clone(False)
    init = torch.zeros_like(ep.get(is_init_key))
    init[0] = True
    ep.set(is_init_key, init)
    for key in keys:
        state = ep.get(key).clone()
        state[0] = 0.0
        ep.set(key, state)
    with set_recurrent_mode(True):
        full = value_network(ep.unsqueeze(0).clone(False)).get(action_value_key)[0]
    firsts, lasts = [], []
    length = ep.shape[0]
    for t0 in starts:
        t0 = int(t0)
        if not 0 <= t0 < length:
            raise ValueError(f"delta_q: start {t0} is outside the episode of length {length}")
        begin, end = max(0, t0 - burn_in), min(length, t0 + seq_len)
        window = episode[begin:end].clone(False)
        init = torch.zeros_like(window.get(is_init_key))
        init[0] = True
        window.set(is_init_key, init)
        if not stored_state:
            for key in keys:
                state = window.get(key).clone()
                state[0] = 0.0
                window.set(key, state)
        with set_recurrent_mode(True):
            q_hat = value_network(window.unsqueeze(0)).get(action_value_key)[0]
        for t, out in ((t0, firsts), (end - 1, lasts)):
            q_true = full[t]
            out.append((q_hat[t - begin] - q_true).norm() / q_true.max().abs().clamp_min(1e-8))
    return {"first": torch.stack(firsts).mean().item(), "last": torch.stack(lasts).mean().item()}
