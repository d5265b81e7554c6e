"""`python -m emulators.batch`: run the Batch emulator until interrupted."""

from __future__ import annotations

import argparse

from emulators._http import run_until_interrupted
from emulators.batch.emulator import DEFAULT_PORT, BatchEmulator

_JWKS_PATH = "/.well-known/jwks.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.batch", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--identity-url",
        default="http://127.0.0.1:8092",
        help="identity endpoint whose JWKS (<url>/.well-known/jwks.json) verifies tokens (fetched lazily)",
    )
    parser.add_argument("--jwks-url", help="explicit JWKS URL; overrides --identity-url")
    parser.add_argument(
        "--accept-any-token", action="store_true", help="skip all token checks (quick experiments only)"
    )
    args = parser.parse_args(argv)
    jwks_url = args.jwks_url or args.identity_url.rstrip("/") + _JWKS_PATH
    emulator = BatchEmulator(host=args.host, port=args.port, jwks_url=jwks_url, accept_any_token=args.accept_any_token)
    auth = "accepting any token" if args.accept_any_token else f"keys from {jwks_url}"
    run_until_interrupted(emulator, lambda: f"batch emulator ready: {emulator.url} ({auth})")


if __name__ == "__main__":
    main()
