"""UPSTREAM #19: TorchRL's public ``DreamerV3BlockGRUCell`` projects its whole input with one
Linear + RMSNorm + SiLU. The code's core (danijar/dreamerv3 rssm.py ``_core``) projects ``stoch`` and
``action`` separately (``dynin1``, ``dynin2``), after scaling the action to ``a / max(1, |a|)``. Fed
``[stoch, action]``, the cell therefore normalizes the two together, and a large action is not
bounded. ``latentrl.modules.RSSMV3`` has the code's three projections."""
import torch
from torch import nn

from latentrl.modules import RSSMV3


def test_the_cell_has_one_input_projection_and_does_not_bound_the_action():
    from torchrl.modules import DreamerV3BlockGRUCell

    S, A, D = 6, 2, 8
    torch.manual_seed(0)
    cell = DreamerV3BlockGRUCell(S + A, D, projection_size=4, num_blocks=2)
    assert isinstance(cell.input_linear, nn.Linear) and cell.input_linear.in_features == S + A  # one projection
    h, s = torch.zeros(1, D), torch.randn(1, S)
    small = cell(torch.cat([s, torch.full((1, A), 1.0)], -1), h)
    large = cell(torch.cat([s, torch.full((1, A), 100.0)], -1), h)
    assert not torch.allclose(small, large)  # the code's a / max(1, |a|) would make these equal

    ours = RSSMV3(A, 4, deter_dim=D, hidden_dim=4, num_vars=2, num_classes=3, blocks=2)
    assert set(ours.proj) == {"deter", "stoch", "action"}  # dynin0, dynin1, dynin2
    s = torch.nn.functional.one_hot(torch.randint(3, (1, 2)), 3).float().flatten(-2)
    torch.testing.assert_close(ours._deter_step(h, s, torch.full((1, A), 1.0)),
                               ours._deter_step(h, s, torch.full((1, A), 100.0)))
