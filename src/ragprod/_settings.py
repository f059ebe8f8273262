"""ragprod's environment configuration: ``RAGPROD_*`` variables, typed.

Constructor arguments always win; these variables fill in what the code did not
pass. Every variable is validated at once by pydantic-settings, so a bad
deployment reports every wrong field in one error, and ``ragprod check``
reports them as ``RAGPROD-E060`` findings.

| variable | type | meaning |
|---|---|---|
| ``RAGPROD_REDIS_URL`` | URL | Redis for caches and shared state |
| ``RAGPROD_PERSIST_DIR`` | path | where the index was persisted |
| ``RAGPROD_MANIFEST`` | path | the index manifest written at build time |
| ``RAGPROD_ALLOW_MOCK`` | bool | accept MockLLM / MockEmbedding (tests only) |
| ``RAGPROD_PREFLIGHT_TIMEOUT`` | float > 0 | seconds per network probe |
| ``RAGPROD_APP`` | ``module:attribute`` | what ``ragprod check`` validates |
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RagprodConfig", "RagprodSettings"]


class RagprodConfig(BaseModel):
    """The fields and rules of :class:`RagprodSettings`, validated from a plain dict.

    ``ragprod.preflight`` validates an injected environment mapping with this
    model (pure pydantic-core, no environment scan), so tests and ``validate(env=...)``
    never read the process environment behind the caller's back.
    """

    redis_url: str | None = Field(default=None, description="Redis URL for caches/state.")
    persist_dir: str | None = Field(default=None, description="Persisted index directory.")
    manifest: str | None = Field(default=None, description="Index manifest path.")
    allow_mock: bool = Field(default=False, description="Accept Mock models (tests).")
    preflight_timeout: float = Field(default=1.0, gt=0, le=60, description="Probe timeout (s).")
    app: str | None = Field(default=None, description="module:attribute for ragprod check.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("app")
    @classmethod
    def _app_format(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError("must look like 'package.module:attribute'")
        return value


class RagprodSettings(BaseSettings, RagprodConfig):
    """Typed ``RAGPROD_*`` environment settings, read from the process environment.

    Raises:
        pydantic.ValidationError: one error listing every invalid variable.

    Example:
        >>> RagprodSettings(preflight_timeout=2.5).preflight_timeout
        2.5
    """

    model_config = SettingsConfigDict(env_prefix="RAGPROD_", extra="ignore")
