"""How a failure is classified decides what happens to the message: retry later, or dead-letter now."""

from __future__ import annotations

from collections.abc import Iterable


class TransientError(Exception):
    """A failure that may succeed later (timeouts, 5xx, 429, an outage): retried through the delay tiers."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutsideOutdated(TransientError):
    """What an outside step did no longer fits the database its handler sees (an earlier delivery of the same
    batch changed it): the runtime runs the step and the handler again as soon as the rest of the batch has
    committed, and sends the event through the delay tiers only if that keeps happening."""


class PermanentError(Exception):
    """A failure that retrying cannot fix (a 4xx, a broken invariant): dead-lettered at once."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class BadInput(Exception):
    """A message that cannot be processed as sent: dead-lettered at once with its kind (never retried)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PublishError(Exception):
    """A publish the broker did not accept: unroutable (returned), nacked, or the connection was lost.

    `confirmed` holds the positions (0-based, in the order the messages were given) of those the broker did
    accept before the call failed, so a caller can mark exactly those as sent; any other may or may not have
    reached the broker.
    """

    def __init__(self, message: str, *, confirmed: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.confirmed: tuple[int, ...] = tuple(sorted(confirmed))
