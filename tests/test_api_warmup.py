"""The temporary Prefect server is started early, once, and only when a run would start one."""

import json
import os
import subprocess
import sys
from pathlib import Path

from flows import api_warmup

_CHILD = """
import json, flows
from flows.api_warmup import api_ready, warm_up_api
from prefect.server.api.server import SubprocessASGIServer
import httpx
warm_up_api()
warm_up_api()  # a second call starts nothing more
api_ready()
server = SubprocessASGIServer()  # what Prefect's client uses when no API URL is set
print(json.dumps({
    "threads": len(__import__("flows.api_warmup").api_warmup._STARTED),
    "health": httpx.get(server.api_url + "/health", timeout=10).status_code,
}))
"""


def test_warm_up_starts_the_server_the_flow_will_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        timeout=180,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == {"threads": 1, "health": 200}


def test_no_warm_up_when_an_api_is_configured(prefect_api: None) -> None:
    before = list(api_warmup._STARTED)
    api_warmup.warm_up_api()
    api_warmup.api_ready()
    assert api_warmup._STARTED == before == []
