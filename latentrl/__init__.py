"""latentrl: TorchRL-based agents for partially observable worlds.

Subpackages: ``modules``, ``objectives``, ``collectors``, ``envs``, ``harness``.
The layers, what may import what and how to add an algorithm are in the
repository's ``CONTRIBUTING.md``.
"""
__version__ = "0.1.0"
