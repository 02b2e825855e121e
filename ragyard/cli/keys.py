"""`ragyard keys create|list|revoke`: the router's API keys (in its state database)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable

from ragyard.settings import RouterBentoSettings
from router.keys import ROLES, KeyStore
from router.state import database


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def _non_negative(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value

    return parse


def add_keys(commands, name: str, summary: str) -> None:
    parser = commands.add_parser(name, help=summary, description=summary)
    keys = parser.add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="make a key; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--budget", type=_non_negative(float), help="spending limit in the catalog currency (default: none)"
    )
    create.add_argument("--rpm", type=_non_negative(int), help="requests per minute (default: unlimited)")
    create.add_argument("--tpm", type=_non_negative(int), help="tokens per minute (default: unlimited)")
    create.add_argument(
        "--admin", action="store_true", help="may also call the admin endpoints (POST /v1/documents/changed)"
    )
    create.add_argument(
        "--role",
        action="append",
        choices=ROLES,
        default=[],
        help="a role besides calling the router (repeatable); reviewer: may decide the review queue",
    )
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    listing = keys.add_parser("list", help="all keys with their spending")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="disable a key at once")
    revoke.add_argument("id")
    parser.set_defaults(handler=manage_keys)


def manage_keys(args: argparse.Namespace) -> int:
    # The router's own settings: where its state is (a bad setting of another part must not stop this).
    store = KeyStore(database(RouterBentoSettings(), "keys"))
    try:
        if args.action == "create":
            key, secret = store.create(
                args.name, args.budget, args.rpm, args.tpm, admin=args.admin, roles=tuple(args.role)
            )
            if args.json:
                print(json.dumps({"id": key.id, "name": key.name, "key": secret}))
            else:
                print(f"created key {key.id} ({key.name}); send it as 'Authorization: Bearer <key>':\n{secret}")
        elif args.action == "list":
            rows = store.list()
            if args.json:
                print(json.dumps([k.__dict__ for k in rows]))
            for k in [] if args.json else rows:
                print(
                    f"{k.id}  {k.name:<20} budget={k.budget if k.budget is not None else '-'} spent={k.spent:.6f} "
                    f"rpm={k.rpm or '-'} tpm={k.tpm or '-'} created={_when(k.created_at)} "
                    f"revoked={_when(k.revoked_at)}"
                )
        elif args.action == "revoke":
            if not store.revoke(args.id):
                print(f"no active key {args.id!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
    finally:
        store.close()
    return 0
