"""A real site agent of a shipped domain, prepared, with a round-1 train request: for unit tests
of the site's side of the protocol (the update path, state, secure aggregation)."""

from pathlib import Path

from domains import Domain
from fedflow.config import LocalTrainConfig, StrategyConfig
from fedflow.messages import PrepareReply, PrepareRequest, SiteRows, TrainRequest
from fedflow.params import encode
from fedflow.rounds import initial_weights
from fedflow.site_agent import SiteAgent, SiteData, SiteSettings
from fedflow.tabular import fit_preprocessor
from flows.site_agents import DomainValidator

FEDERATION = "unit-test"


def site_agent(domain: Domain, site: str, folder: Path, *, path: Path | None = None) -> SiteAgent:
    """The agent of one site, with its state and keys in `folder`."""
    settings = SiteSettings(
        name=site,
        spec=domain.spec,
        build_model=domain.build_model,
        data=SiteData(path=path or domain.site_path(site)),
        validator=DomainValidator(domain),
        state_dir=folder / "state",
        keys_dir=folder / "keys",
    )
    return SiteAgent(settings)


def prepared_agent(
    domain: Domain, site: str, folder: Path, **changes: object
) -> tuple[SiteAgent, TrainRequest]:
    """A prepared agent and a round-1 train request from a seeded model (plain FedAvg by default)."""
    agent = site_agent(domain, site, folder)
    reply = agent.prepare(PrepareRequest(federation_id=FEDERATION, holdout_fraction=0.25, seed=0))
    assert isinstance(reply, PrepareReply) and reply.statistics is not None, reply.summary.reasons()
    preprocessor = fit_preprocessor(reply.statistics, domain.spec)
    weights = initial_weights(
        domain.build_model,
        input_dim=len(preprocessor.feature_names),
        output_dim=1,
        options=domain.spec.model,
        seed=0,
    )
    request = TrainRequest(
        federation_id=FEDERATION,
        round=1,
        rows=SiteRows(holdout_fraction=0.25, seed=0, preprocessor=preprocessor),
        global_payload=encode(weights),
        local=LocalTrainConfig(),
        strategy=StrategyConfig(),
    )
    return agent, request.model_copy(update=changes)
