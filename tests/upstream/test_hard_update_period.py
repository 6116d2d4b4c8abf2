"""TorchRL's HardUpdate(value_network_update_interval=k) copies every k + 1 steps, not every k.

Its counter runs 0, 1, ..., k and the copy happens when it equals k, then it
resets to 0: copies on steps k+1, 2(k+1), ... R2D2 (and DQN) update the target
every k learner steps. Ours: latentrl.objectives.target_updates.HardUpdateEvery.
"""
import torch
from tensordict.nn import TensorDictModule
from torchrl.objectives import DQNLoss, HardUpdate

from latentrl.objectives.target_updates import HardUpdateEvery


def _copy_steps(updater_cls, interval, steps=8):
    torch.manual_seed(0)
    net = TensorDictModule(torch.nn.Linear(3, 2), ["observation"], ["action_value"])
    loss = DQNLoss(net, action_space="one-hot", delay_value=True)
    updater = updater_cls(loss, value_network_update_interval=interval)
    copied = []
    for step in range(1, steps + 1):
        with torch.no_grad():
            for p in loss.value_network_params.values(True, True):
                p.add_(1.0)  # the online network moves every step
        updater.step()
        same = all(torch.equal(a, b) for a, b in zip(loss.value_network_params.values(True, True), loss.target_value_network_params.values(True, True)))
        if same:
            copied.append(step)
    return copied


def test_torchrl_hard_update_copies_every_interval_plus_one():
    assert _copy_steps(HardUpdate, 3) == [4, 8]


def test_ours_copies_every_interval():
    assert _copy_steps(HardUpdateEvery, 3) == [3, 6]
