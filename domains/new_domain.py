"""What `fedflow domains new` writes: the template's code and config, never its data.

The template's data files and PROVENANCE.md describe the template's sites, not the user's: the
new config's `sites` become clear placeholders, or the inferred file when one is given.
"""

import re
from pathlib import Path

import yaml

from domains.draft_config import draft_config
from domains.inference import infer_columns, read_as_text

# Not copied: the template's data (its sites' files and their provenance) and build leftovers.
NOT_COPIED = ("data", "PROVENANCE.md", "__pycache__", "*.pyc")

_SITES_BLOCK = re.compile(r"(?ms)^(sites|partition):.*?(?=^\S|\Z)")
_HEADER = re.compile(r"\A(?:#[^\n]*\n)+")

EMPTY_SCHEMA = '''"""{name} data contract: the checks derived from config.yaml, plus any added here."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """Checks beyond config.yaml's (columns, types, ranges, categories, required, target).

    For example, a column pair:
        Expectation("expect_column_pair_values_a_to_be_greater_than_b",
                    {{"column_A": "list_price", "column_B": "sale_price", "or_equal": True}})
    """
    return []
'''


def placeholder_config(text: str, *, name: str, template: str) -> str:
    """The template's config.yaml renamed, its header and sites replaced by placeholders."""
    text = re.sub(r"(?m)^name:\s*\S+", f"name: {name}", text, count=1)
    header = (
        f"# Domain {name}, copied from the {template} template "
        "(its data and PROVENANCE.md were not copied).\n"
        "# Adjust the columns to your files, then replace the placeholder sites below.\n"
    )
    text = _HEADER.sub("", text, count=1)
    sites = (
        "sites:\n"
        "  # Placeholders: one line per site, `name: path/to/its/file.csv` (absolute, or relative to this\n"
        f"  # config), or pass `fedflow run {name} --sites my_sites.yaml`.\n"
        "  site_a: REPLACE_WITH_SITE_A_FILE.csv\n"
        "  site_b: REPLACE_WITH_SITE_B_FILE.csv\n\n"
    )
    replaced, count = _SITES_BLOCK.subn(sites, text, count=1)
    return header + (replaced if count else text + "\n" + sites)


def inferred_config(config: Path, *, name: str, source: Path, target: str) -> None:
    """Overwrite `config` with a draft inferred from `source`, keeping the template's training sections."""
    template = yaml.safe_load(config.read_text()) or {}
    guess, columns = infer_columns(read_as_text(source), target)
    config.write_text(
        draft_config(name=name, source=source, target=guess, columns=columns, template=template)
    )
    (config.parent / "schema.py").write_text(EMPTY_SCHEMA.format(name=name))
