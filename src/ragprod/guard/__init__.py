"""Input validation for queries: ``QueryGuard``."""

from ragprod.guard._guard import REASONS, QueryGuard

__all__ = ["QueryGuard", "REASONS"]
