"""A real site agent of a shipped domain, prepared, with a round-1 train request: for unit tests
of the site's side of the protocol (the update path, state, secure aggregation)."""

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from domains import Domain
from fedflow.config import LocalTrainConfig, StrategyConfig
from fedflow.messages import PrepareReply, PrepareRequest, SiteRows, TrainRequest
from fedflow.params import encode
from fedflow.rounds import initial_weights
from fedflow.site_agent import SiteAgent, SiteData, SiteSettings
from fedflow.site_policy import SitePolicy
from fedflow.tabular import fit_preprocessor
from flows.site_agents import DomainValidator

if TYPE_CHECKING:
    from fedflow.config import FederationConfig
    from fedflow.federation import FederationPlan
    from fedflow.federation.in_process import InProcessChannel

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
        policy=SitePolicy.simulation(),
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


def in_process_channel(
    domain: Domain, folder: Path, paths: dict[str, Path] | None = None
) -> "InProcessChannel":
    """Every site of the domain as an agent in this process (state and keys under `folder/<site>`)."""
    from fedflow.federation.in_process import InProcessChannel

    paths = paths or {}
    agents = {}
    for site in domain.spec.site_names:
        settings = SiteSettings(
            name=site,
            spec=domain.spec,
            build_model=domain.build_model,
            data=SiteData(
                path=paths.get(site) or domain.site_path(site),
                simulated=site not in paths and domain.is_simulated(site),
            ),
            validator=DomainValidator(domain),
            state_dir=folder / site / "state",
            keys_dir=folder / site / "keys",
            policy=SitePolicy.simulation(),
        )
        agents[site] = SiteAgent(settings)
    return InProcessChannel(agents)


def engine_plan(
    domain: Domain, config: "FederationConfig", federation_id: str, **changes: object
) -> "FederationPlan":
    """A plan for the engine alone (no MLflow run to resume into)."""
    from fedflow.federation import DomainModel, FederationPlan

    model = DomainModel(name=domain.name, spec=domain.spec, build_model=domain.build_model)
    plan = FederationPlan(
        federation_id=federation_id, domain=model, config=config, sites=domain.spec.site_names
    )
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]
