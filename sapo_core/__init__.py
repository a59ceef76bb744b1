"""sapo_core: smooth gate functions for SAPO (gates, loss, rewards, data, tiny model, trainer, plots).

Kept free of imports on purpose: reward worker processes import this package, and every module pulls
in only what it needs (torch, transformers, TRL, math-verify) when it is itself imported.
"""

__version__ = "0.1.0"
