"""The review page's session cookie: it holds only an opaque random id; the session itself (user,
CSRF token, created, last seen, flash message) is a row in the shared store (store.py), so
logout, the idle timeout and the maximum age end it for good, on every worker.

`SessionCookieMiddleware` reads the cookie on requests under /review and puts a `SessionCookie`
in the request's state; the routes (through signin.py) start or end the session on it, and the
middleware then sets or clears the cookie on the response: HttpOnly, SameSite=Lax, Secure when
public_base_url is https, path limited to the review page.

A visitor who is not signed in has a random id and no row: the login form's CSRF token is then
an HMAC of that id with the session secret, so pages seen before sign-in write nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ips_screen.service.store import SessionRow

COOKIE = "ips_screen_review"
_ID = re.compile(r"^[A-Za-z0-9_\-]{43}$")  # secrets.token_urlsafe(32)
STATE_KEY = "review_session"


@dataclass
class SessionCookie:
    """The request's session id (from the cookie) and what the response must do with it."""

    incoming: str | None
    outgoing: str | None = None  # a new id to set
    cleared: bool = False
    row: SessionRow | None = None
    loaded: bool = False  # `row` has been read from the store for this request

    @property
    def id(self) -> str | None:
        if self.outgoing is not None:
            return self.outgoing
        return None if self.cleared else self.incoming


def anonymous_csrf(secret: str, session_id: str) -> str:
    """The CSRF token of a visitor not signed in: an HMAC of their (row-less) session id."""
    mac = hmac.new(secret.encode(), b"csrf:" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


class SessionCookieMiddleware:
    """Reads and writes the session cookie on the review page's requests (see the module doc)."""

    def __init__(
        self, app: ASGIApp, *, cookie_path: str, secure: bool, max_age: int, prefix: str
    ) -> None:
        self.app = app
        self.prefix = prefix
        attributes = f"Path={cookie_path}; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
        self._set = f"{{id}}; Max-Age={max_age}; {attributes}"
        self._clear = f"; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {attributes}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        handle = SessionCookie(incoming=_cookie_id(scope))
        scope.setdefault("state", {})[STATE_KEY] = handle

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = None
                if handle.outgoing is not None:
                    header = f"{COOKIE}=" + self._set.format(id=handle.outgoing)
                elif handle.cleared:
                    header = f"{COOKIE}=" + self._clear
                if header is not None:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"set-cookie", header.encode("latin-1")),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _cookie_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(COOKIE)
            if found is not None and _ID.match(found):
                return found
    return None
