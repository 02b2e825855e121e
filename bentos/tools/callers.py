"""Who is calling the tools bento: the API key id behind a request, from a ragyard key
(`Authorization: Bearer rg-...`, checked against the router's key store) or, from the router, the
key id it vouches for in `X-Ragyard-Key-Id` (until it sends a service credential, issue 16)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import anyio

from bentos.tools.errors import Unauthenticated
from ragyard.contracts.tools import KEY_ID_HEADER
from router.keys import KeyStore


class Callers:
    def __init__(self, keys: KeyStore, trust_key_id_header: bool):
        self.keys = keys
        self.trust_key_id_header = trust_key_id_header

    async def key_id_of_bearer(self, token: str) -> str | None:
        """The id of the active key `token` is, or None."""
        key = await anyio.to_thread.run_sync(self.keys.authenticate, token)
        return key.id if key is not None else None

    async def key_id(self, headers: Mapping[str, str]) -> str:
        """The caller's key id; Unauthenticated when the request names no active key."""
        if authorization := headers.get("authorization", "").strip():
            match = re.fullmatch(r"Bearer\s+(\S+)", authorization)
            if match is None:
                raise Unauthenticated("Authorization: expected 'Bearer <ragyard API key>'")
            if (key_id := await self.key_id_of_bearer(match.group(1))) is None:
                raise Unauthenticated("Authorization: unknown or revoked API key")
            return key_id
        if self.trust_key_id_header and (claimed := headers.get(KEY_ID_HEADER, "").strip()):
            key = await anyio.to_thread.run_sync(self.keys.get, claimed)
            if key is None or not key.active:
                raise Unauthenticated(f"{KEY_ID_HEADER}: unknown or revoked key id")
            return key.id
        raise Unauthenticated("send 'Authorization: Bearer <ragyard API key>'")

    def close(self) -> None:
        self.keys.close()
