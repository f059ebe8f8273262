"""Preflight: cost of validate() and of readiness probes against real alternatives.

Baselines:
- pydantic-settings validating a typed model of the same settings (what the
  issue's anchors do: types only, no cross-checks against LlamaIndex objects);
- the first LlamaIndex query that fails on the misconfiguration validate()
  reports (how long until you learn without preflight, offline models only);
- redis-py PINGs one after another with the same 1 s timeouts (sequential
  probes) against ragprod's parallel HealthCheck.ready().
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.storage.kvstore import SimpleKVStore
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from _harness import Result, Stat, Suite
from ragprod.preflight import HealthCheck, validate, write_manifest
from ragprod.testing import ExtractiveLLM, HashEmbedding

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class AppSettings(BaseSettings):
    """What a pydantic-settings app would declare for the same configuration."""

    model_config = SettingsConfigDict(env_prefix="APP_")
    llm_model: str = "gpt-4o-mini"
    embed_model: str = "text-embedding-3-small"
    embed_dim: int = Field(default=1536, gt=0)
    chunk_size: int = Field(default=1024, gt=0)
    chunk_overlap: int = Field(default=200, ge=0)
    context_window: int = Field(default=128000, gt=0)
    num_output: int = Field(default=256, gt=0)
    similarity_top_k: int = Field(default=3, gt=0)
    redis_url: str = REDIS_URL
    persist_dir: str = "./storage"
    openai_api_key: str = "sk-placeholder-placeholder"
    timeout: float = Field(default=1.0, gt=0)


@contextmanager
def blackhole() -> Iterator[str]:
    """A TCP server that accepts and never answers (a hung Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _timed(fn: Callable[[], object], reps: int) -> Stat:
    walls, cpus = [], []
    for _ in range(reps):
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        fn()
        walls.append((time.perf_counter_ns() - w0) / 1000)
        cpus.append((time.process_time_ns() - c0) / 1000)
    return Stat(wall_us=statistics.median(walls), cpu_us=statistics.median(cpus), spread=0.0)


def _sequential_pings(urls: list[str], timeout: float) -> None:
    for url in urls:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        except redis.RedisError:
            pass
        finally:
            client.close()


def run(suite: Suite) -> None:
    Settings.llm = ExtractiveLLM()
    Settings.embed_model = HashEmbedding(dim=256)
    docs = [
        Document(
            text=f"Document {i} explains topic {i % 17} and policy {i % 5}.",
            metadata={"source": f"doc-{i}.md", "section": f"part {i % 4}"},
        )
        for i in range(200)
    ]
    index = VectorStoreIndex.from_documents(docs)
    engine = index.as_query_engine(similarity_top_k=3)
    manifest = SimpleKVStore()
    write_manifest(index, manifest)
    sample = docs[:20]
    validate(engine=engine, manifest=manifest, documents=sample)  # warm the tokenizer

    full = validate(engine=engine, manifest=manifest, documents=sample)
    suite.compare(
        "validate(), all static checks + manifest canary",
        lambda: AppSettings(),
        lambda: validate(engine=engine, manifest=manifest, documents=sample),
        baseline_label="pydantic-settings model, 12 fields",
        note=f"{len(full.checks_run)} checks, 20-doc metadata sample; the baseline checks "
        "types only and catches none of the LlamaIndex misconfigurations",
    )

    bad_engine = index.as_query_engine(
        llm=ExtractiveLLM(context_window=300, num_output=256), similarity_top_k=3
    )

    def first_query_fails() -> None:
        try:
            bad_engine.query("what does topic 3 explain?")
        except ValueError:
            return
        raise AssertionError("expected the budget error")

    redis_urls = [REDIS_URL] if _redis_up() else []

    def preflight_catches() -> None:
        report = validate(engine=bad_engine, probes=True, redis_urls=redis_urls, timeout=1.0)
        assert "RAGPROD-E011" in report.codes

    suite.compare(
        "validate(probes=True): static + loopback Redis PING",
        first_query_fails,
        preflight_catches,
        baseline_label="first query failing (context budget)",
        note="same misconfiguration; offline LLM/embedding, so the baseline is a lower bound "
        f"of a real first-request failure; Redis probe {'on' if redis_urls else 'skipped'}",
    )

    if redis_urls:
        warm = redis.Redis.from_url(REDIS_URL)
        health_ok = HealthCheck(redis=[REDIS_URL], timeout=1.0)
        suite.compare(
            "HealthCheck.ready(), one live Redis",
            warm.ping,
            health_ok.ready,
            baseline_label="raw PING on a pooled client",
            note="ready() opens a fresh bounded connection per probe, in a worker thread",
        )

    reps = 1 if suite.quick else 3
    with blackhole() as hung1, blackhole() as hung2:
        urls = [REDIS_URL, _dead_url(), hung1, hung2]
        health = HealthCheck(redis=urls, timeout=1.0)
        suite.record(
            Result(
                area=suite.area,
                name="ready(): live + dead + 2 hung Redis, 1 s timeout",
                baseline_label="sequential redis-py PINGs, 1 s timeouts",
                candidate_label="ragprod",
                baseline=_timed(lambda: _sequential_pings(urls, 1.0), reps),
                candidate=_timed(health.ready, reps),
                note=f"median of {reps}; parallel probes are bounded by one timeout, "
                "sequential ones add up",
            )
        )
