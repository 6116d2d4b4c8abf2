"""Our world-model losses composed with TorchRL's own parts, by keys only."""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.modules import MLP
from torchrl.modules.models.model_based import ObsDecoder, ObsEncoder
from torchrl.objectives import DreamerValueLoss
from torchrl.objectives.value import TDLambdaEstimator

from latentrl.modules.actor_critic import make_dreamer_actor, make_dreamer_critic
from latentrl.modules.rssm import RSSM
from latentrl.modules.world_model import RSSMImagine, RSSMObserve, WorldModel, make_world_model
from latentrl.objectives.dreamer import DreamerActorCriticLoss
from latentrl.objectives.world_model import WorldModelLoss

pytestmark = pytest.mark.filterwarnings("ignore:No target network updater:UserWarning")
B, T, A, DET, CH = 2, 3, 2, 16, 4


def test_world_model_loss_on_torchrl_pixel_encoder_and_decoder_by_keys():
    torch.manual_seed(0)
    encoder = ObsEncoder(channels=CH, in_channels=3)
    embed_dim = encoder(torch.zeros(1, 3, 64, 64)).shape[-1]
    rssm = RSSM(A, embed_dim, deter_dim=DET, hidden_dim=16, latent="gaussian", stoch_dim=4)
    # TorchRL's Dreamer modules under TorchRL's key names: "pixels" in, "encoded_latents", "reco_pixels" out
    world_model = WorldModel(
        TensorDictModule(encoder, in_keys=["pixels"], out_keys=["encoded_latents"]),
        RSSMObserve(rssm, embed_key="encoded_latents", deter_key="belief", stoch_key="state"),
        TensorDictModule(ObsDecoder(channels=CH, latent_dim=DET + 4), in_keys=["state", "belief"],
                         out_keys=["reco_pixels"]),
        TensorDictModule(MLP(in_features=DET + 4, out_features=1, num_cells=[16]), in_keys=["state", "belief"],
                         out_keys=["reward_mean"]),
    )
    loss = WorldModelLoss(world_model, "planet")
    loss.set_keys(observation="pixels", next_observation=("next", "pixels"), reco_observation="reco_pixels",
                  predicted_reward="reward_mean", deter="belief", stoch="state")
    g = torch.Generator().manual_seed(1)
    data = TensorDict({"pixels": torch.rand(B, T, 3, 64, 64, generator=g), "action": torch.randn(B, T, A, generator=g),
                       "is_init": torch.zeros(B, T, 1, dtype=torch.bool),
                       "next": {"pixels": torch.rand(B, T, 3, 64, 64, generator=g), "reward": torch.randn(B, T, 1),
                                "terminated": torch.zeros(B, T, 1, dtype=torch.bool)}}, [B, T])
    out = loss(data)
    (out["loss_model_kl"] + out["loss_model_reco"] + out["loss_model_reward"]).backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert data["belief"].shape == (B, T, DET) and data["state"].shape == (B, T, 4)
    # the reconstruction is the decoder's, read from the key it wrote
    obs = torch.cat([data["pixels"], data["next", "pixels"][:, -1:]], 1)
    assert out["reco_nll"].item() > 0.5 * 0.05 * obs[0, 0].numel()


def dreamer_parts():
    torch.manual_seed(0)
    wm = make_world_model([5], A, latent="categorical", deter_dim=DET, hidden_dim=16, num_vars=4, num_classes=4,
                          units=16, layers=1, embed_dim=16, predict_discount=True)
    actor = make_dreamer_actor(wm.rssm, A, discrete=False, units=16, layers=1)
    critic = make_dreamer_critic(wm.rssm, units=16, layers=1)
    loss = DreamerActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, wm.discount_model, horizon=4)
    start = TensorDict({"deter": torch.randn(6, DET),
                        "stoch": torch.nn.functional.one_hot(torch.randint(4, (6, 4)), 4).float().flatten(-2)}, [6])
    return loss, critic, start


def test_torchrl_dreamer_value_loss_reads_our_imagined_trajectory():
    loss, critic, start = dreamer_parts()
    loss.set_keys(lambda_target="lambda_target")  # the key TorchRL's DreamerValueLoss reads
    loss(start)
    traj = start["imagination"]
    theirs, _ = DreamerValueLoss(critic, discount_loss=True, gamma=0.995)(traj.clone())
    assert torch.isfinite(theirs["loss_value"])
    theirs["loss_value"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())


def test_torchrl_td_lambda_estimator_swapped_in_by_make_value_estimator():
    loss, _, start = dreamer_parts()
    torch.manual_seed(3)
    ours = loss(start.clone())["lambda_return"]
    loss.make_value_estimator(TDLambdaEstimator(gamma=0.995, lmbda=0.95, value_network=None))
    torch.manual_seed(3)
    td = start.clone()
    theirs = loss(td)["lambda_return"]
    traj = td["imagination"]
    # TorchRL's estimator discounts by its scalar gamma, ignoring the predicted discounts: a different target
    assert torch.isfinite(theirs) and abs(float(theirs - ours)) > 1e-6
    assert not torch.allclose(traj["next", "discount"], torch.full_like(traj["next", "discount"], 0.995))
