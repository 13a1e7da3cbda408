"""Who may use the console: argon2 password checks, roles, server-side sessions, CSRF tokens, login rate limits.

Passwords are checked with argon2-cffi (the reference Argon2 binding, maintained by the PHC winner's
community) rather than anything hand-rolled. Sessions live in this process: the signed cookie only carries an
opaque session id, so logging out (or a restart) ends a session for good, even if its cookie was copied.
An identity provider (OIDC) can later replace `Authenticator.check` and create the same `Session`.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.console.settings import ConsoleSettings, ConsoleUser

ROLES = ("viewer", "operator")
_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash for the users setting."""
    if len(password) < 12:
        raise ValueError("use a password of at least 12 characters")
    return _hasher.hash(password)


def role_allows(role: str, needed: str) -> bool:
    """Operators may do everything viewers may."""
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass
class Session:
    """A logged-in person."""

    sid: str
    user: str
    role: str
    csrf: str
    expires: float

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf.encode(), str(token).encode())


class RateLimited(Exception):
    """Too many failed logins for this name or client; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


@dataclass
class FailedLogins:
    """Failed logins per key (a name, a client address) in a sliding window."""

    limit: int
    window_s: float
    _seen: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen[key]
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def check(self, keys: list[str], now: float) -> None:
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.limit:
                raise RateLimited(times[0] + self.window_s - now)

    def record(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._recent(key, now).append(now)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)


class Authenticator:
    """Checks passwords against the configured users and keeps the live sessions."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self._users: dict[str, ConsoleUser] = {u.name: u for u in settings.users}
        self._ttl = settings.session_hours * 3600
        self._failures = FailedLogins(settings.login_attempts, settings.login_window_s)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def check(self, name: str, password: str, client: str) -> Session | None:
        """A new session if the password is right; None if not; RateLimited after too many failures."""
        keys = [f"name:{name.lower()}", f"client:{client}"]
        now = time.monotonic()
        with self._lock:
            self._failures.check(keys, now)
        user = self._users.get(name)
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
            ok = user is not None
        except (VerificationError, InvalidHashError):
            ok = False
        with self._lock:
            if not ok:
                self._failures.record(keys, now)
                return None
            self._failures.clear(keys[0])
            for sid in [sid for sid, live in self._sessions.items() if live.expires <= now]:
                del self._sessions[sid]
            assert user is not None
            session = Session(secrets.token_urlsafe(32), user.name, user.role, secrets.token_urlsafe(32),
                              now + self._ttl)
            self._sessions[session.sid] = session
            return session

    def session(self, sid: str | None) -> Session | None:
        """The live session with this id, or None (unknown, ended or expired)."""
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[sid]
                return None
            return session

    def end(self, sid: str | None) -> None:
        """Log out: the session id is forgotten, so its cookie no longer opens anything."""
        with self._lock:
            self._sessions.pop(sid or "", None)
