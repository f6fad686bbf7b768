"""Who is using the review page: sign-in with a users file, or a header from a trusted proxy;
the session (a signed cookie, see app.py) and its CSRF token.

Users file: the password is checked with scrypt in constant time; an unknown user costs the same
(a dummy hash) and gets the same message as a wrong password. After 10 failures for a username in
15 minutes, sign-in for it is refused for the rest of that window (same message again). A
successful sign-in replaces the whole session (new CSRF token) and lasts at most
`session_max_age_seconds` from sign-in.

Proxy header: only a request whose direct peer is in `trusted_proxy_ips` may name the user, and
the header is required on every request (the session then only holds the CSRF token); a name not
in `proxy_users` is not signed in.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Request

from ips_screen.service.passwords import hash_password, verify_password
from ips_screen.service.state import ServiceState

USER, AT, CSRF, FLASH = "user", "signed_in_at", "csrf", "flash"
MAX_FAILURES = 10
FAILURE_WINDOW = 15 * 60.0
_MAX_TRACKED = 10_000


@dataclass(frozen=True)
class User:
    username: str
    practitioner: str  # "Practitioner/<id>" or "PractitionerRole/<id>": `by` of accept/decline


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


class Throttle:
    """Failed sign-ins per username in a sliding window; bounded and thread-safe."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, username: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(username, []) if now - t < FAILURE_WINDOW]
        self._failures[username] = times
        return times

    def blocked(self, username: str, now: float) -> bool:
        with self._lock:
            return len(self._recent(username, now)) >= MAX_FAILURES

    def failed(self, username: str, now: float) -> None:
        with self._lock:
            self._recent(username, now).append(now)
            self._failures.move_to_end(username)
            while len(self._failures) > _MAX_TRACKED:
                self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get(CSRF)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[CSRF] = token
    return token


def csrf_ok(request: Request, sent: str | None) -> bool:
    expected = request.session.get(CSRF)
    if not isinstance(expected, str) or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def proxy_mode(state: ServiceState) -> bool:
    page = state.config.review_page
    return page is not None and page.proxy_header is not None


def current_user(request: Request, state: ServiceState) -> User | None:
    page = state.config.review_page
    if page is None:
        return None
    if page.proxy_header is not None:
        peer = request.client.host if request.client else None
        name = request.headers.get(page.proxy_header)
        if not name or not page.is_trusted_proxy(peer) or name not in page.proxy_users:
            return None
        if request.session.get(USER) != name:
            request.session.clear()
            request.session[USER] = name
        return User(name, page.proxy_users[name])
    name, at = request.session.get(USER), request.session.get(AT)
    if not isinstance(name, str) or not isinstance(at, int | float):
        return None
    if state.now().timestamp() - at > page.session_max_age_seconds:
        request.session.clear()
        return None
    entry = state.users.get(name)
    return User(name, entry.practitioner) if entry is not None else None


def sign_in(request: Request, state: ServiceState, username: str, password: str) -> User | None:
    """Check the password; on success start a fresh session for the user."""
    throttle: Throttle = request.app.state.sign_in_throttle
    now = state.now().timestamp()
    entry = state.users.get(username)
    ok = verify_password(password, entry.password_hash if entry else _dummy_hash())
    if throttle.blocked(username, now) or entry is None or not ok:
        throttle.failed(username, now)
        return None
    throttle.succeeded(username)
    request.session.clear()
    request.session.update({USER: username, AT: now, CSRF: secrets.token_urlsafe(32)})
    return User(username, entry.practitioner)


def flash(request: Request, message: str) -> None:
    request.session[FLASH] = message


def pop_flash(request: Request) -> str | None:
    message = request.session.pop(FLASH, None)
    return message if isinstance(message, str) else None
