"""The recorder of a Prefect flow run: MLflow tracking, Prefect artifacts, checkpoints, progress.

A round's records (model version, champion alias, metrics, round artifact, then its
checkpoint) are written in order on one background thread while the sites train the next
round; the CLI's progress bar hears of the round at once.
"""

import dataclasses
import logging
import math

import pandas as pd
from prefect.artifacts import create_markdown_artifact

from domains import Domain
from fedflow.errors import FedflowError
from fedflow.federation import FederationOutcome
from fedflow.federation.recorder import Note, PreparationRecord, PreprocessingRecord, RoundRecord
from fedflow.params import set_weights
from fedflow.rounds import LISTED_SITES
from fedflow.sitedata import missing_codes
from fedflow.tasks import get_task
from flows.background import InOrder
from flows.plots import metrics_figure
from flows.progress import RoundEvent, publish
from flows.reports import round_markdown, validation_markdown
from flows.tracking import FederationTracker, RoundVersion

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]
AUDIT_SUMMARIES = (
    "mia_loss_auc",
    "mia_calibrated_auc",
    "mia_loss_tpr_at_1fpr",
    "mia_calibrated_tpr_at_1fpr",
    "mia_lira_auc",
    "mia_lira_tpr_at_1fpr",
)


class TrackingRecorder:
    """Records a federation in MLflow (one run) and Prefect (artifacts), checkpoints every round."""

    def __init__(self, *, tracker: FederationTracker, domain: Domain, federation_id: str, log: Log) -> None:
        self.tracker = tracker
        self.domain = domain
        self.federation_id = federation_id
        self.log = log
        self.background = InOrder()

    def sites_prepared(self, record: PreparationRecord) -> None:
        """Validation summaries as JSON, eligibility tags, and the Prefect validation artifact."""
        summaries = record.summaries
        if len(summaries) <= LISTED_SITES:
            for summary in summaries:
                self.tracker.log_json(summary.model_dump(), f"validation/{summary.site}.json")
        else:  # many simulated clients: one file, not thousands
            self.tracker.log_json(
                [summary.model_dump() for summary in summaries], "validation/all_sites.json"
            )
        excluded = ",".join(record.excluded) or "none"
        self.tracker.set_tags({"sites.eligible": ",".join(record.eligible), "sites.excluded": excluded})
        counts = {"sites/eligible": len(record.eligible), "sites/excluded": len(record.excluded)}
        self.tracker.log_metrics(counts, step=0)
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
        )
        return self.tracker.register_round(version=version)

    def _publish(self, record: RoundRecord) -> None:
        """A round's tracking, in order: version, champion alias, metrics, artifact, then checkpoint."""
        state, metric = record.state, record.champion_metric
        version = self._register(record)
        value = record.metrics.mean.get(metric, math.nan)
        # A round some site of the population did not evaluate is recorded, not offered as champion.
        offered = value if record.champion_candidate else math.nan
        self.tracker.offer_champion(version, offered, metric=metric, higher_is_better=record.higher_is_better)
        self.tracker.log_metrics(record.logged, step=state.round)
        rounds = state.checkpoint.config["rounds"]
        markdown = round_markdown(
            domain=self.domain.name,
            round_number=state.round,
            rounds=rounds,
            metrics=record.metrics,
            participants=record.participants,
            dropped=record.dropped,
            version=version,
        )
        create_markdown_artifact(markdown=markdown, description=f"{self.federation_id}: round {state.round}")
        checkpoint = state.checkpoint.model_copy(update={"champion": self.tracker.champion})
        dataclasses.replace(state, checkpoint=checkpoint).save()
        worst = record.metrics.worst.get(metric, ("", math.nan))
        self.log.info(
            "round %d/%d: %s %.4f (worst %s %.4f), version %s",
            state.round,
            rounds,
            metric,
            value,
            *worst,
            version,
        )

    def flush(self) -> None:
        """Wait until every queued round is recorded (raises the first failure)."""
        self.background.drain()

    def audit_completed(self, scores: dict[str, dict[str, float]], step: int) -> None:
        """Every site's attack scores, the worst per attack, and the JSON of them all."""
        flat = {f"audit/{site}/{k}": v for site, values in scores.items() for k, v in values.items()}
        for key in AUDIT_SUMMARIES:
            values = [v[key] for v in scores.values() if key in v]
            if values:
                flat[f"audit/max/{key}"] = max(values)
        self.tracker.log_metrics(flat, step=step)
        self.tracker.log_json(scores, "audit/membership_inference.json")

    def finished(self, outcome: FederationOutcome) -> None:
        """The metrics plot, then the run marked finished."""
        metric = outcome.champion_metric
        plotted = [metric, "loss"] if metric != "loss" else ["loss"]
        figure = metrics_figure(outcome.history, plotted, outcome.eligible)
        self.tracker.log_figure(figure, "plots/metrics_by_round.png")
        self.tracker.finish()

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


def _failure_reason(error: BaseException) -> str:
    # Our own errors say what went wrong without data; others may quote values, so only their type.
    reason = str(error) if isinstance(error, FedflowError) else "see the Prefect log of this run"
    return f"{type(error).__name__}: {reason}"
