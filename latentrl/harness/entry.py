"""Command-line entry for examples: Hydra, with config errors that name the
key and the accepted values before anything is built."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, check_overrides

__all__ = ["run"]


def run(task: Callable[[DictConfig], Any], config_dir: str | Path, config_name: str = "config") -> None:
    """Runs ``task(cfg)`` under Hydra with ``<config_dir>/<config_name>.yaml``.

    Unknown ``key=value`` overrides fail here, listing the accepted keys; a
    :class:`ConfigError` raised by ``task`` (bad values) is printed without a
    traceback. Both exit with status 2.
    """
    import hydra

    config_dir = Path(config_dir).resolve()
    base = OmegaConf.load(config_dir / f"{config_name}.yaml")
    try:
        check_overrides([a for a in sys.argv[1:] if not a.startswith("-")], base)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)

    @hydra.main(config_path=str(config_dir), config_name=config_name, version_base=None)
    def _main(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except ConfigError as err:
            print(f"config error: {err}", file=sys.stderr)
            sys.exit(2)

    _main()
