"""UPSTREAM.md #2: Collector.state_dict() omits the carried tensordict and the
simulator state: a collector restored from it restarts every episode instead
of continuing. Ours: latentrl.collectors.state.collector_state."""
import torch
from torchrl.collectors import Collector
from torchrl.envs import StepCounter

from latentrl.collectors.state import collector_state, load_collector_state
from latentrl.envs import make_env
from latentrl.modules.recurrent import make_actor_critic


def _collector():
    env = make_env("pomdp:masked-cartpole", num_envs=2, seed=0)
    env.append_transform(StepCounter())
    torch.manual_seed(0)
    actor, _ = make_actor_critic(2, env.action_spec, recurrent=False)  # samples from torch's RNG
    return Collector(env, actor, frames_per_batch=16, total_frames=-1)


def _next_batch(collector):
    torch.manual_seed(42)
    return next(iter(collector))


def test_restored_collector_continues_only_with_full_state():
    original = _collector()
    _next_batch(original)
    torchrl_state = original.state_dict()
    full_state = collector_state(original)
    continuation = _next_batch(original)
    assert (continuation["step_count"][:, 0] > 0).all()  # mid-episode

    restored = _collector()
    restored.load_state_dict(torchrl_state)
    restarted = _next_batch(restored)
    assert (restarted["step_count"][:, 0] == 0).all()  # TorchRL: episodes start over

    ours = _collector()
    load_collector_state(ours, full_state)
    resumed = _next_batch(ours)
    assert (resumed == continuation).all()  # ours: the very same batch
    for c in (original, restored, ours):
        c.shutdown()
