"""Local Azure Batch data-plane emulator (jobs and tasks) with a test-control API."""

from emulators.batch.auth import BATCH_AUDIENCE, DEFAULT_JWKS_URL
from emulators.batch.emulator import DEFAULT_PORT, BatchEmulator

__all__ = ["BATCH_AUDIENCE", "DEFAULT_JWKS_URL", "DEFAULT_PORT", "BatchEmulator"]
