"""Fixtures of the fleet suites: the real processor against the Batch emulator, the queue in memory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from tests.integration.fleet import Fleet, make_fleet


@pytest.fixture
def fleet_factory(batch: BatchEmulator, identity_env: IdentityEndpoint) -> Callable[..., Fleet]:
    """A fleet harness with settings of the test's choosing (FLEET_SCOPE_PREFIXES=fleet- unless overridden)."""

    def make(**overrides: str) -> Fleet:
        return make_fleet(batch, **overrides)

    return make


@pytest.fixture
def fleet(fleet_factory: Callable[..., Fleet]) -> Fleet:
    return fleet_factory()
