"""latentrl: TorchRL-based agents for partially observable worlds."""
__version__ = "0.1.0"
