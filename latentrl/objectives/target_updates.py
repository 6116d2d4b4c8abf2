"""Target-network updates that TorchRL's updaters get off by one."""
from __future__ import annotations

from torchrl.objectives import HardUpdate

__all__ = ["HardUpdateEvery"]


class HardUpdateEvery(HardUpdate):
    """Copies the online parameters into the target parameters every ``value_network_update_interval`` steps.

    TorchRL 0.14.1's ``HardUpdate`` copies on steps ``k + 1, 2(k + 1), ...``
    for an interval ``k`` (its counter runs 0..k and copies when it equals
    ``k``): every 2501 steps for 2500 (``UPSTREAM.md`` #13). This subclass
    copies on steps ``k, 2k, ...`` (R2D2: every 2500 learner steps,
    Kapturowski et al. 2019, Table 2), with TorchRL's counter and state dict.
    """

    def __init__(self, loss_module, *, value_network_update_interval: int = 2500):
        if int(value_network_update_interval) < 1:
            raise ValueError(f"HardUpdateEvery: `value_network_update_interval` must be >= 1, got {value_network_update_interval}")
        super().__init__(loss_module, value_network_update_interval=int(value_network_update_interval) - 1)
        self.interval = int(value_network_update_interval)
