"""The project's own structural rules, checked on its source: the engine's import boundary and
the size of functions (ARCHITECTURE.md, docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATION = ("prefect", "mlflow", "great_expectations")


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _python_files("fedflow"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_never_imports_orchestration_or_the_layers_above(path: Path) -> None:
    if path.name == "cli.py":
        pytest.skip("the CLI is the top layer: it may import flows/")
    modules = _imported_modules(ast.parse(path.read_text()))
    forbidden = sorted(
        m for m in modules if m.split(".")[0] in (*ORCHESTRATION, "flows", "domains", "validation")
    )
    assert not forbidden, f"{path.relative_to(ROOT)} imports {forbidden}"


def _functions(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
            parameters = len([n for n in names if n not in ("self", "cls")])
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", lines, parameters))
    return out


def test_functions_are_short_and_take_few_parameters() -> None:
    too_big = []
    for path in _python_files("fedflow", "flows"):
        for where, lines, parameters in _functions(path):
            if path.name == "cli.py":
                parameters = 0  # a typer command's options are its parameters
            if lines > 60 or parameters > 7:
                too_big.append(f"{where}: {lines} lines, {parameters} parameters")
    assert not too_big, "split these, or pass a typed request object:\n" + "\n".join(too_big)
