"""Socket servers that serve from a daemon thread beside libmilter's main loop."""

from __future__ import annotations

import socketserver
import threading


class BackgroundServer(socketserver.BaseServer):
    """`start()` serves in a daemon thread; `stop()` ends it and closes the socket."""

    thread_name = "server"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=self.thread_name,
                                  daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
