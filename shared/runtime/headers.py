"""The AMQP header names the runtime writes on retried and dead-lettered messages (the one place they live)."""

from __future__ import annotations

ATTEMPTS = "x-attempts"
"""How many times the event failed before; the delay tiers count it."""
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
"""The routing key the event first arrived with (a replay publishes it there again)."""
LAST_ERROR = "x-last-error"
"""The masked reason of the last failure that sent the event to a delay tier."""
ERROR_KIND = "x-error-kind"
"""Why a dead letter is dead: a `BadInput` kind, `permanent`, `retries_exhausted`, `conflicting_duplicate`…"""
ERROR = "x-error"
"""The masked reason of a dead letter."""
FAILED_AT = "x-failed-at"
"""When the event was dead-lettered (ISO 8601, UTC)."""
SERVICE = "x-service"
"""The service that dead-lettered the event."""

RUNTIME_HEADERS = (ATTEMPTS, ERROR_KIND, ERROR, FAILED_AT, LAST_ERROR, SERVICE)
"""What a replay strips before publishing a dead letter again (it keeps ORIGINAL_ROUTING_KEY)."""
