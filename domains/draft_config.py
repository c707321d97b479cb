"""Write a drafted config.yaml from inferred columns: every guess commented for a person to confirm.

Strings are written as JSON strings (valid YAML, always quoted), so no category or column name
like No, Yes, on or 007 is ever read back as a boolean or a number.
"""

import json
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from domains.inference import ColumnGuess, TargetGuess

# Sections taken from the template as they are (the model and how training runs).
TEMPLATE_SECTIONS = ("model", "quality", "federation")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _num(value: float) -> str:
    return f"{value:g}"


def _target_lines(target: TargetGuess) -> list[str]:
    lines = [
        f"task: {target.task}   # guess: {target.reason}",
        "",
        "target:",
        f"  column: {_q(target.column)}",
    ]
    if target.positive_above is not None:
        lines.append(f"  positive_above: {_num(target.positive_above)}   # guess: label 1 when above this")
    if target.positive_value is not None:
        lines.append(f"  positive_value: {_q(target.positive_value)}   # guess: label 1 for this value")
    if target.classes:
        lines.append(
            f"  classes: [{', '.join(_q(c) for c in target.classes)}]   # guess: every class, in order"
        )
    if target.min is not None and target.max is not None:
        lines.append(f"  min: {_num(target.min)}   # guess: widened, rounded outward")
        lines.append(f"  max: {_num(target.max)}")
    return lines


def _column_line(column: ColumnGuess) -> str:
    if column.kind == "numeric":
        body = f"name: {_q(column.name)}, min: {_num(column.min or 0)}, max: {_num(column.max or 0)}"
        if column.missing_codes:
            body += f", missing_codes: [{', '.join(_num(c) for c in column.missing_codes)}]"
    else:
        body = f"name: {_q(column.name)}, categories: [{', '.join(_q(c) for c in column.categories)}]"
    return f"  - {{{body}}}   # guess: {column.reason}"


def _columns_lines(columns: list[ColumnGuess]) -> list[str]:
    lines: list[str] = []
    for kind in ("numeric", "categorical"):
        chosen = [c for c in columns if c.kind == kind]
        lines += ["", f"{kind}:" + ("" if chosen else " []")] + [_column_line(c) for c in chosen]
    skipped = [c for c in columns if c.kind == "skip"]
    if skipped:
        lines += ["", "# Columns left out of the model (declare them above to use them):"]
        lines += [f"#   {_q(c.name)}: {c.reason}" for c in skipped]
    return lines


def draft_config(
    *, name: str, source: Path, target: TargetGuess, columns: list[ColumnGuess], template: dict[str, Any]
) -> str:
    """The text of a config.yaml drafted from one site's file, its template's training sections kept."""
    site = _q(source.stem.lower().replace(" ", "_") or "site_1")
    lines = [
        f"# Drafted on {date.today()} by `fedflow domains new {name} --infer {source.name}`.",
        "# Every `guess:` was inferred from that one file: confirm or correct each before sharing this",
        "# config. Ranges are widened and rounded outward, so they do not reveal the file's extremes.",
        f"name: {name}",
        f"description: {_q(f'Drafted from {source.name}; describe the task here.')}",
        *_target_lines(target),
        *_columns_lines(columns),
        "",
        "# Site name -> that site's file (absolute, or relative to this config). Add the other sites'",
        "# files here, or pass `fedflow run ... --sites my_sites.yaml`.",
        "sites:",
        f"  {site}: {_q(str(source.resolve()))}",
        "",
    ]
    kept = {k: template[k] for k in TEMPLATE_SECTIONS if k in template}
    if kept:
        lines += [
            "# From the template: the model and how training runs.",
            yaml.safe_dump(kept, sort_keys=False),
        ]
    return "\n".join(lines)
