"""The temporary Prefect API is started early, once, only when a run would need one, points
Prefect's client at itself, and is stopped by the process that started it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from flows import api_warmup

_CHILD = """
import json, os, urllib.request, flows
from flows import api_warmup
from flows.api_warmup import api_ready, stop_api, warm_up_api
from prefect.settings import PREFECT_API_URL
warm_up_api()
warm_up_api()  # a second call starts nothing more
api_ready()
server = api_warmup._SERVERS[0]
url = PREFECT_API_URL.value()  # what Prefect's client now uses
health = urllib.request.urlopen(url + "/health", timeout=10).status
servers = len(api_warmup._SERVERS)
stop_api()
print(json.dumps({
    "servers": servers,
    "own_url": url == server.api_url,
    "health": health,
    "stopped": server.process.poll() is not None,
    "url_after_stop": PREFECT_API_URL.value(),
    "log": server.log_path.is_file(),
}))
"""


def test_warm_up_starts_the_server_the_flow_will_use_and_stops_it(tmp_path: Path) -> None:
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
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == {
        "servers": 1,
        "own_url": True,
        "health": 200,
        "stopped": True,
        "url_after_stop": None,
        "log": True,
    }


def test_no_warm_up_when_an_api_is_configured(prefect_api: None) -> None:
    before = list(api_warmup._SERVERS)
    api_warmup.warm_up_api()
    api_warmup.api_ready()
    assert api_warmup._SERVERS == before == []
