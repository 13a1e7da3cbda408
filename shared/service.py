"""What a service is: a name, its tables, and a handler per event type. The runtime does the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session

from schemas import CloudEvent, EventData, LegalHoldChanged
from shared.logging import get_logger

Deps = TypeVar("Deps")
"""A service's outside gateways (what `Service.build_deps` returns), as its handlers' `ctx.deps` see them."""


@dataclass
class Context(Generic[Deps]):
    """What a handler gets besides its event: the open transaction, outside gateways, and emit().

    A handler declares its dependencies' type as `ctx: Context[PaymentGateways]`, and a type checker holds
    `ctx.deps` to it; the `Service` built with `build_deps` returning that type ties the two together.
    """

    session: Session
    envelope: CloudEvent
    deps: Deps
    attempts: int
    redelivered: bool = False  # the broker delivered this message before (a consumer died or lost its link)
    emitted: list[EventData] = field(default_factory=list)
    appended: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)
    log: Any = field(default_factory=get_logger)
    outside: Any = None
    """What the event type's outside step returned (`Service.outside`), made before this transaction began;
    None for a type without one."""

    @property
    def event_id(self) -> str:
        return str(self.envelope.id)

    @property
    def tried_before(self) -> bool:
        """Whether an earlier attempt at this event may have reached an outside system before it failed.

        A call can take effect at a vendor while its answer is lost; the attempt rolls back here, so only the
        event itself says the vendor may hold a copy (it came back from a delay tier, or was redelivered).
        """
        return self.attempts > 0 or self.redelivered

    def emit(self, data: EventData) -> None:
        """Publish an event if, and only if, this handler's transaction commits (transactional outbox)."""
        self.emitted.append(data)

    def append(self, table: Table, **row: Any) -> None:
        """Insert `row` into `table` in this handler's transaction, batched with the other deliveries' rows.

        For append-only rows that no handler reads back (effect logs, audit rows): on a batch without
        savepoints every delivery's rows go in one executemany per table after the last handler, instead of
        a round trip each, so a later handler of the same batch does not see them; on the savepoint path
        they go in right after this handler. A failing insert fails the delivery like any other write.
        """
        self.appended.append((table, row))


@dataclass
class Outside(Generic[Deps]):
    """What an outside step gets besides its event: the gateways, a read of the database, the attempt facts.

    A step runs before its handler's transaction, concurrently with the other steps of the batch
    (shared.runtime.reach), so it must not write the database; what it did goes to the handler as its result.
    """

    envelope: CloudEvent
    deps: Deps
    attempts: int
    redelivered: bool
    reader: Callable[[], AbstractContextManager[Session]]
    log: Any = field(default_factory=get_logger)

    @property
    def event_id(self) -> str:
        return str(self.envelope.id)

    @property
    def tried_before(self) -> bool:
        """As `Context.tried_before`: an earlier attempt may have reached the outside system."""
        return self.attempts > 0 or self.redelivered

    def read(self) -> AbstractContextManager[Session]:
        """A short read-only session of the service's database (its own connection; never the write lock)."""
        return self.reader()


Handler = Callable[[Any, Context[Deps]], None]
"""A handler: `(event, ctx) -> None`; `Handler[PaymentGateways]` takes a `Context[PaymentGateways]`."""
Handlers = Mapping[type[EventData], Handler[Deps]]
"""A service's handlers by event model; annotate `HANDLERS: Handlers[MyDeps]` so each entry is checked."""
OutsideStep = Callable[[Any, Outside[Deps]], Any]
"""An outside step: `(event, out) -> result`; the handler of the same event gets the result as `ctx.outside`."""


@dataclass(frozen=True)
class Service(Generic[Deps]):
    """A slice service: its handlers by event model, its tables, migrations, and outside dependencies."""

    name: str
    handlers: Handlers[Deps]
    metadata: MetaData
    migrations: Path | None = None
    build_deps: Callable[[Engine], Deps] = lambda _engine: None  # type: ignore[assignment,return-value]
    """Outside gateways, built once the service's database answers (it gets the engine)."""
    close_deps: Callable[[Deps], None] = lambda _deps: None
    routes: Callable[[Any], Mapping[tuple[str, str], Callable[..., Any]]] = lambda _runner: {}
    outside: Mapping[type[EventData], OutsideStep[Deps]] = field(default_factory=dict)
    """Outside steps by event model: the calls to outside systems an event needs, made for a whole batch
    concurrently before its transaction (shared.runtime.reach); the handler writes what they did."""
    outside_sees: tuple[type[EventData], ...] = (LegalHoldChanged,)
    """Events whose effects the outside steps of later deliveries must see: with outside steps, a batch is
    committed up to each of them before the steps after it run (a hold placed must stop an erasure's step)."""
    database_only: bool = False
    """Handlers touch only the database and the outbox; the runtime may run a batch without a savepoint per
    delivery and re-run it after a failure. Outside calls made in `outside` steps keep a service database-only
    (a re-run reuses their results); leave it False if any handler itself calls an outside system (a vendor's
    API, a mail relay): a re-run would call it again for deliveries that had succeeded."""
    prepare_batch: Callable[[Session, Sequence[EventData]], None] | None = None
    """With `database_only`: called on the batch path with the events its handlers are about to get (fresh ones
    only, in order), in their transaction, to read what they will need in one statement instead of one per
    delivery. The handlers must still work without it: the savepoint path does not call it."""
    flush_per_handler: bool = True
    """With `database_only`, False lets the batch path write every handler's ORM changes in one flush after the
    last handler (one executemany per table) instead of a flush per handler. Only for handlers that read
    nothing another delivery of the same batch wrote, other than through what `prepare_batch` loaded."""

    @property
    def event_types(self) -> tuple[str, ...]:
        """Event types this service consumes: its queue is bound to exactly these."""
        return tuple(sorted(model.event_type for model in self.handlers))

    def outside_for(self, event_type: str) -> OutsideStep[Deps] | None:
        """The outside step registered for an event type, if any."""
        for model, step in self.outside.items():
            if model.event_type == event_type:
                return step
        return None

    def handler_for(self, event_type: str) -> Handler[Deps] | None:
        """The handler registered for an event type, if any."""
        for model, handler in self.handlers.items():
            if model.event_type == event_type:
                return handler
        return None
