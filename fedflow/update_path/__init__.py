"""A site's update path: an ordered chain of small steps from training to a signed payload.

    train -> (simulated attack) -> clip -> (local noise) -> compress | mask -> encode -> sign

Each step declares what it needs earlier in the chain and what it cannot follow; the chain is
checked before it runs. `fedflow.update_path.chain.update_path` builds it from a train request.
"""

from fedflow.update_path.base import SiteWork, UpdatePathError, UpdateStep, check_update_path, run_update_path

__all__ = ["SiteWork", "UpdatePathError", "UpdateStep", "check_update_path", "run_update_path"]
