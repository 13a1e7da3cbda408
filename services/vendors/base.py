"""What every vendor client shares: one pooled httpx client and the retry policy."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

import httpx

from shared.http import call_with_retries

T = TypeVar("T")


class VendorClient:
    """Owns an httpx client; runs each operation under the shared retry policy."""

    vendor: str = "vendor"

    def __init__(self, http: httpx.Client, *, attempts: int = 3, max_wait: float = 5.0) -> None:
        self._http = http
        self._attempts = attempts
        self._max_wait = max_wait

    def _retry(self, fn: Callable[[], T]) -> T:
        return call_with_retries(fn, attempts=self._attempts, max_wait=self._max_wait)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
