"""Population based training (Jaderberg et al. 2017): the decision rule shared by its backends.

* :class:`PBTRule`, :class:`Hyperparameter`: when a member is ready, whom it copies
  (truncation selection or IMPALA's binary rule) and how it explores (perturb or
  resample within bounds).
"""
from .rule import EXPLOITS, EXPLORES, Hyperparameter, PBTRule

__all__ = ["PBTRule", "Hyperparameter", "EXPLOITS", "EXPLORES"]
