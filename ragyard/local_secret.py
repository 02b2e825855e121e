"""A secret generated once and kept under RAGYARD_HOME, for settings left empty on one machine.

Signing keys that are random per process end every session when a service restarts (the supervisor
restarts a crashed bento) and differ between workers. Where no secret is configured, the first
process to need one writes it (readable by the owner only) and every later process, or restart,
reads the same one. Deployments with several machines set the secret explicitly instead.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

_WAIT_S = 5.0  # how long a reader waits for the writer that won the race to finish writing


def local_secret(path: Path) -> str:
    """The secret stored at `path`, created on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    return secret


def _read(path: Path) -> str:
    deadline = time.monotonic() + _WAIT_S
    while not (secret := path.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} is empty: delete it and a new secret will be made")
        time.sleep(0.05)
    return secret
