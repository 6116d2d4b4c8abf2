"""Keyed modules: ``nn.Module`` s wrapped as TensorDict modules that read and write named keys.

* World models: :class:`RSSM`, :class:`WorldModel` (:func:`make_world_model`),
  the keyed steps :class:`RSSMObserve`, :class:`RSSMImagine`, :class:`RSSMPriorStep`,
  :class:`LatentPolicy` (acting by filtering) and :class:`CEMPlanner` (PlaNet's planner).
* Dreamer's actor and critic: :func:`make_dreamer_actor`, :func:`make_dreamer_critic`.
* DreamerV3: :class:`RSSMV3` and :func:`make_dreamer_v3_world_model` (today's code, size presets);
  :class:`RSSMV3v1` and :func:`make_dreamer_v3_2023_world_model` (the 2023 release, preset ``v1_2023``).
* Discrete latents: :class:`StraightThroughOneHotCategorical`, :class:`GumbelSoftmax`,
  :class:`UnimixOneHotCategorical`.
* Recurrent agents: :func:`make_actor_critic` (RL-LSTM), :func:`make_recurrent_q_network`
  (R2D2), :class:`PerEnvEpsilonGreedy`; :class:`PopArt`; MERLIN's :class:`MerlinCore` and memory;
  FTW's two-timescale core :class:`TwoTimescaleCore` (keyed: :class:`TwoTimescaleModule`;
  the agent: :func:`make_ftw_agent`); :func:`unroll_keyed` re-runs any keyed recurrent step over a window.

Layers and import rules: ``CONTRIBUTING.md`` in the repository.
"""
from .actor_critic import (
    DreamerNormalParams,
    DreamerTruncatedNormal,
    make_dreamer_actor,
    make_dreamer_critic,
)
from .distributions import (
    GumbelSoftmax,
    StraightThroughOneHotCategorical,
    UnimixOneHotCategorical,
    gumbel_noise,
    independent,
    sample_one_hot,
)
from .dreamer_v3_2023_cnn import ChannelLayerNorm, V1ImageDecoder, V1ImageEncoder
from .dreamer_v3_2023_nets import (
    V1_SIZES,
    make_dreamer_v3_2023_actor,
    make_dreamer_v3_2023_critic,
    make_dreamer_v3_2023_world_model,
    v1_mlp,
)
from .dreamer_v3_cnn import ChannelRMSNorm, V3ImageDecoder, V3ImageEncoder
from .dreamer_v3_nets import (
    SIZES,
    BoundedNormalParams,
    LatentInput,
    make_dreamer_v3_actor,
    make_dreamer_v3_critic,
    make_dreamer_v3_world_model,
    v3_mlp,
)
from .ftw import make_ftw_agent
from .keyed_unroll import step_after, unroll_keyed
from .latent_policy import LatentPolicy
from .memory import (
    MemoryReader,
    MemoryReset,
    MemoryState,
    MemoryWriter,
    ReadHeads,
    memory_read,
    memory_reset,
    memory_write,
)
from .merlin import MerlinCore, MerlinPolicy
from .onehot_linear import OneHotBlockLinear, PartsMLP, one_hot_block
from .planners import CEMPlanner, cem_plan
from .popart import PopArt
from .q_networks import (
    AtariTorso,
    DuelingHead,
    MinAtarTorso,
    PerEnvEpsilonGreedy,
    RecurrentQNetwork,
    apex_epsilons,
    make_recurrent_q_network,
)
from .recurrent import make_actor_critic, recurrent_primers
from .rssm import RSSM
from .rssm_v3 import RSSMV3, BlockLinear, trunc_normal_in_
from .rssm_v3_2023 import RSSMV3v1, v1_linear, variance_scaling_
from .two_timescale import (
    TwoTimescaleCore,
    TwoTimescaleModule,
    scale_gradient,
    two_timescale_kl,
)
from .world_model import (
    RSSMImagine,
    RSSMObserve,
    RSSMPriorStep,
    Symlog,
    WorldModel,
    make_latent_head,
    make_mlp,
    make_world_model,
    zero_output_layer,
)

__all__ = [
    "RSSM",
    "RSSMV3",
    "BlockLinear",
    "trunc_normal_in_",
    "WorldModel",
    "make_world_model",
    "RSSMObserve",
    "RSSMImagine",
    "RSSMPriorStep",
    "make_mlp",
    "make_latent_head",
    "zero_output_layer",
    "Symlog",
    "LatentPolicy",
    "CEMPlanner",
    "cem_plan",
    "make_dreamer_actor",
    "make_dreamer_v3_world_model",
    "make_dreamer_v3_actor",
    "make_dreamer_v3_critic",
    "v3_mlp",
    "LatentInput",
    "BoundedNormalParams",
    "SIZES",
    "RSSMV3v1",
    "V1ImageEncoder",
    "V1ImageDecoder",
    "ChannelLayerNorm",
    "V3ImageEncoder",
    "V3ImageDecoder",
    "ChannelRMSNorm",
    "v1_linear",
    "variance_scaling_",
    "V1_SIZES",
    "v1_mlp",
    "make_dreamer_v3_2023_world_model",
    "make_dreamer_v3_2023_actor",
    "make_dreamer_v3_2023_critic",
    "make_dreamer_critic",
    "DreamerNormalParams",
    "DreamerTruncatedNormal",
    "StraightThroughOneHotCategorical",
    "GumbelSoftmax",
    "UnimixOneHotCategorical",
    "gumbel_noise",
    "sample_one_hot",
    "independent",
    "OneHotBlockLinear",
    "PartsMLP",
    "one_hot_block",
    "PopArt",
    "MerlinCore",
    "MerlinPolicy",
    "MemoryState",
    "MemoryReset",
    "MemoryReader",
    "MemoryWriter",
    "ReadHeads",
    "memory_read",
    "memory_write",
    "memory_reset",
    "make_actor_critic",
    "recurrent_primers",
    "make_recurrent_q_network",
    "RecurrentQNetwork",
    "DuelingHead",
    "AtariTorso",
    "MinAtarTorso",
    "PerEnvEpsilonGreedy",
    "apex_epsilons",
    "TwoTimescaleCore",
    "TwoTimescaleModule",
    "scale_gradient",
    "two_timescale_kl",
    "make_ftw_agent",
    "unroll_keyed",
    "step_after",
]
