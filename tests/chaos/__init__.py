"""The chaos and fuzz suite (``make chaos``): the whole local system under faults, restarts and junk.

Not part of ``make test``: this package holds no ``test_*.py`` files and its ``conftest.py`` tells
pytest to collect nothing here. See docs/chaos.md.
"""
