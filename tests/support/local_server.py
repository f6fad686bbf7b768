"""A real HTTP server on 127.0.0.1, in a thread, answering with a handler the test gives: for code
that must be seen on the wire (redirects, slow or large answers, paging) rather than through a
patched session."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POLL_SECONDS = 0.05  # how soon close() stops the serving thread


Handler = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread; records every request path it gets."""

    def __init__(self, handle: Handler) -> None:
        self.paths: list[str] = []
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(POLL_SECONDS,), daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str):
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
