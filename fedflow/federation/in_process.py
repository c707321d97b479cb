"""A site channel to site agents in this process: tests, benchmarks, the bare engine."""

from collections.abc import Mapping

from fedflow.errors import FedflowError
from fedflow.federation.channel import Delivered, ReplyHandle, Undelivered, expect
from fedflow.messages import Message
from fedflow.site_agent import SiteAgent


class InProcessChannel:
    """Calls each site's agent in turn in this thread (no Prefect, no serialisation)."""

    def __init__(self, agents: Mapping[str, SiteAgent]) -> None:
        self.agents = dict(agents)

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """Every reply, or the error a site raised."""
        handles: dict[str, ReplyHandle] = {}
        for site, request in requests.items():
            try:
                agent = self.agents.get(site)
                if agent is None:
                    raise FedflowError(f"no site {site!r} in this process")
                handles[site] = Delivered(expect(agent.handle(request), request))
            except Exception as error:  # one failing site must not stop the others
                handles[site] = Undelivered(error)
        return handles
