"""A Batch emulator per module, seeded afresh for every test with 12 000 tasks in 24 jobs (the runs delete)."""

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
def retention_batch(identity: IdentityEndpoint) -> Iterator[BatchEmulator]:
    with BatchEmulator(port=0, jwks_url=identity.jwks_url) as emulator:
        yield emulator


@pytest.fixture
def seeded(retention_batch: BatchEmulator, dataset: Dataset) -> BatchEmulator:
    retention_batch.reset()
    dataset.seed(retention_batch)
    return retention_batch
