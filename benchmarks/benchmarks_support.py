"""Small helpers shared by benchmark scripts."""

from typing import Any

from domains_benchmark import load_sites


def site_train_sizes(domain: Any, config: Any) -> dict[str, int]:
    """Training rows per site, as the flow's split makes them."""
    return {name: len(site.split.train) for name, site in load_sites(domain, config).items()}
