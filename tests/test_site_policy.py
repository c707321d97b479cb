"""A site enforces its own policy, whatever the coordinator asks. Each attack below succeeds
against a site that obeys its requests (the simulation policy, which is what every site did
before site policies existed) and fails against a site with the default policy of a served site."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from site_helpers import site_agent

from domains import Domain
from fedflow.config import DPSGDConfig, LocalTrainConfig, PrivacyConfig, StrategyConfig
from fedflow.messages import (
    EvaluateRequest,
    PrepareReply,
    PrepareRequest,
    SiteRows,
    TrainRequest,
    reply_from_json,
)
from fedflow.params import encode
from fedflow.rounds import initial_weights
from fedflow.site_agent import SiteAgent
from fedflow.site_policy import PolicyRefusal, PrivacyFloor, SitePolicy
from fedflow.tabular import Preprocessor, fit_preprocessor

FEDERATION = "hostile"
COLUMNS = ["age", "trestbps", "thalch"]


def _agent(healthcare: Domain, folder: Path, policy: SitePolicy) -> SiteAgent:
    import dataclasses

    agent = site_agent(healthcare, "cleveland", folder)
    return SiteAgent(dataclasses.replace(agent.settings, policy=policy))


def _statistics(agent: SiteAgent, holdout_fraction: float) -> PrepareReply:
    request = PrepareRequest(federation_id=FEDERATION, holdout_fraction=holdout_fraction, seed=0)
    reply = agent.handle(request)
    assert isinstance(reply, PrepareReply) and reply.statistics is not None
    return reply


def _one_patient(first: PrepareReply, second: PrepareReply) -> dict[str, float] | None:
    """The attack: two preparations whose training rows differ by one patient give that patient."""
    a, b = first.statistics, second.statistics
    assert a is not None and b is not None
    if a.rows - b.rows != 1:
        return None
    return {c: a.numeric[c].total - b.numeric[c].total for c in COLUMNS}


@pytest.mark.parametrize(("policy", "leaks"), [(SitePolicy.simulation(), True), (SitePolicy(), False)])
def test_two_hold_out_fractions_do_not_give_away_a_patient(
    healthcare: Domain, tmp_path: Path, policy: SitePolicy, leaks: bool
) -> None:
    agent = _agent(healthcare, tmp_path, policy)
    rows = pd.read_csv(healthcare.site_path("cleveland"))
    n = len(rows)
    recovered = [
        patient
        for k in range(22, 40)
        if (patient := _one_patient(_statistics(agent, k / n), _statistics(agent, (k + 1) / n))) is not None
    ]
    if leaks:
        assert recovered, "an obedient site gives the attack its one-row difference"
        for patient in recovered:
            match = rows[np.logical_and.reduce([rows[c] == patient[c] for c in COLUMNS])]
            assert len(match) >= 1, "the difference is one real patient's values"
    else:
        assert recovered == []
        assert _statistics(agent, 0.1).statistics == _statistics(agent, 0.5).statistics, (
            "the site splits with its own fraction and seed, whatever a request says"
        )


def _rows(agent: SiteAgent, holdout_fraction: float) -> SiteRows:
    reply = _statistics(agent, holdout_fraction)
    assert reply.statistics is not None
    return SiteRows(
        holdout_fraction=holdout_fraction,
        seed=0,
        preprocessor=fit_preprocessor(reply.statistics, agent.settings.spec),
    )


def _payload(agent: SiteAgent, rows: SiteRows) -> bytes:
    spec = agent.settings.spec
    weights = initial_weights(
        agent.settings.build_model,
        input_dim=len(rows.preprocessor.feature_names),
        output_dim=1,
        options=spec.model,
        seed=0,
    )
    return encode(weights)


@pytest.mark.parametrize(("policy", "rows_scored"), [(SitePolicy.simulation(), 2), (SitePolicy(), None)])
def test_a_one_row_hold_out_is_never_scored(
    healthcare: Domain, tmp_path: Path, policy: SitePolicy, rows_scored: int | None
) -> None:
    agent = _agent(healthcare, tmp_path, policy)
    n = len(pd.read_csv(healthcare.site_path("cleveland")))
    rows = _rows(agent, 1.5 / n)  # two rows in the hold-out (one per class), if the site obeys
    request = EvaluateRequest(
        federation_id=FEDERATION,
        round=1,
        rows=rows,
        global_payload=_payload(agent, rows),
        local=LocalTrainConfig(),
    )
    scored = int(agent.handle(request).metrics["num_examples"])  # type: ignore[attr-defined]
    if rows_scored is not None:
        assert scored == rows_scored
    else:
        assert scored >= 0.2 * n, "the site scores its own hold-out"
        small = _agent(healthcare, tmp_path / "small", SitePolicy(min_holdout_rows=10 * n))
        small_rows = _rows(small, 0.25)
        with pytest.raises(PolicyRefusal, match="hold-out below the site's minimum"):
            small.handle(request.model_copy(update={"rows": small_rows}))


def _train(agent: SiteAgent, rows: SiteRows, **changes: object) -> TrainRequest:
    request = TrainRequest(
        federation_id=FEDERATION,
        round=1,
        rows=rows,
        global_payload=_payload(agent, rows),
        local=LocalTrainConfig(batch_size=1, max_steps=1, momentum=0.0),
        strategy=StrategyConfig(),
    )
    return request.model_copy(update=changes)


def test_a_per_example_gradient_is_refused(healthcare: Domain, tmp_path: Path) -> None:
    obedient = _agent(healthcare, tmp_path / "obedient", SitePolicy.simulation())
    # One step of batch 1 without noise: the update is -lr times one patient's gradient.
    assert obedient.handle(_train(obedient, _rows(obedient, 0.25))).num_examples > 0  # type: ignore[attr-defined]
    guarded = _agent(healthcare, tmp_path / "guarded", SitePolicy())
    with pytest.raises(PolicyRefusal, match="batch size below the site's minimum"):
        guarded.handle(_train(guarded, _rows(guarded, 0.25)))


def test_a_privacy_floor_is_the_site_s_own(healthcare: Domain, tmp_path: Path) -> None:
    floor = PrivacyFloor(
        mechanism="distributed", max_clip_norm=1.0, min_noise_multiplier=0.5, max_epsilon=3.0
    )
    agent = _agent(healthcare, tmp_path, SitePolicy(privacy=floor))
    rows = _rows(agent, 0.25)
    local = LocalTrainConfig(batch_size=32)
    with pytest.raises(PolicyRefusal, match="below the site's floor"):  # no DP at all
        agent.handle(_train(agent, rows, local=local))
    with pytest.raises(PolicyRefusal, match="below the site's floor"):  # the site's own share too small
        weak = PrivacyConfig(mode="distributed", clip_norm=1.0, noise_multiplier=1.0)
        agent.handle(_train(agent, rows, local=local, privacy=weak, sites_in_round=16))
    with pytest.raises(PolicyRefusal, match="below the site's floor"):  # DP-SGD is not what it allows
        agent.handle(_train(agent, rows, local=local.model_copy(update={"dp_sgd": DPSGDConfig()})))
    # The site's own share is 4 / sqrt(2) = 2.83 clip norms: epsilon 1.48, 2.16, 2.71, 3.17, ... per round.
    private = PrivacyConfig(mode="distributed", clip_norm=1.0, noise_multiplier=4.0)
    rounds = 0
    with pytest.raises(PolicyRefusal, match="privacy budget for this federation is spent"):
        for round_number in range(1, 50):
            agent.handle(
                _train(agent, rows, local=local, privacy=private, sites_in_round=2, round=round_number)
            )
            rounds += 1
    assert rounds == 3


def test_rounds_cannot_be_rewound_but_a_crashed_round_may_be_repeated(
    healthcare: Domain, tmp_path: Path
) -> None:
    agent = _agent(healthcare, tmp_path, SitePolicy())
    rows = _rows(agent, 0.25)
    local = LocalTrainConfig(dp_sgd=DPSGDConfig(noise_multiplier=1.0), batch_size=16)
    third = _train(agent, rows, local=local, round=3)
    first = agent.handle(third)
    again = agent.handle(third)  # the coordinator crashed after round 3 and asks again: the same reply
    assert again == first
    with pytest.raises(PolicyRefusal, match="rounds must increase"):  # rewind: reset DP-SGD's step count
        agent.handle(third.model_copy(update={"round": 2}))
    with pytest.raises(PolicyRefusal, match="rounds must increase"):  # round 3 again, but another request
        agent.handle(third.model_copy(update={"local": local.model_copy(update={"batch_size": 17})}))
    assert agent.handle(third.model_copy(update={"round": 4})).num_examples > 0  # type: ignore[attr-defined]


def test_only_approved_models_and_a_budget_of_calls(healthcare: Domain, tmp_path: Path) -> None:
    from fedflow.site_policy import model_sha256

    own = model_sha256(healthcare.root / "model.py")
    agent = _agent(healthcare, tmp_path, SitePolicy(max_calls_per_federation=3, approved_models=[own]))
    request = PrepareRequest(federation_id=FEDERATION, holdout_fraction=0.25, seed=0, model_sha256=own)
    agent.handle(request)
    with pytest.raises(PolicyRefusal, match="model not approved"):
        agent.handle(request.model_copy(update={"model_sha256": "0" * 64}))
    agent.handle(request)
    with pytest.raises(PolicyRefusal, match="call budget"):
        agent.handle(request)
    # Another federation has its own budget.
    agent.handle(request.model_copy(update={"federation_id": "another"}))


def test_a_refusal_travels_as_its_category_only() -> None:
    from fedflow.messages import AuditRequest, RefusalReply

    rows = SiteRows(holdout_fraction=0.25, seed=0, preprocessor=Preprocessor(numeric=[], categorical=[]))
    request = AuditRequest(federation_id="f", rows=rows, final_payload=b"", reference_payload=b"")
    reply = RefusalReply(category="site policy: hold-out below the site's minimum")
    with pytest.raises(PolicyRefusal, match=r"^site policy: hold-out below the site's minimum$"):
        reply_from_json(request, reply.model_dump_json().encode())


def test_the_documented_example_policy_is_the_default_one() -> None:
    from flows.site_agents import load_site_policy

    example = Path(__file__).resolve().parents[1] / "deployments" / "site-policy.example.yaml"
    assert load_site_policy(example) == SitePolicy()


def test_a_broken_policy_names_the_file_and_the_key(tmp_path: Path) -> None:
    from fedflow.errors import FedflowError
    from flows.site_agents import load_site_policy

    path = tmp_path / "policy.yaml"
    path.write_text("min_batch_size: 0\nprivacy: {max_epsilon: -1}\n")
    with pytest.raises(FedflowError, match=r"policy.yaml: min_batch_size: .*; privacy.max_epsilon: "):
        load_site_policy(path)
