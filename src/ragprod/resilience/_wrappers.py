"""Resilient LlamaIndex objects: query engine, LLM, embedding, and a decorator."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from typing import Any, ParamSpec, TypeVar, cast, overload

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.llm import LLM
from pydantic import PrivateAttr

from ragprod._pipeline import StepQueryEngine
from ragprod.metrics import RagMetrics
from ragprod.resilience._resilience import Resilience, ResilienceStep

__all__ = ["ResilientEmbedding", "ResilientLLM", "ResilientQueryEngine", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")
_END: Any = object()


def _resolve(resilience: Resilience | None, metrics: RagMetrics | None, name: str) -> Resilience:
    if resilience is None:
        return Resilience(name=name, metrics=metrics)
    if not isinstance(resilience, Resilience):
        raise TypeError(f"expected a Resilience, got {type(resilience).__name__}")
    if metrics is not None:
        resilience.bind_metrics(metrics)
    return resilience


class ResilientQueryEngine(StepQueryEngine):
    """A query engine that runs ``engine`` under a :class:`Resilience` policy.

    Sync and async queries, streaming included, pass through the policy's
    rate limiter, bulkhead, breaker, retries and timeout; with a fallback,
    refused or failed queries get the fallback's answer as a ``Response``.

    Args:
        engine: the wrapped query engine.
        resilience: the policy (default: ``Resilience()``).
        metrics: rebinds the policy's metrics, if given.

    Example:
        >>> from ragprod.testing import FaultyQueryEngine
        >>> engine = ResilientQueryEngine(FaultyQueryEngine(failures={1: ConnectionError()}),
        ...                               Resilience(retry=RetryPolicy(initial=0)))
        >>> str(engine.query("q"))
        'ok'
    """

    def __init__(
        self,
        engine: BaseQueryEngine,
        resilience: Resilience | None = None,
        *,
        metrics: RagMetrics | None = None,
    ) -> None:
        self.resilience = _resolve(resilience, metrics, "default")
        super().__init__(engine, [ResilienceStep(self.resilience)])


class ResilientLLM(LLM):
    """A LlamaIndex ``LLM`` that calls another LLM under a :class:`Resilience` policy.

    ``chat``, ``complete``, ``stream_chat``, ``stream_complete`` and their async
    forms delegate to the inner LLM's public methods; ``metadata`` is the
    inner LLM's. It can be set as ``Settings.llm`` or passed as ``llm=``.
    A stream is opened and its first chunk read under the policy (so
    connection errors are retried and counted); a stream that breaks after
    that is reported to the breaker as a failure and the error re-raised. A
    fallback text answers as a ``CompletionResponse``/``ChatResponse`` (one
    chunk for streams).

    Args:
        llm: the wrapped LLM.
        resilience: the policy (default: ``Resilience(name="llm")``).
        metrics: rebinds the policy's metrics, if given.

    Example:
        >>> from ragprod.testing import ExtractiveLLM
        >>> llm = ResilientLLM(ExtractiveLLM())
        >>> llm.metadata.model_name == ExtractiveLLM().metadata.model_name
        True
    """

    _inner: LLM = PrivateAttr()
    _resilience: Resilience = PrivateAttr()

    def __init__(
        self,
        llm: LLM,
        resilience: Resilience | None = None,
        *,
        metrics: RagMetrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(callback_manager=llm.callback_manager, **kwargs)
        self._inner = llm
        self._resilience = _resolve(resilience, metrics, "llm")

    @classmethod
    def class_name(cls) -> str:
        return "ResilientLLM"

    @property
    def inner(self) -> LLM:
        """The wrapped LLM."""
        return self._inner

    @property
    def resilience(self) -> Resilience:
        """The policy."""
        return self._resilience

    @property
    def metadata(self) -> LLMMetadata:
        return self._inner.metadata

    # -- plain calls -----------------------------------------------------------

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._resilience.call_adapted(_chat_fallback, self._inner.chat, messages, **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._resilience.call_adapted(
            _completion_fallback, self._inner.complete, prompt, formatted=formatted, **kwargs
        )

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._resilience.acall_adapted(
            _chat_fallback, self._inner.achat, messages, **kwargs
        )

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return await self._resilience.acall_adapted(
            _completion_fallback, self._inner.acomplete, prompt, formatted=formatted, **kwargs
        )

    # -- streams ---------------------------------------------------------------

    def _stream(self, open_stream: Callable[[], Any], fallback: Callable[[Any], Any]) -> Any:
        def first_chunk() -> tuple[Any, Any]:
            gen = open_stream()
            return next(gen, _END), gen

        r = self._resilience
        opened = r.call_adapted(lambda answer: (fallback(answer), iter(())), first_chunk)
        first, gen = opened

        def stream() -> Generator[Any, None, None]:
            if first is not _END:
                yield first
            yield from r.watch(gen)

        return stream()

    async def _astream(
        self, open_stream: Callable[[], Awaitable[Any]], fallback: Callable[[Any], Any]
    ) -> Any:
        async def first_chunk() -> tuple[Any, Any]:
            agen = await open_stream()
            return await anext(agen, _END), agen

        async def empty() -> AsyncGenerator[Any, None]:
            return
            yield  # pragma: no cover

        r = self._resilience
        first, agen = await r.acall_adapted(lambda answer: (fallback(answer), empty()), first_chunk)

        async def stream() -> AsyncGenerator[Any, None]:
            if first is not _END:
                yield first
            async for item in r.awatch(agen):
                yield item

        return stream()

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return cast(
            ChatResponseGen,
            self._stream(lambda: self._inner.stream_chat(messages, **kwargs), _chat_fallback),
        )

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return cast(
            CompletionResponseGen,
            self._stream(
                lambda: self._inner.stream_complete(prompt, formatted=formatted, **kwargs),
                _completion_fallback,
            ),
        )

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        return cast(
            ChatResponseAsyncGen,
            await self._astream(
                lambda: self._inner.astream_chat(messages, **kwargs), _chat_fallback
            ),
        )

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return cast(
            CompletionResponseAsyncGen,
            await self._astream(
                lambda: self._inner.astream_complete(prompt, formatted=formatted, **kwargs),
                _completion_fallback,
            ),
        )


def _completion_fallback(answer: Any) -> CompletionResponse:
    if isinstance(answer, CompletionResponse):
        return answer
    text = str(answer)
    return CompletionResponse(text=text, delta=text, additional_kwargs={"ragprod_fallback": True})


def _chat_fallback(answer: Any) -> ChatResponse:
    if isinstance(answer, ChatResponse):
        return answer
    text = str(answer)
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
        delta=text,
        additional_kwargs={"ragprod_fallback": True},
    )


class ResilientEmbedding(BaseEmbedding):
    """A LlamaIndex ``BaseEmbedding`` that calls another under a :class:`Resilience` policy.

    Query and text embeddings, batches and async forms delegate to the inner
    model's public methods (a batch is one protected call). ``model_name`` and
    ``embed_batch_size`` are copied from it; the inner model is kept in a
    private attribute, so it never appears in serialised settings.

    Args:
        embed_model: the wrapped embedding model.
        resilience: the policy (default: ``Resilience(name="embedding")``).
        metrics: rebinds the policy's metrics, if given.

    Example:
        >>> from ragprod.testing import HashEmbedding
        >>> len(ResilientEmbedding(HashEmbedding(dim=8)).get_query_embedding("hi"))
        8
    """

    _inner: BaseEmbedding = PrivateAttr()
    _resilience: Resilience = PrivateAttr()

    def __init__(
        self,
        embed_model: BaseEmbedding,
        resilience: Resilience | None = None,
        *,
        metrics: RagMetrics | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("model_name", embed_model.model_name)
        kwargs.setdefault("embed_batch_size", embed_model.embed_batch_size)
        super().__init__(callback_manager=embed_model.callback_manager, **kwargs)
        self._inner = embed_model
        self._resilience = _resolve(resilience, metrics, "embedding")

    @classmethod
    def class_name(cls) -> str:
        return "ResilientEmbedding"

    @property
    def inner(self) -> BaseEmbedding:
        """The wrapped embedding model."""
        return self._inner

    @property
    def resilience(self) -> Resilience:
        """The policy."""
        return self._resilience

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._resilience.call(self._inner.get_query_embedding, query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._resilience.acall(self._inner.aget_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._resilience.call(self._inner.get_text_embedding, text)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._resilience.acall(self._inner.aget_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._resilience.call(self._inner.get_text_embedding_batch, texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._resilience.acall(self._inner.aget_text_embedding_batch, texts)


@overload
def resilient(fn: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def resilient(
    resilience: Resilience | None = None, /, **components: Any
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def resilient(
    target: Any = None, /, **components: Any
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Protect a sync or async function with a :class:`Resilience` policy.

    Use bare (``@resilient``: default policy named after the function), with a
    policy (``@resilient(policy)``), or with ``Resilience`` keyword arguments
    (``@resilient(timeout=5, retry=RetryPolicy(attempts=2))``). Signatures
    are preserved for type checkers (``ParamSpec``).

    Example:
        >>> @resilient(retry=False, timeout=None, fallback=lambda exc: "cached")
        ... def lookup(key: str) -> str:
        ...     raise ConnectionError(key)
        >>> lookup("a")
        'cached'
    """

    def decorate(fn: Callable[P, T], policy: Resilience) -> Callable[P, T]:
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await policy.acall(afn, *args, **kwargs)

            async_wrapper.resilience = policy  # type: ignore[attr-defined]
            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return policy.call(fn, *args, **kwargs)

        wrapper.resilience = policy  # type: ignore[attr-defined]
        return wrapper

    if callable(target) and not isinstance(target, Resilience):
        if components:
            raise TypeError("resilient(fn) takes no keyword arguments; use resilient(**kw)(fn)")
        return decorate(target, Resilience(name=getattr(target, "__name__", "default")))
    if target is not None and not isinstance(target, Resilience):
        raise TypeError(f"resilient() takes a Resilience, got {type(target).__name__}")

    def decorator(fn: Callable[P, T]) -> Callable[P, T]:
        if target is not None:
            if components:
                raise TypeError("pass either a Resilience or keyword arguments, not both")
            policy = target
        else:
            components.setdefault("name", getattr(fn, "__name__", "default"))
            policy = Resilience(**components)
        return decorate(fn, policy)

    return decorator
