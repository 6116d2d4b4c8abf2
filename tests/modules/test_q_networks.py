"""R2D2's recurrent dueling Q-network: recurrent mode vs stepping, stored-state restarts, dueling head, torso."""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker
from torchrl.modules import LSTMModule, QValueModule, set_recurrent_mode

from latentrl.envs import make_env
from latentrl.envs.previous import PreviousActionReward
from latentrl.modules.q_networks import (
    AtariTorso,
    DuelingHead,
    MinAtarTorso,
    RecurrentQNetwork,
    make_recurrent_q_network,
)

OBS, A, H = 5, 3, 16


def _net(**kw) -> RecurrentQNetwork:
    torch.manual_seed(0)
    return make_recurrent_q_network((OBS,), A, mlp_hidden=(12,), lstm_hidden=H, head_hidden=8, **kw)


def _sequences(B=3, T=9, init_at=((0, 0), (1, 0), (1, 4), (2, 6))):
    g = torch.Generator().manual_seed(1)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    for b, t in init_at:
        is_init[b, t] = True
    prev_action = torch.nn.functional.one_hot(torch.randint(A, (B, T), generator=g), A).float()
    prev_action[is_init.squeeze(-1)] = 0
    return TensorDict(
        observation=torch.randn(B, T, OBS, generator=g),
        prev_action=prev_action,
        prev_reward=torch.randn(B, T, 1, generator=g),
        is_init=is_init,
        batch_size=[B, T],
    )


def _step_through(net, data, h0=None, c0=None):
    """Acts one step at a time like a collector: the state is carried, and stored
    (zeros at resets, as the primer writes them) under recurrent_state_h/c."""
    B, T = data.batch_size
    h = torch.zeros(B, 1, H) if h0 is None else h0
    c = torch.zeros(B, 1, H) if c0 is None else c0
    stored_h, stored_c, values = [], [], []
    for t in range(T):
        td = data[:, t].clone()
        reset = td["is_init"].unsqueeze(-1)
        if t > 0 or h0 is None:
            h, c = torch.where(reset, 0.0, h), torch.where(reset, 0.0, c)
        td["recurrent_state_h"], td["recurrent_state_c"] = h, c
        stored_h.append(h)
        stored_c.append(c)
        out = net(td)
        values.append(out["action_value"])
        h, c = out["next", "recurrent_state_h"], out["next", "recurrent_state_c"]
    stored = data.clone()
    stored["recurrent_state_h"] = torch.stack(stored_h, 1)
    stored["recurrent_state_c"] = torch.stack(stored_c, 1)
    return stored, torch.stack(values, 1)


def test_structure_and_keys():
    net = _net()
    assert isinstance(net, TensorDictSequential)
    assert isinstance(net.lstm_module, LSTMModule)
    assert net.lstm_module.lstm.hidden_size == H and net.lstm_module.lstm.input_size == 12 + A + 1
    assert set(net.in_keys) == {"observation", "prev_action", "prev_reward", "recurrent_state_h", "recurrent_state_c", "is_init"}
    assert "action_value" in net.out_keys and ("next", "recurrent_state_h") in net.out_keys
    primer = net.make_tensordict_primer()
    assert set(primer.primers.keys()) == {"recurrent_state_h", "recurrent_state_c"}
    assert primer.primers["recurrent_state_h"].shape == (1, H)
    assert isinstance(net.dueling_head, DuelingHead)
    # TensorDictSequential rebuilds the class when selecting a subsequence
    sub = net.select_subsequence(out_keys=["q_core_input"])
    assert isinstance(sub, RecurrentQNetwork) and sub.lstm_module is None


def test_recurrent_mode_equals_stepping():
    net = _net()
    data = _sequences()
    with torch.no_grad():
        stored, stepped = _step_through(net, data)
        with set_recurrent_mode(True):
            seq = net(stored.clone())["action_value"]
    assert seq.shape == (3, 9, A)
    torch.testing.assert_close(seq, stepped, rtol=1e-5, atol=1e-6)


def test_starts_from_the_stored_state_at_t0_and_at_is_init():
    net = _net()
    data = _sequences(B=1, T=8, init_at=((0, 4),))  # t=0 is not a reset: a window cut mid-episode
    g = torch.Generator().manual_seed(2)
    data["recurrent_state_h"] = torch.randn(1, 8, 1, H, generator=g)
    data["recurrent_state_c"] = torch.randn(1, 8, 1, H, generator=g)
    lstm = net.lstm_module.lstm
    with torch.no_grad(), set_recurrent_mode(True):
        out = net(data.clone())
        x = out["q_core_input"]
        head = net.dueling_head

        def run(t0, t1, h, c):  # raw nn.LSTM from a given state
            y, _ = lstm(x[:, t0:t1], (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()))
            return head(y)

        s_h, s_c = data["recurrent_state_h"], data["recurrent_state_c"]
        first = run(0, 4, s_h[:, 0], s_c[:, 0])
        restart = run(4, 8, s_h[:, 4], s_c[:, 4])  # the state stored at the is_init step
        carried = run(0, 8, s_h[:, 0], s_c[:, 0])[:, 4:]  # what carrying the state through would give
    torch.testing.assert_close(out["action_value"][:, :4], first, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["action_value"][:, 4:], restart, rtol=1e-5, atol=1e-6)
    assert (out["action_value"][:, 4:] - carried).abs().max() > 1e-3
    # stepping (collector mode) would instead zero the state at is_init
    zero_restart = run(4, 8, torch.zeros(1, 1, H), torch.zeros(1, 1, H))
    assert (out["action_value"][:, 4:] - zero_restart).abs().max() > 1e-3


def test_gradient_reaches_every_parameter():
    net = _net()
    stored, _ = _step_through(net, _sequences())
    with set_recurrent_mode(True):
        out = net(stored.clone())
    out["action_value"].square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dueling_identity():
    torch.manual_seed(0)
    head = DuelingHead(7, 4, hidden=5)
    x = torch.randn(2, 3, 7)
    q = head(x)
    v, adv = head.streams(x)
    assert q.shape == (2, 3, 4) and v.shape == (2, 3, 1)
    torch.testing.assert_close((q - v).mean(-1), torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(q - v, adv - adv.mean(-1, keepdim=True))
    # adding a constant to A changes nothing
    with torch.no_grad():
        head.advantage_stream[-1].bias += 3.0
    torch.testing.assert_close(head(x), q)
    assert isinstance(DuelingHead(7, 4, hidden=0).value_stream, torch.nn.Linear)


def test_feedforward_variant():
    net = _net(feedforward=True)
    assert net.lstm_module is None and net.feedforward and not _net().feedforward
    assert not any(isinstance(m, LSTMModule) for m in net.modules())
    assert not any("recurrent_state" in str(k) for k in net.in_keys + net.out_keys)
    primer = net.make_tensordict_primer()
    assert isinstance(primer, Compose) and len(primer) == 0
    data = _sequences()
    out = net(data.clone())
    assert out["action_value"].shape == (3, 9, A) and out["q_core_output"].shape == (3, 9, H)
    # no memory: each step depends only on its own inputs
    torch.testing.assert_close(net(data[:, 3].clone())["action_value"], out["action_value"][:, 3])
    linear = [m for m in net.module[2].modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 1 and linear[0].in_features == 12 + A + 1 and linear[0].out_features == H


def test_atari_torso_shapes():
    torso = AtariTorso()
    x = torch.rand(2, 3, 4, 84, 84)
    y = torso(x)
    assert y.shape == (2, 3, 512) and (y >= 0).all()
    torch.testing.assert_close(torso(x[1, 2]), y[1, 2], rtol=1e-5, atol=1e-5)
    assert torso.linear[0].in_features == 64 * 7 * 7
    convs = [m for m in torso.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    u8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(torso(u8), torso(u8.float() / 255))
    with pytest.raises(ValueError, match="expected frames"):
        torso(torch.rand(2, 3, 84, 84))


def test_minatar_torso_is_young_and_tian_network():
    torso = MinAtarTorso(4)
    conv, linear = torso.convs[0], torso.linear[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (4, 16, (3, 3), (1, 1))
    assert (linear.in_features, linear.out_features) == (16 * 8 * 8, 128)
    x = torch.rand(2, 3, 4, 10, 10) > 0.7  # MinAtar's boolean channels
    y = torso(x)
    assert y.shape == (2, 3, 128) and (y >= 0).all()
    manual = torch.relu(linear(torch.relu(conv(x[1, 2].float()[None])).flatten(1)))[0]
    torch.testing.assert_close(y[1, 2], manual)
    with pytest.raises(ValueError, match=r"expected frames \[\*, 4, 10, 10\]"):
        torso(torch.rand(2, 10, 10, 4))


@pytest.mark.parametrize("encoder, shape, embedding", [("minatar", (6, 10, 10), 128), ("atari", (4, 84, 84), 512)])
def test_image_network_in_recurrent_mode(encoder, shape, embedding):
    torch.manual_seed(0)
    net = make_recurrent_q_network(shape, 3, encoder=encoder, lstm_hidden=16, head_hidden=8)
    data = TensorDict(
        observation=torch.rand(2, 3, *shape),
        prev_action=torch.zeros(2, 3, 3),
        prev_reward=torch.zeros(2, 3, 1),
        is_init=torch.zeros(2, 3, 1, dtype=torch.bool),
        batch_size=[2, 3],
    )
    with set_recurrent_mode(True):
        out = net(data)
    assert out["action_value"].shape == (2, 3, 3) and out["q_embedding"].shape == (2, 3, embedding)
    assert isinstance(net.encoder, MinAtarTorso if encoder == "minatar" else AtariTorso)
    with pytest.raises(ValueError, match=f"encoder='{encoder}' needs obs_shape"):
        make_recurrent_q_network((4,), 2, encoder=encoder)
    with pytest.raises(ValueError, match="'mlp', 'atari' or 'minatar'"):
        make_recurrent_q_network((4,), 2, encoder="conv")


@pytest.mark.parametrize("feedforward", [False, True])
def test_in_a_collector_then_replayed_in_recurrent_mode(feedforward):
    torch.manual_seed(0)
    net = make_recurrent_q_network((4,), 2, mlp_hidden=(12,), lstm_hidden=H, head_hidden=8, feedforward=feedforward)
    env = make_env("CartPole-v1", num_envs=4).append_transform(
        Compose(InitTracker(), PreviousActionReward(), net.make_tensordict_primer())
    )
    env.set_seed(0)
    policy = TensorDictSequential(net, QValueModule(spec=env.action_spec_unbatched))  # a batched spec fails its shape check
    collector = Collector(env, policy, frames_per_batch=240, total_frames=240)
    data = next(iter(collector))
    collector.shutdown()
    assert data.batch_size == (4, 60)
    assert data["next", "done"].any()  # episodes restart inside the batch (CartPole, greedy untrained policy)
    if not feedforward:
        # the collector stored the carried state, zeros at resets
        h = data["recurrent_state_h"]
        assert h.shape == (4, 60, 1, H)
        assert (h[data["is_init"].squeeze(-1)] == 0).all()
        torch.testing.assert_close(h[:, 1:][~data["is_init"][:, 1:].squeeze(-1)], data["next", "recurrent_state_h"][:, :-1][~data["is_init"][:, 1:].squeeze(-1)])
    acted = data["action_value"].clone()
    with torch.no_grad(), set_recurrent_mode(True):
        replay = net(data.exclude("action_value", "q_core_output", "q_embedding", "q_core_input"))
    torch.testing.assert_close(replay["action_value"], acted, rtol=1e-5, atol=1e-6)


def test_apex_epsilons_formula():
    from latentrl.modules.q_networks import apex_epsilons

    eps = apex_epsilons(8)
    expected = [0.4 ** (1 + 7 * i / 7) for i in range(8)]
    torch.testing.assert_close(eps, torch.tensor(expected, dtype=torch.float32))
    assert apex_epsilons(1).tolist() == [pytest.approx(0.4)]
    with pytest.raises(ValueError, match="num_actors"):
        apex_epsilons(0)


def test_per_env_epsilon_greedy():
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from latentrl.modules.q_networks import PerEnvEpsilonGreedy

    torch.manual_seed(0)
    module = PerEnvEpsilonGreedy()
    q = torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(20000, 4)
    eps = torch.cat([torch.zeros(10000), torch.ones(10000)])
    a = module(q, eps).argmax(-1)
    assert (a[:10000] == 1).all()  # eps = 0: greedy
    counts = torch.bincount(a[10000:], minlength=4).float()
    assert ((counts - 2500).abs() < 200).all(), counts  # eps = 1: uniform over the 4 actions
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert (module(q, eps).argmax(-1) == 1).all()  # evaluation: greedy whatever eps


def test_recomputed_keys_leave_the_next_recurrent_state_to_the_replay():
    from latentrl.modules.q_networks import make_recurrent_q_network

    net = make_recurrent_q_network((2,), 2, lstm_hidden=4, head_hidden=4)
    assert net.recomputed_keys == ["q_embedding", "q_core_input", "q_core_output", "action_value"]
    assert ("next", "recurrent_state_h") in net.out_keys
