"""R2D2's recurrent dueling Q-network (Kapturowski et al. 2019, Section 2 and appendix).

R2D2 keeps Ape-X's dueling network and adds an LSTM after the convolutional
stack: the Atari torso (three convolutions and a 512-unit linear layer,
Mnih et al. 2015), whose output is concatenated with
the previous action (one-hot) and the previous reward, fed to a 512-unit LSTM,
followed by a dueling head (Wang et al. 2016) that writes the action values.
The feed-forward ablation replaces the LSTM by a linear layer of the same
width.

:func:`make_recurrent_q_network` builds it as a :class:`RecurrentQNetwork`
(a ``TensorDictSequential``) that reads the observation, ``"prev_action"``
and ``"prev_reward"`` (see :class:`latentrl.envs.previous.PreviousActionReward`)
and writes ``"action_value"``, TorchRL's ``QValueModule`` key. Its recurrent
state lives under ``"recurrent_state_h"`` / ``"recurrent_state_c"`` (TorchRL's
``LSTMModule``): append :meth:`RecurrentQNetwork.make_tensordict_primer` and an
``InitTracker`` to the env, and a collector carries the state step by step. On
stored ``[B, T]`` sequences, run it under ``torchrl.modules.set_recurrent_mode(True)``:
the LSTM starts from the stored state at ``t = 0`` and at every ``is_init``
(R2D2's "stored state" strategy).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.envs.transforms import Compose, TensorDictPrimer
from torchrl.modules import LSTMModule

__all__ = [
    "DuelingHead",
    "AtariTorso",
    "MinAtarTorso",
    "RecurrentQNetwork",
    "make_recurrent_q_network",
    "apex_epsilons",
    "PerEnvEpsilonGreedy",
]


class DuelingHead(nn.Module):
    """Dueling Q head (Wang et al. 2016, eq. 9): ``Q = V + A - mean_a A``.

    Two streams over the same features: ``V`` (one output) and ``A`` (one per
    action), each an MLP with one hidden layer of ``hidden`` ReLU units
    (512 in Wang et al. 2016 and R2D2); ``hidden=0`` makes each stream a
    single linear layer. Leading dimensions are arbitrary.
    """

    def __init__(self, in_features: int, n_actions: int, hidden: int = 512):
        super().__init__()
        self.in_features, self.n_actions, self.hidden = in_features, n_actions, hidden

        def stream(out: int) -> nn.Module:
            if not hidden:
                return nn.Linear(in_features, out)
            return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out))

        self.value_stream = stream(1)
        self.advantage_stream = stream(n_actions)

    def streams(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V [*, 1], A [*, n_actions])`` before the mean is removed."""
        return self.value_stream(features), self.advantage_stream(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value, advantage = self.streams(features)
        return value + advantage - advantage.mean(-1, keepdim=True)


class _ImageTorso(nn.Module):
    """``convs`` then ``linear`` over ``[*, C, H, W]`` frames with any leading dimensions, shapes checked."""

    in_channels: int
    image_size: tuple[int, int]
    out_features: int

    def _to_float(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-3:] != (self.in_channels, *self.image_size):
            raise ValueError(
                f"{type(self).__name__}: expected frames [*, {self.in_channels}, {self.image_size[0]}, {self.image_size[1]}], "
                f"got {tuple(frames.shape)}"
            )
        frames = self._to_float(frames)
        leading = frames.shape[:-3]
        out = self.linear(self.convs(frames.reshape(-1, *frames.shape[-3:])))
        return out.reshape(*leading, self.out_features)


class AtariTorso(_ImageTorso):
    """The convolutional torso of Mnih et al. 2015 (Nature DQN, Methods).

    32 8x8 filters stride 4, 64 4x4 stride 2, 64 3x3 stride 1, each followed
    by a ReLU, flattened, then a linear layer of 512 units with a ReLU. Input
    ``[*, C, H, W]`` with any leading dimensions (``[*, 4, 84, 84]`` in the
    paper), output ``[*, 512]``. ``uint8`` frames are scaled to ``[0, 1]``;
    floating frames are used as they are (``ToTensorImage`` has already scaled
    them).
    """

    def __init__(self, in_channels: int = 4, image_size: Sequence[int] = (84, 84), out_features: int = 512):
        super().__init__()
        self.in_channels, self.image_size, self.out_features = in_channels, tuple(image_size), out_features
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        h, w = self.image_size
        for k, s in ((8, 4), (4, 2), (3, 1)):
            h, w = (h - k) // s + 1, (w - k) // s + 1
        if h < 1 or w < 1:
            raise ValueError(f"AtariTorso: image_size {self.image_size} is too small for the 8/4, 4/2, 3/1 convolutions")
        self.linear = nn.Sequential(nn.Linear(64 * h * w, out_features), nn.ReLU())

    def _to_float(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames


class MinAtarTorso(_ImageTorso):
    """The MinAtar network of Young & Tian 2019 (Section 4): one convolution of
    16 3x3 filters stride 1 with a ReLU, flattened, then a linear layer of 128
    units with a ReLU. Input ``[*, C, 10, 10]`` (channels first, any leading
    dimensions), output ``[*, out_features]``. Boolean or integer inputs are
    cast to the default float dtype.
    """

    def __init__(self, in_channels: int, image_size: Sequence[int] = (10, 10), out_features: int = 128):
        super().__init__()
        self.in_channels, self.image_size, self.out_features = in_channels, tuple(image_size), out_features
        h, w = (s - 2 for s in self.image_size)
        if h < 1 or w < 1:
            raise ValueError(f"MinAtarTorso: image_size {self.image_size} is too small for a 3x3 convolution")
        self.convs = nn.Sequential(nn.Conv2d(in_channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * h * w, out_features), nn.ReLU())

    def _to_float(self, frames: torch.Tensor) -> torch.Tensor:
        return frames if frames.is_floating_point() else frames.to(torch.get_default_dtype())


class _MLPEncoder(nn.Module):
    """Flattens the observation's ``len(obs_shape)`` last dims, then Linear+ReLU layers."""

    def __init__(self, obs_shape: Sequence[int], hidden: Sequence[int]):
        super().__init__()
        self.obs_ndim = len(obs_shape)
        layers, width = [], int(torch.Size(obs_shape).numel())
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.layers, self.out_features = nn.Sequential(*layers), width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.flatten(-self.obs_ndim) if self.obs_ndim > 1 else obs
        if not obs.is_floating_point():  # e.g. minigrid's uint8 symbolic view
            obs = obs.to(torch.get_default_dtype())
        return self.layers(obs)


class _ConcatPrevious(nn.Module):
    """``[embedding, prev_action (one-hot), prev_reward]`` along the last dim."""

    def forward(self, embedding: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        return torch.cat([embedding, prev_action.to(embedding.dtype), prev_reward.to(embedding.dtype)], dim=-1)


class RecurrentQNetwork(TensorDictSequential):
    """encoder -> [., prev action, prev reward] -> LSTM (or Linear+ReLU) -> dueling head.

    Built by :func:`make_recurrent_q_network`; a ``TensorDictSequential`` with
    access to its parts (:attr:`lstm_module`, :attr:`encoder`,
    :attr:`dueling_head`) and a :meth:`make_tensordict_primer`.
    """

    @property
    def feedforward(self) -> bool:
        """True when there is no LSTM (the feed-forward ablation): no recurrent state."""
        return self.lstm_module is None

    def _find(self, module_type: type | tuple[type, ...]) -> nn.Module | None:
        for m in self.modules():
            if isinstance(m, module_type):
                return m
        return None

    @property
    def encoder(self) -> nn.Module | None:
        """The :class:`AtariTorso`, :class:`MinAtarTorso` or MLP encoder."""
        return self._find((AtariTorso, MinAtarTorso, _MLPEncoder))

    @property
    def lstm_module(self) -> LSTMModule | None:
        """The TorchRL ``LSTMModule`` (``None`` for the feed-forward variant)."""
        return self._find(LSTMModule)

    @property
    def dueling_head(self) -> DuelingHead | None:
        return self._find(DuelingHead)

    @property
    def recomputed_keys(self) -> list:
        """What the network writes at the current step (embedding, core input/output, action values).

        A learner recomputes all of them from the observations and the stored
        recurrent state, so a replay buffer need not keep them; the next
        recurrent state (under ``"next"``) is what it must keep.
        """
        return [k for k in self.out_keys if not (isinstance(k, tuple) and k[0] == "next")]

    def make_tensordict_primer(self) -> TensorDictPrimer | Compose:
        """The LSTM's ``TensorDictPrimer`` (an empty ``Compose`` for the feed-forward variant).

        Append it to the env (with an ``InitTracker``) so that collectors carry
        and store the recurrent state.
        """
        if self.feedforward:
            return Compose()
        return self.lstm_module.make_tensordict_primer()


def make_recurrent_q_network(
    obs_shape: Sequence[int],
    n_actions: int,
    *,
    observation_key="observation",
    encoder: str = "mlp",
    mlp_hidden: Sequence[int] = (64,),
    lstm_hidden: int = 512,
    head_hidden: int = 512,
    feedforward: bool = False,
    prev_action_key="prev_action",
    prev_reward_key="prev_reward",
    action_value_key="action_value",
) -> RecurrentQNetwork:
    """R2D2's Q-network (Kapturowski et al. 2019, Section 2 and appendix).

    Args:
        obs_shape: shape of one observation (``(obs_dim,)`` for ``"mlp"``,
            ``(C, H, W)`` for ``"atari"`` and ``"minatar"``).
        n_actions: number of discrete actions (the size of ``"prev_action"``
            and of ``"action_value"``).

    Keyword Args:
        observation_key: where the observation is read.
        encoder: ``"atari"`` (:class:`AtariTorso`, Mnih et al. 2015, 512 out),
            ``"minatar"`` (:class:`MinAtarTorso`, Young & Tian 2019, 128 out)
            or ``"mlp"`` (Linear+ReLU layers of ``mlp_hidden``, for vector
            observations).
        mlp_hidden: widths of the ``"mlp"`` encoder.
        lstm_hidden: LSTM width. Paper: 512.
        head_hidden: hidden width of each dueling stream. Paper: 512.
        feedforward: replace the LSTM by ``Linear(., lstm_hidden) + ReLU``
            (the feed-forward ablation, no recurrent state).
        prev_action_key, prev_reward_key: the one-hot previous action
            ``[*, n_actions]`` and previous reward ``[*, 1]``.
        action_value_key: where the Q-values ``[*, n_actions]`` are written.

    Returns:
        A :class:`RecurrentQNetwork`. Intermediate keys: ``"q_embedding"``,
        ``"q_core_input"``, ``"q_core_output"``; recurrent state
        ``"recurrent_state_h"``/``"recurrent_state_c"`` ``[*, 1, lstm_hidden]``
        written to ``("next", ...)``, reset at ``"is_init"``.
    """
    obs_shape = tuple(int(s) for s in obs_shape)
    if encoder in ("atari", "minatar"):
        if len(obs_shape) != 3:
            raise ValueError(f"make_recurrent_q_network: encoder={encoder!r} needs obs_shape (C, H, W), got {obs_shape}")
        torso = AtariTorso if encoder == "atari" else MinAtarTorso
        enc = torso(in_channels=obs_shape[0], image_size=obs_shape[1:])
        enc_out = enc.out_features
    elif encoder == "mlp":
        enc = _MLPEncoder(obs_shape, mlp_hidden)
        enc_out = enc.out_features
    else:
        raise ValueError(f"make_recurrent_q_network: encoder must be 'mlp', 'atari' or 'minatar', got {encoder!r}")
    core_in = enc_out + n_actions + 1
    modules = [
        TensorDictModule(enc, in_keys=[observation_key], out_keys=["q_embedding"]),
        TensorDictModule(
            _ConcatPrevious(), in_keys=["q_embedding", prev_action_key, prev_reward_key], out_keys=["q_core_input"]
        ),
    ]
    if feedforward:
        core = TensorDictModule(
            nn.Sequential(nn.Linear(core_in, lstm_hidden), nn.ReLU()), in_keys=["q_core_input"], out_keys=["q_core_output"]
        )
    else:
        core = LSTMModule(
            input_size=core_in,
            hidden_size=lstm_hidden,
            in_keys=["q_core_input", "recurrent_state_h", "recurrent_state_c"],
            out_keys=["q_core_output", ("next", "recurrent_state_h"), ("next", "recurrent_state_c")],
        )
    head = TensorDictModule(
        DuelingHead(lstm_hidden, n_actions, hidden=head_hidden), in_keys=["q_core_output"], out_keys=[action_value_key]
    )
    return RecurrentQNetwork(*modules, core, head)


def apex_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> torch.Tensor:
    """Ape-X's per-actor exploration rates ``eps_i = base^(1 + alpha i / (N - 1))``.

    Horgan et al. 2018 (Ape-X), Section 4.1, kept by R2D2 (Kapturowski et al.
    2019, Section 2): ``base = 0.4``, ``alpha = 7``. One actor gets ``base``.
    """
    if int(num_actors) < 1:
        raise ValueError(f"apex_epsilons: `num_actors` must be >= 1, got {num_actors}")
    n = int(num_actors)
    if n == 1:
        return torch.tensor([float(base)])
    i = torch.arange(n, dtype=torch.float64)
    return (float(base) ** (1.0 + float(alpha) * i / (n - 1))).to(torch.float32)


class PerEnvEpsilonGreedy(nn.Module):
    """Epsilon-greedy over ``action_value`` with one epsilon per env (read from the tensordict).

    Each env of a batch explores with its own rate (Ape-X actors; see
    :func:`apex_epsilons` and :class:`latentrl.envs.PerEnvConstant`, which
    writes the rates into the env's output). Wrapped as
    ``TensorDictModule(PerEnvEpsilonGreedy(), ["action_value", "epsilon"], ["action"])``:
    the greedy action with probability ``1 - eps``, a uniform one otherwise,
    as a one-hot. Under TorchRL's ``DETERMINISTIC`` / ``MODE`` exploration
    type (evaluation) it is greedy.
    """

    def forward(self, action_value: torch.Tensor, epsilon: torch.Tensor) -> torch.Tensor:
        from torchrl.envs.utils import ExplorationType, exploration_type

        n = action_value.shape[-1]
        greedy = action_value.argmax(-1)
        if exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE):
            return torch.nn.functional.one_hot(greedy, n)
        eps = epsilon.to(action_value.dtype).reshape(greedy.shape)
        explore = torch.rand(greedy.shape, device=action_value.device) < eps
        random = torch.randint(0, n, greedy.shape, device=action_value.device)
        return torch.nn.functional.one_hot(torch.where(explore, random, greedy), n)
