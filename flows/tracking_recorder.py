"""The recorder of a Prefect flow run: MLflow tracking, Prefect artifacts, checkpoints, progress.

A round's records (model version, champion alias, metrics, round page and table, round artifact,
then its checkpoint) are written in order on one background thread while the sites train the
next round; the CLI's progress bar hears of the round at once. The background thread has no
active MLflow run, so it writes through the client with the run's id.

The layout opens on what matters: `global/*` metrics sort first; per-site results go to one
table (`rounds/site_metrics.json`, a row per site and round) beside `site/<s>/<m>`; each round's
page is `rounds/round-007.md`; the audit is one table plus `privacy/<attack>_max` per attack;
the worst site of each metric is named in the tag `worst.<metric>.site`.
"""

import dataclasses
import logging
import math

import pandas as pd
from mlflow.entities import RunTag
from prefect.artifacts import create_markdown_artifact

from domains import Domain
from fedflow.errors import FedflowError
from fedflow.federation import FederationOutcome
from fedflow.federation.recorder import Note, PreparationRecord, PreprocessingRecord, RoundRecord
from fedflow.params import set_weights
from fedflow.rounds import LISTED_SITES, RoundMetrics
from fedflow.sitedata import missing_codes
from fedflow.tasks import get_task
from flows.background import InOrder
from flows.plots import metrics_figure
from flows.progress import RoundEvent, publish
from flows.reports import (
    artifact_key,
    audit_rows,
    round_description,
    round_label,
    round_markdown,
    run_summary_markdown,
    site_rows,
    validation_markdown,
    with_summary,
    worst_by_score,
)
from flows.tracking import FederationTracker, RoundVersion

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]
ROUND_TABLE = "rounds/site_metrics.json"  # MLflow appends each round's rows to the file
AUDIT_TABLE = "audit/membership_inference.json"
PLOT = "metrics_by_round.png"  # top level: the compare page lists only the runs' common top-level files
DESCRIPTION_TAG = "mlflow.note.content"  # the run's description in the MLflow UI


class TrackingRecorder:
    """Records a federation in MLflow (one run) and Prefect (artifacts), checkpoints every round."""

    def __init__(self, *, tracker: FederationTracker, domain: Domain, federation_id: str, log: Log) -> None:
        self.tracker = tracker
        self.domain = domain
        self.federation_id = federation_id
        self.log = log
        self.background = InOrder()
        self.last_round: RoundMetrics | None = None
        self.audit_worst: dict[str, tuple[str, float]] = {}

    def sites_prepared(self, record: PreparationRecord) -> None:
        """Validation summaries as JSON, eligibility tags, and the Prefect validation artifact."""
        summaries = record.summaries
        if len(summaries) <= LISTED_SITES:
            for summary in summaries:
                self.tracker.log_json(summary.compact(), f"validation/{summary.site}.json")
        else:  # many simulated clients: one file, not thousands
            self.tracker.log_json([summary.compact() for summary in summaries], "validation/all_sites.json")
        excluded = ",".join(record.excluded) or "none"
        # Tags, not metrics: a constant count logged first became the MLflow compare page's
        # default axis (parallel coordinates opened on `sites/eligible`, always 4).
        self.tracker.set_tags({"sites.eligible": ",".join(record.eligible), "sites.excluded": excluded})
        create_markdown_artifact(
            markdown=validation_markdown(self.domain.name, summaries),
            key=f"{self.domain.name.replace('_', '-')}-validation",
            description=f"Data validation of {self.federation_id}",
        )

    def preprocessing_agreed(self, record: PreprocessingRecord) -> None:
        """The shared preprocessing as JSON and each site's rows as an MLflow table."""
        self.tracker.log_json(record.preprocessor.model_dump(), "preprocessing/preprocessor.json")
        self.tracker.log_sites_table(pd.DataFrame(record.sites))

    def note(self, note: Note) -> None:
        """Tags and metrics of the run."""
        if note.tags:
            self.tracker.set_tags(dict(note.tags))
        if note.metrics:
            self.tracker.log_metrics(dict(note.metrics), step=note.step)

    def round_completed(self, record: RoundRecord) -> None:
        """Queue the round's records and checkpoint; tell the progress listeners now."""
        self.background.submit(self._publish, record)
        publish(
            RoundEvent(
                champion_metric=record.champion_metric,
                epsilon=record.epsilon,
                round=record.state.round,
                rounds=record.state.checkpoint.config["rounds"],
                metrics=dict(record.metrics.mean),
                participants=list(record.participants),
                dropped=dict(record.dropped),
            )
        )

    def _register(self, record: RoundRecord) -> str:
        spec = self.domain.spec
        task = get_task(spec.task)
        adapter, version_tags = None, None
        base = task.frozen_base(spec)
        if base is not None:
            # The adapters in peft's own format go with the version, tagged with the base model they fit.
            adapter = self.domain.build_model(**spec.model)
            set_weights(adapter, record.state.weights)
            version_tags = dict(base.tags)
        version = RoundVersion(
            round_number=record.state.round,
            strategy=record.state.checkpoint.config["strategy"]["name"],
            weights_payload=record.weights_payload,
            preprocessor=record.state.checkpoint.preprocessor,
            model_code=self.domain.root / "model.py",
            model_options=spec.model,
            missing_codes=missing_codes(spec),
            task=spec.task,
            classes=list(spec.target.classes),
            output_dim=task.output_dim(spec),
            adapter=adapter,
            tags=version_tags or {},
            ranking_metric=record.champion_metric,
            ranking_value=_ranking_value(record),
            sites=tuple(record.participants),
            epsilon=record.epsilon,
        )
        return self.tracker.register_round(version=version)

    def _publish(self, record: RoundRecord) -> None:
        """A round's tracking, in order: version, champion alias, metrics, pages, then checkpoint."""
        state, metric = record.state, record.champion_metric
        version = self._register(record)
        value = record.metrics.mean.get(metric, math.nan)
        self.tracker.offer_champion(
            version, _ranking_value(record), metric=metric, higher_is_better=record.higher_is_better
        )
        self.tracker.log_metrics(record.logged, step=state.round)
        self._round_views(record, version)
        checkpoint = state.checkpoint.model_copy(update={"champion": self.tracker.champion})
        dataclasses.replace(state, checkpoint=checkpoint).save()
        worst = record.metrics.worst.get(metric, ("", math.nan))
        self.log.info(
            "round %d/%d: %s %.4f (worst %s %.4f), version %s",
            state.round,
            state.checkpoint.config["rounds"],
            metric,
            value,
            *worst,
            version,
        )

    def _round_views(self, record: RoundRecord, version: str) -> None:
        """The round's page (MLflow file and keyed Prefect artifact), its site rows, its worst sites."""
        round_number, rounds = record.state.round, record.state.checkpoint.config["rounds"]
        markdown = round_markdown(
            domain=self.domain.name,
            round_number=round_number,
            rounds=rounds,
            metrics=record.metrics,
            participants=record.participants,
            dropped=record.dropped,
            version=version,
        )
        label = round_label(round_number, rounds)
        client, run_id = self.tracker.client, self.tracker.run_id
        client.log_text(run_id, markdown, f"rounds/{label}.md")
        rows = site_rows(round_number, record.metrics, record.participants)
        if rows:
            client.log_table(run_id, pd.DataFrame(rows), ROUND_TABLE)
        worst = [
            RunTag(f"worst.{name}.site", site) for name, (site, _) in record.metrics.worst.items() if site
        ]
        if worst:
            client.log_batch(run_id, tags=worst)
        self.last_round = record.metrics
        create_markdown_artifact(
            markdown=markdown,
            key=artifact_key(self.federation_id, label),
            description=round_description(
                round_number, rounds, record.metrics, record.champion_metric, version
            ),
        )

    def flush(self) -> None:
        """Wait until every queued round is recorded (raises the first failure)."""
        self.background.drain()

    def audit_completed(self, scores: dict[str, dict[str, float]], step: int) -> None:
        """The audit as one table (a row per site) and, per attack, the most exposed site's score."""
        if not scores:
            return
        client, run_id = self.tracker.client, self.tracker.run_id
        client.log_table(run_id, pd.DataFrame(audit_rows(scores)), AUDIT_TABLE)
        # `privacy/` sorts after `global/`, beside the privacy spent (ε): the headline metrics open the page.
        self.audit_worst = worst_by_score(scores)
        self.tracker.log_metrics(
            {f"privacy/{name}_max": value for name, (_, value) in self.audit_worst.items()}, step=step
        )
        tags = [RunTag(f"privacy.{name}_max.site", site) for name, (site, _) in self.audit_worst.items()]
        client.log_batch(run_id, tags=tags)

    def finished(self, outcome: FederationOutcome) -> None:
        """The metrics plot and the run's summary in its description, then the run marked finished."""
        metric = outcome.champion_metric
        plotted = [metric, "loss"] if metric != "loss" else ["loss"]
        figure = metrics_figure(outcome.history, plotted, outcome.eligible)
        self.tracker.log_figure(figure, PLOT)
        summary = run_summary_markdown(
            rounds=outcome.rounds_completed,
            final=self.last_round,
            champion=self._champion_line(metric),
            audit=self.audit_worst,
        )
        description = self.tracker.tags().get(DESCRIPTION_TAG, "")  # others may have put links there
        self.tracker.client.set_tag(self.tracker.run_id, DESCRIPTION_TAG, with_summary(description, summary))
        self.tracker.finish()

    def _champion_line(self, metric: str) -> str:
        source = self.tracker.champion_source()
        if source is None:
            return f"No version of {self.tracker.model_name} is champion yet (no round ranked on {metric})."
        return f"Champion: {self.tracker.model_name} {source.summary()}."

    def close(self, *, failure: BaseException | None = None) -> None:
        """Stop the background thread; after a failure, record what was queued and mark the run failed."""
        if failure is None:
            self.background.close()
            return
        try:
            self.background.close()  # what was queued before the failure is still recorded
        except Exception as queued:
            self.log.error("tracking of an earlier round failed too: %s", type(queued).__name__)
        self.tracker.finish(failure=_failure_reason(failure))


def _ranking_value(record: RoundRecord) -> float:
    # A round some site of the population did not evaluate is recorded, not offered as champion.
    value = record.metrics.mean.get(record.champion_metric, math.nan)
    return value if record.champion_candidate else math.nan


def _failure_reason(error: BaseException) -> str:
    # Our own errors say what went wrong without data; others may quote values, so only their type.
    reason = str(error) if isinstance(error, FedflowError) else "see the Prefect log of this run"
    return f"{type(error).__name__}: {reason}"
