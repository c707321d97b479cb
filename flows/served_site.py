"""What a served site decided for itself, handed from `fedflow site serve` to its run processes.

Prefect runs each served flow run in a fresh process that inherits the serving process's
environment, so these settings travel as environment variables, read here and only here
(workers of a site's own work pool set the same variables). None of them ever comes from the
coordinator.
"""

import os

from pydantic import BaseModel

SETTINGS = {
    "site": "FEDFLOW_SITE_NAME",
    "domain": "FEDFLOW_SITE_DOMAIN",
    "data": "FEDFLOW_SITE_DATA",
    "keys_dir": "FEDFLOW_KEYS_DIR",
    "state_dir": "FEDFLOW_STATE_DIR",
    "exchange_url": "FEDFLOW_EXCHANGE_URL",
    "policy": "FEDFLOW_SITE_POLICY",
}


class ServedSite(BaseModel):
    """The site this process serves: its name, domain, data path, and folders."""

    site: str
    domain: str | None = None
    data: str | None = None
    keys_dir: str | None = None
    state_dir: str | None = None
    exchange_url: str | None = None
    policy: str | None = None  # the site's policy file (None: the safe defaults)

    def environment(self) -> dict[str, str]:
        """The variables that hand these settings to the run processes."""
        values = self.model_dump()
        return {
            variable: str(values[field]) for field, variable in SETTINGS.items() if values[field] is not None
        }

    @classmethod
    def from_environment(cls) -> "ServedSite | None":
        """The served site, when this process serves one."""
        values = {field: os.environ.get(variable) for field, variable in SETTINGS.items()}
        if not values["site"]:
            return None
        return cls.model_validate(values)
