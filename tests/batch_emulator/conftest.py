"""Fixtures: one identity endpoint and one Batch emulator per session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from tests.batch_emulator.helpers import BATCH_SCOPE, RawApi, make_client, point_credential_at

SUITE_SECRET = "batch-emulator-suite-header"


@pytest.fixture(scope="session")
def idp() -> Iterator[IdentityEndpoint]:
    with IdentityEndpoint(port=0, header_secret=SUITE_SECRET) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def emulator_server(idp: IdentityEndpoint) -> Iterator[BatchEmulator]:
    with BatchEmulator(port=0, jwks_url=idp.jwks_url) as emulator:
        yield emulator


@pytest.fixture
def emu(emulator_server: BatchEmulator) -> BatchEmulator:
    emulator_server.reset()
    return emulator_server


@pytest.fixture
def credential(idp: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> ManagedIdentityCredential:
    """The real ManagedIdentityCredential, on the App Service protocol, aimed at the local endpoint."""
    point_credential_at(monkeypatch, idp.token_url, SUITE_SECRET)
    return ManagedIdentityCredential()


@pytest.fixture
def client(emu: BatchEmulator, credential: ManagedIdentityCredential) -> Any:
    return make_client(emu.url, credential)


@pytest.fixture
def raw(emu: BatchEmulator, credential: ManagedIdentityCredential) -> Iterator[RawApi]:
    api = RawApi(emu.url, credential.get_token(BATCH_SCOPE).token)
    yield api
    api.close()
