"""TorchRL's DQN priorities and burn-in against PER and R2D2.

1. ``DQNLoss`` writes the *squared* TD error ``(Q(s, a) - y)^2`` under its
   priority key (``"td_error"``), where prioritized replay (Schaul et al.
   2016, Sec. 3.3: ``p_i = |delta_i| + eps``) and R2D2 (Kapturowski et al.
   2019, Sec. 2: ``eta max_t |delta_t| + (1 - eta) mean_t |delta_t|``) use
   ``|delta|``. With the priority exponent ``alpha`` on top, a TorchRL
   prioritized buffer fed by ``DQNLoss`` prioritizes by ``|delta|^(2 alpha)``.
2. ``BurnInTransform`` burns in the modules it is given, with their own
   parameters, and writes one state per recurrent key at the first kept step.
   Given the online network, the target network then starts from the
   *online* network's burnt-in state; R2D2 burns in both networks, each with
   its own parameters, from the stored state.

Ours: ``latentrl.objectives.r2d2.R2D2Loss`` (returns ``|delta|`` and the
sequence priority; burns in the online and the target network separately).
"""
import torch
from tensordict import TensorDict
from torchrl.envs.transforms import BurnInTransform
from torchrl.modules import LSTMModule, QValueActor
from torchrl.objectives import DQNLoss, ValueEstimators

GAMMA = 0.9


def _transitions() -> TensorDict:
    """Two hand-made transitions: one that bootstraps, one that terminates."""
    return TensorDict(
        {
            "observation": torch.tensor([[1.0, 2.0], [0.5, -1.0]]),
            "action": torch.tensor([[1, 0], [0, 1]]),
            "next": {
                "observation": torch.tensor([[3.0, 1.0], [0.0, 0.0]]),
                "reward": torch.tensor([[0.5], [1.0]]),
                "done": torch.tensor([[False], [True]]),
                "terminated": torch.tensor([[False], [True]]),
            },
        },
        batch_size=[2],
    )


def test_dqn_loss_priority_is_the_squared_td_error():
    net = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # Q(s) = (s_0, 2 s_1)
    actor = QValueActor(net, in_keys=["observation"], action_space="one-hot")
    loss = DQNLoss(actor, action_space="one-hot", delay_value=False)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=GAMMA)
    td = _transitions()
    loss(td)

    # by hand: Q(s, a) = (1, -2); TD(0) target y = r + gamma (1 - terminated) max_a' Q(s', a')
    q_taken = torch.tensor([1.0, -2.0])  # Q([1, 2]) = (1, 4), a = 0; Q([.5, -1]) = (.5, -2), a = 1
    y = torch.tensor([0.5 + GAMMA * 3.0, 1.0])  # Q([3, 1]) = (3, 2); the second terminates
    delta = q_taken - y  # (-2.2, -3.0)
    priority = td.get("td_error").reshape(-1)
    torch.testing.assert_close(priority, delta.square())  # TorchRL: (Q - y)^2
    assert not torch.allclose(priority, delta.abs())  # PER / R2D2: |Q - y|


def _lstm(seed: int) -> LSTMModule:
    torch.manual_seed(seed)
    return LSTMModule(
        input_size=2,
        hidden_size=3,
        in_keys=["observation", "recurrent_state_h", "recurrent_state_c"],
        out_keys=["features", ("next", "recurrent_state_h"), ("next", "recurrent_state_c")],
        default_recurrent_mode=True,
    )


def test_burn_in_transform_burns_in_only_the_module_it_is_given():
    online, target = _lstm(0), _lstm(1)  # same architecture, different parameters
    burn_in, T = 3, 5
    torch.manual_seed(2)
    sequence = TensorDict(
        {
            "observation": torch.randn(1, T, 2),
            "recurrent_state_h": torch.randn(1, T, 1, 3),  # the actor's stored state
            "recurrent_state_c": torch.randn(1, T, 1, 3),
            "is_init": torch.zeros(1, T, 1, dtype=torch.bool),
        },
        batch_size=[1, T],
    )

    def burnt_in_state(module):
        out = module(sequence[:, :burn_in].clone())
        return out.get(("next", "recurrent_state_h"))[:, -1]

    transform = BurnInTransform(modules=[online], burn_in=burn_in)
    assert set(transform.out_keys) == {"recurrent_state_h", "recurrent_state_c"}  # one slot per key
    kept = transform(sequence.clone())
    assert kept.shape == (1, T - burn_in)
    state = kept.get("recurrent_state_h")[:, 0]
    torch.testing.assert_close(state, burnt_in_state(online))  # the online network's burnt-in state
    # what the target network reaches from the stored state is not there: a
    # loss reading these keys starts the target network from the online state
    assert not torch.allclose(state, burnt_in_state(target))
