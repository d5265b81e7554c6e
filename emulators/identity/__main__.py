"""`python -m emulators.identity`: run the managed-identity endpoint until interrupted."""

from __future__ import annotations

import argparse

from emulators._http import run_until_interrupted
from emulators.identity.server import DEFAULT_PORT, IdentityEndpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.identity", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--token-lifetime", type=int, default=3600, help="seconds until issued tokens expire (default 3600)"
    )
    args = parser.parse_args(argv)
    endpoint = IdentityEndpoint(host=args.host, port=args.port, token_lifetime=args.token_lifetime)
    run_until_interrupted(
        endpoint,
        lambda: (
            f"identity endpoint ready: {endpoint.token_url} (JWKS {endpoint.jwks_url}; "
            "X-IDENTITY-HEADER from $IDENTITY_HEADER)"
        ),
    )


if __name__ == "__main__":
    main()
