"""Serving the app with waitress, guarded against slow or stalled clients.

Waitress buffers a whole request before the app sees it, and by default stops accepting
connections at 100 open ones: a hundred clients that start an upload and stall would lock
everyone out, /api/health included. So the server here
- accepts many connections (CONNECTION_LIMIT) but lets one peer hold at most
  `per_peer` requests that are still being received; the newest beyond that are closed;
- closes a connection whose request is not received within `request_timeout` seconds;
- answers waitress' own refusals (an upload over the body limit, a malformed request) with the
  API's JSON error, not waitress' text/plain page.
Health checks and finished requests are never touched by these rules.
"""

from __future__ import annotations

import json
import threading
import time

from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

CONNECTION_LIMIT = 1000
PER_PEER = 16
REQUEST_TIMEOUT = 60.0
CHECK_EVERY = 0.5  # seconds between the guard's rounds


class JsonErrorTask(ErrorTask):
    """Waitress' error response (400, 413, ...) as the API's JSON error."""

    def execute(self):
        e = self.request.error
        limit = getattr(self.channel.server, "facs_upload_mb", None)
        if e.code == 413 and limit:
            message = f"upload too large: the limit is {limit:g} MB"
        else:
            message = f"{e.reason}: {e.body}".strip(": ")
        body = json.dumps({"error": message, "status": e.code}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedChannel(HTTPChannel):
    error_task_class = JsonErrorTask

    def received(self, data):
        if self.request is None and data:
            self.request_started = time.time()
        return super().received(data)


def _receiving(channel) -> bool:
    """A request has begun arriving and is not complete yet."""
    return channel.request is not None and not channel.request.completed


def guard(server, per_peer: int, request_timeout: float, now: float | None = None) -> int:
    """One round of the rules (called from waitress' loop); returns the connections closed."""
    now = time.time() if now is None else now
    closed = 0
    by_peer: dict[str, list] = {}
    for channel in list(server._map.values()):
        if not isinstance(channel, GuardedChannel) or channel.will_close:
            continue
        if not _receiving(channel):
            continue
        started = getattr(channel, "request_started", channel.creation_time)
        if now - started > request_timeout:
            channel.will_close = True
            closed += 1
            continue
        peer = channel.addr[0] if isinstance(channel.addr, tuple) else str(channel.addr)
        by_peer.setdefault(peer, []).append((started, channel))
    for channels in by_peer.values():
        if len(channels) > per_peer:
            channels.sort(key=lambda sc: sc[0])
            for _, channel in channels[per_peer:]:  # the newest go
                channel.will_close = True
                closed += 1
    return closed


def make_server(
    app,
    host: str = "127.0.0.1",
    port: int = 9000,
    threads: int | None = None,
    per_peer: int = PER_PEER,
    request_timeout: float = REQUEST_TIMEOUT,
):
    """A guarded waitress server for `app` (port 0 picks a free port: `server.effective_port`).
    Its body limit is set just above the app's, so waitress refuses far larger uploads itself
    (as JSON) without buffering them."""
    state = app.extensions["facs"]
    max_body = int(state.limits["max_upload_mb"] * 1024 * 1024 * 1.5) + (1 << 20)
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads or state.pool.capacity + 4,  # a full pool still answers 503 quickly
        max_request_body_size=max_body,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=request_timeout,
        ident="facs",
        clear_untrusted_proxy_headers=True,
    )
    server.channel_class = GuardedChannel
    server.facs_upload_mb = state.limits["max_upload_mb"]
    waitress_maintenance = server.maintenance
    last = [0.0]

    def maintenance(now):
        waitress_maintenance(now)
        guard(server, per_peer, request_timeout, now)

    def readable():  # the loop asks every ~1 s (asyncore timeout): run the guard that often
        now = time.time()
        if now - last[0] >= CHECK_EVERY:
            last[0] = now
            guard(server, per_peer, request_timeout, now)
        return type(server).readable(server)

    server.maintenance = maintenance
    server.readable = readable
    server.adj.asyncore_loop_timeout = CHECK_EVERY
    return server


class BackgroundServer:
    """Run a guarded server in a thread (tests, benchmarks): `with BackgroundServer(app) as s:`.

    Leaving the block stops the server and, unless `close=False`, the app's workers."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, close: bool = True, **kw):
        self.app, self._close_app = app, close
        self.server = make_server(app, host, port, **kw)
        self.url = f"http://{host}:{self.server.effective_port}"
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self._closing:  # closing the socket under select() is the way to stop
                raise

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.close()
        self._thread.join(timeout=5)
        if self._close_app:
            self.app.extensions["facs"].close()
