"""Count what an application says to PostgreSQL, on the wire.

A TCP relay on 127.0.0.1 between an app and the server that reads the client's half of
the protocol and counts round trips and statements. Counting on the wire, not with a
SQLAlchemy `before_cursor_execute` listener, because the costs that matter most are
invisible to cursor events: the BEGIN and COMMIT the asyncpg dialect sends itself, the
pool's pre-ping, prepares, asyncpg's reset on release. It also counts the floor, which
has no SQLAlchemy at all, in the same units.

A round trip is a message after which the client waits for the server: a simple
`Query` ('Q') or the `Sync` ('S') that ends an extended-protocol exchange. A statement
is a `Query` or an `Execute` ('E'); its SQL comes from the `Parse` ('P') that prepared
it, followed through `Bind` ('B'). The relay answers a TLS request with "no", so the
stream it reads is plain text; it is used only for counting, never under load.
"""

import asyncio
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def classify(sql: str) -> str:
    """A short name for a statement, for per-request breakdowns."""
    text = " ".join(sql.split()).rstrip(";").strip()
    if not text:
        return "ping (empty statement)"
    first = text.split(" ", 1)[0].upper()
    lowered = text.lower()
    if first in {"BEGIN", "START"}:
        return "BEGIN"
    if first in {"COMMIT", "END"}:
        return "COMMIT"
    if first == "ROLLBACK":
        return "ROLLBACK"
    if "pg_advisory_unlock_all" in lowered:
        return "pool reset"
    if first == "SELECT":
        if lowered.startswith("select count(") or "count(*)" in lowered:
            return "SELECT count"
        if " from task" in lowered:
            return "SELECT task"
        if " from project" in lowered:
            return "SELECT project"
        return "SELECT other"
    return first


@dataclass
class WireCounts:
    connections: int = 0
    round_trips: int = 0
    prepares: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    texts: Counter[str] = field(default_factory=Counter)

    @property
    def statements(self) -> int:
        return sum(self.kinds.values())

    def copy(self) -> "WireCounts":
        return WireCounts(
            self.connections,
            self.round_trips,
            self.prepares,
            Counter(self.kinds),
            Counter(self.texts),
        )


class _ClientStream:
    """Parses one connection's client-to-server bytes and updates the shared counts."""

    def __init__(self, owner: "WireCounter") -> None:
        self.owner = owner
        self.buffer = bytearray()
        self.started = False
        self.statements: dict[str, str] = {}
        self.portals: dict[str, str] = {}

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Returns (bytes to forward to the server, bytes to answer the client with)."""
        self.buffer += data
        forward = bytearray()
        reply = bytearray()
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    break
                (length,) = struct.unpack_from("!i", self.buffer, 0)
                if len(self.buffer) < length:
                    break
                message = bytes(self.buffer[:length])
                del self.buffer[:length]
                (code,) = struct.unpack_from("!i", message, 4)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    reply += b"N"  # no encryption: the client goes on in plain text
                    continue
                forward += message
                if code >> 16 == 3:  # protocol 3.x StartupMessage: typed messages follow
                    self.started = True
                    self.owner._bump("connections")
                continue
            if len(self.buffer) < 5:
                break
            (length,) = struct.unpack_from("!i", self.buffer, 1)
            if len(self.buffer) < length + 1:
                break
            kind = chr(self.buffer[0])
            body = bytes(self.buffer[5 : length + 1])
            forward += self.buffer[: length + 1]
            del self.buffer[: length + 1]
            self._message(kind, body)
        return bytes(forward), bytes(reply)

    def _message(self, kind: str, body: bytes) -> None:
        def cstrings(count: int) -> list[str]:
            parts = body.split(b"\0", count)
            return [part.decode("utf-8", "replace") for part in parts[:count]]

        if kind == "Q":
            (sql,) = cstrings(1)
            self.owner._statement(sql, round_trip=True)
        elif kind == "P":
            name, sql = cstrings(2)
            self.statements[name] = sql
            self.owner._bump("prepares")
        elif kind == "B":
            portal, name = cstrings(2)
            self.portals[portal] = self.statements.get(name, "?")
        elif kind == "E":
            (portal,) = cstrings(1)
            self.owner._statement(self.portals.get(portal, "?"), round_trip=False)
        elif kind == "S":
            self.owner._bump("round_trips")


class WireCounter:
    """The relay, serving on its own thread and event loop until `stop()`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._counts = WireCounts()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def _bump(self, name: str) -> None:
        with self._lock:
            setattr(self._counts, name, getattr(self._counts, name) + 1)

    def _statement(self, sql: str, *, round_trip: bool) -> None:
        with self._lock:
            self._counts.kinds[classify(sql)] += 1
            self._counts.texts[" ".join(sql.split())[:300]] += 1
            if round_trip:
                self._counts.round_trips += 1

    def start(self) -> int:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def reset(self) -> None:
        with self._lock:
            self._counts = WireCounts()

    def snapshot(self) -> WireCounts:
        with self._lock:
            return self._counts.copy()

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        stream = _ClientStream(self)

        async def client_to_server() -> None:
            try:
                while data := await reader.read(65536):
                    forward, reply = stream.feed(data)
                    if reply:
                        writer.write(reply)
                        await writer.drain()
                    if forward:
                        up_writer.write(forward)
                        await up_writer.drain()
            finally:
                up_writer.close()

        async def server_to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        await asyncio.gather(client_to_server(), server_to_client(), return_exceptions=True)
