"""R2D2 sequence replay: layout of the cut sequences, stored state, priorities, importance weights."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from latentrl.collectors.sequence_replay import SequenceCutter, SequenceReplayBuffer
from latentrl.objectives.functional import sequence_priority

# burn_in=2, seq_len=4, overlap=2: L=6, stride=2 (the module docstring's example)
SMALL = {"seq_len": 4, "overlap": 2, "burn_in": 2}


def obs_value(env: int, t: int) -> float:
    """The synthetic observation of env ``env`` at global time ``t`` (never 0: padding is 0)."""
    return 1000.0 * env + t + 1


def make_batch(dones, t_offset: int = 0, first_is_init: bool | None = None) -> TensorDict:
    """A collector-like batch ``[E, T]``: every entry encodes (env, global time).

    ``dones[e][t]`` ends an episode at step t; the following step has ``is_init``.
    The next observation of a step is its observation + 0.5 (so it is told apart
    from the following step's observation); the actor's state is the observation
    value (h) and its negative (c).
    """
    dones = torch.as_tensor(dones, dtype=torch.bool)
    E, T = dones.shape
    g = 1000.0 * torch.arange(E)[:, None] + torch.arange(T) + t_offset + 1
    is_init = torch.zeros(E, T, dtype=torch.bool)
    is_init[:, 1:] = dones[:, :-1]
    is_init[:, 0] = (t_offset == 0) if first_is_init is None else first_is_init
    h = g[..., None, None].expand(E, T, 1, 3).clone()
    return TensorDict(
        {
            "observation": g[..., None].expand(E, T, 2).clone(),
            "is_init": is_init[..., None],
            "action": torch.ones(E, T, 2, dtype=torch.long),
            "recurrent_state_h": h,
            "recurrent_state_c": -h,
            "next": {
                "observation": (g + 0.5)[..., None].expand(E, T, 2).clone(),
                "reward": g[..., None].clone(),
                "done": dones[..., None].clone(),
                "terminated": dones[..., None].clone(),
                "truncated": torch.zeros(E, T, 1, dtype=torch.bool),
                "is_init": torch.zeros(E, T, 1, dtype=torch.bool),
                "recurrent_state_h": h + 0.5,
                "recurrent_state_c": -h - 0.5,
            },
        },
        [E, T],
        names=[None, "time"],
    )


def episode_dones(lengths, T=None):
    """One env's done flags for consecutive episodes of the given lengths (the last one may run on)."""
    flags = []
    for n in lengths:
        flags += [0] * (n - 1) + [1]
    if T is not None:
        flags = (flags + [0] * T)[:T]
    return flags


def sort_sequences(seqs: TensorDict) -> TensorDict:
    """Order sequences by (env, global time of the first training step) for comparisons."""
    key = seqs["env_index"][:, 0] * 10**6 + seqs["observation"][:, :, 0].masked_fill(~seqs["mask"], 1e9).amin(1)
    return seqs[key.argsort()]


def assert_same_sequences(a: TensorDict, b: TensorDict) -> None:
    assert a.shape == b.shape
    a, b = sort_sequences(a), sort_sequences(b)
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    for key in a.keys(True, True):
        assert torch.equal(a[key], b[key]), key


def save_load(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ----------------------------------------------------------------- layout
def test_layout_of_one_episode_by_hand():
    seqs = SequenceCutter(**SMALL)(make_batch([episode_dones([7])]))
    # t0 = 0, 2, 4 (t0 = 6 is not emitted: 6 + overlap >= 7)
    assert seqs.shape == (3, 6)
    T = True
    F = False
    assert seqs["episode_step"].tolist() == [[-1, -1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, -1]]
    assert seqs["observation"][..., 0].tolist() == [
        [0, 0, 1, 2, 3, 4],  # left padding at the episode start
        [1, 2, 3, 4, 5, 6],  # overlaps the first sequence's training part by 2 steps
        [3, 4, 5, 6, 7, 7.5],  # 7.5: the final step's next observation at the bootstrap position
    ]
    assert seqs["valid"].tolist() == [[F, F, T, T, T, T], [T, T, T, T, T, T], [T, T, T, T, T, F]]
    assert seqs["mask"].tolist() == [[F, F, T, T, T, T], [F, F, T, T, T, T], [F, F, T, T, T, F]]
    assert seqs["bootstrap"].tolist() == [[F] * 6, [F] * 6, [F, F, F, F, F, T]]
    assert seqs["is_init"][..., 0].tolist() == [[F, F, T, F, F, F], [T, F, F, F, F, F], [T, F, F, F, F, F]]
    assert seqs["env_index"].eq(0).all()
    # padding: zeros of the right dtype in every entry
    for key in seqs.keys(True, True):
        if key in ("episode_step", "env_index"):
            continue
        value = seqs[key]
        assert value.dtype == make_batch([[0]]).get(key, value).dtype
        if key != "is_init":
            assert not value[0, :2].any(), key
    # bootstrap position: next-state entries of the final step, transition entries zero
    boot = seqs[2, 5]
    assert boot["recurrent_state_h"].eq(7.5).all() and boot["recurrent_state_c"].eq(-7.5).all()
    assert boot["next", "reward"].eq(0).all() and not boot["next", "done"].any()
    assert boot["next", "observation"].eq(0).all() and boot["action"].eq(0).all()
    assert not boot["is_init"].any()
    # rewards and done flags travel with their steps
    assert seqs["next", "reward"][2, :, 0].tolist() == [3, 4, 5, 6, 7, 0]
    assert seqs["next", "done"][2, :, 0].tolist() == [F, F, F, F, T, F]


@pytest.mark.parametrize(
    "length, starts, boot_at",
    [
        (1, [0], (0, 3)),  # t0 = 0 is always emitted
        (3, [0], (0, 5)),
        (4, [0], None),  # the episode ends exactly at the sequence end: no room for the bootstrap position
        (5, [0, 2], (1, 5)),
        (6, [0, 2], None),  # t0 = 4 would hold no new training step (4 + 2 >= 6)
        (7, [0, 2, 4], (2, 5)),
        (8, [0, 2, 4], None),
    ],
)
def test_sequence_starts_and_right_padding(length, starts, boot_at):
    seqs = SequenceCutter(**SMALL)(make_batch([episode_dones([length])]))
    assert seqs["episode_step"][:, 2].tolist() == starts  # training start t0 at position burn_in
    for i, t0 in enumerate(starts):
        end = min(t0 + 4, length)  # right padding after the final step
        expected = [t0 - 2 + j if 0 <= t0 - 2 + j < end else -1 for j in range(6)]
        assert seqs["episode_step"][i].tolist() == expected
    assert seqs["bootstrap"].sum().item() == (boot_at is not None)
    if boot_at is not None:
        assert seqs["bootstrap"][boot_at]
        assert seqs["observation"][boot_at][0].item() == length + 0.5
    # every step is in the training part of some sequence
    covered = seqs["episode_step"][seqs["mask"]].unique().tolist()
    assert covered == list(range(length))


def test_emitted_as_soon_as_complete():
    """One step per call: t0=0 needs steps 0..3, t0=2 steps 2..5, t0=4 the episode end (step 6)."""
    cutter = SequenceCutter(**SMALL)
    dones = episode_dones([7])
    emitted = {}
    for t in range(7):
        seqs = cutter(make_batch([[dones[t]]], t_offset=t))
        for t0 in seqs["episode_step"][:, 2].tolist():
            emitted[t0] = t
    assert emitted == {0: 3, 2: 5, 4: 6}


def test_no_sequence_crosses_an_episode_boundary():
    lengths = [[3, 9, 2, 6], [1, 1, 13, 5]]
    batch = make_batch([episode_dones(ls) for ls in lengths])
    seqs = SequenceCutter(seq_len=5, overlap=2, burn_in=3)(batch)
    # episode id of every step, from the done flags
    episode = torch.cat([torch.zeros(2, 1, dtype=torch.long), batch["next", "done"][:, :-1, 0].cumsum(1)], 1)
    assert seqs.shape[0] > 0
    for seq in seqs.unbind(0):
        env = seq["env_index"][0].item()
        t = (seq["observation"][seq["valid"], 0] - 1000 * env - 1).long()
        assert episode[env, t].unique().numel() == 1  # one episode only
        assert torch.equal(t, torch.arange(t[0], t[0] + t.numel()))  # consecutive steps
        assert not seq["observation"][~seq["valid"] & ~seq["bootstrap"]].any()
    # per episode: the number of sequences is 1 + #{t0 = k*stride > 0 : t0 + overlap < n}
    expected = sum(1 + sum(1 for t0 in range(3, n, 3) if t0 + 2 < n) for ls in lengths for n in ls)
    assert seqs.shape[0] == expected


def test_is_init_without_done_ends_the_episode():
    """A reset the done flags do not show (``is_init`` on the next step) still closes the episode."""
    batch = make_batch([[0, 0, 0, 0, 0]])
    batch["is_init"][0, 3] = True
    seqs = SequenceCutter(**SMALL)(batch)
    assert seqs["episode_step"][:, 2].tolist() == [0]  # episode 0..2; the second one (3, 4) is still running
    assert seqs["observation"][0, :, 0].tolist() == [0, 0, 1, 2, 3, 3.5]


def test_done_without_is_init_starts_a_new_episode():
    """A step after ``("next", "done")`` starts an episode even if ``is_init`` is not set there."""
    batch = make_batch([episode_dones([3, 3])])
    batch["is_init"][0, 3] = False
    seqs = SequenceCutter(**SMALL)(batch)
    assert seqs["episode_step"][:, 2].tolist() == [0, 0]
    assert seqs["observation"][:, 2, 0].tolist() == [1, 4]


# --------------------------------------------------------- across calls
def random_dones(num_envs: int, T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(num_envs, T, generator=g) < 0.08


def test_split_calls_equal_one_call():
    dones = random_dones(3, 60, seed=1)
    full = make_batch(dones)
    one = SequenceCutter(seq_len=6, overlap=3, burn_in=4)(full)
    cutter = SequenceCutter(seq_len=6, overlap=3, burn_in=4)
    parts = [cutter(full[:, a:b]) for a, b in [(0, 7), (7, 8), (8, 25), (25, 60)]]
    assert sum(p.shape[0] for p in parts) > 10
    assert_same_sequences(one, torch.cat(parts, 0))
    # sequences that span calls exist (first training step in one call, last in a later one)
    assert ((one["observation"][:, 4, 0] % 1000 <= 8) & (one["observation"][:, -1, 0] % 1000 > 8)).any()


def test_pending_memory_is_bounded():
    cutter = SequenceCutter(seq_len=6, overlap=3, burn_in=4)
    for k in range(30):  # one episode of 300 steps, 10 per call
        cutter(make_batch([[0] * 10], t_offset=10 * k))
        assert cutter._kept.shape[0] <= 4 + 6 - 1  # burn_in + seq_len - 1 at most


def test_state_dict_resume_continues_exactly():
    dones = random_dones(2, 50, seed=2)
    full = make_batch(dones)
    kwargs = {"seq_len": 5, "overlap": 1, "burn_in": 3}
    original = SequenceCutter(**kwargs)
    first = original(full[:, :23])
    resumed = SequenceCutter(**kwargs)
    resumed.load_state_dict(save_load(original.state_dict()))
    a, b = original(full[:, 23:]), resumed(full[:, 23:])
    assert a.shape[0] > 0
    assert_same_sequences(a, b)
    assert_same_sequences(torch.cat([first, b]), SequenceCutter(**kwargs)(full))
    with pytest.raises(ValueError, match="layout"):
        SequenceCutter(seq_len=5, overlap=2, burn_in=3).load_state_dict(original.state_dict())


# --------------------------------------------------------- stored state
def test_stored_state_is_the_actors_state_at_that_step():
    seqs = SequenceCutter(seq_len=5, overlap=2, burn_in=3)(make_batch(random_dones(2, 40, seed=3)))
    valid = seqs["valid"]
    obs = seqs["observation"][..., 0]  # the synthetic actor state at step t is the observation value
    assert torch.equal(seqs["recurrent_state_h"][valid], obs[valid][:, None, None].expand(-1, 1, 3))
    assert torch.equal(seqs["recurrent_state_c"][valid], -obs[valid][:, None, None].expand(-1, 1, 3))


def test_zero_state_option_zeroes_only_the_first_valid_state():
    batch = make_batch(random_dones(2, 40, seed=3))
    stored = SequenceCutter(seq_len=5, overlap=2, burn_in=3)(batch)
    zero = SequenceCutter(seq_len=5, overlap=2, burn_in=3, stored_state=False)(batch)
    first = zero["is_init"][..., 0]
    assert first.sum(1).eq(1).all()
    for key in ("recurrent_state_h", "recurrent_state_c"):
        assert not zero[key][first].any()
        assert stored[key][first].abs().min() > 0  # the stored state there is not zero
        assert torch.equal(zero[key][~first], stored[key][~first])
    assert torch.equal(zero["observation"], stored["observation"])


# --------------------------------------------------------- priorities
def test_sequence_priority_by_hand():
    td_error = torch.tensor([[1.0, -3.0, 2.0, 100.0], [5.0, 5.0, 5.0, 5.0], [-4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [False, False, False, False], [True, True, False, False]])
    # row 0: max 3, mean 2 -> 0.9*3 + 0.1*2 = 2.9 (the masked 100 is ignored)
    # row 1: no masked step -> 0;  row 2: max 4, mean 2 -> 0.9*4 + 0.1*2 = 3.8
    torch.testing.assert_close(sequence_priority(td_error, mask), torch.tensor([2.9, 0.0, 3.8]))
    # eta = 0.5: row 0 -> 2.5; trailing singleton accepted
    torch.testing.assert_close(sequence_priority(td_error[:1, :, None], mask[:1], eta=0.5), torch.tensor([2.5]))
    with pytest.raises(ValueError, match="eta"):
        sequence_priority(td_error, mask, eta=1.5)
    with pytest.raises(ValueError, match="same shape"):
        sequence_priority(td_error, mask[:, :3])


def make_buffer(**kwargs) -> SequenceReplayBuffer:
    kwargs = {"capacity": 16, **SMALL, "batch_size": 4, **kwargs}
    return SequenceReplayBuffer(**kwargs)


def four_sequences() -> TensorDict:
    """Four whole episodes of 3 steps in two envs: one sequence each."""
    return make_batch([episode_dones([3, 3]), episode_dones([3, 3])])


def test_importance_weights_follow_the_per_formula():
    alpha, beta, eps = 0.9, 0.6, 1e-6
    rb = make_buffer(alpha=alpha, beta=beta, eps=eps)
    assert rb.extend(four_sequences()) == 4
    raw = torch.tensor([0.01, 1.0, 2.0, 3.0])
    written = rb.update_priorities(torch.arange(4), raw)
    torch.testing.assert_close(written, raw)
    # PER by hand (Schaul et al. 2016, Sec. 3.4): P(i) = p_i^a / sum p^a, w_i = (N P(i))^-b / max_j w_j
    p = (raw.double() + eps) ** alpha
    P = p / p.sum()
    w = (4 * P) ** -beta
    expected = w / w.max()  # the max over the stored sequences (here sequence 0, the least likely)
    np.random.seed(0)
    counts = torch.zeros(4)
    for _ in range(50):
        sample = rb.sample(8)  # a minibatch normalization would put a 1 in every batch
        index = sample["index"][:, 0]
        assert torch.equal(sample["index"], index[:, None].expand(8, 6))
        torch.testing.assert_close(sample["_weight"][:, 0].double(), expected[index], rtol=1e-5, atol=1e-6)
        assert torch.equal(sample["_weight"], sample["priority_weight"])
        counts += torch.bincount(index, minlength=4)
    assert expected[1:].max() < 0.2  # weights far from 1: the check above can fail
    torch.testing.assert_close(counts / counts.sum(), P.float(), atol=0.04, rtol=0)


def test_new_sequences_get_the_max_priority_seen():
    rb = make_buffer(alpha=1.0, eps=1e-6)
    rb.extend(four_sequences())
    tree = rb.sampler._sum_tree
    assert [tree[i] for i in range(4)] == pytest.approx([1.0 + 1e-6] * 4)  # nothing seen yet: 1
    rb.update_priorities(torch.arange(4), torch.tensor([0.5, 3.0, 0.2, 0.1]))
    rb.update_priorities(torch.tensor([1]), torch.tensor([0.3]))  # 3.0 stays the max seen
    rb.extend(make_batch([episode_dones([3]), episode_dones([3])], t_offset=6))
    assert len(rb) == 6
    assert [tree[4], tree[5]] == pytest.approx([3.0 + 1e-6] * 2)
    assert tree[1] == pytest.approx(0.3 + 1e-6)


def test_new_sequences_get_the_learners_max_not_torchrls_floor_of_one():
    # R2D2's rescaled TD errors are far below 1: new data must not jump to 1.0
    rb = make_buffer(alpha=1.0, eps=1e-6)
    rb.extend(four_sequences())
    rb.update_priorities(torch.arange(4), torch.tensor([0.05, 0.02, 0.01, 0.03]))
    rb.extend(make_batch([episode_dones([3]), episode_dones([3])], t_offset=6))
    tree = rb.sampler._sum_tree
    assert [tree[4], tree[5]] == pytest.approx([0.05 + 1e-6] * 2)
    restored = make_buffer(alpha=1.0, eps=1e-6)
    restored.load_state_dict(rb.state_dict())
    assert restored.max_priority == pytest.approx(0.05)
    # or the actor-side initial priorities of R2D2 / Ape-X
    seqs = rb.cut(make_batch([episode_dones([3]), episode_dones([3])], t_offset=10))
    assert rb.add(seqs, torch.tensor([0.7, 0.002])) == 2
    assert [tree[6], tree[7]] == pytest.approx([0.7 + 1e-6, 0.002 + 1e-6])
    seqs = rb.cut(make_batch([episode_dones([3]), episode_dones([3])], t_offset=14))
    for bad, match in ((torch.ones(3), "one value per sequence"), (torch.tensor([0.1, -1.0]), "finite and >= 0"),
                       (torch.tensor([0.1, float("nan")]), "finite and >= 0")):
        with pytest.raises(ValueError, match=match):
            rb.add(seqs, bad)
        assert len(rb) == 8  # nothing stored
    with pytest.raises(ValueError, match="one entry per sampled sequence"):
        rb.update_priorities(torch.arange(2), torch.ones(3))


def test_the_loss_priority_is_stored_as_given():
    # one-way: the loss computes eta max + (1 - eta) mean over its mask; the buffer stores that number
    from latentrl.objectives.functional import sequence_priority

    rb = make_buffer(alpha=1.0, eps=1e-6)
    rb.extend(four_sequences())
    sample = rb.sample(4)
    td_error = torch.arange(24.0).reshape(4, 6)
    priority = sequence_priority(td_error, sample["mask"], eta=0.9)
    rb.update_priorities(sample["index"], priority)
    # each sequence: positions 2, 3, 4 are its training steps (episode of 3)
    expected = 0.9 * td_error[:, 4] + 0.1 * td_error[:, 2:5].mean(1)
    for i, idx in enumerate(sample["index"][:, 0].tolist()):
        if (sample["index"][:, 0] == idx).nonzero()[-1].item() == i:  # the last write wins
            assert rb.sampler._sum_tree[idx] == pytest.approx(expected[i].item() + 1e-6, rel=1e-6)


def test_memmap_storage(tmp_path):
    rb = make_buffer(storage="memmap", scratch_dir=tmp_path / "rb")
    mem = make_buffer()
    batch = make_batch(random_dones(2, 30, seed=4))
    assert rb.extend(batch) == mem.extend(batch) > 0
    assert any((tmp_path / "rb").rglob("*.memmap"))
    np.random.seed(1)
    a = rb.sample()
    np.random.seed(1)
    b = mem.sample()
    assert torch.equal(a["observation"], b["observation"]) and torch.equal(a["mask"], b["mask"])
    # resume into a fresh memmap buffer: files under its own scratch_dir, same samples
    restored = make_buffer(storage="memmap", scratch_dir=tmp_path / "restored")
    restored.load_state_dict(save_load(rb.state_dict()))
    assert any((tmp_path / "restored").rglob("*.memmap"))
    np.random.seed(2)
    a = rb.sample()
    np.random.seed(2)
    b = restored.sample()
    assert torch.equal(a["observation"], b["observation"])


def test_buffer_state_dict_resume():
    dones = random_dones(2, 40, seed=5)
    full = make_batch(dones)
    rb = make_buffer()
    rb.extend(full[:, :17])
    sample = rb.sample()
    rb.update_priorities(sample["index"], torch.rand(4))
    restored = make_buffer()
    restored.load_state_dict(save_load(rb.state_dict()))
    assert len(restored) == len(rb)
    assert rb.extend(full[:, 17:]) == restored.extend(full[:, 17:]) > 0
    np.random.seed(3)
    a = rb.sample()
    np.random.seed(3)
    b = restored.sample()
    for key in ("observation", "index", "_weight", "recurrent_state_h", "mask"):
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seq_len": 4, "overlap": 4}, "overlap must be .*0 <= overlap < seq_len"),
        ({"seq_len": 4, "overlap": -1}, "overlap"),
        ({"burn_in": -1}, "burn_in must be an integer >= 0"),
        ({"seq_len": 0, "overlap": 0}, "seq_len must be an integer >= 1"),
    ],
)
def test_bad_layout_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceCutter(**kwargs)
    with pytest.raises(ValueError, match=match):
        SequenceReplayBuffer(8, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"storage": "disk"}, r"storage must be one of \('memory', 'memmap'\)"),
        ({"capacity": 0}, "capacity"),
        ({"alpha": -1.0}, "alpha"),
    ],
)
def test_bad_buffer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceReplayBuffer(**{"capacity": 8, **kwargs})


def test_bad_batches():
    cutter = SequenceCutter(**SMALL)
    batch = make_batch([[0, 0, 1]])
    with pytest.raises(ValueError, match="no time dimension"):
        cutter(batch[0, 0])
    with pytest.raises(ValueError, match="missing the entries.*recurrent_state_c"):
        cutter(batch.exclude("recurrent_state_c"))
    with pytest.raises(ValueError, match=r"missing the entries.*\('next', 'done'\)"):
        cutter(batch.exclude(("next", "done")))
    cutter(batch)
    with pytest.raises(ValueError, match="2 envs but the previous batches had 1"):
        cutter(make_batch([[0], [0]], t_offset=3))


# --------------------------------------------------------- real collector
def test_real_collector_stored_state_and_lstm_replay():
    """Sequences from a TorchRL Collector with an LSTM policy: the stored state is the
    collector's, and TorchRL's LSTMModule in recurrent mode, started from it at
    ``is_init``, reproduces the actor's outputs at every valid position."""
    from tensordict.nn import TensorDictModule, TensorDictSequential
    from torchrl.collectors import Collector
    from torchrl.envs import InitTracker
    from torchrl.modules import LSTMModule, QValueModule, set_recurrent_mode

    from latentrl.envs import make_env

    torch.manual_seed(0)
    env = make_env("CartPole-v1", num_envs=4, seed=0)
    lstm = LSTMModule(input_size=4, hidden_size=8, in_key="observation", out_key="embed")
    env.append_transform(InitTracker())
    env.append_transform(lstm.make_tensordict_primer())
    head = TensorDictModule(torch.nn.Linear(8, 2), ["embed"], ["action_value"])
    policy = TensorDictSequential(lstm, head, QValueModule(action_space="one_hot"))
    collector = Collector(env, policy, frames_per_batch=40, total_frames=320, auto_register_policy_transforms=False)
    kwargs = {"seq_len": 6, "overlap": 3, "burn_in": 4}
    cutter, zero_cutter = SequenceCutter(**kwargs), SequenceCutter(**kwargs, stored_state=False)
    batches, seqs, zero_seqs = [], [], []
    for batch in collector:
        batches.append(batch.clone())
        seqs.append(cutter(batch))
        zero_seqs.append(zero_cutter(batch))
    collector.shutdown()
    full = torch.cat(batches, 1)
    seqs, zero_seqs = torch.cat(seqs), torch.cat(zero_seqs)
    assert seqs.shape[0] > 20 and seqs["bootstrap"].any() and (seqs["episode_step"][:, 0] > 0).any()

    # stored state = the collector's state at that (env, episode, step)
    traj_start = {}
    for env_i in range(4):
        ids = full["collector", "traj_ids"][env_i]
        for t in range(ids.numel()):
            traj_start.setdefault(ids[t].item(), (env_i, t))
    valid = seqs["valid"]
    traj = seqs["collector", "traj_ids"][valid]
    env_t = torch.tensor([traj_start[i] for i in traj.tolist()]) + torch.stack(
        [torch.zeros_like(traj), seqs["episode_step"][valid]], -1
    )
    for key in ("recurrent_state_h", "recurrent_state_c", "observation", "action"):
        assert torch.equal(seqs[key][valid], full[key][env_t[:, 0], env_t[:, 1]]), key
    assert torch.equal(seqs["env_index"][valid], env_t[:, 0])

    # the learner's LSTM from the stored state reproduces the actor's outputs
    def replay(s):
        with set_recurrent_mode(True):
            return lstm(s.select("observation", "is_init", "recurrent_state_h", "recurrent_state_c").clone())["embed"]

    torch.testing.assert_close(replay(seqs)[valid], seqs["embed"][valid], rtol=1e-5, atol=1e-5)
    # ...which the zero-state ablation does not, where a sequence starts mid-episode
    mid = zero_seqs["valid"] & (zero_seqs["episode_step"][:, :1] > 0)
    assert (replay(zero_seqs)[mid] - zero_seqs["embed"][mid]).abs().max() > 1e-3
