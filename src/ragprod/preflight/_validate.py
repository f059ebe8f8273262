"""``validate()``: run every check, collect every finding, never crash."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ragprod.metrics import RagMetrics
from ragprod.preflight._check import Check, check, finding, registered_checks
from ragprod.preflight._checks_chunking import CHUNKING_CHECKS
from ragprod.preflight._checks_models import MODEL_CHECKS
from ragprod.preflight._checks_storage import STORAGE_CHECKS
from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding, Report, sort_findings
from ragprod.preflight._manifest import MANIFEST_CHECKS

__all__ = ["DEFAULT_CHECKS", "env_settings", "validate"]


def env_settings(env: Mapping[str, str]) -> tuple[Any, list[Finding]]:
    """Parse ``RAGPROD_*`` variables: ``(RagprodConfig | None, findings)``.

    Invalid variables become ``RAGPROD-E060`` findings naming the variable and
    the rule it broke, never its value.
    """
    from pydantic import ValidationError

    from ragprod._settings import RagprodConfig

    values = {
        k.removeprefix("RAGPROD_").lower(): v for k, v in env.items() if k.startswith("RAGPROD_")
    }
    fields = set(RagprodConfig.model_fields)
    try:
        return RagprodConfig.model_validate({k: v for k, v in values.items() if k in fields}), []
    except ValidationError as exc:
        return None, [
            finding(
                "RAGPROD-E060",
                f"RAGPROD_{'_'.join(str(p) for p in err['loc']).upper()} is invalid: {err['msg']}",
                value=f"RAGPROD_{'_'.join(str(p) for p in err['loc']).upper()}",
                expected=err["type"],
                fix="correct the environment variable (see docs/preflight.md)",
            )
            for err in exc.errors(include_input=False, include_url=False)
        ]


@check("ragprod-env", "RAGPROD-E060")
def check_env(ctx: CheckContext) -> Iterator[Finding]:
    """``RAGPROD_*`` environment variables parse (pydantic-settings)."""
    yield from ctx.extra.get("env_findings", ())


DEFAULT_CHECKS: tuple[Check, ...] = (
    check_env,
    *MODEL_CHECKS,
    *CHUNKING_CHECKS,
    *STORAGE_CHECKS,
    *MANIFEST_CHECKS,
)


def _select(extra: Iterable[Check], only: Iterable[str] | None, skip: Iterable[str]) -> list[Check]:
    chosen: dict[str, Check] = {}
    for item in (*DEFAULT_CHECKS, *registered_checks(), *extra):
        chosen[item.name] = item
    names = set(only) if only is not None else None
    skipped = set(skip)
    return [c for n, c in chosen.items() if (names is None or n in names) and n not in skipped]


def validate(
    settings: Any = None,
    *,
    engine: Any = None,
    index: Any = None,
    storage_context: Any = None,
    vector_store: Any = None,
    cache: Any = None,
    keyring: Any = None,
    manifest: Any = None,
    probes: bool = False,
    timeout: float | None = None,
    documents: Sequence[Any] = (),
    pipeline: Any = None,
    persist_dir: str | os.PathLike[str] | None = None,
    redis_urls: Sequence[str] = (),
    sources: Sequence[Any] = (),
    allow_mock: bool | None = None,
    checks: Iterable[Check] = (),
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    metrics: RagMetrics | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Report:
    """Check a LlamaIndex configuration before the first request; return every finding.

    Reads everything it is given without side effects: it never triggers
    LlamaIndex's lazy defaults (no OpenAI client is built, no prompt helper is
    cached) and makes no network call unless ``probes=True`` (then each probe is
    bounded by ``timeout`` seconds and probes run in parallel). The one model
    call it makes without ``probes`` is the canary embedding of a ``manifest``
    check, also bounded by ``timeout``.

    Args:
        settings: LlamaIndex ``Settings`` (default: the global one), or a
            :class:`~ragprod._settings.RagprodSettings` (or ``RagprodConfig``) whose values
            replace the ``RAGPROD_*`` environment variables.
        engine: a query engine (ragprod shells are unwrapped); its LLM, retriever
            (``similarity_top_k``, embedding model, index) and prompt helper win
            over ``Settings``.
        index: the index to serve (its embedding model, vector store, storage).
        storage_context: storage to check (defaults to the index's).
        vector_store: a vector store to check the embedding dimension against.
        cache: any cache object; Redis clients are found on it by duck typing.
        keyring: duck-typed keyring (``key_ids``, ``primary_id``).
        manifest: a :class:`~ragprod.preflight.Manifest`, dict, JSON path or KV
            store written by :func:`~ragprod.preflight.write_manifest`
            (default ``RAGPROD_MANIFEST``).
        probes: run network probes (Redis PING, canary decrypt of stored records).
        timeout: seconds per probe (default ``RAGPROD_PREFLIGHT_TIMEOUT`` or 1.0).
        documents: a sample of documents for the metadata-length check.
        pipeline: an ``IngestionPipeline`` whose transformations are checked.
        persist_dir: the directory the index loads from (default
            ``RAGPROD_PERSIST_DIR``).
        redis_urls: more Redis URLs to probe (default ``RAGPROD_REDIS_URL``).
        sources: files or modules to scan for removed APIs (``ServiceContext``).
        allow_mock: accept MockLLM/MockEmbedding (default ``RAGPROD_ALLOW_MOCK``).
        checks: extra :class:`~ragprod.preflight.Check` objects to run.
        only: run only the checks with these names.
        skip: names of checks not to run.
        env: the environment to read (default ``os.environ``).
        metrics: where to count ``ragprod_preflight_findings_total{code,severity}``
            and observe ``ragprod_preflight_duration_seconds``; none by default.
        clock: timer for ``Report.duration_s``.

    Returns:
        a :class:`~ragprod.preflight.Report`; ``report.raise_for_errors()``
        turns its errors into one :class:`~ragprod.errors.ConfigurationError`.
        Secrets (provider keys in the environment or on model objects) are
        masked in every finding, including findings of user checks.

    Example:
        >>> from ragprod.preflight import validate
        >>> from ragprod.testing import ExtractiveLLM, HashEmbedding
        >>> from llama_index.core import Settings
        >>> Settings.llm, Settings.embed_model = ExtractiveLLM(), HashEmbedding()
        >>> validate().ok
        True
    """
    from ragprod._settings import RagprodConfig

    start = clock()
    env_map: Mapping[str, str] = dict(os.environ) if env is None else env
    rp_settings, env_findings = env_settings(env_map)
    if isinstance(settings, RagprodConfig):
        rp_settings, settings = settings, None
    if rp_settings is None:
        rp_settings = RagprodConfig.model_construct()
    ctx = CheckContext(
        settings=settings,
        engine=engine,
        index=index,
        storage_context=storage_context,
        vector_store=vector_store,
        cache=cache,
        keyring=keyring,
        manifest=manifest if manifest is not None else rp_settings.manifest,
        probes=probes,
        timeout=float(timeout if timeout is not None else rp_settings.preflight_timeout),
        env=env_map,
        documents=documents,
        allow_mock=bool(allow_mock if allow_mock is not None else rp_settings.allow_mock),
        persist_dir=str(persist_dir) if persist_dir is not None else rp_settings.persist_dir,
        redis_urls=tuple(redis_urls) or ((rp_settings.redis_url,) if rp_settings.redis_url else ()),
        pipeline=pipeline,
        extra={"sources": tuple(sources), "env_findings": env_findings},
    )
    findings: list[Finding] = []
    ran: list[str] = []
    crashed: list[str] = []
    for item in _select(checks, only, skip):
        if item.probe and not probes:
            continue
        ran.append(item.name)
        try:
            findings.extend(item(ctx))
        except Exception as exc:
            crashed.append(item.name)
            findings.append(
                finding(
                    "RAGPROD-E099",
                    f"check {item.name!r} could not run ({type(exc).__name__})",
                    value=item.name,
                    expected="a check that completes",
                    fix="report this; the check's inputs may be of an unexpected type",
                )
            )
    secrets = ctx.secrets()
    report = Report(
        findings=sort_findings(f.redacted(secrets) for f in findings),
        checks_run=tuple(ran),
        duration_s=clock() - start,
        crashed=tuple(crashed),
    )
    if metrics is not None:
        _record(metrics, report)
    return report


def _record(metrics: RagMetrics, report: Report) -> None:
    counter = metrics.counter(
        "ragprod_preflight_findings_total", "Preflight findings by code.", ("code", "severity")
    )
    for f in report.findings:
        counter.labels(code=f.code, severity=f.severity).inc()
    metrics.histogram("ragprod_preflight_duration_seconds", "Duration of validate() runs.").observe(
        report.duration_s
    )
