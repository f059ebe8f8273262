"""A production-shaped FastAPI service over a ``ragprod.harden()``-ed LlamaIndex engine.

Run: ``python -m examples.fastapi_service`` (from the repository root) or
``uvicorn examples.fastapi_service.app:app``. See ``README.md`` and
``docs/service.md``.
"""

from examples.fastapi_service.app import create_app
from examples.fastapi_service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
