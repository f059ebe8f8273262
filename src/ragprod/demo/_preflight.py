"""Demo section: preflight checks of the hardened engine, and of a misconfigured one."""

from __future__ import annotations

from ragprod.demo._core import DemoContext
from ragprod.errors import ConfigurationError
from ragprod.preflight import validate
from ragprod.testing import ExtractiveLLM, HashEmbedding

__all__ = ["TITLE", "preflight_section"]

TITLE = "Preflight: check the configuration before the first request"


def preflight_section(ctx: DemoContext) -> None:
    """``validate()`` the demo's engine, then one with a wrong embedding model and top_k."""
    hardened = ctx.hardened
    assert hardened is not None, "the harden section runs first"
    assert ctx.index is not None
    redis_urls = (ctx.redis_url,) if ctx.redis_url else ()
    # env={}: the demo's outcome does not depend on the RAGPROD_* variables of your shell.
    with ctx.timed() as t:
        report = validate(
            engine=hardened.engine,
            index=ctx.index,
            cache=hardened.cache,
            env={},
            probes=bool(redis_urls),
            redis_urls=redis_urls,
            timeout=1.0,
        )
    ctx.say(f"  validate(engine=engine, index=index, cache=cache) in {t['ms']:.1f} ms")
    ctx.say(f"  {len(report.checks_run)} checks ran: {', '.join(report.checks_run)}")
    for line in report.to_text().splitlines():
        ctx.say(f"    {line}")
    misconfigured = ctx.index.as_query_engine(
        llm=ExtractiveLLM(context_window=600),
        embed_model=HashEmbedding(dim=128),
        similarity_top_k=8,
    )
    bad = validate(engine=misconfigured, index=ctx.index, env={})
    ctx.say("  the same index served with a 128-dim embedding model, top_k=8, a 600-token LLM:")
    for line in bad.to_text().splitlines():
        ctx.say(f"    {line}")
    try:
        bad.raise_for_errors()
        refused = ""
    except ConfigurationError as exc:
        refused = type(exc).__name__
    ctx.say(f"  report.raise_for_errors() -> {refused}: the service refuses to start")
    ctx.record("ok", report.ok)
    ctx.record("checks_run", list(report.checks_run))
    ctx.record("codes", list(report.codes))
    ctx.record("text", report.to_text())
    ctx.record("misconfigured_codes", list(bad.codes))
    ctx.record("misconfigured_ok", bad.ok)
    ctx.record("refused", refused)
