"""`erasure dlq` against a real broker: dead letters made by the probe service, listed, shown, replayed, purged."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pika
from click.testing import CliRunner, Result

from ops.progress import Progress
from schemas.examples import example_consent_change, example_deregistration
from services.cli.main import cli
from shared.signing import sign
from shared.testing import Pipeline, wait_until
from tests.probe_service import Act, Probe, make_service

ROOT = Path(__file__).resolve().parents[2]
PHONE = "070-174 06 55"


def _env(pipeline: Pipeline, tmp_path: Path) -> dict[str, str]:
    return {"ERASURE_AMQP_URL": pipeline.settings.amqp_url, "ERASURE_NAMESPACE": pipeline.namespace,
            "ERASURE_VAR_DIR": str(tmp_path / "var")}


def _dlq(pipeline: Pipeline, tmp_path: Path, *args: str, stdin: str | None = None, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["dlq", *args], env=_env(pipeline, tmp_path), input=stdin)
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    return result


def _queues(pipeline: Pipeline) -> tuple[str, str]:
    return f"{pipeline.namespace}.probe", f"{pipeline.namespace}.probe.dead"


def _publish_poison(pipeline: Pipeline, body: bytes, message_id: str) -> None:
    """A signed message whose body is not JSON: the probe dead-letters it as `not_json`."""
    conn = pika.BlockingConnection(pika.URLParameters(pipeline.settings.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            f"{pipeline.namespace}.events", "user.deregistered.v1", body,
            pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2, message_id=message_id,
                                 headers={"x-signature": sign(body, "dev", pipeline.settings.keyring)}),
            mandatory=True)
    finally:
        conn.close()


def _make_dead_letters(pipeline: Pipeline, count: int, *, consent: bool = False, poison: int = 0) -> list[str]:
    """Run the probe until `count` permanent failures (+ poison) are dead-lettered, then stop it; return ids."""
    refused = Act(fail="permanent")
    running = pipeline.start(make_service(probe=Probe(
        {**{f"permanent-{i}": refused for i in range(count)}, "permanent-mail": refused})))
    pipeline.purge(settle=0.3)  # dead letters returned by an earlier test's browsing may still be arriving
    events: list[Any] = [example_deregistration(f"permanent-{i}") for i in range(count)]
    if consent:
        events[-1] = example_consent_change("permanent-mail")
    ids = [m.event_id for m in pipeline.publish(*events)]
    for i in range(poison):
        poison_id = str(uuid.uuid4())
        _publish_poison(pipeline, f'{{"note": "ring {PHONE}", "n": {i}'.encode(), poison_id)
        ids.append(poison_id)
    _, dead = _queues(pipeline)
    wait_until(lambda: pipeline.depth(dead) >= len(ids), what=f"{len(ids)} dead letters")
    assert pipeline.depth(dead) == len(ids), "only this test's dead letters are in the queue"
    running.stop()
    return ids


def _ids_in(pipeline: Pipeline, queue: str, *, ack: bool = False) -> list[str]:
    return [m.properties["message_id"] for m in pipeline.take(queue, ack=ack)]


def test_list_counts_dead_letters_and_leaves_them_in_place(erasure_pipeline, tmp_path) -> None:
    ids = _make_dead_letters(erasure_pipeline, 3, poison=1)
    _, dead = _queues(erasure_pipeline)
    listed = json.loads(_dlq(erasure_pipeline, tmp_path, "list", "--service", "probe", "--messages",
                             "--json").stdout)
    [queue] = listed["queues"]
    assert (queue["service"], queue["count"], queue["exists"]) == ("probe", 4, True)
    assert queue["oldest_age_s"] is not None and queue["oldest_age_s"] >= 0
    assert sorted(m["id"] for m in listed["messages"]) == sorted(ids)
    kinds = sorted(m["kind"] for m in listed["messages"])
    assert kinds == ["not_json", "permanent", "permanent", "permanent"]
    assert all(m["attempts"] == 1 and m["failed_at"] for m in listed["messages"])
    table = _dlq(erasure_pipeline, tmp_path, "list", "--service", "probe", "--messages", "--limit", "2").stdout
    assert "probe" in table and "... and 2 more" in table
    assert erasure_pipeline.depth(dead) == 4, "browsing returns every message"
    assert sorted(_ids_in(erasure_pipeline, dead)) == sorted(ids)


def _delivery_count(pipeline: Pipeline, queue: str) -> int:
    """The broker's x-delivery-count of the head of a queue, read once (which itself returns the message)."""
    conn = pika.BlockingConnection(pika.URLParameters(pipeline.settings.amqp_url))
    try:
        channel = conn.channel()
        method, properties, _body = channel.basic_get(queue, auto_ack=False)
        assert method is not None, f"{queue} is empty"
        count = int((properties.headers or {}).get("x-delivery-count") or 0)
        channel.basic_nack(method.delivery_tag, requeue=True)
        return count
    finally:
        conn.close()


def test_list_counts_without_touching_any_dead_letter_and_answers_at_once(erasure_pipeline, tmp_path) -> None:
    _make_dead_letters(erasure_pipeline, 3)
    _, dead = _queues(erasure_pipeline)
    before = _delivery_count(erasure_pipeline, dead)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        listed = json.loads(_dlq(erasure_pipeline, tmp_path, "list", "--json").stdout)
        timings.append(time.perf_counter() - started)
    assert "probe" not in {q["service"] for q in listed["queues"]}, "not a catalog service: --service names it"
    listed = json.loads(_dlq(erasure_pipeline, tmp_path, "list", "--service", "probe", "--json").stdout)
    assert [(q["service"], q["count"]) for q in listed["queues"]] == [("probe", 3)] and "messages" not in listed
    text = _dlq(erasure_pipeline, tmp_path, "list", "--service", "probe").stdout
    assert "probe" in text and "3" in text and "--messages" in text
    # Each read above would have added one to the count had listing browsed the queue; the reads here add one.
    assert _delivery_count(erasure_pipeline, dead) <= before + 1
    assert max(timings) < 1.0, f"dlq list took {max(timings):.2f} s"


def test_show_prints_a_dead_letter_of_several_services_once_and_changes_nothing(erasure_pipeline, tmp_path) -> None:
    erasure_pipeline.declare()
    event_id = str(uuid.uuid4())
    conn = pika.BlockingConnection(pika.URLParameters(erasure_pipeline.settings.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for service in ("payment", "newsletter"):
            channel.basic_publish(f"{erasure_pipeline.namespace}.dead", service, b'{"note": "same bytes"}',
                                  pika.BasicProperties(delivery_mode=2, message_id=event_id, headers={
                                      "x-error-kind": "permanent", "x-error": "refused", "x-attempts": 1,
                                      "x-failed-at": "2026-04-14T08:00:00+00:00", "x-service": service}))
    finally:
        conn.close()
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.newsletter.dead") == 1)
    text = _dlq(erasure_pipeline, tmp_path, "show", event_id).stdout
    assert text.count(f"dead letter {event_id}") == 1 and "services newsletter, payment" in text
    assert "x-delivery-count" not in text
    first = json.loads(_dlq(erasure_pipeline, tmp_path, "show", event_id, "--json").stdout)
    again = json.loads(_dlq(erasure_pipeline, tmp_path, "show", event_id, "--json").stdout)
    assert len(first) == 1 and first[0]["services"] == ["newsletter", "payment"]
    assert first == again, "showing a dead letter changes nothing shown about it"
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.payment.dead") == 1


def test_show_masks_email_and_phone_and_reveal_shows_them_with_an_audit_record(erasure_pipeline, tmp_path) -> None:
    ids = _make_dead_letters(erasure_pipeline, 1, consent=True, poison=1)
    consent_id, poison_id = ids
    email = example_consent_change("permanent-mail").email
    masked = _dlq(erasure_pipeline, tmp_path, "show", consent_id, "--service", "probe").stdout
    assert email not in masked and '"email": "[redacted]"' in masked
    parked = erasure_pipeline.take(_queues(erasure_pipeline)[1], ack=False)
    assert all(email.encode() not in bytes(m.body) for m in parked), "the parked dead letter holds it sealed only"
    assert "x-error-kind: permanent" in masked
    poison = json.loads(_dlq(erasure_pipeline, tmp_path, "show", poison_id, "--service", "probe", "--json").stdout)
    assert PHONE not in json.dumps(poison) and "[phone]" in poison[0]["body"]
    assert poison[0]["kind"] == "not_json" and poison[0]["revealed"] is False
    revealed = _dlq(erasure_pipeline, tmp_path, "show", consent_id, "--service", "probe", "--reveal")
    assert email in revealed.stdout
    audit = [json.loads(line) for line in revealed.stderr.splitlines() if '"audit"' in line]
    assert audit and audit[0]["audit"] is True and audit[0]["what"] == consent_id and audit[0]["who"]
    assert PHONE in _dlq(erasure_pipeline, tmp_path, "show", poison_id, "--service", "probe", "--reveal").stdout
    missing = _dlq(erasure_pipeline, tmp_path, "show", str(uuid.uuid4()), "--service", "probe", code=1)
    assert "no dead letter with id" in missing.output


def test_replay_moves_exactly_the_selection_with_attempts_reset(erasure_pipeline, tmp_path) -> None:
    ids = _make_dead_letters(erasure_pipeline, 5)
    queue, dead = _queues(erasure_pipeline)
    one = _dlq(erasure_pipeline, tmp_path, "replay", ids[0], "--service", "probe", "--json").stdout
    assert json.loads(one)["moved"] == 1
    assert (erasure_pipeline.depth(queue), erasure_pipeline.depth(dead)) == (1, 4)
    rest = _dlq(erasure_pipeline, tmp_path, "replay", "--service", "probe").stdout
    assert "moved 4 dead letter(s)" in rest
    assert erasure_pipeline.depth(dead) == 0
    replayed = erasure_pipeline.take(queue)
    assert sorted(m.properties["message_id"] for m in replayed) == sorted(ids), "none lost, none duplicated"
    for message in replayed:
        headers = message.headers
        assert not {"x-attempts", "x-error-kind", "x-error", "x-failed-at", "x-service"} & set(headers)
        assert headers["x-replayed-at"] and headers["x-signature"]
        assert headers["x-original-routing-key"] == "user.deregistered.v1"
        assert message.properties["type"] == "se.loggamera.user.deregistered.v1"
        assert message.properties["content_type"] == "application/cloudevents+json"


def test_broker_dead_letter_is_listed_with_its_reason_and_replayed_to_be_handled(erasure_pipeline, tmp_path) -> None:
    erasure_pipeline.declare(make_service())
    [event] = erasure_pipeline.publish(example_deregistration("ok-replayed"))
    queue, dead = _queues(erasure_pipeline)
    _exhaust_delivery_limit(erasure_pipeline, queue)
    wait_until(lambda: erasure_pipeline.depth(dead) == 1, what="the broker to dead-letter at the delivery limit")
    [letter] = json.loads(_dlq(erasure_pipeline, tmp_path, "list", "--service", "probe", "--messages",
                               "--json").stdout)["messages"]
    assert (letter["id"], letter["kind"]) == (event.event_id, "delivery_limit")
    assert letter["failed_at"] and letter["attempts"] is None
    _dlq(erasure_pipeline, tmp_path, "replay", event.event_id, "--service", "probe")
    [message] = erasure_pipeline.take(queue, ack=False)
    assert not [h for h in message.headers if "death" in h], "the broker's failure history is dropped"
    assert message.headers["x-original-routing-key"] == "user.deregistered.v1"
    running = erasure_pipeline.start(make_service())
    running.wait_handled(event.event_id)
    assert erasure_pipeline.depth(dead) == 0


def _exhaust_delivery_limit(pipeline: Pipeline, queue: str) -> None:
    """Reject with requeue until the quorum queue's x-delivery-limit dead-letters the message."""
    conn = pika.BlockingConnection(pika.URLParameters(pipeline.settings.amqp_url))
    try:
        channel = conn.channel()
        while True:
            method, _props, _body = channel.basic_get(queue)
            if method is None:
                return
            channel.basic_reject(method.delivery_tag, requeue=True)
    finally:
        conn.close()


def test_replay_killed_after_a_publish_and_run_again_moves_each_exactly_once(erasure_pipeline, tmp_path) -> None:
    ids = _make_dead_letters(erasure_pipeline, 4)
    queue, dead = _queues(erasure_pipeline)
    args = ["dlq", "replay", "--all", "--service", "probe", "--batch-size", "1"]
    env = {**os.environ, **_env(erasure_pipeline, tmp_path), "ERASURE_FAILPOINTS": "dlq_after_publish"}
    killed = subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env,
                            capture_output=True, timeout=60, check=False)
    assert killed.returncode == 70, killed.stderr.decode()
    wait_until(lambda: erasure_pipeline.depth(dead) == 4, what="the unacknowledged dead letter to come back")
    assert erasure_pipeline.depth(queue) == 1, "the first one was published before the crash"
    again = json.loads(_dlq(erasure_pipeline, tmp_path, *args[1:], "--json").stdout)
    assert (again["moved"], again["acked_only"]) == (3, 1)
    assert erasure_pipeline.depth(dead) == 0
    assert sorted(_ids_in(erasure_pipeline, queue, ack=True)) == sorted(ids), "none lost, none duplicated"


def test_purge_removes_only_the_selection_after_confirmation(erasure_pipeline, tmp_path) -> None:
    ids = _make_dead_letters(erasure_pipeline, 2, poison=2)
    _, dead = _queues(erasure_pipeline)
    declined = _dlq(erasure_pipeline, tmp_path, "purge", "--service", "probe", "--kind", "permanent",
                    stdin="n\n", code=1)
    assert "Delete 2 dead letter(s)" in declined.output
    assert erasure_pipeline.depth(dead) == 4
    purged = _dlq(erasure_pipeline, tmp_path, "purge", "--service", "probe", "--kind", "permanent", "--yes")
    assert "removed 2 dead letter(s)" in purged.stdout
    assert sorted(_ids_in(erasure_pipeline, dead)) == sorted(ids[2:]), "only the poison is left"


def test_dry_run_changes_nothing(erasure_pipeline, tmp_path) -> None:
    ids = _make_dead_letters(erasure_pipeline, 3)
    queue, dead = _queues(erasure_pipeline)
    replay = json.loads(_dlq(erasure_pipeline, tmp_path, "replay", "--service", "probe", "--dry-run", "--json").stdout)
    purge = json.loads(_dlq(erasure_pipeline, tmp_path, "purge", "--all", "--service", "probe", "--dry-run",
                            "--json").stdout)
    assert (replay["moved"], replay["dry_run"], purge["selected"], purge["removed"]) == (3, True, 3, 0)
    assert (erasure_pipeline.depth(queue), erasure_pipeline.depth(dead)) == (0, 3)
    assert sorted(_ids_in(erasure_pipeline, dead)) == sorted(ids)


def test_a_selection_is_required_and_an_unknown_queue_is_named(erasure_pipeline, tmp_path) -> None:
    assert "say which dead letters" in _dlq(erasure_pipeline, tmp_path, "replay", code=2).output
    unknown = _dlq(erasure_pipeline, tmp_path, "purge", "--service", "nosuch", "--yes", code=1)
    assert f"no dead-letter queue '{erasure_pipeline.namespace}.nosuch.dead'" in unknown.output


def test_every_dlq_command_help_has_an_example() -> None:
    for command in ("list", "show", "replay", "purge"):
        result = CliRunner().invoke(cli, ["dlq", command, "--help"])
        assert result.exit_code == 0 and "erasure dlq " + command in result.output


def test_progress_draws_a_bar_with_rate_and_eta_on_a_tty() -> None:
    out = io.StringIO()
    with Progress(10, "replay", stream=out, tty=True, every=0) as bar:
        for _ in range(10):
            bar.advance()
    text = out.getvalue()
    assert "replay [" in text and "/s" in text and "ETA" in text and "\r" in text
    assert text.endswith("replay: 10/10 in 0:00 (" + text.rsplit("(", 1)[1])


def test_progress_writes_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    with Progress(4, "purge", stream=out, tty=False, every=0) as bar:
        bar.advance(2)
        bar.advance(2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("purge: 2/4") and "ETA" in lines[0]
    assert lines[-1].startswith("purge: 4/4 in ") and "\r" not in out.getvalue()
