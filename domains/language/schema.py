"""Language data contract: the text checks from config.yaml (length, encoding, PII guard)."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation, expectations_from_spec


def expectations(spec: DomainSpec) -> list[Expectation]:
    """What a site's texts must satisfy before it fine-tunes on them."""
    return expectations_from_spec(spec)
