"""Suite-wide fixtures: the local stand-ins, and a watch on every log record for secrets."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint

IDENTITY_SECRET = "suite-identity-secret"
# A JWT (header.payload.signature, base64url), a SAS signature, or a known secret value.
SECRET_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"),
    re.compile(r"SharedAccessSignature\s+sr="),
    re.compile(re.escape(IDENTITY_SECRET)),
    re.compile(r"SharedAccessKey=(?!SAS_KEY_VALUE)[^;\s]+"),
)


class _SecretWatch(logging.Handler):
    """Keeps every formatted log line that looks like it carries a secret."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            line = record.getMessage()
        except Exception:  # a broken format string is not our concern here
            return
        if record.exc_info and record.exc_info[1] is not None:
            line += f" {record.exc_info[1]}"
        if any(pattern.search(line) for pattern in SECRET_PATTERNS):
            self.leaks.append(f"{record.name}: {line[:300]}")


SECRET_WATCH = _SecretWatch()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(SECRET_WATCH)
    # Our own loggers at DEBUG, so the watch sees everything the product could ever write.
    logging.getLogger("batch_lifecycle").setLevel(logging.DEBUG)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the secret check last, after every other test has logged what it logs."""
    last = [item for item in items if item.name == "test_no_secret_reached_any_log_line"]
    for item in last:
        items.remove(item)
        items.append(item)


@pytest.fixture(scope="session")
def secret_watch() -> _SecretWatch:
    return SECRET_WATCH


@pytest.fixture(scope="session")
def identity() -> Iterator[IdentityEndpoint]:
    with IdentityEndpoint(port=0, header_secret=IDENTITY_SECRET) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def batch_server(identity: IdentityEndpoint) -> Iterator[BatchEmulator]:
    with BatchEmulator(port=0, jwks_url=identity.jwks_url) as emulator:
        yield emulator


@pytest.fixture
def batch(batch_server: BatchEmulator) -> BatchEmulator:
    """The shared emulator, emptied of jobs, tasks and faults for this test."""
    batch_server.reset()
    return batch_server


@pytest.fixture
def identity_env(identity: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> IdentityEndpoint:
    """Point azure-identity's ManagedIdentityCredential (App Service protocol) at the local endpoint."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.token_url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_SECRET)
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return identity


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
