"""`fedflow …`: run a federation, validate a site's file, list domains, open the UIs.

Prefect, MLflow and GX are imported inside the commands that need them, so that `fedflow
--help` stays fast and the engine stays free of them.
"""

import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedflow.config import FederationConfig

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from domains import Domain
    from fedflow.domain import DomainSpec
    from fedflow.site_policy import SitePolicy
    from fedflow.validation_summary import CheckResult
    from flows.compare import Comparison
    from flows.task_runners import TaskRunnerConfig
    from flows.ui_server import ServerSpec, UiServer

app = typer.Typer(help="Federated learning across organisations.", no_args_is_help=True)
# Set by commands that only read and print: the interpreter's teardown of GX, pandas and the
# rest (~0.5-1 s) is then skipped. Only `main` (the console script) acts on it, never CliRunner.
_EXIT_WITHOUT_TEARDOWN = threading.Event()
domains_app = typer.Typer(help="Domain templates.", invoke_without_command=True)
app.add_typer(domains_app, name="domains")
console = Console()
err = Console(stderr=True)


def _quiet_orchestration_logs() -> None:
    """Keep Prefect's per-task lines out of the terminal (they still reach the Prefect UI)."""
    for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "WARNING")


def _start_orchestration(verbose: bool) -> None:
    """Before Prefect is imported: its log settings, no telemetry, and its temporary server booting.

    The server boots on the other core while torch, MLflow and GX are imported (a no-op when
    `PREFECT_API_URL` names a running server, or when it was already started).
    """
    if not verbose:
        _quiet_orchestration_logs()  # Prefect reads its logging settings once, when imported
    import flows  # noqa: F401  (applies the no-telemetry defaults before Prefect and MLflow load)
    from fedflow.errors import FedflowError
    from flows.api_warmup import warm_up_api

    try:
        warm_up_api()  # stopped at exit, whatever happens (flows/local_server.py)
    except FedflowError as error:
        raise _fail(str(error)) from error


def _orchestration_ready() -> None:
    """Wait for the temporary API `_start_orchestration` launched; one clear line if it cannot start."""
    from fedflow.errors import FedflowError
    from flows.api_warmup import api_ready

    try:
        api_ready()
    except FedflowError as error:
        raise _fail(str(error)) from error


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.4f}"


# `fedflow run`'s options (README documents them; fedflow/cli_overrides.py maps each to its config key).
Rounds = Annotated[int | None, typer.Option(help="Federated rounds.")]
StrategyName = Annotated[
    str | None, typer.Option(help="Aggregation strategy: fedavg, fedavgm, fedprox, scaffold, fedadam, ...")
]
StrategyOptions = Annotated[
    list[str] | None, typer.Option("--strategy-option", "-o", help="Strategy option KEY=VALUE (repeatable).")
]
Seed = Annotated[int | None, typer.Option(help="Seed of the split, sampling and training.")]
SitesFraction = Annotated[float | None, typer.Option(help="Fraction of sites sampled per round.")]
MinSites = Annotated[int | None, typer.Option(help="Stop when fewer sites than this remain.")]
MinSitesPerRound = Annotated[int | None, typer.Option(help="Sample at least this many sites.")]
LocalEpochs = Annotated[int | None, typer.Option(help="Local epochs per round.")]
LocalSteps = Annotated[
    int | None, typer.Option(help="Exactly this many local steps per round instead of epochs.")
]
BatchSize = Annotated[int | None, typer.Option(help="Local batch size.")]
LearningRate = Annotated[float | None, typer.Option("--lr", help="Local learning rate.")]
Optimizer = Annotated[str | None, typer.Option(help="Local optimiser: sgd or adam.")]
PersonalizationSteps = Annotated[
    int | None, typer.Option(help="Also fine-tune k local steps per site and report personalised metrics.")
]
SitesFile = Annotated[
    Path | None, typer.Option(help="YAML mapping site -> data file, replacing the domain's.")
]
PrivacyMode = Annotated[
    str | None, typer.Option(help="Client-level DP: central or distributed (default off).")
]
ClipNorm = Annotated[float | None, typer.Option(help="DP: L2 bound C of each site's delta.")]
NoiseMultiplier = Annotated[float | None, typer.Option(help="DP: noise sd on the sum is sigma * C.")]
TargetEpsilon = Annotated[float | None, typer.Option(help="DP: end the run before exceeding this.")]
DpSgdNoise = Annotated[
    float | None, typer.Option(help="Example-level DP-SGD at every site with this noise multiplier.")
]
DpSgdClip = Annotated[
    float | None, typer.Option(help="DP-SGD: per-example gradient norm bound (default 1.0; turns DP-SGD on).")
]
CodecName = Annotated[str | None, typer.Option(help="Uplink compression: none, fp16, int8 or topk.")]
CodecOptions = Annotated[
    list[str] | None,
    typer.Option("--codec-option", help="Codec option KEY=VALUE, e.g. fraction=0.02 (repeatable)."),
]
SecureAggregation = Annotated[
    bool | None,
    typer.Option(
        "--secure-aggregation/--no-secure-aggregation",
        help="Mask the updates so that the coordinator sees only their sum (Bonawitz et al.).",
    ),
]
MaxDropouts = Annotated[
    int | None, typer.Option(help="Secure aggregation: sites that may drop after masking.")
]
Audit = Annotated[
    bool | None, typer.Option("--audit/--no-audit", help="Membership-inference audit after training.")
]
AuditShadows = Annotated[
    int | None, typer.Option(help="Audit: shadow models per site for LiRA (even; 0: loss attacks only).")
]
RunName = Annotated[str | None, typer.Option(help="Name of the MLflow run / federation id.")]
TaskRunner = Annotated[
    str, typer.Option(help="Where site tasks run: threads (this process) or dask (a Dask cluster).")
]
DaskAddress = Annotated[
    str | None, typer.Option(help="Dask: scheduler of a running cluster (default: a local one).")
]
DaskWorkers = Annotated[
    int | None, typer.Option(help="Dask: worker processes of the local cluster (default: cores).")
]
ConfigKeys = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        help="Any config key SECTION.KEY=VALUE (repeatable), e.g. -c local.epochs=2 -c "
        "strategy.options.mu=0.1; VALUE is read as YAML: 3, 0.1, true, null, 'text', [a, b].",
    ),
]
Verbose = Annotated[bool, typer.Option(help="Show Prefect's task log in the terminal.")]


@app.command()
def run(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(help="Domain template, e.g. healthcare (see `fedflow domains`).")],
    rounds: Rounds = None,
    strategy: StrategyName = None,
    strategy_option: StrategyOptions = None,
    seed: Seed = None,
    sites_fraction: SitesFraction = None,
    min_sites: MinSites = None,
    min_sites_per_round: MinSitesPerRound = None,
    local_epochs: LocalEpochs = None,
    local_steps: LocalSteps = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    optimizer: Optimizer = None,
    personalization_steps: PersonalizationSteps = None,
    sites: SitesFile = None,
    dp: PrivacyMode = None,
    clip_norm: ClipNorm = None,
    noise_multiplier: NoiseMultiplier = None,
    target_epsilon: TargetEpsilon = None,
    dp_sgd_noise: DpSgdNoise = None,
    dp_sgd_clip: DpSgdClip = None,
    codec: CodecName = None,
    codec_option: CodecOptions = None,
    secure_aggregation: SecureAggregation = None,
    max_dropouts: MaxDropouts = None,
    audit: Audit = None,
    audit_shadows: AuditShadows = None,
    run_name: RunName = None,
    task_runner: TaskRunner = "threads",
    dask_address: DaskAddress = None,
    dask_workers: DaskWorkers = None,
    config: ConfigKeys = None,
    verbose: Verbose = False,
) -> None:
    """Run a federation of the domain's sites, with its defaults and these overrides."""
    _start_orchestration(verbose)
    loaded = _known_domain(domain)
    if sites is not None:
        _check_sites_file(loaded, sites)
    federation = run_config(loaded.spec, ctx.params)
    runner = _task_runner_config(task_runner, dask_address, dask_workers)
    sites_file = str(sites.resolve()) if sites else None
    _run_federation(
        domain, federation, sites_file=sites_file, run_name=run_name, verbose=verbose, runner=runner
    )


def _known_domain(domain: str) -> "Domain":
    from domains import available_domains, load_domain

    if domain not in available_domains():
        raise _fail(f"no domain {domain!r}; available: {', '.join(available_domains())}")
    return load_domain(domain)


def _check_sites_file(loaded: "Domain", sites: Path) -> None:
    """Refuse a --sites mapping that names a site the domain does not have."""
    from domains.yaml_files import load_site_mapping
    from fedflow.errors import FedflowError

    try:
        unknown = sorted(set(load_site_mapping(sites)) - set(loaded.spec.site_names))
    except FedflowError as error:
        raise _fail(f"--sites: {error}") from error
    if unknown:
        # A misspelt site would silently fall back to the template's own data file.
        raise _fail(
            f"--sites: {sites} names sites {unknown} that {loaded.name} does not have: "
            f"{loaded.spec.site_names}"
        )


def _task_runner_config(kind: str, address: str | None, workers: int | None) -> "TaskRunnerConfig":
    if kind != "dask" and (address or workers):
        raise _fail("--dask-address and --dask-workers need --task-runner dask")
    from fedflow.errors import validation_messages
    from flows.task_runners import TaskRunnerConfig

    try:
        return TaskRunnerConfig.model_validate({"kind": kind, "address": address, "workers": workers})
    except ValidationError as error:
        raise _fail(f"--task-runner/--dask-*: {'; '.join(validation_messages(error))}") from error


def run_config(spec: "DomainSpec", params: dict[str, Any]) -> FederationConfig:
    """The domain's federation config with `fedflow run`'s flags and `-c` overrides applied.

    `params` are the command's parameters by name; every rule lives in the config, not here.
    """
    from fedflow.cli_overrides import run_overrides
    from fedflow.errors import ConfigError
    from fedflow.tasks import get_task

    try:
        return spec.federation.with_overrides(run_overrides(params), task=get_task(spec.task))
    except ConfigError as error:
        raise _fail(f"invalid options: {error}") from error


def _run_federation(
    domain: str,
    config: "FederationConfig",
    *,
    sites_file: str | None,
    run_name: str | None,
    verbose: bool,
    completed: int = 0,
    runner: "TaskRunnerConfig | None" = None,
) -> None:
    """Run (or resume) the coordinator flow with a progress bar, then print the summary."""
    from fedflow.errors import FedflowError

    _start_orchestration(verbose)
    from flows.coordinator import SiteSelection, federated_training
    from flows.progress import RoundEvent, subscribe

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    console.print(
        f"[bold]fedflow[/] {domain}: {config.rounds} rounds of {config.strategy.name}, seed {config.seed}"
    )
    progress = Progress(
        TextColumn("[bold blue]round"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bar = progress.add_task("rounds", total=config.rounds, completed=completed, status="validating sites…")

    def on_round(event: RoundEvent) -> None:
        value = event.metrics.get(event.champion_metric, math.nan)
        dropped = f", dropped {','.join(event.dropped)}" if event.dropped else ""
        spent = f", ε {event.epsilon:.2f}" if event.epsilon is not None else ""
        progress.update(
            bar, completed=event.round, status=f"{event.champion_metric} {_fmt(value)}{spent}{dropped}"
        )

    _orchestration_ready()
    coordinator = federated_training
    if runner is not None and runner.kind != "threads":
        from flows.task_runners import site_task_runner

        try:
            coordinator = federated_training.with_options(task_runner=site_task_runner(runner))
        except FedflowError as error:
            raise _fail(str(error)) from error
    unsubscribe = subscribe(on_round)
    try:
        with progress:
            sites = SiteSelection(files=sites_file)
            result = coordinator(domain=domain, federation=config, sites=sites, run_name=run_name)
    except FedflowError as error:
        raise _fail(str(error)) from error
    finally:
        unsubscribe()
    _print_summary(result)


def _print_summary(result: Any) -> None:
    names = [n for n in result.final_metrics if not n.startswith("personalised/")]
    table = Table(title=f"{result.domain}: hold-out metrics of the final global model")
    table.add_column("site")
    for name in names:
        table.add_column(name.replace("balanced_accuracy", "bal. accuracy"), justify="right")
    for site, values in result.per_site.items():
        table.add_row(site, *(_fmt(values.get(n, math.nan)) for n in names))
    table.add_row("[bold]weighted mean", *(f"[bold]{_fmt(result.final_metrics[n])}" for n in names))
    console.print(table)
    key = f"personalised/{result.champion_metric}"
    if key in result.final_metrics:
        tuned = Table(title=f"{result.champion_metric}: global model vs fine-tuned at each site")
        for column in ("site", "global", "personalised"):
            tuned.add_column(column, justify="right" if column != "site" else "left")
        for site, values in result.per_site.items():
            tuned.add_row(
                site, _fmt(values.get(result.champion_metric, math.nan)), _fmt(values.get(key, math.nan))
            )
        tuned.add_row(
            "[bold]weighted mean",
            _fmt(result.final_metrics[result.champion_metric]),
            _fmt(result.final_metrics[key]),
        )
        console.print(tuned)
    if result.epsilon is not None:
        console.print(
            f"privacy: ε = {result.epsilon:.3f} spent over {result.rounds_completed} rounds "
            "(client-level DP, Rényi accountant)"
        )
    if result.audit:
        worst_loss = max(values["mia_loss_auc"] for values in result.audit.values())
        worst_calibrated = max(values["mia_calibrated_auc"] for values in result.audit.values())
        lira = [values["mia_lira_auc"] for values in result.audit.values() if "mia_lira_auc" in values]
        console.print(
            f"privacy audit: membership-inference AUC, worst site: {worst_loss:.3f} (loss threshold), "
            f"{worst_calibrated:.3f} (calibrated)"
            + (f", {max(lira):.3f} (LiRA)" if lira else "")
            + "; 0.5 = the attacker learns nothing"
        )
    for site, reasons in result.excluded_sites.items():
        console.print(f"[yellow]excluded[/] {site}: {'; '.join(reasons)}")
    champion = result.champion_origin or f"version {result.champion_version}"
    console.print(
        f"MLflow: experiment [bold]{result.domain}[/], run [bold]{result.federation_id}[/] "
        f"({result.mlflow_run_id}); registered model [bold]{result.registered_model}[/].\n"
        f"Champion (best {result.champion_metric}): {champion} — ranked on the sites' hold-out "
        "metrics, the same ones reported above, so its score is optimistic.\n"
        f"Store: {result.tracking_uri}\n"
        f"See it: [bold]fedflow ui[/] (add --prefect for the Prefect UI), then {result.mlflow_run_url} ; "
        f"compare: [bold]fedflow compare --domain {result.domain} --last 2[/]"
    )


@app.command()
def resume(
    identifier: Annotated[str, typer.Argument(help="Federation id (the run name) or MLflow run id.")],
    verbose: Annotated[bool, typer.Option(help="Show Prefect's task log in the terminal.")] = False,
) -> None:
    """Continue a federation that was interrupted, from its last completed round."""
    from fedflow.checkpoint import CheckpointError, find_checkpoint, load_checkpoint

    try:
        federation_id = find_checkpoint(identifier)
        checkpoint, _, _ = load_checkpoint(federation_id)
    except CheckpointError as error:
        raise _fail(str(error)) from error
    if checkpoint.complete:
        console.print(
            f"federation {federation_id} already completed all {checkpoint.round} rounds; nothing to do."
        )
        return
    console.print(
        f"resuming [bold]{federation_id}[/] ({checkpoint.domain}) after round {checkpoint.round} "
        f"of {checkpoint.config['rounds']}, MLflow run {checkpoint.mlflow_run_id}"
    )
    _run_federation(
        checkpoint.domain,
        FederationConfig.model_validate(checkpoint.config),
        sites_file=checkpoint.sites_file,
        run_name=federation_id,
        verbose=verbose,
        completed=checkpoint.round,
    )


@app.command()
def validate(
    domain: Annotated[str, typer.Argument(help="Domain whose data contract to check against.")],
    data: Annotated[
        Path, typer.Option(help="The site's CSV or Parquet file (language: or folder of .txt files).")
    ],
    site: Annotated[str, typer.Option(help="Name to show for the site.")] = "local",
    all_checks: Annotated[
        bool, typer.Option("--all-checks", help="List every check, not only the failed ones.")
    ] = False,
) -> None:
    """Check a site's file against the domain's expectations before joining (exit 1 on failure)."""
    _EXIT_WITHOUT_TEARDOWN.set()  # a read-only check: nothing to flush or shut down at exit
    from domains import available_domains, load_domain
    from fedflow.errors import FedflowError
    from fedflow.sitedata import read_site_frame

    if domain not in available_domains():
        raise _fail(f"no domain {domain!r}; available: {', '.join(available_domains())}")
    loaded = load_domain(domain, with_model=False)
    try:
        frame = read_site_frame(data, loaded.spec, site=site)
    except FedflowError as error:
        raise _fail(str(error), code=1) from error
    import flows  # noqa: F401  (no-telemetry defaults before GX loads)
    from validation import validate_frame

    summary = validate_frame(frame, loaded.expectations, site=site, suite_name=domain)
    if summary.success and loaded.class_minimum:
        from fedflow.tasks import get_task
        from validation import class_minimum_check, with_check

        try:
            labels = get_task(loaded.spec.task).labels(frame, loaded.spec)
        except (ValueError, TypeError) as error:
            raise _fail(f"{data}: the target column cannot be turned into labels: {error}", code=1) from error
        summary = with_check(summary, class_minimum_check(labels, loaded.class_minimum))
    shown = summary.checks if all_checks else summary.failures
    if shown:
        title = f"{data.name} against the {domain} data contract ({summary.rows} rows)"
        console.print(_checks_table(shown, title=title))
    failed = len(summary.failures)
    if failed:
        for check in summary.failures:
            err.print(f"[red]FAIL[/] {check.describe()}", soft_wrap=True)
        err.print(
            f"[bold red]{failed} of {len(summary.checks)} expectations failed[/]: "
            "fix the file before joining."
        )
        raise typer.Exit(1)
    console.print(
        f"[green]all {len(summary.checks)} expectations passed[/] ({summary.rows} rows): "
        f"this site can join a {domain} federation."
    )


def _checks_table(checks: "list[CheckResult]", *, title: str) -> Table:
    """One row per check: its expectation, column, result and (when failed) why."""
    table = Table(title=title)
    for column in ("expectation", "column", "result", "detail"):
        table.add_column(column, overflow="fold")
    for check in checks:
        mark = "[green]pass" if check.success else "[bold red]FAIL"
        detail = "" if check.success else check.detail()
        name = f"{check.expectation}\n{check.label}" if check.label else check.expectation
        table.add_row(name, check.column or "(table)", mark, detail)
    return table


@domains_app.callback()
def domains(ctx: typer.Context) -> None:
    """List the domain templates (with a subcommand: act on one)."""
    if ctx.invoked_subcommand is not None:
        return
    from domains import available_domains, load_domain

    table = Table(title="domain templates")
    for column in ("name", "task", "target", "sites", "description"):
        table.add_column(column)
    for name in available_domains():
        spec = load_domain(name).spec
        table.add_row(name, spec.task, spec.target.column, ", ".join(spec.site_names), spec.description)
    console.print(table)


@domains_app.command("new")
def domains_new(
    name: Annotated[str, typer.Argument(help="Name of the new domain (lower-case identifier).")],
    from_template: Annotated[str, typer.Option("--from", help="Template to copy, e.g. healthcare.")],
    infer: Annotated[
        Path | None, typer.Option(help="One site's CSV or Parquet file to draft config.yaml from.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="With --infer: the column to predict.")] = None,
) -> None:
    """Create a new domain from a template's code and config (not its data); --infer drafts the config."""
    from domains import create_domain
    from fedflow.errors import DomainError

    try:
        folder = create_domain(name, template=from_template, infer=infer, target=target)
    except DomainError as error:
        raise _fail(str(error)) from error
    config = folder / "config.yaml"
    if infer is not None:
        console.print(
            f"created domain [bold]{name}[/] in {folder}: {config} is drafted from {infer}, "
            "which is its first site.\n"
            f"Next: confirm every `# guess:` in {config}, then `fedflow validate {name} --data {infer}`; "
            f"add the other sites under `sites:` and `fedflow run {name}`."
        )
        return
    console.print(
        f"created domain [bold]{name}[/] in {folder} (the code and config of {from_template}, "
        "not its data).\n"
        f"Next: replace the placeholder `sites:` in {config} with your files, adjust the columns, then "
        f"`fedflow domains check {name}`, `fedflow validate {name} --data FILE` and `fedflow run {name}`."
    )


@domains_app.command("check")
def domains_check(
    name: Annotated[str, typer.Argument(help="Domain whose config and schema to check.")],
) -> None:
    """Check a domain's config.yaml, schema.py and model.py without any data (exit 1 on a problem)."""
    from domains import load_domain
    from fedflow.errors import DomainError

    try:
        domain = load_domain(name)
        import flows  # noqa: F401  (no-telemetry defaults before GX loads)
        from validation import build_suite

        build_suite(f"{name}-check", domain.expectations)
    except (DomainError, ValueError, TypeError) as error:
        err.print(f"[bold red]{name}: not valid[/]\n{error}", soft_wrap=True)
        raise typer.Exit(1) from error
    missing = [s for s in domain.spec.sites.values() if not (domain.root / s).expanduser().exists()]
    console.print(
        f"[green]{name} is valid[/]: {len(domain.spec.feature_columns)} features, target "
        f"{domain.spec.target.column!r} ({domain.spec.task}), {len(domain.expectations)} expectations."
    )
    if missing:
        console.print(f"note: {len(missing)} site file(s) not found on this machine: {', '.join(missing)}")


@domains_app.command("show")
def domains_show(name: Annotated[str, typer.Argument(help="Domain to describe.")]) -> None:
    """Print a domain's sites, features, target and data expectations."""
    from domains import load_domain
    from fedflow.errors import DomainError

    try:
        domain = load_domain(name)
    except DomainError as error:
        raise _fail(str(error)) from error
    spec = domain.spec
    console.print(f"[bold]{name}[/] ({spec.task}) — {spec.description}\nfolder: {domain.root}")
    target = spec.target
    rule = (
        f"> {target.positive_above}"
        if target.positive_above is not None
        else f"== {target.positive_value!r}"
        if target.positive_value is not None
        else f"classes {target.classes}"
        if target.classes
        else "numeric"
    )
    console.print(f"target: [bold]{target.column}[/] ({rule})")
    sites = Table(title="sites")
    sites.add_column("site")
    sites.add_column("data")
    for site in spec.site_names:
        if spec.partition is not None:
            part = spec.partition
            source = f"simulated: {part.method} partition of {part.source}"
        else:
            source = spec.sites[site]
        sites.add_row(site, source)
    console.print(sites)
    features = Table(title="features")
    for column in ("column", "kind", "allowed"):
        features.add_column(column, overflow="fold")
    for num in spec.numeric:
        allowed = f"{num.min} … {num.max}" + (
            f"; missing codes {num.missing_codes}" if num.missing_codes else ""
        )
        features.add_row(num.name, "numeric" + (" (log)" if num.log else ""), allowed)
    for cat in spec.categorical:
        features.add_row(cat.name, "categorical", ", ".join(cat.categories))
    console.print(features)
    checks = Table(title=f"expectations ({len(domain.expectations)})")
    checks.add_column("expectation")
    checks.add_column("arguments", overflow="fold")
    for expectation in domain.expectations:
        args = ", ".join(f"{k}={v}" for k, v in expectation.kwargs.items() if k != "type_list")
        name = f"{expectation.type}\n({expectation.label})" if expectation.label else expectation.type
        checks.add_row(name, args)
    console.print(checks)


keys_app = typer.Typer(
    help="Signing keys (Ed25519) of the sites and the coordinator: authenticated messages."
)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    site: Annotated[str | None, typer.Argument(help="The site the key belongs to.")] = None,
    coordinator: Annotated[
        bool,
        typer.Option("--coordinator", help="The coordinator's key (coordinator.key / .pub), not a site's."),
    ] = False,
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Key folder (default FEDFLOW_KEYS_DIR or .fedflow/keys).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing key of this site.")] = False,
) -> None:
    """Create a key pair: `<site>.key` stays at the site and `<site>.pub` goes to the coordinator; with
    --coordinator, `coordinator.key` stays with the coordinator and `coordinator.pub` goes to every site."""
    from fedflow.signing import COORDINATOR, create_site_keys, keys_root

    if coordinator == (site is not None) or site == COORDINATOR:
        raise _fail(f"give a site's name or --coordinator (one of them; {COORDINATOR!r} is not a site name)")
    owner = COORDINATOR if coordinator else str(site)
    try:
        private, public = create_site_keys(folder or keys_root(), owner, overwrite=overwrite)
    except FileExistsError as error:
        raise _fail(str(error)) from error
    holder, other = (
        ("the coordinator", "every site's key folder") if coordinator else (f"site {site}", "the coordinator")
    )
    console.print(
        f"private key: {private} (stays with {holder}; mode 600)\n"
        f"public key:  {public} (copy to {other})\n"
        "Sign every message with `authentication: {required: true}` in the federation config "
        "(and `require_authentication: true` in each site's policy)."
    )


@keys_app.command("list")
def keys_list(
    folder: Annotated[Path | None, typer.Option("--dir", help="Key folder.")] = None,
) -> None:
    """List the sites (and the coordinator) that have keys in a folder (never prints the keys)."""
    from fedflow.signing import keys_root

    root = folder or keys_root()
    table = Table(title=f"keys in {root}")
    for column in ("owner (a site, or the coordinator)", "private key here", "public key here"):
        table.add_column(column)
    sites = (
        sorted({p.stem for p in root.glob("*.key")} | {p.stem for p in root.glob("*.pub")})
        if root.is_dir()
        else []
    )
    for site in sites:
        table.add_row(
            site,
            "yes" if (root / f"{site}.key").exists() else "no",
            "yes" if (root / f"{site}.pub").exists() else "no",
        )
    console.print(table)


site_app = typer.Typer(help="Run a site of a cross-silo federation on this machine.")
app.add_typer(site_app, name="site")


def _check_site(domain: str, site: str, data: Path) -> None:
    """A known domain, one of its sites, and data of a kind its task reads."""
    from domains import available_domains, load_domain
    from fedflow.tasks import get_task

    if domain not in available_domains():
        raise _fail(f"no domain {domain!r}; available: {', '.join(available_domains())}")
    loaded = load_domain(domain)
    if site not in loaded.spec.site_names:
        raise _fail(f"--site: {domain} has no site {site!r}; its sites are {loaded.spec.site_names}")
    reads_text_folders = get_task(loaded.spec.task).reads_text_folders
    if not data.is_file() and not (reads_text_folders and data.is_dir()):
        kind = "a file or a folder of .txt files" if reads_text_folders else "a file"
        raise _fail(f"--data: {data} is not {kind}")


def _check_policy(policy: Path) -> "SitePolicy":
    """A broken policy file fails when the site starts, not at its first request."""
    from fedflow.errors import FedflowError
    from flows.site_agents import load_site_policy

    try:
        loaded: SitePolicy = load_site_policy(policy)
    except FedflowError as error:
        raise _fail(f"--policy: {error}") from error
    return loaded


def _check_site_keys(site: str, keys_dir: Path | None, policy: "SitePolicy") -> None:
    """A site whose policy requires authentication does not start without its key and the coordinator's."""
    from fedflow.errors import FedflowError
    from fedflow.signing import keys_root
    from fedflow.site_authentication import require_keys

    if not policy.require_authentication:
        return
    try:
        require_keys(keys_dir.resolve() if keys_dir else keys_root(), site)
    except FedflowError as error:
        raise _fail(f"--keys-dir: {error} (the site's policy sets require_authentication)") from error


@site_app.command("serve")
def site_serve(
    domain: Annotated[str, typer.Option(help="The domain (template) the federation uses.")],
    site: Annotated[str, typer.Option(help="This site's name in the domain.")],
    data: Annotated[
        Path,
        typer.Option(
            help="This site's data: CSV or Parquet (language: or .txt folder); never sent anywhere."
        ),
    ],
    exchange: Annotated[
        str, typer.Option(help="fsspec URL of the exchange, as this machine sees it (the site decides).")
    ],
    keys_dir: Annotated[
        Path | None, typer.Option(help="Key folder: <site>.key and coordinator.pub (`fedflow keys`).")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Folder for this site's private state (default ./.fedflow).")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="This site's policy (YAML): its own split, minimum batch and hold-out sizes, call budget, "
            "approved models, privacy floor. Default: the safe defaults (fedflow/site_policy.py)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Federations (sessions) this site serves at the same time.")] = 4,
) -> None:
    """Serve this site's deployment (`fedflow-site/<domain>-<site>`) on the Prefect API in PREFECT_API_URL.

    The site keeps one warm session run ready (its data file read and validated once); a
    coordinator claims it for its federation, and it answers every request the coordinator leaves
    in this site's prefix of the exchange, writing back only what may cross the site boundary.
    """
    _check_site(domain, site, data)
    from flows.served_site import ServedSite

    served = ServedSite(
        site=site,
        domain=domain,
        data=str(data.resolve()),
        keys_dir=str(keys_dir.resolve()) if keys_dir else None,
        state_dir=str(state_dir.resolve()) if state_dir else None,
        exchange_url=exchange,
        policy=str(policy.resolve()) if policy else None,
    )
    if policy is not None:
        _check_site_keys(site, keys_dir, _check_policy(policy))
    # The runs inherit this process's environment: the data path stays on this machine.
    os.environ.update(served.environment())
    # A session starts within a second or two of the coordinator asking (Prefect's default: 10 s).
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
    import flows  # noqa: F401
    from flows.site_flow import serve_site, site_deployment_name

    name = site_deployment_name(domain, site)
    console.print(
        f"serving [bold]{site}[/] of {domain} as deployment fedflow-site/{name}; data stays at {data}"
    )
    serve_site(domain, site, limit=limit)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface the MLflow UI listens on.")] = "127.0.0.1",
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Also start the Prefect UI (server), telemetry off.")
    ] = False,
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect UI.")] = 4200,
    workers: Annotated[int, typer.Option(min=1, help="MLflow server worker processes.")] = 1,
    startup_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for each UI to answer.")
    ] = 120.0,
) -> None:
    """Start the MLflow UI on this project's store (and with --prefect the Prefect UI); print direct links.

    The links open each domain's runs in MLflow's model-training view and each registered model.
    Ctrl-C, SIGTERM or SIGHUP stops every server this started, with all its worker processes.
    """
    import flows  # noqa: F401  (no telemetry)
    from flows import ui_server
    from flows.tracking import artifact_root, tracking_uri

    uri = tracking_uri()
    specs = [
        ui_server.mlflow_spec(
            store_uri=uri,
            artifact_root=artifact_root() if uri.startswith("sqlite:") else None,
            host=host,
            port=port,
            workers=workers,
        )
    ]
    if prefect:
        specs.append(ui_server.prefect_spec(port=prefect_port))
    try:
        ui_server.check_ports(specs)
    except ui_server.UiServerError as error:
        raise _fail(str(error)) from error
    raise typer.Exit(_serve_uis(specs, uri, startup_timeout))


def _serve_uis(specs: "list[ServerSpec]", store_uri: str, startup_timeout: float) -> int:
    """Start the servers, print the links once they answer, serve until stopped; always stop them."""
    from flows import ui_server

    servers: list[UiServer] = []
    with ui_server.stop_on_signals():
        try:
            for spec in specs:
                servers.append(ui_server.launch(spec))
            for server in servers:
                ui_server.wait_until_answers(server, startup_timeout)
            _print_ui_links(servers, store_uri)
            ended = ui_server.serve(servers)
            err.print(
                f"[bold red]error:[/] the {ended.spec.name} stopped on its own; log: {ended.spec.log_path}"
            )
            return 1
        except ui_server.UiServerError as error:
            err.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
            return 2
        except (KeyboardInterrupt, ui_server.Stopped):
            return 0
        finally:
            ui_server.stop(servers)
            if servers:
                console.print("stopped: " + ", ".join(s.spec.name for s in servers))


def _print_ui_links(servers: "list[UiServer]", store_uri: str) -> None:
    from flows import ui_server

    mlflow_server = servers[0]
    base = mlflow_server.spec.base_url
    links = ui_server.mlflow_links(base)
    console.print(f"[bold green]ready[/]: MLflow UI on {base} (store {escape(store_uri)})", soft_wrap=True)
    for label, url in links:
        console.print(f"  {escape(label)}: {escape(url)}", soft_wrap=True)
    if not any(label.startswith("runs of ") for label, _ in links):
        console.print("  no federation in this store yet: run `fedflow run DOMAIN`, then reload")
    for server in servers[1:]:
        api = server.spec.base_url + "/api"
        console.print(
            f"[bold green]ready[/]: {server.spec.name} on {server.spec.base_url}/runs (telemetry off); "
            f"runs started with PREFECT_API_URL={api} appear live",
            soft_wrap=True,
        )
    console.print(
        "Compare runs in the terminal: fedflow compare --domain DOMAIN --last 3. "
        f"Server logs: {ui_server.log_folder()}. Ctrl-C stops the UI.",
        soft_wrap=True,
    )


@app.command()
def compare(
    runs: Annotated[
        list[str] | None, typer.Argument(help="MLflow run ids or run names (federation ids) to compare.")
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(help="The domain (MLflow experiment): where to find names, or --last's runs."),
    ] = None,
    last: Annotated[
        int | None, typer.Option(min=1, help="Compare the domain's last N federations (default 2).")
    ] = None,
    site_metric: Annotated[
        list[str] | None,
        typer.Option(
            "--site-metric", help="Metric shown per site (repeatable; default: the ranking metric)."
        ),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Also log the table to MLflow as a comparison run.")
    ] = True,
) -> None:
    """Compare federations side by side: setup, rounds, time, bytes, global and per-site metrics.

    Give runs by id or name, or `--domain D --last N`. The final round's metrics are shown, the
    domain's ranking metric first, the best run of each metric in bold. The same table is logged
    to MLflow as its own run in the domain's experiment, `compare-<run names>` (tag
    `fedflow.kind=comparison`; the table in its description and as comparison.md, .csv and an
    MLflow table), leaving the federations' runs as they were; `--no-log` skips it.
    """
    from flows import compare as comparing

    client = _mlflow_client_for_reading()
    try:
        found = comparing.find_runs(
            client, comparing.CompareRequest(runs=list(runs or []), domain=domain, last=last)
        )
        domain_name, experiment_id = comparing.domain_of(client, found)
        champion = comparing.champion_of(client, domain_name)
        summaries = [comparing.read_summary(client, run, champion) for run in found]
    except comparing.CompareError as error:
        raise _fail(str(error)) from error
    metric = comparing.ranking_metric(domain_name)
    table = comparing.build_comparison(summaries, ranking_metric=metric, site_metrics=site_metric or ())
    console.print(_comparison_table(table, title=f"{domain_name}: {len(found)} federation(s)"))
    if log:
        run_id = comparing.log_comparison(client, experiment_id, table, found)
        console.print(
            f"logged as MLflow run {run_id} ({comparing.comparison_run_name(table.runs)})", soft_wrap=True
        )


def _mlflow_client_for_reading() -> "MlflowClient":
    """A client on the project's store; a local store that does not exist is reported, not created."""
    import flows  # noqa: F401  (no telemetry)
    from flows.tracking import tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise _fail(f"no MLflow store at {uri}: run a federation first, or set MLFLOW_TRACKING_URI")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _comparison_table(comparison: "Comparison", *, title: str) -> Table:
    """The comparison as a rich table: one column per run, a rule between sections."""
    from flows.compare import format_value

    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in comparison.runs:
        table.add_column(escape(name), overflow="fold")
    rows = comparison.rows
    for index, row in enumerate(rows):
        cells = [escape(format_value(value, row.kind)) for value in row.values]
        if row.best is not None:
            cells[row.best] = f"[bold green]{cells[row.best]}[/]"
        last_of_section = index + 1 == len(rows) or rows[index + 1].section != row.section
        table.add_row(escape(row.label), *cells, end_section=last_of_section)
    return table


def _exit_status(code: object) -> int:
    """What the interpreter would exit with for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr, flush=True)
    return 1


def main() -> None:
    """The `fedflow` console script: run the command and exit with its status."""
    try:
        app()
    except SystemExit as done:
        if _EXIT_WITHOUT_TEARDOWN.is_set():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(_exit_status(done.code))
        raise


if __name__ == "__main__":
    main()
