"""TorchRL's RSSMPrior only works when ``hidden_dim == rnn_hidden_dim``.

``torchrl.modules.models.model_based.RSSMPrior`` (torchrl 0.14.1) builds
``rnn = GRUCell(hidden_dim, rnn_hidden_dim)``, so the belief has
``rnn_hidden_dim`` units, but then feeds that belief to
``rnn_to_prior_projector``, whose first layer is
``nn.Linear(hidden_dim, hidden_dim)``: its input size should be
``rnn_hidden_dim``. With the sizes differing the forward pass raises
``RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x32 and 64x64)``
(batch 4, belief 32, expected 64). Passing ``action_dim`` (explicit
``nn.Linear`` instead of ``LazyLinear`` for the input projector) does not
change it. DreamerV2 uses 600/600 and PlaNet 200/200, so the defaults hide it;
any other size (e.g. a small test model, or DreamerV3's 512 hidden units with
a larger recurrent state) fails.
Ours: latentrl.modules.rssm.RSSM (also categorical latents and resets at
``is_init``, which TorchRL's Gaussian-only RSSMRollout does not do).
"""
import pytest
import torch
from torchrl.data import Unbounded
from torchrl.modules.models.model_based import RSSMPrior

from latentrl.modules.rssm import RSSM


@pytest.mark.parametrize("action_dim", [None, 3])
@pytest.mark.parametrize("hidden_dim, rnn_hidden_dim", [(64, 32), (32, 64)])
def test_rssm_prior_fails_when_hidden_dim_differs(hidden_dim, rnn_hidden_dim, action_dim):
    prior = RSSMPrior(
        Unbounded(shape=(3,)), hidden_dim=hidden_dim, rnn_hidden_dim=rnn_hidden_dim, state_dim=8, action_dim=action_dim
    )
    assert prior.rnn.hidden_size == rnn_hidden_dim
    assert prior.rnn_to_prior_projector[0].in_features == hidden_dim  # should be rnn_hidden_dim
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        prior(torch.zeros(4, 8), torch.zeros(4, rnn_hidden_dim), torch.zeros(4, 3))


def test_rssm_prior_works_with_equal_sizes_and_ours_with_any():
    prior = RSSMPrior(Unbounded(shape=(3,)), hidden_dim=32, rnn_hidden_dim=32, state_dim=8, action_dim=3)
    mean, std, state, belief = prior(torch.zeros(4, 8), torch.zeros(4, 32), torch.zeros(4, 3))
    assert mean.shape == std.shape == state.shape == (4, 8) and belief.shape == (4, 32)
    ours = RSSM(action_dim=3, embed_dim=5, deter_dim=32, hidden_dim=64, stoch_dim=8)
    h, s = ours.initial_state(4)
    h, stats = ours.img_step(h, s, torch.zeros(4, 3))
    assert h.shape == (4, 32) and stats["mean"].shape == (4, 8)
