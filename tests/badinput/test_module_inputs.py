"""Generated bad inputs for modules and buffers: PopArt, R2D2's sequence priority,
the Gumbel-softmax distribution and the episode replay buffer. Each raises a
ValueError naming the argument; none corrupts the state it updates."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentrl.collectors.episode_replay import make_episode_replay
from latentrl.modules.distributions import GumbelSoftmax
from latentrl.modules.popart import PopArt
from latentrl.objectives.functional import sequence_priority

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
not_positive = st.one_of(st.floats(max_value=0.0), st.just(math.nan))


@SETTINGS
@given(name=st.sampled_from(["beta", "epsilon", "num_tasks", "in_features"]), data=st.data())
def test_popart_bad_construction(tried, name, data):
    kwargs = {"in_features": 4, "num_tasks": 2, "beta": 0.1, "epsilon": 1e-4}
    if name == "beta":
        kwargs["beta"] = data.draw(st.one_of(not_positive, st.floats(min_value=1.0 + 1e-6)))
    elif name == "epsilon":
        kwargs["epsilon"] = data.draw(not_positive)
    else:
        kwargs[name] = data.draw(st.one_of(st.integers(max_value=0), st.floats(0.5, 3.5), st.just(True)))
    tried("PopArt")
    with pytest.raises(ValueError, match=f"`{name}`"):
        PopArt(**kwargs)


@SETTINGS
@given(n=st.integers(1, 8), index=st.integers(0, 100), bad=st.sampled_from([math.nan, math.inf, -math.inf, "ids", "int"]))
def test_popart_bad_update_leaves_statistics_unchanged(tried, n, index, bad):
    popart = PopArt(4, num_tasks=2, beta=0.5)
    before = {k: v.clone() for k, v in popart.state_dict().items()}
    targets = torch.randn(n, 1)
    ids = torch.randint(0, 2, (n,))
    if bad == "ids":
        ids[index % n] = 2 + index  # out of range
        name = "task_ids"
    elif bad == "int":
        targets = targets.long()
        name = "targets"
    else:
        targets[index % n, 0] = bad
        name = "targets"
    tried("PopArt")
    with pytest.raises(ValueError, match=f"`{name}`"):
        popart.update(targets, ids)
    assert all(torch.equal(before[k], v) for k, v in popart.state_dict().items())


@SETTINGS
@given(b=st.integers(1, 4), t=st.integers(1, 6), index=st.integers(0, 100),
       bad=st.sampled_from([math.nan, math.inf, "eta_nan", "eta_range", "shape"]))
def test_sequence_priority_bad_input(tried, b, t, index, bad):
    td_error, mask, eta, name = torch.randn(b, t), torch.ones(b, t, dtype=torch.bool), 0.9, "td_error"
    if bad == "eta_nan":
        eta, name = math.nan, "eta"
    elif bad == "eta_range":
        eta, name = 1.0 + (index + 1) / 10, "eta"
    elif bad == "shape":
        mask, name = torch.ones(b, t + 1, dtype=torch.bool), "mask"
    else:
        td_error.view(-1)[index % (b * t)] = bad
    tried("sequence_priority")
    with pytest.raises(ValueError, match=name):
        sequence_priority(td_error, mask, eta)


@SETTINGS
@given(temperature=not_positive, hard=st.booleans())
def test_gumbel_softmax_bad_temperature(tried, temperature, hard):
    tried("GumbelSoftmax")
    with pytest.raises(ValueError, match="`temperature`"):
        GumbelSoftmax(temperature, logits=torch.zeros(3), hard=hard)


@SETTINGS
@given(capacity=st.integers(-5, 20), batch_size=st.integers(-3, 4), seq_len=st.integers(-3, 30))
def test_episode_replay_bad_sizes(tried, capacity, batch_size, seq_len):
    if batch_size >= 1 and seq_len >= 1 and capacity >= seq_len:
        return
    tried("make_episode_replay")
    with pytest.raises(ValueError, match="batch_size >= 1, seq_len >= 1 and capacity >= seq_len"):
        make_episode_replay(capacity, batch_size, seq_len)


@SETTINGS
@given(name=st.sampled_from(["alpha", "beta", "eps"]), data=st.data())
def test_sequence_replay_buffer_bad_hyperparameters(tried, name, data):
    from latentrl.collectors.sequence_replay import SequenceReplayBuffer

    if name == "eps":
        value = data.draw(not_positive)
    else:
        value = data.draw(st.one_of(st.floats(max_value=-1e-6), st.just(math.nan)))
    tried("SequenceReplayBuffer")
    with pytest.raises(ValueError, match=f"`{name}`"):
        SequenceReplayBuffer(100, seq_len=8, overlap=4, burn_in=2, batch_size=4, **{name: value})


@SETTINGS
@given(decay=st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0), st.just(math.nan)))
def test_moving_average_baseline_bad_decay(tried, decay):
    from latentrl.objectives.baselines import MovingAverageBaseline

    tried("MovingAverageBaseline")
    with pytest.raises(ValueError, match="`decay`"):
        MovingAverageBaseline(decay)


@SETTINGS
@given(latent=st.sampled_from(["gaussian", "categorical"]), arg=st.sampled_from(["embed", "action", "is_init"]),
       how=st.sampled_from(["nan", "inf", "features", "int", "batch"]), index=st.integers(0, 200))
def test_rssm_observe_bad_inputs(tried, latent, arg, how, index):
    from latentrl.modules.rssm import RSSM

    torch.manual_seed(0)
    rssm = RSSM(2, 5, deter_dim=6, hidden_dim=6, latent=latent, stoch_dim=3, num_vars=2, num_classes=3)
    args = {"embed": torch.randn(2, 4, 5), "action": torch.randn(2, 4, 2), "is_init": torch.zeros(2, 4, 1, dtype=torch.bool)}
    if arg == "is_init":
        how = "batch"
    x = args[arg]
    if how in ("nan", "inf"):
        x.view(-1)[index % x.numel()] = math.nan if how == "nan" else math.inf
        expected = f"`{arg}` must be finite"
    elif how == "features":
        x = torch.cat([x, x[..., :1]], -1)
        expected = f"`{arg}` must have"
    elif how == "int":
        x = x.long()
        expected = f"`{arg}` must be a floating-point"
    else:
        x = x[:, :-1]
        expected = "expected"
    args[arg] = x
    tried("RSSM.observe")
    with pytest.raises(ValueError, match=expected):
        rssm.observe(args["embed"], args["action"], args["is_init"])


@SETTINGS
@given(name=st.sampled_from(["min_std", "unimix", "deter_dim", "num_vars"]), data=st.data())
def test_rssm_bad_construction(tried, name, data):
    from latentrl.modules.rssm import RSSM

    kwargs = {"latent": "categorical"}
    if name == "min_std":
        kwargs[name] = data.draw(st.one_of(st.floats(max_value=-1e-6), st.just(math.nan)))
    elif name == "unimix":
        kwargs[name] = data.draw(st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0), st.just(math.nan)))
    else:
        kwargs[name] = data.draw(st.one_of(st.integers(max_value=0), st.floats(0.5, 8.5), st.just(True)))
    tried("RSSM")
    with pytest.raises(ValueError, match=f"`{name}`"):
        RSSM(2, 5, **kwargs)


@SETTINGS
@given(unimix=st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6), st.just(math.nan)))
def test_unimix_categorical_bad_mixture(tried, unimix):
    from latentrl.modules.distributions import UnimixOneHotCategorical

    tried("UnimixOneHotCategorical")
    with pytest.raises(ValueError, match="`unimix`"):
        UnimixOneHotCategorical(torch.zeros(4), unimix=unimix)
