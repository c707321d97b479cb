"""The coordinator side of the round protocol, written once: the federation driver.

`run_federation` runs prepare -> shared preprocessing -> rounds (sample, broadcast, train,
check, aggregate, evaluate, record) -> audit against two small Protocols: a `SiteChannel`
(how a typed request reaches a site and its reply comes back) and a `Recorder` (tracking,
checkpoints, progress). Prefect, MLflow and GX live behind those Protocols, in `flows/`.
"""

from fedflow.federation.channel import ReplyHandle, SiteChannel
from fedflow.federation.driver import run_federation
from fedflow.federation.plan import DomainModel, FederationOutcome, FederationPlan, StartingPoint
from fedflow.federation.recorder import Recorder
from fedflow.federation.state import FederationState

__all__ = [
    "DomainModel",
    "FederationOutcome",
    "FederationPlan",
    "FederationState",
    "Recorder",
    "ReplyHandle",
    "SiteChannel",
    "StartingPoint",
    "run_federation",
]
