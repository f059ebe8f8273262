"""Soak the example service under load and faults; it stops by itself and reports.

    python benchmarks/soak.py --duration 60 --clients 16 [--json out.json] [--md out.md]

What it does, all on loopback:

1. starts a private ``redis-server`` and the example service (a real uvicorn
   process, ``RAGPROD_FAULT_INJECTION=1``) with four tenants, one of them with a
   small rate limit so the 429 path is exercised; Redis holds the L2 cache tier,
   the rate-limit buckets and the breaker state (``RAGPROD_SHARED_RESILIENCE=1``);
2. runs ``--clients`` concurrent httpx clients for ``--duration`` seconds: a mix
   of popular questions (cache hits), fresh questions (misses; 30 % of them carry
   a name and a unique e-mail address for the PII layer), and streamed answers
   (server-sent events);
3. at 25 % of the run it SIGKILLs Redis, and restarts it at 40 % (``--redis-fault
   pause``: SIGSTOP then SIGCONT, a hung Redis that accepts and never answers);
4. from 55 % to 70 % the upstream LLM fails (``POST /admin/faults``);
5. samples the service's RSS and ``/metrics`` every 0.5 s, then stops everything.

Report: requests and throughput, responses by status and reason, p50/p95/p99
latency, cache hit ratio, breaker transitions, recovery times after each
fault, RSS growth after warm-up, requests that outlived their deadline and
unhandled errors (any 5xx that is not a clean 503 with a reason, a broken
stream, or a transport error). Exit status 1 if any unhandled error, deadline
overrun or slow recovery happened.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from _soak_report import Sample, Timeline, markdown, metric, summarise

ROOT = Path(__file__).resolve().parent.parent
TENANTS = {f"t{i}": f"soak-key-{i}-{uuid.uuid4().hex}" for i in range(3)}
TENANTS["limited"] = f"soak-key-limited-{uuid.uuid4().hex}"
POPULAR = [
    "How long do refunds take?",
    "How do I fail over Redis?",
    "What happens when the LLM provider is down?",
    "How often must passwords be rotated?",
    "What is the on-call escalation policy?",
    "How do I report a lost corporate card?",
]
NAMES = ["Jane Doe", "Lukas Meyer", "Amélie Laurent", "Ravi Patel"]
REQUEST_TIMEOUT = 5.0
OPEN_SECONDS = 2.0
#: Small enough that the L1 tier is full (evicting) early in a run: the RSS of
#: the rest of the run is then steady state, not a cache filling up.
CACHE_MAXSIZE = 500


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``/proc`` on Linux, else psutil)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        psutil = importlib.import_module("psutil")
        return int(psutil.Process(pid).memory_info().rss)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    """A private redis-server on a fixed port that can be killed and restarted."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on PATH")
        self.binary, self.port = binary, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="ragprod-soak-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def pause(self) -> None:
        """SIGSTOP: connections are accepted, nothing answers (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def service_env(port: int, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "RAGPROD_TENANTS": json.dumps(TENANTS),
        "RAGPROD_TENANT_RATE_LIMITS": json.dumps({"limited": [2, 4]}),
        "RAGPROD_PORT": str(port),
        "RAGPROD_REDIS_URL": redis_url,
        "RAGPROD_REDIS_PREFIX": f"soak-{uuid.uuid4().hex[:8]}",
        "RAGPROD_FAULT_INJECTION": "1",
        "RAGPROD_SHARED_RESILIENCE": "1",
        "RAGPROD_BREAKER_OPEN_SECONDS": str(OPEN_SECONDS),
        "RAGPROD_BREAKER_MINIMUM_CALLS": "10",
        "RAGPROD_BREAKER_WINDOW": "20",
        "RAGPROD_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
        "RAGPROD_UPSTREAM_TIMEOUT": "3",
        "RAGPROD_RATE_LIMIT": "1000",
        "RAGPROD_RATE_BURST": "1000",
        "RAGPROD_CACHE_MAXSIZE": str(CACHE_MAXSIZE),
        "RAGPROD_PII_KEY": "soak-pii-key-0123456789abcdef0123",
        "RAGPROD_LOG_LEVEL": "WARNING",
    }


async def one_request(
    client: httpx.AsyncClient, rng: random.Random, t0: float, stream_share: float
) -> Sample:
    tenant = rng.choice(["t0", "t0", "t1", "t1", "t2", "limited"])
    fresh = rng.random() < 0.3
    query = f"{rng.choice(POPULAR)} #{uuid.uuid4().hex[:6]}" if fresh else rng.choice(POPULAR)
    if fresh and rng.random() < 0.3:  # PII in the query: pseudonymized before cache and LLM
        query += f" I am {rng.choice(NAMES)}, mail me at user.{uuid.uuid4().hex[:8]}@example.com"
    stream = rng.random() < stream_share
    headers = {"X-API-Key": TENANTS[tenant]}
    body = {"query": query, "stream": stream}
    start = time.monotonic()
    sample = Sample(start - t0, 0.0, 0, tenant=tenant, stream=stream, fresh=fresh)
    try:
        if stream:
            async with client.stream("POST", "/query", json=body, headers=headers) as response:
                sample.status = response.status_code
                if response.status_code == 200:
                    last_event, last_data = "", ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            last_event = line[7:]
                        elif line.startswith("data: "):
                            last_data = line[6:]
                    data = json.loads(last_data) if last_data else {}
                    if last_event == "done":
                        sample.cached = data.get("cached")
                    else:
                        sample.status = 599  # stream broke after the status line
                        sample.reason = f"stream_{last_event or 'truncated'}:{data.get('reason')}"
                else:
                    await response.aread()
                    sample.reason = response.json().get("reason", "")
        else:
            response = await client.post("/query", json=body, headers=headers)
            sample.status = response.status_code
            payload = response.json()
            sample.reason = payload.get("reason", "") if response.status_code != 200 else ""
            sample.cached = payload.get("cached") if response.status_code == 200 else None
            if response.status_code in (429, 503) and "retry-after" not in response.headers:
                sample.reason += ":no-retry-after"
    except (httpx.TransportError, ValueError) as exc:
        sample.status, sample.reason = 0, type(exc).__name__
    sample.latency = time.monotonic() - start
    return sample


async def client_loop(
    client: httpx.AsyncClient, seed: int, t0: float, end: float, out: list[Sample]
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < end:
        sample = await one_request(client, rng, t0, stream_share=0.15)
        out.append(sample)
        if sample.status == 429:
            await asyncio.sleep(min(1.0, rng.random()))  # a polite client backs off


async def monitor(
    client: httpx.AsyncClient, pid: int, t0: float, end: float, timeline: Timeline
) -> None:
    last_state = ""
    while time.monotonic() < end + 1:
        now = time.monotonic() - t0
        timeline.rss.append((now, rss_bytes(pid)))
        try:
            text = (await client.get("/metrics")).text
        except httpx.TransportError:
            text = ""
        state = next(
            (s for s in ("open", "half_open", "closed")
             if metric(text, "ragprod_resilience_breaker_state", breaker="upstream", state=s)),
            "",
        )  # fmt: skip
        if state and state != last_state:
            timeline.breaker_states.append((round(now, 2), state))
            last_state = state
        up = metric(text, "ragprod_cache_redis_up")
        if (timeline.redis_restarted and timeline.redis_recovered is None and up == 1.0
                and now >= timeline.redis_restarted):  # fmt: skip
            timeline.redis_recovered = now
        await asyncio.sleep(0.5)


async def chaos(
    client: httpx.AsyncClient,
    redis: Redis,
    t0: float,
    duration: float,
    timeline: Timeline,
    redis_fault: str = "kill",
) -> None:
    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fraction * duration - time.monotonic()))

    await at(0.25)
    if redis_fault == "kill":
        redis.kill()
    else:
        redis.pause()
    timeline.redis_killed = time.monotonic() - t0
    await at(0.40)
    await asyncio.to_thread(redis.start if redis_fault == "kill" else redis.resume)
    timeline.redis_restarted = time.monotonic() - t0
    await at(0.55)
    fault_for = 0.15 * duration
    await client.post("/admin/faults", json={"mode": "fail", "duration": fault_for},
                      headers={"X-API-Key": TENANTS["t0"]})  # fmt: skip
    timeline.fault_started = time.monotonic() - t0
    timeline.fault_cleared = timeline.fault_started + fault_for


def start_service(port: int, redis_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    """The example service under uvicorn, logging to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_service.app:app", "--host",
             "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=service_env(port, redis_url), stdout=log, stderr=log,
        )  # fmt: skip


async def soak(duration: float, clients: int, redis_fault: str = "kill") -> dict[str, Any]:
    redis = Redis()
    redis.start()
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="ragprod-soak-")) / "service.log"
    service = await asyncio.to_thread(start_service, port, redis.url, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
        timeout = httpx.Timeout(REQUEST_TIMEOUT + 5.0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
            deadline = time.monotonic() + 90
            while True:
                if service.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"service did not start; see {log_path}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            samples: list[Sample] = []
            timeline = Timeline()
            t0 = time.monotonic()
            end = t0 + duration
            await asyncio.gather(
                monitor(client, service.pid, t0, end, timeline),
                chaos(client, redis, t0, duration, timeline, redis_fault),
                *(client_loop(client, seed, t0, end, samples) for seed in range(clients)),
            )
            metrics_text = (await client.get("/metrics")).text
        report = summarise(
            samples, timeline, metrics_text, duration,
            request_timeout=REQUEST_TIMEOUT, open_seconds=OPEN_SECONDS,
        )  # fmt: skip
        report["clients"] = clients
        report["redis_fault"] = redis_fault
        report["service_log"] = str(log_path)
        return report
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
        redis.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 1 on unhandled errors, overruns, tracebacks or slow recovery."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--redis-fault", choices=("kill", "pause"), default="kill",
        help="kill: SIGKILL then restart; pause: SIGSTOP then SIGCONT (a hung Redis)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--md", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    if args.duration < 10 or args.clients < 1:
        parser.error("--duration must be >= 10 s and --clients >= 1")
    report = asyncio.run(soak(args.duration, args.clients, args.redis_fault))
    log_text = Path(report["service_log"]).read_text(encoding="utf-8", errors="replace")
    report["tracebacks_in_log"] = log_text.count("Traceback")
    table = markdown(report)
    print(table)
    print(json.dumps({k: report[k] for k in ("breaker_timeline", "unhandled_examples",
                                                "tracebacks_in_log")}, default=str))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if args.md:
        args.md.write_text(table + "\n", encoding="utf-8")
    recovery = report["upstream_recovery_s"]
    recovered = recovery is not None and recovery <= OPEN_SECONDS + 1
    bad = report["unhandled_errors"] + report["deadline_overruns"] + report["tracebacks_in_log"]
    return 0 if recovered and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
