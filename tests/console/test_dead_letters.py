"""Dead letters in the console on a real broker: masked for everyone, revealed only to operators (recorded),
replayed and purged after a confirmation step through the CLI's code, exactly the dead-lettering confirmed."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from services.ledger.models import ConsoleAction
from services.registry import load
from shared.db import make_engine, session_factory
from shared.producer import RawMessage
from shared.signing import sign
from shared.testing import Pipeline, wait_until
from tests.console.conftest import form_token

PHONE = "070-174 06 55"


def _publish_poison(pipeline: Pipeline, n: int) -> str:
    """A signed message for the newsletter whose body is not JSON (and names a phone number)."""
    body = f'{{"note": "ring {PHONE}", "n": {n}'.encode()
    message_id = str(uuid.uuid4())
    pipeline.producer.publish_raw([RawMessage(
        f"{pipeline.namespace}.events", "newsletter.consent_changed.v1", body,
        {"content_type": "application/cloudevents+json", "delivery_mode": 2, "message_id": message_id,
         "headers": {"x-signature": sign(body, "dev", pipeline.settings.keyring)}})])
    return message_id


def _actions(ledger_url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(ledger_url)
    with session_factory(engine)() as session:
        rows = session.scalars(select(ConsoleAction).order_by(ConsoleAction.id)).all()
        found = [(r.who, r.action, r.target) for r in rows]
    engine.dispose()
    return found


@pytest.mark.slow
def test_reveal_replay_and_purge_from_the_console(erasure_pipeline: Pipeline, serve, ledger_url, tmp_path,
                                                  monkeypatch) -> None:
    monkeypatch.setenv("ERASURE_VAR_DIR", str(tmp_path / "var"))  # the replay journal, as for the CLI
    newsletter = erasure_pipeline.start(load("newsletter"))
    ids = [_publish_poison(erasure_pipeline, n) for n in range(2)]
    dead, queue = f"{erasure_pipeline.namespace}.newsletter.dead", f"{erasure_pipeline.namespace}.newsletter"
    wait_until(lambda: erasure_pipeline.depth(dead) == 2, what="two newsletter dead letters")
    newsletter.stop()
    console = serve(ledger_url, runtime=erasure_pipeline.settings)

    viewer = console.login("vera")
    listing = viewer.get("/dead-letters").text
    assert all(i in listing for i in ids) and listing.count("not_json") == 2
    masked = viewer.get(f"/dead-letters/newsletter/{ids[0]}")
    assert masked.status_code == 200 and "[phone]" in masked.text and PHONE not in masked.text
    refused = viewer.post(f"/dead-letters/newsletter/{ids[0]}/reveal", data={"csrf": form_token(masked)})
    assert refused.status_code == 403 and PHONE not in refused.text

    operator = console.login("otto")
    page = operator.get(f"/dead-letters/newsletter/{ids[0]}")
    failed_at = re.search(r'name="failed_at" value="([^"]+)"', page.text).group(1)
    token = form_token(page)
    revealed = operator.post(f"/dead-letters/newsletter/{ids[0]}/reveal", data={"csrf": token, "failed_at": failed_at})
    assert PHONE in revealed.text and "this reveal is in the audit log" in revealed.text

    # The confirmation step changes nothing; only the confirmed POST moves the dead letter.
    confirm = operator.get(f"/dead-letters/newsletter/{ids[0]}/replay")
    assert "Replay this dead letter?" in confirm.text and erasure_pipeline.depth(dead) == 2
    unconfirmed = operator.post(f"/dead-letters/newsletter/{ids[0]}/replay", data={"csrf": token})
    assert "Replay this dead letter?" in unconfirmed.text and erasure_pipeline.depth(dead) == 2
    done = operator.post(f"/dead-letters/newsletter/{ids[0]}/replay",
                         data={"csrf": token, "failed_at": failed_at, "confirm": "yes"})
    assert "Replayed" in done.text
    assert erasure_pipeline.depth(dead) == 1 and erasure_pipeline.depth(queue) == 1
    [back] = erasure_pipeline.take(queue)
    assert back.properties["message_id"] == ids[0]
    assert "x-attempts" not in back.headers and "x-replayed-at" in back.headers

    purged = operator.post(f"/dead-letters/newsletter/{ids[1]}/purge", data={"csrf": token, "confirm": "yes"})
    assert "Deleted for good" in purged.text and erasure_pipeline.depth(dead) == 0
    gone = operator.post(f"/dead-letters/newsletter/{ids[1]}/purge", data={"csrf": token, "confirm": "yes"})
    assert gone.status_code == 404 and "replayed, purged or expired" in gone.text

    assert _actions(ledger_url) == [("otto", "dead_letter_reveal", ids[0]), ("otto", "dead_letter_replay", ids[0]),
                                    ("otto", "dead_letter_purge", ids[1])]
    audit_page = viewer.get("/audit").text
    assert audit_page.index("dead_letter_purge") < audit_page.index("dead_letter_reveal"), "newest first"


def test_an_unreachable_broker_is_a_clear_page(serve, ledger_url, db_backend) -> None:
    from shared.settings import RuntimeSettings
    from shared.testing.ports import free_port

    runtime = RuntimeSettings(amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    console = serve(ledger_url, runtime=runtime)
    page = console.login("vera").get("/dead-letters")
    assert page.status_code == 503 and "cannot reach the broker" in page.text and "Traceback" not in page.text
