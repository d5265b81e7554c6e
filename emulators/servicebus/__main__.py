"""``python -m emulators.servicebus``: run the peer until interrupted, or write a TLS certificate."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from . import DEFAULT_SAS_KEY, ServiceBusPeer
from .certs import default_cert_dir, make_certificate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulators.servicebus", description=__doc__)
    parser.add_argument("--config", help="Config.json in the official emulator's format (default: shipped)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="plain AMQP port (default 5672)")
    parser.add_argument("--tls-port", type=int, help="also listen with TLS here (the SDK needs 5671)")
    parser.add_argument("--db", default=":memory:", help="SQLite file for messages (default in memory)")
    parser.add_argument("--sas-key", default=DEFAULT_SAS_KEY, help="the RootManageSharedAccessKey value")
    parser.add_argument("--cert-dir", type=Path, help=f"where the TLS certificate lives (default {default_cert_dir()})")
    parser.add_argument("--make-cert", type=Path, metavar="DIR", help="write cert.pem and key.pem to DIR and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.make_cert is not None:
        cert, key = make_certificate(args.make_cert)
        print(f"certificate: {cert}\nprivate key: {key}")
        return 0
    peer = ServiceBusPeer(
        args.config,
        host=args.host,
        port=args.port,
        tls_port=args.tls_port,
        db_path=args.db,
        sas_key=args.sas_key,
        cert_dir=args.cert_dir,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with peer:
        print(f"Service Bus peer listening on {args.host}:{peer.port}")
        if peer.certificate is not None:
            print(f"TLS on {args.host}:{peer.tls_port}, certificate {peer.certificate}")
        print(f"connection string: {peer.connection_string}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
