"""Nothing in tests/chaos is a pytest test: it runs as ``python -m tests.chaos`` (``make chaos``)."""

collect_ignore_glob = ["*"]
