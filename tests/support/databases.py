"""Databases on the session's PostgreSQL server (the `postgres` fixture)."""

import uuid


def new_database(server_url: str) -> str:
    """A new, empty database on the server at `server_url`; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
