"""The site on a socket: waitress, with every limit named, and stopped by SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress  # untyped (pyproject's mypy overrides): used through a few calls only

from postwacht.adapters.web import BODY_MAX

THREADS = 8
CONNECTION_LIMIT = 100
CHANNEL_TIMEOUT = 60
"""Seconds an idle connection is kept."""
HEADERS_MAX = 32 * 1024


class WebServer:
    """Listening once made (`port` is the real one when 0 was asked for)."""

    def __init__(self, app: Callable[..., Any], host: str, port: int) -> None:
        self._server = waitress.create_server(
            app, host=host, port=port, threads=THREADS, connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT, max_request_body_size=BODY_MAX,
            max_request_header_size=HEADERS_MAX, ident="postwacht",
            expose_tracebacks=False, clear_untrusted_proxy_headers=False)
        # The site itself believes X-Forwarded-For only from its trusted proxy
        # (Desk.client); waitress, not told of that proxy, would drop it for everyone.
        self.port = int(self._server.effective_port)

    def serve_until_terminated(self) -> None:
        """Serve until SIGTERM or SIGINT; requests in progress get a moment to finish."""

        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(0)

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._server.run()  # returns once a signal ended its loop
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._server.close()
