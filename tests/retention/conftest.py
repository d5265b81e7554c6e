"""A Batch emulator seeded once per module with 12 000 tasks in 24 jobs; the real credential for tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from tests.retention.dataset import Dataset, make_dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(datetime.now(UTC), jobs=20, tasks_per_job=500, other_jobs=4)


@pytest.fixture(scope="module")
def seeded(identity: IdentityEndpoint, dataset: Dataset) -> Iterator[BatchEmulator]:
    """Retention only reads, so every test of a module can share one seeded emulator."""
    with BatchEmulator(port=0, jwks_url=identity.jwks_url) as emulator:
        dataset.seed(emulator)
        yield emulator
