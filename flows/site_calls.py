"""Site calls as JSON: the arguments and results of the site tasks, typed by their signatures.

Cross-silo mode sends the very site tasks the simulation runs, as messages: the arguments are
serialised with pydantic against the task function's own annotations, and the site validates
them against the same annotations (bytes as base64). Nothing is pickled, nothing is imported
by name from a message.
"""

import functools
import inspect
import os
import typing
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, TypeAdapter

from flows.site_tasks import (
    advertise_keys,
    audit_site,
    evaluate_site,
    prepare_site,
    reveal_for_unmasking,
    share_keys,
    train_site,
)

SITE_OPERATIONS: dict[str, Any] = {
    "prepare": prepare_site,
    "train": train_site,
    "evaluate": evaluate_site,
    "audit": audit_site,
    "secagg-advertise": advertise_keys,
    "secagg-share": share_keys,
    "secagg-unmask": reveal_for_unmasking,
}

REQUEST = "request.json"
RESPONSE = "response.json"

# Arguments a site decides for itself in cross-silo mode: never taken from the coordinator.
SITE_LOCAL_ARGUMENTS = frozenset({"sites_file", "keys_dir"})

_JSON = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64", arbitrary_types_allowed=False)


def operation_of(task: Any) -> str:
    """The operation name of a site task."""
    for name, candidate in SITE_OPERATIONS.items():
        if candidate is task:
            return name
    raise KeyError(f"{getattr(task, 'name', task)!r} is not a site operation")


@functools.cache
def _hints(operation: str) -> dict[str, Any]:
    function: Callable[..., Any] = SITE_OPERATIONS[operation].fn
    return typing.get_type_hints(function)


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    # A one-element tuple lets nested dataclasses take the base64 setting for bytes.
    return TypeAdapter(tuple[annotation], config=_JSON)  # type: ignore[valid-type]


def encode_arguments(operation: str, arguments: dict[str, Any]) -> bytes:
    """The call's keyword arguments as one JSON object (each value typed by the task's signature)."""
    hints = _hints(operation)
    parts = []
    for name, value in arguments.items():
        if name not in hints:
            raise TypeError(f"site operation {operation!r} has no argument {name!r}")
        if name in SITE_LOCAL_ARGUMENTS:
            continue
        encoded = _adapter(hints[name]).dump_json((value,)).decode()
        parts.append(f'"{name}": {encoded}')
    return ("{" + ", ".join(parts) + "}").encode()


def decode_arguments(operation: str, data: bytes) -> dict[str, Any]:
    """The keyword arguments back, validated against the task's annotations; unknown ones refused."""
    import json

    hints = _hints(operation)
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("a site call's arguments must be a JSON object")
    unknown = sorted(set(raw) - set(hints) | set(raw) & SITE_LOCAL_ARGUMENTS)
    if unknown:
        raise ValueError(f"site operation {operation!r} does not accept {unknown} from the coordinator")
    signature = inspect.signature(SITE_OPERATIONS[operation].fn)
    return {
        name: _adapter(hints[name]).validate_json(json.dumps(value))[0]
        for name, value in raw.items()
        if name in signature.parameters
    }


def encode_result(operation: str, value: Any) -> bytes:
    """A site task's return value as JSON."""
    return _adapter(_hints(operation)["return"]).dump_json((value,))


def decode_result(operation: str, data: bytes) -> Any:
    """A site's reply, validated against the task's return annotation."""
    return _adapter(_hints(operation)["return"]).validate_json(data)[0]


def execute_site_call(operation: str, call_id: str, exchange_url: str | None) -> None:
    """At the site: read a request from the exchange, run the operation, write the reply.

    A served site decides its exchange, domain and site itself (`fedflow site serve`) and
    refuses requests for anything else; simulated attacks are refused outright. A failure is
    reported by its type only: the Prefect API keeps run messages, and the coordinator reads it.
    """
    import logging

    from prefect import get_run_logger

    from flows.exchange import Exchange

    if operation not in SITE_OPERATIONS:
        raise ValueError(f"unknown site operation {operation!r}; expected one of {sorted(SITE_OPERATIONS)}")
    served = os.environ.get("FEDFLOW_SITE_NAME")
    if served:
        exchange_url = os.environ.get("FEDFLOW_EXCHANGE_URL")
        if not exchange_url:
            raise ValueError("a served site needs its own exchange (FEDFLOW_EXCHANGE_URL, `--exchange`)")
    exchange = Exchange(exchange_url)
    arguments = decode_arguments(operation, exchange.read(call_id, REQUEST))
    if served:
        domain = os.environ.get("FEDFLOW_SITE_DOMAIN")
        if arguments.get("site") != served or (domain and arguments.get("domain_name") != domain):
            raise ValueError(f"this process serves site {served!r} of {domain!r}; the request is for another")
        if arguments.get("attack") is not None:
            raise ValueError("simulated attacks are for simulation only; a served site refuses them")
    get_run_logger().info("site %s: %s (call %s)", arguments.get("site"), operation, call_id)
    try:
        result = SITE_OPERATIONS[operation].fn(**arguments)
    except Exception as error:
        logging.getLogger("fedflow.site").exception("site %s: %s failed", arguments.get("site"), operation)
        raise RuntimeError(
            f"{operation} failed at the site ({type(error).__name__}); see its own log"
        ) from None
    exchange.write(call_id, RESPONSE, encode_result(operation, result))
