"""Server-sent events for streamed answers, and the ``sources`` of a response.

A streamed answer is a sequence of events, each one JSON ``data`` line::

    event: meta     data: {"trace_id": "...", "tenant": "acme"}
    event: token    data: {"text": "Refunds are "}     (repeated)
    event: done     data: {"sources": [...], "cached": false}

or, if the upstream fails or the deadline passes after the first byte (when
the status line is already sent), a final ``event: error`` with the same body
a non-streamed failure would have (``{"error", "reason", "retry_after"?}``).
Failures before the first byte are ordinary HTTP errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from examples.fastapi_service._errors import DeadlineExceeded, Failure, classify
from examples.fastapi_service._observe import CacheHitLog
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse

__all__ = ["answer_events", "sources_of", "sse"]


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sources_of(response: Any) -> list[dict[str, Any]]:
    """Document id, title and score of each retrieved node (never the node text)."""
    out: list[dict[str, Any]] = []
    for source in getattr(response, "source_nodes", None) or []:
        node = source.node
        metadata = node.metadata or {}
        score = source.score
        out.append(
            {
                "id": node.ref_doc_id or node.node_id,
                "title": metadata.get("title"),
                "score": None if score is None else round(float(score), 4),
            }
        )
    return out


async def _iterate_sync(gen: Iterator[str]) -> AsyncIterator[str]:
    for piece in gen:
        yield piece


def _chunks(response: Any) -> AsyncIterator[str]:
    if isinstance(response, AsyncStreamingResponse):
        return response.async_response_gen()
    if isinstance(response, StreamingResponse) and response.response_gen is not None:
        return _iterate_sync(response.response_gen)
    return _iterate_sync(iter([str(getattr(response, "response", "") or "")]))


async def answer_events(
    response: Any,
    *,
    span: Any,
    tenant: str,
    trace_id: str,
    deadline: float,
    hits: CacheHitLog,
    on_failure: Callable[[Failure, BaseException, str, str], None],
) -> AsyncIterator[bytes]:
    """The SSE byte stream of ``response``, bounded by ``deadline`` (event-loop time).

    Ends ``span`` (the request's server span) when the stream ends, however it ends.
    """
    loop = asyncio.get_running_loop()
    chunks = _chunks(response)
    try:
        yield sse("meta", {"trace_id": trace_id, "tenant": tenant})
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                piece = await asyncio.wait_for(anext(chunks), remaining)
            except StopAsyncIteration:
                break
            except (TimeoutError, asyncio.TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise DeadlineExceeded("request deadline exceeded") from exc
                raise
            yield sse("token", {"text": piece})
        cached = hits.pop(span)
        yield sse("done", {"sources": sources_of(response), "cached": cached})
        span.set_attribute("http.response.status_code", 200)
    except Exception as exc:
        failure = classify(exc)
        on_failure(failure, exc, tenant, trace_id)
        span.set_attribute("ragprod.stream_error", failure.reason)
        yield sse("error", failure.body(trace_id))
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # a stream failing as it closes: nothing to say
                await aclose()
        span.end()
