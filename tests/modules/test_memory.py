"""MERLIN's memory: reads, least-used writes, the retroactive update traced by hand, resets, keys, errors."""
import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.collectors import Collector
from torchrl.envs import InitTracker

from latentrl.checks import InputError
from latentrl.envs import make_env
from latentrl.modules.memory import (
    MemoryReader,
    MemoryReset,
    MemoryState,
    MemoryWriter,
    memory_read,
    memory_reset,
    memory_write,
)


def _empty(n=4, z=1, batch=()):
    return {"memory": torch.zeros(*batch, n, 2 * z), "usage": torch.zeros(*batch, n), "retro": torch.zeros(*batch, n),
            "write": torch.zeros(*batch, n), "filled": torch.zeros(*batch, 1, dtype=torch.long)}


def test_read_weights_are_a_softmax_of_scaled_cosines_and_sharpen_with_beta():
    memory = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    key = torch.tensor([[3.0, 0.0]])
    cos = torch.tensor([1.0, 0.0, 1 / math.sqrt(2)])  # by hand
    for beta in (0.5, 2.0):
        reads, weights = memory_read(memory, key, torch.tensor([beta]))
        expected = torch.exp(beta * cos) / torch.exp(beta * cos).sum()
        torch.testing.assert_close(weights[0], expected)
        torch.testing.assert_close(reads[0], expected @ memory)
    entropies = []
    for beta in (0.0, 1.0, 5.0, 50.0):
        w = memory_read(memory, key, torch.tensor([beta]))[1][0]
        entropies.append(float(-(w * w.log()).sum()))
    assert entropies[0] == pytest.approx(math.log(3)) and all(a > b for a, b in zip(entropies, entropies[1:]))
    assert memory_read(memory, key, torch.tensor([50.0]))[1][0].argmax() == 0 and entropies[-1] < 0.01
    # batched over envs and heads, differentiable in the content and the keys
    mem = torch.randn(5, 6, 4, requires_grad=True)
    keys = torch.randn(5, 3, 4, requires_grad=True)
    reads, weights = memory_read(mem, keys, torch.ones(5, 3))
    assert reads.shape == (5, 3, 4) and weights.shape == (5, 3, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 3))
    reads.sum().backward()
    assert mem.grad.abs().sum() > 0 and keys.grad.abs().sum() > 0


def test_retroactive_update_matches_a_hand_traced_three_step_episode():
    gamma = 0.5
    state = _empty(n=4, z=1)
    a, b, c = 2.0, 3.0, 5.0
    for z in (a, b, c):
        state = memory_write(state, torch.tensor([z]), gamma)
    # step 1 writes row 0: [a, 0]; v_ret = 0
    # step 2 writes row 1: [b, 0]; v_ret = 0.5 e0, so row 0 gets 0.5 b in its second half
    # step 3 writes row 2: [c, 0]; v_ret = 0.5 (0.5 e0) + 0.5 e1 = (0.25, 0.5, 0, 0)
    expected = torch.tensor([[a, 0.5 * b + 0.25 * c], [b, 0.5 * c], [c, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(state["memory"], expected)
    torch.testing.assert_close(state["retro"], torch.tensor([0.25, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(state["write"], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert int(state["filled"]) == 3


def test_a_full_memory_overwrites_its_least_used_row_and_clears_it():
    state = memory_write(_empty(n=3, z=1), torch.tensor([1.0]), 0.9)
    state = memory_write(state, torch.tensor([2.0]), 0.9)
    state = memory_write(state, torch.tensor([4.0]), 0.9)
    assert int(state["filled"]) == 3
    state["usage"] = torch.tensor([3.0, 1.0, 2.0])  # row 1 is the least used
    before = state["memory"].clone()
    new = memory_write(state, torch.tensor([7.0]), 0.9)
    assert new["write"].tolist() == [0.0, 1.0, 0.0]
    assert new["memory"][1].tolist() == [7.0, 0.0]  # cleared, then written: nothing of the old content is left
    assert new["retro"][1] == 0.0 and new["usage"].tolist() == [3.0, 3.0, 2.0]  # the written row starts at the max usage
    v_ret = 0.9 * state["retro"] + 0.1 * state["write"]
    for row in (0, 2):
        torch.testing.assert_close(new["memory"][row], before[row] + torch.tensor([0.0, float(v_ret[row]) * 7.0]))
    # next time row 2 is the least used: the freshly written row is not overwritten at once
    assert memory_write(new, torch.tensor([1.0]), 0.9)["write"].tolist() == [0.0, 0.0, 1.0]


def test_reset_zeroes_only_the_envs_at_is_init():
    state = _empty(n=3, z=2, batch=(2,))
    for z in torch.randn(2, 2, 2):
        state = memory_write(state, z, 0.9)
    out = memory_reset(state, torch.tensor([[True], [False]]))
    for name, value in out.items():
        assert (value[0] == 0).all(), name
        torch.testing.assert_close(value[1], state[name][1])
    with pytest.raises(InputError, match="`is_init` must be a bool tensor"):
        memory_reset(state, torch.tensor([[1], [0]]))


def _memory_policy(state):
    """Writes the observation's first entry as z, then reads the memory after the write with one head."""
    return TensorDictSequential(
        MemoryReset(state),
        TensorDictModule(lambda obs: obs[..., :1], ["observation"], ["z"]),
        MemoryWriter(state, z_key="z", gamma=0.5),
        MemoryReader(state, 2, 1, query_key="observation", read_key="read", weights_key="read_weights", from_next=True),
        TensorDictModule(lambda obs: torch.nn.functional.one_hot(torch.zeros(obs.shape[:-1], dtype=torch.long), 2),
                         ["observation"], ["action"]),
    )


def test_collectors_carry_the_memory_and_episodes_start_empty():
    state = MemoryState(num_rows=8, z_dim=1)
    env = make_env("pomdp:masked-cartpole", num_envs=2).append_transform(InitTracker())
    env.append_transform(state.make_tensordict_primer())
    env.set_seed(0)
    collector = Collector(env, _memory_policy(state), frames_per_batch=2 * 40, total_frames=2 * 40)
    data = next(iter(collector))
    collector.shutdown()
    filled = data["next", "memory", "filled"].squeeze(-1)  # [2, 40]
    is_init = data["is_init"].squeeze(-1)
    for env_i in range(2):
        count = 0
        for t in range(40):
            count = 1 if is_init[env_i, t] else min(count + 1, 8)
            assert filled[env_i, t] == count, (env_i, t)
    assert is_init[:, 1:].any()  # always pushing left ends episodes inside the batch
    # the rows of an episode's first steps hold the observations written at those steps
    env_i, t0 = 0, 0
    rows = data["next", "memory", "memory"][env_i, t0 + 2][:3, 0]
    torch.testing.assert_close(rows, data["observation"][env_i, t0 : t0 + 3, 0])
    torch.testing.assert_close(data["read_weights"].sum(-1), torch.ones(2, 40, 1))


def test_bad_keys_and_shapes_are_named():
    state = MemoryState(num_rows=4, z_dim=2)
    td = TensorDict({"z": torch.zeros(3, 2), "is_init": torch.zeros(3, 1, dtype=torch.bool)}, [3])
    with pytest.raises(KeyError, match=r"no \('memory', 'memory'\)"):
        MemoryWriter(state, z_key="z")(td)
    state.write(td, {k: torch.zeros(3, *s, dtype=torch.long if k == "filled" else torch.float32)
                     for k, s in state.shapes().items()})
    with pytest.raises(KeyError, match="no 'latent' \\(the `z_key` key"):
        MemoryWriter(state, z_key="latent")(td)
    td["z"] = torch.zeros(3, 3)
    with pytest.raises(InputError, match=r"`z` must be \[\*, 2\]"):
        MemoryWriter(state, z_key="z")(td)
    with pytest.raises(InputError, match=r"\('memory', 'memory'\) must end in \(8, 4\)"):
        MemoryWriter(MemoryState(num_rows=8, z_dim=2), z_key="z")(td)
    with pytest.raises(InputError, match="`strengths` must have shape"):
        memory_read(torch.zeros(4, 2), torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(InputError, match="`keys`.*must match `memory`"):
        memory_read(torch.zeros(4, 2), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(InputError, match="`num_heads` must be an integer >= 1"):
        MemoryReader(state, 4, 0, query_key="q", read_key="r", weights_key="w")
    with pytest.raises(InputError, match="`gamma`"):
        MemoryWriter(state, z_key="z", gamma=1.5)
    with pytest.raises(KeyError, match="no field 'rows'"):
        state.key("rows")
