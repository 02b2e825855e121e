"""`python -m router keys create|list|revoke`: the router's API keys (in its state database)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from ragyard.settings import Settings
from router.keys import KeyStore
from router.state import database


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)
    keys = groups.add_parser("keys", help="API keys of the router").add_subparsers(dest="command", required=True)
    create = keys.add_parser("create", help="make a key; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--budget", type=float, help="spending limit in the catalog currency (default: none)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: unlimited)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: unlimited)")
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    listing = keys.add_parser("list", help="all keys with their spending")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="disable a key at once")
    revoke.add_argument("id")
    args = parser.parse_args(argv)

    for name, value in (("budget", getattr(args, "budget", None)), ("rpm", getattr(args, "rpm", None)),
                        ("tpm", getattr(args, "tpm", None))):
        if value is not None and value < 0:
            parser.error(f"--{name} must not be negative")
    store = KeyStore(database(Settings(), "keys"))
    try:
        if args.command == "create":
            key, secret = store.create(args.name, args.budget, args.rpm, args.tpm)
            if args.json:
                print(json.dumps({"id": key.id, "name": key.name, "key": secret}))
            else:
                print(f"created key {key.id} ({key.name}); send it as 'Authorization: Bearer <key>':\n{secret}")
        elif args.command == "list":
            rows = store.list()
            if args.json:
                print(json.dumps([k.__dict__ for k in rows]))
            for k in [] if args.json else rows:
                print(f"{k.id}  {k.name:<20} budget={k.budget if k.budget is not None else '-'} spent={k.spent:.6f} "
                      f"rpm={k.rpm or '-'} tpm={k.tpm or '-'} created={_when(k.created_at)} "
                      f"revoked={_when(k.revoked_at)}")
        elif args.command == "revoke":
            if not store.revoke(args.id):
                print(f"no active key {args.id!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
