"""How a typed request reaches a site and its reply comes back: the site channel Protocol."""

from collections.abc import Mapping
from typing import Protocol, TypeVar

from fedflow.errors import FedflowError
from fedflow.messages import Message


class MissedCall(FedflowError):
    """The site did not answer: the call never reached it, it stopped, or it timed out (a channel
    raises it; the driver counts such misses and excludes a site that keeps missing)."""


class ReplyHandle(Protocol):
    """A site's pending reply (a Prefect future satisfies it)."""

    def result(self) -> Message:
        """The reply; raises what the call raised (a failed or timed-out site call)."""
        ...


class SiteChannel(Protocol):
    """Sends each site its request; identity comes from the channel (the key), never from a reply."""

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """Start every call; the handles are in the order of `requests`."""
        ...


class Delivered:
    """A reply that is already there."""

    def __init__(self, reply: Message) -> None:
        self.reply = reply

    def result(self) -> Message:
        """The reply."""
        return self.reply


class Undelivered:
    """A call that failed: `result()` raises its error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def result(self) -> Message:
        """Raise the call's error."""
        raise self.error


R = TypeVar("R", bound=Message)


def gather(
    handles: Mapping[str, ReplyHandle], reply_type: type[R]
) -> tuple[dict[str, R], dict[str, Exception]]:
    """Every site's reply, in site order, and the error of every call that failed (one failing site
    never stops the others)."""
    replies: dict[str, R] = {}
    errors: dict[str, Exception] = {}
    for site, handle in handles.items():
        try:
            reply = handle.result()
            if not isinstance(reply, reply_type):
                raise FedflowError(
                    f"site {site!r} answered with {type(reply).__name__}, not {reply_type.__name__}"
                )
            replies[site] = reply
        except Exception as error:
            errors[site] = error
    return replies, errors


def failure_reason(error: BaseException, what: str) -> str:
    """Why a site call failed, safe to log and record: our own messages, else only the error's type.

    Other errors may quote a site's data; their text stays in the site's own log.
    """
    if isinstance(error, FedflowError):
        return str(error)
    return f"the site's {what} failed ({type(error).__name__}); see its own log"


def expect(reply: Message, request: Message) -> Message:
    """The reply, if it has the type `request` asks for (else a FedflowError naming both)."""
    expected: type[Message] = request.reply_type  # type: ignore[attr-defined]
    if not isinstance(reply, expected):
        raise FedflowError(f"a {type(request).__name__} was answered with {type(reply).__name__}")
    return reply
