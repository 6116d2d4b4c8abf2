"""PopArt: outputs preserved exactly across statistics updates, statistics right, training intact."""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from latentrl.modules.popart import PopArt


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1.0)).max().detach())


def _value_net(in_dim: int, num_tasks: int, beta: float, seed: int = 0):
    torch.manual_seed(seed)
    torso = nn.Sequential(nn.Linear(in_dim, 16), nn.Tanh())
    head = PopArt(16, num_tasks=num_tasks, beta=beta)
    return torso.double(), head.double()


@pytest.mark.parametrize("beta", [3e-4, 1e-2, 1.0])
def test_single_task_outputs_preserved_across_updates(beta):
    torso, head = _value_net(4, 1, beta)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    n0, v0 = head(torso(x))
    for _ in range(300):
        targets = 1000.0 + 100.0 * torch.randn(64, 1, generator=g, dtype=torch.float64)
        head.update(targets)
        n, v = head(torso(x))
        assert _rel_err(v, v0) < 1e-5
    assert float(head.mu) > 1000.0 * (1 - (1 - beta) ** 300) * 0.9  # the statistics did move ...
    assert (n - n0).abs().max() > 1e-3  # ... and so did the normalized outputs


def test_float32_outputs_preserved():
    torch.manual_seed(0)
    head = PopArt(8, beta=1e-2)
    x = torch.randn(16, 8)
    _, v0 = head(x)
    for _ in range(100):
        head.update(1000.0 + 100.0 * torch.randn(64))
    _, v = head(x)
    assert _rel_err(v, v0) < 1e-4
    assert float(head.sigma) > 10.0


def test_multi_task_outputs_preserved_and_absent_task_untouched():
    scales = torch.tensor([1.0, 100.0, 10_000.0], dtype=torch.float64)
    torso, head = _value_net(5, 3, beta=1e-2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    ids = torch.arange(30) % 3
    n0, v0 = head(torso(x))
    assert v0.shape == (30, 3)
    _, v0_sel = head(torso(x), ids)
    torch.testing.assert_close(v0_sel, v0.gather(-1, ids[:, None]))
    for step in range(300):
        task_ids = torch.randint(0, 3 if step % 3 else 2, (48,), generator=g)  # every third batch lacks task 2
        targets = scales[task_ids] * (3.0 + torch.randn(48, generator=g, dtype=torch.float64))
        mu_before, nu_before = head.mu.clone(), head.nu.clone()
        head.update(targets.unsqueeze(-1), task_ids)  # targets [B, 1], ids [B]
        if step % 3 == 0:
            assert head.mu[2] == mu_before[2] and head.nu[2] == nu_before[2]
            assert (head.mu[:2] != mu_before[:2]).all()
        n, v = head(torso(x))
        assert _rel_err(v, v0) < 1e-5
    assert (head.sigma / scales).min() > 0.3  # each task got its own scale
    assert (n - n0).abs().max() > 1e-3


def test_ema_recursion_matches_hand_written_loop():
    beta, K = 0.05, 3
    head = PopArt(2, num_tasks=K, beta=beta).double()
    g = torch.Generator().manual_seed(3)
    mu, nu = [0.0] * K, [1.0] * K
    for step in range(50):
        task_ids = torch.randint(0, K - (step % 2), (7, 3), generator=g)
        targets = torch.randn(7, 3, generator=g, dtype=torch.float64) * 50 + 20
        head.update(targets, task_ids)
        for k in range(K):
            sel = targets[task_ids == k]
            if len(sel):
                mu[k] = (1 - beta) * mu[k] + beta * sel.mean().item()
                nu[k] = (1 - beta) * nu[k] + beta * (sel**2).mean().item()
    torch.testing.assert_close(head.mu, torch.tensor(mu, dtype=torch.float64))
    torch.testing.assert_close(head.nu, torch.tensor(nu, dtype=torch.float64))
    sigma = (torch.tensor(nu) - torch.tensor(mu) ** 2).sqrt()
    torch.testing.assert_close(head.sigma, sigma.double())


def test_statistics_converge_to_mean_and_std():
    head = PopArt(3, num_tasks=2, beta=1e-2)
    g = torch.Generator().manual_seed(4)
    means, stds = torch.tensor([1000.0, -5.0]), torch.tensor([100.0, 0.5])
    for _ in range(2000):
        task_ids = torch.randint(0, 2, (64,), generator=g)
        head.update(means[task_ids] + stds[task_ids] * torch.randn(64, generator=g), task_ids)
    torch.testing.assert_close(head.mu, means, rtol=0.01, atol=0.02)
    torch.testing.assert_close(head.sigma, stds, rtol=0.1, atol=0.0)
    # normalize / denormalize use each target's task
    G = torch.tensor([[1100.0, -4.5]])
    torch.testing.assert_close(head.normalize(G), (G - head.mu) / head.sigma)
    ids = torch.tensor([0, 1])
    z = head.normalize(G[0], ids)
    torch.testing.assert_close(z, (G[0] - head.mu) / head.sigma)
    torch.testing.assert_close(head.denormalize(z, ids), G[0])


def test_sgd_after_update_fits_values_of_very_different_scales():
    torch.manual_seed(5)
    means = torch.tensor([1.0, 100.0, 10_000.0])
    head = PopArt(3, num_tasks=3, beta=3e-2)
    opt = torch.optim.Adam(head.parameters(), lr=5e-2)
    w, b = head.linear.weight, head.linear.bias
    for _ in range(300):
        task_ids = torch.randint(0, 3, (32,))
        features = nn.functional.one_hot(task_ids, 3).float()
        targets = means[task_ids] * (1.0 + 0.1 * torch.randn(32))
        head.update(targets, task_ids)
        normalized, _ = head(features, task_ids)
        loss = (head.normalize(targets, task_ids).unsqueeze(-1) - normalized).square().mean()
        opt.zero_grad()
        loss.backward()
        w_before = w.detach().clone()
        opt.step()
        assert not torch.equal(w, w_before)  # the optimizer still steps the head's parameters
    assert head.linear.weight is w and head.linear.bias is b and w.is_leaf and b.is_leaf
    assert opt.param_groups[0]["params"][0] is w and opt.state[w]["step"] == 300
    _, v = head(torch.eye(3), torch.arange(3))
    torch.testing.assert_close(v.squeeze(-1), means, rtol=0.05, atol=0.0)


def test_tensordict_module_selects_the_task_head():
    torch.manual_seed(6)
    policy_value = TensorDictSequential(
        TensorDictModule(nn.Linear(4, 8), in_keys=["observation"], out_keys=["features"]),
        TensorDictModule(PopArt(8, num_tasks=3), in_keys=["features", "task_id"],
                         out_keys=["normalized_value", "state_value"]),
    )
    td = TensorDict({"observation": torch.randn(5, 2, 4), "task_id": torch.randint(0, 3, (5, 2, 1))}, [5, 2])
    policy_value(td)
    assert td["state_value"].shape == (5, 2, 1) and td["normalized_value"].shape == (5, 2, 1)
    head = policy_value[1].module
    all_n, _ = head(td["features"])
    torch.testing.assert_close(td["normalized_value"], all_n.gather(-1, td["task_id"]))
    # task ids of shape [...] give the same values as [..., 1]
    torch.testing.assert_close(head(td["features"], td["task_id"].squeeze(-1))[1], td["state_value"])


def test_single_task_without_task_id():
    head = PopArt(4)
    n, v = head(torch.randn(3, 4))
    assert n.shape == v.shape == (3, 1)
    head.update(torch.full((3, 1), 5.0))
    assert head.normalize(torch.tensor(5.0)).shape == ()


def test_errors_name_the_argument():
    for beta in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"`beta` must be in \(0, 1\]"):
            PopArt(4, beta=beta)
    head = PopArt(4, num_tasks=3)
    with pytest.raises(ValueError, match=r"`task_id` must hold task indices in \[0, 2\]"):
        head(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"`task_ids` must hold task indices in \[0, 2\]"):
        head.update(torch.randn(2), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="`task_ids` is required"):
        head.update(torch.randn(2))
    with pytest.raises(TypeError, match="`task_ids` must be an integer tensor"):
        head.normalize(torch.randn(2), torch.tensor([0.0, 1.0]))


def test_state_dict_and_device_follow_the_module():
    head = PopArt(4, num_tasks=2)
    head.update(torch.tensor([3.0, 7.0]), torch.tensor([0, 1]))
    other = PopArt(4, num_tasks=2)
    other.load_state_dict(head.state_dict())
    torch.testing.assert_close(other.mu, head.mu)
    torch.testing.assert_close(other.nu, head.nu)
    device = "cuda" if torch.cuda.is_available() else "meta"
    moved = head.to(device)
    assert moved.mu.device.type == moved.linear.weight.device.type == device


def test_sigma_is_clipped_to_its_bounds_and_outputs_stay_preserved():
    from latentrl.checks import InputError

    torch.manual_seed(0)
    head = PopArt(3, beta=1.0, epsilon=0.5, sigma_max=10.0).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    _, v0 = head(x)
    head.update(torch.tensor([[1e4], [-1e4]], dtype=torch.float64))  # raw std 1e4
    assert float(head.sigma) == 10.0  # rlax's scale_ub
    _, v1 = head(x)
    torch.testing.assert_close(v1, v0)
    head.update(torch.full((4, 1), 3.0, dtype=torch.float64))  # raw std 0
    assert float(head.sigma) == 0.5  # rlax's scale_lb (epsilon)
    torch.testing.assert_close(head(x)[1], v0)
    # normalize divides by the clipped scale: 100 above the mean is 200 units of epsilon = 0.5
    torch.testing.assert_close(head.normalize(torch.tensor([[103.0]], dtype=torch.float64)),
                               torch.tensor([[200.0]], dtype=torch.float64))
    for bad in (dict(sigma_max=0.0), dict(sigma_max=float("nan")), dict(epsilon=1.0, sigma_max=1.0)):
        with pytest.raises(InputError, match="sigma_max"):
            PopArt(3, **bad)
