"""Fixtures: one identity endpoint and one Batch emulator per session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from tests.batch_emulator.helpers import BATCH_SCOPE, RawApi, make_client, point_credential_at
from tests.conftest import IDENTITY_SECRET

# The suite-wide identity endpoint and emulator (tests/conftest.py), under this suite's names.


@pytest.fixture(scope="session")
def idp(identity: IdentityEndpoint) -> IdentityEndpoint:
    return identity


@pytest.fixture(scope="session")
def emulator_server(batch_server: BatchEmulator) -> BatchEmulator:
    return batch_server


@pytest.fixture
def emu(batch: BatchEmulator) -> BatchEmulator:
    """The shared emulator, emptied of jobs, tasks and faults for this test."""
    return batch


@pytest.fixture
def credential(idp: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> ManagedIdentityCredential:
    """The real ManagedIdentityCredential, on the App Service protocol, aimed at the local endpoint."""
    point_credential_at(monkeypatch, idp.token_url, IDENTITY_SECRET)
    return ManagedIdentityCredential()


@pytest.fixture
def client(emu: BatchEmulator, credential: ManagedIdentityCredential) -> Any:
    return make_client(emu.url, credential)


@pytest.fixture
def raw(emu: BatchEmulator, credential: ManagedIdentityCredential) -> Iterator[RawApi]:
    api = RawApi(emu.url, credential.get_token(BATCH_SCOPE).token)
    yield api
    api.close()
