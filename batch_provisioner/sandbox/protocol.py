"""A uvicorn h11 protocol that lets the app close a connection with no answer at all.

ASGI has no way to say "drop this TCP connection". The sandbox needs one for the
``reset`` and ``drop_after_commit`` faults, so this subclass of uvicorn's pure-Python h11
protocol puts an ``abort(hard)`` callable in each request's scope under
``scope["extensions"]["sandbox.abort"]``. ``hard=True`` sets SO_LINGER to 0 first so the
peer gets a RST; otherwise it gets a plain close. Either way the client sees a transport
error (httpx: ``RemoteProtocolError`` / ``ReadError``), never an HTTP status, and uvicorn
logs nothing because the cycle is marked disconnected.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from uvicorn.protocols.http.h11_impl import H11Protocol

ABORT_EXTENSION = "sandbox.abort"


class AbortableH11Protocol(H11Protocol):
    """uvicorn's H11Protocol plus the ``sandbox.abort`` scope extension."""

    def handle_events(self) -> None:
        """Handle parsed events; tag any request cycle started here with the extension."""
        previous = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and cycle is not previous:
            extensions = cycle.scope.setdefault("extensions", {})
            extensions[ABORT_EXTENSION] = {"abort": self._abort}

    def _abort(self, hard: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.cycle is not None:
            self.cycle.disconnected = True
        if hard:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
