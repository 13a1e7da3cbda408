"""Delays between reconnection attempts to the broker, shared by the consumer runtime and the producer."""

from __future__ import annotations

import random

# A broker that is back should see its clients within about two seconds; a handful of attempts a second from
# a few dozen processes is nothing for RabbitMQ to refuse while it is down.
FIRST_S = 0.2
CAP_S = 2.0


class Backoff:
    """Exponential delays from `first` to `cap`, each drawn from its upper half (clients do not come back in
    step); reset() once a connection is established."""

    def __init__(self, first: float = FIRST_S, cap: float = CAP_S) -> None:
        self.first = first
        self.cap = cap
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.cap, self.first * 2 ** self._attempt)
        self._attempt += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self._attempt = 0
