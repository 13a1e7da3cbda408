"""`erasure publish`: a signed event, as an upstream service would send it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from shared.settings import RuntimeSettings

EXAMPLES = {
    "deregistration": "example_deregistration",
    "purchase": "example_purchase",
    "consent": "example_consent_change",
}


def _load_event(kind: str, user_id: str, data_file: Any) -> Any:
    import schemas
    from schemas import examples

    if data_file is not None:
        raw = json.load(data_file)
        model = schemas.data_model_for(raw["type"])
        return model.model_validate(raw["data"])
    return getattr(examples, EXAMPLES[kind])(user_id)


@click.command()
@click.argument("kind", type=click.Choice([*EXAMPLES, "file"]))
@click.option("--user", "user_id", default="u-1001", show_default=True, help="Opaque user id.")
@click.option("--data", "data_file", type=click.File(), help="JSON {type, data} to publish (KIND=file).")
@click.option("--count", default=1, show_default=True, help="Publish this many (new ids each).")
@click.option("--json", "as_json", is_flag=True, help="Print what was sent as JSON lines.")
def publish(kind: str, user_id: str, data_file: Any, count: int, as_json: bool) -> None:
    """Publish signed events, as an upstream service would (confirmed, mandatory).

    \b
    Examples:
      erasure publish purchase --user u-1001
      erasure publish deregistration --user u-1001
      erasure publish file --data event.json
    """
    from shared.broker import producer as producer_for
    from shared.codec import encode
    from shared.errors import PublishError
    from shared.topology import Names

    if kind == "file" and data_file is None:
        raise click.UsageError("KIND=file needs --data FILE")
    settings = RuntimeSettings()
    data = _load_event(kind, user_id, data_file)
    messages = [encode(data, source="urn:loggamera:cli", keyring=settings.keyring,
                       key_id=settings.signing_key_id) for _ in range(count)]
    try:
        with producer_for(settings, exchange=Names(settings.namespace).events_exchange,
                          name="erasure-publish") as producer:
            producer.publish_many(messages)
    except PublishError as exc:
        click.echo(f"publish failed: {exc}", err=True)
        sys.exit(1)
    for m in messages:
        if as_json:
            click.echo(json.dumps({"id": m.event_id, "type": m.event_type, "routing_key": m.routing_key}))
        else:
            click.echo(f"published {m.event_type} id={m.event_id} (routing key {m.routing_key})")
