"""Cache keys: hashes of everything that changes an answer, never raw text.

A key is the SHA-256 of a length-prefixed list of its components: the key
schema version, the kind of value (``query``, ``retrieve``, ``embed-text``...),
the namespace and its generation, the tenant, the fingerprint of the engine,
retriever or embedding model, any extra parameters, and finally the query
text. Length prefixes make the encoding unambiguous (no two component lists
hash the same bytes), and the query text only ever enters the digest, so
keys hold no user content.

The fingerprint of an engine is computed once, when the wrapper is built, by
walking the configuration LlamaIndex keeps on the object: retriever type and
``similarity_top_k``, filters, query mode, index id, node postprocessors,
response mode, prompt templates, the LLM's model and sampling parameters, the
embedding model and its dimension. Attributes that look like credentials or
clients are skipped.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel

__all__ = ["KEY_SCHEMA", "KeySpace", "cache_key", "fingerprint"]

#: Bumped when the key layout or the meaning of a cached value changes.
KEY_SCHEMA: Final = "ragprod-cache-v1"

_SKIP = re.compile(
    r"(api_?key|secret|token|password|passwd|credential|auth|headers|client|session|"
    r"callback|lock|_loop|executor|timeout|retries|num_workers|http|cache$|"
    r"docstore|index_store|graph_store|storage_context|_nodes$|_node_ids_to|"
    r"rate_limiter|tokenizer|_dispatcher|_object_map|^_?verbose$|"
    r"^_?(calls|queries|count|counter|stats|history|sleep|asleep|clock)$)",
    re.IGNORECASE,
)
_MAX_ITEMS = 64
_MAX_DEPTH = 6


def _part(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"%d:" % len(data) + data


class KeySpace:
    """Keys for one (kind, namespace, tenant, fingerprint): the constant part hashed once.

    ``key(text, generation)`` then costs one SHA-256 copy and update. Used by
    the cached wrappers; :func:`cache_key` builds the same keys in one call.

    Args:
        kind: what is cached (``"query"``, ``"retrieve"``, ``"embed-text"``...).
        namespace: the invalidation unit (see ``TieredCache.invalidate``).
        fingerprint: the identity of the engine/model (see :func:`fingerprint`).
        params: extra parameters that change the value (JSON data).
    """

    __slots__ = ("_base", "kind", "namespace")

    def __init__(
        self,
        kind: str,
        namespace: str,
        fingerprint: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        canonical = json.dumps(params, sort_keys=True, default=str) if params else ""
        base = hashlib.sha256()
        for part in (KEY_SCHEMA, kind, namespace, fingerprint, canonical):
            base.update(_part(part))
        self._base = base

    def key(self, text: str, generation: str = "0", tenant: str | None = None) -> str:
        """The key of ``text`` at ``generation`` for ``tenant`` (a hex digest)."""
        g = generation.encode("utf-8", "surrogatepass")
        t = tenant.encode("utf-8", "surrogatepass") if tenant else b""
        q = text.encode("utf-8", "surrogatepass")
        digest = self._base.copy()
        # Same bytes as _part(generation) + _part(tenant) + _part(text), inlined.
        digest.update(b"%d:%b%d:%b%d:%b" % (len(g), g, len(t), t, len(q), q))
        return digest.hexdigest()


def cache_key(
    query: str,
    *,
    kind: str = "query",
    namespace: str = "default",
    generation: int | str = 0,
    tenant: str | None = None,
    fingerprint: str = "",
    params: Mapping[str, Any] | None = None,
) -> str:
    """The cache key of one query: a 64-character SHA-256 hex digest.

    Every argument changes the key; the query text cannot be read back from it.

    Args:
        query: the query or text to key.
        kind: the kind of cached value.
        namespace: the invalidation unit.
        generation: the namespace generation (bumped by ``invalidate``).
        tenant: keeps tenants' entries apart.
        fingerprint: the engine/model identity, e.g. ``fingerprint(engine)``.
        params: extra parameters, as JSON data.

    Example:
        >>> k = cache_key("what is the refund policy?", namespace="docs")
        >>> len(k), k == cache_key("what is the refund policy?", namespace="docs")
        (64, True)
        >>> k == cache_key("what is the refund policy?", namespace="docs", tenant="acme")
        False
    """
    return KeySpace(kind, namespace, fingerprint, params).key(query, str(generation), tenant)


def _describe(value: Any, depth: int, seen: set[int]) -> Any:
    """A JSON-able, deterministic description of a configuration object."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()[:16]
    if depth <= 0 or id(value) in seen:
        return type(value).__qualname__
    if (callable(value) and not hasattr(value, "__dict__")) or isinstance(value, type):
        return getattr(value, "__qualname__", type(value).__qualname__)
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        if len(items) > _MAX_ITEMS:
            return f"mapping[{len(items)}]"
        return {str(k): _describe(v, depth - 1, seen) for k, v in items if not _SKIP.search(str(k))}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        if len(seq) > _MAX_ITEMS:
            return f"seq[{len(seq)}]"
        return [_describe(v, depth - 1, seen) for v in seq]
    name = type(value).__qualname__
    index_id = getattr(value, "index_id", None)
    if isinstance(index_id, str) and hasattr(value, "index_struct"):
        # An index: its identity, not its contents.
        return {"@": name, "index_id": index_id}
    own = getattr(value, "fingerprint", None)
    if callable(own) and not isinstance(value, type):
        # An object that states its own configuration identity (a PIIAnonymizer):
        # walking it would hash its runtime state (counters, vault entries).
        try:
            identity = own()
        except Exception:  # a fingerprint() that needs arguments: walk the object
            identity = None
        if isinstance(identity, str):
            return {"@": name, "fingerprint": identity}
    get_template = getattr(value, "get_template", None)
    if callable(get_template) and hasattr(value, "template_vars"):
        try:
            return {"@": name, "template": str(get_template())}
        except Exception:  # a prompt that cannot render without arguments
            pass
    fields: dict[str, Any]
    if isinstance(value, BaseModel):
        fields = {k: getattr(value, k, None) for k in type(value).model_fields}
        private = getattr(value, "__pydantic_private__", None) or {}
        fields.update({k: v for k, v in private.items() if not k.startswith("__")})
    elif hasattr(value, "__dict__"):
        fields = dict(vars(value))
    else:
        return name
    described = {"@": name}
    for key in sorted(fields):
        if _SKIP.search(key):
            continue
        described[key] = _describe(fields[key], depth - 1, seen)
    return described


def _template_text(template: Any) -> str:
    get_template = getattr(template, "get_template", None)
    return str(get_template()) if callable(get_template) else str(template)


def fingerprint(obj: Any, *extra: Any) -> str:
    """A stable identity of an engine, retriever or model configuration.

    Two engines with different retriever parameters, prompts, LLM or
    embedding settings, or over different indexes, get different
    fingerprints; the same configuration gets the same fingerprint in every
    process. Compute it once per engine (it walks the object graph).

    Args:
        obj: the LlamaIndex object.
        *extra: more JSON-able values to mix in (e.g. an index version).

    Example:
        >>> from ragprod.testing import HashEmbedding
        >>> fingerprint(HashEmbedding(dim=64)) == fingerprint(HashEmbedding(dim=64))
        True
        >>> fingerprint(HashEmbedding(dim=64)) == fingerprint(HashEmbedding(dim=128))
        False
    """
    description = [_describe(obj, _MAX_DEPTH, set()), _describe(list(extra), 3, set())]
    prompts = getattr(obj, "get_prompts", None)
    if callable(prompts):
        try:
            templates = prompts()
        except Exception:  # a component whose prompts cannot be listed
            templates = {}
        description.append({k: _template_text(v) for k, v in sorted(templates.items())})
    canonical = json.dumps(description, sort_keys=True, default=lambda o: type(o).__qualname__)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
