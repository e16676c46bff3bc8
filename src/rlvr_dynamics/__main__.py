"""``python -m rlvr_dynamics ARGS`` is ``rlvr-book ARGS`` (where no console script is installed)."""

from rlvr_dynamics.book.cli import main

raise SystemExit(main())
