"""``python -m examples.fastapi_service``: serve the example with uvicorn.

Host and port come from ``RAGPROD_HOST`` / ``RAGPROD_PORT``; every other
setting from the ``RAGPROD_*`` variables listed in ``settings.py``. For more
than one worker, use ``uvicorn --workers N`` with ``PROMETHEUS_MULTIPROC_DIR``
set, so ``/metrics`` aggregates every worker.
"""

from __future__ import annotations

import sys

import uvicorn
from examples.fastapi_service.app import create_app
from examples.fastapi_service.settings import ServiceSettings
from pydantic import ValidationError

from ragprod.errors import ConfigurationError


def main() -> int:
    """Validate the configuration, then serve until interrupted."""
    try:
        settings = ServiceSettings()
        app = create_app(settings)
    except (ValidationError, ConfigurationError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
