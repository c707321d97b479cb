"""A site's update path: an ordered chain of small steps from training to the encoded payload.

    train -> (simulated attack) -> clip -> (local noise) -> compress | mask -> encode

(The reply that carries the payload is signed as a whole by the site: `fedflow.envelope`.)

Each step declares what it needs earlier in the chain and what it cannot follow; the chain is
checked before it runs. `fedflow.update_path.chain.update_path` builds it from a train request.
"""

from fedflow.update_path.base import SiteWork, UpdatePathError, UpdateStep, check_update_path, run_update_path

__all__ = ["SiteWork", "UpdatePathError", "UpdateStep", "check_update_path", "run_update_path"]
