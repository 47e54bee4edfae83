"""A lean Redis client for the store's request path: one pipelined connection per process.

Each request of the transaction path is one script call, so the client's own cost per
command is paid on every scored transaction. redis-py's asyncio client spends ~105 us of
its own per command on this machine (a PING with redis-server on the same core: 137 us
against 31 us over a bare asyncio protocol; benchmarks/RESULTS.md, "Feature store client").
This client is that bare protocol plus what the store needs: commands packed by hiredis as RESP
arrays on one connection, replies matched to callers in order (any number in flight:
concurrent requests of a worker share the connection, pipelined), parsed by hiredis's C
reader. The commands a pass of the event loop sends go out in one write, by a callback
queued behind the pass's others: with Redis on the server's core, each write wakes Redis,
which then runs one command and wakes this process again; one write per pass lets it run
them all at once (transactions per second at 16 connections, Redis on the server's core,
2-core build VM: 3,198 -> 4,459, in interleaved runs). URLs: ``redis://``, ``rediss://``
(TLS, certificate and host name verified) and ``unix://``, with a user, a password and a
database; AUTH and SELECT on each connection; scripts by ``EVALSHA``, loaded on the first
``NOSCRIPT``.

Failures: a connection that cannot be made or is lost fails every command waiting on it
with :class:`ConnectionError`; the next command connects again. With ``timeout_s`` a
command not answered within that time (connecting included) raises :class:`TimeoutError`
and its connection is closed, failing the commands behind it: a server that stalls is not
waited on by every later command. The replies' deadlines are kept by one timer per
connection, set for the oldest command waiting and moved on only when it fires (an
``asyncio.timeout`` per command, a timer made and cancelled every time, cost ~15-20 us of
the ~130 us a transaction's script call took on the 2-core build VM). An error reply raises
:class:`ReplyError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Arg = str | bytes | int


class ReplyError(Exception):
    """An error reply from the server (``-ERR ...``, ``-NOSCRIPT ...``)."""


class AuthenticationError(ReplyError):
    """The server wants a password, or refused the one given."""


def _error(reply: ReplyError) -> ReplyError:
    text = str(reply)
    # an unauthenticated client's command longer than a few arguments is refused as a
    # protocol error before the server says NOAUTH
    if text.startswith(("NOAUTH", "WRONGPASS")) or "unauthenticated" in text:
        return AuthenticationError(f"Authentication: {text}")
    return reply


@dataclass(frozen=True)
class Address:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0


def parse_url(url: str) -> Address:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
    ``unix://[[user]:password@]/path/to/socket[?db=N]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"feature store URL {url!r}: expected redis://, rediss:// or unix://")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    query = parse_qs(parts.query)
    db_text = query.get("db", [""])[0]
    if parts.scheme == "unix":
        return Address(path=parts.path, username=username, password=password, db=int(db_text or 0))
    path_db = parts.path.strip("/")
    return Address(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        tls=parts.scheme == "rediss",
        username=username,
        password=password,
        db=int(path_db or db_text or 0),
    )


def encode(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings (text as UTF-8): hiredis's C packer, 2.5
    us for a transaction's 23 arguments where building the string in Python took 6.3 us."""
    return hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # its stub: 1-tuples


class _Connection(asyncio.Protocol):
    """One connection: commands written in order, each reply resolves the oldest waiter.
    Each waiter has a deadline (``loop.time()``; ``math.inf``: none), in send order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.deadlines: deque[float] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._corked: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            self.deadlines.popleft()
            if future.done():  # its caller gave up (timeout): the reply is dropped
                continue
            if isinstance(reply, ReplyError):
                future.set_exception(_error(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = ConnectionError(f"connection to the feature store lost: {exc or 'closed'}")
        self.transport = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.deadlines.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes, deadline: float = math.inf) -> asyncio.Future[Any]:
        """The reply's future; past ``deadline`` it fails with TimeoutError and the
        connection closes."""
        if self.transport is None or self.transport.is_closing():
            raise self.lost or ConnectionError("connection to the feature store closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append(future)
        self.deadlines.append(deadline)
        if self._watch is None and deadline != math.inf:
            self._watch = loop.call_at(deadline, self._check)
        if not self._corked:
            loop.call_soon(self._flush)
        self._corked.append(payload)
        return future

    def _flush(self) -> None:
        """The commands sent in one pass of the loop, in one write (see the module)."""
        payload = b"".join(self._corked)
        self._corked.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(payload)

    def _check(self) -> None:
        """The timer: the oldest waiter past its deadline closes the connection; otherwise
        the timer is set again for it (none is set while nothing with a deadline waits)."""
        self._watch = None
        if not self.deadlines or self.transport is None:
            return
        oldest = self.deadlines[0]
        loop = asyncio.get_running_loop()
        # within a millisecond counts as reached: uvloop's timers and clock move in whole
        # milliseconds, so a timer set for a deadline may fire just before it
        if oldest - loop.time() < 1e-3:
            future = self.waiting[0]
            if not future.done():
                future.set_exception(TimeoutError("no reply from the feature store in time"))
            self.transport.close()  # the waiters behind it fail as the connection goes
        elif oldest != math.inf:
            self._watch = loop.call_at(oldest, self._check)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Script:
    """A Lua script called by its SHA1; loaded into the server when it says NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisClient:
    def __init__(
        self,
        url: str,
        password: str | None = None,
        connect_timeout_s: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """A password in the URL wins over ``password`` (the token read from a secret).
        ``timeout_s``: the time each command may take, connecting included (None: no
        limit)."""
        address = parse_url(url)
        if address.password is None and password is not None:
            address = replace(address, password=password)
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        if address.tls and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        a = self.address
        async with asyncio.timeout(self.connect_timeout_s):
            if a.path is not None:
                _, conn = await loop.create_unix_connection(_Connection, a.path)
            else:
                _, conn = await loop.create_connection(
                    _Connection,
                    a.host,
                    a.port,
                    ssl=self.ssl_context if a.tls else None,
                    server_hostname=a.host if a.tls else None,
                )
            try:
                hello: list[asyncio.Future[Any]] = []
                if a.password is not None:
                    auth = [a.username, a.password] if a.username else [a.password]
                    hello.append(conn.send(encode(["AUTH", *auth])))
                if a.db:
                    hello.append(conn.send(encode(["SELECT", a.db])))
                for future in hello:
                    await future
            except BaseException:
                conn.close()
                raise
        return conn

    async def connection(self) -> _Connection:
        conn = self._connection
        if conn is not None and conn.open:
            return conn
        if self._connecting is None:  # one attempt at a time; concurrent callers share it
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            conn = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        self._connection = conn
        return conn

    def _deadline(self) -> float:
        if self.timeout_s is None:
            return math.inf
        return asyncio.get_running_loop().time() + self.timeout_s

    async def _open(self, deadline: float) -> _Connection:
        if deadline == math.inf:
            return await self.connection()
        async with asyncio.timeout_at(deadline):
            return await self.connection()

    async def _send(self, args: Sequence[Arg], deadline: float) -> Any:
        conn = self._connection
        if conn is None or not conn.open:
            conn = await self._open(deadline)
        return await conn.send(encode(args), deadline)

    async def call(self, *args: Arg) -> Any:
        return await self._send(args, self._deadline())

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """``EVALSHA``; on NOSCRIPT (a new or flushed server) loaded once and called again,
        each command with its own ``timeout_s`` (deadlines stay in send order)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._send(command, self._deadline())
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._send(("SCRIPT", "LOAD", script.source), self._deadline())
        return await self._send(command, self._deadline())

    def disconnect(self) -> None:
        """Close the connection (commands waiting on it fail); the next command reconnects."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.disconnect()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
