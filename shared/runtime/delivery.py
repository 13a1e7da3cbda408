"""One message taken from the queue, as every stage sees it (a kombu message, or the in-memory transport's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from shared.runtime.headers import ATTEMPTS


class Message(Protocol):
    """What the stages read of a message: kombu's `Message` has these, and so has `shared.testing.memory`'s."""

    body: bytes
    content_type: str | None
    headers: Mapping[str, Any] | None
    properties: Mapping[str, Any]
    delivery_info: Mapping[str, Any]
    delivery_tag: int


@dataclass(frozen=True)
class Delivery:
    """One message taken from the queue on the connection of `generation`."""

    message: Message
    generation: int
    again: bool = False
    """Run again within its batch after an earlier delivery outdated its outside step (pipeline.py): like a
    redelivery, an earlier attempt may have reached the outside system."""

    @property
    def tag(self) -> int:
        return self.message.delivery_tag

    @cached_property
    def headers(self) -> Mapping[str, Any]:
        """The message's headers, read once; copy them before changing them."""
        return dict(self.message.headers or {})

    @cached_property
    def attempts(self) -> int:
        """How many times this event failed before (the delay tiers count them in a header)."""
        try:
            return int(self.headers.get(ATTEMPTS, 0))
        except (TypeError, ValueError):
            return 0

    @property
    def event_id(self) -> str | None:
        return self.message.properties.get("message_id")

    @property
    def redelivered(self) -> bool:
        return self.again or bool(self.message.delivery_info.get("redelivered"))
