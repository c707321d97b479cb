"""The exchange: where coordinator and sites leave each other messages in cross-silo mode.

An fsspec location (a local or shared folder, `s3://bucket/prefix`, …) holding one JSON request
and one JSON response per site call. Everything in it is JSON validated against fedflow's own
types (bytes as base64, model payloads as safetensors inside), so nothing read from it is
unpickled or imported. Site data paths are never written to it.
"""

import os

import fsspec

from fedflow.checkpoint import state_root
from fedflow.errors import FedflowError

REQUEST = "request.json"
RESPONSE = "response.json"


class ExchangeError(FedflowError):
    """A message is missing, too large or unreadable."""


def default_exchange_url() -> str:
    """`FEDFLOW_EXCHANGE_URL`, or the `exchange` folder beside the coordinator's state."""
    return os.environ.get("FEDFLOW_EXCHANGE_URL") or str(state_root() / "exchange")


class Exchange:
    """Read and write messages under one fsspec URL."""

    def __init__(self, url: str | None = None, *, max_message_bytes: int = 256 * 1024 * 1024) -> None:
        self.url = (url or default_exchange_url()).rstrip("/")
        self.max_message_bytes = max_message_bytes
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def _path(self, call_id: str, name: str) -> str:
        if not call_id.replace("-", "").replace("_", "").isalnum():
            raise ExchangeError(f"call id {call_id!r} must be letters, digits, '-' or '_'")
        return f"{self.root}/{call_id}/{name}"

    def write(self, call_id: str, name: str, data: bytes) -> None:
        """Write a message atomically where the filesystem allows (temporary name, then move)."""
        path = self._path(call_id, name)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        temporary = path + ".partial"
        self.fs.pipe_file(temporary, data)
        self.fs.mv(temporary, path)

    def read(self, call_id: str, name: str) -> bytes:
        """A message's bytes; a missing or oversized one is an ExchangeError."""
        path = self._path(call_id, name)
        if not self.fs.exists(path):
            raise ExchangeError(f"no {name} for call {call_id} in the exchange {self.url}")
        size = self.fs.size(path)
        if size is not None and size > self.max_message_bytes:
            raise ExchangeError(f"{name} of call {call_id} is {size} bytes, over {self.max_message_bytes}")
        data: bytes = self.fs.cat_file(path)
        return data

    def remove(self, call_id: str) -> None:
        """Delete a call's messages once they are read (other parties need not see them)."""
        folder = self._path(call_id, "").rstrip("/")
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)
