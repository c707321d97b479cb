"""MLflow: one experiment per domain, one run per federation, one model version per round."""

import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from fedflow.errors import FedflowError
from fedflow.tabular import Preprocessor, example_frame
from fedflow.tasks import TABULAR, TEXT_GENERATION, get_task

PYFUNC_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
PYFUNC_LANGUAGE_MODEL_CODE = Path(__file__).with_name("pyfunc_language_model.py")
# A language version takes prompts and returns their continuations; `max_new_tokens` is a parameter.
LANGUAGE_EXAMPLE = pd.DataFrame({"prompt": ["To be, or not to be"]})
LANGUAGE_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string, "prompt")]),
    outputs=Schema([ColSpec(DataType.string, "generated")]),
    params=ParamSchema([ParamSpec("max_new_tokens", DataType.long, 40)]),
)
CHAMPION_ALIAS = "champion"
# Only the alias holder carries this tag; every version carries its ranking metric and value.
CHAMPION_TAG = "champion"
RANKING_METRIC_TAG = "ranking_metric"
RANKING_VALUE_TAG = "ranking_value"
# The tags older fedflow versions left on champions (read as a ranking, removed when the alias moves).
LEGACY_CHAMPION_TAGS = ("champion_metric", "champion_value")
# A champion's description ends with this note, which leaves with the alias.
CHAMPION_NOTE = "\n\nChampion:"
SELECTION_CAVEAT = "chosen on the sites' hold-out metrics, the same ones reported: optimistic"
MODEL_TYPE = "federated-global"
MAX_SITES_TEXT = 4000  # a version tag holds 5000 characters
MAX_SITES_DESCRIBED = 1000  # a description holds 5000, with the rest of its text
# MLflow's hints about integer columns in the input example (ours are declared on purpose).
warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else a SQLite file `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def artifact_root() -> Path:
    """Where local runs keep artifacts: `FEDFLOW_ARTIFACT_ROOT` or `./mlartifacts`."""
    return Path(os.environ.get("FEDFLOW_ARTIFACT_ROOT") or Path.cwd() / "mlartifacts").resolve()


def registered_model_name(domain: str) -> str:
    """The registry name of a domain's global model, e.g. `healthcare-global`."""
    return f"{domain}-global"


def _experiment_id(domain: str) -> str:
    experiment = mlflow.get_experiment_by_name(domain)
    if experiment is not None:
        return str(experiment.experiment_id)
    uri = tracking_uri()
    location = None
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        location = (artifact_root() / domain).as_uri()
    return str(mlflow.create_experiment(domain, artifact_location=location))


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["mlflow", "torch", "safetensors", "numpy", "pandas", "pydantic", "fedflow"]
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


_REQUIREMENTS = _requirements()


def _data_type(column: pd.Series) -> DataType:
    if pd.api.types.is_float_dtype(column):
        return DataType.double
    if pd.api.types.is_integer_dtype(column):
        return DataType.long
    return DataType.string


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Raw site columns in, the task's prediction columns out.

    Numeric columns are typed "any": sites send integers (age) or floats with gaps (NaN), and
    MLflow refuses int64 -> double; the model's preprocessing checks they are numeric.
    """
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(AnyType() if pd.api.types.is_numeric_dtype(example[name]) else DataType.string, name)
        for name in example.columns
    ]
    outputs: list[ColSpec | TensorSpec] = [ColSpec(_data_type(output[name]), name) for name in output.columns]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


@dataclass(frozen=True)
class Serving:
    """How a registered version is served: its pyfunc code, its input example and its signature."""

    code: Path
    example: Callable[[Preprocessor], pd.DataFrame]
    signature: Callable[[pd.DataFrame, pd.DataFrame], ModelSignature]


# One entry per `TaskKind.serving`.
SERVING = {
    TABULAR: Serving(PYFUNC_MODEL_CODE, example_frame, _signature),
    TEXT_GENERATION: Serving(
        PYFUNC_LANGUAGE_MODEL_CODE, lambda _: LANGUAGE_EXAMPLE, lambda _example, _output: LANGUAGE_SIGNATURE
    ),
}


@dataclass(frozen=True)
class RoundVersion:
    """A round's global model as the registry gets it: weights, preprocessing, how to rebuild it."""

    round_number: int
    strategy: str
    weights_payload: bytes
    preprocessor: Preprocessor
    model_code: Path  # the domain's model.py, shipped with the version
    model_options: dict[str, Any]
    missing_codes: dict[str, list[float]]
    task: str
    classes: list[str]
    output_dim: int
    adapter: Any = None  # language: the fine-tuned model, whose peft adapter folder goes along
    tags: dict[str, str] = field(default_factory=dict)
    ranking_metric: str = ""  # the metric champions are ranked on, e.g. "roc_auc"
    ranking_value: float = math.nan  # its value this round (the sites' hold-out mean)
    sites: tuple[str, ...] = ()  # the sites whose updates made this model
    epsilon: float | None = None  # privacy spent so far, when differential privacy is on
    run_name: str = ""  # the federation's MLflow run name (the tracker's own when empty)


@dataclass(frozen=True)
class ChampionSource:
    """Where the domain's champion version came from: its ranking value and the run that made it."""

    version: str
    metric: str
    value: float
    run_id: str
    run_name: str
    round_number: int | None
    this_run: bool  # False when an earlier federation's version kept (or holds) the alias

    def summary(self) -> str:
        """One line for a terminal, e.g. `version 5 (roc_auc 0.8123), round 7 of run <name>`."""
        score = f"{self.metric} {self.value:.4f}" if self.metric else "no ranking value"
        round_text = f"round {self.round_number} of " if self.round_number is not None else ""
        origin = "this run" if self.this_run else f"an earlier run, {self.run_name or self.run_id}"
        return f"version {self.version} ({score}), {round_text}{origin}"


def _sites_text(sites: tuple[str, ...], *, separator: str = ",", limit: int = MAX_SITES_TEXT) -> str:
    # Thousands of simulated clients would overflow a tag (5000 characters): count them instead.
    joined = separator.join(sites)
    return joined if len(joined) <= limit else f"{len(sites)} sites"


def _ranking_tags(metric: str, value: float) -> dict[str, str]:
    return {RANKING_METRIC_TAG: metric, RANKING_VALUE_TAG: repr(float(value))}


def _version_tags(version: RoundVersion, *, run_id: str, run_name: str) -> dict[str, str]:
    """What a version (and its logged model) is tagged with; the round's own tags come last."""
    tags = {
        "run_id": run_id,
        "run_name": run_name,
        "round": str(version.round_number),
        "strategy": version.strategy,
    }
    if version.sites:
        tags["sites"] = _sites_text(version.sites)
        tags["sites.count"] = str(len(version.sites))
    if version.epsilon is not None:
        tags["epsilon"] = repr(float(version.epsilon))
    if version.ranking_metric:
        tags.update(_ranking_tags(version.ranking_metric, version.ranking_value))
    return {**tags, **version.tags}


def _ranking_sentence(metric: str, value: float) -> str:
    shown = "not ranked (not every site evaluated this round)" if math.isnan(value) else f"{value:.4f}"
    return f"Ranking metric {metric} (the sites' hold-out mean): {shown}."


def _version_description(version: RoundVersion, *, run_id: str, run_name: str) -> str:
    """A version's description: which round of which federation, who trained it, how it ranks."""
    lines = [
        f"Round {version.round_number} global model of the {version.strategy} federation "
        f"`{run_name or run_id}` (MLflow run {run_id})."
    ]
    if version.sites:
        named = _sites_text(version.sites, separator=", ", limit=MAX_SITES_DESCRIBED)
        lines.append(f"Trained by {len(version.sites)} site(s): {named}.")
    if version.epsilon is not None:
        lines.append(f"Differential privacy: ε = {version.epsilon:.4g} spent so far.")
    if version.ranking_metric:
        lines.append(_ranking_sentence(version.ranking_metric, version.ranking_value))
    return " ".join(lines)


def _champion_note(model_name: str, metric: str, value: float) -> str:
    return (
        f"{CHAMPION_NOTE} this version holds the `{CHAMPION_ALIAS}` alias, the best {metric} "
        f"({value:.4f}) of {model_name} across runs, {SELECTION_CAVEAT}."
    )


def _without_champion_note(description: str) -> str:
    return description.partition(CHAMPION_NOTE)[0]


def _registered_model_description(domain: str) -> str:
    """What the registered model is, how its versions come about and how the champion is chosen."""
    return (
        f"The federated global model of the `{domain}` domain: each site trains on its own rows "
        "and only model updates leave it. Every round of every federation (one MLflow run in the "
        f"`{domain}` experiment) registers one version from that round's logged model, tagged "
        "with its round, strategy, the sites that trained, ε when differential privacy is on, the "
        "run it came from (`run_id`, `run_name`) and its ranking metric and value "
        f"(`{RANKING_METRIC_TAG}`, `{RANKING_VALUE_TAG}`).\n\n"
        f"The `{CHAMPION_ALIAS}` alias marks the best version across runs on the ranking metric; "
        f"only that version carries the `{CHAMPION_TAG}` tag. The champion is {SELECTION_CAVEAT}: "
        "the hold-out that picks it also reports its score, so that score is biased upwards; "
        "judge it on data no round has seen."
    )


def _ranking(tags: dict[str, str]) -> tuple[str, float] | None:
    """A version's ranking metric and value (versions of older fedflow: their champion tags)."""
    for metric_key, value_key in ((RANKING_METRIC_TAG, RANKING_VALUE_TAG), LEGACY_CHAMPION_TAGS):
        if metric_key in tags and value_key in tags:
            return tags[metric_key], float(tags[value_key])
    return None


def _write_version_files(files: Path, version: RoundVersion, *, domain: str) -> None:
    """The files a version ships: weights, preprocessing, metadata, and a language adapter."""
    preprocessor = version.preprocessor
    meta = {
        "domain": domain,
        "round": version.round_number,
        "input_dim": len(preprocessor.feature_names),
        "output_dim": version.output_dim,
        "task": version.task,
        "classes": version.classes,
        "model_options": version.model_options,
        "missing_codes": version.missing_codes,
        "feature_names": preprocessor.feature_names,
    }
    (files / "weights.safetensors").write_bytes(version.weights_payload)
    (files / "preprocessor.json").write_text(preprocessor.model_dump_json(indent=1))
    (files / "meta.json").write_text(json.dumps(meta, indent=1))
    if version.adapter is not None:
        version.adapter.peft.save_pretrained(str(files / "adapter"))


def _save_pyfunc(local: Path, files: Path, version: RoundVersion, mlflow_model: Model) -> None:
    """Save the round's pyfunc model into `local` (no re-load, no requirement inference)."""
    kind = get_task(version.task)
    serving = SERVING[kind.serving]
    example = serving.example(version.preprocessor)
    output = kind.example_output(version.classes, len(example))
    artifacts = {
        "weights": str(files / "weights.safetensors"),
        "preprocessor": str(files / "preprocessor.json"),
        "meta": str(files / "meta.json"),
        "model_code": str(version.model_code),
    }
    if (files / "adapter").is_dir():
        artifacts["adapter"] = str(files / "adapter")
    # No stderr redirection or warning filters here: this runs on the tracking thread and both
    # are process-wide (MLflow's input-example hints are filtered once, at import).
    mlflow.pyfunc.save_model(
        path=local,
        python_model=str(serving.code),
        artifacts=artifacts,
        signature=serving.signature(example, output),
        input_example=example,
        # Declared rather than inferred: inference re-loads the model in a subprocess (~2 s).
        pip_requirements=_REQUIREMENTS,
        mlflow_model=mlflow_model,
    )


class FederationTracker:
    """Logs one federation as one MLflow run (the run stays active in the flow's thread)."""

    def __init__(self, *, domain: str, run_id: str, experiment_id: str, run_name: str = "") -> None:
        self.domain = domain
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.run_name = run_name
        self.model_name = registered_model_name(domain)
        self.client = MlflowClient()
        self.champion: tuple[str, float] | None = None
        self._registered = False
        self._round_models: dict[int, str] = {}  # round -> its logged model's id
        self._descriptions: dict[str, str] = {}  # version -> its description, as registered
        self._ranked: set[str] = set()  # versions registered with their ranking tags

    @classmethod
    def start(
        cls, *, domain: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> "FederationTracker":
        """Create (or reuse) the domain's experiment and start the federation's run."""
        mlflow.set_tracking_uri(tracking_uri())
        experiment_id = _experiment_id(domain)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        return cls(
            domain=domain, run_id=run.info.run_id, experiment_id=experiment_id, run_name=run.info.run_name
        )

    @classmethod
    def resume(cls, *, domain: str, run_id: str) -> "FederationTracker":
        """Reopen the MLflow run of a federation that is being resumed."""
        mlflow.set_tracking_uri(tracking_uri())
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tag("fedflow.resumed", "true")
        return cls(
            domain=domain,
            run_id=run.info.run_id,
            experiment_id=str(run.info.experiment_id),
            run_name=run.info.run_name,
        )

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        """Metrics at `step` (the round); NaN values are left out.

        Metrics at the step of a round whose model was registered are linked to that round's
        logged model too, so the Models tab shows each model's scores.
        """
        # The client API, not the fluent one: rounds are logged from a background thread.
        now = int(time.time() * 1000)
        model_id = self._round_models.get(step)
        values = [
            Metric(k, float(v), now, step, model_id=model_id) for k, v in metrics.items() if not math.isnan(v)
        ]
        for start in range(0, len(values), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=values[start : start + 1000])

    def log_json(self, data: Any, artifact_file: str) -> None:
        """A JSON artifact of the run."""
        mlflow.log_dict(data, artifact_file)

    def log_sites_table(self, table: pd.DataFrame) -> None:
        """Each site's row count and label mix, as an MLflow table (`sites/sites.json`)."""
        mlflow.log_table(table, "sites/sites.json")

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as an image artifact."""
        import matplotlib.pyplot as plt

        mlflow.log_figure(figure, artifact_file)
        plt.close(figure)

    def tags(self) -> dict[str, str]:
        """The run's tags as stored."""
        return dict(self.client.get_run(self.run_id).data.tags)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags of the run."""
        mlflow.set_tags(tags)

    def register_round(self, *, version: RoundVersion) -> str:
        """Log the round's global model as an MLflow logged model and register it as a new version.

        Language models also get `adapter`, the fine-tuned model whose peft adapter folder is
        saved beside the weights (loadable with `peft` directly), and generate text when loaded.
        """
        run_name = version.run_name or self.run_name
        tags = _version_tags(version, run_id=self.run_id, run_name=run_name)
        with tempfile.TemporaryDirectory() as folder:
            files = Path(folder)
            _write_version_files(files, version, domain=self.domain)
            model_id = self._log_model(version, files, tags=tags)
        description = _version_description(version, run_id=self.run_id, run_name=run_name)
        created = self.client.create_model_version(
            self.model_name,
            f"models:/{model_id}",
            run_id=self.run_id,
            tags=tags,
            description=description,
            model_id=model_id,
        )
        number = str(created.version)
        # What `mlflow.register_model` records: the logged model's page links to its version.
        link = [{"name": self.model_name, "version": number}]
        self.client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(link)})
        self._round_models[version.round_number] = model_id
        self._descriptions[number] = description
        if version.ranking_metric:
            self._ranked.add(number)
        return number

    def _log_model(self, version: RoundVersion, files: Path, *, tags: dict[str, str]) -> str:
        """Create the round's logged model (an output of the run at step = round); return its id.

        Built from files saved here rather than with `log_model`, which also loads the model to
        test its serving input and scans the run's whole metric history to link metrics to it —
        together ~80 % of a heart-disease round. Metrics are linked as they are logged instead
        (`log_metrics`). The registered version loads the same way
        (`mlflow.pyfunc.load_model("models:/<domain>-global/<version>")`, tested).
        """
        self._ensure_registered_model()
        params = {key: tags[key] for key in ("round", "strategy", "sites.count", "epsilon") if key in tags}
        model = self.client.create_logged_model(
            self.experiment_id,
            name=f"{self.model_name}-round-{version.round_number}",
            source_run_id=self.run_id,
            tags=tags,
            params=params,
            model_type=MODEL_TYPE,
        )
        try:
            self.client.log_outputs(
                self.run_id, [LoggedModelOutput(model.model_id, step=version.round_number)]
            )
            described = Model(
                artifact_path=model.artifact_location,
                run_id=self.run_id,
                model_uuid=model.model_id,
                model_id=model.model_id,
            )
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / "model"
                _save_pyfunc(local, files, version, described)
                self.client.log_model_artifacts(model.model_id, str(local))
        except BaseException:
            self.client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        return str(model.model_id)

    def _ensure_registered_model(self) -> None:
        """Create the domain's registered model, or bring an existing one's description up to date."""
        if self._registered:
            return
        description = _registered_model_description(self.domain)
        try:
            self.client.create_registered_model(self.model_name, description=description)
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            self.client.update_registered_model(self.model_name, description=description)
        self._registered = True

    def offer_champion(
        self, version: str, value: float, *, metric: str, higher_is_better: bool = True
    ) -> bool:
        """Move the domain's `champion` alias to `version` if it beats the current champion.

        The champion is the best version of the domain on `metric`, across runs: a new run takes
        the alias only with a better hold-out value than the version that holds it. A version
        registered without its ranking gets it here (NaN: not offered), so every version has one.
        """
        if version not in self._ranked:
            self._record_ranking(version, metric, value)
        if math.isnan(value):
            return False
        if self.champion is None:
            self.champion = self._current_champion(metric)
        better = (
            self.champion is None
            or (higher_is_better and value > self.champion[1])
            or (not higher_is_better and value < self.champion[1])
        )
        if better:
            self._move_champion(version, value, metric)
            self.champion = (version, value)
        return better

    def _record_ranking(self, version: str, metric: str, value: float) -> None:
        for key, text in _ranking_tags(metric, value).items():
            self.client.set_model_version_tag(self.model_name, version, key, text)
        if version in self._descriptions:
            described = f"{self._descriptions[version]} {_ranking_sentence(metric, value)}"
            self.client.update_model_version(self.model_name, version, description=described)
            self._descriptions[version] = described
        self._ranked.add(version)

    def _move_champion(self, version: str, value: float, metric: str) -> None:
        """Point the alias at `version`; the champion tag and note go with it, off the former holder."""
        former = self._holder()
        self.client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version)
        self.client.set_model_version_tag(self.model_name, version, CHAMPION_TAG, "true")
        description = self._descriptions.get(version)
        if description is None:
            description = self.client.get_model_version(self.model_name, version).description or ""
        noted = _without_champion_note(description) + _champion_note(self.model_name, metric, value)
        self.client.update_model_version(self.model_name, version, description=noted)
        if former is None or str(former.version) == version:
            return
        for key in (CHAMPION_TAG, *LEGACY_CHAMPION_TAGS):
            if key in former.tags:
                self.client.delete_model_version_tag(self.model_name, str(former.version), key)
        if CHAMPION_NOTE in (former.description or ""):
            plain = _without_champion_note(former.description)
            self.client.update_model_version(self.model_name, str(former.version), description=plain)

    def _holder(self) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except mlflow.exceptions.MlflowException:
            return None

    def _current_champion(self, metric: str) -> tuple[str, float] | None:
        """The version holding the alias and its value, if it was ranked on the same metric."""
        holder = self._holder()
        ranking = _ranking(dict(holder.tags)) if holder is not None else None
        if holder is None or ranking is None or ranking[0] != metric or math.isnan(ranking[1]):
            return None
        return str(holder.version), ranking[1]

    def champion_source(self) -> ChampionSource | None:
        """Where the domain's champion came from (read from the registry), or None without one."""
        holder = self._holder()
        if holder is None:
            return None
        tags = dict(holder.tags)
        metric, value = _ranking(tags) or ("", math.nan)
        run_id = tags.get("run_id") or holder.run_id or ""
        run_name = tags.get("run_name") or self._run_name_of(run_id)
        round_text = tags.get("round", "")
        return ChampionSource(
            version=str(holder.version),
            metric=metric,
            value=value,
            run_id=run_id,
            run_name=run_name,
            round_number=int(round_text) if round_text.isdigit() else None,
            this_run=run_id == self.run_id,
        )

    def _run_name_of(self, run_id: str) -> str:
        try:
            return str(self.client.get_run(run_id).info.run_name or "")
        except mlflow.exceptions.MlflowException:
            return ""

    def finish(self, *, failure: str | None = None) -> None:
        """End the run: FINISHED, or FAILED with the reason as a tag."""
        if failure is not None:
            mlflow.set_tag("failure_reason", failure[:4900])
        mlflow.end_run(status="FAILED" if failure is not None else "FINISHED")


@dataclass(frozen=True)
class Champion:
    """The domain's champion model version: its weights (safetensors) and preprocessing."""

    version: str
    weights_payload: bytes
    preprocessor: Preprocessor
    tags: dict[str, str]


def load_champion(domain: str) -> Champion:
    """Read the version holding the domain's `champion` alias (weights and preprocessor files only)."""
    client = MlflowClient()
    name = registered_model_name(domain)
    try:
        holder = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException as error:
        raise FedflowError(
            f"{name} has no {CHAMPION_ALIAS!r} version to continue from in {tracking_uri()}; "
            "run a federation first or start from scratch"
        ) from error
    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{holder.version}", dst_path=folder
            )
        )
        weights = (local / "artifacts" / "weights.safetensors").read_bytes()
        preprocessor = Preprocessor.model_validate_json(
            (local / "artifacts" / "preprocessor.json").read_text()
        )
    return Champion(
        version=str(holder.version),
        weights_payload=weights,
        preprocessor=preprocessor,
        tags=dict(holder.tags),
    )
