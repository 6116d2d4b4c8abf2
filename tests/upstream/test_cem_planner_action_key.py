"""TorchRL's CEMPlanner only plans through envs whose action key is ``"action"``.

``torchrl.modules.planners.CEMPlanner`` (torchrl 0.14.1) takes an
``action_key`` and writes its *final* plan there (``MPCPlannerBase``'s
``out_keys``), but the planning itself ignores it:

* ``cem.py:236``: ``_PrecomputedActionsSequentialSetter.__call__`` writes
  every candidate action to ``tensordict.set("action", ...)``, hard-coded. An
  env (or ``ModelBasedEnvBase``) reading its action from ``"my_action"`` or
  ``("agent", "act")`` never sees the candidates: it fails with ``KeyError`` or,
  if the start tensordict still holds an action under the env's key (the
  previous step's), simulates *that* action for every candidate, so all
  candidates score the same and the "plan" is noise.
* before that, ``cem.py:143-161`` and ``cem.py:196`` use ``env.action_spec`` as a
  leaf spec (``.shape``, ``.project(tensor)``); for an env whose single action
  key is not ``"action"``, ``EnvBase.action_spec`` returns the whole
  ``Composite`` (``envs/common.py:1430``, ``if ... self.action_keys[0] != "action":
  return action_spec``), so planning stops at ``cem.py:196`` with
  ``AttributeError: 'Tensor' object has no attribute 'get'``.

Expected (PlaNet's CEM, Hafner et al. 2019, Algorithm 2): every candidate
sequence is rolled out in the model and scored, whatever the action is called.
Ours: ``latentrl.modules.planners.cem_plan`` takes ``transition(state, action)``
and ``reward(state)`` callables and returns the action as a tensor; the keyed
``CEMPlanner`` writes it under any ``action_key``.
"""
import pytest
import torch
from fakes import Fn
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase
from torchrl.modules.planners import CEMPlanner as TorchRLCEMPlanner

from latentrl.modules.planners import CEMPlanner, cem_plan

TARGET = 0.5  # one step, x' = x + a from x = 0, reward -(x' - 0.5)^2: the best action is 0.5


class LineEnv(EnvBase):
    """A stateless (batch-unlocked) deterministic model: ``x' = x + a``, ``r = -(x' - 0.5)^2``."""

    def __init__(self, action_key="action"):
        super().__init__(batch_size=())
        self._batch_locked = False  # MPC planners need any batch size
        self.observation_spec = Composite(x=Unbounded(shape=(1,)))
        self.full_action_spec = Composite({action_key: Bounded(-1.0, 1.0, shape=(1,))})
        self.reward_spec = Unbounded(shape=(1,))
        self.seen_actions = []

    def _reset(self, td=None, **kwargs):
        bs = td.batch_size if td is not None else torch.Size([])
        return TensorDict({"x": torch.zeros(*bs, 1)}, bs)

    def _step(self, td):
        a = td[self.action_key]  # KeyError when the action is not under the env's key
        self.seen_actions.append(a.clone())
        x = td["x"] + a
        return TensorDict({"x": x, "reward": -(x - TARGET).pow(2)}, td.batch_size)

    def _set_seed(self, seed):
        return None


class LeafActionSpecEnv(LineEnv):
    """LineEnv whose ``action_spec`` is the leaf spec whatever its key (gets past cem.py:196)."""

    @property
    def action_spec(self):
        return self.full_action_spec[self.action_key]

    @action_spec.setter
    def action_spec(self, value):
        EnvBase.action_spec.fset(self, value)


def plan(env, start):
    torch.manual_seed(0)
    planner = TorchRLCEMPlanner(env, planning_horizon=1, optim_steps=5, num_candidates=64, top_k=8,
                                action_key=env.action_key)
    return planner(start)


def test_torchrl_cem_plans_with_action_key_action():
    env = LineEnv("action")
    out = plan(env, env.reset())
    assert abs(out["action"].item() - TARGET) < 0.05
    assert env.seen_actions[0].shape == (64, 1) and env.seen_actions[0].unique().numel() > 10  # distinct candidates (some clipped to ±1)


@pytest.mark.parametrize("key", ["my_action", ("agent", "act")])
def test_torchrl_cem_action_spec_is_composite_for_other_keys(key):
    env = LineEnv(key)
    assert isinstance(env.action_spec, Composite)  # what cem.py reads as a leaf spec
    with pytest.raises(AttributeError, match="'Tensor' object has no attribute 'get'"):
        plan(env, env.reset())  # cem.py:196, env.action_spec.project(actions)


@pytest.mark.parametrize("key", ["my_action", ("agent", "act")])
def test_torchrl_cem_writes_candidates_to_action(key):
    env = LeafActionSpecEnv(key)
    # the candidates go to "action" (cem.py:236); the model finds nothing under its key
    with pytest.raises(KeyError, match="not found"):
        plan(env, env.reset())
    assert env.seen_actions == []
    # with a stale action under the env's key (e.g. the previous step's), every
    # candidate is simulated with that action: no signal, the plan is noise
    start = env.reset().set(key, torch.zeros(1))
    out = plan(env, start)
    seen = env.seen_actions[0]
    assert seen.shape == (64, 1) and torch.equal(seen, torch.zeros(64, 1))
    assert abs(out.get(key).item() - TARGET) > 0.3  # the final plan is written under `key`, but is wrong
    assert "action" not in out.keys(True)


@pytest.mark.parametrize("key", ["action", "my_action", ("agent", "act")])
def test_ours_plans_and_caller_writes_any_key(key):
    env = LineEnv(key)
    transition = lambda x, a: x + a  # noqa: E731  (the same model as LineEnv, as tensors)
    reward = lambda x: -(x - TARGET).pow(2)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    a = cem_plan(torch.zeros(1, 1), transition, reward, 1, horizon=1, iterations=5, candidates=64, top_k=8,
                 generator=g)
    assert isinstance(a, torch.Tensor) and a.shape == (1, 1) and abs(a.item() - TARGET) < 0.05
    torch.manual_seed(0)
    model = TensorDictModule(Fn(transition), in_keys=["x", key], out_keys=[("next", "x")])
    score = TensorDictModule(Fn(reward), in_keys=["x"], out_keys=["predicted_reward"])
    planner = CEMPlanner(model, score, 1, state_keys=("x",), action_key=key, horizon=1, iterations=5,
                         candidates=64, top_k=8, exploration_noise=0.0)
    a = planner(TensorDict({"x": torch.zeros(1, 1)}, [1])).get(key)
    assert abs(a.item() - TARGET) < 0.05
    td = env.reset().set(key, a[0])
    out = env.step(td)
    torch.testing.assert_close(out["next", "x"], torch.tensor([TARGET]), atol=0.05, rtol=0)
    assert torch.equal(env.seen_actions[-1], a[0])
