"""What the console reads and does on the broker: queue depths, and the dead-letter operations of `erasure dlq`.

The one place the console imports the dead-letter module, so it moving is a one-line change here. Replay and
purge go through the same functions as the CLI (confirmed publish, journal, ack after confirm): an interrupted
action loses nothing and sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pika.exceptions import AMQPError, ChannelClosedByBroker

from ops import dlq as dead
from shared.settings import RuntimeSettings
from shared.topology import Names

DeadLetter = dead.DeadLetter
DeadLetterError = dead.DeadLetterError
QueueSummary = dead.QueueSummary
Selection = dead.Selection
catalog_services = dead.catalog_services


def survey(settings: RuntimeSettings) -> tuple[list[dead.QueueSummary], list[dead.DeadLetter]]:
    """Every catalog service's dead-letter queue: counts, oldest, and the letters (browsed, none removed)."""
    return dead.survey(settings, None)


def dead_counts(settings: RuntimeSettings) -> dict[str, int]:
    """Dead letters per catalog service, counted without taking any (the health page polls this)."""
    return dead.depths(settings, None)


def find(settings: RuntimeSettings, service: str, event_id: str) -> list[dead.DeadLetter]:
    """The dead letters with this event id in one service's queue."""
    return dead.select(settings, [service], dead.Selection(event_id=event_id))


def exactly(letter: dead.DeadLetter) -> dead.Selection:
    """A selection of this one dead-lettering and nothing that arrives later under the same id."""
    return dead.Selection(keys=frozenset({letter.key}))


def replay(settings: RuntimeSettings, letter: dead.DeadLetter) -> dead.ReplayReport:
    """Move one dead letter back to its service queue, attempts reset, through the CLI's journal."""
    journal = dead.Journal(dead.journal_path())
    try:
        return dead.replay(settings, [letter.service], exactly(letter), journal=journal)
    finally:
        journal.close()


def purge(settings: RuntimeSettings, letter: dead.DeadLetter) -> int:
    """Delete one dead letter for good; how many were removed (0 if it had gone meanwhile)."""
    return sum(dead.purge(settings, [letter.service], exactly(letter)).values())


def queue_depths(settings: RuntimeSettings, services: Sequence[str]) -> dict[str, int | None]:
    """Messages ready on each service's main queue (None where the queue does not exist)."""
    names = Names(settings.namespace)
    depths: dict[str, int | None] = {}
    channel_log = logging.getLogger("pika.channel")
    with dead.connect(settings) as conn:
        for service in services:
            level, channel_log.level = channel_log.level, logging.ERROR
            try:
                channel = conn.channel()
                depths[service] = int(channel.queue_declare(names.queue(service), passive=True).method.message_count)
                channel.close()
            except ChannelClosedByBroker:
                depths[service] = None
            except AMQPError:
                depths[service] = None
            finally:
                channel_log.setLevel(level)
    return depths
