"""Retry policy for calls to outside systems: which answers are worth retrying, and how long to wait."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import ParamSpec, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from shared.errors import PermanentError, TransientError
from shared.logging import get_logger, mask_text

P = ParamSpec("P")
T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 425, 429})
INITIAL_BACKOFF = 0.2
CONNECT_TIMEOUT = 3.0

log = get_logger(__name__)


def _package_version() -> str:
    try:
        return version("loggamera-erasure")
    except PackageNotFoundError:
        return "dev"


USER_AGENT = f"loggamera-erasure/{_package_version()}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _vendor_summary(resp: httpx.Response) -> str:
    """The vendor's own words about the error, from whichever error shape it speaks."""
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase
    if not isinstance(body, dict):
        return resp.reason_phrase
    shapes = (
        ("title", "detail"),  # Mailchimp problem+json
        ("name", "message"),  # PayPal REST
        ("error", "error_description"),  # OAuth2 token endpoints
        ("ErrorCode", "DeveloperErrorMessage"),  # Visma eAccounting
        ("error", "message"),  # installer endpoints
    )
    known = [shape for shape in shapes if shape[0] in body]
    if not known:
        return resp.reason_phrase
    first, second = next((shape for shape in known if shape[1] in body), known[0])
    parts = [str(body[first]), str(body.get(second) or "")]
    return mask_text(": ".join(part for part in parts if part))


def classify_response(resp: httpx.Response, *, vendor: str) -> None:
    """Return for 2xx/3xx; raise TransientError for 408/425/429/5xx, PermanentError for other 4xx."""
    status = resp.status_code
    if status < 400:
        return
    # Path only: query strings and bodies can carry personal data.
    message = f"{vendor} {resp.request.method} {resp.request.url.path} answered {status}: {_vendor_summary(resp)}"
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(message, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    raise PermanentError(message)


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    return getattr(exc, "retry_after", None)


def _stop(attempts: int, max_wait: float) -> Callable[[RetryCallState], bool]:
    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= attempts:
            return True
        # A vendor asking for a longer pause than we hold a delivery for: let the delay queue wait instead.
        retry_after = _retry_after(state)
        return retry_after is not None and retry_after > max_wait

    return stop


def _wait(max_wait: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        retry_after = _retry_after(state)
        if retry_after is not None:
            return retry_after
        # Exponential back-off with jitter, so clients hit by one outage do not come back in step.
        backoff = INITIAL_BACKOFF * 2 ** (state.attempt_number - 1) + random.uniform(0, INITIAL_BACKOFF)
        return min(max_wait, backoff)

    return wait


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    sleep = state.next_action.sleep if state.next_action else 0.0
    log.warning("outside_call_retry", attempt=state.attempt_number, sleep=round(sleep, 3), error=str(exc))


def call_with_retries(fn: Callable[[], T], *, attempts: int = 3, max_wait: float = 5.0) -> T:
    """Run fn, retrying transient failures with back-off; a failure that outlasts them is a TransientError."""
    retryer = Retrying(
        stop=_stop(attempts, max_wait),
        wait=_wait(max_wait),
        retry=retry_if_exception_type((TransientError, httpx.TransportError)),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        return retryer(fn)
    except httpx.TransportError as exc:
        tries = retryer.statistics.get("attempt_number", attempts)
        raise TransientError(f"{_target(exc)}{type(exc).__name__} after {tries} attempts: {exc}") from exc


def _target(exc: httpx.TransportError) -> str:
    try:
        request = exc.request
    except RuntimeError:  # raised by httpx when the error carries no request
        return ""
    return f"{request.method} {request.url.host}:{request.url.port or ''}{request.url.path}: "


def retrying(*, attempts: int = 3, max_wait: float = 5.0) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of call_with_retries."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return call_with_retries(lambda: fn(*args, **kwargs), attempts=attempts, max_wait=max_wait)

        return wrapper

    return decorate


def make_client(
    base_url: str,
    *,
    auth: httpx.Auth | tuple[str, str] | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An httpx client for one outside system: short connect timeout, our User-Agent, no redirects."""
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        follow_redirects=False,
    )
