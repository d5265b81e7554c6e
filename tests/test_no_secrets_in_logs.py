"""No token or secret may appear in any log line written while the whole suite runs.

The conftest attaches a watch to the root logger before any test runs and moves the final check
to the end of the session, so it sees every record every other test produced.
"""

from __future__ import annotations

import logging

from tests.conftest import IDENTITY_SECRET, _SecretWatch


def test_the_watch_recognises_secrets() -> None:
    watch = _SecretWatch()
    logger = logging.getLogger("secret-watch-self-test")
    logger.propagate = False
    logger.addHandler(watch)
    try:
        logger.warning("Authorization: Bearer %s", "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwcyJ9.c2lnbmF0dXJl")
        logger.warning("header was %s", IDENTITY_SECRET)
        logger.warning("SharedAccessSignature sr=sb%3A%2F%2Fns&sig=abc")
        logger.warning("command processed: deleteTask job1/t1")
    finally:
        logger.removeHandler(watch)
    assert len(watch.leaks) == 3


def test_no_secret_reached_any_log_line(secret_watch: _SecretWatch) -> None:
    assert secret_watch.records > 0, "the watch saw no log record at all; is it attached?"
    assert secret_watch.leaks == []
