"""Who is using the review page: sign-in with a users file, or a header from a trusted proxy;
the server-side session (sessions.py, rows in the shared store) and its CSRF token; the sign-in
throttle.

Users file: the password is checked with scrypt in constant time; an unknown user costs the same
(a dummy hash) and gets the same message as a wrong password. A successful sign-in starts a new
session (new random id in the cookie, new CSRF token); it ends at logout, after
`session_idle_seconds` without a request, or `session_max_age_seconds` after sign-in.

Throttle (failures counted in the store over 15 minutes, per client address and username, so
every worker sees them and no cache can be flushed; an attempt is counted before its password is
checked, so parallel attempts are all counted, and cleared when it succeeds): after `PAIR_FREE`
failures for one username from one address, each further try from that address waits 1, 2, 4 ...
seconds (at most 15 minutes) after the last failure, answered 429 with Retry-After and no
password check. When a username has `USER_UNDER_ATTACK` failures from all addresses together,
each address gets only one free failure for it. An address with `ADDRESS_LIMIT` failures (any
usernames) waits until its oldest leaves the window. The real user at another address is slowed
down at worst, never locked out. Behind a reverse proxy, `client_address_header` names the
client (believed only from `trusted_proxy_ips`).

Proxy header: only a request whose direct peer is in `trusted_proxy_ips` may name the user, and
the header is required on every request (the session then only holds the CSRF token); a name not
in `proxy_users` is not signed in.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Request

from ips_screen.service.passwords import hash_password, verify_password
from ips_screen.service.sessions import STATE_KEY, SessionCookie, anonymous_csrf
from ips_screen.service.state import ServiceState
from ips_screen.service.store import FAILURE_WINDOW_SECONDS, FailureCounts, SessionRow

PAIR_FREE = 5
USER_UNDER_ATTACK = 50
ADDRESS_LIMIT = 30
MAX_DELAY = FAILURE_WINDOW_SECONDS


@dataclass(frozen=True)
class User:
    username: str
    practitioner: str  # "Practitioner/<id>" or "PractitionerRole/<id>": `by` of accept/decline


class SignInThrottled(Exception):
    """Too many failed sign-ins from this address: try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _state(request: Request) -> ServiceState:
    return request.app.state.service


def _now(request: Request) -> float:
    return _state(request).now().timestamp()


def _cookie(request: Request) -> SessionCookie:
    return getattr(request.state, STATE_KEY)


def _row(request: Request) -> SessionRow | None:
    """The live session row for the request's cookie (read once per request)."""
    handle = _cookie(request)
    if not handle.loaded:
        sid = handle.id
        handle.row = _state(request).store.session(sid, _now(request)) if sid else None
        handle.loaded = True
    return handle.row


def start_session(request: Request, username: str) -> None:
    """A new session for `username` under a new id (the old id, if any, is ended)."""
    store, now = _state(request).store, _now(request)
    handle = _cookie(request)
    if handle.id is not None:
        store.delete_session(handle.id, now)
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.create_session(session_id, username, csrf, now)
    handle.outgoing, handle.cleared = session_id, False
    handle.row, handle.loaded = SessionRow(username, csrf, None, now, now), True


def end_session(request: Request) -> None:
    """Delete the session row and clear the cookie: a saved copy of the cookie is worthless."""
    handle = _cookie(request)
    if handle.id is not None:
        _state(request).store.delete_session(handle.id, _now(request))
    handle.outgoing, handle.cleared = None, True
    handle.row, handle.loaded = None, True


def csrf_token(request: Request) -> str:
    """The session's CSRF token; for a visitor not signed in, one derived from a new random id."""
    row = _row(request)
    if row is not None:
        return row.csrf
    handle = _cookie(request)
    if handle.id is None:
        handle.outgoing, handle.cleared = secrets.token_urlsafe(32), False
    assert handle.id is not None
    return _anonymous_csrf(request, handle.id)


def _anonymous_csrf(request: Request, session_id: str) -> str:
    secret = _state(request).session_secret
    assert secret is not None  # the review page needs it (app.py)
    return anonymous_csrf(secret, session_id)


def csrf_ok(request: Request, sent: str | None) -> bool:
    row = _row(request)
    sid = _cookie(request).id
    if row is not None:
        expected = row.csrf
    elif sid is not None:
        expected = _anonymous_csrf(request, sid)
    else:
        return False
    if not sent:
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
        row = _row(request)
        if row is None or row.username != name:
            start_session(request, name)
        return User(name, page.proxy_users[name])
    row = _row(request)
    if row is None:
        return None
    entry = state.users.get(row.username)
    return User(row.username, entry.practitioner) if entry is not None else None


def client_address(request: Request, state: ServiceState) -> str:
    """The direct peer, or the address a trusted proxy names in `client_address_header` (the
    last entry: the one that proxy added)."""
    peer = request.client.host if request.client else "unknown"
    page = state.config.review_page
    if page is None or page.client_address_header is None or not page.is_trusted_proxy(peer):
        return peer
    named = request.headers.get(page.client_address_header, "").split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(named))
    except ValueError:
        return peer


def throttle_wait(counts: FailureCounts, now: float) -> int:
    """Seconds an address must wait before trying a username again (0: it may try now), from
    the failures in the window (see the module docstring)."""
    waits = [0.0]
    if counts.address >= ADDRESS_LIMIT and counts.address_oldest is not None:
        waits.append(counts.address_oldest + FAILURE_WINDOW_SECONDS - now)
    free = PAIR_FREE if counts.username < USER_UNDER_ATTACK else 1
    if counts.pair >= free and counts.pair_last is not None:
        waits.append(counts.pair_last + min(2.0 ** (counts.pair - free), MAX_DELAY) - now)
    return max(0, math.ceil(max(waits)))


def sign_in(request: Request, state: ServiceState, username: str, password: str) -> User | None:
    """Check the password; on success start a fresh session for the user. Raises
    `SignInThrottled` (before any password check) when this address must wait. The attempt is
    counted as a failure before the password is checked (so parallel attempts cannot slip past
    the throttle) and the count is cleared when it succeeds."""
    now = state.now().timestamp()
    address = client_address(request, state)
    wait = state.store.sign_in_attempt(
        address, username, now, lambda counts: throttle_wait(counts, now)
    )
    if wait > 0:
        raise SignInThrottled(wait)
    entry = state.users.get(username)
    ok = verify_password(password, entry.password_hash if entry else _dummy_hash())
    if entry is None or not ok:
        return None
    state.store.sign_in_succeeded(address, username, now)
    start_session(request, username)
    return User(username, entry.practitioner)


def flash(request: Request, message: str) -> None:
    sid = _cookie(request).id
    if _row(request) is not None and sid is not None:
        _state(request).store.set_flash(sid, message, _now(request))


def pop_flash(request: Request) -> str | None:
    row, sid = _row(request), _cookie(request).id
    if row is None or row.flash is None or sid is None:
        return None
    _state(request).store.set_flash(sid, None, _now(request))
    return row.flash
