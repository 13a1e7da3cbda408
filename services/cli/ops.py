"""`erasure publish`: a signed event, as an upstream service would send it."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from shared.settings import RuntimeSettings

EXAMPLES = {
    "deregistration": "example_deregistration",
    "purchase": "example_purchase",
    "consent": "example_consent_change",
}


def _fresh(kind: str) -> dict[str, Any]:
    """What makes each published example a new fact: a new request or purchase id, and the time is now."""
    now = datetime.now(UTC)
    if kind == "deregistration":
        return {"request_id": uuid.uuid4(), "requested_at": now}
    if kind == "purchase":
        return {"purchase_id": f"P-{now:%Y}-{uuid.uuid4().hex[:12]}", "purchased_at": now}
    return {"changed_at": now}


def _example(kind: str, user_id: str) -> Any:
    from schemas import examples

    return getattr(examples, EXAMPLES[kind])(user_id, **_fresh(kind))


def _from_file(data_file: Any) -> Any:
    """The event of a JSON file {"type": ..., "data": {...}}, or a usage error saying what is wrong with it."""
    from pydantic import ValidationError

    import schemas
    from schemas.catalog import EVENT_TYPES

    name = getattr(data_file, "name", "--data")
    try:
        raw = json.load(data_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{name} is not JSON ({exc})", param_hint="--data") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or not isinstance(raw.get("data"), dict):
        raise click.BadParameter(f'{name} must hold an object {{"type": "se.loggamera....", "data": {{...}}}}',
                                 param_hint="--data")
    try:
        model = schemas.data_model_for(raw["type"])
    except KeyError:
        raise click.BadParameter(f"{name}: unknown event type {raw['type']!r}; known: "
                                 f"{', '.join(sorted(EVENT_TYPES))}", param_hint="--data") from None
    try:
        return model.model_validate(raw["data"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "data"
        raise click.BadParameter(f"{name}: data.{where}: {first['msg']} ({exc.error_count()} error(s) in all)",
                                 param_hint="--data") from None


@click.command()
@click.argument("kind", type=click.Choice([*EXAMPLES, "file"]))
@click.option("--user", "user_id", default="u-1001", show_default=True, help="Opaque user id.")
@click.option("--data", "data_file", type=click.File(), help="JSON {type, data} to publish (KIND=file).")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1),
              help="Publish this many (each a new event; examples also a new request or purchase).")
@click.option("--json", "as_json", is_flag=True, help="Print what was sent as JSON lines.")
@click.option("--plaintext", is_flag=True,
              help="Send contact details in clear (the older form, still accepted) instead of sealed.")
def publish(kind: str, user_id: str, data_file: Any, count: int, as_json: bool, plaintext: bool) -> None:  # noqa: PLR0917 - click passes options by position
    """Publish signed events, as an upstream service would (confirmed, mandatory).

    An example gets a new request id (deregistration) or purchase id (purchase) and the current time each
    time it is published; a file is published as written. Contact details (a purchase's customer, a consent's
    e-mail) travel sealed under the user's data key unless --plaintext.

    \b
    Examples:
      erasure publish purchase --user u-1001
      erasure publish deregistration --user u-1001
      erasure publish file --data event.json
    """
    from shared.broker import producer as producer_for
    from shared.codec import encode, encode_sealed
    from shared.errors import PublishError
    from shared.topology import Names

    if kind == "file" and data_file is None:
        raise click.UsageError("KIND=file needs --data FILE")
    settings = RuntimeSettings()
    fixed = _from_file(data_file) if kind == "file" else None
    events = [fixed if fixed is not None else _example(kind, user_id) for _ in range(count)]
    write = encode if plaintext else encode_sealed
    messages = [write(data, source="urn:loggamera:cli", keyring=settings.keyring,
                      key_id=settings.signing_key_id) for data in events]
    try:
        with producer_for(settings, exchange=Names(settings.namespace).events_exchange,
                          name="erasure-publish") as producer:
            producer.publish_many(messages)
    except PublishError as exc:
        click.echo(f"publish failed: {exc}. Nothing was published unconfirmed; check the broker "
                   "(`erasure doctor`) and run the same command again.", err=True)
        sys.exit(1)
    for m, data in zip(messages, events, strict=True):
        request = getattr(data, "request_id", None)
        if as_json:
            click.echo(json.dumps({"id": m.event_id, "type": m.event_type, "routing_key": m.routing_key,
                                   **({"request_id": str(request)} if request else {})}))
        else:
            click.echo(f"published {m.event_type} id={m.event_id} (routing key {m.routing_key})"
                       + (f" request {request}" if request else ""))
