"""The HTTP/1.1 connection: uvicorn's, plus a deadline for each request's headers.

uvicorn's httptools protocol (the C parser, about a third of the server CPU a small request
costs with the pure-Python h11) where httptools is installed, as it is with Kensa's
dependencies; h11's otherwise.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection
that is opened and sends half a request line, or a header a minute, stays open for ever
(issue 27: 40 such connections held the server). Here every connection must send a complete
request head within ``KENSA_HEADER_TIMEOUT_S`` of opening or of its last answer; a trickle of
bytes does not reset the clock. The body's deadline is the body limiter's
(:class:`service.middleware.BodyLimitMiddleware`), which can still answer 408.
"""

from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # httptools missing: the pure-Python parser
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base

PARSER = "httptools" if _Base.__name__ == "HttpToolsProtocol" else "h11"


class HeaderDeadlineProtocol(_Base):
    """uvicorn's HTTP/1.1 protocol that closes a connection whose request head is late."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._late, self.cycle)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _late(self, cycle) -> None:
        waiting = self.cycle is cycle and (cycle is None or cycle.response_complete)
        if waiting and not self.transport.is_closing():  # no new request head came
            self.transport.close()


def header_deadline_protocol(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class with ``timeout_s`` as its header deadline, for ``uvicorn.Config``."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,),
                {"header_timeout_s": float(timeout_s)})
