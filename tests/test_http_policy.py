"""The retry policy for outside calls: what is transient, what is permanent, and how long we wait."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared.errors import PermanentError, TransientError
from shared.http import (
    USER_AGENT,
    call_with_retries,
    classify_response,
    make_client,
    parse_retry_after,
    retrying,
)
from shared.testing.ports import free_port


def _response(status: int, *, json: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("PUT", "https://us1.api.mailchimp.com/3.0/lists/l1/members/abc?fields=id")
    return httpx.Response(status, json=json, headers=headers, request=request)


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (201, None),
        (204, None),
        (301, None),
        (304, None),
        (400, PermanentError),
        (401, PermanentError),
        (403, PermanentError),
        (404, PermanentError),
        (405, PermanentError),
        (408, TransientError),
        (409, PermanentError),
        (410, PermanentError),
        (422, PermanentError),
        (425, TransientError),
        (429, TransientError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
    ],
)
def test_classify_response_sorts_status_codes_into_retry_or_dead_letter(
    status: int, expected: type[Exception] | None
) -> None:
    resp = _response(status)
    if expected is None:
        assert classify_response(resp, vendor="mailchimp") is None
    else:
        with pytest.raises(expected):
            classify_response(resp, vendor="mailchimp")


def test_429_retry_after_in_seconds_is_carried_on_the_error() -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(_response(429, headers={"Retry-After": "7"}), vendor="mailchimp")
    assert caught.value.retry_after == 7.0


def test_retry_after_as_http_date_becomes_seconds_from_now() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after(when)
    assert seconds is not None
    assert 25 <= seconds <= 31


def test_unreadable_or_past_retry_after_is_none_or_zero() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0


def test_permanent_error_names_vendor_method_path_status_and_vendor_title_never_the_body() -> None:
    request = httpx.Request("PUT", "https://x/3.0/lists/l1/members/abc?q=anna", json={"email": "anna@example.com"})
    body = {"type": "t", "title": "Invalid Resource", "status": 400, "detail": "bad merge field", "instance": "i"}
    resp = httpx.Response(400, json=body, request=request)
    with pytest.raises(PermanentError) as caught:
        classify_response(resp, vendor="mailchimp")
    message = str(caught.value)
    for part in ("mailchimp", "PUT", "/3.0/lists/l1/members/abc", "400", "Invalid Resource", "bad merge field"):
        assert part in message
    assert "anna" not in message


def test_vendor_detail_echoing_an_email_address_is_masked() -> None:
    body = {"title": "Forgotten Email Not Subscribed", "detail": "anna@example.com was permanently deleted"}
    with pytest.raises(PermanentError) as caught:
        classify_response(_response(400, json=body), vendor="mailchimp")
    assert "anna@example.com" not in str(caught.value)
    assert "Forgotten Email Not Subscribed" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist."}, "RESOURCE_NOT_FOUND"),
        ({"ErrorCode": 4001, "DeveloperErrorMessage": "CanNotBeDeletedException"}, "4001"),
        ({"error": "invalid_client", "error_description": "Client Authentication failed"}, "invalid_client"),
        ({"error": "unauthorized", "message": "missing or wrong bearer token"}, "unauthorized: missing"),
    ],
)
def test_each_vendor_error_shape_is_summarised(body: dict[str, object], words: str) -> None:
    with pytest.raises(PermanentError, match=words):
        classify_response(_response(404, json=body), vendor="v")


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("503")
        return "ok"

    assert call_with_retries(flaky, attempts=3) == "ok"
    assert len(calls) == 3


def test_permanent_errors_are_never_retried() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise PermanentError("400")

    with pytest.raises(PermanentError):
        call_with_retries(refused, attempts=5)
    assert len(calls) == 1


def test_refused_connection_is_a_transient_error_after_the_last_attempt(closed_port: int) -> None:
    calls: list[int] = []

    def connect() -> None:
        calls.append(1)
        with make_client(f"http://127.0.0.1:{closed_port}") as client:
            client.get("/")

    with pytest.raises(TransientError) as caught:
        call_with_retries(connect, attempts=3)
    assert len(calls) == 3
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_retry_after_within_max_wait_is_slept_before_the_next_attempt() -> None:
    calls: list[float] = []

    def rate_limited() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientError("429", retry_after=0.6)
        return "ok"

    assert call_with_retries(rate_limited, attempts=3, max_wait=1.0) == "ok"
    assert calls[1] - calls[0] >= 0.6


def test_retry_after_beyond_max_wait_gives_up_at_once_for_the_delay_queue() -> None:
    calls: list[int] = []

    def rate_limited() -> None:
        calls.append(1)
        raise TransientError("429", retry_after=120)

    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        call_with_retries(rate_limited, attempts=3, max_wait=5.0)
    assert len(calls) == 1
    assert caught.value.retry_after == 120
    assert time.monotonic() - started < 1


def test_back_off_grows_between_attempts() -> None:
    calls: list[float] = []

    def failing() -> None:
        calls.append(time.monotonic())
        raise TransientError("503")

    with pytest.raises(TransientError):
        call_with_retries(failing, attempts=3)
    first_gap, second_gap = calls[1] - calls[0], calls[2] - calls[1]
    assert first_gap >= 0.2
    assert second_gap >= 0.4


def test_retrying_decorator_applies_the_same_policy() -> None:
    calls: list[int] = []

    @retrying(attempts=2, max_wait=1.0)
    def flaky(value: int) -> int:
        calls.append(value)
        if len(calls) == 1:
            raise TransientError("timeout")
        return value * 2

    assert flaky(21) == 42
    assert calls == [21, 21]


def test_make_client_identifies_itself_and_connects_within_three_seconds() -> None:
    with make_client("https://example.invalid/api", headers={"X-Extra": "1"}) as client:
        assert client.headers["User-Agent"] == USER_AGENT
        assert USER_AGENT.startswith("loggamera-erasure/")
        assert client.headers["X-Extra"] == "1"
        assert client.timeout.connect == 3.0
        assert client.timeout.read == 10.0
        assert not client.follow_redirects
