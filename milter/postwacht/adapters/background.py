"""Socket servers that serve from a daemon thread beside libmilter's main loop."""

from __future__ import annotations

import socketserver
import threading


class BackgroundServer(socketserver.BaseServer):
    """`start()` serves in a daemon thread; `stop()` ends it and closes the socket."""

    thread_name = "server"
    _thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name,
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Stop serving (if it ever started: `shutdown` would wait for ever) and close."""
        if self._thread is not None:
            self.shutdown()
        self.server_close()
