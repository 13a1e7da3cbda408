"""End to end: a slice whose outside system is down is named in `erasure status`, then re-run on its own."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy.orm import Session

from schemas.examples import example_deregistration, example_purchase
from services.cli.main import cli
from services.ledger.commands import status_command
from services.ledger.queries import request_status
from shared.testing import wait_until

FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")


def _status(stack, request_id: str):
    with Session(stack.services["ledger"].engine) as session:
        return request_status(session, request_id)


def test_a_failing_slice_is_named_with_its_system_and_retried_alone(stack, monkeypatch) -> None:
    ledger_url = stack.services["ledger"].engine.url.render_as_string(hide_password=False)
    for name, value in {"ERASURE_LEDGER_DATABASE_URL": ledger_url, "ERASURE_AMQP_URL": stack.pipeline.settings.amqp_url,
                        "ERASURE_NAMESPACE": stack.pipeline.namespace, "ERASURE_LEDGER_STUCK_SECONDS": "1"}.items():
        monkeypatch.setenv(name, value)
    purchase = example_purchase("u-retry")
    [bought] = stack.pipeline.publish(purchase)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought.event_id)

    stack.sandbox.set_outage("mailchimp", "503")
    deregistration = example_deregistration("u-retry", requested_at=datetime.now(UTC))
    request_id = str(deregistration.request_id)
    stack.pipeline.publish(deregistration)

    def newsletter_dead_lettered():
        status = _status(stack, request_id)
        if status is None or status.missing != ("newsletter",):
            return None
        failure = {s.service: s.failure for s in status.slices}["newsletter"]
        return failure if failure is not None and failure.dead_lettered else None

    failure = wait_until(newsletter_dead_lettered, timeout=120, what="the newsletter slice to be dead-lettered")
    assert failure.system == "Mailchimp"
    assert failure.attempts == 4, "the first try and three delay tiers"
    assert "503" in failure.error and "mailchimp" in failure.error
    text, code = status_command(None, request_id=request_id)
    assert code == 0
    assert "newsletter: Mailchimp failed, attempt 4, dead-lettered, no automatic retry" in text

    time.sleep(1.1)  # no progress for longer than ERASURE_LEDGER_STUCK_SECONDS
    data, code = status_command(None, overdue=True, as_json=True)
    [listed] = [item for item in json.loads(data) if item["request_id"] == request_id]
    assert code == 1 and listed["why"] == "stuck"
    assert listed["failures"]["newsletter"]["system"] == "Mailchimp"
    assert "newsletter: Mailchimp failed" in status_command(None, overdue=True)[0]

    stack.sandbox.set_outage("mailchimp", "off")
    refused = CliRunner().invoke(cli, ["retry", request_id, "--slice", "payment"])
    assert refused.exit_code == 2 and "already reported" in refused.output
    result = CliRunner().invoke(cli, ["retry", request_id, "--slice", "newsletter"])
    assert result.exit_code == 0, result.output

    def complete():
        status = _status(stack, request_id)
        return status if status is not None and status.status == "complete" else None

    status = wait_until(complete, timeout=60, what="the request to complete after the retry")
    newsletter = {s.service: s for s in status.slices}["newsletter"]
    assert newsletter.outcome == "erased" and newsletter.failure is None
    assert stack.sandbox.state()["mailchimp"]["members"] == {}
