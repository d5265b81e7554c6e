"""``python -m tests.chaos``: run the chaos and fuzz suite (see docs/chaos.md)."""

from tests.chaos.run import main

raise SystemExit(main())
