"""The Redis store's client (serving/feature_store/resp.py) against a real redis-server:
URLs, pipelined concurrent commands, scripts, reconnection, timeouts, AUTH, TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import servers
from serving.feature_store.resp import (
    Address,
    AuthenticationError,
    RedisClient,
    ReplyError,
    Script,
    encode,
    parse_url,
)
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    workdir = tmp_path_factory.mktemp("resp")
    socket_path = workdir / "redis.sock"
    srv = RedisServer(workdir, extra_args=("--unixsocket", str(socket_path)))
    yield srv
    srv.stop()


def test_urls() -> None:
    assert parse_url("redis://cache:6380/2") == Address(host="cache", port=6380, db=2)
    assert parse_url("rediss://u:p%40ss@cache") == Address(
        host="cache", tls=True, username="u", password="p@ss"
    )
    assert parse_url("redis://:secret@127.0.0.1?db=3") == Address(password="secret", db=3)
    assert parse_url("unix:///run/redis.sock?db=1") == Address(path="/run/redis.sock", db=1)
    with pytest.raises(ValueError, match="expected redis://"):
        parse_url("http://cache:6379")
    # a password in the URL wins over the one read from a secret
    assert RedisClient("redis://:inurl@h", password="other").address.password == "inurl"
    assert RedisClient("redis://h", password="token").address.password == "token"


def test_encoding() -> None:
    assert encode(["SET", "k", 12, b"\x00\r\n"]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n\x00\r\n\r\n"
    )


def test_concurrent_commands_share_one_connection_and_get_their_own_replies(
    redis_server: RedisServer,
) -> None:
    async def run() -> None:
        client = RedisClient(redis_server.url)
        await client.call("DEL", "resp:list")
        replies = await asyncio.gather(
            *(client.call("RPUSH", "resp:list", f"v{i}") for i in range(500))
        )
        # each caller got the length its own push produced, in the order they were written
        assert replies == list(range(1, 501))
        assert await client.call("LRANGE", "resp:list", 0, 2) == [b"v0", b"v1", b"v2"]
        clients = await client.call("CLIENT", "LIST")
        await client.close()
        assert clients.count(b"cmd=client") == 1  # one connection did it all

    asyncio.run(run())


def test_errors_and_scripts(redis_server: RedisServer) -> None:
    async def run() -> None:
        client = RedisClient(redis_server.url)
        with pytest.raises(ReplyError, match="unknown command"):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("PING") == b"PONG"  # still in step after an error
        script = Script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}")
        await client.call("SCRIPT", "FLUSH")
        # NOSCRIPT: loaded, then called
        assert await client.run(script, ["k"], ["a", 41]) == [b"k", b"a", 42]
        assert await client.run(script, ["k"], ["b", 1]) == [b"k", b"b", 2]
        await client.close()

    asyncio.run(run())


def test_a_unix_socket_and_a_database(redis_server: RedisServer, tmp_path: Path) -> None:
    sock = redis_server.extra_args[1]

    async def run() -> None:
        over_socket = RedisClient(f"unix://{sock}?db=5")
        await over_socket.call("SET", "resp:db", "five")
        over_tcp = RedisClient(f"redis://127.0.0.1:{redis_server.port}/5")
        assert await over_tcp.call("GET", "resp:db") == b"five"
        default_db = RedisClient(redis_server.url)
        assert await default_db.call("GET", "resp:db") is None
        for client in (over_socket, over_tcp, default_db):
            await client.close()

    asyncio.run(run())


def test_reconnects_after_the_server_restarts(redis_server: RedisServer) -> None:
    async def run() -> None:
        client = RedisClient(redis_server.url)
        assert await client.call("PING") == b"PONG"
        redis_server.stop()
        with pytest.raises(ConnectionError):
            await client.call("PING")
        with pytest.raises(OSError):  # refused while it is down
            await client.call("PING")
        redis_server.start()
        assert await client.call("PING") == b"PONG"
        await client.close()

    asyncio.run(run())


def test_a_stalled_command_times_out_and_the_next_one_reconnects(
    redis_server: RedisServer,
) -> None:
    async def run() -> None:
        client = RedisClient(redis_server.url)
        other = RedisClient(redis_server.url)
        await client.call("PING")
        # the server is busy for 0.5 s with another client's script
        busy = asyncio.ensure_future(
            other.call(
                "EVAL",
                "local t = redis.call('TIME') local e = t[1] * 1e6 + t[2] "
                "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] > e + 5e5 "
                "return 1",
                0,
            )
        )
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.call("PING")
        client.disconnect()
        assert await busy == 1
        assert await client.call("PING") == b"PONG"
        await client.close()
        await other.close()

    asyncio.run(run())


def test_commands_past_the_timeout_fail_and_close_their_connection(
    redis_server: RedisServer,
) -> None:
    """``timeout_s``: the command waiting longest fails with TimeoutError at its deadline,
    those pipelined behind it fail with the connection, and the next command reconnects;
    commands answered in time leave the connection open."""

    async def run() -> None:
        client = RedisClient(redis_server.url, timeout_s=0.1)
        other = RedisClient(redis_server.url)
        await other.call("PING")  # connected: its script goes out at once below
        first = await client.call("CLIENT", "ID")
        for _ in range(50):  # answered in time: one connection throughout
            assert await client.call("PING") == b"PONG"
        assert await client.call("CLIENT", "ID") == first
        busy = asyncio.ensure_future(
            other.call(
                "EVAL",
                "local t = redis.call('TIME') local e = t[1] * 1e6 + t[2] "
                "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] > e + 1e6 "
                "return 1",
                0,
            )
        )
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        start = loop.time()
        waiting = [asyncio.ensure_future(client.call("PING")) for _ in range(3)]
        results = await asyncio.gather(*waiting, return_exceptions=True)
        waited = loop.time() - start
        assert isinstance(results[0], TimeoutError)
        assert all(isinstance(r, ConnectionError) for r in results[1:])
        assert waited >= 0.1
        assert not busy.done()  # failed at the deadline, before the server could answer
        assert await busy == 1
        assert await client.call("CLIENT", "ID") != first  # a new connection
        await client.close()
        await other.close()

    asyncio.run(run())


def test_auth(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path, password="s3cret")

    async def run() -> None:
        without = RedisClient(srv.url)
        with pytest.raises(AuthenticationError, match="Authentication"):
            await without.call("SET", "a", "b")
        wrong = RedisClient(srv.url, password="nope")
        with pytest.raises(AuthenticationError):
            await wrong.call("PING")
        right = RedisClient(srv.url, password="s3cret")
        assert await right.call("PING") == b"PONG"
        for client in (without, wrong, right):
            await client.close()

    try:
        asyncio.run(run())
    finally:
        srv.stop()


def test_tls_verifies_the_server(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    tls_port = servers.free_port()
    srv = RedisServer(
        tmp_path,
        extra_args=(
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
        ),
    )

    async def run() -> None:
        trusted = ssl.create_default_context(cafile=str(cert))
        client = RedisClient(f"rediss://localhost:{tls_port}", ssl_context=trusted)
        assert await client.call("PING") == b"PONG"
        await client.close()
        # the system's trust store does not know this certificate: refused
        untrusted = RedisClient(f"rediss://localhost:{tls_port}")
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.call("PING")
        await untrusted.close()
        # a plain connection to the TLS port gets no answer it can read
        plain = RedisClient(f"redis://localhost:{tls_port}")
        with pytest.raises((ConnectionError, TimeoutError)):
            async with asyncio.timeout(1.0):
                await plain.call("PING")
        await plain.close()

    try:
        asyncio.run(run())
    finally:
        srv.stop()


def test_encoding_of_text_bytes_and_non_ascii_is_the_same_protocol() -> None:
    ascii_only = encode(["EVALSHA", "ab", 2, "k"])
    assert ascii_only == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$1\r\nk\r\n"
    # byte lengths, not character lengths
    assert encode(["SET", "ü"]) == b"*2\r\n$3\r\nSET\r\n$2\r\n\xc3\xbc\r\n"
