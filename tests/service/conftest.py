"""A real uvicorn process serving the example, on a free loopback port.

Each ``ServiceProcess`` is a subprocess (``python -m uvicorn ...`` or
``python -m examples.fastapi_service``) configured only through ``RAGPROD_*``
environment variables, exactly as a deployment would be. Its stdout/stderr go
to a file the tests read (to check that logs hold no PII or secrets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._services import delete_prefix, free_port

ROOT = Path(__file__).resolve().parents[2]

ACME_KEY = "k-acme-0123456789abcdef"
GLOBEX_KEY = "k-globex-0123456789abcdef"
TINY_KEY = "k-tiny-0123456789abcdef"
TENANTS = {"acme": ACME_KEY, "globex": GLOBEX_KEY, "tiny": TINY_KEY}


class ServiceProcess:
    """The example service in a subprocess; ``.url``, ``.client()``, ``.log_text()``."""

    def __init__(self, env: dict[str, str], log_path: Path, entry: str = "uvicorn") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, **env, "RAGPROD_PORT": str(self.port)}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if entry == "uvicorn":
            app = "examples.fastapi_service.app:app"
            args = ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port),
                    "--no-access-log", "--log-level", "warning"]  # fmt: skip
        else:
            full_env["RAGPROD_HOST"] = "127.0.0.1"
            args = ["-m", "examples.fastapi_service"]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=full_env, stdout=self._log, stderr=self._log
        )

    def wait_healthy(self, timeout: float = 90.0) -> None:
        """Poll ``/health`` until it answers 200; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"service exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"service not healthy within {timeout} s:\n{self.log_text()[-3000:]}")

    def client(self, key: str | None = ACME_KEY, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client on the service, sending ``key`` as ``X-API-Key``."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def service_env(**overrides: str) -> dict[str, str]:
    """The test deployment's environment: three tenants, fault injection, fast breaker."""
    env = {
        "RAGPROD_TENANTS": json.dumps(TENANTS),
        "RAGPROD_TENANT_RATE_LIMITS": json.dumps({"tiny": [0.2, 2]}),
        "RAGPROD_FAULT_INJECTION": "1",
        "RAGPROD_SHARED_RESILIENCE": "1",
        "RAGPROD_BREAKER_OPEN_SECONDS": "1",
        "RAGPROD_BREAKER_MINIMUM_CALLS": "4",
        "RAGPROD_BREAKER_WINDOW": "6",
        "RAGPROD_RETRY_ATTEMPTS": "1",
        "RAGPROD_UPSTREAM_TIMEOUT": "10",
        "RAGPROD_REQUEST_TIMEOUT": "3",
        "RAGPROD_MAX_QUERY_CHARS": "200",
        "RAGPROD_MAX_BODY_BYTES": "4096",
        "RAGPROD_PII_KEY": "service-test-pii-key-0123456789abcdef",
        "RAGPROD_LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def service_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where service processes write their logs."""
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def redis_service_prefix(redis_server_url: str) -> Iterator[str]:
    """A Redis key prefix for the service under test; its keys are deleted at the end."""
    import uuid

    prefix = f"ragprod-test:svc-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefix(redis_server_url, prefix)


@pytest.fixture(scope="session")
def dead_redis_service(service_log_dir: Path) -> Iterator[ServiceProcess]:
    """The service (``python -m examples.fastapi_service``) pointed at a Redis nobody runs."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    proc = ServiceProcess(
        service_env(RAGPROD_REDIS_URL=dead), service_log_dir / "dead-redis.log", entry="module"
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def service(
    redis_server_url: str,
    redis_service_prefix: str,
    service_log_dir: Path,
    dead_redis_service: ServiceProcess,
) -> Iterator[ServiceProcess]:
    """The service under ``uvicorn``, with Redis as its L2 tier (both processes boot together)."""
    env = service_env(RAGPROD_REDIS_URL=redis_server_url, RAGPROD_REDIS_PREFIX=redis_service_prefix)
    proc = ServiceProcess(env, service_log_dir / "service.log")
    proc.wait_healthy()
    dead_redis_service.wait_healthy()
    yield proc
    proc.stop()
    # SIGTERM is a graceful shutdown: the lifespan closes Redis and the tracer (uvicorn
    # then re-raises the signal, so the exit status is -SIGTERM).
    assert proc.proc.returncode in (0, -15), proc.log_text()[-3000:]
    assert "ragprod.service.stopped" in proc.log_text()
    assert "Traceback" not in proc.log_text()
