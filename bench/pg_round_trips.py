"""Count a PostgreSQL client's round trips: a TCP relay between the client and the server that
reads the client's side of the wire protocol.

A client waits for the server once per `Sync` (the extended protocol: parse, bind, execute,
then sync) and once per `Query` (the simple protocol: `BEGIN`, `COMMIT`); those are the
round trips, whatever the driver does around them. asyncpg's `executemany` sends every
row's bind and execute and one sync: one round trip. `bench/delivery.py` relays its
databases through this to report round trips per event and per delivery; the tests count
the outbox's with it.

    relay = RoundTripRelay("127.0.0.1", 5432)
    await relay.start()
    url = relay.url("postgresql://postgres@127.0.0.1:5432/db")   # through the relay
    ...
    relay.reset(); <work>; relay.round_trips

It also groups them by transaction (`transactions`): from a `BEGIN` to its `COMMIT` or
`ROLLBACK` on one connection, or a lone statement outside one (autocommit), labelled by the
first words of its first statement, so a report can say what a claim or a recorder batch
costs.

TLS would hide the messages: the relay answers a client's TLS request itself, with "no", as
a server without TLS does, and the client goes on in plain text.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

#: The untyped requests a client may send before its startup message.
_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


#: How many characters of a transaction's first statement label it.
LABEL_LENGTH = 48


@dataclass
class _Session:
    """What the relay knows of one client connection."""

    #: Prepared statement name → its SQL (asyncpg names the statements it caches).
    statements: dict[bytes, bytes] = field(default_factory=dict)
    #: The statements bound since the last Sync.
    bound: list[bytes] = field(default_factory=list)
    #: In a transaction: its statements so far and its round trips (BEGIN counted).
    in_transaction: list[bytes] | None = None
    round_trips: int = 0


class RoundTripRelay:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self.port = 0
        #: Every message type the clients sent, by its type byte ("P", "B", "S", "Q", …).
        self.messages: Counter[str] = Counter()
        #: (label, round trips) → how many transactions of that shape ran.
        self.transactions: Counter[tuple[str, int]] = Counter()
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def round_trips(self) -> int:
        return self.messages["S"] + self.messages["Q"]

    def reset(self) -> None:
        self.messages.clear()
        self.transactions.clear()

    def _observe(self, session: _Session, kind: str, body: bytes) -> None:
        if kind == "P":
            name, rest = body.split(b"\0", 1)
            session.statements[name] = rest.split(b"\0", 1)[0]
        elif kind == "B":
            statement = body.split(b"\0", 2)[1]
            session.bound.append(session.statements.get(statement, b"?"))
        elif kind == "S":
            if session.in_transaction is None:
                self._ended(session.bound, 1)
            else:
                session.in_transaction += session.bound
                session.round_trips += 1
            session.bound = []
        elif kind == "Q":
            text = body.rstrip(b"\0").strip().upper()
            if text.startswith(b"BEGIN"):
                session.in_transaction, session.round_trips = [], 1
            elif session.in_transaction is not None and text.startswith((b"COMMIT", b"ROLLBACK")):
                self._ended(session.in_transaction, session.round_trips + 1)
                session.in_transaction = None
            elif session.in_transaction is not None:
                session.in_transaction.append(text)
                session.round_trips += 1
            else:
                self._ended([text], 1)

    def _ended(self, statements: list[bytes], round_trips: int) -> None:
        first = b" ".join(statements[0].split()).decode(errors="replace") if statements else ""
        self.transactions[(first[:LABEL_LENGTH], round_trips)] += 1

    def url(self, url: str) -> str:
        """`url` (a PostgreSQL URL) through the relay."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        tasks = [
            asyncio.create_task(self._client_to_server(reader, up_writer, writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._relays.update(tasks)
        for task in tasks:
            task.add_done_callback(self._relays.discard)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        writer.close()
        up_writer.close()

    async def _client_to_server(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        session = _Session()
        try:
            # Untyped: the optional TLS / GSS requests, refused here, then the startup message.
            while True:
                header = await reader.readexactly(8)
                length, code = struct.unpack("!ii", header)
                rest = await reader.readexactly(length - 8)
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    writer.write(header + rest)
                    break
                client.write(b"N")
            while True:
                header = await reader.readexactly(5)
                (length,) = struct.unpack("!i", header[1:])
                body = await reader.readexactly(length - 4)
                kind = chr(header[0])
                self.messages[kind] += 1
                self._observe(session, kind, body)
                writer.write(header + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        return


__all__ = ["RoundTripRelay"]
