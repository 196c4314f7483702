"""``python -m probloss``: the same command as ``probloss`` (see :mod:`probloss.cli`)."""

from .cli import main

raise SystemExit(main())
