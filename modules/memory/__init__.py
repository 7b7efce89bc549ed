"""Memory strategies (attention slicing, SDPA, VAE slicing/tiling, offload, token merging, VAE upcast)."""

from modules.memory.policy import AppliedPolicy, apply_strategies, auto_policy, policy_for_device
from modules.memory.strategies import STRATEGIES, AppliedStrategy, MemoryContext, MemoryStrategy, get_strategy

__all__ = ["STRATEGIES", "AppliedPolicy", "AppliedStrategy", "MemoryContext", "MemoryStrategy", "apply_strategies",
           "auto_policy", "get_strategy", "policy_for_device"]
