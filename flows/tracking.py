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
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec

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


class FederationTracker:
    """Logs one federation as one MLflow run (the run stays active in the flow's thread)."""

    def __init__(self, *, domain: str, run_id: str, experiment_id: str) -> None:
        self.domain = domain
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.model_name = registered_model_name(domain)
        self.client = MlflowClient()
        self.champion: tuple[str, float] | None = None
        self._registered = False

    @classmethod
    def start(
        cls, *, domain: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> "FederationTracker":
        """Create (or reuse) the domain's experiment and start the federation's run."""
        mlflow.set_tracking_uri(tracking_uri())
        experiment_id = _experiment_id(domain)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        return cls(domain=domain, run_id=run.info.run_id, experiment_id=experiment_id)

    @classmethod
    def resume(cls, *, domain: str, run_id: str) -> "FederationTracker":
        """Reopen the MLflow run of a federation that is being resumed."""
        mlflow.set_tracking_uri(tracking_uri())
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tag("fedflow.resumed", "true")
        return cls(domain=domain, run_id=run.info.run_id, experiment_id=str(run.info.experiment_id))

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        """Metrics at `step` (the round); NaN values are left out."""
        # The client API, not the fluent one: rounds are logged from a background thread.
        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, step) for k, v in metrics.items() if not math.isnan(v)]
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
        """Log the round's global model as a pyfunc and register it as a new version.

        Language models also get `adapter`, the fine-tuned model whose peft adapter folder is
        saved beside the weights (loadable with `peft` directly), and generate text when loaded.
        """
        round_number, preprocessor, task = version.round_number, version.preprocessor, version.task
        classes, adapter = version.classes, version.adapter
        meta = {
            "domain": self.domain,
            "round": round_number,
            "input_dim": len(preprocessor.feature_names),
            "output_dim": version.output_dim,
            "task": task,
            "classes": classes,
            "model_options": version.model_options,
            "missing_codes": version.missing_codes,
            "feature_names": preprocessor.feature_names,
        }
        kind = get_task(task)
        serving = SERVING[kind.serving]
        example = serving.example(preprocessor)
        output = kind.example_output(classes, len(example))
        with tempfile.TemporaryDirectory() as folder:
            files = Path(folder)
            (files / "weights.safetensors").write_bytes(version.weights_payload)
            (files / "preprocessor.json").write_text(preprocessor.model_dump_json(indent=1))
            (files / "meta.json").write_text(json.dumps(meta, indent=1))
            if adapter is not None:
                adapter.peft.save_pretrained(str(files / "adapter"))
            # No stderr redirection or warning filters here: this runs on the tracking thread and
            # both are process-wide (MLflow's input-example hints are filtered once, at import).
            source = self._log_model(
                round_number, files, version.model_code, example, output, serving=serving
            )
            tags = {
                "run_id": self.run_id,
                "round": str(round_number),
                "strategy": version.strategy,
                **version.tags,
            }
            created = self.client.create_model_version(self.model_name, source, run_id=self.run_id, tags=tags)
        return str(created.version)

    def _log_model(
        self,
        round_number: int,
        files: Path,
        model_code: Path,
        example: pd.DataFrame,
        output: pd.DataFrame,
        *,
        serving: Serving,
    ) -> str:
        """Save the pyfunc model into the run's artifacts; return its `runs:/` source.

        Saved and uploaded rather than `log_model`-ed: `log_model` also loads the model to test its
        serving input and scans the run's whole metric history to link metrics to it — together
        ~80 % of a heart-disease round. The registered version loads the same way
        (`mlflow.pyfunc.load_model("models:/<domain>-global/<version>")`, tested).
        """
        if not self._registered:
            try:
                self.client.create_registered_model(self.model_name)
            except mlflow.exceptions.MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            self._registered = True
        artifact_path = f"global-round-{round_number}"
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / "model"
            artifacts = {
                "weights": str(files / "weights.safetensors"),
                "preprocessor": str(files / "preprocessor.json"),
                "meta": str(files / "meta.json"),
                "model_code": str(model_code),
            }
            if (files / "adapter").is_dir():
                artifacts["adapter"] = str(files / "adapter")
            mlflow.pyfunc.save_model(
                path=local,
                python_model=str(serving.code),
                artifacts=artifacts,
                signature=serving.signature(example, output),
                input_example=example,
                # Declared rather than inferred: inference re-loads the model in a subprocess (~2 s).
                pip_requirements=_REQUIREMENTS,
            )
            self.client.log_artifacts(self.run_id, str(local), artifact_path)
        return f"runs:/{self.run_id}/{artifact_path}"

    def offer_champion(
        self, version: str, value: float, *, metric: str, higher_is_better: bool = True
    ) -> bool:
        """Move the domain's `champion` alias to `version` if it beats the current champion.

        The champion is the best version of the domain on `metric`, across runs: a new run takes
        the alias only with a better hold-out value than the version that holds it.
        """
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
            self.champion = (version, value)
            self.client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version)
            self.client.set_model_version_tag(self.model_name, version, "champion_metric", metric)
            self.client.set_model_version_tag(self.model_name, version, "champion_value", repr(value))
        return better

    def _current_champion(self, metric: str) -> tuple[str, float] | None:
        """The version holding the alias and its value, if it was ranked on the same metric."""
        try:
            holder = self.client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except mlflow.exceptions.MlflowException:
            return None
        if holder.tags.get("champion_metric") != metric or "champion_value" not in holder.tags:
            return None
        return str(holder.version), float(holder.tags["champion_value"])

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
