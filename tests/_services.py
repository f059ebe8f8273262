"""Real Redis and PostgreSQL for the test suite.

Resolution order for each service: the URL in the environment (``REDIS_URL``,
``DATABASE_URL``), then the conventional local address, then (Redis only) a
``redis-server`` started from PATH on a free port. When nothing answers, tests
that need the service are skipped with a reason, except under ``CI=true``,
where a missing service fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import pytest
import redis

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = "postgresql://127.0.0.1:5432/test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, because a service is missing."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix`` (a test's own namespace)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


class RedisProcess:
    """A private ``redis-server`` on a free port that a test may stop and restart."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="ragprod-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if redis_answers(self.url):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted, nothing answers."""
        assert self._proc is not None
        self._proc.send_signal(19)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        assert self._proc is not None
        self._proc.send_signal(18)


def resolve_redis_url() -> tuple[str | None, RedisProcess | None, str]:
    """Find a Redis: (url, process we started or None, reason if none)."""
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        if redis_answers(env_url):
            return env_url, None, ""
        return None, None, "REDIS_URL is set but the server does not answer PING"
    if redis_answers(LOCAL_REDIS):
        return LOCAL_REDIS, None, ""
    if shutil.which("redis-server"):
        proc = RedisProcess()
        proc.start()
        return proc.url, proc, ""
    return None, None, "no Redis: REDIS_URL unset, 127.0.0.1:6379 silent, no redis-server on PATH"


def resolve_postgres_url() -> tuple[str | None, str]:
    import psycopg

    url = os.environ.get("DATABASE_URL") or LOCAL_POSTGRES
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return url, ""
    except psycopg.Error as exc:
        where = "DATABASE_URL" if "DATABASE_URL" in os.environ else url
        return None, f"no PostgreSQL at {where}: {type(exc).__name__}"


@contextmanager
def blackhole_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()
