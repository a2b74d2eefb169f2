"""The PostgreSQL server the PostgreSQL tests use, and a schema of their own per test.

The server is the one named by ``PERSISTENT_ACTORS_PG_DSN`` (default: the machine's own,
``postgresql://127.0.0.1:5432/test``). Without a reachable server the tests are skipped with
one line saying how to enable them; ``PERSISTENT_ACTORS_REQUIRE_POSTGRES=1`` (set by CI)
turns that skip into a failure.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import asyncpg
import pytest

DSN: Final = os.environ.get("PERSISTENT_ACTORS_PG_DSN", "postgresql://127.0.0.1:5432/test")
REQUIRE_ENV_VAR: Final = "PERSISTENT_ACTORS_REQUIRE_POSTGRES"
# Set once a test was skipped for want of a server: the session summary prints it once.
skipped_line: list[str] = []


@functools.cache
def unreachable_reason() -> str | None:
    """None if the server answers, else why not (asked once per process)."""

    async def probe() -> None:
        connection = await asyncpg.connect(DSN, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def require_postgres() -> None:
    """Skip the calling test without a server, or fail if the environment requires one."""
    reason = unreachable_reason()
    if reason is None:
        return
    line = (f"PostgreSQL not reachable at {DSN} ({reason}); start it or set "
            f"PERSISTENT_ACTORS_PG_DSN to run the PostgreSQL tests")
    if os.environ.get(REQUIRE_ENV_VAR) == "1":
        pytest.fail(f"{REQUIRE_ENV_VAR}=1 but {line}", pytrace=False)
    if not skipped_line:
        skipped_line.append(f"PostgreSQL tests skipped: {line}")
    pytest.skip(line)


def schema_for(tmp_path: Path) -> str:
    """A schema name unique to the test that owns `tmp_path` (and to this run)."""
    return "pa_test_" + hashlib.sha1(str(tmp_path).encode(), usedforsecurity=False).hexdigest()[:20]


def drop_schema(schema: str) -> None:
    """Drop `schema` and everything in it, if it exists."""

    async def drop() -> None:
        connection = await asyncpg.connect(DSN, timeout=10)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


@pytest.fixture
def pg_schema(tmp_path: Path) -> Iterator[str]:
    """A schema of the test's own (not yet created), dropped after the test."""
    require_postgres()
    schema = schema_for(tmp_path)
    try:
        yield schema
    finally:
        drop_schema(schema)


def settings(schema: str, **extra: object) -> dict[str, object]:
    """Plugin settings for `schema` on the test server."""
    return {"dsn": DSN, "schema": schema, **extra}
