"""Language data contract: config.yaml's text checks (length, encoding, PII guard) are enough."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """No checks beyond those derived from config.yaml."""
    return []
