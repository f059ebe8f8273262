"""``python -m ragprod``: the same as the ``ragprod`` console script."""

from ragprod.cli import main

raise SystemExit(main())
