"""DreamerV3's replay context: a replayed sequence starts from the posterior stored with the step before it
(danijar/dreamerv3 ``_apply_replay_context``), and the update writes its posteriors back (``replay.update``)."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch.nn import functional as F

from latentrl.checks import InputError
from latentrl.collectors import ReplayContext, make_episode_replay
from latentrl.modules import make_dreamer_v3_world_model
from latentrl.modules.world_model import RSSMObserve
from latentrl.objectives import WorldModelLoss

B, T, D, S, A, N = 3, 5, 4, 6, 2, 40


def stream(n: int = N) -> TensorDict:
    """``n`` steps of one stream: at position ``p`` the observation is ``p``, the stored posterior
    ``(deter, stoch) = (p, -p)`` and the action ``[p, 2p]``, so every read is identifiable."""
    p = torch.arange(n, dtype=torch.float32).unsqueeze(-1)
    return TensorDict({
        "observation": p.expand(n, 3).clone(), "action": torch.cat([p, 2 * p], -1),
        "stream": torch.zeros(n, dtype=torch.long),
        "next": {"rssm_deter": p.expand(n, D).clone(), "rssm_stoch": -p.expand(n, S).clone()},
    }, [n])


def make(context: int = 1, capacity: int = 100) -> ReplayContext:
    replay = make_episode_replay(capacity, B, T + context, traj_key="stream")
    replay.extend(stream())
    return ReplayContext(replay, T, context)


@pytest.mark.parametrize("context", [1, 3])
def test_sample_is_the_last_steps_with_the_state_stored_before_each(context):
    torch.manual_seed(0)
    rc = make(context)
    for _ in range(20):
        data = rc.sample()
        assert data.batch_size == (B, T)
        pos = data["observation"][..., 0]
        assert (pos.diff(dim=1) == 1).all() and (pos[:, 0] >= context).all()  # the slices' last T steps
        assert torch.equal(data["index"][..., 0].float(), pos)
        prev = (pos - 1).unsqueeze(-1)
        assert torch.equal(data["context", "deter"], prev.expand(B, T, D))
        assert torch.equal(data["context", "stoch"], -prev.expand(B, T, S))
        assert torch.equal(data["context", "action"], torch.cat([prev, 2 * prev], -1))


def test_write_back_replaces_only_the_trained_steps_latents_and_keeps_the_write_cursor():
    torch.manual_seed(0)
    rc = make()
    data = rc.sample()
    trained = data["index"].reshape(-1).unique()
    data["deter"] = torch.full((B, T, D), 1000.0, requires_grad=True)
    data["stoch"] = torch.full((B, T, S), 2000.0)
    rc.write_back(data)
    stored = rc.replay.storage[:N]
    hit = torch.zeros(N, dtype=torch.bool)
    hit[trained] = True
    assert (stored["next", "rssm_deter"][hit] == 1000).all() and (stored["next", "rssm_stoch"][hit] == 2000).all()
    untouched = stream()[~hit]
    assert torch.equal(stored["next", "rssm_deter"][~hit], untouched["next", "rssm_deter"])
    assert torch.equal(stored["observation"], stream()["observation"])  # other keys are left alone
    assert len(rc.replay) == N  # storage.set (the writer's path) would have counted the rows as new ones
    # the buffer's write cursor (where the sampler ends the stream) did not move: new steps append after
    # step N - 1, and slices stay consecutive inside the written region (never-written rows were NaN)
    rc.replay.extend(stream(10).apply(lambda x: x + N if x.is_floating_point() else x))
    for _ in range(50):
        pos = rc.sample()["observation"][..., 0]
        assert (pos.diff(dim=1) == 1).all() and (pos < N + 10).all()


def test_bad_inputs_name_the_argument():
    rc = make()
    with pytest.raises(InputError, match="`context`"):
        ReplayContext(rc.replay, T, 0)
    wrong = make_episode_replay(100, B, T, traj_key="stream")  # slices of T, not 1 + T
    wrong.extend(stream())
    with pytest.raises(InputError, match="slice length 6"):
        ReplayContext(wrong, T, 1).sample()
    bare = make_episode_replay(100, B, T + 1, traj_key="stream")
    bare.extend(stream().exclude(("next", "rssm_deter")))
    with pytest.raises(KeyError, match="rssm_deter"):
        ReplayContext(bare, T, 1).sample()
    with pytest.raises(KeyError, match="'deter'.*world-model loss"):
        rc.write_back(rc.sample())


def test_observe_starts_from_step_0_s_context_unless_an_episode_starts_there():
    torch.manual_seed(0)
    wm = make_dreamer_v3_world_model([3], A, size="size1m")
    rssm = wm.rssm
    embed = torch.randn(B, T, 64)
    action = torch.randn(B, T, A)
    h0, s0 = torch.randn(B, rssm.deter_dim), torch.randn(B, rssm.stoch_flat)
    a0 = torch.randn(B, A)
    context = TensorDict({"deter": h0.unsqueeze(1).expand(B, T, -1).clone(),
                          "stoch": s0.unsqueeze(1).expand(B, T, -1).clone(),
                          "action": a0.unsqueeze(1).expand(B, T, -1).clone()}, [B, T])
    context[:, 1:] = context[:, 1:].apply(torch.randn_like)  # only step 0 is read
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    td = TensorDict({"embed": embed, "action": action, "is_init": is_init, "context": context}, [B, T])
    observe = RSSMObserve(rssm, sample=False)
    out = observe(td.clone())
    expected = rssm.observe(embed, action, is_init, state=(h0, s0), prev_action=a0, sample=False)
    torch.testing.assert_close(out["deter"], expected["deter"])
    zero = rssm.observe(embed, action, is_init, sample=False)
    assert not torch.allclose(out["deter"][:, 0], zero["deter"][:, 0])  # the context matters
    td["is_init"][:, 0] = True  # an episode starts at step 0: the stored state is reset
    torch.testing.assert_close(observe(td.clone())["deter"], zero["deter"])
    with pytest.raises(KeyError, match="'context'.*'deter', 'stoch' and 'action'"):
        observe(td.clone().exclude(("context", "action")))


def test_world_model_loss_trains_from_the_context_and_writes_back_its_posterior():
    """The real loss on a replayed batch: the context changes the posterior and the loss, and after
    ``write_back`` the replay holds the loss's posterior at exactly the trained steps."""
    torch.manual_seed(0)
    wm = make_dreamer_v3_world_model([3], A, size="size1m")
    loss = WorldModelLoss(wm, "dreamer_v3")
    loss.set_keys(discount_logit="continue_logit")
    n = 60
    steps = TensorDict({
        "observation": torch.randn(n, 3), "action": F.one_hot(torch.randint(A, (n,)), A).float(),
        "is_init": torch.zeros(n, 1, dtype=torch.bool), "stream": torch.zeros(n, dtype=torch.long),
        "next": {"observation": torch.randn(n, 3), "reward": torch.randn(n, 1),
                 "terminated": torch.zeros(n, 1, dtype=torch.bool),
                 "rssm_deter": torch.randn(n, wm.rssm.deter_dim), "rssm_stoch": torch.randn(n, wm.rssm.stoch_flat)},
    }, [n])
    replay = make_episode_replay(200, B, T + 1, traj_key="stream")
    replay.extend(steps)
    rc = ReplayContext(replay, T)
    data = rc.sample()
    while data["index"].unique().numel() < B * T:  # overlapping slices write one step twice: avoid them here
        data = rc.sample()
    torch.manual_seed(1)
    with_context = loss(data)
    torch.manual_seed(1)
    without = loss(data.exclude("context"))
    assert with_context["loss_model_kl"] != without["loss_model_kl"]
    torch.manual_seed(1)
    loss(data)  # writes this batch's posterior (with context) into data
    rc.write_back(data)
    stored = replay.storage[data["index"].reshape(-1)]
    torch.testing.assert_close(stored["next", "rssm_deter"], data["deter"].detach().reshape(B * T, -1))
    torch.testing.assert_close(stored["next", "rssm_stoch"], data["stoch"].detach().reshape(B * T, -1))
